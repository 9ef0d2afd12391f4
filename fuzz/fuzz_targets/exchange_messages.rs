//! Hostile bytes into every message the org and the agent decode from the
//! network: exchange messages, report evidence, signed policies. Decoding
//! must return an error value, never panic.
#![no_main]

use fortros_wire::envelope::{ReportEvidence, SignedPolicy};
use fortros_wire::exchange::{
    ActivationRequest, BackupAck, BackupFetch, BackupImage, BackupUpload, EnrollResponse,
    NonceGrant, OutcomeAck,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = NonceGrant::from_bytes(data);
    let _ = ActivationRequest::from_bytes(data);
    let _ = EnrollResponse::from_bytes(data);
    let _ = OutcomeAck::from_bytes(data);
    let _ = BackupUpload::from_bytes(data);
    let _ = BackupAck::from_bytes(data);
    let _ = BackupFetch::from_bytes(data);
    let _ = BackupImage::from_bytes(data);
    let _ = SignedPolicy::from_bytes(data);
    if let Ok(ev) = ReportEvidence::from_bytes(data) {
        let _ = fortros_wire::Report::from_bytes(ev.report.as_slice());
    }
});
