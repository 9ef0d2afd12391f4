//! What changed between two reports of the same node: the ME state and
//! version, flash digests, AMT state and PCR values. Each change is one
//! line an operator can read ("field: before -> after").

use fortros_wire::me_evidence::MeEvidence;
use fortros_wire::report::{MeImageState, RegionKind};
use fortros_wire::Report;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub before: String,
    pub after: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} -> {}", self.field, self.before, self.after)
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// The agent's own image state word from extension 1, when readable.
fn agent_image_state(r: &Report) -> Option<String> {
    MeEvidence::from_report(r)?.ok()?.image_state
}

/// The ME image state in one word (as in the fleet table).
pub fn image_state(r: &Report) -> String {
    match r.flash.as_ref().and_then(|f| f.me_image.as_ref()) {
        None => "-".into(),
        Some(m) => match &m.state {
            MeImageState::Stock => "stock".into(),
            MeImageState::Cleaned => "cleaned".into(),
            // The wire has one variant for "stock or cleaned, bit set";
            // the agent's evidence (extension 1) tells them apart.
            MeImageState::DisableBitSet
                if agent_image_state(r).is_some_and(|s| s.starts_with("cleaned")) =>
            {
                "cleaned+disable-bit".into()
            }
            MeImageState::DisableBitSet => "disable-bit".into(),
            MeImageState::Corrupted { reason } => format!("corrupted ({reason})"),
            MeImageState::Absent => "absent".into(),
            MeImageState::Unknown => "unknown".into(),
        },
    }
}

/// The live ME state summary ("normal", "disabled", ...).
pub fn live_state(r: &Report) -> String {
    opt(r.live_me.as_ref().map(|l| l.state.summary.clone()))
}

fn live_fw_version(r: &Report) -> Option<String> {
    r.live_me
        .as_ref()
        .and_then(|l| l.mkhi.as_ref())
        .and_then(|m| m.fw_version.clone())
}

fn image_fw_version(r: &Report) -> Option<String> {
    r.flash
        .as_ref()
        .and_then(|f| f.me_image.as_ref())
        .and_then(|m| m.version.clone())
}

/// The ME version: the live firmware's, else the image's.
pub fn me_version(r: &Report) -> String {
    opt(live_fw_version(r).or_else(|| image_fw_version(r)))
}

/// The running firmware's version (MKHI), or "-".
pub fn live_version(r: &Report) -> String {
    opt(live_fw_version(r))
}

/// The version of the firmware in the flash image, or "-". It differs from
/// the live one after a flash update not yet booted, or when they lie.
pub fn image_version(r: &Report) -> String {
    opt(image_fw_version(r))
}

/// The disable (HAP / AltMeDisable) strap in the image: "set", "clear",
/// or "-" when the agent could not tell.
pub fn disable_bit(r: &Report) -> String {
    match r
        .flash
        .as_ref()
        .and_then(|f| f.descriptor.as_ref())
        .and_then(|d| d.me_disable_bit)
    {
        Some(true) => "set".into(),
        Some(false) => "clear".into(),
        None => "-".into(),
    }
}

/// AMT provisioning state in words.
pub fn amt_state(r: &Report) -> String {
    let a = r.live_me.as_ref().and_then(|l| l.amthi.as_ref());
    match a.and_then(|a| a.provisioning_state) {
        None => "-".into(),
        Some(0) => "unprovisioned".into(),
        Some(1) => "in-provisioning".into(),
        Some(2) => {
            let mode = match a.and_then(|a| a.control_mode) {
                Some(1) => "client",
                Some(2) => "admin",
                _ => "?",
            };
            format!("provisioned ({mode})")
        }
        Some(n) => format!("state {n}"),
    }
}

fn region_name(k: RegionKind) -> String {
    match k {
        RegionKind::Other(n) => format!("region{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The changes from `old` to `new`, in a fixed order.
pub fn diff(old: &Report, new: &Report) -> Vec<Change> {
    let mut out = Vec::new();
    let mut cmp = |field: &str, a: String, b: String| {
        if a != b {
            out.push(Change {
                field: field.into(),
                before: a,
                after: b,
            });
        }
    };
    cmp("me.image_state", image_state(old), image_state(new));
    cmp("me.live_state", live_state(old), live_state(new));
    cmp("me.live_version", live_version(old), live_version(new));
    cmp("me.image_version", image_version(old), image_version(new));
    cmp("me.disable_bit", disable_bit(old), disable_bit(new));
    cmp("amt.state", amt_state(old), amt_state(new));
    let ports = |r: &Report| {
        r.network
            .as_ref()
            .map(|n| format!("{:?}", n.amt_ports))
            .unwrap_or_else(|| "-".into())
    };
    cmp("amt.ports", ports(old), ports(new));
    let image = |r: &Report| opt(r.flash.as_ref().map(|f| f.image_sha256));
    cmp("flash.image_sha256", image(old), image(new));
    let regions = |r: &Report| -> BTreeMap<String, String> {
        r.flash
            .iter()
            .flat_map(|f| &f.regions)
            .map(|g| (region_name(g.region), g.sha256.to_string()))
            .collect()
    };
    let (ro, rn) = (regions(old), regions(new));
    for k in ro.keys().chain(rn.keys().filter(|k| !ro.contains_key(*k))) {
        cmp(&format!("flash.{k}.sha256"), opt(ro.get(k)), opt(rn.get(k)));
    }
    let pcrs = |r: &Report| -> BTreeMap<u8, String> {
        r.pcrs
            .values
            .iter()
            .map(|p| (p.index, hex::encode(p.digest.as_slice())))
            .collect()
    };
    let (po, pn) = (pcrs(old), pcrs(new));
    for k in po.keys().chain(pn.keys().filter(|k| !po.contains_key(*k))) {
        cmp(&format!("pcr.{k}"), opt(po.get(k)), opt(pn.get(k)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortros_wire::testing::sample_report;
    use fortros_wire::Bytes;

    #[test]
    fn identical_reports_have_no_diff_and_changes_are_named() {
        let a = sample_report(&[1], &[2]);
        let mut b = sample_report(&[1], &[3]);
        assert!(diff(&a, &b).is_empty(), "nonce alone is not a change");
        let flash = b.flash.as_mut().unwrap();
        flash.me_image.as_mut().unwrap().state = MeImageState::DisableBitSet;
        flash.regions[1].sha256.0[0] ^= 1;
        b.live_me.as_mut().unwrap().state.summary = "disabled".into();
        b.pcrs.values[8].digest = Bytes(vec![0xaa; 32]);
        let fields: Vec<String> = diff(&a, &b).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                "me.image_state",
                "me.live_state",
                "flash.me.sha256",
                "pcr.13"
            ]
        );
        let c = &diff(&a, &b)[0];
        assert_eq!(c.to_string(), "me.image_state: stock -> disable-bit");
    }

    #[test]
    fn versions_and_disable_bit_are_told_apart() {
        let a = sample_report(&[1], &[2]);
        let mut b = a.clone();
        let flash = b.flash.as_mut().unwrap();
        flash.me_image.as_mut().unwrap().version = Some("11.8.82.3838".into());
        flash.descriptor.as_mut().unwrap().me_disable_bit = Some(true);
        flash.me_image.as_mut().unwrap().state = MeImageState::DisableBitSet;
        let changes: Vec<String> = diff(&a, &b).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            changes,
            [
                "me.image_state: stock -> disable-bit",
                "me.image_version: 11.8.50.3425 -> 11.8.82.3838",
                "me.disable_bit: clear -> set"
            ]
        );
        assert_eq!(live_version(&b), "11.8.50.3425");
        assert_eq!(me_version(&b), "11.8.50.3425", "the live one first");
        b.live_me = None;
        assert_eq!(me_version(&b), "11.8.82.3838");
        assert_eq!(live_version(&b), "-");

        // Cleaned code with the bit set: the agent's word tells it apart.
        let ev = MeEvidence {
            image_state: Some("cleaned + disable bit set".into()),
            ..MeEvidence::default()
        };
        b.extensions.push(ev.to_extension().unwrap());
        assert_eq!(image_state(&b), "cleaned+disable-bit");
    }
}
