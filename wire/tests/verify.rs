//! Verification rules against software-made quotes in the TPM's format.
//! (The same rules against a real swtpm: agent/tests/tpm_swtpm.rs.)

use fortros_wire::envelope::{PolicyError, PolicyExpectation, SignedPolicy};
use fortros_wire::policy::*;
use fortros_wire::testing::{sample_report, SoftAk};
use fortros_wire::verify::{verify_report, Expectation, VerifyError};
use fortros_wire::{tpm, Bytes, Report, POLICY_FORMAT};

const NONCE: &[u8] = b"org-nonce-0001-abcdefghijklmnopq";

fn evidence(ak: &SoftAk, nonce: &[u8]) -> fortros_wire::envelope::ReportEvidence {
    let report = sample_report(ak.public(), nonce);
    ak.quote(&report, &report.to_bytes().unwrap())
}

fn expect(nonce: &[u8]) -> Expectation<'_> {
    Expectation {
        nonce,
        enrolled_ak: None,
    }
}

#[test]
fn genuine_evidence_verifies_and_names_the_node() {
    let ak = SoftAk::from_seed(1);
    let ev = evidence(&ak, NONCE);
    let ok = verify_report(&ev, &expect(NONCE)).unwrap();
    assert_eq!(ok.ak_name, tpm::name_sha256(ak.public()));
    assert_eq!(ok.report.nonce.as_slice(), NONCE);
    // And with the AK enrolled.
    let enrolled = Expectation {
        nonce: NONCE,
        enrolled_ak: Some(ak.public()),
    };
    verify_report(&ev, &enrolled).unwrap();
}

#[test]
fn every_single_report_byte_change_is_rejected() {
    let ak = SoftAk::from_seed(1);
    let ev = evidence(&ak, NONCE);
    for i in 0..ev.report.0.len() {
        let mut bad = ev.clone();
        bad.report.0[i] ^= 0x01;
        assert!(
            verify_report(&bad, &expect(NONCE)).is_err(),
            "flipping report byte {i} was accepted"
        );
    }
}

#[test]
fn a_changed_pcr_value_is_rejected() {
    let ak = SoftAk::from_seed(1);
    let report = sample_report(ak.public(), NONCE);
    let ev = ak.quote(&report, &report.to_bytes().unwrap());
    // The node lies about PCR 13 after quoting: re-encode with a new value
    // but keep the quote. extraData catches it.
    let mut lie = report.clone();
    lie.pcrs.values.last_mut().unwrap().digest = Bytes(vec![0; 32]);
    let mut bad = ev.clone();
    bad.report = Bytes(lie.to_bytes().unwrap());
    assert_eq!(
        verify_report(&bad, &expect(NONCE)).unwrap_err(),
        VerifyError::ExtraDataMismatch
    );
    // A quote whose PCR digest disagrees with the report's values (the
    // TPM's PCRs were not what the report says) is caught by the digest.
    let mut quoted = report.clone();
    quoted.pcrs.values[0].digest = Bytes(vec![0xAA; 32]);
    let mut ev2 = ak.quote(&quoted, &report.to_bytes().unwrap());
    ev2.report = Bytes(report.to_bytes().unwrap());
    assert_eq!(
        verify_report(&ev2, &expect(NONCE)).unwrap_err(),
        VerifyError::PcrDigestMismatch
    );
}

#[test]
fn wrong_nonce_and_replay_are_rejected() {
    let ak = SoftAk::from_seed(1);
    let old = evidence(&ak, b"nonce-of-yesterday");
    assert_eq!(
        verify_report(&old, &expect(NONCE)).unwrap_err(),
        VerifyError::NonceMismatch
    );
}

#[test]
fn another_keys_signature_or_unenrolled_ak_is_rejected() {
    let ak = SoftAk::from_seed(1);
    let other = SoftAk::from_seed(2);
    let ev = evidence(&ak, NONCE);
    // Signature by another key over the same report.
    let report = Report::from_bytes(ev.report.as_slice()).unwrap();
    let mut forged = other.quote(&report, ev.report.as_slice());
    forged.report = ev.report.clone();
    assert_eq!(
        verify_report(&forged, &expect(NONCE)).unwrap_err(),
        VerifyError::BadSignature
    );
    // A valid quote from another TPM's AK where this node's AK is enrolled.
    let ev_other = evidence(&other, NONCE);
    let enrolled = Expectation {
        nonce: NONCE,
        enrolled_ak: Some(ak.public()),
    };
    assert_eq!(
        verify_report(&ev_other, &enrolled).unwrap_err(),
        VerifyError::AkNotEnrolled
    );
}

#[test]
fn truncated_or_garbage_attest_is_an_error_not_a_panic() {
    let ak = SoftAk::from_seed(1);
    let ev = evidence(&ak, NONCE);
    for n in 0..ev.attest.0.len() {
        let mut bad = ev.clone();
        bad.attest.0.truncate(n);
        assert!(verify_report(&bad, &expect(NONCE)).is_err());
    }
    for n in 0..ev.signature.0.len() {
        let mut bad = ev.clone();
        bad.signature.0.truncate(n);
        assert!(verify_report(&bad, &expect(NONCE)).is_err());
    }
}

fn policy(ak_name: &[u8], serial: u64) -> Policy {
    Policy {
        format: POLICY_FORMAT,
        serial,
        node: NodeBinding {
            ak_name: Bytes(ak_name.to_vec()),
        },
        nonce: Bytes(NONCE.to_vec()),
        action: PolicyAction::Neutralize {
            mode: NeutralizeMode::DisableBit,
        },
        extensions: vec![],
    }
}

#[test]
fn policy_envelope_signs_verifies_and_rejects() {
    let org = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let other_org = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    let name = tpm::name_sha256(SoftAk::from_seed(1).public());
    let exp = PolicyExpectation {
        ak_name: &name,
        nonce: NONCE,
        last_serial: Some(3),
    };
    let env = SignedPolicy::sign(&policy(&name, 4), &org).unwrap();
    // Through the wire and back.
    let env = SignedPolicy::from_bytes(&env.to_bytes().unwrap()).unwrap();
    assert_eq!(
        env.verify(&org.verifying_key(), &exp).unwrap(),
        policy(&name, 4)
    );

    assert_eq!(
        env.verify(&other_org.verifying_key(), &exp).unwrap_err(),
        PolicyError::BadSignature
    );
    let mut tampered = env.clone();
    let last = tampered.policy.0.len() - 1;
    tampered.policy.0[last] ^= 1;
    assert_eq!(
        tampered.verify(&org.verifying_key(), &exp).unwrap_err(),
        PolicyError::BadSignature
    );
    let stale = SignedPolicy::sign(&policy(&name, 3), &org).unwrap();
    assert!(matches!(
        stale.verify(&org.verifying_key(), &exp).unwrap_err(),
        PolicyError::StaleSerial { found: 3, last: 3 }
    ));
    let other_node = SignedPolicy::sign(&policy(b"\x00\x0bsomeone-else", 9), &org).unwrap();
    assert!(matches!(
        other_node.verify(&org.verifying_key(), &exp).unwrap_err(),
        PolicyError::WrongNode { .. }
    ));
    let mut p = policy(&name, 9);
    p.nonce = Bytes(b"old".to_vec());
    let old_nonce = SignedPolicy::sign(&p, &org).unwrap();
    assert_eq!(
        old_nonce.verify(&org.verifying_key(), &exp).unwrap_err(),
        PolicyError::WrongNonce
    );
}

#[test]
fn json_rendering_shows_hex_digests_and_round_trips() {
    let ak = SoftAk::from_seed(1);
    let report = sample_report(ak.public(), NONCE);
    let json = report.to_json();
    assert!(json.contains(&format!("\"{}\"", hex::encode([3u8; 32]))));
    assert!(json.contains("\"11.8.50.3425\""));
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
}
