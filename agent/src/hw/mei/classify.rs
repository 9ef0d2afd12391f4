//! One classification of the live ME that a person can read, with the
//! evidence that led to it (me-runtime.md §2.5, §6).
//!
//! Pure logic over what [`super::probe`] observed; the rules are applied in a
//! fixed order and the first that matches decides, while every notable fact
//! is still listed as evidence.

use serde::Serialize;

use super::hfsts::{
    DecodedHfsts, ErrorCode, FwSku, OperationMode, OperationState, ProgressPhase, WorkingState,
    BUP_PROGRESS_STRAPS_DISABLED,
};

/// The live ME state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MeState {
    /// No ME function at 00:16.0, or it does not answer: no ME, or hidden
    /// by the BIOS (common with HAP on CSME 12+, and after soft-disable).
    AbsentOrHidden,
    /// Server Platform Services / ignition firmware: no AMT.
    Sps,
    /// The HAP / AltMeDisable strap stopped the ME in bring-up.
    DisabledByHap,
    /// The BIOS asked the ME to disable itself (reversible by the BIOS).
    SoftDisabled,
    /// Debug or enhanced-debug firmware.
    Debug,
    /// Security override: descriptor jumper or HMRFPO (ME region writable).
    Override,
    /// Running normally.
    Normal,
    /// Error, recovery, halt or corrupt partition table.
    Broken,
    /// Registers were read but match no rule; see the evidence.
    Unclassified,
    /// The function exists but its registers could not be read (not root?).
    Unreadable,
}

impl MeState {
    /// One line for a person.
    pub fn describe(self) -> &'static str {
        match self {
            MeState::AbsentOrHidden => "ME absent or hidden by the BIOS",
            MeState::Sps => "server (SPS/ignition) ME firmware, no AMT",
            MeState::DisabledByHap => "ME disabled by the HAP/AltMeDisable strap",
            MeState::SoftDisabled => "ME soft-disabled by the BIOS",
            MeState::Debug => "ME running debug firmware",
            MeState::Override => "ME security override active: ME region writable from the host",
            MeState::Normal => "ME running normally",
            MeState::Broken => "ME in error or recovery",
            MeState::Unclassified => "ME state not recognised",
            MeState::Unreadable => "ME function present but its status registers could not be read",
        }
    }
}

/// What is known about the PCI function 00:16.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciPresence {
    /// No device at 00:16.0.
    Absent,
    /// A device is there but not Intel's, or is an iTouch MEI.
    NotTheMe { vendor: u16, device: u16 },
    /// Intel's ME function.
    Present { device: u16 },
}

/// What the `mei` class device told (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeiPresence {
    /// No `/sys/class/mei/meiN` belongs to 00:16.0 (driver not bound or refused).
    NoDevice,
    /// The device exists; its `dev_state` (None on kernels without it).
    Device { dev_state: Option<String> },
}

/// Inputs to the classification.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub pci: PciPresence,
    pub server_pch: bool,
    pub hfsts: Option<&'a DecodedHfsts>,
    pub mei: MeiPresence,
    /// Whether an MKHI request got an answer (None: not tried).
    pub mkhi_answered: Option<bool>,
    /// The registers are the BIOS's POST-time snapshot from SMBIOS, not live.
    pub hfsts_from_smbios: bool,
}

/// The result: a state, one sentence, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    pub state: MeState,
    pub summary: String,
    pub evidence: Vec<String>,
}

/// Classifies the live ME.
pub fn classify(obs: &Observation<'_>) -> Classification {
    let mut evidence = Vec::new();
    let state = decide(obs, &mut evidence);
    Classification {
        state,
        summary: state.describe().to_string(),
        evidence,
    }
}

fn decide(obs: &Observation<'_>, ev: &mut Vec<String>) -> MeState {
    match obs.pci {
        PciPresence::Absent => {
            ev.push("no PCI device at 0000:00:16.0".into());
            let Some(d) = obs.hfsts.filter(|_| obs.hfsts_from_smbios) else {
                return MeState::AbsentOrHidden;
            };
            return decide_hidden(d, obs, ev);
        }
        PciPresence::NotTheMe { vendor, device } => {
            ev.push(format!(
                "0000:00:16.0 is {vendor:04x}:{device:04x}, not an Intel ME (HECI1) function"
            ));
            return MeState::AbsentOrHidden;
        }
        PciPresence::Present { device } => {
            ev.push(format!(
                "Intel ME function 8086:{device:04x} at 0000:00:16.0"
            ));
        }
    }
    describe_mei(obs, ev);
    let Some(d) = obs.hfsts else {
        ev.push("HFSTS registers not readable (config space needs root)".into());
        return MeState::Unreadable;
    };
    if obs.hfsts_from_smbios {
        ev.push("HFSTS from the BIOS's SMBIOS snapshot taken at POST, not live".into());
    }
    decide_registers(d, obs, ev)
}

/// The function is hidden, but the BIOS left its POST-time registers in
/// SMBIOS: they tell why (HAP, soft disable, ...). A ME that was running
/// normally at POST and is gone now was hidden by the BIOS.
fn decide_hidden(d: &DecodedHfsts, obs: &Observation<'_>, ev: &mut Vec<String>) -> MeState {
    ev.push("HFSTS from the BIOS's SMBIOS snapshot taken at POST (function hidden since)".into());
    match decide_registers(d, obs, ev) {
        MeState::Normal => {
            ev.push("the ME was running normally at POST; the BIOS hid HECI1 afterwards".into());
            MeState::AbsentOrHidden
        }
        other => other,
    }
}

/// The HFSTS rules proper (me-runtime.md §2.5).
fn decide_registers(d: &DecodedHfsts, obs: &Observation<'_>, ev: &mut Vec<String>) -> MeState {
    if d.raw.not_responding() {
        ev.push("HFSTS1 reads 0xFFFFFFFF: the function does not respond".into());
        return MeState::AbsentOrHidden;
    }
    if d.raw.all_zero() {
        ev.push("all HFSTS registers are zero: hidden or not the ME".into());
        return MeState::AbsentOrHidden;
    }
    let h1 = &d.hfsts1;
    ev.push(format!(
        "HFSTS1 {:#010x}: working state {:?}, operation mode {:?}, operation state {:?}, \
         init complete {}, error {:?}",
        d.raw.reg(1),
        h1.working_state,
        h1.operation_mode,
        h1.operation_state,
        h1.init_complete,
        h1.error_code
    ));
    if h1.fpt_bad {
        ev.push("HFSTS1 bit 5: flash partition table bad".into());
    }
    if d.hfsts2.mfs_failure {
        ev.push("HFSTS2 bit 6: ME file system failure".into());
    }
    security_facts(d, ev);

    if h1.operation_mode == OperationMode::Sps {
        ev.push("HFSTS1 operation mode 0xF: SPS firmware".into());
        return MeState::Sps;
    }
    match d.fw_sku {
        Some(FwSku::Sps) => {
            ev.push("HFSTS3 FW SKU 6: SPS".into());
            return MeState::Sps;
        }
        Some(FwSku::Ignition) if obs.server_pch => {
            ev.push("HFSTS3 FW SKU 0 on a server PCH: ignition firmware".into());
            return MeState::Sps;
        }
        _ => {}
    }
    if h1.operation_mode == OperationMode::SoftTemporaryDisable {
        ev.push("HFSTS1 operation mode 3: soft temporary disable".into());
        return MeState::SoftDisabled;
    }
    if h1.operation_mode == OperationMode::DebugOrAltDisable {
        let hap_signs = hap_signs(d);
        if !hap_signs.is_empty() {
            ev.push(format!(
                "HFSTS1 operation mode 2 with bring-up signs ({}): Alt Disable Mode (HAP)",
                hap_signs.join(", ")
            ));
            return MeState::DisabledByHap;
        }
        ev.push("HFSTS1 operation mode 2 while fully running: debug firmware".into());
        return MeState::Debug;
    }
    if h1.operation_mode == OperationMode::EnhancedDebug {
        ev.push("HFSTS1 operation mode 7: enhanced debug".into());
        return MeState::Debug;
    }
    if h1.operation_mode == OperationMode::SecurityOverrideJumper {
        ev.push("HFSTS1 operation mode 4: descriptor security override strap (jumper)".into());
        return MeState::Override;
    }
    if h1.operation_mode == OperationMode::SecurityOverrideMei {
        ev.push("HFSTS1 operation mode 5: HMRFPO active (override via MEI)".into());
        return MeState::Override;
    }
    if h1.working_state == WorkingState::Disabled {
        ev.push("HFSTS1 working state 4 (Disabled): treated as HAP/disabled, as fwupd".into());
        return MeState::DisabledByHap;
    }
    let error_is_real = !matches!(h1.error_code, ErrorCode::NoError | ErrorCode::Disabled);
    if error_is_real
        || matches!(
            h1.working_state,
            WorkingState::Recovery | WorkingState::Halt
        )
        || h1.fpt_bad
    {
        ev.push("error code, recovery/halt working state or bad FPT: broken".into());
        return MeState::Broken;
    }
    let running = h1.working_state == WorkingState::Normal
        && h1.operation_mode == OperationMode::Normal
        && h1.init_complete;
    if running {
        if let MeiPresence::Device { dev_state: Some(s) } = &obs.mei {
            if s == "DISABLED" {
                ev.push(
                    "HFSTS says normal but the mei driver gave up (dev_state DISABLED): \
                     the firmware does not answer the host"
                        .into(),
                );
                return MeState::Broken;
            }
        }
        if obs.mkhi_answered == Some(false) {
            ev.push("HFSTS says normal but MKHI did not answer".into());
        }
        return MeState::Normal;
    }
    ev.push("no rule matched: see the decoded registers".into());
    MeState::Unclassified
}

/// Facts a firmware-security reader wants next to the state, whatever it is.
fn security_facts(d: &DecodedHfsts, ev: &mut Vec<String>) {
    let m = &d.manufacturing;
    if m.active == Some(true) {
        ev.push(format!("manufacturing mode: yes ({})", m.rule));
    }
    if m.descriptor_unlocked == Some(true) {
        ev.push("HFSTS1 bit 4 (CSME 16+): flash descriptor not locked".into());
    }
    if d.hfsts1.update_in_progress {
        ev.push("HFSTS1 bit 11: firmware update in progress".into());
    }
    if let Some(bg) = &d.boot_guard {
        ev.push(format!(
            "Boot Guard per HFSTS: {}{}",
            if bg.enabled { "enabled" } else { "not enabled" },
            if bg.fpf_soc_lock {
                ", fuses committed (FPF SoC lock)"
            } else {
                ", fuses NOT committed"
            }
        ));
    }
}

/// The signs that an op-mode-2 ME is stopped by the HAP strap rather than
/// running debug firmware (me-runtime.md §2.5).
fn hap_signs(d: &DecodedHfsts) -> Vec<&'static str> {
    let h1 = &d.hfsts1;
    let mut signs = Vec::new();
    if matches!(
        h1.working_state,
        WorkingState::Initializing | WorkingState::Recovery
    ) {
        signs.push("working state initializing/recovery");
    }
    if h1.operation_state == OperationState::BringUp {
        signs.push("operation state bring-up");
    }
    if !h1.init_complete {
        signs.push("init not complete");
    }
    if d.hfsts2.progress_phase == ProgressPhase::Bup
        && d.hfsts2.progress_code == BUP_PROGRESS_STRAPS_DISABLED
    {
        signs.push("BUP progress: straps say ME disabled");
    }
    signs
}

fn describe_mei(obs: &Observation<'_>, ev: &mut Vec<String>) {
    match &obs.mei {
        MeiPresence::NoDevice => {
            ev.push("no mei class device for 0000:00:16.0 (driver not bound or refused)".into())
        }
        MeiPresence::Device { dev_state } => ev.push(format!(
            "mei device bound, dev_state {}",
            dev_state.as_deref().unwrap_or("not reported")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::mei::family::Family;
    use crate::hw::mei::hfsts::{decode, Hfsts};

    fn run(regs: [u32; 6], family: Option<Family>, mei: MeiPresence) -> Classification {
        let d = decode(Hfsts(regs), family);
        classify(&Observation {
            pci: PciPresence::Present { device: 0x9D3A },
            server_pch: false,
            hfsts: Some(&d),
            mei,
            mkhi_answered: None,
            hfsts_from_smbios: false,
        })
    }

    fn enabled() -> MeiPresence {
        MeiPresence::Device {
            dev_state: Some("ENABLED".into()),
        }
    }

    #[test]
    fn absent_function() {
        let c = classify(&Observation {
            pci: PciPresence::Absent,
            server_pch: false,
            hfsts: None,
            mei: MeiPresence::NoDevice,
            mkhi_answered: None,
            hfsts_from_smbios: false,
        });
        assert_eq!(c.state, MeState::AbsentOrHidden);
        assert!(c.evidence[0].contains("no PCI device"));
    }

    #[test]
    fn present_but_unreadable() {
        let c = classify(&Observation {
            pci: PciPresence::Present { device: 0xA0E0 },
            server_pch: false,
            hfsts: None,
            mei: enabled(),
            mkhi_answered: None,
            hfsts_from_smbios: false,
        });
        assert_eq!(c.state, MeState::Unreadable);
    }

    #[test]
    fn not_responding_is_hidden() {
        let c = run(
            [0xFFFF_FFFF; 6],
            Some(Family::Csme11),
            MeiPresence::NoDevice,
        );
        assert_eq!(c.state, MeState::AbsentOrHidden);
    }

    #[test]
    fn normal_csme19() {
        let c = run(
            [0x9000_0245, 0x6000_0000, 0x30, 0, 0x02F6_1F03, 0x4000_0000],
            Some(Family::Csme18),
            enabled(),
        );
        assert_eq!(c.state, MeState::Normal, "{:?}", c.evidence);
    }

    #[test]
    fn normal_but_driver_gave_up_is_broken() {
        let c = run(
            [0x9000_0245, 0, 0, 0, 0, 0],
            Some(Family::Csme11),
            MeiPresence::Device {
                dev_state: Some("DISABLED".into()),
            },
        );
        assert_eq!(c.state, MeState::Broken);
    }

    #[test]
    fn hap_example_me8() {
        let c = run(
            [0x1C02_0181, 0, 0, 0, 0, 0],
            Some(Family::Me),
            MeiPresence::NoDevice,
        );
        assert_eq!(c.state, MeState::DisabledByHap);
        assert!(c.evidence.iter().any(|e| e.contains("bring-up")));
    }

    #[test]
    fn op_mode_2_running_is_debug() {
        let c = run(
            [0x9002_0245, 0, 0, 0, 0, 0],
            Some(Family::Csme11),
            enabled(),
        );
        assert_eq!(c.state, MeState::Debug);
        let c = run(
            [0x9007_0245, 0, 0, 0, 0, 0],
            Some(Family::Csme11),
            enabled(),
        );
        assert_eq!(c.state, MeState::Debug);
    }

    #[test]
    fn soft_disable_override_and_sps() {
        let c = run(
            [0x9003_0245, 0, 0, 0, 0, 0],
            Some(Family::Csme11),
            enabled(),
        );
        assert_eq!(c.state, MeState::SoftDisabled);
        let c = run(
            [0x9004_0245, 0, 0, 0, 0, 0],
            Some(Family::Csme11),
            enabled(),
        );
        assert_eq!(c.state, MeState::Override);
        let c = run(
            [0x9005_0245, 0, 0, 0, 0, 0],
            Some(Family::Csme11),
            enabled(),
        );
        assert_eq!(c.state, MeState::Override);
        let c = run(
            [0x000F_0245, 0, 0, 0, 0, 0],
            Some(Family::Me),
            MeiPresence::NoDevice,
        );
        assert_eq!(c.state, MeState::Sps);
        let c = run(
            [0x9000_0245, 0, 6 << 4, 0, 0, 0],
            Some(Family::Csme11),
            enabled(),
        );
        assert_eq!(c.state, MeState::Sps);
    }

    #[test]
    fn ignition_sku_only_counts_on_server_pch() {
        let d = decode(Hfsts([0x9000_0245, 0, 0, 0, 0, 0]), Some(Family::Csme11));
        let mut obs = Observation {
            pci: PciPresence::Present { device: 0xA360 },
            server_pch: true,
            hfsts: Some(&d),
            mei: MeiPresence::NoDevice,
            mkhi_answered: None,
            hfsts_from_smbios: false,
        };
        assert_eq!(classify(&obs).state, MeState::Sps);
        obs.server_pch = false;
        assert_eq!(classify(&obs).state, MeState::Normal);
    }

    #[test]
    fn security_facts_are_listed_whatever_the_state() {
        // CSME 16, normal, descriptor unlocked (bit 4), fuses not committed.
        let c = run(
            [0x0000_0255, 0, 0, 0, 0, 0],
            Some(Family::Csme16),
            enabled(),
        );
        assert_eq!(c.state, MeState::Normal);
        assert!(c
            .evidence
            .iter()
            .any(|e| e.starts_with("manufacturing mode: yes")));
        assert!(c
            .evidence
            .iter()
            .any(|e| e.contains("descriptor not locked")));
        assert!(c.evidence.iter().any(|e| e.contains("fuses NOT committed")));
        // A fused CSME 19 unit: no manufacturing line, Boot Guard enabled.
        let c = run(
            [0x9000_0245, 0, 0x30, 0, 0x02F6_1F03, 0x4000_0000],
            Some(Family::Csme18),
            enabled(),
        );
        assert!(!c.evidence.iter().any(|e| e.starts_with("manufacturing")));
        assert!(c
            .evidence
            .iter()
            .any(|e| e == "Boot Guard per HFSTS: enabled, fuses committed (FPF SoC lock)"));
    }

    #[test]
    fn hidden_function_with_smbios_snapshot() {
        let hap = decode(Hfsts([0x0002_0181, 0x100A_0000, 0, 0, 0, 0]), None);
        let obs = |d| Observation {
            pci: PciPresence::Absent,
            server_pch: false,
            hfsts: Some(d),
            mei: MeiPresence::NoDevice,
            mkhi_answered: None,
            hfsts_from_smbios: true,
        };
        let c = classify(&obs(&hap));
        assert_eq!(c.state, MeState::DisabledByHap, "{:?}", c.evidence);
        assert!(c.evidence.iter().any(|e| e.contains("SMBIOS")));
        let normal = decode(Hfsts([0x0000_0245, 0, 0, 0, 0, 0]), None);
        let c = classify(&obs(&normal));
        assert_eq!(c.state, MeState::AbsentOrHidden);
        assert!(c.evidence.iter().any(|e| e.contains("hid HECI1")));
    }

    #[test]
    fn errors_and_recovery_are_broken() {
        // Error code 3 (image failure).
        let c = run(
            [0x9000_3245, 0, 0, 0, 0, 0],
            Some(Family::Csme11),
            enabled(),
        );
        assert_eq!(c.state, MeState::Broken);
        // Recovery working state.
        let c = run(
            [0x9000_0242, 0, 0, 0, 0, 0],
            Some(Family::Csme11),
            enabled(),
        );
        assert_eq!(c.state, MeState::Broken);
        // FPT bad.
        let c = run(
            [0x9000_0265, 0, 0, 0, 0, 0],
            Some(Family::Csme11),
            enabled(),
        );
        assert_eq!(c.state, MeState::Broken);
        assert!(c.evidence.iter().any(|e| e.contains("partition table")));
    }

    #[test]
    fn cws_disabled_counts_as_disabled() {
        let c = run(
            [0x0000_2244, 0, 0, 0, 0, 0],
            Some(Family::Csme11),
            enabled(),
        );
        assert_eq!(c.state, MeState::DisabledByHap);
    }

    #[test]
    fn initializing_without_op_mode_is_unclassified() {
        let c = run(
            [0x0000_0001, 0, 0, 0, 0, 0],
            Some(Family::Csme11),
            enabled(),
        );
        assert_eq!(c.state, MeState::Unclassified);
    }
}
