//! Unit tests over synthetic regions built by `fortros_testkit::synth::me`:
//! every layout parses to what was built, and every kind of damage
//! (truncation, bad checksum, overlap, out-of-bounds offset, table loop,
//! altered signed bytes) is refused with the offset and structure named.

use fortros_testkit::synth::me as synth;

use super::*;

fn parse(bytes: &[u8]) -> MeRegion {
    parse_me_region(bytes).unwrap_or_else(|e| panic!("parse failed: {e}"))
}

fn corrupted_at(r: &MeRegion, want_offset: u64, want_what: &str) {
    match &r.state {
        RegionState::Corrupted { what, offset } => {
            assert_eq!(*offset, want_offset, "offset of damage ({what})");
            assert!(
                what.contains(want_what),
                "damage `{what}` should mention `{want_what}`"
            );
        }
        s => panic!("expected Corrupted at {want_offset:#x} ({want_what}), got {s:?}"),
    }
}

fn le32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

// ------------------------------------------------------------- what parses

#[test]
fn gen2_stock_region_reads_as_built() {
    let s = synth::gen2_stock();
    let r = parse(&s.bytes);
    assert_eq!(
        r.layout,
        Layout::ClassicFpt {
            fpt_offset: 0x10,
            rom_bypass: true
        }
    );
    assert_eq!(r.generation, Some(Generation::Gen2));
    assert_eq!(r.family, Some(Family::Me));
    assert_eq!(r.version.unwrap().to_string(), "8.1.65.1586");
    assert_eq!(r.state, RegionState::Stock);
    let fpt = r.fpt.as_ref().unwrap();
    assert!(fpt.checksum_ok);
    assert_eq!((fpt.header_length, fpt.entry_count), (0x30, 5));
    let m = &r.manifests[0];
    assert_eq!(
        (m.name.as_str(), m.tag.as_str(), m.exponent, m.svn),
        ("FTPR", "$MN2", 17, 2)
    );
    assert_eq!(
        m.signature,
        Signature::Consistent {
            scheme: SignatureScheme::Rsa2048Pkcs1Sha256
        }
    );
    assert_eq!(m.known_key, None, "a test key is not a known key");
    let names: Vec<&str> = r.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, synth::GEN2_MODULES);
    assert!(r
        .modules
        .iter()
        .all(|m| m.present && m.compression == Compression::Lzma));
    let nvcl = r.partitions.iter().find(|p| p.name == "NVCL").unwrap();
    assert_eq!(
        (nvcl.presence, nvcl.kind.as_str()),
        (Presence::NoData, "nvram")
    );
}

#[test]
fn gen2_cleaned_relocated_truncated_is_recognised() {
    let r = parse(&synth::gen2_cleaned(true, true).bytes);
    match r.state {
        RegionState::Cleaned {
            remaining_partitions,
            remaining_modules,
            relocated,
            truncated,
        } => {
            assert_eq!(remaining_partitions, ["FTPR"]);
            assert_eq!(remaining_modules, ["ROMP", "BUP"]);
            assert!(relocated && truncated);
        }
        s => panic!("{s:?}"),
    }
    assert_eq!(
        r.manifests[0].signature,
        Signature::Consistent {
            scheme: SignatureScheme::Rsa2048Pkcs1Sha256
        }
    );
}

#[test]
fn gen2_cleaned_in_place_is_neither_relocated_nor_truncated() {
    let r = parse(&synth::gen2_cleaned(false, false).bytes);
    assert!(
        matches!(
            r.state,
            RegionState::Cleaned {
                relocated: false,
                truncated: false,
                ..
            }
        ),
        "{:?}",
        r.state
    );
}

#[test]
fn gen2_huffman_modules_are_judged_by_their_llut_chunks() {
    let huff = ["BUP", "KERNEL", "POLICY"];
    let s = synth::gen2_huffman(0x10000, 0x40000, synth::GEN2_MODULES, &huff);
    let r = parse(&s.bytes);
    assert_eq!(r.state, RegionState::Stock);
    for m in r.modules.iter().filter(|m| huff.contains(&m.name.as_str())) {
        assert_eq!(
            (m.compression, m.offset, m.present),
            (Compression::Huffman, None, true),
            "{}",
            m.name
        );
    }
    // Erase the chunks of KERNEL and POLICY as me_cleaner would: only BUP's stay.
    let mut b = s.bytes.clone();
    // KERNEL and POLICY are modules 3 and 4: 64 chunk slots each.
    let table = b.windows(4).position(|w| w == b"LLUT").unwrap() + 0x40;
    for module in [3usize, 4] {
        for c in 0..3 {
            let slot = table + 4 * (64 * module + c);
            let at = u32::from_le_bytes(b[slot..slot + 4].try_into().unwrap()) as usize;
            b[at..at + 0x40].fill(0xFF);
        }
    }
    let r = parse(&b);
    let present = |n: &str| r.modules.iter().find(|m| m.name == n).unwrap().present;
    assert!(present("BUP") && !present("KERNEL") && !present("POLICY"));
}

#[test]
fn code_partition_with_man_manifest_is_gen1_and_unchecked() {
    let s = synth::gen2_stock();
    let mut b = s.bytes.clone();
    let ftpr_entry = 0x10 + 0x20 + 3 * 0x20;
    b[ftpr_entry..ftpr_entry + 4].copy_from_slice(b"CODE");
    synth::refresh_fpt_checksum(&mut b, 0x10);
    b[s.manifest + 0x1C..s.manifest + 0x20].copy_from_slice(b"$MAN");
    let r = parse(&b);
    assert_eq!(r.generation, Some(Generation::Gen1));
    assert_eq!(r.family, Some(Family::Me));
    assert!(
        matches!(&r.manifests[0].signature, Signature::Unchecked { why } if why.contains("SHA-1"))
    );
    assert_eq!(r.state, RegionState::Stock);
}

#[test]
fn fpt_at_offset_zero_without_rom_bypass_is_read() {
    let mut b = synth::gen3_stock().bytes;
    let table = b[0x10..0x10 + 0x20 + 4 * 0x20].to_vec();
    b[..table.len()].copy_from_slice(&table);
    let r = parse(&b);
    assert_eq!(
        r.layout,
        Layout::ClassicFpt {
            fpt_offset: 0,
            rom_bypass: false
        }
    );
    assert_eq!(r.state, RegionState::Stock);
    assert_eq!(r.version.unwrap().to_string(), "11.8.82.3838");
}

#[test]
fn gen3_stock_region_reads_as_built() {
    let s = synth::gen3_stock();
    let r = parse(&s.bytes);
    assert_eq!(r.generation, Some(Generation::Gen3));
    assert_eq!(r.family, Some(Family::Csme));
    assert_eq!(r.version.unwrap().to_string(), "11.8.82.3838");
    assert_eq!(r.state, RegionState::Stock);
    let sku = r.sku.unwrap();
    assert_eq!((sku.sku_type, sku.platform), (SkuType::Consumer, Some("H")));
    assert_eq!(r.manifests[0].name, "FTPR.man");
    assert_eq!(r.manifests[0].offset, s.manifest as u64);
    let romb = r.partitions.iter().find(|p| p.name == "ROMB").unwrap();
    assert!(!romb.valid && romb.presence == Presence::NoData);
    let modules: Vec<&str> = r
        .modules
        .iter()
        .filter(|m| !m.name.contains('.'))
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(modules, synth::CSE_MODULES);
}

#[test]
fn gen3_with_non_essential_modules_erased_is_cleaned() {
    let s = synth::gen3_stock();
    let mut b = s.bytes.clone();
    let r = parse(&b);
    for m in r.modules.iter().filter(|m| !m.name.contains('.')) {
        if !["rbe", "kernel", "syslib", "bup"].contains(&m.name.as_str()) {
            let at = m.offset.unwrap() as usize;
            b[at..at + m.length as usize].fill(0xFF);
        }
    }
    match parse(&b).state {
        RegionState::Cleaned {
            remaining_modules,
            relocated,
            truncated,
            ..
        } => {
            assert_eq!(remaining_modules, ["rbe", "kernel", "syslib", "bup"]);
            assert!(!relocated && !truncated);
        }
        s => panic!("{s:?}"),
    }
}

#[test]
fn gen3_modules_cut_off_by_truncation_count_as_removed() {
    // Like `me_cleaner -t`: non-essential modules before the cut are erased,
    // those after it are gone with the truncated tail. Neither is "left".
    let s = synth::gen3_stock();
    let r = parse(&s.bytes);
    let essential = ["rbe", "kernel", "syslib", "bup"];
    let code: Vec<&Module> = r.modules.iter().filter(|m| !m.name.contains('.')).collect();
    // Cut after the last byte of the essential modules, their metadata and
    // the manifest, as the cleaner's minimum size does.
    let kept = |n: &str| n.ends_with(".man") || essential.contains(&n.trim_end_matches(".met"));
    let cut = r
        .modules
        .iter()
        .filter(|m| kept(&m.name))
        .map(|m| m.offset.unwrap() + m.length)
        .max()
        .unwrap() as usize;
    let past_cut = code
        .iter()
        .filter(|m| m.offset.unwrap() as usize >= cut)
        .count();
    assert!(
        past_cut > 0,
        "the synthetic image must have modules past the cut"
    );
    let mut b = s.bytes.clone();
    for m in code
        .iter()
        .filter(|m| !essential.contains(&m.name.as_str()))
    {
        let at = m.offset.unwrap() as usize;
        let end = (at + m.length as usize).min(cut);
        if at < end {
            b[at..end].fill(0xFF);
        }
    }
    b.truncate(cut);
    let r = parse(&b);
    match r.state {
        RegionState::Cleaned {
            remaining_modules, ..
        } => assert_eq!(remaining_modules, essential),
        s => panic!("{s:?}"),
    }
    for m in r
        .modules
        .iter()
        .filter(|m| m.offset.unwrap() as usize >= cut)
    {
        assert!(!m.present, "{} lies past the cut", m.name);
    }
}

#[test]
fn one_erased_module_alone_does_not_make_a_region_cleaned() {
    // CSME 11.8 stock images carry an all-0xFF placeholder module (fptemp).
    let mut b = synth::gen3_stock().bytes;
    let r = parse(&b);
    let pm = r.modules.iter().find(|m| m.name == "pm").unwrap();
    let at = pm.offset.unwrap() as usize;
    b[at..at + pm.length as usize].fill(0xFF);
    let r = parse(&b);
    assert_eq!(r.state, RegionState::Stock);
    assert!(!r.modules.iter().find(|m| m.name == "pm").unwrap().present);
}

#[test]
fn fpt_with_only_code_partitions_is_an_update_image_not_stock() {
    let mut b = synth::gen3_stock().bytes;
    let mfs_entry = 0x10 + 0x20 + 0x20;
    b[mfs_entry + 0x1F] = 0xFF; // MFS entry invalid: FTPR and NFTP remain
    synth::refresh_fpt_checksum(&mut b, 0x10);
    let r = parse(&b);
    assert!(
        matches!(&r.state, RegionState::Unknown { why } if why.contains("update")),
        "{:?}",
        r.state
    );
}

#[test]
fn ifwi16_region_reads_as_built() {
    let s = synth::ifwi16();
    let r = parse(&s.bytes);
    assert_eq!(r.layout, Layout::Ifwi16);
    assert_eq!(r.generation, Some(Generation::Ifwi));
    assert_eq!(r.family, Some(Family::Csme));
    assert_eq!(r.version.unwrap().to_string(), "14.0.10.1204");
    assert_eq!(r.state, RegionState::Stock);
    let ifwi = r.ifwi.as_ref().unwrap();
    assert_eq!(ifwi.data_partition, Some((0x1000, 0x5000)));
    assert_eq!(
        ifwi.boot_partitions,
        [(1, 0x6000, 0x10000), (2, 0x16000, 0x8000)]
    );
    let mfs = r.partitions.iter().find(|p| p.name == "MFS").unwrap();
    assert_eq!(
        (mfs.offset, mfs.source),
        (0x2000, PartitionSource::Fpt),
        "data FPT offsets are FPT-relative"
    );
    let ftpr = r.partitions.iter().find(|p| p.name == "FTPR").unwrap();
    assert_eq!(
        ftpr.source,
        PartitionSource::Bpdt {
            boot_partition: 1,
            secondary: false
        }
    );
    assert!(r.partitions.iter().any(|p| p.name == "NFTP"));
}

#[test]
fn ifwi17_region_with_rsa3072_pss_reads_as_built() {
    let s = synth::ifwi17();
    let r = parse(&s.bytes);
    assert_eq!(r.layout, Layout::Ifwi17);
    assert_eq!(r.version.unwrap().to_string(), "16.1.30.2307");
    assert_eq!(r.state, RegionState::Stock);
    let m = &r.manifests[0];
    assert_eq!(
        (m.header_version, m.key_bits, m.exponent),
        (0x21000, 3072, 65537)
    );
    assert_eq!(
        m.signature,
        Signature::Consistent {
            scheme: SignatureScheme::Rsa3072PssSha384
        }
    );
    assert_eq!(
        r.fpt.as_ref().map(|f| (f.header_version, f.checksum_ok)),
        Some((0x21, true))
    );
    assert_eq!(r.ifwi.as_ref().unwrap().table_crc_ok, Some(true));
}

#[test]
fn bare_bpdt_with_secondary_table_reads_as_built() {
    let s = synth::glk_bpdt();
    let r = parse(&s.bytes);
    assert_eq!(r.layout, Layout::Bpdt);
    assert_eq!(r.family, Some(Family::Cstxe));
    assert_eq!(r.state, RegionState::Stock);
    let nftp = r.partitions.iter().find(|p| p.name == "NFTP").unwrap();
    assert_eq!(
        (nftp.offset, nftp.source),
        (
            0x19000,
            PartitionSource::Bpdt {
                boot_partition: 0,
                secondary: true
            }
        )
    );
}

#[test]
fn ifwi_is_found_inside_a_bios_region() {
    let mut bios = vec![0xFFu8; 0x3000];
    bios.extend_from_slice(&synth::glk_bpdt().bytes);
    assert_eq!(find_ifwi_in_bios(&bios), Some(0x3000));
    assert_eq!(find_ifwi_in_bios(&synth::gen2_stock().bytes), None);
    // A BPDT signature without an FTPR holding a $CPD is not an IFWI.
    let mut fake = vec![0xFFu8; 0x2000];
    fake[..0x24].copy_from_slice(&synth::bpdt(1, &[(7, 0x100, 0x100)]));
    assert_eq!(find_ifwi_in_bios(&fake), None);
}

#[test]
fn erased_region_is_empty_not_an_error() {
    let r = parse(&vec![0xFFu8; 0x10000]);
    assert_eq!((r.layout, r.state), (Layout::Empty, RegionState::Empty));
    assert_eq!(parse(&vec![0u8; 0x1000]).state, RegionState::Empty);
}

#[test]
fn json_is_stable_for_the_main_fields() {
    let r = parse(&synth::gen3_stock().bytes);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["family"], "CSME");
    assert_eq!(v["generation"], "3");
    assert_eq!(v["state"]["state"], "stock");
    assert_eq!(v["layout"]["kind"], "classic_fpt");
    assert_eq!(v["manifests"][0]["signature"]["verdict"], "consistent");
}

// ---------------------------------------------------------------- refusals

#[test]
fn no_layout_is_an_error() {
    let mut b = vec![0x11u8; 0x1000];
    assert_eq!(parse_me_region(&b), Err(MeError::NoLayout));
    b[0] = 0;
    assert_eq!(parse_me_region(&b).unwrap_err().offset(), 0);
}

#[test]
fn tiny_region_is_truncated() {
    let e = parse_me_region(&[0xAA; 8]).unwrap_err();
    assert!(
        matches!(
            e,
            MeError::Truncated {
                structure: "ME region",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn fpt_table_running_past_the_region_is_truncated() {
    let s = synth::gen2_stock();
    let mut b = s.bytes[..0x1000].to_vec();
    le32(&mut b, 0x14, 200); // 200 entries of 0x20 bytes do not fit in 4 KiB
    let e = parse_me_region(&b).unwrap_err();
    assert!(
        matches!(
            e,
            MeError::Truncated {
                structure: "$FPT entry table",
                offset: 0x10,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn absurd_fpt_entry_count_is_refused() {
    let mut b = synth::gen2_stock().bytes;
    le32(&mut b, 0x14, 0x0100_0000);
    let e = parse_me_region(&b).unwrap_err();
    assert!(
        matches!(
            e,
            MeError::Malformed {
                structure: "$FPT header",
                offset: 0x14,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn bad_fpt_checksum8_is_corrupted_at_the_fpt() {
    for s in [synth::gen2_stock(), synth::gen3_stock()] {
        let mut b = s.bytes.clone();
        b[0x10 + 0xC] ^= 0x01;
        corrupted_at(&parse(&b), 0x10, "$FPT checksum8");
        // The ROM bypass is covered only by the 0x30-byte (gen 2) header.
        let mut b = s.bytes.clone();
        b[0x3] ^= 0x01;
        let r = parse(&b);
        if r.fpt.as_ref().unwrap().header_length == 0x30 {
            corrupted_at(&r, 0x10, "$FPT checksum8");
        } else {
            assert_eq!(r.state, RegionState::Stock);
        }
    }
}

#[test]
fn bad_fpt_crc32_is_corrupted_at_the_fpt() {
    let s = synth::ifwi17();
    let mut b = s.bytes.clone();
    let fpt = s.fpt.unwrap();
    b[fpt + 0x20 + 8] ^= 0x10; // an entry's offset: covered by the CRC
    corrupted_at(&parse(&b), fpt as u64, "$FPT CRC-32");
}

#[test]
fn bad_layout_table_crc_is_corrupted() {
    let mut b = synth::ifwi17().bytes;
    b[0x12] ^= 1; // flags byte, inside the CRC
    corrupted_at(&parse(&b), 0x14, "CRC-32");
}

#[test]
fn bad_bpdt_v2_crc_is_corrupted() {
    let s = synth::ifwi17();
    let mut b = s.bytes.clone();
    let bpdt = s.bpdt.unwrap();
    b[bpdt + 0x18 + 2] ^= 0x01; // flags of the FTPR entry, covered by the CRC
    corrupted_at(&parse(&b), bpdt as u64 + 8, "BPDT CRC-32");
}

#[test]
fn bad_cpd_checksum_is_corrupted_at_the_cpd() {
    for s in [synth::gen3_stock(), synth::ifwi17()] {
        let mut b = s.bytes.clone();
        let cpd = s.cpd.unwrap();
        b[cpd + 0xC + 3] ^= 0x40; // last byte of the partition name field
        let r = parse(&b);
        match &r.state {
            RegionState::Corrupted { offset, .. } => assert_eq!(*offset, cpd as u64),
            st => panic!("{st:?}"),
        }
    }
}

#[test]
fn ftpr_entry_out_of_bounds_is_corrupted() {
    let s = synth::gen2_stock();
    let mut b = s.bytes.clone();
    let ftpr_entry = 0x10 + 0x20 + 3 * 0x20;
    le32(&mut b, ftpr_entry + 8, 0x0FF0_0000);
    synth::refresh_fpt_checksum(&mut b, 0x10);
    corrupted_at(&parse(&b), ftpr_entry as u64, "OutOfRegion");
}

#[test]
fn module_data_offset_out_of_bounds_does_not_panic_and_counts_as_removed() {
    let s = synth::gen2_stock();
    let mut b = s.bytes.clone();
    // Not signed-consistent any more either: the module table is in the manifest.
    le32(&mut b, s.modules.unwrap() + 0x38, 0xFFFF_FF00);
    let r = parse(&b);
    assert!(!r.modules[0].present);
    assert!(matches!(r.state, RegionState::Corrupted { .. }));
}

#[test]
fn bpdt_entry_outside_its_boot_partition_is_corrupted() {
    let s = synth::ifwi16();
    let mut b = s.bytes.clone();
    let entry = s.bpdt.unwrap() + 0x18 + 12; // second entry: FTPR
    le32(&mut b, entry + 8, 0x0100_0000);
    corrupted_at(&parse(&b), entry as u64, "outside its boot partition");
}

#[test]
fn overlapping_layout_table_partitions_are_corrupted() {
    let mut b = synth::ifwi16().bytes;
    le32(&mut b, 0x20, 0x6000); // BP2 starts where BP1 starts
    corrupted_at(&parse(&b), 0x10, "overlap");
}

#[test]
fn overlapping_fpt_entries_are_not_damage() {
    // Stock CSME 11 nests FTUP over NFTP and DLMP over FTPR/MFS.
    let mut b = synth::gen3_stock().bytes;
    let mfs_entry = 0x10 + 0x20 + 0x20;
    le32(&mut b, mfs_entry + 8, 0x1800); // inside FTPR
    synth::refresh_fpt_checksum(&mut b, 0x10);
    assert_eq!(parse(&b).state, RegionState::Stock);
}

#[test]
fn secondary_bpdt_pointing_back_is_a_loop() {
    let s = synth::glk_bpdt();
    let mut b = s.bytes.clone();
    le32(&mut b, 0x18 + 12 + 4, 0); // the S-BPDT entry now points at the BPDT itself
    corrupted_at(&parse(&b), (0x18 + 12) as u64, "loops back");
    // And a secondary table that lists another secondary table.
    let mut b = s.bytes.clone();
    b[0x18000 + 0x18..0x18000 + 0x1A].copy_from_slice(&5u16.to_le_bytes());
    corrupted_at(&parse(&b), 0x18000 + 0x18, "secondary BPDT inside");
}

#[test]
fn altered_signed_bytes_make_the_signature_inconsistent() {
    for s in [synth::gen2_stock(), synth::gen3_stock(), synth::ifwi17()] {
        let mut b = s.bytes.clone();
        b[s.manifest + 0x2C] ^= 1; // SVN
        let r = parse(&b);
        assert!(
            matches!(r.manifests[0].signature, Signature::Inconsistent { .. }),
            "{:?}",
            r.manifests[0]
        );
        corrupted_at(&r, s.manifest as u64, "signature inconsistent");
        // The signature itself damaged: padding no longer decodes.
        let mut b = s.bytes.clone();
        let key = r.manifests[0].key_bits as usize / 8;
        b[s.manifest + 0x84 + key + 7] ^= 0x80;
        let r = parse(&b);
        assert!(
            matches!(&r.manifests[0].signature, Signature::Inconsistent { why, .. } if why.contains("not") || why.contains("malformed")),
            "{:?}",
            r.manifests[0].signature
        );
    }
}

#[test]
fn manifest_with_inconsistent_header_length_is_corrupted() {
    let s = synth::gen2_stock();
    let mut b = s.bytes.clone();
    le32(&mut b, s.manifest + 4, 0x20);
    corrupted_at(&parse(&b), s.manifest as u64 + 4, "header length");
}

#[test]
fn manifest_cut_short_is_corrupted_naming_the_manifest() {
    let s = synth::gen2_stock();
    let b = &s.bytes[..s.manifest + 0x200];
    let r = parse(b);
    corrupted_at(&r, s.manifest as u64, "manifest body");
}

#[test]
fn missing_mme_tag_is_corrupted_at_that_header() {
    let s = synth::gen2_stock();
    let mut b = s.bytes.clone();
    let third = s.modules.unwrap() + 2 * 0x60;
    b[third] = b'X';
    corrupted_at(&parse(&b), third as u64, "$MME");
}

#[test]
fn no_ftpr_in_the_fpt_is_corrupted() {
    let mut b = synth::gen3_stock().bytes;
    b[0x30..0x34].copy_from_slice(b"XXXX");
    synth::refresh_fpt_checksum(&mut b, 0x10);
    corrupted_at(&parse(&b), 0x10, "no FTPR");
}

#[test]
fn every_prefix_of_every_layout_parses_or_errs_without_panic() {
    for s in [
        synth::gen2_stock(),
        synth::gen3_stock(),
        synth::ifwi16(),
        synth::ifwi17(),
        synth::glk_bpdt(),
    ] {
        for cut in (0..s.bytes.len()).step_by(0x80) {
            let _ = parse_me_region(&s.bytes[..cut]);
        }
    }
}

/// Writes the synthetic regions as fuzz seeds into `$FORTROS_FUZZ_SEEDS`
/// (see docs/me-region.md): `cargo test -p fortros-agent write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes fuzz seeds; run by hand"]
fn write_fuzz_seeds() {
    let Some(dir) = std::env::var_os("FORTROS_FUZZ_SEEDS") else {
        panic!("set FORTROS_FUZZ_SEEDS to the seed folder");
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let all = [
        ("gen2", synth::gen2_stock()),
        ("gen2_cleaned", synth::gen2_cleaned(true, true)),
        ("gen3", synth::gen3_stock()),
        ("ifwi16", synth::ifwi16()),
        ("ifwi17", synth::ifwi17()),
        ("bpdt", synth::glk_bpdt()),
    ];
    for (name, s) in all {
        std::fs::write(dir.join(name), &s.bytes).unwrap();
    }
}

#[test]
fn random_byte_damage_never_panics() {
    // A small deterministic xorshift, so a failure reproduces.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for s in [
        synth::gen2_stock(),
        synth::gen3_stock(),
        synth::ifwi16(),
        synth::ifwi17(),
        synth::glk_bpdt(),
    ] {
        // Aim at the tables: the first 0x800 bytes of each structure.
        let targets: Vec<usize> = [
            s.fpt,
            Some(s.ftpr),
            Some(s.manifest),
            s.cpd,
            s.modules,
            s.bpdt,
            Some(0),
        ]
        .into_iter()
        .flatten()
        .collect();
        for _ in 0..200 {
            let mut b = s.bytes.clone();
            for _ in 0..1 + next() % 4 {
                let base = targets[(next() % targets.len() as u64) as usize];
                let at = (base + (next() % 0x800) as usize).min(b.len() - 1);
                b[at] = next() as u8;
            }
            let _ = parse_me_region(&b);
        }
    }
}

#[test]
fn every_code_partition_manifest_is_checked_not_only_ftpr() {
    for s in [
        synth::gen3_stock(),
        synth::ifwi16(),
        synth::ifwi17(),
        synth::glk_bpdt(),
    ] {
        let r = parse(&s.bytes);
        let nftp = r
            .manifests
            .iter()
            .find(|m| m.name == "NFTP.man")
            .expect("NFTP.man reported");
        assert!(matches!(nftp.signature, Signature::Consistent { .. }));
        assert!(
            r.manifests[0].name.starts_with("FTPR"),
            "FTPR manifest stays first"
        );
        let mut b = s.bytes.clone();
        b[nftp.offset as usize + 0x2C] ^= 1;
        corrupted_at(&parse(&b), nftp.offset, "NFTP.man signature inconsistent");
    }
}

#[test]
fn a_manifest_without_a_key_is_unchecked_not_corrupted() {
    let s = synth::ifwi16();
    let r = parse(&s.bytes);
    let rbep = r.manifests.iter().find(|m| m.name == "RBEP.man").unwrap();
    let mut b = s.bytes.clone();
    let at = rbep.offset as usize;
    b[at + 0x80..at + 0x80 + 0x104].fill(0); // modulus and exponent
    let r = parse(&b);
    let rbep = r.manifests.iter().find(|m| m.name == "RBEP.man").unwrap();
    assert!(matches!(&rbep.signature, Signature::Unchecked { why } if why.contains("unsigned")));
    assert_eq!(r.state, RegionState::Stock);
}

#[test]
fn module_hashes_follow_the_manifest_met_module_chain() {
    let s = synth::gen3_stock();
    let r = parse(&s.bytes);
    let code: Vec<&Module> = r.modules.iter().filter(|m| !m.name.contains('.')).collect();
    assert!(
        code.iter().all(|m| m.hash == Some(ModuleHash::Matches)),
        "{code:?}"
    );
    // One byte of module code changed: the .met hash no longer matches.
    let pm = code.iter().find(|m| m.name == "pm").unwrap();
    let mut b = s.bytes.clone();
    b[pm.offset.unwrap() as usize + 5] ^= 1;
    corrupted_at(
        &parse(&b),
        pm.offset.unwrap(),
        "SHA-256 of pm differs from pm.met",
    );
    // The .met changed to match altered code: the manifest does not list it.
    let met = r.modules.iter().find(|m| m.name == "pm.met").unwrap();
    let mut b = s.bytes.clone();
    b[met.offset.unwrap() as usize + 0x20] ^= 1;
    corrupted_at(
        &parse(&b),
        pm.offset.unwrap(),
        "pm.met is not the one the manifest lists",
    );
}
