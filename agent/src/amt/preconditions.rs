//! The preconditions of CCM activation (me-runtime.md §5.1), each checked
//! and reported on its own line so an operator sees exactly why a node
//! cannot be provisioned. Pure: facts in, a table out.

use serde::Serialize;

use crate::hw::mei::amthi::{ControlMode, ProvisioningState};

/// What the agent read before deciding (all optional: unread is "unknown").
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub hfsts1: Option<u32>,
    pub hfsts3: Option<u32>,
    /// ME firmware major.minor (MKHI / sysfs fw_ver).
    pub me_version: Option<(u16, u16)>,
    /// FWCAPS rule 0 bit 2 (AMT capable) and rule 0x20 bit 2 (enabled).
    pub amt_capable: Option<bool>,
    pub amt_enabled: Option<bool>,
    /// Whether the AMTHI client answered (Err: why not).
    pub amthi: Option<Result<(), String>>,
    pub amt_version: Option<String>,
    /// CodeVersions "Sku".
    pub sku: Option<u32>,
    pub provisioning: Option<ProvisioningState>,
    pub control: Option<ControlMode>,
    /// IsChangeToAMTEnabled flag byte (ME 16.1+), when asked.
    pub operational_flags: Option<u8>,
    /// Wired LAN interface: (MAC, link up), or why unreadable.
    pub lan: Option<Result<(String, bool), String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    /// Not met, but the agent can fix it (StopConfiguration, enable AMT).
    Fixable,
    /// Not met: activation refused.
    Fail,
    /// Could not be read; not blocking by itself.
    Unknown,
    /// Informational.
    Note,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

/// Bits of IsChangeToAMTEnabled (me-runtime.md §4.3).
pub const OP_NEW_INTERFACE: u8 = 0x80;
pub const OP_AMT_ENABLED: u8 = 0x02;
pub const OP_TLS_ENFORCED: u8 = 0x40;

/// Whether the ME is new enough for the operational-state interface (16.1+).
pub fn has_operational_state(me_version: Option<(u16, u16)>) -> bool {
    matches!(me_version, Some((major, minor)) if major > 16 || major == 16 && minor >= 1)
}

/// Sku bits from CodeVersions (rpc-go `pkg/utils/helper.go`).
const SKU_AMT_PRO: u32 = 0x08;
const SKU_ISM: u32 = 0x10;

/// Evaluates every precondition.
pub fn evaluate(f: &Facts) -> Vec<Check> {
    let mut out = Vec::new();
    let mut add = |name, verdict, detail: String| {
        out.push(Check {
            name,
            verdict,
            detail,
        })
    };

    match f.hfsts1 {
        None => add("me_running", Verdict::Unknown, "HFSTS1 not readable".into()),
        Some(h) => {
            let cws = h & 0xF;
            let mode = (h >> 16) & 0xF;
            let init = h & (1 << 9) != 0;
            let err = (h >> 12) & 0xF;
            if cws == 5 && mode == 0 && init && err == 0 {
                add(
                    "me_running",
                    Verdict::Pass,
                    format!("HFSTS1 {h:#010x}: normal"),
                );
            } else {
                add(
                    "me_running",
                    Verdict::Fail,
                    format!(
                        "HFSTS1 {h:#010x}: working state {cws}, operation mode {mode}, \
                         init complete {init}, error {err} (need 5, 0, true, 0)"
                    ),
                );
            }
        }
    }

    match f.hfsts3.map(|h| (h >> 4) & 7) {
        None => add(
            "corporate_sku",
            Verdict::Unknown,
            "HFSTS3 not readable".into(),
        ),
        Some(3) => add(
            "corporate_sku",
            Verdict::Pass,
            "firmware SKU 3: Corporate".into(),
        ),
        Some(s) => add(
            "corporate_sku",
            Verdict::Fail,
            format!(
                "firmware SKU {s} ({}): only Corporate firmware has AMT",
                match s {
                    0 => "Ignition",
                    2 => "Consumer",
                    5 => "Lite",
                    6 => "SPS",
                    _ => "unknown",
                }
            ),
        ),
    }

    match (f.amt_capable, f.amt_enabled) {
        (None, _) => add("fwcaps_amt", Verdict::Unknown, "FWCAPS not read".into()),
        (Some(false), _) => add(
            "fwcaps_amt",
            Verdict::Fail,
            "FWCAPS rule 0: firmware is not AMT capable".into(),
        ),
        (Some(true), Some(false)) => add(
            "fwcaps_amt",
            // On 16.1+ the operational state can be switched on below.
            if has_operational_state(f.me_version) {
                Verdict::Fixable
            } else {
                Verdict::Fail
            },
            "FWCAPS rule 0x20: AMT capable but not enabled (BIOS/MEBx setting)".into(),
        ),
        (Some(true), e) => add(
            "fwcaps_amt",
            Verdict::Pass,
            format!(
                "AMT capable{}",
                if e == Some(true) { " and enabled" } else { "" }
            ),
        ),
    }

    match &f.amthi {
        None => add("amthi_client", Verdict::Unknown, "AMTHI not tried".into()),
        Some(Ok(())) => add("amthi_client", Verdict::Pass, "AMTHI client answers".into()),
        Some(Err(e)) => add(
            "amthi_client",
            Verdict::Fail,
            format!("AMTHI client unreachable (AMT absent or disabled): {e}"),
        ),
    }

    match f.sku {
        None => add(
            "amt_sku",
            Verdict::Unknown,
            "CodeVersions Sku not read".into(),
        ),
        Some(s) if s & SKU_AMT_PRO != 0 => add(
            "amt_sku",
            Verdict::Pass,
            format!(
                "Sku {s} ({s:#x}): AMT Pro, version {}",
                f.amt_version.as_deref().unwrap_or("?")
            ),
        ),
        Some(s) if s & SKU_ISM != 0 => add(
            "amt_sku",
            Verdict::Note,
            format!("Sku {s} ({s:#x}): Standard Manageability: no KVM or redirection"),
        ),
        Some(s) => add(
            "amt_sku",
            Verdict::Fail,
            format!("Sku {s} ({s:#x}): neither AMT Pro nor Standard Manageability"),
        ),
    }

    match (f.provisioning, f.control) {
        (None, _) | (_, None) => add(
            "unprovisioned",
            Verdict::Unknown,
            "provisioning state or control mode not read".into(),
        ),
        (Some(ProvisioningState::Pre), Some(ControlMode::None)) => add(
            "unprovisioned",
            Verdict::Pass,
            "pre-provisioning, no control mode".into(),
        ),
        (Some(ProvisioningState::InProvisioning), _) => add(
            "unprovisioned",
            Verdict::Fixable,
            "stuck in provisioning (half-finished activation): StopConfiguration first".into(),
        ),
        (Some(p), Some(c)) => add(
            "unprovisioned",
            Verdict::Note,
            format!("already provisioned ({p:?}, {c:?}): ownership is checked next"),
        ),
    }

    if has_operational_state(f.me_version) {
        match f.operational_flags {
            None => add(
                "operational_state",
                Verdict::Unknown,
                "IsChangeToAMTEnabled not answered".into(),
            ),
            Some(b) if b & OP_NEW_INTERFACE == 0 => add(
                "operational_state",
                Verdict::Unknown,
                format!("flags {b:#04x}: old interface, state unknown"),
            ),
            Some(b) if b & OP_TLS_ENFORCED != 0 => add(
                "operational_state",
                Verdict::Fail,
                format!(
                    "flags {b:#04x}: TLS enforced on local ports (AMT 19+): activation over \
                     TLS through APF is not supported yet"
                ),
            ),
            Some(b) if b & OP_AMT_ENABLED == 0 => add(
                "operational_state",
                Verdict::Fixable,
                format!("flags {b:#04x}: AMT soft-disabled: SetAmtOperationalState(1) first"),
            ),
            Some(b) => add(
                "operational_state",
                Verdict::Pass,
                format!("flags {b:#04x}: AMT enabled"),
            ),
        }
    }

    match &f.lan {
        None => add(
            "lan_interface",
            Verdict::Unknown,
            "wired LAN settings not read".into(),
        ),
        Some(Ok((mac, link))) => add(
            "lan_interface",
            Verdict::Pass,
            format!(
                "wired interface MAC {mac}, link {}",
                if *link { "up" } else { "down" }
            ),
        ),
        Some(Err(e)) => add(
            "lan_interface",
            Verdict::Fail,
            format!("no wired AMT interface (AMT only uses the integrated Intel NIC): {e}"),
        ),
    }
    out
}

/// The first blocking failure, if any.
pub fn blocking(checks: &[Check]) -> Option<&Check> {
    checks.iter().find(|c| c.verdict == Verdict::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node that meets everything (CSME 16.1, corporate, AMT Pro).
    fn good() -> Facts {
        Facts {
            hfsts1: Some(0x9000_0245),
            hfsts3: Some(3 << 4),
            me_version: Some((16, 1)),
            amt_capable: Some(true),
            amt_enabled: Some(true),
            amthi: Some(Ok(())),
            amt_version: Some("16.1.25".into()),
            sku: Some(16392),
            provisioning: Some(ProvisioningState::Pre),
            control: Some(ControlMode::None),
            operational_flags: Some(OP_NEW_INTERFACE | OP_AMT_ENABLED | 1),
            lan: Some(Ok(("00:1b:21:aa:bb:cc".into(), true))),
        }
    }

    fn verdict(f: &Facts, name: &str) -> Verdict {
        evaluate(f)
            .into_iter()
            .find(|c| c.name == name)
            .unwrap()
            .verdict
    }

    #[test]
    fn all_met() {
        let checks = evaluate(&good());
        assert_eq!(checks.len(), 8);
        assert!(
            checks.iter().all(|c| c.verdict == Verdict::Pass),
            "{checks:#?}"
        );
        assert!(blocking(&checks).is_none());
    }

    #[test]
    fn the_precondition_table() {
        // (change, check name, expected verdict, words the detail must hold)
        type Case = (fn(&mut Facts), &'static str, Verdict, &'static str);
        let cases: &[Case] = &[
            (
                |f| f.hfsts1 = Some(0x0002_0181),
                "me_running",
                Verdict::Fail,
                "operation mode 2",
            ),
            (
                |f| f.hfsts3 = Some(2 << 4),
                "corporate_sku",
                Verdict::Fail,
                "Consumer",
            ),
            (
                |f| f.hfsts3 = Some(5 << 4),
                "corporate_sku",
                Verdict::Fail,
                "Lite",
            ),
            (
                |f| f.amt_capable = Some(false),
                "fwcaps_amt",
                Verdict::Fail,
                "not AMT capable",
            ),
            (
                |f| f.amt_enabled = Some(false),
                "fwcaps_amt",
                Verdict::Fixable,
                "not enabled",
            ),
            (
                |f| {
                    f.amt_enabled = Some(false);
                    f.me_version = Some((15, 0));
                },
                "fwcaps_amt",
                Verdict::Fail,
                "BIOS",
            ),
            (
                |f| f.amthi = Some(Err("ENOTTY".into())),
                "amthi_client",
                Verdict::Fail,
                "ENOTTY",
            ),
            (|f| f.sku = Some(0x10), "amt_sku", Verdict::Note, "no KVM"),
            (
                |f| f.sku = Some(0x4000),
                "amt_sku",
                Verdict::Fail,
                "neither",
            ),
            (
                |f| f.provisioning = Some(ProvisioningState::InProvisioning),
                "unprovisioned",
                Verdict::Fixable,
                "StopConfiguration",
            ),
            (
                |f| {
                    f.provisioning = Some(ProvisioningState::Post);
                    f.control = Some(ControlMode::ClientControl);
                },
                "unprovisioned",
                Verdict::Note,
                "ownership",
            ),
            (
                |f| f.operational_flags = Some(0x80),
                "operational_state",
                Verdict::Fixable,
                "soft-disabled",
            ),
            (
                |f| f.operational_flags = Some(0xC2),
                "operational_state",
                Verdict::Fail,
                "not supported yet",
            ),
            (
                |f| f.operational_flags = Some(0x03),
                "operational_state",
                Verdict::Unknown,
                "old interface",
            ),
            (
                |f| f.lan = Some(Err("status 2068".into())),
                "lan_interface",
                Verdict::Fail,
                "integrated Intel NIC",
            ),
            (
                |f| f.hfsts1 = None,
                "me_running",
                Verdict::Unknown,
                "not readable",
            ),
        ];
        for (change, name, want, words) in cases {
            let mut f = good();
            change(&mut f);
            let c = evaluate(&f).into_iter().find(|c| c.name == *name).unwrap();
            assert_eq!(c.verdict, *want, "{name}: {c:?}");
            assert!(
                c.detail.contains(words),
                "{name}: {:?} lacks {words:?}",
                c.detail
            );
        }
        // ME older than 16.1: no operational-state row at all.
        let mut f = good();
        f.me_version = Some((15, 0));
        assert!(evaluate(&f).iter().all(|c| c.name != "operational_state"));
        assert_eq!(verdict(&good(), "lan_interface"), Verdict::Pass);
    }
}
