//! The ME "kill switch" strap: HAP (CSME 11+) or AltMeDisable (ME 6-10, TXE
//! 1-2), or the ICH/MCH MeDisable pair on ICH8-10. Its location differs per
//! PCH (reference §3.1), so it is read only where the platform is known; an
//! unknown platform gives "unknown", never a guess. The TGL-H trap — a stock
//! descriptor with PCHSTRP0 bit 16 set for another reason — is why a single
//! "PCHSTRP0 bit 16" rule is wrong.

use serde::Serialize;

use super::descriptor::{Confidence, Descriptor, Platform};

/// Which strap bank a bit lives in.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StrapBank {
    /// PCHSTRP / ICHSTRP (at FPSBA).
    Pch,
    /// MCHSTRP / processor straps (at FMSBA).
    Mch,
}

/// One strap bit of the disable mechanism and what it holds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StrapBit {
    /// "PCHSTRP28 bit 16", as datasheets and ifdtool name it.
    pub name: String,
    pub bank: StrapBank,
    pub strap: usize,
    pub bit: u8,
    /// Image offset of the byte holding the bit, and the bit in that byte.
    pub byte_offset: usize,
    pub byte_bit: u8,
    /// The strap dword as read.
    pub strap_value: String,
    pub set: bool,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DisableState {
    /// Every bit of the mechanism is set.
    Set,
    /// No bit is set.
    Clear,
    /// Some but not all bits are set (ICH8-10 has two).
    Partial,
    /// The location is not known for this platform, or the platform is not
    /// known: we do not look.
    Unknown,
}

/// What the disable strap says, with where we looked and how sure we are.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DisableBit {
    pub state: DisableState,
    /// "HAP", "AltMeDisable" or "MeDisable"; `None` when unknown.
    pub mechanism: Option<&'static str>,
    pub bits: Vec<StrapBit>,
    /// The platform the location was chosen for.
    pub platform: Option<Platform>,
    /// As sure as the platform guess (or the ME-version fallback) is.
    pub confidence: Confidence,
    pub reason: String,
}

/// One bit of a mechanism: (bank, strap index, bit in the strap dword).
type BitSpec = (StrapBank, usize, u8);

/// (mechanism, bits) for a platform; `None` = not known.
fn location(platform: Platform) -> Option<(&'static str, &'static [BitSpec])> {
    use Platform::*;
    use StrapBank::*;
    Some(match platform {
        Ich8To10 => ("MeDisable", &[(Pch, 0, 0), (Mch, 0, 0)]),
        IbexPeak | BayTrailOrBraswell | CougarOrPantherPoint | LynxPoint | WildcatPoint => {
            ("AltMeDisable", &[(Pch, 10, 7)])
        }
        SunrisePointLp | SunrisePointH => ("HAP", &[(Pch, 0, 16)]),
        CometPointLp => ("HAP", &[(Pch, 28, 16)]),
        TigerPointH => ("HAP", &[(Pch, 37, 16)]),
        AlderPointS => ("HAP", &[(Pch, 55, 16)]),
        // No reliable source for these (§3.1, §16): ifdtool's PCHSTRP0 bit
        // 16 did not disable the TXE on an Apollo Lake board.
        Lewisburg | GeminiLake => return None,
    })
}

/// What the ME firmware found in the image says about the platform, for
/// when the descriptor alone does not pin it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeHint {
    /// CSME 11: runs only on 100/200-series PCHs, whose HAP is PCHSTRP0
    /// bit 16 whatever the exact part.
    Csme11,
}

/// Reads the disable strap of `desc`. `hint` is used only when the
/// descriptor's platform is unknown.
pub fn read(desc: &Descriptor, hint: Option<MeHint>) -> DisableBit {
    let guess = &desc.platform;
    if let Some(platform) = guess.platform {
        return match location(platform) {
            Some((mechanism, bits)) => read_bits(
                desc,
                mechanism,
                bits,
                Some(platform),
                guess.confidence,
                format!("{} location for {}", mechanism, platform.name()),
            ),
            None => unknown(
                Some(platform),
                format!("the disable strap of {} is not known", platform.name()),
            ),
        };
    }
    match hint {
        Some(MeHint::Csme11) => read_bits(
            desc,
            "HAP",
            &[(StrapBank::Pch, 0, 16)],
            None,
            Confidence::Probable,
            "descriptor platform unknown; CSME 11 runs only on 100/200-series PCHs (HAP = PCHSTRP0 bit 16)"
                .into(),
        ),
        None => unknown(None, "the descriptor's platform is unknown".into()),
    }
}

fn unknown(platform: Option<Platform>, reason: String) -> DisableBit {
    DisableBit {
        state: DisableState::Unknown,
        mechanism: None,
        bits: Vec::new(),
        platform,
        confidence: Confidence::Unknown,
        reason,
    }
}

fn read_bits(
    desc: &Descriptor,
    mechanism: &'static str,
    bits: &[BitSpec],
    platform: Option<Platform>,
    confidence: Confidence,
    reason: String,
) -> DisableBit {
    let mut out = Vec::new();
    for &(bank, strap, bit) in bits {
        let (value, base, prefix) = match bank {
            StrapBank::Pch => (desc.pch_strap(strap), desc.map.fpsba, "PCHSTRP"),
            StrapBank::Mch => (desc.mch_strap(strap), desc.map.fmsba, "MCHSTRP"),
        };
        let Some(value) = value else {
            let have = match bank {
                StrapBank::Pch => desc.pch_straps.len(),
                StrapBank::Mch => desc.mch_straps.len(),
            };
            return unknown(
                platform,
                format!("{prefix}{strap} is needed but the descriptor has only {have} such straps"),
            );
        };
        out.push(StrapBit {
            name: format!("{prefix}{strap} bit {bit}"),
            bank,
            strap,
            bit,
            byte_offset: base + 4 * strap + (bit / 8) as usize,
            byte_bit: bit % 8,
            strap_value: format!("{value:#010x}"),
            set: value & (1 << bit) != 0,
        });
    }
    let set = out.iter().filter(|b| b.set).count();
    let state = match set {
        0 => DisableState::Clear,
        n if n == out.len() => DisableState::Set,
        _ => DisableState::Partial,
    };
    DisableBit {
        state,
        mechanism: Some(mechanism),
        bits: out,
        platform,
        confidence,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortros_testkit::synth::descriptor::DescriptorBuilder;

    fn parse(b: DescriptorBuilder) -> Descriptor {
        Descriptor::parse(&b.build()).unwrap()
    }

    // Strap shapes of the platforms in the table (PSL, MSL, FMSBA, ICCRIBA).
    fn tgl_h() -> DescriptorBuilder {
        DescriptorBuilder::v2()
            .shape(101, 1, 0xB00, 0x11)
            .read_clock(0)
    }
    fn adl_s() -> DescriptorBuilder {
        DescriptorBuilder::v2()
            .shape(115, 1, 0x700, 0x14)
            .read_clock(0)
    }
    fn cml_u() -> DescriptorBuilder {
        DescriptorBuilder::v2()
            .shape(69, 3, 0x300, 0x34)
            .read_clock(4)
    }

    #[test]
    fn spt_hap_is_pchstrp0_bit16() {
        let bit = read(&parse(DescriptorBuilder::v2()), None);
        assert_eq!(bit.state, DisableState::Clear);
        assert_eq!(bit.mechanism, Some("HAP"));
        assert_eq!(bit.bits[0].byte_offset, 0x102);
        let bit = read(
            &parse(DescriptorBuilder::v2().set_pch_strap_bits(0, 1 << 16)),
            None,
        );
        assert_eq!(bit.state, DisableState::Set);
        assert_eq!((bit.bits[0].byte_offset, bit.bits[0].byte_bit), (0x102, 0));
    }

    #[test]
    fn tgl_h_pchstrp0_bit16_is_not_hap() {
        // The trap: bit 16 of PCHSTRP0 set on a stock TGL-H descriptor.
        let bit = read(&parse(tgl_h().set_pch_strap_bits(0, 1 << 16)), None);
        assert_eq!(bit.state, DisableState::Clear);
        assert_eq!(bit.bits[0].name, "PCHSTRP37 bit 16");
        assert_eq!(bit.bits[0].byte_offset, 0x196);
        let bit = read(&parse(tgl_h().set_pch_strap_bits(37, 1 << 16)), None);
        assert_eq!(bit.state, DisableState::Set);
    }

    #[test]
    fn cml_u_and_adl_s_locations() {
        let bit = read(&parse(cml_u().set_pch_strap_bits(28, 1 << 16)), None);
        assert_eq!(
            (bit.state, bit.bits[0].byte_offset),
            (DisableState::Set, 0x172)
        );
        let bit = read(&parse(adl_s().set_pch_strap_bits(55, 1 << 16)), None);
        assert_eq!(
            (bit.state, bit.bits[0].byte_offset),
            (DisableState::Set, 0x1DE)
        );
        // Neighbouring bits do not count.
        let bit = read(
            &parse(adl_s().set_pch_strap_bits(55, 1 << 17 | 1 << 15)),
            None,
        );
        assert_eq!(bit.state, DisableState::Clear);
    }

    #[test]
    fn pch_v1_altmedisable_is_pchstrp10_bit7() {
        let bit = read(
            &parse(DescriptorBuilder::v1().set_pch_strap_bits(10, 0x80)),
            None,
        );
        assert_eq!(bit.mechanism, Some("AltMeDisable"));
        assert_eq!(bit.state, DisableState::Set);
        assert_eq!(bit.bits[0].byte_offset, 0x128);
        let bit = read(&parse(DescriptorBuilder::v1().pch_strap(10, 0x44)), None);
        assert_eq!(bit.state, DisableState::Clear);
    }

    #[test]
    fn ich_has_two_bits_and_can_be_partial() {
        let b = DescriptorBuilder::v1().signature_at_zero();
        assert_eq!(read(&parse(b.clone()), None).state, DisableState::Clear);
        let partial = read(&parse(b.clone().pch_strap(0, 1)), None);
        assert_eq!(partial.state, DisableState::Partial);
        let set = read(&parse(b.pch_strap(0, 1).mch_strap(0, 1)), None);
        assert_eq!(set.state, DisableState::Set);
        assert_eq!(set.mechanism, Some("MeDisable"));
    }

    #[test]
    fn unknown_platform_is_unknown_even_with_bits_set() {
        let b = DescriptorBuilder::v2()
            .shape(77, 2, 0x400, 0x40)
            .set_pch_strap_bits(0, 1 << 16);
        let bit = read(&parse(b.clone()), None);
        assert_eq!(bit.state, DisableState::Unknown);
        assert!(bit.bits.is_empty());
        // With CSME 11 in the image, PCHSTRP0 bit 16 is HAP.
        let bit = read(&parse(b), Some(MeHint::Csme11));
        assert_eq!(
            (bit.state, bit.confidence),
            (DisableState::Set, Confidence::Probable)
        );
    }

    #[test]
    fn known_platform_without_known_location_is_unknown() {
        let glk = DescriptorBuilder::v2()
            .shape(23, 0, 0, 0)
            .set_pch_strap_bits(0, 1 << 16);
        let bit = read(&parse(glk), None);
        assert_eq!(bit.platform, Some(Platform::GeminiLake));
        assert_eq!(bit.state, DisableState::Unknown);
    }
}
