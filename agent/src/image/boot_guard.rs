//! Static Boot Guard hints from a full image (reference §13): the Firmware
//! Interface Table (FIT) the CPU reads at reset, and whether it lists a
//! Boot Guard key manifest (type 0x0B) and boot policy manifest (0x0C).
//! Their presence means the BIOS is *built* for Boot Guard; whether Boot
//! Guard is *enforced* is only known from the fuses (MSR 0x13A at runtime).
//! Matters because stripping the ME can brick a Boot Guard machine.

use serde::Serialize;

/// What the FIT says.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BootGuardHints {
    /// Image offset of the FIT, if the pointer at end - 0x40 leads to one.
    pub fit_offset: Option<u64>,
    pub fit_entries: u32,
    pub startup_acm: bool,
    pub key_manifest: bool,
    pub boot_policy_manifest: bool,
    pub note: String,
}

const FIT_SIGNATURE: &[u8; 8] = b"_FIT_   ";
/// More entries than this is not a FIT we believe.
const MAX_FIT_ENTRIES: u32 = 1024;

/// Reads the FIT of a full image. The flash is mapped so that the image
/// ends at 4 GiB; the FIT pointer is the u64 at physical 0xFFFFFFC0.
pub fn hints(image: &[u8]) -> BootGuardHints {
    let none = |note: &str| BootGuardHints {
        fit_offset: None,
        fit_entries: 0,
        startup_acm: false,
        key_manifest: false,
        boot_policy_manifest: false,
        note: note.to_string(),
    };
    let len = image.len() as u64;
    let Some(ptr) = image
        .len()
        .checked_sub(0x40)
        .and_then(|o| image.get(o..o + 8))
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    else {
        return none("image too short for a FIT pointer");
    };
    let window = 1u64 << 32;
    let Some(offset) = ptr
        .checked_sub(window - len.min(window))
        .filter(|&o| ptr < window && o + 16 <= len)
    else {
        return none("no FIT pointer (BIOS not built for Boot Guard, or BIOS region empty)");
    };
    let at = |o: u64| image.get(o as usize..o as usize + 16);
    let Some(header) = at(offset).filter(|h| &h[..8] == FIT_SIGNATURE) else {
        return none("FIT pointer does not lead to a _FIT_ header");
    };
    let entries = u32::from_le_bytes([header[8], header[9], header[10], 0]).min(MAX_FIT_ENTRIES);
    let mut hints = BootGuardHints {
        fit_offset: Some(offset),
        fit_entries: entries,
        startup_acm: false,
        key_manifest: false,
        boot_policy_manifest: false,
        note: String::new(),
    };
    for i in 1..entries as u64 {
        let Some(entry) = at(offset + 16 * i) else {
            break;
        };
        match entry[14] & 0x7F {
            0x02 => hints.startup_acm = true,
            0x0B => hints.key_manifest = true,
            0x0C => hints.boot_policy_manifest = true,
            _ => {}
        }
    }
    hints.note = if hints.key_manifest && hints.boot_policy_manifest {
        "FIT lists Boot Guard manifests: the BIOS is built for Boot Guard (enforcement is fused, check at runtime)".into()
    } else {
        "FIT present without Boot Guard manifests".into()
    };
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_fit(types: &[u8]) -> Vec<u8> {
        let len = 1 << 20;
        let mut image = vec![0xFF; len];
        let fit = len - 0x1000;
        let addr = (1u64 << 32) - len as u64 + fit as u64;
        image[len - 0x40..len - 0x38].copy_from_slice(&addr.to_le_bytes());
        image[fit..fit + 8].copy_from_slice(FIT_SIGNATURE);
        let n = types.len() as u32 + 1;
        image[fit + 8..fit + 11].copy_from_slice(&n.to_le_bytes()[..3]);
        image[fit + 14] = 0;
        for (i, t) in types.iter().enumerate() {
            image[fit + 16 * (i + 1) + 14] = *t;
        }
        image
    }

    #[test]
    fn fit_with_boot_guard_manifests() {
        let h = hints(&image_with_fit(&[0x01, 0x02, 0x0B, 0x8C]));
        assert_eq!(h.fit_offset, Some((1 << 20) - 0x1000));
        assert_eq!(h.fit_entries, 5);
        assert!(h.startup_acm && h.key_manifest && h.boot_policy_manifest);
    }

    #[test]
    fn fit_without_boot_guard() {
        let h = hints(&image_with_fit(&[0x01, 0x02]));
        assert!(h.startup_acm && !h.key_manifest && !h.boot_policy_manifest);
    }

    #[test]
    fn no_fit_in_an_erased_bios() {
        let h = hints(&vec![0xFF; 1 << 20]);
        assert_eq!(h.fit_offset, None);
        assert!(hints(&[0u8; 3]).fit_offset.is_none());
    }

    #[test]
    fn hostile_entry_count_stays_in_bounds() {
        let mut image = image_with_fit(&[0x0B]);
        let fit = (1 << 20) - 0x1000;
        image[fit + 8..fit + 11].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
        let h = hints(&image);
        assert_eq!(h.fit_entries, MAX_FIT_ENTRIES);
        assert!(h.key_manifest);
    }
}
