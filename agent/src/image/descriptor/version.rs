//! IFD v1 (ICH8 … Wildcat Point, Bay Trail/Braswell) or v2 (100-series and
//! later, Apollo/Gemini Lake, Lewisburg)?
//!
//! The classic test — FLCOMP read clock 0 means v1 — is wrong on 500-series
//! and later (TGL-H and ADL-S descriptors have read clock 0 and are v2), so
//! it never decides alone. The structural test (FLMAP0.NR and FMBA, which
//! hold on every sample in the reference) decides; the read clock only
//! corroborates, and the ME firmware generation can corroborate later.

use serde::Serialize;

use super::DescriptorMap;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IfdVersion {
    V1,
    V2,
}

/// How sure a guess is.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    /// No usable indication, or indications that contradict each other.
    Unknown,
    /// One indication.
    Probable,
    /// Two independent indications agree.
    Confirmed,
}

/// The version with the evidence that led to it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VersionGuess {
    pub version: Option<IfdVersion>,
    pub confidence: Confidence,
    pub evidence: Vec<String>,
}

impl IfdVersion {
    pub fn name(self) -> &'static str {
        match self {
            IfdVersion::V1 => "v1",
            IfdVersion::V2 => "v2",
        }
    }
}

impl VersionGuess {
    /// Folds in an independent indication (the ME generation, say): agreement
    /// confirms, a first indication sets, a contradiction is recorded and
    /// lowers the confidence to unknown, keeping the structural answer.
    pub fn corroborate(&mut self, implied: IfdVersion, why: &str) {
        match self.version {
            Some(v) if v == implied => {
                self.confidence = Confidence::Confirmed;
                self.evidence.push(format!("{why}: agrees"));
            }
            Some(_) => {
                self.confidence = Confidence::Unknown;
                self.evidence.push(format!(
                    "{why}: implies {}, contradicting the descriptor",
                    implied.name()
                ));
            }
            None => {
                self.version = Some(implied);
                self.confidence = Confidence::Probable;
                self.evidence
                    .push(format!("{why}: implies {}", implied.name()));
            }
        }
    }
}

pub(crate) fn guess(signature_offset: usize, map: &DescriptorMap, flcomp: u32) -> VersionGuess {
    let mut evidence = Vec::new();
    if signature_offset == 0 {
        evidence.push("signature at 0x0: ICH8-10 layout, which is IFD v1".to_string());
        return VersionGuess {
            version: Some(IfdVersion::V1),
            confidence: Confidence::Confirmed,
            evidence,
        };
    }
    let structural = if map.nr == 0 && map.fmba == 0x80 {
        evidence.push("FLMAP0.NR = 0 and FMBA = 0x80: v2 layout".to_string());
        Some(IfdVersion::V2)
    } else if map.nr != 0 && map.fmba == 0x60 {
        evidence.push(format!("FLMAP0.NR = {} and FMBA = 0x60: v1 layout", map.nr));
        Some(IfdVersion::V1)
    } else {
        evidence.push(format!(
            "FLMAP0.NR = {} and FMBA = {:#x} match neither known layout",
            map.nr, map.fmba
        ));
        None
    };
    let read_clock = (flcomp >> 17) & 0x7;
    let by_clock = if read_clock == 0 {
        IfdVersion::V1
    } else {
        IfdVersion::V2
    };
    let confidence = match structural {
        Some(v) if v == by_clock => {
            evidence.push(format!("FLCOMP read clock {read_clock} agrees"));
            Confidence::Confirmed
        }
        Some(_) => {
            evidence.push(format!(
                "FLCOMP read clock {read_clock} suggests {}, a test known to fail on 500-series and later; not trusted",
                by_clock.name()
            ));
            Confidence::Probable
        }
        None => {
            evidence.push(format!(
                "FLCOMP read clock {read_clock} suggests {}, not trusted alone",
                by_clock.name()
            ));
            Confidence::Unknown
        }
    };
    VersionGuess {
        version: structural,
        confidence,
        evidence,
    }
}
