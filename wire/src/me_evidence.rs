//! Report extension 1, "ME evidence": the words and the reasons behind the
//! ME facts. The typed facts ([`crate::report::MeImageFacts`],
//! [`crate::report::LiveMeFacts`]) say *what* the node saw; this says *why*
//! the agent classified it so (one sentence per piece of evidence), what it
//! could not see, and the finer state names the typed enums cannot hold
//! without a major format change (e.g. "cleaned + disable bit set").
//!
//! Carried as [`Extension`] `{tag: 1, data}` where `data` is the postcard
//! encoding of [`MeEvidence`], which starts with its own format version and
//! grows like the report does (append only, see docs/report-format.md).

use crate::codec::{self, CodecError};
use crate::report::{Extension, Report};
use crate::{Bytes, FormatVersion};
use serde::{Deserialize, Serialize};

/// The extension tag (allocated in docs/report-format.md).
pub const TAG_ME_EVIDENCE: u32 = 1;

/// The version of [`MeEvidence`] this crate writes and reads.
pub const ME_EVIDENCE_FORMAT: FormatVersion = FormatVersion { major: 1, minor: 0 };

/// Why the ME facts are what they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeEvidence {
    pub format: FormatVersion,
    /// The agent's own image state, e.g. "stock", "cleaned + disable bit set".
    pub image_state: Option<String>,
    /// Why, most important first (from the image inspection).
    pub image_evidence: Vec<String>,
    /// The live classification, e.g. "normal", "disabled_by_hap".
    pub live_state: Option<String>,
    /// Why, in order (from the HFSTS rules and what answered).
    pub live_evidence: Vec<String>,
    /// Where the HFSTS values came from: "pci_config", "sysfs_fw_status",
    /// or "smbios" (the BIOS's POST-time snapshot, not live).
    pub hfsts_source: Option<String>,
    /// What the live probe could not see, and why.
    pub not_seen: Vec<String>,
}

impl Default for MeEvidence {
    fn default() -> Self {
        MeEvidence {
            format: ME_EVIDENCE_FORMAT,
            image_state: None,
            image_evidence: Vec::new(),
            live_state: None,
            live_evidence: Vec::new(),
            hfsts_source: None,
            not_seen: Vec::new(),
        }
    }
}

impl MeEvidence {
    /// The extension carrying this evidence.
    pub fn to_extension(&self) -> Result<Extension, CodecError> {
        Ok(Extension {
            tag: TAG_ME_EVIDENCE,
            data: Bytes(codec::encode("ME evidence", self)?),
        })
    }

    /// Decodes extension data (bounded by the bytes given; never panics).
    pub fn from_bytes(data: &[u8]) -> Result<Self, CodecError> {
        codec::decode("ME evidence", data, ME_EVIDENCE_FORMAT)
    }

    /// The evidence a report carries: `None` without the extension, the
    /// decoding error when it is malformed.
    pub fn from_report(report: &Report) -> Option<Result<Self, CodecError>> {
        report
            .extensions
            .iter()
            .find(|e| e.tag == TAG_ME_EVIDENCE)
            .map(|e| Self::from_bytes(e.data.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_a_report_and_rejects_garbage() {
        let ev = MeEvidence {
            image_state: Some("cleaned + disable bit set".into()),
            image_evidence: vec!["CSME 11.8.82.3838: cleaned".into()],
            live_state: Some("disabled_by_hap".into()),
            hfsts_source: Some("pci_config".into()),
            ..MeEvidence::default()
        };
        assert_eq!(ev.format, ME_EVIDENCE_FORMAT);
        let mut r = crate::testing::sample_report(&[1], &[2]);
        assert!(MeEvidence::from_report(&r).is_none());
        r.extensions.push(ev.to_extension().unwrap());
        let bytes = r.to_bytes().unwrap();
        let back = Report::from_bytes(&bytes).unwrap();
        assert_eq!(MeEvidence::from_report(&back).unwrap().unwrap(), ev);

        r.extensions[0].data = Bytes(vec![1, 0, 5, 0xff]);
        assert!(MeEvidence::from_report(&r).unwrap().is_err());
        r.extensions[0].data = Bytes(vec![2, 0]);
        assert!(matches!(
            MeEvidence::from_report(&r).unwrap(),
            Err(CodecError::UnsupportedVersion { .. })
        ));
    }
}
