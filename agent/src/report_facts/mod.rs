//! What the node measured, in the wire report's terms: the parser's and
//! the live probe's own types converted into `fortros_wire::report` facts
//! (the org reads these; the agent's types stay free to change).
//!
//! - [`image`]: the flash image ([`crate::image::inspect::ImageReport`]) →
//!   region digests, descriptor facts, ME image facts;
//! - [`live`]: the live ME ([`crate::hw::mei::probe::LiveMe`]) → HFSTS,
//!   decoded state, MKHI, AMTHI, Boot Guard; and the MAC addresses;
//! - [`me_evidence`]: the reasons behind both, as report extension 1.
//!
//! Pure conversions: no I/O, nothing here can fail.

pub mod image;
pub mod live;

use crate::hw::mei::probe::LiveMe;
use crate::image::inspect::ImageReport;
use fortros_wire::me_evidence::MeEvidence;

pub use image::flash_facts;
pub use live::{live_me_facts, network_facts};

/// The evidence behind the ME facts (report extension 1).
pub fn me_evidence(inspected: Option<&ImageReport>, live: &LiveMe) -> MeEvidence {
    MeEvidence {
        image_state: inspected.map(|r| r.state.name().to_string()),
        image_evidence: inspected.map(|r| r.evidence.clone()).unwrap_or_default(),
        live_state: Some(live::state_word(live.classification.state).to_string()),
        live_evidence: live.classification.evidence.clone(),
        hfsts_source: live
            .hfsts
            .as_ref()
            .map(|h| live::source_word(h.source).to_string()),
        not_seen: live.not_seen.clone(),
        ..MeEvidence::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::mei::probe::{probe, ProbeOptions};
    use crate::hw::mei::sysfs::SysRoot;
    use crate::image::inspect::inspect;
    use std::time::Duration;

    #[test]
    fn evidence_carries_both_states_and_what_was_not_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let live = probe(&ProbeOptions {
            root: SysRoot::new(tmp.path()),
            dev_state_bound: Duration::from_millis(20),
            reply_timeout: Duration::from_millis(50),
            busy_retries: 0,
        });
        let img = fortros_testkit::synth::sample_full_image();
        let r = inspect(&img).unwrap();
        let ev = me_evidence(Some(&r), &live);
        assert_eq!(ev.image_state.as_deref(), Some("stock"));
        assert!(ev
            .image_evidence
            .iter()
            .any(|e| e.contains("CSME 11.8.82.3838")));
        assert_eq!(ev.live_state.as_deref(), Some("absent_or_hidden"));
        assert!(ev.hfsts_source.is_none());
        assert!(ev.not_seen.iter().any(|l| l.contains("00:16.0")));
        let ext = ev.to_extension().unwrap();
        assert_eq!(MeEvidence::from_bytes(ext.data.as_slice()).unwrap(), ev);

        let none = me_evidence(None, &live);
        assert!(none.image_state.is_none() && none.image_evidence.is_empty());
    }
}
