//! Property tests: postcard round trips of every wire type, and forward
//! compatibility (a newer minor version appending fields is still read by
//! this reader; a newer major version is refused, never misread).

use fortros_wire::codec::CodecError;
use fortros_wire::envelope::SignedPolicy;
use fortros_wire::policy::*;
use fortros_wire::report::*;
use fortros_wire::testing::{sample_report, SoftAk};
use fortros_wire::{Bytes, Digest32, FormatVersion, Policy, Report, POLICY_FORMAT, REPORT_FORMAT};
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes)
}

fn digest() -> impl Strategy<Value = Digest32> {
    any::<[u8; 32]>().prop_map(Digest32)
}

fn text() -> impl Strategy<Value = String> {
    "[ -~]{0,24}"
}

fn region() -> impl Strategy<Value = RegionDigest> {
    (
        prop_oneof![
            Just(RegionKind::Descriptor),
            Just(RegionKind::Bios),
            Just(RegionKind::Me),
            Just(RegionKind::Gbe),
            Just(RegionKind::Platform),
            Just(RegionKind::DeviceExpansion),
            Just(RegionKind::Ec),
            any::<u8>().prop_map(RegionKind::Other),
        ],
        any::<u32>(),
        any::<u32>(),
        digest(),
    )
        .prop_map(|(region, base, limit, sha256)| RegionDigest {
            region,
            base,
            limit,
            sha256,
        })
}

fn me_state() -> impl Strategy<Value = MeImageState> {
    prop_oneof![
        Just(MeImageState::Stock),
        Just(MeImageState::Cleaned),
        Just(MeImageState::DisableBitSet),
        text().prop_map(|reason| MeImageState::Corrupted { reason }),
        Just(MeImageState::Absent),
        Just(MeImageState::Unknown),
    ]
}

fn flash() -> impl Strategy<Value = FlashFacts> {
    (
        any::<u64>(),
        digest(),
        prop::collection::vec(region(), 0..6),
        prop::option::of((
            any::<bool>(),
            prop::option::of(text()),
            prop::option::of(any::<bool>()),
            prop::collection::vec(any::<u32>(), 0..4),
        )),
        prop::option::of((text(), prop::option::of(text()), me_state())),
    )
        .prop_map(|(size, image_sha256, regions, d, me)| FlashFacts {
            size,
            image_sha256,
            regions,
            descriptor: d.map(|(valid, platform, bit, master_access)| DescriptorFacts {
                valid,
                platform,
                me_disable_bit: bit,
                me_region_writable_by_host: bit.map(|b| !b),
                descriptor_writable_by_host: None,
                master_access,
            }),
            me_image: me.map(|(family, version, state)| MeImageFacts {
                family,
                version,
                state,
                partitions: vec!["FTPR".into()],
            }),
        })
}

fn live_me() -> impl Strategy<Value = LiveMeFacts> {
    (
        any::<[Option<u32>; 6]>(),
        any::<(u8, u8, u8, bool)>(),
        text(),
        prop::option::of((
            prop::option::of(text()),
            prop::collection::vec(any::<u32>(), 0..3),
        )),
        prop::option::of((prop::option::of(any::<u32>()), prop::option::of(bytes(16)))),
        prop::option::of((
            prop::option::of(any::<u64>()),
            prop::option::of(any::<bool>()),
        )),
    )
        .prop_map(
            |(hfsts, (w, o, e, m), summary, mkhi, amthi, bg)| LiveMeFacts {
                hfsts,
                state: LiveMeState {
                    working_state: w,
                    operation_mode: o,
                    error_code: e,
                    manufacturing_mode: m,
                    summary,
                },
                mkhi: mkhi.map(|(fw_version, capabilities)| MkhiFacts {
                    fw_version,
                    capabilities,
                    errors: vec![],
                }),
                amthi: amthi.map(|(p, uuid)| AmthiFacts {
                    provisioning_state: p,
                    control_mode: p,
                    uuid,
                    errors: vec!["timeout".into()],
                }),
                boot_guard: bg.map(|(msr, b)| BootGuardFacts {
                    sacm_info_msr: msr,
                    verified_boot: b,
                    measured_boot: b,
                    fpf_committed: b,
                }),
            },
        )
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Done),
        text().prop_map(|reason| Outcome::Refused { reason }),
        (text(), any::<bool>()).prop_map(|(reason, restored)| Outcome::Failed { reason, restored }),
        Just(Outcome::Skipped),
    ]
}

fn report() -> impl Strategy<Value = Report> {
    (
        (
            bytes(120),
            prop::option::of(bytes(300)),
            prop::option::of(bytes(1200)),
        ),
        bytes(64),
        any::<u64>(),
        prop::option::of(flash()),
        prop::option::of(live_me()),
        prop::option::of((
            prop::option::of(bytes(6)),
            prop::collection::vec(any::<u16>(), 0..5),
        )),
        prop::collection::vec((any::<u8>(), bytes(32)), 0..10),
        prop::option::of((
            any::<u64>(),
            digest(),
            any::<bool>(),
            prop::option::of(text()),
        )),
        prop::collection::vec((text(), outcome(), prop::option::of(text())), 0..4),
        prop::collection::vec((any::<u32>(), bytes(40)), 0..3),
    )
        .prop_map(
            |(node, nonce, boot_counter, flash, live_me, net, pcrs, pol, actions, ext)| Report {
                format: REPORT_FORMAT,
                node: NodeIdentity {
                    ak_public: node.0,
                    ek_public: node.1,
                    ek_certificate: node.2,
                },
                nonce,
                boot_counter,
                flash,
                live_me,
                network: net.map(|(me_mac, amt_ports)| NetworkFacts {
                    me_mac,
                    host_mac: None,
                    amt_ports,
                }),
                pcrs: PcrValues {
                    bank: 0x000b,
                    values: pcrs
                        .into_iter()
                        .map(|(index, digest)| PcrValue { index, digest })
                        .collect(),
                },
                policy: pol.map(|(serial, policy_sha256, accepted, reason)| PolicyReceived {
                    serial,
                    policy_sha256,
                    accepted,
                    reason,
                }),
                actions: actions
                    .into_iter()
                    .map(|(action, outcome, detail)| ActionTaken {
                        action,
                        outcome,
                        detail,
                    })
                    .collect(),
                extensions: ext
                    .into_iter()
                    .map(|(tag, data)| Extension { tag, data })
                    .collect(),
            },
        )
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        any::<u64>(),
        bytes(34),
        bytes(32),
        prop_oneof![
            Just(PolicyAction::Ignore),
            Just(PolicyAction::Neutralize {
                mode: NeutralizeMode::DisableBit
            }),
            Just(PolicyAction::Neutralize {
                mode: NeutralizeMode::DisableBitAndStrip
            }),
            (bytes(80), any::<bool>(), prop::option::of(text())).prop_map(|(pw, b, iface)| {
                PolicyAction::Use {
                    amt: AmtSettings {
                        admin_password_sealed: pw,
                        control_mode: if b {
                            AmtControlMode::Admin
                        } else {
                            AmtControlMode::Client
                        },
                        interface: iface,
                        enable_kvm: b,
                        enable_sol: !b,
                    },
                }
            }),
        ],
    )
        .prop_map(|(serial, ak_name, nonce, action)| Policy {
            format: POLICY_FORMAT,
            serial,
            node: NodeBinding { ak_name },
            nonce,
            action,
            extensions: vec![],
        })
}

fn encode_with_appended(report: &Report, minor: u16, tail: &[u8], extra: u64) -> Vec<u8> {
    let mut r = report.clone();
    r.format.minor = minor;
    let mut bytes = postcard::to_allocvec(&r).unwrap();
    // New fields in a newer minor version: a byte string and a number.
    bytes.extend(postcard::to_allocvec(&(Bytes(tail.to_vec()), extra)).unwrap());
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn report_round_trips(r in report()) {
        let bytes = r.to_bytes().unwrap();
        prop_assert_eq!(Report::from_bytes(&bytes).unwrap(), r.clone());
        let json: Report = serde_json::from_str(&r.to_json()).unwrap();
        prop_assert_eq!(json, r);
    }

    #[test]
    fn policy_and_envelope_round_trip(p in policy()) {
        prop_assert_eq!(Policy::from_bytes(&p.to_bytes().unwrap()).unwrap(), p.clone());
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let env = SignedPolicy::sign(&p, &key).unwrap();
        prop_assert_eq!(SignedPolicy::from_bytes(&env.to_bytes().unwrap()).unwrap(), env);
    }

    #[test]
    fn newer_minor_version_with_appended_fields_is_read(
        r in report(), tail in prop::collection::vec(any::<u8>(), 0..50), extra in any::<u64>()
    ) {
        let bytes = encode_with_appended(&r, REPORT_FORMAT.minor + 1, &tail, extra);
        let read = Report::from_bytes(&bytes).unwrap();
        prop_assert_eq!(read.format.minor, REPORT_FORMAT.minor + 1);
        let mut expected = r.clone();
        expected.format.minor += 1;
        prop_assert_eq!(read, expected);
    }

    #[test]
    fn same_version_with_trailing_bytes_is_refused(
        r in report(), tail in prop::collection::vec(any::<u8>(), 1..20)
    ) {
        let mut bytes = r.to_bytes().unwrap();
        bytes.extend_from_slice(&tail);
        let refused = matches!(
            Report::from_bytes(&bytes),
            Err(CodecError::TrailingBytes { .. })
        );
        prop_assert!(refused);
    }

    #[test]
    fn newer_major_version_is_refused(r in report(), major in 2u16..100) {
        let mut r = r;
        r.format = FormatVersion { major, minor: 0 };
        let bytes = postcard::to_allocvec(&r).unwrap();
        let refused = matches!(
            Report::from_bytes(&bytes),
            Err(CodecError::UnsupportedVersion { .. })
        );
        prop_assert!(refused);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Report::from_bytes(&data);
        let _ = Policy::from_bytes(&data);
        let _ = SignedPolicy::from_bytes(&data);
        let _ = fortros_wire::tpm::QuoteAttest::parse(&data);
        let _ = fortros_wire::tpm::Public::parse(&data);
    }
}

#[test]
fn sample_report_quoted_with_appended_fields_still_verifies() {
    // A newer agent's report (appended fields) verifies with this verifier:
    // the quote covers the bytes as sent, not a re-encoding.
    let ak = SoftAk::from_seed(9);
    let r = sample_report(ak.public(), b"n");
    let bytes = encode_with_appended(&r, 1, b"future", 42);
    let ev = ak.quote(&r, &bytes);
    let ok = fortros_wire::verify::verify_report(
        &ev,
        &fortros_wire::verify::Expectation {
            nonce: b"n",
            enrolled_ak: None,
        },
    )
    .unwrap();
    assert_eq!(ok.report.format.minor, 1);
}
