//! PID 1's work step (step 7 of [`super::init`]): measure, enroll, apply.
//!
//! 1. inspect the flash bytes read at this boot and probe the live ME;
//! 2. build the wire report and enroll with the org from the config, the
//!    TPM (`/dev/tpmrm0`) quoting it;
//! 3. verify the org's signed policy (done by [`EnrollClient::enroll`]);
//! 4. apply it: only `ignore` on the node so far; any other policy is
//!    recorded as refused "not implemented on the node yet";
//! 5. post the outcome, and print one JSON line `FORTROS-REPORT=...` on the
//!    console (plus `FORTROS-FLASH-SHA256=<hex>` as before).

use super::init::BootContext;
use crate::enroll::{Attester, EnrollClient, Enrolled};
use crate::hw::mei::probe::{probe, ProbeOptions};
use crate::hw::tpm::identity;
use crate::hw::tpm::{DeviceTransport, Tpm, Transport};
use crate::image::inspect::{inspect, ImageReport};
use ed25519_dalek::VerifyingKey;
use fortros_wire::envelope::ReportEvidence;
use fortros_wire::exchange::CredentialChallenge;
use fortros_wire::policy::PolicyAction;
use fortros_wire::report::{
    ActionTaken, FlashFacts, NodeIdentity, Outcome, PcrValues, PolicyReceived, RegionDigest,
    RegionKind,
};
use fortros_wire::{Bytes, Digest32, Report, REPORT_FORMAT};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The kernel's TPM resource manager: handles are per-open, so the agent
/// needs no cleanup after a crash.
pub const TPM_DEVICE: &str = "/dev/tpmrm0";

/// The TPM as the enrollment exchange sees it.
pub struct TpmAttester<T: Transport> {
    tpm: Tpm<T>,
    ak_name: Vec<u8>,
    /// The last report quoted, as filled in (AK, EK, PCRs, nonce): what
    /// the console line shows.
    last: Option<Report>,
}

impl<T: Transport> TpmAttester<T> {
    /// Derives the AK once to learn its name (the policy is bound to it).
    pub fn new(mut tpm: Tpm<T>) -> Result<Self, String> {
        let ak = identity::load_ak(&mut tpm).map_err(|e| format!("AK: {e}"))?;
        let _ = tpm.flush(ak.handle);
        let mut ak_name = vec![0x00, 0x0b];
        ak_name.extend_from_slice(&Sha256::digest(&ak.public));
        Ok(TpmAttester {
            tpm,
            ak_name,
            last: None,
        })
    }
}

impl<T: Transport> Attester for TpmAttester<T> {
    fn ak_name(&self) -> Vec<u8> {
        self.ak_name.clone()
    }
    fn attest(&mut self, mut report: Report) -> Result<ReportEvidence, String> {
        let evidence =
            identity::attest_report(&mut self.tpm, &mut report).map_err(|e| e.to_string())?;
        self.last = Some(report);
        Ok(evidence)
    }
    fn activate_credential(&mut self, ch: &CredentialChallenge) -> Result<Vec<u8>, String> {
        identity::activate_credential(
            &mut self.tpm,
            ch.credential_blob.as_slice(),
            ch.encrypted_secret.as_slice(),
        )
        .map_err(|e| e.to_string())
    }
}

/// The console line: the wire report plus what the agent saw in words.
#[derive(Serialize)]
struct ConsoleReport<'a> {
    report: &'a Report,
    /// The flash image as `inspect` read it (state, evidence).
    image: Option<&'a ImageReport>,
    /// Enrollment result: "policy", "pending", or the error.
    enrollment: String,
    node_id: Option<u64>,
    report_id: Option<u64>,
}

/// Descriptor region number → wire region kind (Intel's numbering).
fn region_kind(index: u8) -> RegionKind {
    match index {
        0 => RegionKind::Descriptor,
        1 => RegionKind::Bios,
        2 => RegionKind::Me,
        3 => RegionKind::Gbe,
        4 => RegionKind::Platform,
        5 => RegionKind::DeviceExpansion,
        8 => RegionKind::Ec,
        n => RegionKind::Other(n),
    }
}

fn digest32(hex_str: &str) -> Option<Digest32> {
    let v: [u8; 32] = hex::decode(hex_str).ok()?.try_into().ok()?;
    Some(Digest32(v))
}

/// The flash facts from the bytes read at this boot and their inspection.
fn flash_facts(size: u64, sha256: [u8; 32], inspected: Option<&ImageReport>) -> FlashFacts {
    let regions = inspected
        .map(|r| {
            r.digests
                .regions
                .iter()
                .filter_map(|d| {
                    let sha = digest32(d.sha256.as_deref()?)?;
                    let limit = d.base.checked_add(u32::try_from(d.len).ok()?)?;
                    Some(RegionDigest {
                        region: region_kind(d.index),
                        base: d.base,
                        limit: limit.checked_sub(1)?,
                        sha256: sha,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    FlashFacts {
        size,
        image_sha256: Digest32(sha256),
        regions,
        // Converting the parser's descriptor/ME findings into wire facts is
        // not done yet; the console line carries them as `image`.
        descriptor: None,
        me_image: None,
    }
}

/// The work step: see the module documentation.
pub fn enroll_and_apply(ctx: &mut BootContext) -> Result<(), String> {
    let img = ctx
        .image
        .as_ref()
        .ok_or_else(|| "no flash image to measure".to_string())?;
    println!("FORTROS-FLASH-SHA256={}", img.sha256_hex());
    if let Some(r) = &ctx.recovery {
        println!("FORTROS-FLASH-RECOVERY={:?}", r.decision);
    }
    let inspected = match inspect(&img.bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            log::warn!("flash image not understood: {e}");
            None
        }
    };
    let live = probe(&ProbeOptions::default());
    log::info!("live ME: {:?}", live.classification);

    let mut report = Report {
        format: REPORT_FORMAT,
        node: NodeIdentity {
            ak_public: Bytes(Vec::new()),
            ek_public: None,
            ek_certificate: None,
        },
        nonce: Bytes(Vec::new()),
        boot_counter: 0,
        flash: Some(flash_facts(
            img.bytes.len() as u64,
            img.sha256,
            inspected.as_ref(),
        )),
        live_me: None,
        network: None,
        pcrs: PcrValues {
            bank: fortros_wire::tpm::ALG_SHA256,
            values: Vec::new(),
        },
        policy: None,
        actions: Vec::new(),
        extensions: Vec::new(),
    };

    // Without a [network] section the org is unreachable: a measure-only
    // node (as in the flash tests). Said on the console, not a failure.
    let outcome = if ctx.config.network.is_none() {
        log::warn!("no [network] in the config: enrollment skipped");
        Ok((
            "skipped: no [network] in the config".to_string(),
            None,
            None,
        ))
    } else {
        enroll(ctx, &mut report)
    };
    let (enrollment, node_id, report_id, result) = match outcome {
        Ok((what, node_id, report_id)) => (what, node_id, report_id, Ok(())),
        Err(e) => (format!("failed: {e}"), None, None, Err(e)),
    };
    let line = ConsoleReport {
        report: &report,
        image: inspected.as_ref(),
        enrollment,
        node_id,
        report_id,
    };
    match serde_json::to_string(&line) {
        Ok(json) => println!("FORTROS-REPORT={json}"),
        Err(e) => log::error!("report as JSON: {e}"),
    }
    result
}

/// Enrolls, applies, posts the outcome. Returns what happened for the
/// console, the org's node id and report id when known.
fn enroll(
    ctx: &BootContext,
    report: &mut Report,
) -> Result<(String, Option<u64>, Option<u64>), String> {
    let key = VerifyingKey::from_bytes(&ctx.config.org.public_key_bytes())
        .map_err(|e| format!("org public key: {e}"))?;
    let trust = ctx
        .config
        .org
        .trust()
        .map_err(|e| format!("org TLS: {e}"))?;
    let client = EnrollClient::with_trust(&ctx.config.org.url, key, &trust)
        .map_err(|e| format!("enroll: {e}"))?;
    let transport =
        DeviceTransport::open(TPM_DEVICE).map_err(|e| format!("TPM {TPM_DEVICE}: {e}"))?;
    let mut tpm = TpmAttester::new(Tpm::new(transport))?;
    // No stored last serial on the node yet: the nonce binding already
    // stops replays of older policies within one boot.
    let enrolled = client
        .enroll(&mut tpm, report.clone(), None)
        .map_err(|e| format!("enroll: {e}"))?;
    let (policy, signed) = match enrolled {
        Enrolled::Pending { node_id, reason } => {
            log::info!("org has node {node_id} pending: {reason}");
            return Ok((format!("pending: {reason}"), Some(node_id), None));
        }
        Enrolled::Policy { policy, signed } => (policy, signed),
    };
    report.policy = Some(PolicyReceived {
        serial: policy.serial,
        policy_sha256: Digest32(Sha256::digest(signed.policy.as_slice()).into()),
        accepted: true,
        reason: None,
    });
    report.actions.push(apply(&policy.action));
    let ack = client
        .post_outcome(&mut tpm, report.clone())
        .map_err(|e| format!("outcome: {e}"))?;
    if let Some(sent) = tpm.last.take() {
        *report = sent;
    }
    log::info!(
        "org recorded report {} for node {}",
        ack.report_id,
        ack.node_id
    );
    Ok((
        format!("policy {}", policy.serial),
        Some(ack.node_id),
        Some(ack.report_id),
    ))
}

/// Applies a verified policy. Only `ignore` exists on the node so far.
fn apply(action: &PolicyAction) -> ActionTaken {
    match action {
        PolicyAction::Ignore => ActionTaken {
            action: "ignore".into(),
            outcome: Outcome::Done,
            detail: Some("policy ignore: flash and ME left as they are".into()),
        },
        other => ActionTaken {
            action: format!("{other:?}"),
            outcome: Outcome::Refused {
                reason: "not applied: not implemented on the node yet".into(),
            },
            detail: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_is_done_others_refused() {
        assert_eq!(apply(&PolicyAction::Ignore).outcome, Outcome::Done);
        let n = apply(&PolicyAction::Neutralize {
            mode: fortros_wire::policy::NeutralizeMode::DisableBit,
        });
        assert!(
            matches!(n.outcome, Outcome::Refused { ref reason } if reason.contains("not implemented"))
        );
    }

    #[test]
    fn region_limits_are_inclusive() {
        assert_eq!(region_kind(2), RegionKind::Me);
        assert_eq!(region_kind(9), RegionKind::Other(9));
        assert!(digest32("zz").is_none());
        let f = flash_facts(16, [7; 32], None);
        assert_eq!(f.size, 16);
        assert!(f.regions.is_empty());
    }
}
