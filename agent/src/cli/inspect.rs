//! `fortros-agent inspect FILE [--json]`: reads a flash image, a descriptor
//! or an ME region from a file and prints what `image::inspect` found — a
//! table for people, or the report as JSON with `--json`.
//!
//! Exit codes: 0 parsed (whatever the state), 1 the file cannot be read,
//! 2 the bytes are not a usable image (one line naming offset and structure).

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::{EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK};
use crate::image::descriptor::{Confidence, Descriptor, IfdVersion};
use crate::image::disable_bit::{DisableBit, DisableState};
use crate::image::inspect::{family_name, inspect, ImageReport, InputKind, MeFinding, MeLocation};
use crate::image::me::{Layout, Presence, Signature};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A full SPI image, a descriptor alone, or an ME region alone.
    pub file: PathBuf,
    /// Print the report as JSON (stable keys; `format` gives its version).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &InspectArgs) -> i32 {
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "fortros-agent inspect: cannot read {}: {e}",
                args.file.display()
            );
            return EXIT_FAILURE;
        }
    };
    let report = match inspect(&bytes) {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                "fortros-agent inspect: {}: unusable input at offset {:#x}: {e}",
                args.file.display(),
                e.offset()
            );
            return EXIT_BAD_INPUT;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("fortros-agent inspect: cannot encode the report: {e}");
                return EXIT_FAILURE;
            }
        }
    } else {
        print!("{}", render_table(&report));
    }
    EXIT_OK
}

fn confidence(c: Confidence) -> &'static str {
    match c {
        Confidence::Confirmed => "confirmed",
        Confidence::Probable => "probable",
        Confidence::Unknown => "uncertain",
    }
}

fn size(n: u64) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

/// The human summary: one labelled line per fact, tables for regions,
/// masters and partitions.
pub fn render_table(r: &ImageReport) -> String {
    let mut o = String::new();
    let input = match r.input {
        InputKind::FullImage => "full image",
        InputKind::DescriptorOnly => "descriptor alone",
        InputKind::MeRegionOnly => "ME region alone",
    };
    let _ = writeln!(o, "{:<13}{input}, {} bytes", "input", r.digests.size);
    let _ = writeln!(o, "{:<13}{}", "sha256", r.digests.sha256);
    let _ = writeln!(o, "{:<13}{}", "STATE", r.state.name().to_uppercase());
    for e in &r.evidence {
        let _ = writeln!(o, "{:<13}- {e}", "");
    }
    if let Some(d) = &r.descriptor {
        render_descriptor(&mut o, d, r);
    }
    if let Some(bit) = &r.disable_bit {
        render_disable_bit(&mut o, bit);
    }
    if let Some(me) = &r.me {
        render_me(&mut o, me);
    }
    if let Some(bg) = &r.boot_guard {
        let _ = writeln!(o, "{:<13}{}", "boot guard", bg.note);
    }
    o
}

fn render_descriptor(o: &mut String, d: &Descriptor, r: &ImageReport) {
    let version = match d.version.version {
        Some(IfdVersion::V1) => "v1",
        Some(IfdVersion::V2) => "v2",
        None => "unknown",
    };
    let _ = writeln!(
        o,
        "{:<13}IFD {version} ({}), signature at {:#x}",
        "descriptor",
        confidence(d.version.confidence),
        d.signature_offset
    );
    for e in &d.version.evidence {
        let _ = writeln!(o, "{:<13}- {e}", "");
    }
    let platform = d.platform.platform.map_or("unknown", |p| p.name());
    let _ = writeln!(
        o,
        "{:<13}{platform} ({})",
        "platform",
        confidence(d.platform.confidence)
    );
    for e in &d.platform.evidence {
        let _ = writeln!(o, "{:<13}- {e}", "");
    }
    let flash = d.component.total_size.map_or("unknown".into(), size);
    let _ = writeln!(o, "{:<13}{flash} in {} chip(s)", "flash", d.component.chips);
    let _ = writeln!(o, "regions:");
    let _ = writeln!(
        o,
        "  {:<3}{:<20}{:<11}{:<11}{:<9}sha256",
        "#", "region", "base", "limit", "size"
    );
    for reg in &d.regions {
        if !reg.enabled {
            continue;
        }
        let sha = r
            .digests
            .regions
            .iter()
            .find(|x| x.index == reg.index)
            .and_then(|x| x.sha256.as_deref())
            .unwrap_or("(not in input)");
        let _ = writeln!(
            o,
            "  {:<3}{:<20}{:<11}{:<11}{:<9}{sha}",
            reg.index,
            reg.kind.name(),
            format!("{:#08x}", reg.base),
            format!("{:#08x}", reg.limit),
            size(reg.len() as u64)
        );
    }
    let disabled: Vec<String> = d
        .regions
        .iter()
        .filter(|r| !r.enabled)
        .map(|r| format!("{} ({})", r.index, r.kind.name()))
        .collect();
    if !disabled.is_empty() {
        let _ = writeln!(o, "  disabled: {}", disabled.join(", "));
    }
    let _ = writeln!(o, "masters:");
    let list = |v: &[u8]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    for m in &d.masters {
        let _ = writeln!(
            o,
            "  FLMSTR{} {:<15}{:#010x}  read {:<24} write {}",
            m.number,
            m.name,
            m.raw,
            list(&m.read),
            list(&m.write)
        );
    }
    if let Some(host) = d.masters.first() {
        let locked = if host.can_write(0) {
            "no (host may write it)"
        } else {
            "yes (host cannot write it)"
        };
        let _ = writeln!(o, "{:<13}{locked}", "desc. locked");
    }
    let _ = writeln!(
        o,
        "{:<13}{} PCH, {} MCH",
        "straps",
        d.pch_straps.len(),
        d.mch_straps.len()
    );
}

fn render_disable_bit(o: &mut String, bit: &DisableBit) {
    let state = match bit.state {
        DisableState::Set => "SET",
        DisableState::Clear => "clear",
        DisableState::Partial => "PARTLY SET",
        DisableState::Unknown => "unknown",
    };
    let _ = writeln!(
        o,
        "{:<13}{} {state} ({}): {}",
        "disable bit",
        bit.mechanism.unwrap_or("strap"),
        confidence(bit.confidence),
        bit.reason
    );
    for b in &bit.bits {
        let _ = writeln!(
            o,
            "{:<13}- {} = {} (byte {:#x} bit {}, strap {})",
            "", b.name, b.set as u8, b.byte_offset, b.byte_bit, b.strap_value
        );
    }
}

fn render_me(o: &mut String, me: &MeFinding) {
    let (where_, base) = match me.location {
        MeLocation::MeRegion { base, .. } => ("ME region", base),
        MeLocation::BiosRegion { base, .. } => ("inside the BIOS region", base),
        MeLocation::WholeInput { .. } => ("whole input", 0),
    };
    let Some(region) = &me.region else {
        let _ = writeln!(
            o,
            "{:<13}{where_} at {base:#x}: {}",
            "ME firmware",
            me.error.as_deref().unwrap_or("not parsed")
        );
        return;
    };
    let family = region.family.map_or("unknown family", family_name);
    let version = region
        .version
        .map_or("version unknown".into(), |v| v.to_string());
    let generation = region.generation.map_or("?".into(), |g| match g {
        crate::image::me::Generation::Gen1 => "1".to_string(),
        crate::image::me::Generation::Gen2 => "2".to_string(),
        crate::image::me::Generation::Gen3 => "3".to_string(),
        crate::image::me::Generation::Ifwi => "IFWI (beyond me_cleaner)".to_string(),
    });
    let _ = writeln!(
        o,
        "{:<13}{family} {version}, generation {generation}",
        "ME firmware"
    );
    let _ = writeln!(o, "{:<13}{where_} at image offset {base:#x}", "");
    if let Some(sku) = &region.sku {
        let _ = writeln!(
            o,
            "{:<13}{:?}{}",
            "SKU",
            sku.sku_type,
            sku.platform.map(|p| format!(" {p}")).unwrap_or_default()
        );
    }
    let layout = match region.layout {
        Layout::ClassicFpt {
            fpt_offset,
            rom_bypass,
        } => format!(
            "$FPT at region offset {fpt_offset:#x}{}",
            if rom_bypass {
                " (after ROM bypass)"
            } else {
                ""
            }
        ),
        Layout::Ifwi16 => "IFWI 1.6 layout table".into(),
        Layout::Ifwi17 => "IFWI 1.7 layout table".into(),
        Layout::Bpdt => "BPDT".into(),
        Layout::Empty => "empty (all 0xFF or 0x00)".into(),
    };
    let _ = writeln!(o, "{:<13}{layout}", "layout");
    if let Some(fpt) = &region.fpt {
        let _ = writeln!(
            o,
            "{:<13}{} entries, checksum {}",
            "$FPT",
            fpt.entry_count,
            if fpt.checksum_ok { "ok" } else { "BAD" }
        );
    }
    for m in &region.manifests {
        let sig = match &m.signature {
            Signature::Consistent { .. } => "signature consistent with its key".to_string(),
            Signature::Inconsistent { why, .. } => format!("signature INCONSISTENT: {why}"),
            Signature::Unchecked { why } => format!("signature unchecked: {why}"),
        };
        let _ = writeln!(
            o,
            "{:<13}{} {} SVN {} key {}… ({}); {sig}",
            "manifest",
            m.name,
            m.version,
            m.svn,
            m.key_sha256.get(..16).unwrap_or(&m.key_sha256),
            m.known_key.unwrap_or("unknown key")
        );
    }
    if !region.partitions.is_empty() {
        let _ = writeln!(o, "partitions:");
        let _ = writeln!(
            o,
            "  {:<12}{:<12}{:<11}{:<10}state",
            "name", "offset", "length", "kind"
        );
        for p in &region.partitions {
            let presence = match p.presence {
                Presence::Present => "present",
                Presence::Erased => "erased",
                Presence::NoData => "no data",
                Presence::Truncated => "TRUNCATED",
                Presence::OutOfRegion => "OUT OF REGION",
            };
            let _ = writeln!(
                o,
                "  {:<12}{:<12}{:<11}{:<10}{presence}",
                p.name,
                format!("{:#x}", p.offset),
                format!("{:#x}", p.length),
                p.kind
            );
        }
    }
    if !region.modules.is_empty() {
        let present = region.modules.iter().filter(|m| m.present).count();
        let _ = writeln!(
            o,
            "{:<13}{} listed, {present} present",
            "modules",
            region.modules.len()
        );
    }
}
