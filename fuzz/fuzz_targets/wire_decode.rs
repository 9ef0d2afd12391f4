//! Hostile bytes into every wire decoder and TPM structure parser the org
//! runs on node input: postcard report/policy/envelopes, TPMS_ATTEST,
//! TPMT_SIGNATURE, TPMT_PUBLIC, the whole verifier, and report extension 1
//! (ME evidence).
#![no_main]

use fortros_wire::envelope::{ReportEvidence, SignedPolicy};
use fortros_wire::me_evidence::MeEvidence;
use fortros_wire::tpm::{EcdsaSignature, Public, QuoteAttest};
use fortros_wire::verify::{verify_report, Expectation};
use fortros_wire::{Policy, Report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Report::from_bytes(data) {
        let _ = MeEvidence::from_report(&r);
    }
    let _ = MeEvidence::from_bytes(data);
    let _ = Policy::from_bytes(data);
    let _ = SignedPolicy::from_bytes(data);
    let _ = QuoteAttest::parse(data);
    let _ = EcdsaSignature::parse(data);
    let _ = Public::parse(data);
    if let Ok(ev) = ReportEvidence::from_bytes(data) {
        let _ = verify_report(
            &ev,
            &Expectation {
                nonce: b"",
                enrolled_ak: None,
            },
        );
    }
    // Also the attest parser on the tail after a 2-byte size, as a TPM2B.
    if let Some(rest) = data.get(2..) {
        let _ = QuoteAttest::parse(rest);
    }
});
