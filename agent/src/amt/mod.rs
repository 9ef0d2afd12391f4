//! Intel AMT under the org's `use` policy: CCM activation over the MEI
//! without LMS (see docs/amt.md).
//!
//! - [`apf`]: the APF protocol over the LME client (handshake, channels,
//!   windows, keepalive) — the transport for WS-MAN on the node.
//! - [`host`]: the AMTHI / watchdog calls activation needs.
//! - [`preconditions`]: the checks of me-runtime.md §5.1, as a table.
//! - [`activate`]: the whole flow, producing the report's AMT facts.
//!
//! HTTP, Digest, WS-MAN and credential sealing live in `fortros-amt`.

pub mod activate;
pub mod apf;
pub mod host;
pub mod preconditions;

use std::time::Duration;

use fortros_amt::wsman::Ipv4Config;
use fortros_wire::exchange::CredentialChallenge;
use fortros_wire::policy::{AmtSettings, Policy};
use fortros_wire::report::{ActionTaken, AmtFacts, Outcome};
use zeroize::Zeroizing;

use crate::hw::mei::probe::LiveMe;
use crate::hw::tpm::{identity, Tpm, Transport};
use activate::{NodeSecrets, Plan, Target};
use preconditions::Facts;

/// Policy extension tag: unprovision an AMT provisioned by someone else
/// (CCM only) instead of leaving it alone. Data: empty.
pub const POLICY_EXT_UNPROVISION_FOREIGN: u32 = 0x414D_5402;

impl<T: Transport> NodeSecrets for Tpm<T> {
    fn unseal(&mut self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
        let ch: CredentialChallenge =
            postcard::from_bytes(sealed).map_err(|e| format!("sealed password: {e}"))?;
        identity::activate_credential(
            self,
            ch.credential_blob.as_slice(),
            ch.encrypted_secret.as_slice(),
        )
        .map(Zeroizing::new)
        .map_err(|e| e.to_string())
    }

    fn random(&mut self, buf: &mut [u8]) -> Result<(), String> {
        let r = Zeroizing::new(self.get_random(buf.len()).map_err(|e| e.to_string())?);
        if r.len() != buf.len() {
            return Err("TPM2_GetRandom returned too few bytes".into());
        }
        buf.copy_from_slice(&r);
        Ok(())
    }
}

/// What the probe already read, as precondition facts.
pub fn facts_from_probe(live: &LiveMe) -> Facts {
    let raw = live.hfsts.as_ref().map(|h| h.decoded.raw);
    let caps = live.mkhi.as_ref().and_then(|m| m.fw_caps.as_ref().ok());
    let me_version = live
        .mkhi
        .as_ref()
        .and_then(|m| m.fw_version.as_ref().ok())
        .map(|v| (v.code.major, v.code.minor))
        .or_else(|| {
            live.mei
                .as_ref()
                .and_then(|m| m.fw_ver.as_ref())
                .and_then(|l| l.first())
                .filter(|l| !l.is_zero())
                .map(|l| (l.major, l.minor))
        });
    Facts {
        hfsts1: raw.map(|r| r.reg(1)),
        hfsts3: raw.map(|r| r.reg(3)),
        me_version,
        amt_capable: caps.map(|c| c.amt_capable),
        amt_enabled: caps.and_then(|c| c.amt_enabled),
        ..Facts::default()
    }
}

/// Applies `use` and returns the action for the report; the AMT facts go
/// into `extensions`. `seal_context` is the node's AK name.
pub fn apply_use(
    amt: &AmtSettings,
    policy: &Policy,
    live: &LiveMe,
    org_seal_key: Option<[u8; 32]>,
    seal_context: &[u8],
    secrets: &mut dyn NodeSecrets,
    extensions: &mut Vec<fortros_wire::report::Extension>,
) -> ActionTaken {
    let Some(mei) = live.mei.as_ref() else {
        let facts = AmtFacts {
            result: "refused".into(),
            steps: vec!["no MEI device: the ME is hidden, absent or not bound by mei_me".into()],
            ..AmtFacts::default()
        };
        push_facts(&facts, extensions);
        return ActionTaken {
            action: "provision-amt".into(),
            outcome: Outcome::Refused {
                reason: "no MEI device for 00:16.0: AMT unreachable".into(),
            },
            detail: None,
        };
    };
    let target = Target {
        dev_node: mei.dev_node.clone(),
        timeout: Duration::from_secs(10),
        facts: facts_from_probe(live),
        org_seal_key,
        seal_context: seal_context.to_vec(),
    };
    let plan = Plan {
        sealed_password: amt.admin_password_sealed.as_slice().to_vec(),
        network: Ipv4Config::Dhcp,
        enable_kvm: amt.enable_kvm,
        enable_sol: amt.enable_sol,
        unprovision_foreign: policy
            .extensions
            .iter()
            .any(|e| e.tag == POLICY_EXT_UNPROVISION_FOREIGN),
    };
    let out = activate::provision(&target, &plan, secrets);
    for s in &out.facts.steps {
        log::info!("AMT: {s}");
    }
    push_facts(&out.facts, extensions);
    let detail = Some(format!(
        "AMT {}: {}",
        out.facts.result,
        out.facts.steps.join("; ")
    ));
    ActionTaken {
        action: "provision-amt".into(),
        outcome: match out.result {
            Ok(_) => Outcome::Done,
            Err((true, reason)) => Outcome::Refused { reason },
            Err((false, reason)) => Outcome::Failed {
                reason,
                restored: false,
            },
        },
        detail,
    }
}

fn push_facts(facts: &AmtFacts, extensions: &mut Vec<fortros_wire::report::Extension>) {
    match facts.to_extension() {
        Ok(e) => {
            extensions.retain(|x| x.tag != e.tag);
            extensions.push(e);
        }
        Err(e) => log::error!("AMT facts not encodable: {e}"),
    }
}
