//! The live ME as the probe saw it ([`LiveMe`]) → the wire's
//! [`LiveMeFacts`] (HFSTS, decoded state, MKHI, AMTHI, Boot Guard) and
//! [`NetworkFacts`] (the ME's own MAC, the host NIC's).

use crate::hw::mei::amthi::{ControlMode, ProvisioningState};
use crate::hw::mei::classify::MeState;
use crate::hw::mei::probe::{AmthiReport, HfstsReading, HfstsSource, LiveMe, MkhiReport};
use fortros_wire::report::{
    AmthiFacts, BootGuardFacts, LiveMeFacts, LiveMeState, MkhiFacts, NetworkFacts,
};
use fortros_wire::Bytes;

/// The classification in one word, as `probe --json` spells it.
pub fn state_word(state: MeState) -> &'static str {
    match state {
        MeState::AbsentOrHidden => "absent_or_hidden",
        MeState::Sps => "sps",
        MeState::DisabledByHap => "disabled_by_hap",
        MeState::SoftDisabled => "soft_disabled",
        MeState::Debug => "debug",
        MeState::Override => "override",
        MeState::Normal => "normal",
        MeState::Broken => "broken",
        MeState::Unclassified => "unclassified",
        MeState::Unreadable => "unreadable",
    }
}

/// Where the registers came from, as the JSON spells it.
pub fn source_word(source: HfstsSource) -> &'static str {
    match source {
        HfstsSource::PciConfig => "pci_config",
        HfstsSource::SysfsFwStatus => "sysfs_fw_status",
        HfstsSource::Smbios => "smbios",
    }
}

/// HFSTS1..6 as read; registers the source did not give are `None`
/// (sysfs `fw_status` may list fewer than six).
fn registers(h: &HfstsReading) -> [Option<u32>; 6] {
    let given = match (h.source, &h.fw_status) {
        (HfstsSource::SysfsFwStatus, Some(v)) => v.len().min(6),
        _ => 6,
    };
    let mut out = [None; 6];
    for (i, slot) in out.iter_mut().enumerate().take(given) {
        *slot = h.decoded.raw.0.get(i).copied();
    }
    out
}

/// HFSTS1's fields as raw numbers (the wire keeps the numbers; the words
/// are in the summary and in extension 1).
fn decoded_state(live: &LiveMe) -> LiveMeState {
    let summary = state_word(live.classification.state).to_string();
    let Some(h) = &live.hfsts else {
        // Nothing read: zeros, and `hfsts` all None says why they mean nothing.
        return LiveMeState {
            working_state: 0,
            operation_mode: 0,
            error_code: 0,
            manufacturing_mode: false,
            summary,
        };
    };
    let h1 = h.decoded.raw.reg(1);
    LiveMeState {
        working_state: (h1 & 0xF) as u8,
        operation_mode: ((h1 >> 16) & 0xF) as u8,
        error_code: ((h1 >> 12) & 0xF) as u8,
        manufacturing_mode: h.decoded.manufacturing.active == Some(true),
        summary,
    }
}

fn mkhi_facts(m: &MkhiReport) -> MkhiFacts {
    let mut errors = Vec::new();
    let fw_version = match &m.fw_version {
        Ok(v) => Some(v.code.to_string()),
        Err(e) => {
            errors.push(format!("GET_FW_VERSION: {e}"));
            None
        }
    };
    // [capable, enabled, platform type], cut at the first one not read.
    let capabilities = match &m.fw_caps {
        Ok(c) => std::iter::once(Some(c.capable))
            .chain([c.enabled, c.platform_type])
            .map_while(|w| w)
            .collect(),
        Err(e) => {
            errors.push(format!("FWCAPS: {e}"));
            Vec::new()
        }
    };
    MkhiFacts {
        fw_version,
        capabilities,
        errors,
    }
}

/// The 16 UUID bytes in the order the canonical text shows them.
fn uuid_bytes(text: &str) -> Option<Bytes> {
    let v = hex::decode(text.replace('-', "")).ok()?;
    (v.len() == 16).then_some(Bytes(v))
}

fn amthi_facts(a: &AmthiReport) -> AmthiFacts {
    let info = &a.info;
    let mut errors = Vec::new();
    let mut note = |what: &str, r: Result<(), &String>| {
        if let Err(e) = r {
            errors.push(format!("{what}: {e}"));
        }
    };
    note(
        "GetProvisioningState",
        info.provisioning_state.as_ref().map(|_| ()),
    );
    note("GetControlMode", info.control_mode.as_ref().map(|_| ()));
    note("GetUUID", info.uuid.as_ref().map(|_| ()));
    AmthiFacts {
        provisioning_state: info.provisioning_state.as_ref().ok().map(|s| match s {
            ProvisioningState::Pre => 0,
            ProvisioningState::InProvisioning => 1,
            ProvisioningState::Post => 2,
            ProvisioningState::Unknown(n) => *n,
        }),
        control_mode: info.control_mode.as_ref().ok().map(|m| match m {
            ControlMode::None => 0,
            ControlMode::ClientControl => 1,
            ControlMode::AdminControl => 2,
            ControlMode::Unknown(n) => *n,
        }),
        uuid: info.uuid.as_ref().ok().and_then(|u| uuid_bytes(u)),
        errors,
    }
}

/// Boot Guard from the ME's registers (HFSTS5/6) where the family has
/// them, else from the CPU's MSR 0x13A; `None` when neither was read.
fn boot_guard_facts(live: &LiveMe) -> Option<BootGuardFacts> {
    let hfsts = live.hfsts.as_ref().and_then(|h| h.decoded.boot_guard);
    let msr = live.boot_guard_msr;
    if hfsts.is_none() && msr.is_none() {
        return None;
    }
    Some(BootGuardFacts {
        sacm_info_msr: msr.map(|m| m.raw),
        verified_boot: hfsts
            .and_then(|b| b.verified_boot)
            .or(msr.map(|m| m.verified_boot)),
        measured_boot: hfsts
            .and_then(|b| b.measured_boot)
            .or(msr.map(|m| m.measured_boot)),
        fpf_committed: hfsts.map(|b| b.fpf_soc_lock),
    })
}

/// The live ME facts. Always given: "absent_or_hidden" is a finding too.
pub fn live_me_facts(live: &LiveMe) -> LiveMeFacts {
    LiveMeFacts {
        hfsts: live.hfsts.as_ref().map(registers).unwrap_or([None; 6]),
        state: decoded_state(live),
        mkhi: live.mkhi.as_ref().map(mkhi_facts),
        amthi: live.amthi.as_ref().map(amthi_facts),
        boot_guard: boot_guard_facts(live),
    }
}

/// "8c:16:45:11:22:33" → 6 bytes.
pub fn parse_mac(text: &str) -> Option<Bytes> {
    let v: Option<Vec<u8>> = text
        .trim()
        .split(':')
        .map(|p| {
            (p.len() == 2)
                .then(|| u8::from_str_radix(p, 16).ok())
                .flatten()
        })
        .collect();
    v.filter(|v| v.len() == 6).map(Bytes)
}

/// The ME's own MAC (AMTHI wired LAN settings) and the host NIC's; `None`
/// when neither is known. AMT ports are not scanned by the agent.
pub fn network_facts(live: &LiveMe, host_mac: Option<&str>) -> Option<NetworkFacts> {
    let me_mac = live
        .amthi
        .as_ref()
        .and_then(|a| a.info.lan_wired.as_ref().ok())
        .and_then(|l| parse_mac(&l.mac));
    let host_mac = host_mac.and_then(parse_mac);
    if me_mac.is_none() && host_mac.is_none() {
        return None;
    }
    Some(NetworkFacts {
        me_mac,
        host_mac,
        amt_ports: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::mei::amthi::{AmthiInfo, LanInterfaceSettings};
    use crate::hw::mei::device::ClientProperties;
    use crate::hw::mei::mkhi::{fw_caps, FwVersion, FwVersions};
    use crate::hw::mei::probe::{probe, ProbeOptions};
    use crate::hw::mei::sysfs::{fake, SysRoot, ME_BDF};
    use std::time::Duration;

    /// The registers of qemu/scenarios/csme11-stock.toml and csme11-hap.toml.
    const STOCK: [u32; 6] = [
        0x0000_0245,
        0x8910_0116,
        0x0000_0020,
        0x0000_4000,
        0,
        0x4000_0000,
    ];
    const HAP: [u32; 6] = [0x0002_0181, 0x100A_0000, 0x20, 0, 0, 0x4000_0000];

    /// A probe of a fake sysfs holding the ME function with these registers.
    fn probed(hfsts: [u32; 6], fw_status: Option<&str>) -> LiveMe {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fake::add_pci(
            r,
            ME_BDF,
            0x8086,
            0x9D3A,
            fw_status.is_none().then_some(hfsts),
        );
        if let Some(fs) = fw_status {
            fake::add_mei(r, "mei0", ME_BDF, "mei", fs, "ENABLED");
        }
        probe(&ProbeOptions {
            root: SysRoot::new(r),
            dev_state_bound: Duration::from_millis(20),
            reply_timeout: Duration::from_millis(50),
            busy_retries: 0,
        })
    }

    fn v(major: u16, minor: u16, hotfix: u16, build: u16) -> FwVersion {
        FwVersion {
            platform: 0,
            major,
            minor,
            hotfix,
            build,
        }
    }

    #[test]
    fn stock_registers_with_mkhi_and_amthi_answers() {
        let mut live = probed(STOCK, None);
        assert_eq!(live.classification.state, MeState::Normal);
        // What MKHI and AMTHI answered for the csme11-stock scenario.
        live.mkhi = Some(MkhiReport {
            client: ClientProperties {
                max_msg_length: 512,
                protocol_version: 1,
            },
            fw_version: Ok(FwVersions {
                code: v(11, 8, 50, 3425),
                recovery: None,
                fitc: None,
            }),
            fw_caps: Ok(fw_caps(0x0024_1005, Some(0x0024_1005), None)),
        });
        live.amthi = Some(AmthiReport {
            client: ClientProperties {
                max_msg_length: 4160,
                protocol_version: 1,
            },
            info: AmthiInfo {
                code_versions: Err("not asked".into()),
                provisioning_state: Ok(ProvisioningState::Pre),
                control_mode: Ok(ControlMode::None),
                uuid: Ok("4c4c4544-0042-3510-8052-b4c04f333232".into()),
                lan_wired: Ok(LanInterfaceSettings {
                    interface: 0,
                    enabled: true,
                    ipv4: "0.0.0.0".into(),
                    dhcp_enabled: true,
                    dhcp_mode: "passive",
                    link_up: true,
                    mac: "8c:16:45:11:22:33".into(),
                }),
                lan_wireless: Err("AMT status 1: no wireless".into()),
            },
        });
        let f = live_me_facts(&live);
        assert_eq!(f.hfsts, STOCK.map(Some));
        assert_eq!(f.state.summary, "normal");
        assert_eq!(f.state.working_state, 5);
        assert_eq!(f.state.operation_mode, 0);
        assert_eq!(f.state.error_code, 0);
        let m = f.mkhi.expect("MKHI facts");
        assert_eq!(m.fw_version.as_deref(), Some("11.8.50.3425"));
        assert_eq!(m.capabilities, vec![0x0024_1005, 0x0024_1005]);
        assert!(m.errors.is_empty());
        let a = f.amthi.expect("AMTHI facts");
        assert_eq!((a.provisioning_state, a.control_mode), (Some(0), Some(0)));
        assert_eq!(
            a.uuid.map(|u| hex::encode(u.as_slice())).as_deref(),
            Some("4c4c4544004235108052b4c04f333232")
        );
        let bg = f.boot_guard.expect("CSME 11 has Boot Guard bits in HFSTS6");
        assert_eq!(bg.fpf_committed, Some(true));
        assert_eq!(bg.verified_boot, Some(false));

        let n = network_facts(&live, Some("52:54:00:12:34:56\n")).expect("MACs");
        assert_eq!(
            n.me_mac.map(|m| m.0),
            Some(vec![0x8c, 0x16, 0x45, 0x11, 0x22, 0x33])
        );
        assert_eq!(
            n.host_mac.map(|m| m.0),
            Some(vec![0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
    }

    #[test]
    fn hap_registers_from_fw_status_say_disabled_and_keep_missing_ones_none() {
        // config space unreadable: fw_status with two registers only.
        let live = probed(HAP, Some("00020181\n100A0000\n"));
        let f = live_me_facts(&live);
        assert_eq!(f.state.summary, "disabled_by_hap");
        assert_eq!(f.state.operation_mode, 2);
        assert_eq!(
            f.hfsts,
            [Some(0x0002_0181), Some(0x100A_0000), None, None, None, None]
        );
        assert!(f.mkhi.is_none() && f.amthi.is_none());
    }

    #[test]
    fn nothing_there_is_absent_not_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let live = probe(&ProbeOptions {
            root: SysRoot::new(tmp.path()),
            dev_state_bound: Duration::from_millis(20),
            reply_timeout: Duration::from_millis(50),
            busy_retries: 0,
        });
        let f = live_me_facts(&live);
        assert_eq!(f.state.summary, "absent_or_hidden");
        assert_eq!(f.hfsts, [None; 6]);
        assert!(f.boot_guard.is_none());
        assert!(network_facts(&live, None).is_none());
    }

    #[test]
    fn words_match_the_probe_json() {
        use MeState::*;
        for s in [
            AbsentOrHidden,
            Sps,
            DisabledByHap,
            SoftDisabled,
            Debug,
            Override,
            Normal,
            Broken,
            Unclassified,
            Unreadable,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), state_word(s));
        }
        for s in [
            HfstsSource::PciConfig,
            HfstsSource::SysfsFwStatus,
            HfstsSource::Smbios,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), source_word(s));
        }
    }

    #[test]
    fn macs_parse_strictly() {
        assert!(parse_mac("8c:16:45:11:22").is_none());
        assert!(parse_mac("8c:16:45:11:22:3g").is_none());
        assert!(parse_mac("8c:16:45:11:22:333").is_none());
        assert!(parse_mac("").is_none());
        assert!(uuid_bytes("not-a-uuid").is_none());
    }
}
