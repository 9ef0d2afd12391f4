//! `fortros-agent probe [--json]`: the live ME state on this machine.
//!
//! Always exits 0 once the probe ran, also on a machine without an ME: the
//! answer is then "absent or hidden", with the list of what could not be
//! seen and why. Only a failure to print is an operational failure.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{EXIT_FAILURE, EXIT_OK};
use crate::hw::mei::probe::{probe, LiveMe, ProbeOptions};
use crate::hw::mei::sysfs::SysRoot;

/// Arguments of `probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Print the full reading as JSON.
    #[arg(long)]
    pub json: bool,
    /// Root of sysfs and /dev (for tests on a tree shaped like sysfs).
    #[arg(long, default_value = "/", hide = true)]
    pub root: PathBuf,
    /// Seconds to wait for the mei device to become ENABLED.
    #[arg(long, default_value_t = 20)]
    pub dev_state_timeout: u64,
    /// Seconds to wait for each firmware reply.
    #[arg(long, default_value_t = 5)]
    pub reply_timeout: u64,
}

/// Runs `probe`.
pub fn run(args: ProbeArgs) -> i32 {
    let opts = ProbeOptions {
        root: SysRoot::new(&args.root),
        dev_state_bound: Duration::from_secs(args.dev_state_timeout),
        reply_timeout: Duration::from_secs(args.reply_timeout),
        ..ProbeOptions::default()
    };
    let live = probe(&opts);
    log::info!(
        "live ME: {:?} ({} things not seen)",
        live.classification.state,
        live.not_seen.len()
    );
    let text = if args.json {
        match serde_json::to_string_pretty(&live) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("probe: cannot encode JSON: {e}");
                return EXIT_FAILURE;
            }
        }
    } else {
        human(&live)
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").is_err() {
        return EXIT_FAILURE;
    }
    EXIT_OK
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The reading for a person.
pub fn human(live: &LiveMe) -> String {
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    let c = &live.classification;
    line(format!(
        "ME state: {} ({})",
        serde_json::to_value(c.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        c.summary
    ));
    line("Evidence:".into());
    for e in &c.evidence {
        line(format!("  - {e}"));
    }
    if let Some(p) = &live.pci {
        line(format!(
            "PCI {}: {:04x}:{:04x} class {:06x}",
            p.bdf, p.vendor, p.device, p.class
        ));
    }
    if let Some(f) = &live.family {
        line(format!(
            "Family: {} (from {:?})",
            f.family.label(),
            f.source
        ));
    }
    if let Some(h) = &live.hfsts {
        line(format!(
            "HFSTS1-6 ({:?}): {}",
            h.source,
            h.raw_hex.join(" ")
        ));
        if let Some(m) = &h.cross_check_mismatch {
            if m.is_empty() {
                line("  sysfs fw_status agrees with config space".into());
            } else {
                line(format!("  sysfs fw_status differs in HFSTS{m:?}"));
            }
        }
        let d = &h.decoded;
        if let Some(sku) = d.fw_sku {
            line(format!("  FW SKU: {sku:?}"));
        }
        line(format!(
            "  manufacturing mode: {} ({})",
            d.manufacturing
                .active
                .map(yes_no)
                .unwrap_or("not decidable"),
            d.manufacturing.rule
        ));
        if let Some(bg) = &d.boot_guard {
            line(format!(
                "  Boot Guard (HFSTS): enabled {}, ACM {}, FPF SoC lock {}",
                yes_no(bg.enabled),
                yes_no(bg.acm),
                yes_no(bg.fpf_soc_lock)
            ));
        }
    }
    if let Some(m) = &live.mei {
        let ver = m
            .fw_ver
            .as_ref()
            .and_then(|v| v.first())
            .map(|l| format!("{}.{}.{}.{}", l.major, l.minor, l.hotfix, l.build))
            .unwrap_or_else(|| "unknown".into());
        line(format!(
            "MEI: {} ({}) dev_state {}, fw_ver {ver}, {} firmware clients, AMTHI listed {}",
            m.name,
            m.dev_node.display(),
            m.dev_state.as_deref().unwrap_or("not reported"),
            m.fw_clients.len(),
            yes_no(m.amthi_client_listed)
        ));
    }
    for r in &live.rejected_mei_devices {
        line(format!("  not the ME: {} ({})", r.name, r.reason));
    }
    if let Some(k) = &live.mkhi {
        if let Ok(v) = &k.fw_version {
            line(format!("MKHI: firmware {}", v.code));
        }
        if let Ok(caps) = &k.fw_caps {
            line(format!(
                "MKHI: AMT capable {}, AMT enabled {}, brand {}",
                yes_no(caps.amt_capable),
                caps.amt_enabled.map(yes_no).unwrap_or("unknown"),
                caps.brand.unwrap_or("unknown")
            ));
        }
    }
    if let Some(a) = &live.amthi {
        let i = &a.info;
        if let Ok(v) = &i.code_versions {
            line(format!(
                "AMT: version {}, SKU {}",
                v.amt_version.as_deref().unwrap_or("unknown"),
                v.sku_kind.unwrap_or("unknown")
            ));
        }
        if let Ok(p) = &i.provisioning_state {
            line(format!("AMT: provisioning state {p:?}"));
        }
        if let Ok(m) = &i.control_mode {
            line(format!("AMT: control mode {m:?}"));
        }
        if let Ok(u) = &i.uuid {
            line(format!("AMT: system UUID {u}"));
        }
        for lan in [&i.lan_wired, &i.lan_wireless].into_iter().flatten() {
            line(format!(
                "AMT: interface {} MAC {}, link {}, DHCP {} ({}), IPv4 {}",
                lan.interface,
                lan.mac,
                if lan.link_up { "up" } else { "down" },
                yes_no(lan.dhcp_enabled),
                lan.dhcp_mode,
                lan.ipv4
            ));
        }
    }
    if let Some(m) = &live.boot_guard_msr {
        line(format!(
            "Boot Guard (MSR 0x13A = {:#x}): capable {}, verified {}, measured {}, FACB in FPF {}",
            m.raw,
            yes_no(m.capable),
            yes_no(m.verified_boot),
            yes_no(m.measured_boot),
            yes_no(m.facb_in_fpf)
        ));
    }
    if !live.not_seen.is_empty() {
        line("Not seen:".into());
        for n in &live.not_seen {
            line(format!("  - {n}"));
        }
    }
    s.trim_end().to_string()
}
