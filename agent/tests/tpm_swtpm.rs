//! The TPM client and the node identity against a real swtpm (socket mode,
//! own state folder per test), checked with the org-side verifier.

use fortros_agent::hw::tpm::client::{self, Tpm};
use fortros_agent::hw::tpm::identity::{self, ME_STATE_PCR};
use fortros_agent::hw::tpm::SocketTransport;
use fortros_testkit::swtpm::{Swtpm, SwtpmOptions};
use fortros_wire::credential::make_credential;
use fortros_wire::ekcert::{verify_ek_certificate, EkCertError, TrustAnchors};
use fortros_wire::testing::sample_report;
use fortros_wire::tpm::{self as wtpm, Public, RsaPublic};
use fortros_wire::verify::{verify_report, Expectation, VerifyError};
use fortros_wire::{Bytes, Report};

const NONCE: &[u8] = b"nonce-for-this-enrollment-000001";

fn connect(sw: &Swtpm) -> Tpm<SocketTransport> {
    Tpm::new(SocketTransport::connect(sw.socket_path()).expect("connect to swtpm"))
}

// swtpm serves one client connection at a time: each test holds at most
// one connection per TPM and passes it around.

fn ak_public(tpm: &mut Tpm<SocketTransport>) -> Vec<u8> {
    let ak = identity::load_ak(tpm).unwrap();
    tpm.flush(ak.handle).unwrap();
    ak.public
}

fn rsa(public: &[u8]) -> RsaPublic {
    match Public::parse(public).unwrap() {
        Public::Rsa(r) => r,
        other => panic!("EK is not RSA: {other:?}"),
    }
}

/// A report as the agent builds it, signed by the TPM.
fn attested(
    tpm: &mut Tpm<SocketTransport>,
    nonce: &[u8],
) -> (Report, fortros_wire::envelope::ReportEvidence) {
    let mut report = sample_report(&[], nonce);
    let ev = identity::attest_report(tpm, &mut report).unwrap();
    (report, ev)
}

fn expect(nonce: &[u8]) -> Expectation<'_> {
    Expectation {
        nonce,
        enrolled_ak: None,
    }
}

#[test]
fn ak_is_stable_across_restarts_and_differs_between_tpms() {
    let Some(mut sw) = Swtpm::start_or_skip("ak_stable", SwtpmOptions::default()) else {
        return;
    };
    let first = ak_public(&mut connect(&sw));
    assert!(fortros_wire::verify::check_ak_public(&first).is_ok());
    sw.restart().unwrap();
    assert_eq!(
        ak_public(&mut connect(&sw)),
        first,
        "AK changed across a TPM power cycle"
    );

    let other = Swtpm::start(SwtpmOptions::default()).unwrap();
    assert_ne!(
        ak_public(&mut connect(&other)),
        first,
        "two TPMs produced the same AK"
    );
}

#[test]
fn tpm_clear_changes_the_ak_but_not_the_ek() {
    let Some(sw) = Swtpm::start_or_skip("tpm_clear", SwtpmOptions::default()) else {
        return;
    };
    let mut tpm = connect(&sw);
    let ak_before = ak_public(&mut tpm);
    let (ek, persistent) = identity::load_ek(&mut tpm).unwrap();
    assert!(!persistent, "an unmanufactured swtpm has no persisted EK");
    tpm.flush(ek.handle).unwrap();

    tpm.clear().unwrap();

    assert_ne!(ak_public(&mut tpm), ak_before, "AK survived TPM2_Clear");
    let (ek_after, _) = identity::load_ek(&mut tpm).unwrap();
    tpm.flush(ek_after.handle).unwrap();
    assert_eq!(ek_after.public, ek.public, "EK changed on TPM2_Clear");
}

#[test]
fn quote_over_the_report_verifies_and_binds_the_me_state_pcr() {
    let Some(sw) = Swtpm::start_or_skip("quote_verifies", SwtpmOptions::default()) else {
        return;
    };
    let mut tpm = connect(&sw);
    let (report, ev) = attested(&mut tpm, NONCE);
    let ok = verify_report(&ev, &expect(NONCE)).expect("genuine quote must verify");
    let ak = ak_public(&mut tpm);
    assert_eq!(ok.ak_name, wtpm::name_sha256(&ak));
    assert_eq!(ok.report, report);
    // A fresh TPM: PCR 13 holds exactly one extend of the ME-state digest,
    // so the org can replay it from the report.
    let pcr13 = report
        .pcrs
        .values
        .iter()
        .find(|p| p.index == ME_STATE_PCR)
        .unwrap();
    let replay = wtpm::pcr_extend_sha256(&[0; 32], &report.me_state_digest().unwrap());
    assert_eq!(pcr13.digest.as_slice(), replay);
    // It also verifies with the AK enrolled.
    let enrolled = Expectation {
        nonce: NONCE,
        enrolled_ak: Some(&ak),
    };
    verify_report(&ev, &enrolled).unwrap();
}

#[test]
fn tampering_replay_and_foreign_keys_are_rejected() {
    let Some(sw) = Swtpm::start_or_skip("tampering", SwtpmOptions::default()) else {
        return;
    };
    let mut tpm = connect(&sw);
    let (report, ev) = attested(&mut tpm, NONCE);

    // A changed report byte (the boot counter, re-encoded).
    let mut changed = report.clone();
    changed.boot_counter += 1;
    let mut bad = ev.clone();
    bad.report = Bytes(changed.to_bytes().unwrap());
    assert_eq!(
        verify_report(&bad, &expect(NONCE)).unwrap_err(),
        VerifyError::ExtraDataMismatch
    );
    // A raw byte flip anywhere in the report.
    let mut flipped = ev.clone();
    let mid = flipped.report.0.len() / 2;
    flipped.report.0[mid] ^= 0x80;
    assert!(verify_report(&flipped, &expect(NONCE)).is_err());

    // A changed PCR: the ME-state PCR is extended after the report was
    // built, and the TPM quotes the same report bytes. The quote's PCR
    // digest no longer matches the values in the report.
    tpm.pcr_extend_sha256(ME_STATE_PCR, &[0x55; 32]).unwrap();
    let ak = identity::load_ak(&mut tpm).unwrap();
    let sel = wtpm::PcrSelection::new(wtpm::ALG_SHA256, &identity::QUOTED_PCRS);
    let qual = <sha2::Sha256 as sha2::Digest>::digest(ev.report.as_slice());
    let (attest, sig) = tpm.quote(ak.handle, &qual, &sel).unwrap();
    tpm.flush(ak.handle).unwrap();
    let mut stale_pcrs = ev.clone();
    stale_pcrs.attest = Bytes(attest);
    stale_pcrs.signature = Bytes(sig);
    assert_eq!(
        verify_report(&stale_pcrs, &expect(NONCE)).unwrap_err(),
        VerifyError::PcrDigestMismatch
    );

    // Wrong nonce / replay: yesterday's genuine evidence for today's nonce.
    assert_eq!(
        verify_report(&ev, &expect(b"todays-nonce")).unwrap_err(),
        VerifyError::NonceMismatch
    );

    // Another TPM's AK: genuine evidence, but not the enrolled key.
    let other = Swtpm::start(SwtpmOptions::default()).unwrap();
    let (_, ev_other) = attested(&mut connect(&other), NONCE);
    verify_report(&ev_other, &expect(NONCE)).unwrap();
    let mine = ak_public(&mut tpm);
    let enrolled = Expectation {
        nonce: NONCE,
        enrolled_ak: Some(&mine),
    };
    assert_eq!(
        verify_report(&ev_other, &enrolled).unwrap_err(),
        VerifyError::AkNotEnrolled
    );
    // ... nor can its quote be passed off over our report.
    let mut spliced = ev_other.clone();
    spliced.report = ev.report.clone();
    assert!(verify_report(&spliced, &enrolled).is_err());
}

#[test]
fn make_credential_round_trip_with_persisted_and_derived_ek() {
    let Some(sw) = Swtpm::start_or_skip(
        "credential_round",
        SwtpmOptions {
            ek_certificates: true,
        },
    ) else {
        return;
    };
    let plain = Swtpm::start(SwtpmOptions::default()).unwrap();
    for (label, tpm_sw) in [("persisted EK", &sw), ("derived EK", &plain)] {
        let mut tpm = connect(tpm_sw);
        let (ek, persistent) = identity::load_ek(&mut tpm).unwrap();
        if !persistent {
            tpm.flush(ek.handle).unwrap();
        }
        let ak_name = wtpm::name_sha256(&ak_public(&mut tpm));
        let secret = b"org challenge 0123456789abcdef!!";
        let made =
            make_credential(&rsa(&ek.public), &ak_name, secret, &mut rand_core::OsRng).unwrap();
        let got =
            identity::activate_credential(&mut tpm, &made.credential_blob, &made.encrypted_secret)
                .unwrap_or_else(|e| panic!("{label}: ActivateCredential: {e}"));
        assert_eq!(got, secret, "{label}");

        // Made for another AK name: the TPM refuses (integrity check).
        let mut wrong_name = ak_name.clone();
        wrong_name[5] ^= 1;
        let made =
            make_credential(&rsa(&ek.public), &wrong_name, secret, &mut rand_core::OsRng).unwrap();
        let err =
            identity::activate_credential(&mut tpm, &made.credential_blob, &made.encrypted_secret)
                .unwrap_err();
        assert!(err.to_string().contains("TPM returned"), "{label}: {err}");
    }

    // Made to another TPM's EK: this TPM cannot recover it.
    let mut tpm = connect(&sw);
    let mut other_tpm = connect(&plain);
    let (other_ek, _) = identity::load_ek(&mut other_tpm).unwrap();
    other_tpm.flush(other_ek.handle).unwrap();
    let ak_name = wtpm::name_sha256(&ak_public(&mut tpm));
    let made = make_credential(
        &rsa(&other_ek.public),
        &ak_name,
        b"x",
        &mut rand_core::OsRng,
    )
    .unwrap();
    assert!(
        identity::activate_credential(&mut tpm, &made.credential_blob, &made.encrypted_secret)
            .is_err()
    );
}

#[test]
fn ek_certificate_chains_to_the_local_ca_and_certifies_this_ek() {
    let Some(sw) = Swtpm::start_or_skip(
        "ek_chain",
        SwtpmOptions {
            ek_certificates: true,
        },
    ) else {
        return;
    };
    let mut tpm = connect(&sw);
    let cert = identity::ek_certificate(&mut tpm).expect("swtpm_setup wrote an EK certificate");
    let (ek, persistent) = identity::load_ek(&mut tpm).unwrap();
    assert!(persistent);
    assert_eq!(ek.handle, client::EK_RSA_PERSISTENT);
    let anchors = TrustAnchors {
        roots: TrustAnchors::parse_pem(&std::fs::read(sw.ca_root_pem()).unwrap()).unwrap(),
        intermediates: TrustAnchors::parse_pem(&std::fs::read(sw.ca_issuer_pem()).unwrap())
            .unwrap(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let info = verify_ek_certificate(&cert, &anchors, Some(&rsa(&ek.public)), Some(now))
        .expect("EK certificate must chain to swtpm's local CA");
    assert_eq!(
        info.chain.len(),
        2,
        "intermediate then root: {:?}",
        info.chain
    );

    // The report carries the same certificate.
    let (report, _) = attested(&mut tpm, NONCE);
    assert_eq!(
        report.node.ek_certificate.as_ref().unwrap().as_slice(),
        cert
    );

    // Another CA: no path. Only the root, without the intermediate: no path.
    let other = Swtpm::start(SwtpmOptions {
        ek_certificates: true,
    })
    .unwrap();
    let foreign = TrustAnchors {
        roots: TrustAnchors::parse_pem(&std::fs::read(other.ca_root_pem()).unwrap()).unwrap(),
        intermediates: TrustAnchors::parse_pem(&std::fs::read(other.ca_issuer_pem()).unwrap())
            .unwrap(),
    };
    assert!(matches!(
        verify_ek_certificate(&cert, &foreign, None, Some(now)),
        Err(EkCertError::NoPath { .. })
    ));
    let root_only = TrustAnchors {
        roots: anchors.roots.clone(),
        intermediates: vec![],
    };
    assert!(matches!(
        verify_ek_certificate(&cert, &root_only, None, Some(now)),
        Err(EkCertError::NoPath { .. })
    ));
    // The certificate of this TPM presented with another TPM's EK.
    let mut other_tpm = connect(&other);
    let (other_ek, _) = identity::load_ek(&mut other_tpm).unwrap();
    assert_eq!(
        verify_ek_certificate(&cert, &anchors, Some(&rsa(&other_ek.public)), Some(now))
            .unwrap_err(),
        EkCertError::KeyMismatch
    );
}

/// TPM2_CC_CreatePrimary (TPM 2.0 Part 2, table 12).
const TPM2_CC_CREATE_PRIMARY: u32 = 0x131;

/// Counts the TPM2_CreatePrimary commands under the endorsement hierarchy
/// (EK derivations) that pass through it.
struct CountingTransport {
    inner: SocketTransport,
    ek_derivations: std::rc::Rc<std::cell::Cell<u32>>,
}

impl fortros_agent::hw::tpm::Transport for CountingTransport {
    fn transact(
        &mut self,
        command: &[u8],
    ) -> Result<Vec<u8>, fortros_agent::hw::tpm::transport::TransportError> {
        // Header: tag (2), size (4), command code (4), then the handle.
        let code = command
            .get(6..10)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()));
        let handle = command
            .get(10..14)
            .map(|b| u32::from_be_bytes(b.try_into().unwrap()));
        if code == Some(TPM2_CC_CREATE_PRIMARY) && handle == Some(client::RH_ENDORSEMENT) {
            self.ek_derivations.set(self.ek_derivations.get() + 1);
        }
        self.inner.transact(command)
    }
}

/// A boot quotes its report, answers the org's credential challenge and
/// quotes its outcome: on a TPM without a persisted EK the RSA EK (a key
/// generation, seconds on a discrete TPM) is derived once for all three,
/// and the challenge is still answered with it.
#[test]
fn a_boot_derives_the_ek_once() {
    use fortros_agent::boot::work::TpmAttester;
    use fortros_agent::enroll::Attester;
    let Some(sw) = Swtpm::start_or_skip("a_boot_derives_the_ek_once", SwtpmOptions::default())
    else {
        return;
    };
    let count = std::rc::Rc::new(std::cell::Cell::new(0));
    let transport = CountingTransport {
        inner: SocketTransport::connect(sw.socket_path()).unwrap(),
        ek_derivations: count.clone(),
    };
    let mut attester = TpmAttester::new(Tpm::new(transport)).unwrap();
    let first = attester.attest(sample_report(&[], NONCE)).unwrap();
    let report = Report::from_bytes(first.report.as_slice()).unwrap();
    let ek = report.node.ek_public.expect("the report carries the EK");
    let ak_name = attester.ak_name();
    let secret = b"org challenge 0123456789abcdef!!";
    let made =
        make_credential(&rsa(ek.as_slice()), &ak_name, secret, &mut rand_core::OsRng).unwrap();
    let challenge = fortros_wire::exchange::CredentialChallenge {
        credential_blob: Bytes(made.credential_blob),
        encrypted_secret: Bytes(made.encrypted_secret),
    };
    assert_eq!(attester.activate_credential(&challenge).unwrap(), secret);
    attester.attest(sample_report(&[], NONCE)).unwrap();
    assert_eq!(count.get(), 1, "EK derivations in one boot");
}
