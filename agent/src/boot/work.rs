//! PID 1's work step (step 7 of [`super::init`]): measure, enroll, apply.
//!
//! 1. inspect the flash bytes read at this boot and probe the live ME;
//! 2. build the wire report (the measured facts: [`crate::report_facts`])
//!    and enroll with the org from the config, the TPM (`/dev/tpmrm0`)
//!    quoting it;
//! 3. verify the org's signed policy (done by [`EnrollClient::enroll`]);
//! 4. apply it: `ignore` touches nothing; `neutralize` runs
//!    [`crate::apply::neutralize_on_node`] (backup to the org, safe write)
//!    and prints `FORTROS-APPLY=<json>`; `use` provisions AMT
//!    ([`crate::amt`]);
//! 5. post the outcome, and print one JSON line `FORTROS-REPORT=...` on the
//!    console (plus `FORTROS-FLASH-SHA256=<hex>` as before).
//!
//! Enrollment that fails or is impossible goes to
//! [`BootContext::enroll_failures`], refused or failed actions to
//! [`BootContext::apply_failures`]; the failure policy decides what follows.

use super::config::{Config, Mode};
use super::init::BootContext;
use crate::apply::{neutralize_on_node, ApplyRecord, BackupStore, LiveFacts, OrgBackup, Request};
use crate::enroll::{Attester, EnrollClient, Enrolled};
use crate::hw::flash::recovery::{BackupSource, RecoveryReport};
use crate::hw::flash::write::{VerifiedPolicy, WriteOptions};
use crate::hw::mei::probe::{probe, ProbeOptions};
use crate::hw::tpm::{identity, nv};
use crate::hw::tpm::{DeviceTransport, Tpm, Transport};
use crate::image::inspect::{inspect, ImageReport};
use crate::report_facts;
use ed25519_dalek::VerifyingKey;
use fortros_wire::envelope::ReportEvidence;
use fortros_wire::exchange::CredentialChallenge;
use fortros_wire::policy::NeutralizeMode;
use fortros_wire::policy::PolicyAction;
use fortros_wire::report::{ActionTaken, NodeIdentity, Outcome, PcrValues, PolicyReceived};
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
    /// The EK, derived at most once per boot.
    ek: identity::EkCache,
}

impl<T: Transport> Drop for TpmAttester<T> {
    fn drop(&mut self) {
        self.ek.release(&mut self.tpm);
    }
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
            ek: identity::EkCache::default(),
        })
    }
}

impl<T: Transport> Attester for TpmAttester<T> {
    fn ak_name(&self) -> Vec<u8> {
        self.ak_name.clone()
    }
    fn attest(&mut self, mut report: Report) -> Result<ReportEvidence, String> {
        let evidence = identity::attest_report_with(&mut self.tpm, &mut report, &mut self.ek)
            .map_err(|e| e.to_string())?;
        self.last = Some(report);
        Ok(evidence)
    }
    fn activate_credential(&mut self, ch: &CredentialChallenge) -> Result<Vec<u8>, String> {
        identity::activate_credential_with(
            &mut self.tpm,
            ch.credential_blob.as_slice(),
            ch.encrypted_secret.as_slice(),
            &mut self.ek,
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
    /// The report's AMT facts (extension), decoded for people.
    amt: Option<fortros_wire::report::AmtFacts>,
}

/// The host NIC's MAC address as the kernel shows it.
fn host_mac(ctx: &BootContext) -> Option<String> {
    let iface = &ctx.config.network.as_ref()?.interface;
    std::fs::read_to_string(format!("/sys/class/net/{iface}/address")).ok()
}

/// Why this boot does not enroll, or `None` when it should.
fn no_enrollment(config: &Config) -> Option<Result<String, String>> {
    match (config.mode, &config.network) {
        (Mode::MeasureOnly, _) => Some(Ok("skipped: mode measure-only".into())),
        (Mode::Enroll, None) => Some(Err("no [network] in the config: the org cannot be \
             reached (mode = \"measure-only\" for a node that only measures)"
            .into())),
        (Mode::Enroll, Some(_)) => None,
    }
}

/// The actions that did not happen as the policy asked: one line each.
fn apply_failures(actions: &[ActionTaken]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Refused { reason } => Some(format!("apply {}: refused: {reason}", a.action)),
            Outcome::Failed { reason, restored } => Some(format!(
                "apply {}: failed: {reason} (original bytes {})",
                a.action,
                if *restored {
                    "restored"
                } else {
                    "NOT restored"
                }
            )),
            Outcome::Done | Outcome::Skipped => None,
        })
        .collect()
}

/// Boot recovery of an interrupted flash write, as a report action: the
/// org logs and keeps it with the outcome (`flash-recovery:DECISION`).
fn recovery_action(r: &RecoveryReport) -> ActionTaken {
    ActionTaken {
        action: format!("flash-recovery:{:?}", r.decision),
        outcome: Outcome::Done,
        detail: Some(format!(
            "{} ranges rewritten{}; journal {}; flash SHA-256 {}",
            r.blocks_rewritten.len(),
            r.backup
                .as_deref()
                .map(|b| format!(" from the backup at {b}"))
                .unwrap_or_default(),
            r.journal,
            r.image_sha256
        )),
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
    log::info!(
        "live ME: {} ({})",
        live.classification.summary,
        report_facts::live::state_word(live.classification.state)
    );
    let evidence = report_facts::me_evidence(inspected.as_ref(), &live);
    let extensions = match evidence.to_extension() {
        Ok(e) => vec![e],
        Err(e) => {
            log::error!("ME evidence extension: {e}");
            Vec::new()
        }
    };

    let mut report = Report {
        format: REPORT_FORMAT,
        node: NodeIdentity {
            ak_public: Bytes(Vec::new()),
            ek_public: None,
            ek_certificate: None,
        },
        nonce: Bytes(Vec::new()),
        boot_counter: 0,
        flash: Some(report_facts::flash_facts(
            img.bytes.len() as u64,
            img.sha256,
            inspected.as_ref(),
        )),
        live_me: Some(report_facts::live_me_facts(&live)),
        network: report_facts::network_facts(&live, host_mac(ctx).as_deref()),
        pcrs: PcrValues {
            bank: fortros_wire::tpm::ALG_SHA256,
            values: Vec::new(),
        },
        policy: None,
        // What boot recovery did goes to the org with the report.
        actions: ctx.recovery.iter().map(recovery_action).collect(),
        extensions,
    };

    let outcome = match no_enrollment(&ctx.config) {
        Some(Ok(why)) => {
            log::info!("enrollment {why}");
            Ok((why, None, None))
        }
        Some(Err(why)) => Err(why),
        None => enroll(ctx, &mut report, &live),
    };
    let (enrollment, node_id, report_id) = match outcome {
        Ok(done) => done,
        Err(e) => {
            ctx.enroll_failures.push(format!("enrollment: {e}"));
            (format!("failed: {e}"), None, None)
        }
    };
    ctx.apply_failures.extend(apply_failures(&report.actions));
    let line = ConsoleReport {
        report: &report,
        image: inspected.as_ref(),
        enrollment,
        node_id,
        report_id,
        amt: fortros_wire::report::AmtFacts::from_report(&report).and_then(|r| r.ok()),
    };
    match serde_json::to_string(&line) {
        Ok(json) => println!("FORTROS-REPORT={json}"),
        Err(e) => log::error!("report as JSON: {e}"),
    }
    Ok(())
}

/// Enrolls, applies, posts the outcome. Returns what happened for the
/// console, the org's node id and report id when known.
fn enroll(
    ctx: &mut BootContext,
    report: &mut Report,
    live: &crate::hw::mei::probe::LiveMe,
) -> Result<(String, Option<u64>, Option<u64>), String> {
    let client = org_client(&ctx.config)?;
    let transport =
        DeviceTransport::open(TPM_DEVICE).map_err(|e| format!("TPM {TPM_DEVICE}: {e}"))?;
    let mut tpm = TpmAttester::new(Tpm::new(transport))?;
    // The last applied serial, from TPM NV: an older policy is a replay.
    let last_serial = nv::load_policy_serial(&mut tpm.tpm)
        .map_err(|e| format!("policy serial in TPM NV: {e}; refusing policies"))?;
    match last_serial {
        Some(s) => log::info!("last applied policy serial (TPM NV): {s}"),
        None => log::warn!(
            "no policy serial in TPM NV (first enrollment, or the TPM was cleared): starting from 0"
        ),
    }
    let enrolled = client
        .enroll(&mut tpm, report.clone(), last_serial)
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
    let verified =
        VerifiedPolicy::after_signature_check(Sha256::digest(signed.policy.as_slice()).into());
    let live_facts = LiveFacts::from_probe(live);
    let (taken, record) = match &policy.action {
        PolicyAction::Use { amt } => (
            crate::amt::apply_use(
                amt,
                &policy,
                live,
                ctx.config.org.amt_key_bytes(),
                &tpm.ak_name,
                &mut tpm.tpm,
                &mut report.extensions,
            ),
            None,
        ),
        other => apply(other, |mode| {
            let mut backup = OrgBackup {
                client: &client,
                tpm: &mut tpm,
                report: report.clone(),
            };
            neutralize_here(ctx, mode, verified, &live_facts, &mut backup)
        }),
    };
    report.actions.push(taken);
    if let Some(ext) = record.as_ref().and_then(ApplyRecord::extension) {
        report.extensions.push(ext);
    }
    nv::store_policy_serial(&mut tpm.tpm, policy.serial)
        .map_err(|e| format!("recording policy serial {} in TPM NV: {e}", policy.serial))?;
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

/// The client of the configured org: its public key, and its TLS pins
/// for an https URL (both enrollment and the backup fetch go through it).
fn org_client(config: &super::config::Config) -> Result<EnrollClient, String> {
    let key = VerifyingKey::from_bytes(&config.org.public_key_bytes())
        .map_err(|e| format!("org public key: {e}"))?;
    let trust = config.org.trust().map_err(|e| format!("org TLS: {e}"))?;
    EnrollClient::with_trust(&config.org.url, key, &trust).map_err(|e| format!("enroll: {e}"))
}

/// Runs `f` with the org as the source of the original image of an
/// interrupted write (a digest-only journal): `POST /v1/backup/fetch` with a
/// quote over a fresh-nonce report, as the node's own AK. `image` is the
/// flash as read at this boot (size and digest go in that report).
pub fn with_org_backup<R>(
    config: &super::config::Config,
    image: Option<(u64, [u8; 32])>,
    f: impl FnOnce(&mut dyn BackupSource) -> R,
) -> Result<R, String> {
    if config.network.is_none() {
        return Err("no [network] in the config: the org is unreachable".into());
    }
    let client = org_client(config)?;
    let transport =
        DeviceTransport::open(TPM_DEVICE).map_err(|e| format!("TPM {TPM_DEVICE}: {e}"))?;
    let mut tpm = TpmAttester::new(Tpm::new(transport))?;
    let report = Report {
        format: REPORT_FORMAT,
        node: NodeIdentity {
            ak_public: Bytes(Vec::new()),
            ek_public: None,
            ek_certificate: None,
        },
        nonce: Bytes(Vec::new()),
        boot_counter: 0,
        flash: image.map(|(size, sha)| report_facts::flash_facts(size, sha, None)),
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
    let mut source = OrgBackup {
        client: &client,
        tpm: &mut tpm,
        report,
    };
    Ok(f(&mut source))
}

/// Applies a verified policy: `ignore` touches nothing; `neutralize` goes
/// through [`crate::apply`] (platform check, backup at the org, safe write);
/// `use` is not built on the node yet.
fn apply(
    action: &PolicyAction,
    neutralize: impl FnOnce(NeutralizeMode) -> ApplyRecord,
) -> (ActionTaken, Option<ApplyRecord>) {
    match action {
        PolicyAction::Ignore => (
            ActionTaken {
                action: "ignore".into(),
                outcome: Outcome::Done,
                detail: Some("policy ignore: flash and ME left as they are".into()),
            },
            None,
        ),
        PolicyAction::Neutralize { mode } => {
            let rec = neutralize(*mode);
            (rec.action_taken(), Some(rec))
        }
        other => (
            ActionTaken {
                action: format!("{other:?}"),
                outcome: Outcome::Refused {
                    reason: "not applied: not implemented on the node yet".into(),
                },
                detail: None,
            },
            None,
        ),
    }
}

/// `neutralize` on this node's flash (see [`crate::apply`]).
fn neutralize_here(
    ctx: &mut BootContext,
    mode: NeutralizeMode,
    policy: VerifiedPolicy,
    live: &LiveFacts,
    backup: &mut dyn BackupStore,
) -> ApplyRecord {
    let blocked = ctx.flash_write_blocked.clone();
    let (Some(flash), Some(image)) = (ctx.flash.as_mut(), ctx.image.as_ref()) else {
        let why = blocked.unwrap_or_else(|| "no flash".into());
        return crate::apply::refused_without_flash(mode, &why);
    };
    // The journal the boot opened ([flash] journal: TPM NV or a file); a
    // write without one is refused: a power cut could not be detected.
    let Some(journal) = ctx.journal.as_mut() else {
        return crate::apply::refused_without_flash(
            mode,
            "no [flash] journal in the config: a power cut mid-write could not be \
             detected, so the flash is not written",
        );
    };
    let req = Request {
        mode,
        policy,
        image,
        live,
        write_blocked: blocked.as_deref(),
        write: WriteOptions::default(),
    };
    let rec = neutralize_on_node(&req, flash.as_mut(), journal.as_mut(), backup);
    match serde_json::to_string(&rec) {
        Ok(json) => println!("FORTROS-APPLY={json}"),
        Err(e) => log::error!("apply record as JSON: {e}"),
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_recovery_is_reported_as_an_action() {
        use crate::hw::flash::recovery::Decision;
        let r = RecoveryReport {
            decision: Decision::RestoredFromBackup,
            rolled_back_after_failed_finish: false,
            blocks_rewritten: vec![0x1000, 0x9000],
            image_sha256: "ab".repeat(32),
            journal: "TPM NV index 0x01a0f001".into(),
            backup: Some("http://10.0.2.2:1".into()),
        };
        let a = recovery_action(&r);
        assert_eq!(a.action, "flash-recovery:RestoredFromBackup");
        assert_eq!(a.outcome, Outcome::Done);
        let detail = a.detail.unwrap();
        assert!(
            detail.contains("2 ranges rewritten from the backup at http://10.0.2.2:1")
                && detail.contains("journal TPM NV index 0x01a0f001")
                && detail.contains(&"ab".repeat(32)),
            "{detail}"
        );
    }

    #[test]
    fn ignore_is_done_neutralize_goes_to_apply() {
        let never = |_| -> ApplyRecord { panic!("ignore must not neutralize") };
        assert_eq!(apply(&PolicyAction::Ignore, never).0.outcome, Outcome::Done);
        let (taken, rec) = apply(
            &PolicyAction::Neutralize {
                mode: NeutralizeMode::DisableBit,
            },
            |mode| crate::apply::refused_without_flash(mode, "test"),
        );
        assert!(rec.is_some());
        assert_eq!(taken.action, "neutralize:disable-bit");
        assert!(
            matches!(taken.outcome, Outcome::Refused { ref reason } if reason.contains("test"))
        );
    }

    #[test]
    fn refused_and_failed_actions_are_apply_failures() {
        let act = |outcome| ActionTaken {
            action: "set-hap".into(),
            outcome,
            detail: None,
        };
        let lines = apply_failures(&[
            act(Outcome::Done),
            act(Outcome::Skipped),
            act(Outcome::Refused {
                reason: "descriptor locked".into(),
            }),
            act(Outcome::Failed {
                reason: "verify mismatch".into(),
                restored: true,
            }),
        ]);
        assert_eq!(
            lines,
            [
                "apply set-hap: refused: descriptor locked",
                "apply set-hap: failed: verify mismatch (original bytes restored)"
            ]
        );
    }

    fn config(toml_head: &str, network: bool) -> Config {
        let text = format!(
            "{toml_head}\n[org]\nurl = \"http://10.0.2.2:1\"\npublic_key = \"{}\"\n{}",
            "ab".repeat(32),
            if network {
                "[network]\ninterface = \"eth0\"\n"
            } else {
                ""
            }
        );
        Config::parse(&text, "agent.toml").unwrap()
    }

    /// The backup fetch after an interrupted write uses the same client as
    /// enrollment: an https org is reached with its pins, not refused as
    /// unpinned (it was, before both went through `org_client`).
    #[test]
    fn the_backup_fetch_reaches_an_https_org_with_its_pins() {
        let text = format!(
            "[org]\nurl = \"https://127.0.0.1:1\"\npublic_key = \"{}\"\norg_cert_sha256 = \"{}\"\n",
            // RFC 8032 test 1's public key: a valid Ed25519 point.
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "cd".repeat(32)
        );
        let config = Config::parse(&text, "agent.toml").unwrap();
        let err = org_client(&config)
            .unwrap()
            .nonce()
            .unwrap_err()
            .to_string();
        assert!(!err.contains("needs the org certificate pinned"), "{err}");
        assert!(err.contains("connect to 127.0.0.1:1"), "{err}");
    }

    #[test]
    fn no_network_is_an_enrollment_failure_unless_measure_only() {
        match no_enrollment(&config("", false)) {
            Some(Err(e)) => assert!(e.contains("no [network]") && e.contains("measure-only")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            no_enrollment(&config("mode = \"measure-only\"", false)),
            Some(Ok("skipped: mode measure-only".into()))
        );
        assert_eq!(
            no_enrollment(&config("mode = \"measure-only\"", true)),
            Some(Ok("skipped: mode measure-only".into()))
        );
        assert_eq!(no_enrollment(&config("", true)), None);
    }
}
