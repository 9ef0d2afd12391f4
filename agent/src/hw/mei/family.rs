//! Which register layout applies: the ME family, from the firmware version or
//! the PCI device ID of 00:16.0 (me-runtime.md §1.2, §2.4).
//!
//! The HFSTS bit meanings changed three times (CSME 11, 16 and 18), so every
//! decoder takes a [`Family`]. Unknown newer majors default to the newest
//! known layout, as fwupd does, because a table that lags behind new silicon
//! is the common failure (fwupd#4927, #7159).

use serde::Serialize;

/// Register-layout family of the ME.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// ME 1-10 and TXE: the intelmetool layout, no Boot Guard fields in HFSTS.
    Me,
    /// CSME 11-15: HFSTS1 bit 4 is manufacturing mode; Boot Guard in HFSTS6.
    Csme11,
    /// CSME 16-17: HFSTS1 bit 4 is "SPI protection mode"; Boot Guard in HFSTS6.
    Csme16,
    /// CSME 18 and newer: Boot Guard moved to HFSTS5; HFSTS6 mostly reserved.
    Csme18,
}

impl Family {
    /// Family from the firmware major version (`fw_ver` or MKHI GET_FW_VERSION).
    /// Returns `None` for major 0, which the kernel prints when it could not ask.
    pub fn from_major(major: u16) -> Option<Family> {
        match major {
            0 => None,
            1..=10 => Some(Family::Me),
            11..=15 => Some(Family::Csme11),
            16..=17 => Some(Family::Csme16),
            _ => Some(Family::Csme18),
        }
    }

    /// Family from the PCI device ID of 00:16.0 (vendor 0x8086), when the
    /// version is not available. `None` for IDs not in the table.
    pub fn from_pci_device_id(id: u16) -> Option<Family> {
        let family = match id {
            // ICH8/9/10, 5-7 series, Lynx Point, Wildcat Point: ME 1-10.
            0x2974 | 0x2984 | 0x2994 | 0x29A4 | 0x2A04 | 0x2A14 | 0x29B4 | 0x29C4 | 0x29D4
            | 0x29E4 | 0x29F4 | 0x28B4 | 0x28C4 | 0x28D4 | 0x28E4 | 0x28F4 | 0x2A44 | 0x2A54
            | 0x2A64 | 0x2A74 | 0x2E04 | 0x2E14 | 0x2E24 | 0x2E34 | 0x3B64 | 0x3B65 | 0x1C3A
            | 0x1D3A | 0x1E3A | 0x1CBA | 0x1DBA | 0x8C3A | 0x8D3A | 0x9C3A | 0x8CBA | 0x9CBA
            | 0x9CBB => Family::Me,
            // Broxton / Apollo Lake / Gemini Lake: TXE 3/4 (ME-like layout).
            0x1A9A | 0x5A9A | 0x319A => Family::Me,
            // Sunrise Point, Lewisburg, Kaby Point, Cannon Point, Comet Lake,
            // Ice Lake, Jasper Lake, Tiger Lake, Elkhart Lake, Denverton: CSME 11-15.
            0x9D3A | 0x9D3B | 0xA13A | 0xA13B | 0xA1BA | 0xA2BA | 0xA2BB | 0x9DE0 | 0xA360
            | 0x02E0 | 0xA3BA | 0x06E0 | 0x34E0 | 0x38E0 | 0x4DE0 | 0xA0E0 | 0x43E0 | 0x4B70
            | 0x4B75 | 0x19E5 | 0x18D3 | 0x1BE0 => Family::Csme11,
            // Alder Lake, Raptor Lake: CSME 16.
            0x7AE8 | 0x7A60 | 0x51E0 | 0x54E0 | 0x7A68 => Family::Csme16,
            // Meteor Lake and newer: CSME 18+.
            0x7E70 | 0x7F68 | 0x7770 | 0xA870 | 0xE370 | 0xE470 | 0x4D70 | 0x6E68 => Family::Csme18,
            _ => return None,
        };
        Some(family)
    }

    /// Whether this PCI device ID is one of the iTouch/IPTS MEI functions whose
    /// registers are NOT the ME status (me-runtime.md §1.1).
    pub fn is_itouch_device_id(id: u16) -> bool {
        matches!(id, 0x9D3E | 0xA2BE | 0x9DE4 | 0xA364 | 0x02E4 | 0x06E4)
    }

    /// PCH devices on which the kernel applies the SPS/IGN quirk (HFSTS3 SKU 0
    /// or 6 means server or ignition firmware) or the SPS <= 4 quirk.
    pub fn is_server_quirk_device_id(id: u16) -> bool {
        matches!(
            id,
            // SPS <= 4: LPT-H/W/HR, SPT-H, LBG.
            0x8C3A | 0x8D3A | 0x8CBA | 0xA13A | 0xA13B | 0xA1BA
            // SPS/IGN >= 5: CNP-H, TGP-H, EBG, RPL-S.
            | 0xA360 | 0x43E0 | 0x1BE0 | 0x7A68
        )
    }

    /// Short human label.
    pub fn label(self) -> &'static str {
        match self {
            Family::Me => "ME <= 10 / TXE",
            Family::Csme11 => "CSME 11-15",
            Family::Csme16 => "CSME 16-17",
            Family::Csme18 => "CSME 18+",
        }
    }
}

/// How the family was decided, kept as evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FamilySource {
    /// From the firmware major version.
    FirmwareVersion,
    /// From the PCI device ID table.
    PciDeviceId,
}

/// The family and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FamilyGuess {
    pub family: Family,
    pub source: FamilySource,
}

/// Decides the family: the firmware version wins, the device ID is the fallback.
pub fn decide_family(fw_major: Option<u16>, pci_device_id: Option<u16>) -> Option<FamilyGuess> {
    if let Some(family) = fw_major.and_then(Family::from_major) {
        return Some(FamilyGuess {
            family,
            source: FamilySource::FirmwareVersion,
        });
    }
    pci_device_id
        .and_then(Family::from_pci_device_id)
        .map(|family| FamilyGuess {
            family,
            source: FamilySource::PciDeviceId,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_map_to_fwupd_families() {
        assert_eq!(Family::from_major(0), None);
        assert_eq!(Family::from_major(7), Some(Family::Me));
        assert_eq!(Family::from_major(10), Some(Family::Me));
        assert_eq!(Family::from_major(11), Some(Family::Csme11));
        assert_eq!(Family::from_major(15), Some(Family::Csme11));
        assert_eq!(Family::from_major(16), Some(Family::Csme16));
        assert_eq!(Family::from_major(17), Some(Family::Csme16));
        assert_eq!(Family::from_major(18), Some(Family::Csme18));
        // An unknown future major gets the newest known layout.
        assert_eq!(Family::from_major(42), Some(Family::Csme18));
    }

    #[test]
    fn device_ids_map_to_families() {
        assert_eq!(Family::from_pci_device_id(0x1E3A), Some(Family::Me));
        assert_eq!(Family::from_pci_device_id(0x9D3A), Some(Family::Csme11));
        assert_eq!(Family::from_pci_device_id(0xA0E0), Some(Family::Csme11));
        assert_eq!(Family::from_pci_device_id(0x7AE8), Some(Family::Csme16));
        assert_eq!(Family::from_pci_device_id(0x7E70), Some(Family::Csme18));
        assert_eq!(Family::from_pci_device_id(0x1234), None);
        assert!(Family::is_itouch_device_id(0xA2BE));
        assert!(!Family::is_itouch_device_id(0xA2BA));
    }

    #[test]
    fn version_beats_device_id() {
        let guess = decide_family(Some(16), Some(0x9D3A)).unwrap();
        assert_eq!(guess.family, Family::Csme16);
        assert_eq!(guess.source, FamilySource::FirmwareVersion);
        let guess = decide_family(Some(0), Some(0x9D3A)).unwrap();
        assert_eq!(guess.family, Family::Csme11);
        assert_eq!(guess.source, FamilySource::PciDeviceId);
        assert_eq!(decide_family(None, None), None);
    }
}
