//! Carrying out a [`Decision`] on a copy of the image.

use super::plan::{Decision, StripKind, Target};
use super::{
    descriptor_edit, diff, gen2, gen3, partitions, relocate, NeutralizeError, Options, Plan,
};

/// 4 KiB blocks me_cleaner leaves free after the kept data.
const SPARE_BLOCKS: u64 = 4;
const BLOCK: u64 = 0x1000;

pub(super) fn apply(
    image: &[u8],
    options: &Options,
    d: &Decision,
) -> Result<(Vec<u8>, Plan), NeutralizeError> {
    let mut out = image.to_vec();
    let mut plan = empty_plan(image, options, Some(d));
    if let Some(kind) = d.strip {
        let region = out
            .get_mut(d.me_range.clone())
            .ok_or_else(|| NeutralizeError::Malformed {
                structure: "ME region",
                offset: d.me_range.start as u64,
                what: "outside the image".into(),
            })?;
        let min = strip(region, kind, options, &mut plan)?;
        plan.minimum_me_size = min;
        if options.truncate {
            match min {
                Some(m) if (m as usize) < out.len() => {
                    out.truncate(m as usize);
                    plan.actions
                        .push(format!("truncated the ME region file to {m:#x} bytes"));
                }
                Some(_) => plan
                    .skipped
                    .push("truncate: the kept data already fills the file".into()),
                None => plan
                    .skipped
                    .push("truncate: the end of the kept data is not known".into()),
            }
        }
    }
    if let Some(bit) = &d.disable_bit {
        let changes = descriptor_edit::set_disable_bit(&mut out, bit)?;
        for c in &changes {
            plan.actions.push(format!(
                "set {} {} (byte {:#x}: {:#04x} -> {:#04x})",
                bit.mechanism.unwrap_or("disable strap"),
                c.name,
                c.byte_offset,
                c.before,
                c.after
            ));
        }
        plan.disable_bit = changes;
    }
    if let (Some(v2), Some(desc)) = (d.restrict, &d.descriptor) {
        if let Some(c) = descriptor_edit::restrict_me_master(&mut out, desc, v2)? {
            plan.actions.push(format!(
                "restricted the ME master FLMSTR2 at {:#x}: {:#010x} -> {:#010x}",
                c.offset, c.before, c.after
            ));
            plan.me_master = Some(c);
        } else {
            plan.skipped
                .push("restrict ME access: FLMSTR2 already restricted".into());
        }
    }
    plan.output_len = out.len() as u64;
    plan.changed = diff(image, &out);
    plan.changed_bytes = plan.changed.iter().map(|r| r.end - r.start).sum();
    Ok((out, plan))
}

/// A plan with nothing done yet.
pub(super) fn empty_plan(image: &[u8], options: &Options, d: Option<&Decision>) -> Plan {
    Plan {
        options: *options,
        target: d.map_or_else(Target::default, |d| d.target.clone()),
        actions: Vec::new(),
        skipped: d.map_or_else(Vec::new, |d| d.skipped.clone()),
        partitions: Vec::new(),
        modules: Vec::new(),
        relocated: None,
        minimum_me_size: None,
        disable_bit: Vec::new(),
        me_master: None,
        input_len: image.len() as u64,
        output_len: 0,
        changed: Vec::new(),
        changed_bytes: 0,
        result_state: String::new(),
    }
}

/// Strips the ME `region` in place; returns the minimum region size.
pub(super) fn strip(
    region: &mut [u8],
    kind: StripKind,
    options: &Options,
    plan: &mut Plan,
) -> Result<Option<u64>, NeutralizeError> {
    let (parts, ftpr) = partitions::strip(region, kind == StripKind::Gen3)?;
    let removed = parts
        .iter()
        .filter(|p| p.action == partitions::PartitionFate::Removed)
        .count();
    plan.actions.push(format!(
        "stripped the $FPT: kept FTPR, erased {removed} partition(s), dropped {} of {} entries, cleared the EFFS flag, fixed the checksum",
        parts.len() - 1,
        parts.len()
    ));
    plan.partitions = parts;
    // Module removal, then (optionally) relocation; gen 2 relocates only
    // when its module table could be read (it needs the LLUT).
    let (end, llut) = match kind {
        StripKind::Gen2 => match gen2::headers(region, ftpr.offset)? {
            Some(headers) => {
                let (mods, end) = gen2::remove_modules(region, &headers)?;
                plan.modules = mods;
                (
                    Some(end),
                    Some(gen2::llut_for_relocation(region, &headers)?),
                )
            }
            None => {
                plan.skipped.push(
                    "module removal: the $MME header layout cannot be told; modules kept".into(),
                );
                (None, None)
            }
        },
        StripKind::Gen3 => {
            let (mods, end) = gen3::remove_modules(region, ftpr.offset, ftpr.length)?;
            plan.modules = mods;
            (Some(end), Some(None))
        }
    };
    let gone = plan.modules.iter().filter(|m| m.removed).count();
    plan.actions.push(format!(
        "erased {gone} of {} FTPR modules",
        plan.modules.len()
    ));
    let mut end = end;
    if options.relocate {
        match llut {
            Some(llut) => {
                let new = relocate::relocate(region, ftpr.entry, ftpr.offset, ftpr.length, llut)?;
                if new != ftpr.offset {
                    plan.relocated = Some((ftpr.offset, new));
                    plan.actions.push(format!(
                        "moved FTPR from region offset {:#x} to {new:#x}",
                        ftpr.offset
                    ));
                    end = end.map(|e| e.saturating_sub(ftpr.offset - new));
                } else {
                    plan.skipped
                        .push("relocate: FTPR already at the lowest offset".into());
                }
            }
            None => plan
                .skipped
                .push("relocate: needs the module table, which could not be read".into()),
        }
    }
    Ok(end
        .filter(|&e| e > 0)
        .map(|e| (e / BLOCK + 1) * BLOCK + SPARE_BLOCKS * BLOCK))
}
