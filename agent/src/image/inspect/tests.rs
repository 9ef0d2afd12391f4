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
