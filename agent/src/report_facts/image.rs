//! The flash image as the parser saw it ([`ImageReport`]) → the wire's
//! [`FlashFacts`]: region digests, descriptor facts, ME image facts.

use crate::image::descriptor::Descriptor;
use crate::image::disable_bit::DisableState;
use crate::image::inspect::{family_name, ImageReport, InputKind, MeFinding, State};
use crate::image::me::{MeRegion, Presence, RegionState};
use fortros_wire::report::{
    DescriptorFacts, FlashFacts, MeImageFacts, MeImageState, RegionDigest, RegionKind,
};
use fortros_wire::Digest32;

/// Descriptor region number → wire region kind (Intel's numbering).
pub fn region_kind(index: u8) -> RegionKind {
    match index {
        0 => RegionKind::Descriptor,
        1 => RegionKind::Bios,
        2 => RegionKind::Me,
        3 => RegionKind::Gbe,
        4 => RegionKind::Platform,
        5 => RegionKind::DeviceExpansion,
        8 => RegionKind::Ec,
        n => RegionKind::Other(n),
    }
}

fn digest32(hex_str: &str) -> Option<Digest32> {
    let v: [u8; 32] = hex::decode(hex_str).ok()?.try_into().ok()?;
    Some(Digest32(v))
}

/// The flash facts from the bytes read at this boot (`size`, `sha256`) and
/// their inspection (`None` when the bytes are not an image at all).
pub fn flash_facts(size: u64, sha256: [u8; 32], inspected: Option<&ImageReport>) -> FlashFacts {
    FlashFacts {
        size,
        image_sha256: Digest32(sha256),
        regions: inspected.map(region_digests).unwrap_or_default(),
        descriptor: inspected.and_then(descriptor_facts),
        me_image: inspected.and_then(me_image_facts),
    }
}

/// Regions wholly inside the image, with inclusive limits.
fn region_digests(r: &ImageReport) -> Vec<RegionDigest> {
    r.digests
        .regions
        .iter()
        .filter_map(|d| {
            let sha = digest32(d.sha256.as_deref()?)?;
            let limit = d.base.checked_add(u32::try_from(d.len).ok()?)?;
            Some(RegionDigest {
                region: region_kind(d.index),
                base: d.base,
                limit: limit.checked_sub(1)?,
                sha256: sha,
            })
        })
        .collect()
}

/// What the host CPU/BIOS master (FLMSTR1) may write: the regions that
/// decide whether the node can neutralize its own ME.
fn host_can_write(desc: &Descriptor, region: u8) -> Option<bool> {
    desc.masters
        .iter()
        .find(|m| m.number == 1)
        .map(|m| m.can_write(region))
}

/// Descriptor facts; `None` for an input without a descriptor.
pub fn descriptor_facts(r: &ImageReport) -> Option<DescriptorFacts> {
    let desc = r.descriptor.as_ref()?;
    let me_disable_bit = r.disable_bit.as_ref().and_then(|b| match b.state {
        DisableState::Set => Some(true),
        DisableState::Clear => Some(false),
        // Partly set, or not known for this platform: no yes/no answer.
        DisableState::Partial | DisableState::Unknown => None,
    });
    Some(DescriptorFacts {
        valid: true,
        platform: desc.platform.platform.map(|p| p.name().to_string()),
        me_disable_bit,
        me_region_writable_by_host: host_can_write(desc, 2),
        descriptor_writable_by_host: host_can_write(desc, 0),
        master_access: desc.masters.iter().map(|m| m.raw).collect(),
    })
}

/// The image state in the wire's words. "cleaned + disable bit set" has no
/// variant of its own (adding one is a major format change): it is
/// `DisableBitSet`, as the wire type documents ("stock or cleaned code");
/// the partitions list and extension 1 (`image_state`) tell the two apart.
fn wire_state(r: &ImageReport) -> MeImageState {
    match r.state {
        State::Stock => MeImageState::Stock,
        State::Cleaned => MeImageState::Cleaned,
        State::DisableBitSet | State::CleanedAndDisableBitSet => MeImageState::DisableBitSet,
        State::Corrupted => MeImageState::Corrupted {
            reason: corruption_reason(r),
        },
        State::Unknown if no_firmware(r) => MeImageState::Absent,
        State::Unknown => MeImageState::Unknown,
    }
}

/// The evidence line that names the damage (the first one that does).
fn corruption_reason(r: &ImageReport) -> String {
    r.evidence
        .iter()
        .find(|e| e.contains("corrupt") || e.contains("does not parse"))
        .or(r.evidence.first())
        .cloned()
        .unwrap_or_else(|| "corrupted".into())
}

/// A full image with no ME firmware: region 2 disabled and nothing in the
/// BIOS region, or an ME region that is all 0xFF / 0x00.
fn no_firmware(r: &ImageReport) -> bool {
    match &r.me {
        None => r.input == InputKind::FullImage,
        Some(MeFinding {
            region: Some(region),
            ..
        }) => region.state == RegionState::Empty,
        Some(_) => false,
    }
}

/// "CSME 11", "ME 8", "TXE 3"; "unknown" when the family is not known.
fn family_label(region: Option<&MeRegion>) -> String {
    match region.and_then(|m| m.family.map(|f| (f, m.version))) {
        Some((f, Some(v))) => format!("{} {}", family_name(f), v.major),
        Some((f, None)) => family_name(f).to_string(),
        None => "unknown".into(),
    }
}

/// Partitions whose bytes are present, then present modules as
/// "PARTITION/module": what a cleaned-image check compares.
fn present_parts(region: &MeRegion) -> Vec<String> {
    let parts = region
        .partitions
        .iter()
        .filter(|p| p.presence == Presence::Present)
        .map(|p| p.name.clone());
    let modules = region
        .modules
        .iter()
        .filter(|m| m.present)
        .map(|m| format!("{}/{}", m.partition, m.name));
    parts.chain(modules).collect()
}

/// ME image facts; `None` for a descriptor alone (no firmware to look at).
pub fn me_image_facts(r: &ImageReport) -> Option<MeImageFacts> {
    if r.input == InputKind::DescriptorOnly {
        return None;
    }
    let region = r.me.as_ref().and_then(|m| m.region.as_ref());
    Some(MeImageFacts {
        family: family_label(region),
        version: region.and_then(|m| m.version).map(|v| v.to_string()),
        state: wire_state(r),
        partitions: region.map(present_parts).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::inspect::inspect;
    use fortros_testkit::synth::descriptor::{full_image_with_me, DescriptorBuilder};
    use fortros_testkit::synth::me;

    fn facts(img: &[u8]) -> FlashFacts {
        let r = inspect(img).expect("a synthetic image inspects");
        flash_facts(img.len() as u64, [9; 32], Some(&r))
    }

    #[test]
    fn stock_csme11_image_gives_family_version_state_and_descriptor() {
        let img = fortros_testkit::synth::sample_full_image();
        let f = facts(&img);
        assert_eq!(f.size, 8 << 20);
        assert_eq!(f.image_sha256, Digest32([9; 32]));
        let me = f.me_image.expect("ME facts");
        assert_eq!(me.family, "CSME 11");
        assert_eq!(me.version.as_deref(), Some("11.8.82.3838"));
        assert_eq!(me.state, MeImageState::Stock);
        assert!(me.partitions.iter().any(|p| p == "FTPR"), "{me:?}");
        assert!(
            me.partitions.iter().any(|p| p.starts_with("FTPR/")),
            "{me:?}"
        );
        let d = f.descriptor.expect("descriptor facts");
        assert!(d.valid);
        assert_eq!(d.me_disable_bit, Some(false));
        assert_eq!(
            d.platform.as_deref(),
            Some("Sunrise Point-LP (100-series)"),
            "{d:?}"
        );
        assert!(!d.master_access.is_empty());
        // Regions: descriptor, BIOS and ME at least, limits inclusive.
        let me_region = f
            .regions
            .iter()
            .find(|r| r.region == RegionKind::Me)
            .expect("ME region digest");
        assert_eq!(me_region.limit % 0x1000, 0xfff);
    }

    #[test]
    fn disable_bit_and_master_access_are_reported() {
        // The builder's FLMSTR1 is the usual production one: host reads
        // regions 0-3, writes only BIOS and GbE.
        let locked = facts(&fortros_testkit::synth::sample_full_image());
        let d = locked.descriptor.expect("descriptor facts");
        assert_eq!(d.master_access[0], 0x00A0_0F00);
        assert_eq!(d.me_region_writable_by_host, Some(false), "{d:?}");
        assert_eq!(d.descriptor_writable_by_host, Some(false), "{d:?}");

        // PCHSTRP0 bit 16 is HAP on Sunrise Point; FLMSTR1 writing 0-3
        // (an unlocked descriptor).
        let desc = DescriptorBuilder::v2()
            .set_pch_strap_bits(0, 1 << 16)
            .master(1, 0x00F0_0F00);
        let img = full_image_with_me(desc, &me::gen3_stock().bytes, 8 << 20);
        let f = facts(&img);
        let d = f.descriptor.expect("descriptor facts");
        assert_eq!(d.me_disable_bit, Some(true), "{d:?}");
        assert_eq!(d.me_region_writable_by_host, Some(true), "{d:?}");
        assert_eq!(d.descriptor_writable_by_host, Some(true), "{d:?}");
        assert_eq!(
            f.me_image.expect("ME facts").state,
            MeImageState::DisableBitSet
        );
    }

    #[test]
    fn cleaned_gen2_image_lists_what_remains() {
        let cleaned = me::gen2_cleaned(false, false);
        let img = full_image_with_me(DescriptorBuilder::v2(), &cleaned.bytes, 8 << 20);
        let me = facts(&img).me_image.expect("ME facts");
        assert_eq!(me.state, MeImageState::Cleaned, "{me:?}");
        assert!(me.partitions.iter().any(|p| p == "FTPR"), "{me:?}");
    }

    #[test]
    fn damage_and_absence_are_facts_not_errors() {
        // An ME region that is all 0xFF: no firmware.
        let img = full_image_with_me(DescriptorBuilder::v2(), &[0xFF; 0x20000], 8 << 20);
        assert_eq!(
            facts(&img).me_image.expect("ME facts").state,
            MeImageState::Absent
        );
        // A stock region with its partition table's checksum broken.
        let mut m = me::gen3_stock();
        let fpt = m.fpt.expect("an FPT");
        m.bytes[fpt + 0x1b] ^= 0x55;
        let img = full_image_with_me(DescriptorBuilder::v2(), &m.bytes, 8 << 20);
        let r = inspect(&img).unwrap();
        assert_eq!(r.state, State::Corrupted, "{:?}", r.evidence);
        match me_image_facts(&r).expect("ME facts").state {
            MeImageState::Corrupted { reason } => {
                assert!(reason.contains("corrupted"), "{reason}");
                assert!(reason.contains("image offset 0x"), "{reason}");
            }
            other => panic!("corrupted maps to {other:?}"),
        }
        // Bytes that are no ME region at all.
        let img = full_image_with_me(DescriptorBuilder::v2(), &[0x42; 0x10000], 8 << 20);
        assert!(matches!(
            facts(&img).me_image.expect("ME facts").state,
            MeImageState::Corrupted { reason } if reason.contains("does not parse")
        ));
    }

    #[test]
    fn no_inspection_still_gives_size_and_digest() {
        let f = flash_facts(16, [7; 32], None);
        assert_eq!(f.size, 16);
        assert!(f.regions.is_empty() && f.descriptor.is_none() && f.me_image.is_none());
        assert_eq!(region_kind(2), RegionKind::Me);
        assert_eq!(region_kind(9), RegionKind::Other(9));
        assert!(digest32("zz").is_none());
    }
}
