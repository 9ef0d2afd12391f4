use super::*;
use fortros_testkit::synth::descriptor::{flreg, DescriptorBuilder};

#[test]
fn v2_descriptor_regions_masters_straps() {
    let d = Descriptor::parse(&DescriptorBuilder::v2().pch_strap(5, 0x1234_5678).build()).unwrap();
    assert_eq!(d.signature_offset, 0x10);
    assert_eq!(d.version.version, Some(IfdVersion::V2));
    assert_eq!(d.version.confidence, Confidence::Confirmed);
    assert_eq!(d.regions.len(), 16);
    let me = d.me_region().unwrap();
    assert_eq!(
        (me.base, me.limit, me.len()),
        (0x1000, 0x1F_FFFF, 0x1F_F000)
    );
    assert_eq!(d.region(1).unwrap().range(), Some(0x20_0000..0x80_0000));
    assert!(!d.region(3).unwrap().enabled, "GbE disabled");
    assert_eq!(d.enabled_regions().count(), 3);
    assert_eq!(d.pch_straps.len(), 66);
    assert_eq!(d.pch_strap(5), Some(0x1234_5678));
    assert_eq!(d.mch_straps.len(), 3);
    assert_eq!(d.masters.len(), 5);
    let host = &d.masters[0];
    assert_eq!(host.read, vec![0, 1, 2, 3]);
    assert_eq!(host.write, vec![1, 3]);
    assert!(!host.can_write(0), "descriptor locked for the host");
    assert_eq!(d.masters[1].write, vec![2]);
    assert_eq!(d.component.total_size, Some(8 << 20));
    assert_eq!(d.platform.platform, Some(Platform::SunrisePointLp));
    assert_eq!(d.platform.confidence, Confidence::Probable);
}

#[test]
fn v1_descriptor_has_five_regions_and_three_masters() {
    let d = Descriptor::parse(&DescriptorBuilder::v1().build()).unwrap();
    assert_eq!(d.version.version, Some(IfdVersion::V1));
    assert_eq!(d.version.confidence, Confidence::Confirmed);
    assert_eq!(d.regions.len(), 5);
    assert_eq!(d.masters.len(), 3);
    // 0x0A0B0000: read 0,1,3 / write 1,3 (ifdtool's v1 lock for the host).
    assert_eq!(d.masters[0].read, vec![0, 1, 3]);
    assert_eq!(d.masters[0].write, vec![1, 3]);
    assert_eq!(d.map.flmap3, None);
    assert_eq!(d.platform.platform, Some(Platform::CougarOrPantherPoint));
    assert_eq!(d.me_region().unwrap().base, 0x1000);
}

#[test]
fn signature_at_zero_is_ich_v1() {
    let d = Descriptor::parse(&DescriptorBuilder::v1().signature_at_zero().build()).unwrap();
    assert_eq!(d.signature_offset, 0);
    assert_eq!(d.version.version, Some(IfdVersion::V1));
    assert_eq!(d.platform.platform, Some(Platform::Ich8To10));
}

#[test]
fn read_clock_zero_does_not_make_a_v2_descriptor_v1() {
    // The 500-series trap: v2 layout, read clock 0.
    let d = Descriptor::parse(&DescriptorBuilder::v2().read_clock(0).build()).unwrap();
    assert_eq!(d.version.version, Some(IfdVersion::V2));
    assert_eq!(d.version.confidence, Confidence::Probable);
    assert!(d.version.evidence.iter().any(|e| e.contains("not trusted")));
}

#[test]
fn unknown_layout_gives_unknown_version_and_platform() {
    // FMBA 0x70: neither layout.
    let b = DescriptorBuilder::v2();
    let mut bytes = b.build();
    bytes[0x18] = 0x07;
    let d = Descriptor::parse(&bytes).unwrap();
    assert_eq!(d.version.version, None);
    assert_eq!(d.version.confidence, Confidence::Unknown);
    assert_eq!(d.platform.platform, None);
}

#[test]
fn unknown_v2_shape_is_unknown_platform() {
    let d = Descriptor::parse(&DescriptorBuilder::v2().shape(77, 2, 0x400, 0x40).build()).unwrap();
    assert_eq!(d.platform.platform, None);
    assert!(d.platform.evidence[0].contains("matches no known descriptor"));
}

#[test]
fn disabled_me_region_is_reported_not_dropped() {
    let d = Descriptor::parse(&DescriptorBuilder::v2().disable_region(2).build()).unwrap();
    let me = d.region(2).unwrap();
    assert!(!me.enabled);
    assert_eq!(me.raw, 0x7FFF);
    assert!(d.me_region().is_none());
}

#[test]
fn limit_below_base_is_disabled() {
    let d = Descriptor::parse(&DescriptorBuilder::v1().flreg_raw(4, 0x0000_0FFF).build()).unwrap();
    assert!(!d.region(4).unwrap().enabled);
}

#[test]
fn no_signature_is_refused() {
    assert_eq!(
        Descriptor::parse(&[0xFF; 4096]),
        Err(DescriptorError::NoSignature)
    );
    assert_eq!(Descriptor::parse(&[]), Err(DescriptorError::NoSignature));
}

#[test]
fn truncated_descriptor_names_the_structure() {
    let bytes = DescriptorBuilder::v2().build();
    // Cut in the middle of the PCH straps (0x100 + 66*4).
    let err = Descriptor::parse(&bytes[..0x180]).unwrap_err();
    match err {
        DescriptorError::Truncated {
            structure, offset, ..
        } => {
            assert!(structure.contains("PCH straps"), "{structure}");
            assert_eq!(offset, 0x180);
        }
        e => panic!("{e:?}"),
    }
    // Cut inside the map.
    let err = Descriptor::parse(&bytes[..0x1A]).unwrap_err();
    assert!(err.to_string().contains("FLMAP"), "{err}");
}

#[test]
fn overlapping_regions_are_refused() {
    let bytes = DescriptorBuilder::v2()
        .region(3, 0x1F_0000, 0x1F_FFFF)
        .build();
    let err = Descriptor::parse(&bytes).unwrap_err();
    match &err {
        DescriptorError::Overlap { a, b, offset, .. } => {
            assert_eq!((*a, *b, *offset), (2, 3, 0x4C));
        }
        e => panic!("{e:?}"),
    }
    assert!(err.to_string().contains("overlaps"));
}

#[test]
fn section_pointing_into_the_map_is_refused() {
    // FRBA = 0x10: the signature itself.
    let bytes = DescriptorBuilder::v2().patch(0x16, &[0x01]).build();
    let err = Descriptor::parse(&bytes).unwrap_err();
    assert_eq!(
        err,
        DescriptorError::SectionOutOfBounds {
            structure: "region section (FRBA)",
            offset: 0x10
        }
    );
}

#[test]
fn region_past_the_image_end_is_refused_by_check_fits() {
    let d = Descriptor::parse(&DescriptorBuilder::v2().build()).unwrap();
    assert!(d.check_fits(8 << 20).is_ok());
    let err = d.check_fits(4 << 20).unwrap_err();
    assert!(
        matches!(err, DescriptorError::RegionOutOfImage { index: 1, .. }),
        "{err:?}"
    );
}

#[test]
fn flreg_helper_round_trips() {
    let d = Descriptor::parse(
        &DescriptorBuilder::v2()
            .flreg_raw(5, flreg(0x80_0000, 0x80_FFFF))
            .build(),
    );
    // Region 5 lies just past the BIOS region (ends 0x7FFFFF), overlapping nothing.
    let d = d.unwrap();
    assert_eq!(d.region(5).unwrap().range(), Some(0x80_0000..0x81_0000));
}

#[test]
fn hostile_maps_never_panic() {
    // Every value of the FLMAP bytes that select bases and counts.
    let base = DescriptorBuilder::v2().build();
    for pos in 0x14..0x20 {
        for v in [0x00, 0x01, 0x02, 0x7F, 0x80, 0xFE, 0xFF] {
            let mut b = base.clone();
            b[pos] = v;
            let _ = Descriptor::parse(&b);
            let _ = Descriptor::parse(&b[..0x200]);
        }
    }
}
