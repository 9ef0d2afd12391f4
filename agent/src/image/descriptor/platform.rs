//! Which PCH or SoC a descriptor belongs to. Nothing in the descriptor says
//! it outright, so this is a fingerprint: ifdtool's chipset guess for IFD v1
//! and, for v2, the strap-section shape (PSL, MSL, FMSBA, ICCRIBA) of the
//! real descriptors in the reference (§2.8). Anything else is "unknown"; the
//! ME firmware version can corroborate a guess later (see
//! [`PlatformGuess::corroborate`]).

use serde::Serialize;

use super::{Confidence, DescriptorMap, IfdVersion};

/// The platforms we can tell apart. Names are PCH (chipset) names; several
/// CPUs share one PCH.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// ICH8/9/10 + GMCH (ME 1-5): descriptor signature at 0x0.
    Ich8To10,
    /// 5-series (ME 6).
    IbexPeak,
    /// Bay Trail / Braswell SoCs (TXE 1-2): ifdtool cannot tell them apart.
    BayTrailOrBraswell,
    /// 6/7-series (ME 7-8): identical descriptor shape.
    CougarOrPantherPoint,
    /// 8-series (ME 9).
    LynxPoint,
    /// 9-series (ME 9.5-10).
    WildcatPoint,
    /// 100-series LP (CSME 11).
    SunrisePointLp,
    /// 100-series H (CSME 11).
    SunrisePointH,
    /// C620 (CSSPS 4-5).
    Lewisburg,
    /// 400-series LP, CML-U (CSME 14); Cannon Point-LP shares the layout.
    CometPointLp,
    /// 500-series H (TGL-H, RKL-S; CSME 15).
    TigerPointH,
    /// 600/700-series desktop (ADL-S, RPL-S; CSME 16).
    AlderPointS,
    /// Gemini Lake SoC (CSTXE 4).
    GeminiLake,
}

impl Platform {
    /// A short human name.
    pub fn name(self) -> &'static str {
        use Platform::*;
        match self {
            Ich8To10 => "ICH8/9/10",
            IbexPeak => "Ibex Peak (5-series)",
            BayTrailOrBraswell => "Bay Trail / Braswell",
            CougarOrPantherPoint => "Cougar/Panther Point (6/7-series)",
            LynxPoint => "Lynx Point (8-series)",
            WildcatPoint => "Wildcat Point (9-series)",
            SunrisePointLp => "Sunrise Point-LP (100-series)",
            SunrisePointH => "Sunrise Point-H (100-series)",
            Lewisburg => "Lewisburg (C620)",
            CometPointLp => "Comet/Cannon Point-LP (CML-U)",
            TigerPointH => "Tiger Point-H (500-series)",
            AlderPointS => "Alder Point-S (600/700-series)",
            GeminiLake => "Gemini Lake",
        }
    }
}

/// A platform guess with its evidence.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlatformGuess {
    pub platform: Option<Platform>,
    pub confidence: Confidence,
    pub evidence: Vec<String>,
}

impl PlatformGuess {
    fn unknown(evidence: String) -> PlatformGuess {
        PlatformGuess {
            platform: None,
            confidence: Confidence::Unknown,
            evidence: vec![evidence],
        }
    }

    /// Folds in what the ME firmware says about the platform (`compatible`
    /// lists the platforms that firmware runs on). Agreement confirms; a
    /// contradiction is recorded and makes the platform unknown, because a
    /// disable bit must never be read at a guessed location.
    pub fn corroborate(&mut self, compatible: &[Platform], why: &str) {
        match self.platform {
            Some(p) if compatible.contains(&p) => {
                if self.confidence == Confidence::Probable {
                    self.confidence = Confidence::Confirmed;
                }
                self.evidence.push(format!("{why}: consistent"));
            }
            Some(p) => {
                self.evidence.push(format!(
                    "{why}: does not run on {}, so the descriptor guess is dropped",
                    p.name()
                ));
                self.platform = None;
                self.confidence = Confidence::Unknown;
            }
            None => self
                .evidence
                .push(format!("{why}: does not pin the platform")),
        }
    }
}

pub(crate) fn guess(
    signature_offset: usize,
    map: &DescriptorMap,
    version: Option<IfdVersion>,
) -> PlatformGuess {
    if signature_offset == 0 {
        return PlatformGuess {
            platform: Some(Platform::Ich8To10),
            confidence: Confidence::Probable,
            evidence: vec!["signature at 0x0: only ICH8/9/10 place it there".into()],
        };
    }
    match version {
        Some(IfdVersion::V1) => guess_v1(map),
        Some(IfdVersion::V2) => guess_v2(map),
        None => PlatformGuess::unknown("descriptor version unknown".into()),
    }
}

/// ifdtool's IFD v1 chipset guess (ICCRIBA, MSL, ISL), §2.7.
fn guess_v1(map: &DescriptorMap) -> PlatformGuess {
    let (isl, msl, icc, fmsba_field) = (map.psl, map.msl, map.iccriba, map.fmsba >> 4);
    let platform = if icc == 0 {
        if isl <= 16 {
            Some(Platform::IbexPeak)
        } else {
            None
        }
    } else if icc < 0x31 && fmsba_field < 0x30 {
        Some(if msl == 0 && isl <= 17 {
            Platform::BayTrailOrBraswell
        } else if msl <= 1 && isl <= 18 {
            Platform::CougarOrPantherPoint
        } else if msl <= 1 && isl <= 21 {
            Platform::LynxPoint
        } else {
            Platform::WildcatPoint
        })
    } else {
        None
    };
    let what = format!(
        "IFD v1 with ICCRIBA {icc:#x}, MSL {msl}, ISL {isl}, FMSBA {:#x}",
        map.fmsba
    );
    match platform {
        Some(p) => PlatformGuess {
            platform: Some(p),
            confidence: Confidence::Probable,
            evidence: vec![format!("{what}: ifdtool's chipset rule gives {}", p.name())],
        },
        None => PlatformGuess::unknown(format!("{what}: no chipset rule matches")),
    }
}

/// Strap-section shapes of real IFD v2 descriptors (reference §2.8).
const V2_FINGERPRINTS: &[(u8, u8, usize, u8, Platform, &str)] = &[
    // (PSL, MSL, FMSBA, ICCRIBA, platform, sample)
    (66, 3, 0x300, 0x31, Platform::SunrisePointLp, "51nb X210"),
    (
        88,
        3,
        0x300,
        0x31,
        Platform::SunrisePointH,
        "ASUS P10S-M WS",
    ),
    (139, 1, 0x400, 0x34, Platform::Lewisburg, "OCP Tioga Pass"),
    (
        69,
        3,
        0x300,
        0x34,
        Platform::CometPointLp,
        "System76 darp6, Protectli vault_cml",
    ),
    (101, 1, 0xB00, 0x11, Platform::TigerPointH, "Erying TGL"),
    (
        115,
        1,
        0x700,
        0x14,
        Platform::AlderPointS,
        "MSI PRO Z690-A / Z790-P",
    ),
    (
        23,
        0,
        0x000,
        0x00,
        Platform::GeminiLake,
        "Protectli vault_glk",
    ),
];

fn guess_v2(map: &DescriptorMap) -> PlatformGuess {
    let shape = format!(
        "IFD v2 with PSL {}, MSL {}, FMSBA {:#x}, ICCRIBA {:#x}",
        map.psl, map.msl, map.fmsba, map.iccriba
    );
    let hit = V2_FINGERPRINTS.iter().find(|(psl, msl, fmsba, icc, _, _)| {
        *psl == map.psl && *msl == map.msl && *fmsba == map.fmsba && *icc == map.iccriba
    });
    match hit {
        Some((_, _, _, _, p, sample)) => PlatformGuess {
            platform: Some(*p),
            confidence: Confidence::Probable,
            evidence: vec![format!("{shape}: same shape as the {sample} descriptor")],
        },
        None => PlatformGuess::unknown(format!("{shape}: matches no known descriptor")),
    }
}
