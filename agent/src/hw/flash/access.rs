//! Whether the host may write a flash region, from the descriptor's master
//! section (reference me-image-formats.md §2.5).
//!
//! The host CPU (the BIOS master, FLMSTR1) can write a region only if the
//! descriptor grants it. After end of POST the ME override commands (HMRFPO)
//! no longer open the ME region (me-runtime.md §3.4), so a write the
//! descriptor forbids would be silently dropped or fault half-way: we refuse
//! it before touching anything. The descriptor parser lives elsewhere; it
//! fills [`DescriptorAccess`] with plain values.

/// Descriptor layout generation, which decides where FLMSTR's access bits are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfdVersion {
    /// IFD v1 (up to ME 10): read bits 23:16, write bits 31:24, regions 0–7.
    V1,
    /// IFD v2: read bits 19:8, write bits 31:20 for regions 0–11; bits 7:4
    /// write regions 12–15 on the extended-region chipsets.
    V2,
}

/// One region of the descriptor's region section, as an inclusive byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionSpan {
    /// Region number n of FLREGn (0 descriptor, 1 BIOS, 2 ME, 3 GbE, ...).
    pub index: u8,
    pub base: u64,
    /// Last byte of the region (inclusive).
    pub limit: u64,
}

/// What the write engine needs from the descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorAccess {
    pub version: IfdVersion,
    /// FLMSTR1, the host CPU / BIOS master.
    pub flmstr1: u32,
    /// The regions in use (disabled regions, limit < base, left out).
    pub regions: Vec<RegionSpan>,
    /// Whether the chipset has regions 12–15 with access bits in 7:4.
    pub extended_regions: bool,
}

/// A standard name for region n, for messages.
pub fn region_name(index: u8) -> &'static str {
    match index {
        0 => "descriptor",
        1 => "BIOS",
        2 => "ME",
        3 => "GbE",
        4 => "platform data",
        5 => "device expansion 1",
        6 => "secondary BIOS",
        8 => "EC",
        9 => "device expansion 2",
        10 => "IE",
        11 => "10GbE 0",
        12 => "10GbE 1",
        15 => "PTT",
        _ => "reserved",
    }
}

/// Why the host may not write a range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error(
        "the descriptor does not let the host (BIOS master, FLMSTR1={flmstr1:#010x}) write region \
         {index} ({name}) at {base:#x}..={limit:#x}; changed bytes at {offset:#x} lie in it"
    )]
    RegionLocked {
        index: u8,
        name: &'static str,
        base: u64,
        limit: u64,
        offset: u64,
        flmstr1: u32,
    },
    #[error("changed bytes at {offset:#x} lie in no descriptor region: refusing to write unmapped flash")]
    Unmapped { offset: u64 },
    #[error("cannot tell what the host may write from this descriptor: {0}")]
    UnknownDescriptor(String),
}

impl DescriptorAccess {
    /// The host's access as the image's own descriptor states it: FLMSTR1 and
    /// the enabled regions. Regions 12–15 count as not writable (their bits'
    /// meaning depends on the chipset), and a descriptor whose version could
    /// not be told is refused: the write bits would be guessed.
    pub fn from_descriptor(d: &crate::image::descriptor::Descriptor) -> Result<Self, AccessError> {
        use crate::image::descriptor::IfdVersion as V;
        let version = match d.version.version {
            Some(V::V1) => IfdVersion::V1,
            Some(V::V2) => IfdVersion::V2,
            None => {
                return Err(AccessError::UnknownDescriptor(
                    "its version (IFD v1 or v2) is unknown".into(),
                ))
            }
        };
        let flmstr1 = d
            .masters
            .iter()
            .find(|m| m.number == 1)
            .map(|m| m.raw)
            .ok_or_else(|| AccessError::UnknownDescriptor("it has no FLMSTR1".into()))?;
        Ok(DescriptorAccess {
            version,
            flmstr1,
            regions: d
                .enabled_regions()
                .map(|r| RegionSpan {
                    index: r.index,
                    base: u64::from(r.base),
                    limit: u64::from(r.limit),
                })
                .collect(),
            extended_regions: false,
        })
    }

    /// Whether FLMSTR1 grants the host write access to region `index`.
    pub fn host_can_write(&self, index: u8) -> bool {
        let bit = match (self.version, index) {
            (IfdVersion::V1, 0..=7) => 24 + u32::from(index),
            (IfdVersion::V2, 0..=11) => 20 + u32::from(index),
            (IfdVersion::V2, 12..=15) if self.extended_regions => 4 + u32::from(index - 12),
            _ => return false,
        };
        self.flmstr1 & (1 << bit) != 0
    }

    /// Checks that every byte of `offset..offset+len` lies in regions the
    /// host may write. Returns the first obstacle.
    pub fn check_write(&self, offset: u64, len: u64) -> Result<(), AccessError> {
        let end = offset.saturating_add(len);
        let mut at = offset;
        while at < end {
            let region = self
                .regions
                .iter()
                .find(|r| r.base <= at && at <= r.limit)
                .ok_or(AccessError::Unmapped { offset: at })?;
            if !self.host_can_write(region.index) {
                return Err(AccessError::RegionLocked {
                    index: region.index,
                    name: region_name(region.index),
                    base: region.base,
                    limit: region.limit,
                    offset: at,
                    flmstr1: self.flmstr1,
                });
            }
            at = region.limit.saturating_add(1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions() -> Vec<RegionSpan> {
        vec![
            RegionSpan {
                index: 0,
                base: 0,
                limit: 0xFFF,
            },
            RegionSpan {
                index: 2,
                base: 0x1000,
                limit: 0x7F_FFFF,
            },
            RegionSpan {
                index: 1,
                base: 0x80_0000,
                limit: 0xFF_FFFF,
            },
        ]
    }

    #[test]
    fn typical_locked_v2_descriptor_lets_bios_write_only_bios() {
        // A common locked value: FLMSTR1 = 0x00A00F00 -> read 0..3, write BIOS (bit 21) + GbE (23).
        let a = DescriptorAccess {
            version: IfdVersion::V2,
            flmstr1: 0x00A0_0F00,
            regions: regions(),
            extended_regions: false,
        };
        assert!(a.host_can_write(1));
        assert!(!a.host_can_write(2));
        assert!(!a.host_can_write(0));
        assert_eq!(a.check_write(0x80_0000, 0x1000), Ok(()));
        let e = a.check_write(0x2000, 0x1000).unwrap_err();
        assert!(matches!(
            e,
            AccessError::RegionLocked {
                index: 2,
                offset: 0x2000,
                ..
            }
        ));
        assert!(e.to_string().contains("region 2 (ME)"), "{e}");
    }

    #[test]
    fn unlocked_v2_descriptor_lets_bios_write_me_and_descriptor() {
        // me_cleaner / unlocked: FLMSTR1 = 0xFFFFFFFF.
        let a = DescriptorAccess {
            version: IfdVersion::V2,
            flmstr1: 0xFFFF_FFFF,
            regions: regions(),
            extended_regions: false,
        };
        assert_eq!(a.check_write(0, 0x100_0000), Ok(()));
    }

    #[test]
    fn v1_uses_bits_24_and_up() {
        let a = DescriptorAccess {
            version: IfdVersion::V1,
            flmstr1: 0x0A0B_0000, // write BIOS (25) + GbE (27); read 16,17,19
            regions: regions(),
            extended_regions: false,
        };
        assert!(a.host_can_write(1));
        assert!(!a.host_can_write(2));
        assert!(a.host_can_write(3));
        assert!(!a.host_can_write(8), "v1 has no bits for region 8");
    }

    #[test]
    fn extended_regions_use_low_nibble() {
        let a = DescriptorAccess {
            version: IfdVersion::V2,
            flmstr1: 0x0000_0080, // write region 15
            regions: vec![],
            extended_regions: true,
        };
        assert!(a.host_can_write(15));
        assert!(!a.host_can_write(12));
        let not_ext = DescriptorAccess {
            extended_regions: false,
            ..a
        };
        assert!(!not_ext.host_can_write(15));
    }

    #[test]
    fn a_write_spanning_two_regions_checks_both() {
        let a = DescriptorAccess {
            version: IfdVersion::V2,
            flmstr1: 1 << 21, // BIOS only
            regions: regions(),
            extended_regions: false,
        };
        let e = a.check_write(0x7F_F000, 0x2000).unwrap_err();
        assert!(matches!(e, AccessError::RegionLocked { index: 2, .. }));
    }

    #[test]
    fn access_from_a_synthetic_descriptor() {
        use fortros_testkit::synth::descriptor::DescriptorBuilder;
        let mut img = DescriptorBuilder::v2().build();
        img.resize(8 << 20, 0xFF);
        let d = crate::image::descriptor::Descriptor::parse(&img).unwrap();
        let a = DescriptorAccess::from_descriptor(&d).unwrap();
        assert_eq!(a.version, IfdVersion::V2);
        assert_eq!(a.flmstr1, 0x00A0_0F00);
        assert!(a.regions.contains(&RegionSpan {
            index: 2,
            base: 0x1000,
            limit: 0x1F_FFFF
        }));
        assert!(a.check_write(0x20_0000, 0x1000).is_ok(), "BIOS is writable");
        let e = a.check_write(0x3000, 0x1000).unwrap_err();
        assert!(
            matches!(e, AccessError::RegionLocked { index: 2, .. }),
            "{e}"
        );
    }

    #[test]
    fn gaps_are_refused() {
        let a = DescriptorAccess {
            version: IfdVersion::V2,
            flmstr1: 0xFFFF_FFFF,
            regions: vec![RegionSpan {
                index: 1,
                base: 0x10_0000,
                limit: 0x1F_FFFF,
            }],
            extended_regions: false,
        };
        assert_eq!(
            a.check_write(0x8_0000, 0x1000),
            Err(AccessError::Unmapped { offset: 0x8_0000 })
        );
    }
}
