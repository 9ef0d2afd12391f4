//! The ME-region parser on every ME file of the shared corpus: family,
//! version, generation, layout and state must match CORPUS.tsv and
//! reference §15. Skips, saying so, when the corpus is absent.

use fortros_agent::image::me::{
    find_ifwi_in_bios, parse_me_region, Family, Generation, Layout, MeRegion, ModuleHash, Presence,
    RegionState, Signature, SignatureScheme, SkuType,
};
use fortros_testkit::corpus::Corpus;

/// What reference §15 says each image is.
struct Expect {
    label: &'static str,
    family: Family,
    version: &'static str,
    generation: Generation,
    layout: fn(&Layout) -> bool,
    scheme: SignatureScheme,
    /// None: stock.
    cleaned: Option<fn(&RegionState) -> bool>,
}

fn classic(l: &Layout) -> bool {
    *l == Layout::ClassicFpt {
        fpt_offset: 0x10,
        rom_bypass: true,
    }
}

const RSA2048: SignatureScheme = SignatureScheme::Rsa2048Pkcs1Sha256;

const EXPECT: &[Expect] = &[
    Expect {
        label: "lumpy",
        family: Family::Me,
        version: "7.1.40.1161",
        generation: Generation::Gen2,
        layout: classic,
        scheme: RSA2048,
        cleaned: None,
    },
    Expect {
        label: "link",
        family: Family::Me,
        version: "8.0.20.1513",
        generation: Generation::Gen2,
        layout: classic,
        scheme: RSA2048,
        cleaned: None,
    },
    Expect {
        label: "x210",
        family: Family::Csme,
        version: "11.8.82.3838",
        generation: Generation::Gen3,
        layout: classic,
        scheme: RSA2048,
        cleaned: None,
    },
    Expect {
        label: "darp6",
        family: Family::Csme,
        version: "14.0.10.1204",
        generation: Generation::Ifwi,
        layout: |l| *l == Layout::Ifwi16,
        scheme: RSA2048,
        cleaned: None,
    },
    Expect {
        label: "ms7d25",
        family: Family::Csme,
        version: "16.1.30.2307",
        generation: Generation::Ifwi,
        layout: |l| *l == Layout::Ifwi17,
        scheme: SignatureScheme::Rsa3072PssSha384,
        cleaned: None,
    },
    Expect {
        label: "fbg1701",
        family: Family::Txe,
        version: "2.0.4.3098",
        generation: Generation::Gen2,
        layout: classic,
        scheme: RSA2048,
        cleaned: None,
    },
    Expect {
        label: "minnowmax_sb",
        family: Family::Txe,
        version: "1.1.4.1145",
        generation: Generation::Gen2,
        layout: classic,
        scheme: RSA2048,
        cleaned: None,
    },
    Expect {
        label: "glk",
        family: Family::Cstxe,
        version: "4.0.50.2083",
        generation: Generation::Ifwi,
        layout: |l| *l == Layout::Bpdt,
        scheme: RSA2048,
        cleaned: None,
    },
    Expect {
        label: "x230_cleaned",
        family: Family::Me,
        version: "8.1.30.1350",
        generation: Generation::Gen2,
        layout: classic,
        scheme: RSA2048,
        cleaned: Some(|s| {
            matches!(s, RegionState::Cleaned { relocated: true, truncated: true, remaining_partitions, remaining_modules }
                if remaining_partitions == &["FTPR"] && remaining_modules.iter().any(|m| m == "BUP"))
        }),
    },
    Expect {
        label: "whitley",
        family: Family::Cssps,
        version: "4.2.4.14",
        generation: Generation::Gen3,
        layout: classic,
        scheme: RSA2048,
        cleaned: None,
    },
];

fn is_me_file(file: &str) -> bool {
    !file.contains("descriptor") && !file.ends_with("_fd.bin") && !file.ends_with("_fd.rom")
}

/// The region to parse: the file itself, or for Gemini Lake (firmware in
/// the BIOS region) the IFWI found inside it.
fn region_of(label: &str, bytes: &[u8]) -> MeRegion {
    let start = if label == "glk" {
        find_ifwi_in_bios(bytes).expect("glk: IFWI found in the BIOS-region file")
    } else {
        0
    };
    parse_me_region(&bytes[start..]).unwrap_or_else(|e| panic!("{label}: {e}"))
}

#[test]
fn every_corpus_me_region_matches_the_reference() {
    let Some(corpus) = Corpus::open_or_skip("every_corpus_me_region_matches_the_reference") else {
        return;
    };
    let mut checked = 0;
    for f in corpus.files.iter().filter(|f| is_me_file(&f.file)) {
        let e = EXPECT
            .iter()
            .find(|e| e.label == f.label)
            .unwrap_or_else(|| {
                panic!(
                    "no expectation for corpus ME file {} ({})",
                    f.file, f.description
                )
            });
        let bytes = corpus.read(&f.file).unwrap();
        let r = region_of(f.label.as_str(), &bytes);
        let who = &f.file;
        assert_eq!(r.family, Some(e.family), "{who}: family");
        assert_eq!(
            r.version.map(|v| v.to_string()).as_deref(),
            Some(e.version),
            "{who}: version"
        );
        let short = e
            .version
            .rsplit_once('.')
            .map_or(e.version, |(head, _)| head);
        assert!(
            f.description.contains(short),
            "{who}: CORPUS.tsv agrees on {short}"
        );
        assert_eq!(r.generation, Some(e.generation), "{who}: generation");
        assert!((e.layout)(&r.layout), "{who}: layout {:?}", r.layout);
        match e.cleaned {
            None => {
                assert_eq!(r.state, RegionState::Stock, "{who}: state");
                let out = r
                    .partitions
                    .iter()
                    .find(|p| matches!(p.presence, Presence::OutOfRegion | Presence::Truncated));
                assert!(
                    out.is_none(),
                    "{who}: stock image with a partition out of bounds: {out:?}"
                );
            }
            Some(check) => assert!(check(&r.state), "{who}: state {:?}", r.state),
        }
        assert!(
            r.manifests[0].name.starts_with("FTPR"),
            "{who}: the first manifest is the FTPR one"
        );
        let consistent = r
            .manifests
            .iter()
            .any(|m| m.signature == Signature::Consistent { scheme: e.scheme });
        assert!(
            consistent,
            "{who}: a manifest verifies with {:?}: {:?}",
            e.scheme, r.manifests
        );
        assert!(
            r.manifests[0].known_key.is_some(),
            "{who}: the FTPR key is a pinned one"
        );
        // Every other manifest verifies too, or carries no key at all.
        for m in r
            .manifests
            .iter()
            .filter(|m| f.label != "whitley" || m.name != "FTPR.man")
        {
            assert!(
                matches!(m.signature, Signature::Consistent { .. })
                    || matches!(&m.signature, Signature::Unchecked { why } if why.contains("unsigned")),
                "{who}: {} {:?}",
                m.name,
                m.signature
            );
        }
        checked += 1;
    }
    assert_eq!(checked, EXPECT.len(), "every expectation met a corpus file");
}

#[test]
fn whitley_ftpr_manifest_is_inconsistent_but_ftpr2_verifies() {
    let Some(corpus) =
        Corpus::open_or_skip("whitley_ftpr_manifest_is_inconsistent_but_ftpr2_verifies")
    else {
        return;
    };
    let r = parse_me_region(&corpus.read("whitley_ignition_MeRegion.bin").unwrap()).unwrap();
    let ftpr = r.manifests.iter().find(|m| m.name == "FTPR.man").unwrap();
    let ftpr2 = r.manifests.iter().find(|m| m.name == "FTPR2.man").unwrap();
    assert!(
        matches!(&ftpr.signature, Signature::Inconsistent { why, .. } if why.contains("digest does not match")),
        "{:?}",
        ftpr.signature
    );
    assert_eq!(ftpr.exponent, 17);
    assert!(matches!(ftpr2.signature, Signature::Consistent { .. }));
}

#[test]
fn csme_16_uses_the_rsa3072_manifest_layout_and_crc_checked_tables() {
    let Some(corpus) =
        Corpus::open_or_skip("csme_16_uses_the_rsa3072_manifest_layout_and_crc_checked_tables")
    else {
        return;
    };
    let r = parse_me_region(&corpus.read("dasharo_msi_ms7d25_me.bin").unwrap()).unwrap();
    let m = &r.manifests[0];
    assert_eq!(
        (m.header_version, m.key_bits, m.header_length),
        (0x21000, 3072, 0x384)
    );
    assert_eq!(
        r.fpt.as_ref().map(|f| (f.header_version, f.checksum_ok)),
        Some((0x21, true))
    );
    assert_eq!(r.ifwi.as_ref().and_then(|i| i.table_crc_ok), Some(true));
    assert_eq!(r.sku.as_ref().map(|s| s.sku_type), Some(SkuType::Consumer));
}

#[test]
fn one_flipped_byte_in_a_real_manifest_breaks_consistency() {
    let Some(corpus) =
        Corpus::open_or_skip("one_flipped_byte_in_a_real_manifest_breaks_consistency")
    else {
        return;
    };
    for file in [
        "x210_me.bin",
        "dasharo_msi_ms7d25_me.bin",
        "cbblobs_google_link_me.bin",
    ] {
        let mut bytes = corpus.read(file).unwrap();
        let r = parse_me_region(&bytes).unwrap();
        let at = r.manifests[0].offset as usize + 0x24;
        // The version field is signed: change it and the signature must fail.
        bytes[at] ^= 1;
        let r2 = parse_me_region(&bytes).unwrap();
        assert!(
            matches!(r2.manifests[0].signature, Signature::Inconsistent { .. }),
            "{file}"
        );
        assert!(
            matches!(r2.state, RegionState::Corrupted { offset, .. } if offset == at as u64 - 0x24),
            "{file}: {:?}",
            r2.state
        );
    }
}

#[test]
fn a_real_fpt_with_a_wrong_checksum_is_corrupted_at_the_fpt() {
    let Some(corpus) =
        Corpus::open_or_skip("a_real_fpt_with_a_wrong_checksum_is_corrupted_at_the_fpt")
    else {
        return;
    };
    for file in [
        "x210_me.bin",
        "cbblobs_samsung_lumpy_me.bin",
        "dasharo_msi_ms7d25_me.bin",
    ] {
        let mut bytes = corpus.read(file).unwrap();
        let fpt = parse_me_region(&bytes).unwrap().fpt.unwrap().offset;
        bytes[fpt as usize + 0xC] ^= 0x40; // flash cycle life: covered by both rules
        let r = parse_me_region(&bytes).unwrap();
        assert!(
            matches!(&r.state, RegionState::Corrupted { what, offset } if *offset == fpt && what.contains("$FPT")),
            "{file}: {:?}",
            r.state
        );
    }
}

#[test]
fn gemini_lake_ifwi_is_found_inside_the_assembled_bios_region() {
    let Some(corpus) =
        Corpus::open_or_skip("gemini_lake_ifwi_is_found_inside_the_assembled_bios_region")
    else {
        return;
    };
    let full = corpus.assemble_full("glk").unwrap();
    // CORPUS.tsv: the ifwi file sits at 0x1000, the BIOS region base.
    assert_eq!(find_ifwi_in_bios(&full[0x1000..]), Some(0));
    assert_eq!(find_ifwi_in_bios(&full), Some(0x1000));
    let r = parse_me_region(&full[0x1000..]).unwrap();
    assert_eq!(r.family, Some(Family::Cstxe));
    assert_eq!(r.state, RegionState::Stock);
}

#[test]
fn no_ifwi_is_found_in_bios_regions_without_one() {
    assert_eq!(find_ifwi_in_bios(&vec![0xFF; 0x10000]), None);
    let Some(corpus) = Corpus::open_or_skip("no_ifwi_is_found_in_bios_regions_without_one") else {
        return;
    };
    // An ME region of another layout is not an IFWI-in-BIOS.
    assert_eq!(
        find_ifwi_in_bios(&corpus.read("x210_me.bin").unwrap()),
        None
    );
}

#[test]
fn cse_module_hashes_match_their_signed_metadata() {
    let Some(corpus) = Corpus::open_or_skip("cse_module_hashes_match_their_signed_metadata") else {
        return;
    };
    // (file, modules whose hash is checked, Huffman modules left unchecked)
    for (file, matched, huffman) in [
        // x210: 23 modules, 4 Huffman, and fptemp is all 0xFF (not present, not checked).
        ("x210_me.bin", 18, 4),
        ("whitley_ignition_MeRegion.bin", 2, 0),
        ("dasharo_vault_glk_ifwi.bin", 4, 0),
        // CSME 16.1 keeps module hashes elsewhere; only intl.cfg has a .met.
        ("dasharo_msi_ms7d25_me.bin", 1, 0),
    ] {
        let r = parse_me_region(&corpus.read(file).unwrap()).unwrap();
        let count = |f: fn(&ModuleHash) -> bool| {
            r.modules
                .iter()
                .filter(|m| m.hash.as_ref().is_some_and(f))
                .count()
        };
        assert_eq!(count(|h| *h == ModuleHash::Matches), matched, "{file}");
        assert_eq!(
            count(|h| matches!(h, ModuleHash::Unchecked { .. })),
            huffman,
            "{file}"
        );
        assert_eq!(
            count(|h| matches!(h, ModuleHash::Mismatch { .. })),
            0,
            "{file}"
        );
    }
}
