//! `inspect` on every file of the shared corpus and on every assembled full
//! image: family, version, generation, state and disable bit as the
//! reference (§15) and CORPUS.tsv say. Skips, saying so, without the corpus.

use fortros_agent::image::descriptor::{Confidence, Platform};
use fortros_agent::image::disable_bit::DisableState;
use fortros_agent::image::inspect::{inspect, InputKind, MeLocation, State};
use fortros_agent::image::me::{Family, Generation};
use fortros_testkit::corpus::Corpus;

/// What one firmware is: family, version (major, minor, hotfix, build),
/// generation, and its state when inspected alone.
struct Firmware {
    file: &'static str,
    family: Family,
    version: (u16, u16, u16, u16),
    generation: Generation,
    state: State,
}

const FIRMWARE: &[Firmware] = &[
    Firmware {
        file: "cbblobs_samsung_lumpy_me.bin",
        family: Family::Me,
        version: (7, 1, 40, 1161),
        generation: Generation::Gen2,
        state: State::Stock,
    },
    Firmware {
        file: "cbblobs_google_link_me.bin",
        family: Family::Me,
        version: (8, 0, 20, 1513),
        generation: Generation::Gen2,
        state: State::Stock,
    },
    Firmware {
        file: "x210_me.bin",
        family: Family::Csme,
        version: (11, 8, 82, 3838),
        generation: Generation::Gen3,
        state: State::Stock,
    },
    Firmware {
        file: "darp6_me.rom",
        family: Family::Csme,
        version: (14, 0, 10, 1204),
        generation: Generation::Ifwi,
        state: State::Stock,
    },
    Firmware {
        file: "dasharo_msi_ms7d25_me.bin",
        family: Family::Csme,
        version: (16, 1, 30, 2307),
        generation: Generation::Ifwi,
        state: State::Stock,
    },
    Firmware {
        file: "cbblobs_facebook_fbg1701_me.bin",
        family: Family::Txe,
        version: (2, 0, 4, 3098),
        generation: Generation::Gen2,
        state: State::Stock,
    },
    Firmware {
        file: "dasharo_minnowmax_txe_sb.bin",
        family: Family::Txe,
        version: (1, 1, 4, 1145),
        generation: Generation::Gen2,
        state: State::Stock,
    },
    // CORPUS.tsv gives 4.0.50 without a build number.
    Firmware {
        file: "dasharo_vault_glk_ifwi.bin",
        family: Family::Cstxe,
        version: (4, 0, 50, u16::MAX),
        generation: Generation::Ifwi,
        state: State::Stock,
    },
    Firmware {
        file: "hl_x230_me_cleaned.bin",
        family: Family::Me,
        version: (8, 1, 30, 1350),
        generation: Generation::Gen2,
        state: State::Cleaned,
    },
    Firmware {
        file: "whitley_ignition_MeRegion.bin",
        family: Family::Cssps,
        version: (4, 2, 4, 14),
        generation: Generation::Gen3,
        state: State::Stock,
    },
];

/// What an assembled full image gives beyond its firmware.
struct Full {
    label: &'static str,
    firmware: &'static str,
    platform: Platform,
    disable: DisableState,
    /// Image offset of the byte holding the disable bit.
    disable_byte: Option<usize>,
    /// Where the firmware sits: ME region base, or BIOS-region offset (glk).
    me_base: u64,
    in_bios: bool,
    state: State,
}

const FULL: &[Full] = &[
    Full {
        label: "lumpy",
        firmware: "cbblobs_samsung_lumpy_me.bin",
        platform: Platform::CougarOrPantherPoint,
        disable: DisableState::Clear,
        disable_byte: Some(0x128),
        me_base: 0x1000,
        in_bios: false,
        state: State::Stock,
    },
    Full {
        label: "link",
        firmware: "cbblobs_google_link_me.bin",
        platform: Platform::CougarOrPantherPoint,
        disable: DisableState::Clear,
        disable_byte: Some(0x128),
        me_base: 0x1000,
        in_bios: false,
        state: State::Stock,
    },
    Full {
        label: "x210",
        firmware: "x210_me.bin",
        platform: Platform::SunrisePointLp,
        disable: DisableState::Clear,
        disable_byte: Some(0x102),
        me_base: 0x1000,
        in_bios: false,
        state: State::Stock,
    },
    Full {
        label: "darp6",
        firmware: "darp6_me.rom",
        platform: Platform::CometPointLp,
        disable: DisableState::Clear,
        disable_byte: Some(0x172),
        me_base: 0x1000,
        in_bios: false,
        state: State::Stock,
    },
    Full {
        label: "ms7d25",
        firmware: "dasharo_msi_ms7d25_me.bin",
        platform: Platform::AlderPointS,
        disable: DisableState::Clear,
        disable_byte: Some(0x1DE),
        me_base: 0x1000,
        in_bios: false,
        state: State::Stock,
    },
    Full {
        label: "fbg1701",
        firmware: "cbblobs_facebook_fbg1701_me.bin",
        platform: Platform::BayTrailOrBraswell,
        disable: DisableState::Clear,
        disable_byte: Some(0x128),
        me_base: 0x1000,
        in_bios: false,
        state: State::Stock,
    },
    Full {
        label: "minnowmax_sb",
        firmware: "dasharo_minnowmax_txe_sb.bin",
        platform: Platform::BayTrailOrBraswell,
        disable: DisableState::Clear,
        disable_byte: Some(0x128),
        me_base: 0x1000,
        in_bios: false,
        state: State::Stock,
    },
    Full {
        label: "glk",
        firmware: "dasharo_vault_glk_ifwi.bin",
        platform: Platform::GeminiLake,
        disable: DisableState::Unknown,
        disable_byte: None,
        me_base: 0x1000,
        in_bios: true,
        state: State::Stock,
    },
    Full {
        label: "x230_cleaned",
        firmware: "hl_x230_me_cleaned.bin",
        platform: Platform::CougarOrPantherPoint,
        disable: DisableState::Clear,
        disable_byte: Some(0x128),
        me_base: 0x3000,
        in_bios: false,
        state: State::Cleaned,
    },
];

fn firmware(file: &str) -> &'static Firmware {
    FIRMWARE.iter().find(|f| f.file == file).unwrap()
}

fn check_firmware(what: &str, me: &fortros_agent::image::me::MeRegion, f: &Firmware) {
    assert_eq!(me.family, Some(f.family), "{what}");
    let v = me.version.unwrap_or_else(|| panic!("{what}: no version"));
    assert_eq!(
        (v.major, v.minor, v.hotfix),
        (f.version.0, f.version.1, f.version.2),
        "{what}"
    );
    if f.version.3 != u16::MAX {
        assert_eq!(v.build, f.version.3, "{what}");
    }
    assert_eq!(me.generation, Some(f.generation), "{what}");
}

#[test]
fn every_me_file_alone() {
    let Some(corpus) = Corpus::open_or_skip("every_me_file_alone") else {
        return;
    };
    for file in corpus.files.iter().filter(|f| f.size != 4096) {
        let f = FIRMWARE
            .iter()
            .find(|f| f.file == file.file)
            .unwrap_or_else(|| panic!("no expectation for {}", file.file));
        let bytes = corpus.read(&file.file).unwrap();
        let r = inspect(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.file));
        assert_eq!(r.input, InputKind::MeRegionOnly, "{}", f.file);
        assert_eq!(r.state, f.state, "{}: {:?}", f.file, r.evidence);
        assert_eq!(r.digests.sha256, file.sha256, "{}", f.file);
        assert!(r.disable_bit.is_none() && r.descriptor.is_none());
        check_firmware(f.file, r.me.as_ref().unwrap().region.as_ref().unwrap(), f);
    }
}

#[test]
fn every_descriptor_alone() {
    let Some(corpus) = Corpus::open_or_skip("every_descriptor_alone") else {
        return;
    };
    for file in corpus.files.iter().filter(|f| f.size == 4096) {
        let r = inspect(&corpus.read(&file.file).unwrap()).unwrap();
        assert_eq!(r.input, InputKind::DescriptorOnly, "{}", file.file);
        // No firmware to classify and no disable bit set on any stock descriptor
        // (the Erying TGL-H trap included).
        assert_eq!(r.state, State::Unknown, "{}: {:?}", file.file, r.evidence);
        assert_ne!(
            r.disable_bit.unwrap().state,
            DisableState::Set,
            "{}",
            file.file
        );
    }
}

#[test]
fn every_assembled_full_image() {
    let Some(corpus) = Corpus::open_or_skip("every_assembled_full_image") else {
        return;
    };
    assert_eq!(
        corpus.full_images.len(),
        FULL.len(),
        "every full image has an expectation"
    );
    for e in FULL {
        let (size, sha) = &corpus.full_images[e.label];
        let image = corpus.assemble_full(e.label).unwrap();
        let r = inspect(&image).unwrap_or_else(|err| panic!("full:{}: {err}", e.label));
        let what = format!("full:{}", e.label);
        assert_eq!(r.input, InputKind::FullImage, "{what}");
        assert_eq!(
            (r.digests.size as u64, &r.digests.sha256),
            (*size, sha),
            "{what}"
        );
        assert_eq!(r.state, e.state, "{what}: {:?}", r.evidence);

        let d = r.descriptor.as_ref().unwrap();
        assert_eq!(d.platform.platform, Some(e.platform), "{what}");
        // The firmware corroborates both guesses.
        assert_eq!(
            d.platform.confidence,
            Confidence::Confirmed,
            "{what}: {:?}",
            d.platform
        );
        assert_eq!(
            d.version.confidence,
            Confidence::Confirmed,
            "{what}: {:?}",
            d.version
        );

        let bit = r.disable_bit.as_ref().unwrap();
        assert_eq!(bit.state, e.disable, "{what}: {bit:?}");
        assert_eq!(
            bit.bits.first().map(|b| b.byte_offset),
            e.disable_byte,
            "{what}"
        );

        let me = r.me.as_ref().unwrap();
        match me.location {
            MeLocation::MeRegion { base, .. } => assert!(!e.in_bios && base == e.me_base, "{what}"),
            MeLocation::BiosRegion { base, .. } => {
                assert!(e.in_bios && base == e.me_base, "{what}")
            }
            MeLocation::WholeInput { .. } => panic!("{what}: whole input"),
        }
        check_firmware(&what, me.region.as_ref().unwrap(), firmware(e.firmware));

        // Where the firmware file fills the ME region exactly, the region
        // digest is the file's digest from CORPUS.tsv.
        let file = corpus.files.iter().find(|f| f.file == e.firmware).unwrap();
        let region = d.me_region();
        if let Some(region) = region.filter(|r| r.len() as u64 == file.size) {
            let digest = r
                .digests
                .regions
                .iter()
                .find(|x| x.index == region.index)
                .unwrap();
            assert_eq!(
                digest.sha256.as_deref(),
                Some(file.sha256.as_str()),
                "{what}"
            );
        }
    }
}
