//! The whole live-ME reading, in the order me-runtime.md §8 recommends:
//! PCI function → HFSTS from config space → `mei` class device (dev_state,
//! fw_status cross-check, fw_ver, clients) → MKHI → AMTHI → MSR 0x13A →
//! decode → classify.
//!
//! Every step may fail on its own; a failure becomes a line in `not_seen`
//! (what could not be seen, and why) and the next step still runs.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::amthi::{self, AmthiInfo};
use super::classify::{self, Classification, MeiPresence, Observation, PciPresence};
use super::device::{ClientProperties, MeiClient, MeiError, AMTHI_UUID, MKHI_UUID};
use super::family::{decide_family, Family, FamilyGuess};
use super::hfsts::{self, DecodedHfsts, Hfsts};
use super::mkhi::{self, FwCaps, FwVersions};
use super::smbios::{self, SmbiosFwsts};
use super::sysfs::{self, FwVerLine, MeiClassDevice, PciIds, Rejected, SysRoot, ME_BDF};
use crate::hw::msr::{self, BootGuardMsr};

/// How to probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Root of sysfs and /dev (`/` on a node).
    pub root: SysRoot,
    /// How long to wait for `dev_state` ENABLED.
    pub dev_state_bound: Duration,
    /// How long to wait for each firmware reply.
    pub reply_timeout: Duration,
    /// How often to retry a connect that gets EBUSY.
    pub busy_retries: u32,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            root: SysRoot::default(),
            // The kernel's own client-enumeration timeout is 15 s.
            dev_state_bound: Duration::from_secs(20),
            // rpc-go waits 3 s; give slow emulated nodes a little more.
            reply_timeout: Duration::from_secs(5),
            busy_retries: 3,
        }
    }
}

/// The PCI function 00:16.0.
#[derive(Debug, Clone, Serialize)]
pub struct PciInfo {
    pub bdf: &'static str,
    pub vendor: u16,
    pub device: u16,
    pub class: u32,
    /// The family the device-ID table gives (me-runtime.md §1.2).
    pub family_from_device_id: Option<Family>,
}

/// Where the HFSTS values came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HfstsSource {
    PciConfig,
    SysfsFwStatus,
    /// The BIOS's POST-time snapshot in SMBIOS (FWSTS, MEI1).
    Smbios,
}

/// The registers, their source, the cross-check, and the decoding.
#[derive(Debug, Clone, Serialize)]
pub struct HfstsReading {
    pub source: HfstsSource,
    /// HFSTS1-6 as `0x%08x`, for people and for re-decoding.
    pub raw_hex: Vec<String>,
    /// What sysfs `fw_status` showed, if read.
    pub fw_status: Option<Vec<u32>>,
    /// Registers that differ between config space and `fw_status` (1-based);
    /// HFSTS2 progress bits may legitimately move between the two reads.
    pub cross_check_mismatch: Option<Vec<usize>>,
    pub decoded: DecodedHfsts,
}

/// The `mei` class device of the ME.
#[derive(Debug, Clone, Serialize)]
pub struct MeiInfo {
    pub name: String,
    pub dev_node: PathBuf,
    pub kind: Option<String>,
    pub dev_state: Option<String>,
    /// `fw_status` lines (HFSTS1 first; 0, 1, 2 or 6 of them).
    pub fw_status: Option<Vec<u32>>,
    pub fw_ver: Option<Vec<FwVerLine>>,
    pub hbm_ver: Option<String>,
    /// Firmware clients the kernel enumerated (lowercase UUIDs).
    pub fw_clients: Vec<String>,
    pub amthi_client_listed: bool,
}

/// What MKHI answered.
#[derive(Debug, Serialize)]
pub struct MkhiReport {
    pub client: ClientProperties,
    pub fw_version: Result<FwVersions, String>,
    pub fw_caps: Result<FwCaps, String>,
}

/// What AMTHI answered.
#[derive(Debug, Serialize)]
pub struct AmthiReport {
    pub client: ClientProperties,
    pub info: AmthiInfo,
}

/// The live ME as the agent saw it.
#[derive(Debug, Serialize)]
pub struct LiveMe {
    pub classification: Classification,
    pub family: Option<FamilyGuess>,
    pub pci: Option<PciInfo>,
    pub hfsts: Option<HfstsReading>,
    pub mei: Option<MeiInfo>,
    pub rejected_mei_devices: Vec<Rejected>,
    pub mkhi: Option<MkhiReport>,
    pub amthi: Option<AmthiReport>,
    pub boot_guard_msr: Option<BootGuardMsr>,
    /// The SMBIOS FWSTS structure, if the BIOS left one.
    pub smbios_fwsts: Option<SmbiosFwsts>,
    /// What could not be seen, and why: one sentence each.
    pub not_seen: Vec<String>,
}

/// Reads everything that can be read about the live ME.
pub fn probe(opts: &ProbeOptions) -> LiveMe {
    let mut not_seen = Vec::new();
    let root = &opts.root;

    let ids = match sysfs::read_pci_ids(root, ME_BDF) {
        Ok(ids) => ids,
        Err(e) => {
            not_seen.push(format!("PCI function {ME_BDF}: {e}"));
            None
        }
    };
    let presence = pci_presence(ids);
    if ids.is_none() {
        not_seen.push(format!(
            "no PCI device at {ME_BDF}: no ME, or hidden by the BIOS (HAP, HECI1 disabled)"
        ));
    }

    let config_hfsts = match presence {
        PciPresence::Present { .. } => match sysfs::read_hfsts_config(root, ME_BDF) {
            Ok(h) => Some(h),
            Err(e) => {
                not_seen.push(format!("HFSTS from config space: {e}"));
                None
            }
        },
        _ => None,
    };

    let discovery = match sysfs::find_mei_device(root, ME_BDF) {
        Ok(d) => d,
        Err(e) => {
            not_seen.push(format!("mei class devices: {e}"));
            Default::default()
        }
    };
    let mei = discovery
        .device
        .as_ref()
        .map(|dev| read_mei(dev, opts, &mut not_seen));
    if mei.is_none() && matches!(presence, PciPresence::Present { .. }) {
        not_seen.push(format!(
            "no mei class device for {ME_BDF}: mei_me not loaded, or it refused the device \
             (SPS/IGN firmware, unknown device ID, firmware not answering)"
        ));
    }

    // Talk to the firmware only through a device that is ENABLED (or a
    // kernel too old to say).
    let usable = mei
        .as_ref()
        .filter(|m| m.dev_state.as_deref().map_or(true, |s| s == "ENABLED"));
    let mkhi = usable.and_then(|m| query_mkhi(m, opts, &mut not_seen));
    let amthi = usable.and_then(|m| query_amthi(m, opts, &mut not_seen));

    let msr_path = root.path("/dev/cpu/0/msr");
    let boot_guard_msr = match msr::read_boot_guard(&msr_path) {
        Ok(m) => Some(m),
        Err(e) => {
            not_seen.push(format!("Boot Guard MSR 0x13A: {e}"));
            None
        }
    };

    let smbios_fwsts = match smbios::read_fwsts(root) {
        Ok(f) => f,
        Err(e) => {
            not_seen.push(format!("SMBIOS FWSTS: {e}"));
            None
        }
    };

    // The family: firmware version (sysfs fw_ver, else MKHI), else device ID.
    let sysfs_major = mei
        .as_ref()
        .and_then(|m| m.fw_ver.as_ref())
        .and_then(|v| v.first())
        .filter(|l| !l.is_zero())
        .map(|l| l.major);
    let mkhi_major = mkhi
        .as_ref()
        .and_then(|m| m.fw_version.as_ref().ok())
        .map(|v| v.code.major);
    let family = decide_family(sysfs_major.or(mkhi_major), ids.map(|i| i.device));
    if family.is_none() && ids.is_some() {
        not_seen.push(
            "ME family: no firmware version and unknown device ID; only layout-independent \
             HFSTS fields are decoded"
                .into(),
        );
    }

    let hfsts = reading(config_hfsts, mei.as_ref(), family.map(|f| f.family)).or_else(|| {
        let regs = smbios_fwsts.as_ref().and_then(SmbiosFwsts::mei1)?;
        Some(HfstsReading {
            source: HfstsSource::Smbios,
            raw_hex: regs.iter().map(|r| format!("{r:#010x}")).collect(),
            fw_status: None,
            cross_check_mismatch: None,
            decoded: hfsts::decode(Hfsts(regs), family.map(|f| f.family)),
        })
    });

    let classification = classify::classify(&Observation {
        pci: presence,
        server_pch: ids.is_some_and(|i| Family::is_server_quirk_device_id(i.device)),
        hfsts: hfsts.as_ref().map(|h| &h.decoded),
        mei: match &mei {
            None => MeiPresence::NoDevice,
            Some(m) => MeiPresence::Device {
                dev_state: m.dev_state.clone(),
            },
        },
        mkhi_answered: mkhi.as_ref().map(|m| m.fw_version.is_ok()),
        hfsts_from_smbios: hfsts
            .as_ref()
            .is_some_and(|h| h.source == HfstsSource::Smbios),
    });

    LiveMe {
        classification,
        family,
        pci: ids.map(|i| PciInfo {
            bdf: ME_BDF,
            vendor: i.vendor,
            device: i.device,
            class: i.class,
            family_from_device_id: Family::from_pci_device_id(i.device),
        }),
        hfsts,
        mei,
        rejected_mei_devices: discovery.rejected,
        mkhi,
        amthi,
        boot_guard_msr,
        smbios_fwsts,
        not_seen,
    }
}

fn pci_presence(ids: Option<PciIds>) -> PciPresence {
    match ids {
        None => PciPresence::Absent,
        Some(i) if i.vendor != 0x8086 || Family::is_itouch_device_id(i.device) => {
            PciPresence::NotTheMe {
                vendor: i.vendor,
                device: i.device,
            }
        }
        Some(i) => PciPresence::Present { device: i.device },
    }
}

fn read_mei(dev: &MeiClassDevice, opts: &ProbeOptions, not_seen: &mut Vec<String>) -> MeiInfo {
    let dev_state = match sysfs::wait_enabled(dev, opts.dev_state_bound, Duration::from_millis(100))
    {
        Ok(s) => s,
        Err(e) => {
            not_seen.push(format!("{}: {e}", dev.name));
            sysfs::read_attr(dev, "dev_state")
        }
    };
    let fw_ver = match sysfs::read_fw_ver(dev) {
        Ok(v) => Some(v),
        Err(e) => {
            not_seen.push(format!("fw_ver: {e}"));
            None
        }
    };
    let fw_status = match sysfs::read_fw_status(dev) {
        Ok(v) => Some(v),
        Err(e) => {
            not_seen.push(format!("fw_status: {e}"));
            None
        }
    };
    let fw_clients = sysfs::list_fw_clients(&opts.root, ME_BDF);
    let amthi_client_listed = fw_clients.contains(&AMTHI_UUID.to_string());
    MeiInfo {
        name: dev.name.clone(),
        dev_node: dev.dev_node.clone(),
        kind: dev.kind.clone(),
        dev_state,
        fw_status,
        fw_ver,
        hbm_ver: sysfs::read_attr(dev, "hbm_ver"),
        fw_clients,
        amthi_client_listed,
    }
}

/// Builds the HFSTS reading: config space first, `fw_status` as the
/// cross-check, or as the source when config space was not readable.
fn reading(
    config: Option<Hfsts>,
    mei: Option<&MeiInfo>,
    family: Option<Family>,
) -> Option<HfstsReading> {
    let fw_status = mei.and_then(|m| m.fw_status.clone());
    let from_fw_status = fw_status.as_ref().and_then(|v| {
        // Kernel configs print 0, 1, 2 or 6 registers; missing ones read 0.
        (!v.is_empty()).then(|| {
            let mut regs = [0u32; 6];
            for (r, v) in regs.iter_mut().zip(v.iter()) {
                *r = *v;
            }
            Hfsts(regs)
        })
    });
    let (source, raw) = match (config, from_fw_status) {
        (Some(c), _) => (HfstsSource::PciConfig, c),
        (None, Some(f)) => (HfstsSource::SysfsFwStatus, f),
        (None, None) => return None,
    };
    let cross_check_mismatch = match (config, fw_status.as_ref()) {
        (Some(c), Some(f)) => Some(
            f.iter()
                .zip(c.0.iter())
                .enumerate()
                .filter(|(_, (a, b))| a != b)
                .map(|(i, _)| i + 1)
                .collect(),
        ),
        _ => None,
    };
    Some(HfstsReading {
        source,
        raw_hex: raw.0.iter().map(|r| format!("{r:#010x}")).collect(),
        fw_status,
        cross_check_mismatch,
        decoded: hfsts::decode(raw, family),
    })
}

fn connect_with_retry(
    m: &MeiInfo,
    uuid: super::device::ClientUuid,
    opts: &ProbeOptions,
) -> Result<MeiClient, MeiError> {
    let mut attempt = 0;
    loop {
        match MeiClient::connect(&m.dev_node, uuid) {
            Err(MeiError::Busy { .. }) if attempt < opts.busy_retries => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
            }
            other => return other,
        }
    }
}

fn query_mkhi(m: &MeiInfo, opts: &ProbeOptions, not_seen: &mut Vec<String>) -> Option<MkhiReport> {
    let mut client = match connect_with_retry(m, MKHI_UUID, opts) {
        Ok(c) => c,
        Err(e) => {
            not_seen.push(format!("MKHI: {e}"));
            return None;
        }
    };
    let fw_version = mkhi::query_fw_version(&mut client, opts.reply_timeout).map_err(|e| {
        not_seen.push(format!("MKHI firmware version: {e}"));
        e.to_string()
    });
    let fw_caps = mkhi::query_fw_caps(&mut client, opts.reply_timeout).map_err(|e| {
        not_seen.push(format!("MKHI FWCAPS: {e}"));
        e.to_string()
    });
    Some(MkhiReport {
        client: client.properties(),
        fw_version,
        fw_caps,
    })
}

fn query_amthi(
    m: &MeiInfo,
    opts: &ProbeOptions,
    not_seen: &mut Vec<String>,
) -> Option<AmthiReport> {
    let mut client = match connect_with_retry(m, AMTHI_UUID, opts) {
        Ok(c) => c,
        Err(e @ MeiError::ClientAbsent { .. }) => {
            not_seen.push(format!("AMTHI: {e}: AMT not present or disabled"));
            return None;
        }
        Err(e) => {
            not_seen.push(format!("AMTHI: {e}"));
            return None;
        }
    };
    let info = amthi::query_all(&mut client, opts.reply_timeout);
    let failures = [
        ("code versions", info.code_versions.as_ref().err()),
        ("provisioning state", info.provisioning_state.as_ref().err()),
        ("control mode", info.control_mode.as_ref().err()),
        ("UUID", info.uuid.as_ref().err()),
        ("wired LAN settings", info.lan_wired.as_ref().err()),
        ("wireless LAN settings", info.lan_wireless.as_ref().err()),
    ];
    for (what, err) in failures {
        if let Some(e) = err {
            not_seen.push(format!("AMTHI {what}: {e}"));
        }
    }
    Some(AmthiReport {
        client: client.properties(),
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::mei::classify::MeState;
    use crate::hw::mei::sysfs::fake;

    fn opts(root: &std::path::Path) -> ProbeOptions {
        ProbeOptions {
            root: SysRoot::new(root),
            dev_state_bound: Duration::from_millis(20),
            reply_timeout: Duration::from_millis(50),
            busy_retries: 0,
        }
    }

    const NORMAL: [u32; 6] = [0x9000_0245, 0x6000_0000, 0x30, 0, 0x02F6_1F03, 0x4000_0000];

    #[test]
    fn empty_machine_says_what_it_could_not_see() {
        let tmp = tempfile::tempdir().unwrap();
        let live = probe(&opts(tmp.path()));
        assert_eq!(live.classification.state, MeState::AbsentOrHidden);
        assert!(live.pci.is_none() && live.hfsts.is_none() && live.mei.is_none());
        assert!(live
            .not_seen
            .iter()
            .any(|l| l.contains("no PCI device at 0000:00:16.0")));
        assert!(live.not_seen.iter().any(|l| l.contains("MSR 0x13A")));
        serde_json::to_string(&live).unwrap();
    }

    #[test]
    fn fake_csme18_node() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fake::add_pci(r, ME_BDF, 0x8086, 0x7E70, Some(NORMAL));
        // fw_status differs in HFSTS2 (progress moved between reads).
        fake::add_mei(
            r,
            "mei0",
            ME_BDF,
            "mei",
            "90000245\n61000000\n00000030\n00000000\n02F61F03\n40000000\n",
            "ENABLED",
        );
        fake::add_client(r, ME_BDF, "12f80028-b4b7-4b2d-aca8-46e0ff65814c");
        // /dev/mei0 is a plain file here: connect gets ENOTTY.
        std::fs::create_dir_all(r.join("dev")).unwrap();
        std::fs::write(r.join("dev/mei0"), b"").unwrap();
        let live = probe(&opts(r));
        assert_eq!(
            live.classification.state,
            MeState::Normal,
            "{:?}",
            live.classification
        );
        let fam = live.family.unwrap();
        assert_eq!(fam.family, Family::Csme16, "fw_ver says 16.1");
        let h = live.hfsts.unwrap();
        assert_eq!(h.source, HfstsSource::PciConfig);
        assert_eq!(h.cross_check_mismatch, Some(vec![2]));
        assert_eq!(h.raw_hex[0], "0x90000245");
        let mei = live.mei.unwrap();
        assert_eq!(mei.dev_state.as_deref(), Some("ENABLED"));
        assert!(mei.amthi_client_listed);
        assert!(live.mkhi.is_none());
        assert!(live
            .not_seen
            .iter()
            .any(|l| l.contains("MKHI") && l.contains("ENOTTY")));
        assert!(live
            .not_seen
            .iter()
            .any(|l| l.contains("AMT not present or disabled")));
    }

    #[test]
    fn fw_status_is_the_fallback_when_config_is_unreadable() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fake::add_pci(r, ME_BDF, 0x8086, 0x9D3A, None);
        fake::add_mei(r, "mei0", ME_BDF, "mei", "1C020181\n00000000\n", "ENABLED");
        let live = probe(&opts(r));
        let h = live.hfsts.as_ref().unwrap();
        assert_eq!(h.source, HfstsSource::SysfsFwStatus);
        assert_eq!(h.cross_check_mismatch, None);
        assert!(live.not_seen.iter().any(|l| l.contains("needs root")));
        assert_eq!(live.classification.state, MeState::DisabledByHap);
    }

    #[test]
    fn hidden_function_is_explained_by_the_smbios_snapshot() {
        use crate::hw::mei::smbios::tests::{fwsts_body, structure};
        let tmp = tempfile::tempdir().unwrap();
        let dmi = tmp.path().join("sys/firmware/dmi/tables");
        std::fs::create_dir_all(&dmi).unwrap();
        let hap = [0x0002_0181, 0x100A_0000, 0x20, 0, 0, 0x4000_0000];
        std::fs::write(
            dmi.join("DMI"),
            structure(0xDB, 0x30, &fwsts_body(&[(1, hap)]), &[]),
        )
        .unwrap();
        let live = probe(&opts(tmp.path()));
        assert_eq!(live.classification.state, MeState::DisabledByHap);
        assert_eq!(live.hfsts.as_ref().unwrap().source, HfstsSource::Smbios);
        assert_eq!(live.smbios_fwsts.unwrap().handle, 0x30);
    }

    #[test]
    fn device_stuck_initializing_is_not_talked_to() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fake::add_pci(r, ME_BDF, 0x8086, 0xA0E0, Some(NORMAL));
        fake::add_mei(r, "mei0", ME_BDF, "mei", "", "INIT_CLIENTS");
        let live = probe(&opts(r));
        assert!(live.mkhi.is_none() && live.amthi.is_none());
        assert!(live
            .not_seen
            .iter()
            .any(|l| l.contains("INIT_CLIENTS") && l.contains("ENABLED")));
    }
}
