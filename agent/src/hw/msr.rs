//! Model-specific registers through `/dev/cpu/N/msr` (the `msr` module):
//! Boot Guard's view from the CPU side, MSR 0x13A (BOOT_GUARD_SACM_INFO;
//! me-image-formats.md §13, me-runtime.md §2.4).
//!
//! This still answers when the ME is HAP- or soft-disabled and HECI is gone,
//! which is exactly when the ME registers can no longer say whether Boot Guard
//! is enforced (Dasharo/dasharo-issues#463).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

/// BOOT_GUARD_SACM_INFO.
pub const MSR_BOOT_GUARD_SACM_INFO: u64 = 0x13A;

/// Errors reading an MSR.
#[derive(Debug, Error)]
pub enum MsrError {
    #[error("{path}: open: {source} (needs root and the msr module)")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: read MSR {msr:#x}: {source}")]
    Read {
        path: PathBuf,
        msr: u64,
        source: io::Error,
    },
}

/// Reads one 64-bit MSR from an `msr` device file (the offset is the MSR number).
pub fn read_msr(dev: &Path, msr: u64) -> Result<u64, MsrError> {
    let file = File::open(dev).map_err(|source| MsrError::Open {
        path: dev.to_path_buf(),
        source,
    })?;
    let mut buf = [0u8; 8];
    file.read_exact_at(&mut buf, msr)
        .map_err(|source| MsrError::Read {
            path: dev.to_path_buf(),
            msr,
            source,
        })?;
    Ok(u64::from_le_bytes(buf))
}

/// MSR 0x13A decoded (intelmetool's reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BootGuardMsr {
    pub raw: u64,
    /// Bit 32: the CPU is Boot Guard capable.
    pub capable: bool,
    /// Bit 0: no-eviction mode (set up by the ACM).
    pub nem_enabled: bool,
    /// Bits 2:1: TPM type.
    pub tpm: &'static str,
    /// Bit 3: TPM initialised by the ACM.
    pub tpm_success: bool,
    /// Bit 4: Boot Guard configuration fused in FPFs.
    pub facb_in_fpf: bool,
    /// Bit 5.
    pub measured_boot: bool,
    /// Bit 6.
    pub verified_boot: bool,
    /// Bit 7: ACM module revoked.
    pub module_revoked: bool,
}

/// Decodes MSR 0x13A.
pub fn decode_boot_guard_msr(raw: u64) -> BootGuardMsr {
    let bit = |n: u32| (raw >> n) & 1 == 1;
    BootGuardMsr {
        raw,
        capable: bit(32),
        nem_enabled: bit(0),
        tpm: match (raw >> 1) & 3 {
            0 => "none",
            1 => "TPM 1.2",
            2 => "TPM 2.0",
            _ => "PTT",
        },
        tpm_success: bit(3),
        facb_in_fpf: bit(4),
        measured_boot: bit(5),
        verified_boot: bit(6),
        module_revoked: bit(7),
    }
}

/// Reads and decodes MSR 0x13A from `dev` (normally `/dev/cpu/0/msr`).
pub fn read_boot_guard(dev: &Path) -> Result<BootGuardMsr, MsrError> {
    read_msr(dev, MSR_BOOT_GUARD_SACM_INFO).map(decode_boot_guard_msr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_bits() {
        // Capable, NEM, TPM 2.0, success, FACB, measured + verified.
        let m = decode_boot_guard_msr((1 << 32) | 0b0111_1101);
        assert!(m.capable && m.nem_enabled && m.tpm_success && m.facb_in_fpf);
        assert!(m.measured_boot && m.verified_boot && !m.module_revoked);
        assert_eq!(m.tpm, "TPM 2.0");
        let none = decode_boot_guard_msr(0);
        assert!(!none.capable && !none.verified_boot);
        assert_eq!(none.tpm, "none");
        assert_eq!(decode_boot_guard_msr(0b110).tpm, "PTT");
    }

    #[test]
    fn reads_at_the_msr_offset() {
        // A file shaped like the msr device: the offset is the MSR number.
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let mut bytes = vec![0u8; 0x13A + 8];
        bytes[0x13A..].copy_from_slice(&((1u64 << 32) | 0x40).to_le_bytes());
        std::fs::write(tmp.path(), bytes).unwrap();
        let m = read_boot_guard(tmp.path()).unwrap();
        assert!(m.capable && m.verified_boot);
        let short = tempfile::NamedTempFile::new().unwrap();
        let err = read_boot_guard(short.path()).unwrap_err();
        assert!(err.to_string().contains("0x13a"), "{err}");
        let err = read_boot_guard(Path::new("/nonexistent/msr")).unwrap_err();
        assert!(matches!(err, MsrError::Open { .. }));
    }
}
