//! Puts the pieces together: picks the layout, walks from the partition
//! table to the FTPR, its manifest(s) and modules, then decides family,
//! generation and state.

use super::bytes::{clipped, has_tag, slice, ErasedMap};
use super::cpd::{self, Cpd};
use super::fpt::{self, span_presence, Fpt};
use super::ifwi::{self, LayoutTable};
use super::manifest::{self, Manifest};
use super::met;
use super::{
    keys, mme, Compression, Family, FptFacts, Generation, IfwiFacts, Layout, ManifestFacts,
    MeError, MeRegion, Module, ModuleHash, Partition, PartitionSource, Presence, RegionState,
    Signature, Sku,
};

/// Below this offset an FTPR has been moved towards the region start: stock
/// images keep it at 0x1000 or above, me_cleaner `-r` puts it at 0x400–0xD00.
const RELOCATED_BELOW: u64 = 0x1000;

/// What the walk collected; turned into an [`MeRegion`] at the end.
struct Walk<'a> {
    region: &'a [u8],
    /// Which blocks are erased, for presence checks.
    erased: ErasedMap<'a>,
    layout: Layout,
    fpt: Option<FptFacts>,
    ifwi: Option<IfwiFacts>,
    partitions: Vec<Partition>,
    manifests: Vec<Manifest>,
    modules: Vec<Module>,
    generation: Option<Generation>,
    /// `$MME` header size (gen 2), a TXE hint.
    mme_header_size: Option<u64>,
    /// FTPR (offset, presence), once found.
    ftpr: Option<(u64, Presence)>,
    /// The first damage met: what and where.
    damage: Option<(String, u64)>,
    /// A `$CPD` whose checksum8 does not match: partition name, offset.
    cpd_checksum_bad: Option<(String, u64)>,
    /// Manifests of the other code partitions (NFTP, RBEP, PMCP, …), with
    /// the partition they belong to; reported after the FTPR ones.
    other_manifests: Vec<(String, Manifest)>,
    /// `$CPD` directories already read (containers can overlap).
    seen_cpds: Vec<u64>,
}

impl<'a> Walk<'a> {
    fn new(region: &'a [u8], layout: Layout) -> Self {
        Walk {
            region,
            erased: ErasedMap::new(region),
            layout,
            fpt: None,
            ifwi: None,
            partitions: Vec::new(),
            manifests: Vec::new(),
            modules: Vec::new(),
            generation: None,
            mme_header_size: None,
            ftpr: None,
            damage: None,
            cpd_checksum_bad: None,
            other_manifests: Vec::new(),
            seen_cpds: Vec::new(),
        }
    }

    /// Records damage; the first one is the one reported.
    fn damage(&mut self, what: impl Into<String>, offset: u64) {
        if self.damage.is_none() {
            self.damage = Some((what.into(), offset));
        }
    }

    fn damage_err(&mut self, e: &MeError) {
        self.damage(e.to_string(), e.offset());
    }
}

pub(crate) fn parse(region: &[u8]) -> Result<MeRegion, MeError> {
    if region.len() < 0x20 {
        return Err(MeError::Truncated {
            structure: "ME region",
            offset: 0,
            needed: 0x20,
            available: region.len() as u64,
        });
    }
    if region.iter().all(|&b| b == 0xFF) || region.iter().all(|&b| b == 0) {
        return Ok(empty());
    }
    let walk = if has_tag(region, 0x10, b"$FPT") {
        classic(region, 0x10)?
    } else if has_tag(region, 0, b"$FPT") {
        classic(region, 0)?
    } else if let Some(table) = ifwi::detect(region)? {
        ifwi_layout(region, table)?
    } else if ifwi::is_bpdt(region, 0) {
        bare_bpdt(region)?
    } else {
        return Err(MeError::NoLayout);
    };
    Ok(finish(walk))
}

/// True when a BPDT at `at` lists an FTPR sub-partition holding a `$CPD`.
pub(crate) fn is_ifwi_at(data: &[u8], at: u64) -> bool {
    if !ifwi::is_bpdt(data, at) {
        return false;
    }
    let limit = (data.len() as u64).saturating_sub(at);
    ifwi::parse_bpdt(data, at, limit).is_ok_and(|entries| {
        entries
            .iter()
            .any(|e| e.entry_type == ifwi::TYPE_FTPR && cpd::is_cpd(data, e.offset))
    })
}

fn empty() -> MeRegion {
    MeRegion {
        layout: Layout::Empty,
        family: None,
        version: None,
        generation: None,
        sku: None,
        fpt: None,
        ifwi: None,
        partitions: Vec::new(),
        manifests: Vec::new(),
        modules: Vec::new(),
        state: RegionState::Empty,
    }
}

/// Classic layout: `$FPT` at 0 or 0x10, entry offsets from the region start.
fn classic(region: &[u8], fpt_offset: u64) -> Result<Walk<'_>, MeError> {
    let mut w = Walk::new(
        region,
        Layout::ClassicFpt {
            fpt_offset,
            rom_bypass: fpt_offset == 0x10,
        },
    );
    let table = fpt::parse(region, fpt_offset, 0)?;
    take_fpt(&mut w, &table);
    let Some(ftpr) = table
        .entries
        .iter()
        .find(|e| e.valid && (e.name == "FTPR" || e.name == "CODE"))
    else {
        w.damage("no FTPR or CODE partition in the $FPT", fpt_offset);
        return Ok(w);
    };
    let presence = fpt::presence(&w.erased, ftpr);
    w.ftpr = Some((ftpr.offset, presence));
    if matches!(
        presence,
        Presence::NoData | Presence::OutOfRegion | Presence::Erased
    ) {
        w.damage(
            format!("FTPR partition has no data ({presence:?})"),
            ftpr.entry_offset,
        );
        return Ok(w);
    }
    if cpd::is_cpd(region, ftpr.offset) {
        w.generation = Some(Generation::Gen3);
        code_partition(&mut w, ftpr.offset, ftpr.length, true);
    } else {
        let gen1 = ftpr.name == "CODE" || has_tag(region, ftpr.offset + 0x1C, b"$MAN");
        w.generation = Some(if gen1 {
            Generation::Gen1
        } else {
            Generation::Gen2
        });
        match manifest::parse(region, ftpr.offset, &ftpr.name) {
            Ok(m) => {
                if !gen1 {
                    match mme::parse(&w.erased, ftpr.offset, m.module_count, &ftpr.name) {
                        Ok(t) => {
                            w.mme_header_size = Some(t.header_size);
                            w.modules = t.modules;
                        }
                        Err(e) => w.damage_err(&e),
                    }
                }
                w.manifests.push(m);
            }
            Err(e) => w.damage_err(&e),
        }
    }
    let others: Vec<(String, u64, u64)> = table
        .entries
        .iter()
        .filter(|e| e.valid && e.part_type == 0 && e.name != ftpr.name)
        .filter(|e| fpt::presence(&w.erased, e) == Presence::Present)
        .map(|e| (e.name.clone(), e.offset, e.length))
        .collect();
    for (name, offset, length) in others {
        other_code_partition(&mut w, &name, offset, length);
    }
    Ok(w)
}

/// Records the FPT facts and partitions, and a bad checksum as damage.
fn take_fpt(w: &mut Walk<'_>, table: &Fpt) {
    if !table.facts.checksum_ok {
        let what = if table.facts.header_version >= 0x21 {
            "$FPT CRC-32 mismatch"
        } else {
            "$FPT checksum8 mismatch"
        };
        w.damage(what, table.facts.offset);
    }
    let parts = fpt::partitions(&w.erased, table);
    w.partitions.extend(parts);
    w.fpt = Some(table.facts.clone());
}

/// A `$CPD` code partition of `length` bytes at `offset`: its manifests
/// and, for the FTPR, its modules.
fn code_partition(w: &mut Walk<'_>, offset: u64, length: u64, is_ftpr: bool) {
    if w.seen_cpds.contains(&offset) {
        return;
    }
    w.seen_cpds.push(offset);
    let dir = match cpd::parse(w.region, offset) {
        Ok(d) => d,
        Err(e) => return w.damage_err(&e),
    };
    if !dir.checksum_ok && w.cpd_checksum_bad.is_none() {
        // CSSPS uses a checksum rule nobody has documented: the mismatch is
        // damage only once the family is known not to be CSSPS (`finish`).
        w.cpd_checksum_bad = Some((dir.partition_name.clone(), dir.offset));
    }
    let main_manifest = format!("{}.man", dir.partition_name);
    // The partition's own manifest first, then any other (e.g. FTPR2.man).
    let mut mans: Vec<_> = dir
        .entries
        .iter()
        .filter(|e| e.name.ends_with(".man"))
        .collect();
    mans.sort_by_key(|e| e.name != main_manifest);
    if is_ftpr && mans.first().map_or(true, |e| e.name != main_manifest) {
        w.damage(
            format!("{} has no {main_manifest}", dir.partition_name),
            dir.offset,
        );
    }
    for e in mans {
        match manifest::parse(w.region, e.offset, &e.name) {
            Ok(m) if is_ftpr => w.manifests.push(m),
            Ok(m) => w.other_manifests.push((dir.partition_name.clone(), m)),
            Err(err) => w.damage_err(&err),
        }
    }
    if is_ftpr {
        let mut modules = cpd_modules(&w.erased, &dir, offset, length);
        let signed: Vec<&[u8]> = w
            .manifests
            .iter()
            .filter_map(|m| {
                slice(
                    w.region,
                    m.facts.offset,
                    u64::from(m.facts.size),
                    "manifest",
                )
                .ok()
            })
            .collect();
        for m in modules
            .iter_mut()
            .filter(|m| m.present && !m.name.ends_with(".man") && !m.name.ends_with(".met"))
        {
            m.hash = met::check(w.region, &dir, &m.name, &signed);
            if let Some(ModuleHash::Mismatch { why }) = &m.hash {
                let (what, at) = (
                    format!("module {}: {why}", m.name),
                    m.offset.unwrap_or(offset),
                );
                w.damage(what, at);
            }
        }
        w.modules.extend(modules);
    }
}

/// Another code partition of a classic layout (gen 2: starts with its
/// `$MN2`; gen 3: a `$CPD`): its manifests are checked too.
fn other_code_partition(w: &mut Walk<'_>, name: &str, offset: u64, length: u64) {
    if cpd::is_cpd(w.region, offset) {
        code_partition(w, offset, length, false);
    } else if has_tag(w.region, offset + 0x1C, b"$MN2") {
        match manifest::parse(w.region, offset, name) {
            Ok(m) => w.other_manifests.push((name.to_string(), m)),
            Err(e) => w.damage_err(&e),
        }
    }
}

/// `$CPD` entries as modules. Like me_cleaner, an entry's data runs to the
/// next entry's offset (the last one to the partition end), so a module
/// removed by a cleaner shows up as all 0xFF, or is missing altogether
/// when truncation cut the region before it.
fn cpd_modules(map: &ErasedMap<'_>, dir: &Cpd, part_offset: u64, part_length: u64) -> Vec<Module> {
    let part_end = part_offset.saturating_add(part_length);
    let mut starts: Vec<u64> = dir.entries.iter().map(|e| e.offset).collect();
    starts.push(part_end);
    starts.sort_unstable();
    starts.dedup();
    dir.entries
        .iter()
        .map(|e| {
            let end = starts
                .iter()
                .copied()
                .find(|&s| s > e.offset)
                .unwrap_or(part_end);
            let span = end.saturating_sub(e.offset);
            let data = clipped(map.bytes, e.offset, span);
            Module {
                partition: dir.partition_name.clone(),
                name: e.name.clone(),
                offset: Some(e.offset),
                length: span,
                compression: if e.huffman {
                    Compression::Huffman
                } else if is_meta(&e.name) {
                    Compression::None
                } else {
                    Compression::Unknown
                },
                // Removed when its data is all 0xFF (erased) or lies wholly
                // past the end of a truncated region (cut off); a zero-length
                // entry has nothing to remove.
                present: span == 0 || (!data.is_empty() && !map.erased(e.offset, span)),
                hash: None,
            }
        })
        .collect()
}

/// Modules me_cleaner keeps: ROMP/BUP (gen 2), names starting with
/// rbe/kernel/syslib/bup (CSE).
fn is_essential(name: &str) -> bool {
    matches!(name, "ROMP" | "BUP")
        || ["rbe", "kernel", "syslib", "bup"]
            .iter()
            .any(|p| name.starts_with(p))
}

fn is_meta(name: &str) -> bool {
    name.ends_with(".man")
        || name.ends_with(".met")
        || name.ends_with(".key")
        || name.ends_with(".cfg")
}

/// CSE layout table 1.6 / 1.7: data partition `$FPT` (entries relative to
/// the FPT) and boot partitions holding BPDTs.
fn ifwi_layout(region: &[u8], table: LayoutTable) -> Result<Walk<'_>, MeError> {
    let mut w = Walk::new(
        region,
        if table.version_17 {
            Layout::Ifwi17
        } else {
            Layout::Ifwi16
        },
    );
    w.generation = Some(Generation::Ifwi);
    if table.crc_ok == Some(false) {
        w.damage("CSE layout table 1.7 CRC-32 mismatch", 0x14);
    }
    check_no_overlap(&mut w, &table);
    if let Some((off, size)) = table.data {
        let part = layout_partition(&w.erased, "data", off, size);
        w.partitions.push(part);
        let data = fpt::parse(region, off, off)?;
        take_fpt(&mut w, &data);
    }
    for &(i, off, size) in &table.boot {
        let part = layout_partition(&w.erased, &format!("BP{i}"), off, size);
        w.partitions.push(part);
        if span_presence(&w.erased, off, size) != Presence::Present {
            w.damage(
                format!("boot partition {i} [{off:#x}, +{size:#x}) is not in the region"),
                off,
            );
            continue;
        }
        boot_partition(&mut w, i, off, size);
    }
    w.ifwi = Some(IfwiFacts {
        data_partition: table.data,
        boot_partitions: table.boot.clone(),
        table_crc_ok: table.crc_ok,
    });
    if w.ftpr.is_none() {
        w.damage("no FTPR sub-partition in any boot partition", 0);
    }
    Ok(w)
}

/// The layout table's partitions share one flash range: they must not
/// overlap (unlike `$FPT` entries, where stock images nest containers).
fn check_no_overlap(w: &mut Walk<'_>, table: &LayoutTable) {
    let spans: Vec<(u64, u64)> = table
        .data
        .iter()
        .copied()
        .chain(table.boot.iter().map(|&(_, o, s)| (o, s)))
        .collect();
    let overlaps = |a: &(u64, u64), b: &(u64, u64)| {
        a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
    };
    for (i, a) in spans.iter().enumerate() {
        if let Some(b) = spans.iter().skip(i + 1).find(|b| overlaps(a, b)) {
            let what = format!(
                "CSE layout table: partitions [{:#x}, +{:#x}) and [{:#x}, +{:#x}) overlap",
                a.0, a.1, b.0, b.1
            );
            w.damage(what, 0x10);
        }
    }
}

fn layout_partition(region: &ErasedMap<'_>, name: &str, offset: u64, length: u64) -> Partition {
    Partition {
        name: name.to_string(),
        offset,
        length,
        kind: "layout".into(),
        valid: true,
        presence: span_presence(region, offset, length),
        source: PartitionSource::LayoutTable,
    }
}

/// A BPDT at the start of boot partition `index`: its sub-partitions, and
/// the FTPR's `$CPD`.
fn boot_partition(w: &mut Walk<'_>, index: u8, base: u64, limit: u64) {
    let entries = match ifwi::parse_bpdt(w.region, base, limit) {
        Ok(e) => e,
        Err(e) => return w.damage_err(&e),
    };
    match ifwi::bpdt_crc_ok(w.region, base) {
        Ok(Some(false)) => w.damage("BPDT CRC-32 mismatch", base + 8),
        Err(e) => w.damage_err(&e),
        _ => {}
    }
    for e in &entries {
        let name = match cpd::parse(w.region, e.offset) {
            Ok(d) => d.partition_name,
            Err(_) => ifwi::type_name(e.entry_type),
        };
        w.partitions.push(Partition {
            name,
            offset: e.offset,
            length: e.size,
            kind: ifwi::type_name(e.entry_type),
            valid: true,
            presence: span_presence(&w.erased, e.offset, e.size),
            source: PartitionSource::Bpdt {
                boot_partition: index,
                secondary: e.secondary,
            },
        });
    }
    for e in entries.iter().filter(|e| e.entry_type != ifwi::TYPE_FTPR) {
        if span_presence(&w.erased, e.offset, e.size) == Presence::Present
            && cpd::is_cpd(w.region, e.offset)
        {
            code_partition(w, e.offset, e.size, false);
        }
    }
    if let Some(f) = entries.iter().find(|e| e.entry_type == ifwi::TYPE_FTPR) {
        if w.ftpr.is_some() {
            return;
        }
        w.ftpr = Some((f.offset, span_presence(&w.erased, f.offset, f.size)));
        if cpd::is_cpd(w.region, f.offset) {
            code_partition(w, f.offset, f.size, true);
        } else {
            w.damage("FTPR sub-partition does not start with $CPD", f.offset);
        }
    }
}

/// A bare BPDT at offset 0 (APL/GLK firmware taken from the BIOS region).
fn bare_bpdt(region: &[u8]) -> Result<Walk<'_>, MeError> {
    let mut w = Walk::new(region, Layout::Bpdt);
    w.generation = Some(Generation::Ifwi);
    boot_partition(&mut w, 0, 0, region.len() as u64);
    if w.ftpr.is_none() {
        w.damage("no FTPR sub-partition in the BPDT", 0);
    }
    Ok(w)
}

/// Family, version, SKU and state from what the walk found.
fn finish(mut w: Walk<'_>) -> MeRegion {
    let main = w.manifests.first().map(|m| m.facts.clone());
    let version = main.as_ref().map(|m| m.version);
    let family = family(&w, main.as_ref());
    let mut sku: Option<Sku> = w.manifests.first().and_then(|m| m.sku.clone());
    if let (Some(s), Some(v)) = (sku.as_mut(), version) {
        if family == Some(Family::Csme) && v.major == 11 {
            s.platform = Some(if (s.raw >> 10) & 3 == 1 { "LP" } else { "H" });
        }
    }
    if let Some((name, offset)) = w.cpd_checksum_bad.take() {
        if family != Some(Family::Cssps) {
            w.damage(format!("{name} $CPD checksum mismatch"), offset);
        }
    }
    let state = state(&w);
    MeRegion {
        layout: w.layout,
        family,
        version,
        generation: w.generation,
        sku,
        fpt: w.fpt,
        ifwi: w.ifwi,
        partitions: w.partitions,
        manifests: w
            .manifests
            .into_iter()
            .chain(w.other_manifests.into_iter().map(|(_, m)| m))
            .map(|m| m.facts)
            .collect(),
        modules: w.modules,
        state,
    }
}

/// Family: from a pinned key when it names one; else from module names and
/// version, as MEA falls back (reference §9.2).
fn family(w: &Walk<'_>, main: Option<&ManifestFacts>) -> Option<Family> {
    let main = main?;
    if let Some(f) = keys::family(&main.key_sha256) {
        return Some(f);
    }
    let has = |n: &str| w.modules.iter().any(|m| m.name == n);
    let major = main.version.major;
    Some(match w.generation? {
        Generation::Gen1 => Family::Me,
        Generation::Gen2 if w.mme_header_size == Some(0x80) => Family::Txe,
        Generation::Gen2 => Family::Me,
        Generation::Gen3 | Generation::Ifwi => {
            if has("bup_rcv") || has("sku_mgr") || has("manuf") {
                Family::Cssps
            } else if has("fwupdate") || major >= 11 {
                Family::Csme
            } else if (3..=4).contains(&major) {
                Family::Cstxe
            } else {
                return None;
            }
        }
    })
}

/// `Corrupted` when a partition's manifests were checked and none of them
/// is consistent with its embedded key.
fn inconsistent_partition(manifests: &[&Manifest]) -> Option<RegionState> {
    let checked: Vec<&&Manifest> = manifests
        .iter()
        .filter(|m| !matches!(m.facts.signature, Signature::Unchecked { .. }))
        .collect();
    if checked
        .iter()
        .any(|m| matches!(m.facts.signature, Signature::Consistent { .. }))
    {
        return None;
    }
    let m = checked.first()?;
    let why = match &m.facts.signature {
        Signature::Inconsistent { why, .. } => why.as_str(),
        _ => "",
    };
    Some(RegionState::Corrupted {
        what: format!(
            "{} signature inconsistent with its embedded key: {why}",
            m.facts.name
        ),
        offset: m.facts.offset,
    })
}

/// Stock / cleaned / corrupted / unknown (reference §14).
fn state(w: &Walk<'_>) -> RegionState {
    if let Some((what, offset)) = &w.damage {
        return RegionState::Corrupted {
            what: what.clone(),
            offset: *offset,
        };
    }
    // Each code partition is intact when at least one of its manifests is
    // consistent with its own key (CSSPS 5 carries an FTPR.man that is not,
    // beside FTPR2.man). The FTPR first, then the others in table order.
    let ftpr: Vec<&Manifest> = w.manifests.iter().collect();
    if let Some(bad) = inconsistent_partition(&ftpr) {
        return bad;
    }
    let mut partitions: Vec<&str> = Vec::new();
    for (p, _) in &w.other_manifests {
        if !partitions.contains(&p.as_str()) {
            partitions.push(p);
        }
    }
    for p in partitions {
        let group: Vec<&Manifest> = w
            .other_manifests
            .iter()
            .filter(|(q, _)| q == p)
            .map(|(_, m)| m)
            .collect();
        if let Some(bad) = inconsistent_partition(&group) {
            return bad;
        }
    }
    let Some((ftpr_offset, ftpr_presence)) = w.ftpr else {
        return RegionState::Unknown {
            why: "no FTPR found".into(),
        };
    };
    let code: Vec<&Module> = w.modules.iter().filter(|m| !is_meta(&m.name)).collect();
    // Stock images may hold one empty placeholder module (fptemp on CSME
    // 11.8 is all 0xFF): cleaning means most non-essential modules are gone.
    let optional: Vec<&&Module> = code.iter().filter(|m| !is_essential(&m.name)).collect();
    let removed = optional.iter().filter(|m| !m.present).count();
    let mostly_removed = removed > 0 && removed * 2 > optional.len();
    let with_data: Vec<&Partition> = w
        .partitions
        .iter()
        .filter(|p| {
            p.source == PartitionSource::Fpt
                && matches!(p.presence, Presence::Present | Presence::Truncated)
        })
        .collect();
    let only_code_partitions = !with_data.is_empty()
        && with_data
            .iter()
            .all(|p| matches!(p.name.as_str(), "FTPR" | "FTUP" | "NFTP" | "CODE"));
    let classic = matches!(w.layout, Layout::ClassicFpt { .. });
    let stripped_table = classic && with_data.len() == 1 && only_code_partitions;
    let truncated = ftpr_presence == Presence::Truncated;
    if mostly_removed || stripped_table || truncated {
        return RegionState::Cleaned {
            remaining_partitions: w
                .partitions
                .iter()
                .filter(|p| matches!(p.presence, Presence::Present | Presence::Truncated))
                .map(|p| p.name.clone())
                .collect(),
            remaining_modules: code
                .iter()
                .filter(|m| m.present)
                .map(|m| m.name.clone())
                .collect(),
            relocated: classic && ftpr_offset < RELOCATED_BELOW,
            truncated,
        };
    }
    if classic && only_code_partitions {
        return RegionState::Unknown {
            why: "only code partitions (FTPR/FTUP/NFTP) in the $FPT: an update or extracted image, not a flash region"
                .into(),
        };
    }
    RegionState::Stock
}
