use super::*;
use fortros_testkit::synth::descriptor::DescriptorBuilder;

fn tgl_h() -> DescriptorBuilder {
    DescriptorBuilder::v2()
        .shape(101, 1, 0xB00, 0x11)
        .read_clock(0)
}

#[test]
fn descriptor_alone_with_clear_strap_is_unknown() {
    let r = inspect(&DescriptorBuilder::v2().build()).unwrap();
    assert_eq!(r.input, InputKind::DescriptorOnly);
    assert_eq!(r.state, State::Unknown);
    assert!(r.me.is_none());
    assert_eq!(r.disable_bit.as_ref().unwrap().state, DisableState::Clear);
    assert!(r.evidence.iter().any(|e| e.contains("descriptor alone")));
    assert_eq!(r.digests.size, 0x1000);
}

#[test]
fn descriptor_alone_with_hap_set_is_disable_bit_set() {
    let r = inspect(
        &DescriptorBuilder::v2()
            .set_pch_strap_bits(0, 1 << 16)
            .build(),
    )
    .unwrap();
    assert_eq!(r.state, State::DisableBitSet);
    assert!(
        r.evidence
            .iter()
            .any(|e| e.contains("PCHSTRP0 bit 16 = 1 at byte 0x102")),
        "{:?}",
        r.evidence
    );
}

#[test]
fn tgl_h_trap_is_not_reported_as_disabled() {
    let r = inspect(&tgl_h().set_pch_strap_bits(0, 1 << 16).build()).unwrap();
    assert_ne!(r.state, State::DisableBitSet);
    let bit = r.disable_bit.unwrap();
    assert_eq!(bit.state, DisableState::Clear);
    assert_eq!(bit.bits[0].name, "PCHSTRP37 bit 16");
}

#[test]
fn unknown_platform_gives_unknown_disable_bit() {
    let b = DescriptorBuilder::v2()
        .shape(77, 2, 0x400, 0x40)
        .set_pch_strap_bits(0, 1 << 16);
    let r = inspect(&b.build()).unwrap();
    assert_eq!(r.state, State::Unknown);
    assert_eq!(r.disable_bit.unwrap().state, DisableState::Unknown);
}

#[test]
fn full_image_has_region_digests_and_boot_guard_hints() {
    let image = DescriptorBuilder::v2().build_image(8 << 20);
    let r = inspect(&image).unwrap();
    assert_eq!(r.input, InputKind::FullImage);
    assert_eq!(r.digests.regions.len(), 3);
    assert!(r.digests.regions.iter().all(|d| d.sha256.is_some()));
    assert_eq!(r.boot_guard.as_ref().unwrap().fit_offset, None);
    let me = r.me.as_ref().unwrap();
    assert_eq!(
        me.location,
        MeLocation::MeRegion {
            base: 0x1000,
            len: 0x1F_F000
        }
    );
}

#[test]
fn full_image_shorter_than_its_regions_is_refused() {
    let image = DescriptorBuilder::v2().build_image(4 << 20);
    let err = inspect(&image).unwrap_err();
    assert!(
        matches!(
            err,
            InspectError::Descriptor(DescriptorError::RegionOutOfImage { index: 1, .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.offset(), 0x44);
    assert!(err.to_string().contains("FLREG1 at 0x44"), "{err}");
}

#[test]
fn garbage_and_empty_inputs_are_refused() {
    assert_eq!(inspect(&[]).unwrap_err(), InspectError::Empty);
    let err = inspect(&[0x42; 4096]).unwrap_err();
    assert!(matches!(err, InspectError::NotAnImage(_)), "{err:?}");
    assert!(err.to_string().starts_with("not a flash image"));
}

#[test]
fn overlapping_regions_are_refused_with_offset() {
    let image = DescriptorBuilder::v2()
        .region(3, 0x10_0000, 0x10_FFFF)
        .build_image(8 << 20);
    let err = inspect(&image).unwrap_err();
    assert_eq!(err.offset(), 0x4C);
}

#[test]
fn ich_image_with_region_disabled_and_medisable_set_is_cleaned() {
    let b = DescriptorBuilder::v1()
        .signature_at_zero()
        .disable_region(2)
        .pch_strap(0, 1)
        .mch_strap(0, 1);
    let r = inspect(&b.build_image(8 << 20)).unwrap();
    assert_eq!(r.state, State::CleanedAndDisableBitSet, "{:?}", r.evidence);
}

#[test]
fn report_serializes_with_stable_top_level_keys() {
    let r = inspect(&DescriptorBuilder::v2().build_image(8 << 20)).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    for k in [
        "format",
        "input",
        "state",
        "evidence",
        "digests",
        "descriptor",
        "disable_bit",
        "me",
        "boot_guard",
    ] {
        assert!(keys.contains(&k), "missing {k}: {keys:?}");
    }
    assert_eq!(v["format"], 1);
    assert_eq!(v["input"], "full_image");
    assert_eq!(v["descriptor"]["pch_straps"][0], "0x00000000");
}

// ---- Full images built from the descriptor and ME builders ----

use fortros_testkit::synth::descriptor::{full_image_with_ifwi_in_bios, full_image_with_me};
use fortros_testkit::synth::me;

const MIB: usize = 1 << 20;

fn cml_u() -> DescriptorBuilder {
    DescriptorBuilder::v2()
        .shape(69, 3, 0x300, 0x34)
        .read_clock(4)
}
fn adl_s() -> DescriptorBuilder {
    DescriptorBuilder::v2()
        .shape(115, 1, 0x700, 0x14)
        .read_clock(0)
}
fn glk() -> DescriptorBuilder {
    DescriptorBuilder::v2().shape(23, 0, 0, 0).read_clock(4)
}

#[test]
fn gen2_stock_in_a_v1_image() {
    let image = full_image_with_me(DescriptorBuilder::v1(), &me::gen2_stock().bytes, MIB);
    let r = inspect(&image).unwrap();
    assert_eq!(r.state, State::Stock, "{:?}", r.evidence);
    let d = r.descriptor.as_ref().unwrap();
    assert_eq!(d.platform.platform, Some(Platform::CougarOrPantherPoint));
    assert_eq!(
        d.platform.confidence,
        super::super::descriptor::Confidence::Confirmed
    );
    assert_eq!(r.disable_bit.unwrap().bits[0].byte_offset, 0x128);
}

#[test]
fn gen2_with_altmedisable_is_disable_bit_set() {
    let b = DescriptorBuilder::v1().set_pch_strap_bits(10, 0x80);
    let r = inspect(&full_image_with_me(b, &me::gen2_stock().bytes, MIB)).unwrap();
    assert_eq!(r.state, State::DisableBitSet, "{:?}", r.evidence);
}

#[test]
fn cleaned_gen2_with_and_without_the_bit() {
    let cleaned = me::gen2_cleaned(true, true).bytes;
    let r = inspect(&full_image_with_me(DescriptorBuilder::v1(), &cleaned, MIB)).unwrap();
    assert_eq!(r.state, State::Cleaned, "{:?}", r.evidence);
    assert!(
        r.evidence.iter().any(|e| e.contains("relocated")),
        "{:?}",
        r.evidence
    );
    let b = DescriptorBuilder::v1().set_pch_strap_bits(10, 0x80);
    let r = inspect(&full_image_with_me(b, &cleaned, MIB)).unwrap();
    assert_eq!(r.state, State::CleanedAndDisableBitSet);
}

#[test]
fn gen3_with_hap_set_and_clear() {
    let gen3 = me::gen3_stock().bytes;
    let r = inspect(&full_image_with_me(DescriptorBuilder::v2(), &gen3, MIB)).unwrap();
    assert_eq!(r.state, State::Stock, "{:?}", r.evidence);
    let b = DescriptorBuilder::v2().set_pch_strap_bits(0, 1 << 16);
    let r = inspect(&full_image_with_me(b, &gen3, MIB)).unwrap();
    assert_eq!(r.state, State::DisableBitSet);
}

#[test]
fn ifwi16_on_comet_point_lp_reads_pchstrp28() {
    let ifwi = me::ifwi16().bytes;
    let r = inspect(&full_image_with_me(cml_u(), &ifwi, MIB)).unwrap();
    assert_eq!(r.state, State::Stock, "{:?}", r.evidence);
    let b = cml_u().set_pch_strap_bits(0, 1 << 16);
    let r = inspect(&full_image_with_me(b, &ifwi, MIB)).unwrap();
    assert_eq!(r.state, State::Stock, "PCHSTRP0 bit 16 is not HAP here");
    let b = cml_u().set_pch_strap_bits(28, 1 << 16);
    let r = inspect(&full_image_with_me(b, &ifwi, MIB)).unwrap();
    assert_eq!(r.state, State::DisableBitSet);
}

#[test]
fn ifwi17_on_alder_point_s_reads_pchstrp55() {
    let b = adl_s().set_pch_strap_bits(55, 1 << 16);
    let r = inspect(&full_image_with_me(b, &me::ifwi17().bytes, 2 * MIB)).unwrap();
    assert_eq!(r.state, State::DisableBitSet, "{:?}", r.evidence);
    let d = r.descriptor.unwrap();
    assert_eq!(
        d.version.confidence,
        super::super::descriptor::Confidence::Confirmed
    );
}

#[test]
fn firmware_contradicting_the_platform_makes_the_bit_unknown() {
    // A Sunrise Point-LP shape holding CSME 14: the guess is dropped, and the
    // set PCHSTRP0 bit 16 is not believed.
    let b = DescriptorBuilder::v2().set_pch_strap_bits(0, 1 << 16);
    let r = inspect(&full_image_with_me(b, &me::ifwi16().bytes, MIB)).unwrap();
    let d = r.descriptor.as_ref().unwrap();
    assert_eq!(d.platform.platform, None, "{:?}", d.platform);
    assert_eq!(r.disable_bit.as_ref().unwrap().state, DisableState::Unknown);
    assert_eq!(r.state, State::Stock);
}

#[test]
fn gemini_lake_firmware_in_the_bios_region() {
    let r = inspect(&full_image_with_ifwi_in_bios(
        glk(),
        &me::glk_bpdt().bytes,
        MIB,
    ))
    .unwrap();
    assert_eq!(r.state, State::Stock, "{:?}", r.evidence);
    let me = r.me.unwrap();
    assert_eq!(
        me.location,
        MeLocation::BiosRegion {
            base: 0x1000,
            len: (MIB - 0x1000) as u64
        }
    );
    assert_eq!(me.region.unwrap().family, Some(Family::Cstxe));
    assert_eq!(r.disable_bit.unwrap().state, DisableState::Unknown);
}

#[test]
fn damaged_fpt_is_corrupted_with_an_image_offset() {
    let synth = me::gen3_stock();
    let mut bytes = synth.bytes.clone();
    let fpt = synth.fpt.unwrap();
    bytes[fpt + 0x1B] ^= 0x55; // the $FPT header checksum byte
    let r = inspect(&full_image_with_me(DescriptorBuilder::v2(), &bytes, MIB)).unwrap();
    assert_eq!(r.state, State::Corrupted, "{:?}", r.evidence);
    assert!(
        r.evidence.iter().any(|e| e.contains("image offset 0x")),
        "{:?}",
        r.evidence
    );
}

#[test]
fn unparseable_me_region_is_corrupted() {
    let garbage = vec![0x42u8; 0x10000];
    let r = inspect(&full_image_with_me(DescriptorBuilder::v2(), &garbage, MIB)).unwrap();
    assert_eq!(r.state, State::Corrupted);
    assert!(r.me.unwrap().error.unwrap().contains("image offset 0x1000"));
}

#[test]
fn empty_me_region_is_unknown() {
    let r = inspect(&DescriptorBuilder::v2().build_image(8 * MIB)).unwrap();
    assert_eq!(r.state, State::Unknown);
    assert!(
        r.evidence.iter().any(|e| e.contains("empty")),
        "{:?}",
        r.evidence
    );
}
