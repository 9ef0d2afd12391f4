//! Unit tests on synthetic images: options, refusals, the descriptor
//! edits. The real-image behaviour is in agent/tests/corpus_neutralize.rs.

use super::*;
use fortros_testkit::synth::descriptor::DescriptorBuilder;

const MIB: usize = 1 << 20;

fn refused(r: Result<Outcome, NeutralizeError>) -> String {
    match r {
        Err(e @ NeutralizeError::Refused(_)) => e.to_string(),
        Err(e) => panic!("expected a refusal, got {e:?}"),
        Ok(o) => panic!("expected a refusal, got a plan {:?}", o.plan.actions),
    }
}

fn opts(mode: Mode) -> Options {
    Options {
        mode,
        ..Options::default()
    }
}

/// A full image whose BIOS carries a FIT with the given entry types.
fn with_fit(mut image: Vec<u8>, types: &[u8]) -> Vec<u8> {
    let len = image.len();
    let fit = len - 0x1000;
    let addr = (1u64 << 32) - len as u64 + fit as u64;
    image[len - 0x40..len - 0x38].copy_from_slice(&addr.to_le_bytes());
    image[fit..fit + 8].copy_from_slice(b"_FIT_   ");
    let n = types.len() as u32 + 1;
    image[fit + 8..fit + 11].copy_from_slice(&n.to_le_bytes()[..3]);
    image[fit + 14] = 0;
    for (i, t) in types.iter().enumerate() {
        image[fit + 16 * (i + 1) + 14] = *t;
    }
    image
}

#[test]
fn diff_finds_ranges_and_tails() {
    let a = vec![0u8; 300];
    let mut b = a.clone();
    b[5] = 1;
    b[6] = 1;
    b[200] = 9;
    assert_eq!(
        diff(&a, &b),
        [
            ByteRange { start: 5, end: 7 },
            ByteRange {
                start: 200,
                end: 201
            }
        ]
    );
    assert_eq!(
        diff(&a, &a[..100]),
        [ByteRange {
            start: 100,
            end: 300
        }]
    );
    assert!(diff(&a, &a).is_empty());
}

#[test]
fn disable_bit_on_a_descriptor_alone() {
    // SPT (IFD v2 default shape): HAP is PCHSTRP0 bit 16 = byte 0x102 bit 0.
    let desc = DescriptorBuilder::v2().build();
    let out = neutralize(&desc, &opts(Mode::Disable)).unwrap();
    assert_eq!(out.image[0x102] & 1, 1);
    assert_eq!(
        out.plan.changed,
        [ByteRange {
            start: 0x102,
            end: 0x103
        }]
    );
    assert_eq!(out.plan.disable_bit[0].name, "PCHSTRP0 bit 16");
    // Running it again changes nothing: the bit is already set.
    let again = neutralize(&out.image, &opts(Mode::Disable)).unwrap();
    assert!(again.unchanged());
    assert!(again.plan.skipped[0].contains("already set"));
}

#[test]
fn strip_and_disable_on_a_descriptor_alone_sets_only_the_bit() {
    let desc = DescriptorBuilder::v1().build();
    let out = neutralize(&desc, &opts(Mode::StripAndDisable)).unwrap();
    assert_eq!(out.image[0x128] & 0x80, 0x80);
    assert!(out.plan.skipped.iter().any(|s| s.starts_with("strip:")));
    // Strip alone is refused: there is no firmware to strip.
    let why = refused(neutralize(&desc, &opts(Mode::Strip)));
    assert!(why.contains("no ME firmware"), "{why}");
}

#[test]
fn unknown_platform_is_refused_never_guessed() {
    let image = DescriptorBuilder::v2()
        .shape(77, 2, 0x400, 0x40)
        .build_image(8 * MIB);
    for mode in [Mode::Disable, Mode::StripAndDisable] {
        let why = refused(neutralize(&image, &opts(mode)));
        assert!(why.contains("never guessed"), "{why}");
    }
}

#[test]
fn boot_guard_manifests_refuse_a_strip_without_override() {
    let image = with_fit(
        DescriptorBuilder::v2().build_image(8 * MIB),
        &[0x01, 0x0B, 0x0C],
    );
    for mode in [Mode::Strip, Mode::StripAndDisable] {
        let why = refused(neutralize(&image, &opts(mode)));
        assert!(why.contains("Boot Guard"), "{why}");
        assert!(why.contains("0x0B/0x0C"), "{why}");
    }
    // The disable bit alone is fine.
    let out = neutralize(&image, &opts(Mode::Disable)).unwrap();
    assert_eq!(out.image[0x102] & 1, 1);
    // With the override the Boot Guard check passes (and the empty ME
    // region is what stops the strip here).
    let o = Options {
        mode: Mode::Strip,
        allow_boot_guard: true,
        ..Options::default()
    };
    let why = refused(neutralize(&image, &o));
    assert!(!why.contains("Boot Guard"), "{why}");
}

#[test]
fn options_that_make_no_sense_are_rejected() {
    let image = DescriptorBuilder::v2().build_image(8 * MIB);
    let o = Options {
        mode: Mode::Disable,
        relocate: true,
        ..Options::default()
    };
    assert!(matches!(
        neutralize(&image, &o),
        Err(NeutralizeError::BadOptions(_))
    ));
    let o = Options {
        truncate: true,
        ..Options::default()
    };
    assert!(matches!(
        neutralize(&image, &o),
        Err(NeutralizeError::BadOptions(_))
    ));
}

#[test]
fn corrupted_fpt_is_refused() {
    // "$FPT" at 0x10 with an entry count that runs off the region.
    let mut region = vec![0xFFu8; 0x10000];
    region[..0x10].fill(0);
    region[0x10..0x14].copy_from_slice(b"$FPT");
    region[0x14..0x18].copy_from_slice(&0x0FFF_FFFFu32.to_le_bytes());
    region[0x18] = 0x20;
    region[0x19] = 0x10;
    region[0x1A] = 0x30;
    let r = neutralize(&region, &opts(Mode::Strip));
    assert!(r.as_ref().is_err_and(|e| e.is_refusal()), "{r:?}");
}

#[test]
fn an_me_region_file_has_no_disable_bit() {
    let mut region = vec![0xFFu8; 0x10000];
    region[0x10..0x14].copy_from_slice(b"$FPT");
    region[0x14..0x18].copy_from_slice(&0u32.to_le_bytes());
    let why = refused(neutralize(&region, &opts(Mode::Disable)));
    assert!(why.contains("no descriptor"), "{why}");
}

/// The x210 ME region file (CSME 11.8, gen 3: modules at fixed offsets)
/// stripped in memory: input, output, decision and plan.
fn x210_stripped() -> Option<(Vec<u8>, Vec<u8>, plan::Decision, Plan)> {
    let corpus = fortros_testkit::corpus::Corpus::open_or_skip("re-check tests (x210)")?;
    let input = corpus.read("x210_me.bin").expect("x210_me.bin");
    let o = opts(Mode::Strip);
    let d = plan::decide(&input, &o).expect("x210 may be stripped");
    let (out, plan) = apply::apply(&input, &o, &d).expect("x210 strips");
    Some((input, out, d, plan))
}

#[test]
fn the_recheck_catches_a_module_left_behind() {
    let Some((input, mut out, d, plan)) = x210_stripped() else {
        return;
    };
    assert!(verify::verify(&input, &out, &d, &plan).is_ok());
    // Put one module the plan says it removed back into the output.
    let parsed = crate::image::inspect::inspect(&input).unwrap();
    let region = parsed.me.unwrap().region.unwrap();
    let (name, at, len) = plan
        .modules
        .iter()
        .filter(|m| m.removed)
        .find_map(|m| {
            // A module that holds data in the input (not a 0xFF placeholder).
            let r = region
                .modules
                .iter()
                .find(|r| r.name == m.name && r.present)?;
            Some((m.name.clone(), r.offset? as usize, r.length as usize))
        })
        .expect("a removed module with an offset");
    out[at..at + len].copy_from_slice(&input[at..at + len]);
    match verify::verify(&input, &out, &d, &plan) {
        Err(NeutralizeError::CheckFailed(what)) => {
            assert!(what.contains(&name) && what.contains("present"), "{what}")
        }
        other => panic!("expected a failed check, got {other:?}"),
    }
}

#[test]
fn the_recheck_verifies_the_ftpr_manifest_signature() {
    let Some((input, mut out, d, plan)) = x210_stripped() else {
        return;
    };
    let parsed = crate::image::inspect::inspect(&input).unwrap();
    let manifest = parsed.me.unwrap().region.unwrap().manifests[0].offset as usize;
    // $MN2: 0x80-byte header, 0x100-byte modulus, 4-byte exponent, then
    // the signature; one flipped signature bit must fail the RSA check.
    out[manifest + 0x80 + 0x104 + 0x10] ^= 1;
    match verify::verify(&input, &out, &d, &plan) {
        Err(NeutralizeError::CheckFailed(what)) => {
            assert!(what.contains("manifest no longer verifies"), "{what}")
        }
        other => panic!("expected a failed check, got {other:?}"),
    }
}
