//! Decoding of the six host firmware status registers (HFSTS1-6), per family
//! (me-runtime.md §2). Pure functions over `u32` values: no I/O, no panics.
//!
//! Every decoded view keeps the raw registers next to it, so the org can
//! re-decode a report later with better tables.

use serde::Serialize;

use super::family::Family;

/// The six raw registers, HFSTS1 first (config offsets 0x40, 0x48, 0x60,
/// 0x64, 0x68, 0x6C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hfsts(pub [u32; 6]);

impl Hfsts {
    /// HFSTS`n`, `n` in 1..=6; 0 for anything else.
    pub fn reg(&self, n: usize) -> u32 {
        n.checked_sub(1)
            .and_then(|i| self.0.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// All ones in HFSTS1: the function does not answer config reads
    /// (hidden or powered off).
    pub fn not_responding(&self) -> bool {
        self.reg(1) == 0xFFFF_FFFF
    }

    /// All zero: the wrong function (iTouch, GSC) or a hidden device.
    pub fn all_zero(&self) -> bool {
        self.0.iter().all(|&r| r == 0)
    }
}

/// Bits `hi..=lo` of `value`.
fn bits(value: u32, hi: u32, lo: u32) -> u32 {
    let width = hi - lo + 1;
    let mask = if width >= 32 {
        u32::MAX
    } else {
        (1u32 << width) - 1
    };
    (value >> lo) & mask
}

fn bit(value: u32, n: u32) -> bool {
    (value >> n) & 1 == 1
}

/// HFSTS1 bits 3:0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkingState {
    Reset,
    Initializing,
    Recovery,
    Test,
    Disabled,
    Normal,
    PlatformDisableWait,
    Transition,
    InvalidCpu,
    Halt,
    Unknown(u8),
}

impl WorkingState {
    fn from_bits(v: u32) -> Self {
        match v {
            0 => Self::Reset,
            1 => Self::Initializing,
            2 => Self::Recovery,
            3 => Self::Test,
            4 => Self::Disabled,
            5 => Self::Normal,
            6 => Self::PlatformDisableWait,
            7 => Self::Transition,
            8 => Self::InvalidCpu,
            0xE => Self::Halt,
            other => Self::Unknown(other as u8),
        }
    }
}

/// HFSTS1 bits 8:6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationState {
    Preboot,
    M0WithUma,
    M0PowerGated,
    Reserved,
    M3WithoutUma,
    M0WithoutUma,
    BringUp,
    M0WithoutUmaError,
}

impl OperationState {
    fn from_bits(v: u32) -> Self {
        match v & 7 {
            0 => Self::Preboot,
            1 => Self::M0WithUma,
            2 => Self::M0PowerGated,
            3 => Self::Reserved,
            4 => Self::M3WithoutUma,
            5 => Self::M0WithoutUma,
            6 => Self::BringUp,
            _ => Self::M0WithoutUmaError,
        }
    }
}

/// HFSTS1 bits 15:12.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NoError,
    Uncategorized,
    Disabled,
    ImageFailure,
    DebugFailure,
    Unknown(u8),
}

impl ErrorCode {
    fn from_bits(v: u32) -> Self {
        match v {
            0 => Self::NoError,
            1 => Self::Uncategorized,
            2 => Self::Disabled,
            3 => Self::ImageFailure,
            4 => Self::DebugFailure,
            other => Self::Unknown(other as u8),
        }
    }
}

/// HFSTS1 bits 19:16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationMode {
    Normal,
    /// 2: debug firmware, or "Alt Disable Mode" when the HAP/AltMeDisable
    /// strap is set (told apart in classification).
    DebugOrAltDisable,
    SoftTemporaryDisable,
    SecurityOverrideJumper,
    SecurityOverrideMei,
    EnhancedDebug,
    /// 0xF: Server Platform Services firmware (SPS <= 4).
    Sps,
    Unknown(u8),
}

impl OperationMode {
    fn from_bits(v: u32) -> Self {
        match v {
            0 => Self::Normal,
            2 => Self::DebugOrAltDisable,
            3 => Self::SoftTemporaryDisable,
            4 => Self::SecurityOverrideJumper,
            5 => Self::SecurityOverrideMei,
            7 => Self::EnhancedDebug,
            0xF => Self::Sps,
            other => Self::Unknown(other as u8),
        }
    }
}

/// HFSTS1 decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hfsts1 {
    pub working_state: WorkingState,
    /// Bit 4 as-is. Its meaning depends on the family: see [`ManufacturingMode`].
    pub bit4: bool,
    pub fpt_bad: bool,
    pub operation_state: OperationState,
    pub init_complete: bool,
    pub bup_load_failure: bool,
    pub update_in_progress: bool,
    pub error_code: ErrorCode,
    pub operation_mode: OperationMode,
    /// Bits 23:20, CSME 11 and newer only (reserved before).
    pub reset_count: Option<u8>,
    pub d0i3_support: bool,
}

/// Decodes HFSTS1.
pub fn decode_hfsts1(value: u32, family: Option<Family>) -> Hfsts1 {
    let csme = matches!(
        family,
        Some(Family::Csme11 | Family::Csme16 | Family::Csme18)
    );
    Hfsts1 {
        working_state: WorkingState::from_bits(bits(value, 3, 0)),
        bit4: bit(value, 4),
        fpt_bad: bit(value, 5),
        operation_state: OperationState::from_bits(bits(value, 8, 6)),
        init_complete: bit(value, 9),
        bup_load_failure: bit(value, 10),
        update_in_progress: bit(value, 11),
        error_code: ErrorCode::from_bits(bits(value, 15, 12)),
        operation_mode: OperationMode::from_bits(bits(value, 19, 16)),
        reset_count: csme.then(|| bits(value, 23, 20) as u8),
        d0i3_support: bit(value, 31),
    }
}

/// HFSTS2 bits 31:28.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressPhase {
    Rom,
    Bup,
    MicroKernel,
    Policy,
    ModuleLoading,
    Unknown,
    HostCommunication,
    Other(u8),
}

impl ProgressPhase {
    fn from_bits(v: u32) -> Self {
        match v {
            0 => Self::Rom,
            1 => Self::Bup,
            2 => Self::MicroKernel,
            3 => Self::Policy,
            4 => Self::ModuleLoading,
            5 => Self::Unknown,
            6 => Self::HostCommunication,
            other => Self::Other(other as u8),
        }
    }
}

/// BUP progress code meaning "the straps say the ME is disabled" (intelmetool).
pub const BUP_PROGRESS_STRAPS_DISABLED: u8 = 0x0A;
/// BUP progress code meaning "ME in temporary disable".
pub const BUP_PROGRESS_TEMP_DISABLE: u8 = 0x28;

/// HFSTS2 decoded (same layout for all families except bits 12 and 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hfsts2 {
    pub nftp_load_failure: bool,
    pub icc_programming_status: u8,
    pub invoke_mebx: bool,
    pub cpu_replaced: bool,
    pub mfs_failure: bool,
    pub warm_reset_request: bool,
    pub cpu_replaced_valid: bool,
    pub low_power_state: bool,
    pub power_gated: bool,
    pub update_needed: bool,
    /// Bit 12: CSME 11-17 only.
    pub forced_safe_boot: Option<bool>,
    /// Bit 14: CSME 18+ only, "CSE on its way to disabled".
    pub on_its_way_to_disabled: Option<bool>,
    pub listener_change: bool,
    pub progress_code: u8,
    pub pm_event: u8,
    pub progress_phase: ProgressPhase,
}

/// Decodes HFSTS2.
pub fn decode_hfsts2(value: u32, family: Option<Family>) -> Hfsts2 {
    Hfsts2 {
        nftp_load_failure: bit(value, 0),
        icc_programming_status: bits(value, 2, 1) as u8,
        invoke_mebx: bit(value, 3),
        cpu_replaced: bit(value, 4),
        mfs_failure: bit(value, 6),
        warm_reset_request: bit(value, 7),
        cpu_replaced_valid: bit(value, 8),
        low_power_state: bit(value, 9),
        power_gated: bit(value, 10),
        update_needed: bit(value, 11),
        forced_safe_boot: matches!(family, Some(Family::Csme11 | Family::Csme16))
            .then(|| bit(value, 12)),
        on_its_way_to_disabled: matches!(family, Some(Family::Csme18)).then(|| bit(value, 14)),
        listener_change: bit(value, 15),
        progress_code: bits(value, 23, 16) as u8,
        pm_event: bits(value, 27, 24) as u8,
        progress_phase: ProgressPhase::from_bits(bits(value, 31, 28)),
    }
}

/// HFSTS3 bits 6:4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FwSku {
    /// 0: ignition firmware (kernel's reading on server PCHs).
    Ignition,
    Consumer,
    Corporate,
    Lite,
    /// 6: Server Platform Services.
    Sps,
    Other(u8),
}

/// Decodes the FW SKU from HFSTS3 (CSME only; older ME has no such field).
pub fn decode_fw_sku(hfsts3: u32, family: Option<Family>) -> Option<FwSku> {
    if !matches!(
        family,
        Some(Family::Csme11 | Family::Csme16 | Family::Csme18)
    ) {
        return None;
    }
    Some(match bits(hfsts3, 6, 4) {
        0 => FwSku::Ignition,
        2 => FwSku::Consumer,
        3 => FwSku::Corporate,
        5 => FwSku::Lite,
        6 => FwSku::Sps,
        other => FwSku::Other(other as u8),
    })
}

/// Boot Guard as the ME reports it (HFSTS5/6; me-runtime.md §2.3-2.4).
/// Fields are `None` where the family has no such bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BootGuardHfsts {
    /// Boot Guard enabled. CSME 11-17: HFSTS6 bit 28 ("disable") clear AND
    /// at least one of force-ACM, measured or verified boot set (fwupd looks
    /// at bit 28 alone, which calls every part without Boot Guard "enabled").
    /// CSME 18+: HFSTS5 bit 1 ("valid") set.
    pub enabled: bool,
    /// CSME 11-17: HFSTS6 bit 28 ("Boot Guard disable"), raw.
    pub disable_bit: Option<bool>,
    /// CSME 11-17: HFSTS6 bit 0 (force ACM). CSME 18+: HFSTS5 bit 0 (ACM active).
    pub acm: bool,
    /// CSME 18+: HFSTS5 bit 8 (ACM done).
    pub acm_done: Option<bool>,
    /// CSME 11-17: HFSTS6 bit 9.
    pub verified_boot: Option<bool>,
    /// CSME 11-17: HFSTS6 bit 8.
    pub measured_boot: Option<bool>,
    /// CSME 11-17: HFSTS6 bits 7:6 (0 nothing, 1 shutdown with timeout,
    /// 2 shutdown now, 3 shutdown after 30 min).
    pub error_enforcement_policy: Option<u8>,
    /// CSME 18+: HFSTS5 bits 20:18.
    pub profile: Option<u8>,
    /// HFSTS5 bits 7:3 (CSME 18+ meanings in the docs).
    pub acm_error_status: u8,
    /// HFSTS6 bit 30: field-programmable fuses committed (end of manufacturing).
    pub fpf_soc_lock: bool,
}

/// Decodes the Boot Guard bits. `None` for ME <= 10 (no such fields: use MSR 0x13A).
pub fn decode_boot_guard(h: &Hfsts, family: Option<Family>) -> Option<BootGuardHfsts> {
    let (h5, h6) = (h.reg(5), h.reg(6));
    match family? {
        Family::Me => None,
        Family::Csme11 | Family::Csme16 => Some(BootGuardHfsts {
            enabled: !bit(h6, 28) && (bit(h6, 0) || bit(h6, 8) || bit(h6, 9)),
            disable_bit: Some(bit(h6, 28)),
            acm: bit(h6, 0),
            acm_done: None,
            verified_boot: Some(bit(h6, 9)),
            measured_boot: Some(bit(h6, 8)),
            error_enforcement_policy: Some(bits(h6, 7, 6) as u8),
            profile: None,
            acm_error_status: bits(h5, 7, 3) as u8,
            fpf_soc_lock: bit(h6, 30),
        }),
        Family::Csme18 => Some(BootGuardHfsts {
            enabled: bit(h5, 1),
            disable_bit: None,
            acm: bit(h5, 0),
            acm_done: Some(bit(h5, 8)),
            verified_boot: None,
            measured_boot: None,
            error_enforcement_policy: None,
            profile: Some(bits(h5, 20, 18) as u8),
            acm_error_status: bits(h5, 7, 3) as u8,
            fpf_soc_lock: bit(h6, 30),
        }),
    }
}

/// Manufacturing mode, with the rule that decided it (me-runtime.md §2.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManufacturingMode {
    /// `Some(true)`: the platform is still in manufacturing mode (fuses or
    /// descriptor open). `None`: the question has no answer here.
    pub active: Option<bool>,
    /// CSME 16+: HFSTS1 bit 4 means the flash descriptor is NOT locked.
    pub descriptor_unlocked: Option<bool>,
    /// HFSTS6 bit 21 ("manuf_lock", CSME 16+), reported raw and NOT used: OEMs
    /// using Intel Flexible EOM never set it (fwupd PR #8318, canonical/secboot#572).
    pub manuf_lock_bit21: Option<bool>,
    /// The rule applied, in words.
    pub rule: &'static str,
}

/// Decides manufacturing mode the way it is meaningful for each family.
pub fn decode_manufacturing_mode(h: &Hfsts, family: Option<Family>) -> ManufacturingMode {
    let bit4 = bit(h.reg(1), 4);
    let fpf_lock = bit(h.reg(6), 30);
    let op_mode = bits(h.reg(1), 19, 16);
    match family {
        None => ManufacturingMode {
            active: None,
            descriptor_unlocked: None,
            manuf_lock_bit21: None,
            rule: "family unknown: HFSTS1 bit 4 has no fixed meaning",
        },
        Some(Family::Me) => ManufacturingMode {
            active: Some(bit4),
            descriptor_unlocked: None,
            manuf_lock_bit21: None,
            rule: "ME <= 10: HFSTS1 bit 4 is manufacturing mode",
        },
        Some(Family::Csme11) => ManufacturingMode {
            active: Some(bit4),
            descriptor_unlocked: None,
            manuf_lock_bit21: None,
            rule: "CSME 11-15: HFSTS1 bit 4 is manufacturing mode (fwupd, chipsec)",
        },
        Some(Family::Csme16 | Family::Csme18) if matches!(op_mode, 2 | 7) => ManufacturingMode {
            active: None,
            descriptor_unlocked: Some(bit4),
            manuf_lock_bit21: Some(bit(h.reg(6), 21)),
            rule: "CSME 16+ in debug operation mode: manufacturing state not valid (fwupd)",
        },
        Some(Family::Csme16 | Family::Csme18) => ManufacturingMode {
            active: Some(bit4 || !fpf_lock),
            descriptor_unlocked: Some(bit4),
            manuf_lock_bit21: Some(bit(h.reg(6), 21)),
            rule: "CSME 16+: bit 4 means descriptor unlocked; manufacturing mode = bit 4 set \
                   or HFSTS6 FPF SoC lock (bit 30) clear; bit 21 ignored (Flexible EOM)",
        },
    }
}

/// Everything decoded from one set of registers, with the raw values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecodedHfsts {
    pub raw: Hfsts,
    pub family: Option<Family>,
    pub hfsts1: Hfsts1,
    pub hfsts2: Hfsts2,
    pub fw_sku: Option<FwSku>,
    pub boot_guard: Option<BootGuardHfsts>,
    pub manufacturing: ManufacturingMode,
}

/// Decodes all six registers for a family (`None` = unknown: only the
/// family-independent fields are trusted).
pub fn decode(raw: Hfsts, family: Option<Family>) -> DecodedHfsts {
    DecodedHfsts {
        raw,
        family,
        hfsts1: decode_hfsts1(raw.reg(1), family),
        hfsts2: decode_hfsts2(raw.reg(2), family),
        fw_sku: decode_fw_sku(raw.reg(3), family),
        boot_guard: decode_boot_guard(&raw, family),
        manufacturing: decode_manufacturing_mode(&raw, family),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(h1: u32, h2: u32, h3: u32, h5: u32, h6: u32) -> Hfsts {
        Hfsts([h1, h2, h3, 0, h5, h6])
    }

    #[test]
    fn me8_altmedisable_example() {
        // 0x1C020181 (ME 8 with AltMeDisable, me-runtime.md §2.5).
        let h1 = decode_hfsts1(0x1C02_0181, Some(Family::Me));
        assert_eq!(h1.working_state, WorkingState::Initializing);
        assert_eq!(h1.operation_state, OperationState::BringUp);
        assert!(!h1.init_complete);
        assert_eq!(h1.operation_mode, OperationMode::DebugOrAltDisable);
        assert_eq!(h1.error_code, ErrorCode::NoError);
        assert!(!h1.bit4);
        assert_eq!(h1.reset_count, None, "ME <= 10 has no reset count");
    }

    #[test]
    fn me8_altmedisable_with_mfg_bit() {
        let d = decode(Hfsts([0x0002_0191, 0, 0, 0, 0, 0]), Some(Family::Me));
        assert_eq!(d.hfsts1.operation_mode, OperationMode::DebugOrAltDisable);
        assert!(d.hfsts1.bit4);
        assert_eq!(d.manufacturing.active, Some(true));
        assert_eq!(d.boot_guard, None);
        assert_eq!(d.fw_sku, None);
    }

    #[test]
    fn me7_normal_example() {
        // 0x1E000245 (ME 7): CWS 5, op state 1, init 1, op mode 0.
        let h1 = decode_hfsts1(0x1E00_0245, Some(Family::Me));
        assert_eq!(h1.working_state, WorkingState::Normal);
        assert_eq!(h1.operation_state, OperationState::M0WithUma);
        assert!(h1.init_complete);
        assert_eq!(h1.operation_mode, OperationMode::Normal);
        assert_eq!(h1.error_code, ErrorCode::NoError);
    }

    #[test]
    fn csme19_thinkpad_is_not_in_manufacturing_mode() {
        // canonical/secboot#572: HFSTS1 0x90000245, HFSTS5 0x02F61F03,
        // HFSTS6 0x40000000: a fused unit the bit-21 rule misreports.
        let d = decode(
            regs(0x9000_0245, 0, 0x0000_0030, 0x02F6_1F03, 0x4000_0000),
            Some(Family::Csme18),
        );
        assert_eq!(d.hfsts1.working_state, WorkingState::Normal);
        assert!(d.hfsts1.d0i3_support);
        assert_eq!(d.manufacturing.active, Some(false));
        assert_eq!(d.manufacturing.descriptor_unlocked, Some(false));
        assert_eq!(d.manufacturing.manuf_lock_bit21, Some(false));
        let bg = d.boot_guard.unwrap();
        assert!(bg.enabled, "HFSTS5 bit 1 (valid) set");
        assert!(bg.acm, "HFSTS5 bit 0 (ACM active) set");
        assert_eq!(bg.acm_done, Some(true));
        assert!(bg.fpf_soc_lock);
        assert_eq!(bg.verified_boot, None, "CSME 18 has no HFSTS6 verified bit");
        assert_eq!(bg.acm_error_status, 0);
        assert_eq!(d.fw_sku, Some(FwSku::Corporate));
    }

    #[test]
    fn bit4_means_mfg_on_csme11_but_descriptor_on_csme16() {
        let h = regs(0x9000_0255, 0, 0, 0, 0x4000_0000);
        let csme11 = decode_manufacturing_mode(&h, Some(Family::Csme11));
        assert_eq!(csme11.active, Some(true));
        assert_eq!(csme11.descriptor_unlocked, None);
        let csme16 = decode_manufacturing_mode(&h, Some(Family::Csme16));
        assert_eq!(csme16.descriptor_unlocked, Some(true));
        assert_eq!(csme16.active, Some(true));
        // Bit 4 clear, fuses committed, bit 21 clear: NOT manufacturing mode
        // (the coreboot bit-21 rule would say yes; fwupd dropped it).
        let fused = regs(0x9000_0245, 0, 0, 0, 0x4000_0000);
        assert_eq!(
            decode_manufacturing_mode(&fused, Some(Family::Csme16)).active,
            Some(false)
        );
        // Fuses not committed: still in manufacturing.
        let open = regs(0x9000_0245, 0, 0, 0, 0);
        assert_eq!(
            decode_manufacturing_mode(&open, Some(Family::Csme16)).active,
            Some(true)
        );
    }

    #[test]
    fn csme18_debug_mode_makes_mfg_not_valid() {
        let h = regs(0x9002_0245, 0, 0, 0, 0);
        let m = decode_manufacturing_mode(&h, Some(Family::Csme18));
        assert_eq!(m.active, None);
    }

    #[test]
    fn unknown_family_gives_no_mfg_verdict() {
        let h = regs(0x9000_0255, 0, 0, 0, 0);
        assert_eq!(decode_manufacturing_mode(&h, None).active, None);
    }

    #[test]
    fn csme11_boot_guard_from_hfsts6() {
        // Force ACM, measured + verified, policy "shutdown now", FPF locked.
        let h6 = 1 | (2 << 6) | (1 << 8) | (1 << 9) | (1 << 30);
        let bg = decode_boot_guard(&regs(0, 0, 0, 0, h6), Some(Family::Csme11)).unwrap();
        assert!(bg.enabled);
        assert!(bg.acm);
        assert_eq!(bg.verified_boot, Some(true));
        assert_eq!(bg.measured_boot, Some(true));
        assert_eq!(bg.error_enforcement_policy, Some(2));
        assert!(bg.fpf_soc_lock);
        // Bit 28 = Boot Guard disable, even with the profile bits set.
        let off =
            decode_boot_guard(&regs(0, 0, 0, 0, h6 | (1 << 28)), Some(Family::Csme16)).unwrap();
        assert!(!off.enabled);
        assert_eq!(off.disable_bit, Some(true));
        // Fuses committed but no Boot Guard profile: not enabled.
        let none = decode_boot_guard(&regs(0, 0, 0, 0, 0x4000_0000), Some(Family::Csme11)).unwrap();
        assert!(!none.enabled);
        assert_eq!(none.disable_bit, Some(false));
        // The same HFSTS6 means nothing for Boot Guard on CSME 18.
        let csme18 = decode_boot_guard(&regs(0, 0, 0, 0, h6), Some(Family::Csme18)).unwrap();
        assert!(!csme18.enabled);
        assert!(!csme18.acm);
    }

    #[test]
    fn operation_modes() {
        let mode = |m: u32| decode_hfsts1(m << 16, Some(Family::Csme11)).operation_mode;
        assert_eq!(mode(0), OperationMode::Normal);
        assert_eq!(mode(3), OperationMode::SoftTemporaryDisable);
        assert_eq!(mode(4), OperationMode::SecurityOverrideJumper);
        assert_eq!(mode(5), OperationMode::SecurityOverrideMei);
        assert_eq!(mode(7), OperationMode::EnhancedDebug);
        assert_eq!(mode(0xF), OperationMode::Sps);
        assert_eq!(mode(6), OperationMode::Unknown(6));
    }

    #[test]
    fn hfsts2_and_sku() {
        // BUP phase, progress 0x0A (straps say disabled), MFS failure.
        let h2 = decode_hfsts2((1 << 28) | (0x0A << 16) | (1 << 6), Some(Family::Csme11));
        assert_eq!(h2.progress_phase, ProgressPhase::Bup);
        assert_eq!(h2.progress_code, BUP_PROGRESS_STRAPS_DISABLED);
        assert!(h2.mfs_failure);
        assert_eq!(h2.forced_safe_boot, Some(false));
        assert_eq!(h2.on_its_way_to_disabled, None);
        let h2 = decode_hfsts2(1 << 14, Some(Family::Csme18));
        assert_eq!(h2.on_its_way_to_disabled, Some(true));
        assert_eq!(h2.forced_safe_boot, None);
        assert_eq!(
            decode_fw_sku(6 << 4, Some(Family::Csme16)),
            Some(FwSku::Sps)
        );
        assert_eq!(
            decode_fw_sku(2 << 4, Some(Family::Csme11)),
            Some(FwSku::Consumer)
        );
        assert_eq!(decode_fw_sku(3 << 4, Some(Family::Me)), None);
    }

    #[test]
    fn raw_helpers() {
        let h = Hfsts([0xFFFF_FFFF; 6]);
        assert!(h.not_responding());
        assert!(Hfsts([0; 6]).all_zero());
        assert_eq!(h.reg(0), 0);
        assert_eq!(h.reg(7), 0);
        assert_eq!(bits(0xFFFF_FFFF, 31, 0), u32::MAX);
    }
}
