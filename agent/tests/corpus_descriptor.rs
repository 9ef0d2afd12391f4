//! The descriptor parser on every real descriptor in the shared corpus:
//! version, platform, ME region and strap count as the reference (§2.8)
//! records them. Skips, saying so, when the corpus is absent.

use fortros_agent::image::descriptor::{Descriptor, IfdVersion, Platform};
use fortros_testkit::corpus::Corpus;

struct Expect {
    file: &'static str,
    version: IfdVersion,
    platform: Option<Platform>,
    psl: usize,
    /// ME region (base, limit), or None when FLREG2 is disabled.
    me: Option<(u32, u32)>,
    flash: u64,
}

const EXPECT: &[Expect] = &[
    Expect {
        file: "cbblobs_samsung_lumpy_descriptor.bin",
        version: IfdVersion::V1,
        platform: Some(Platform::CougarOrPantherPoint),
        psl: 18,
        me: Some((0x1000, 0x17_FFFF)),
        flash: 8 << 20,
    },
    Expect {
        file: "cbblobs_google_link_descriptor.bin",
        version: IfdVersion::V1,
        platform: Some(Platform::CougarOrPantherPoint),
        psl: 18,
        me: Some((0x1000, 0x1F_FFFF)),
        flash: 8 << 20,
    },
    Expect {
        file: "hl_x230_descriptor.bin",
        version: IfdVersion::V1,
        platform: Some(Platform::CougarOrPantherPoint),
        psl: 18,
        me: Some((0x3000, 0x1_FFFF)),
        flash: 12 << 20,
    },
    Expect {
        file: "dasharo_minnowmax_descriptor.bin",
        version: IfdVersion::V1,
        platform: Some(Platform::BayTrailOrBraswell),
        psl: 11,
        me: Some((0x1000, 0x1F_FFFF)),
        flash: 8 << 20,
    },
    Expect {
        file: "cbblobs_facebook_fbg1701_descriptor.bin",
        version: IfdVersion::V1,
        platform: Some(Platform::BayTrailOrBraswell),
        psl: 14,
        me: Some((0x1000, 0x1F_FFFF)),
        flash: 8 << 20,
    },
    Expect {
        file: "x210_descriptor.bin",
        version: IfdVersion::V2,
        platform: Some(Platform::SunrisePointLp),
        psl: 66,
        me: Some((0x1000, 0x1F_FFFF)),
        flash: 8 << 20,
    },
    Expect {
        file: "hl_p10smws_descriptor.bin",
        version: IfdVersion::V2,
        platform: Some(Platform::SunrisePointH),
        psl: 88,
        me: Some((0x1000, 0x7F_FFFF)),
        flash: 16 << 20,
    },
    Expect {
        file: "cbblobs_ocp_tiogapass_descriptor.bin",
        version: IfdVersion::V2,
        platform: Some(Platform::Lewisburg),
        psl: 139,
        me: Some((0x3000, 0xA2_5FFF)),
        flash: 32 << 20,
    },
    Expect {
        file: "darp6_fd.rom",
        version: IfdVersion::V2,
        platform: Some(Platform::CometPointLp),
        psl: 69,
        me: Some((0x1000, 0x3F_FFFF)),
        flash: 16 << 20,
    },
    Expect {
        file: "dasharo_vault_cml_descriptor.bin",
        version: IfdVersion::V2,
        platform: Some(Platform::CometPointLp),
        psl: 69,
        me: Some((0x1000, 0x5F_FFFF)),
        flash: 16 << 20,
    },
    Expect {
        file: "cbblobs_erying_tgl_fd.bin",
        version: IfdVersion::V2,
        platform: Some(Platform::TigerPointH),
        psl: 101,
        me: Some((0x1000, 0x4F_FFFF)),
        flash: 16 << 20,
    },
    Expect {
        file: "dasharo_msi_ms7d25_descriptor.bin",
        version: IfdVersion::V2,
        platform: Some(Platform::AlderPointS),
        psl: 115,
        me: Some((0x1000, 0x3D_8FFF)),
        flash: 32 << 20,
    },
    Expect {
        file: "dasharo_vault_glk_descriptor.bin",
        version: IfdVersion::V2,
        platform: Some(Platform::GeminiLake),
        psl: 23,
        me: None,
        flash: 8 << 20,
    },
];

#[test]
fn corpus_descriptors_parse_as_the_reference_says() {
    let Some(corpus) = Corpus::open_or_skip("corpus_descriptors_parse_as_the_reference_says")
    else {
        return;
    };
    for e in EXPECT {
        let bytes = corpus.read(e.file).expect(e.file);
        let d = Descriptor::parse(&bytes).unwrap_or_else(|err| panic!("{}: {err}", e.file));
        assert_eq!(d.signature_offset, 0x10, "{}", e.file);
        assert_eq!(
            d.version.version,
            Some(e.version),
            "{}: {:?}",
            e.file,
            d.version
        );
        assert_eq!(
            d.platform.platform, e.platform,
            "{}: {:?}",
            e.file, d.platform
        );
        assert_eq!(d.pch_straps.len(), e.psl, "{}", e.file);
        assert_eq!(d.me_region().map(|r| (r.base, r.limit)), e.me, "{}", e.file);
        assert_eq!(d.component.total_size, Some(e.flash), "{}", e.file);
        // The descriptor region is always the first 4 KiB.
        let r0 = d.region(0).unwrap();
        assert_eq!(
            (r0.enabled, r0.base, r0.limit),
            (true, 0, 0xFFF),
            "{}",
            e.file
        );
    }
}

#[test]
fn every_corpus_descriptor_is_covered() {
    let Some(corpus) = Corpus::open_or_skip("every_corpus_descriptor_is_covered") else {
        return;
    };
    for f in corpus.files.iter().filter(|f| f.size == 4096) {
        assert!(
            EXPECT.iter().any(|e| e.file == f.file),
            "no expectation for {}",
            f.file
        );
    }
}

#[test]
fn erying_tgl_is_v2_although_its_read_clock_says_v1() {
    let Some(corpus) = Corpus::open_or_skip("erying_tgl_is_v2_although_its_read_clock_says_v1")
    else {
        return;
    };
    let d = Descriptor::parse(&corpus.read("cbblobs_erying_tgl_fd.bin").unwrap()).unwrap();
    assert_eq!(d.component.read_clock, 0);
    assert_eq!(d.version.version, Some(IfdVersion::V2));
    // The trap: PCHSTRP0 bit 16 is set on this stock descriptor.
    assert_eq!(d.pch_strap(0).unwrap() & (1 << 16), 1 << 16);
}

#[test]
fn corpus_disable_bits_are_clear_or_unknown_never_a_false_set() {
    use fortros_agent::image::disable_bit::{self, DisableState};
    let Some(corpus) =
        Corpus::open_or_skip("corpus_disable_bits_are_clear_or_unknown_never_a_false_set")
    else {
        return;
    };
    // (file, state, byte offset of the bit) — every stock descriptor has it clear
    // (reference §3.1); no location is known for Lewisburg and Gemini Lake.
    let expect: &[(&str, DisableState, Option<usize>)] = &[
        (
            "cbblobs_samsung_lumpy_descriptor.bin",
            DisableState::Clear,
            Some(0x128),
        ),
        (
            "cbblobs_google_link_descriptor.bin",
            DisableState::Clear,
            Some(0x128),
        ),
        ("hl_x230_descriptor.bin", DisableState::Clear, Some(0x128)),
        (
            "dasharo_minnowmax_descriptor.bin",
            DisableState::Clear,
            Some(0x128),
        ),
        (
            "cbblobs_facebook_fbg1701_descriptor.bin",
            DisableState::Clear,
            Some(0x128),
        ),
        ("x210_descriptor.bin", DisableState::Clear, Some(0x102)),
        (
            "hl_p10smws_descriptor.bin",
            DisableState::Clear,
            Some(0x102),
        ),
        ("darp6_fd.rom", DisableState::Clear, Some(0x172)),
        (
            "dasharo_vault_cml_descriptor.bin",
            DisableState::Clear,
            Some(0x172),
        ),
        (
            "cbblobs_erying_tgl_fd.bin",
            DisableState::Clear,
            Some(0x196),
        ),
        (
            "dasharo_msi_ms7d25_descriptor.bin",
            DisableState::Clear,
            Some(0x1DE),
        ),
        (
            "cbblobs_ocp_tiogapass_descriptor.bin",
            DisableState::Unknown,
            None,
        ),
        (
            "dasharo_vault_glk_descriptor.bin",
            DisableState::Unknown,
            None,
        ),
    ];
    for (file, state, offset) in expect {
        let d = Descriptor::parse(&corpus.read(file).unwrap()).unwrap();
        let bit = disable_bit::read(&d, None);
        assert_eq!(bit.state, *state, "{file}: {bit:?}");
        assert_eq!(bit.bits.first().map(|b| b.byte_offset), *offset, "{file}");
    }
}
