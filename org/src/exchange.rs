//! The org's half of the enrollment exchange, without HTTP: nonces,
//! report verification, EK certificate + MakeCredential on first contact,
//! node records and re-enrollment diffs, TPM-cleared detection, and the
//! signed policy. The server module only moves bytes to and from here.

use crate::diff;
use crate::keys::OrgKeys;
use crate::policy::{self, PolicySpec};
use crate::store::*;
use fortros_wire::credential::make_credential;
use fortros_wire::ekcert::{verify_ek_certificate, TrustAnchors};
use fortros_wire::envelope::{ReportEvidence, SignedPolicy};
use fortros_wire::exchange::*;
use fortros_wire::policy::NodeBinding;
use fortros_wire::verify::{verify_report, Expectation, VerifiedReport};
use fortros_wire::{Bytes, Policy, Report, POLICY_FORMAT};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Why the org refused a request. `status()` maps it to HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("nonce was never issued by this org")]
    UnknownNonce,
    #[error("nonce expired")]
    ExpiredNonce,
    #[error("nonce already used (replayed report)")]
    ReplayedNonce,
    #[error("report evidence rejected: {0}")]
    Evidence(#[from] fortros_wire::verify::VerifyError),
    #[error("node has no EK; cannot bind its AK to a TPM")]
    NoEk,
    #[error("EK certificate rejected: {0}")]
    EkCertificate(String),
    #[error("MakeCredential: {0}")]
    Credential(String),
    #[error("no open credential challenge for this nonce")]
    NoChallenge,
    #[error("credential challenge expired")]
    ChallengeExpired,
    #[error("wrong credential secret (the AK is not in the EK's TPM)")]
    WrongSecret,
    #[error("unknown node: enroll before posting an outcome")]
    UnknownNode,
    #[error("policy: {0}")]
    Policy(#[from] policy::PolicyError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("node {0} is not approved: no backups are taken or served")]
    NotApproved(u64),
    #[error("backup refused: {0}")]
    Backup(String),
    #[error("no backup with SHA-256 {sha256} for node {node_id}")]
    NoBackup { node_id: u64, sha256: String },
}

impl ExchangeError {
    /// HTTP status: 400 malformed, 403 refused, 500 ours.
    pub fn status(&self) -> u16 {
        match self {
            ExchangeError::Malformed(_) => 400,
            ExchangeError::Policy(_) | ExchangeError::Store(_) => 500,
            ExchangeError::NoBackup { .. } => 404,
            _ => 403,
        }
    }
}

/// Settings the exchange needs (from `OrgConfig`).
#[derive(Debug, Clone, Default)]
pub struct ExchangeSettings {
    pub auto_approve: bool,
    pub nonce_ttl_secs: u32,
    /// `None`: EK certificates are not required.
    pub ek_anchors: Option<TrustAnchors>,
}

pub struct Org {
    pub registry: Arc<dyn Registry>,
    pub keys: OrgKeys,
    pub settings: ExchangeSettings,
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Org {
    /// Step 1: a fresh nonce, recorded so it can be used once.
    pub fn issue_nonce(&self) -> Result<NonceGrant, ExchangeError> {
        let mut nonce = [0u8; 32];
        OsRng.fill_bytes(&mut nonce);
        let t = now();
        self.registry
            .put_nonce(&nonce, t, t + i64::from(self.settings.nonce_ttl_secs))?;
        Ok(NonceGrant {
            format: EXCHANGE_FORMAT,
            nonce: Bytes(nonce.to_vec()),
            expires_in_secs: self.settings.nonce_ttl_secs,
        })
    }

    /// Checks a report's nonce is fresh, verifies the evidence (against
    /// the node's enrolled AK when known), then consumes the nonce.
    pub(crate) fn verify_fresh(
        &self,
        evidence: &ReportEvidence,
    ) -> Result<(VerifiedReport, Option<Node>), ExchangeError> {
        let report = Report::from_bytes(evidence.report.as_slice())
            .map_err(|e| ExchangeError::Malformed(e.to_string()))?;
        let nonce = report.nonce.as_slice();
        let t = now();
        match self.registry.nonce_status(nonce, t)? {
            NonceStatus::Fresh => {}
            NonceStatus::Unknown => return Err(ExchangeError::UnknownNonce),
            NonceStatus::Expired => return Err(ExchangeError::ExpiredNonce),
            NonceStatus::Used => return Err(ExchangeError::ReplayedNonce),
        }
        let ak_name = fortros_wire::tpm::name_sha256(report.node.ak_public.as_slice());
        let node = self.registry.node_by_ak_name(&ak_name)?;
        let verified = verify_report(
            evidence,
            &Expectation {
                nonce,
                enrolled_ak: node.as_ref().map(|n| n.ak_public.as_slice()),
            },
        )?;
        // Only a verified report may use up a nonce; two racing copies of
        // the same report: one wins here.
        if !self.registry.consume_nonce(nonce, t)? {
            return Err(ExchangeError::ReplayedNonce);
        }
        Ok((verified, node))
    }

    /// Step 2: the node's report.
    pub fn enroll(&self, evidence_bytes: &[u8]) -> Result<EnrollResponse, ExchangeError> {
        let evidence = ReportEvidence::from_bytes(evidence_bytes)
            .map_err(|e| ExchangeError::Malformed(e.to_string()))?;
        let (verified, node) = self.verify_fresh(&evidence)?;
        let answer = match node {
            Some(node) => self.known_node(node, &verified, evidence_bytes)?,
            None => self.challenge(&verified, evidence_bytes)?,
        };
        Ok(EnrollResponse {
            format: EXCHANGE_FORMAT,
            answer,
        })
    }

    /// A node whose AK the org already trusts: record, diff, answer.
    fn known_node(
        &self,
        node: Node,
        verified: &VerifiedReport,
        evidence_bytes: &[u8],
    ) -> Result<EnrollAnswer, ExchangeError> {
        let t = now();
        self.record_report(node.id, &verified.report, evidence_bytes, t)?;
        self.registry.touch(node.id, t)?;
        self.answer_for(&node, &verified.report)
    }

    /// Stores an enrollment report with its diff against the previous one.
    fn record_report(
        &self,
        node_id: u64,
        report: &Report,
        evidence_bytes: &[u8],
        t: i64,
    ) -> Result<u64, ExchangeError> {
        let previous = self.registry.last_report(node_id, ReportKind::Enroll)?;
        let diff_json = match previous {
            None => None,
            Some(prev) => {
                let old = ReportEvidence::from_bytes(&prev.evidence)
                    .ok()
                    .and_then(|e| Report::from_bytes(e.report.as_slice()).ok());
                old.map(|old| {
                    let changes = diff::diff(&old, report);
                    for c in &changes {
                        log::info!("node {node_id}: {c}");
                    }
                    serde_json::to_string(&changes).unwrap_or_else(|_| "[]".into())
                })
            }
        };
        Ok(self.registry.add_report(
            node_id,
            ReportKind::Enroll,
            t,
            evidence_bytes,
            diff_json.as_deref(),
        )?)
    }

    fn answer_for(&self, node: &Node, report: &Report) -> Result<EnrollAnswer, ExchangeError> {
        if node.status == NodeStatus::Pending {
            let reason = if node.tpm_cleared {
                "TPM cleared (known EK, new AK): waiting for operator approval"
            } else {
                "waiting for operator approval"
            };
            return Ok(EnrollAnswer::Pending {
                node_id: node.id,
                reason: reason.into(),
            });
        }
        Ok(EnrollAnswer::Policy(
            self.signed_policy(node, report.nonce.as_slice())?,
        ))
    }

    /// First contact of an AK: check the EK (certificate chain when the
    /// org configured CAs) and send a MakeCredential challenge.
    fn challenge(
        &self,
        verified: &VerifiedReport,
        evidence_bytes: &[u8],
    ) -> Result<EnrollAnswer, ExchangeError> {
        let ident = &verified.report.node;
        let ek_public = ident.ek_public.as_ref().ok_or(ExchangeError::NoEk)?;
        let ek = policy::rsa_ek(ek_public.as_slice())
            .map_err(|e| ExchangeError::Credential(e.to_string()))?;
        let ek_certificate = match &self.settings.ek_anchors {
            None => "unchecked (no EK CAs configured)".to_string(),
            Some(anchors) => {
                let cert = ident.ek_certificate.as_ref().ok_or_else(|| {
                    ExchangeError::EkCertificate("the node sent no EK certificate".into())
                })?;
                let info =
                    verify_ek_certificate(cert.as_slice(), anchors, Some(&ek), Some(now() as u64))
                        .map_err(|e| ExchangeError::EkCertificate(e.to_string()))?;
                format!("{} (issuer {})", info.subject, info.issuer)
            }
        };
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        let made = make_credential(&ek, &verified.ak_name, &secret, &mut OsRng)
            .map_err(|e| ExchangeError::Credential(e.to_string()))?;
        self.registry.put_challenge(&PendingChallenge {
            nonce: verified.report.nonce.0.clone(),
            secret_sha256: Sha256::digest(secret).to_vec(),
            ak_name: verified.ak_name.clone(),
            ak_public: ident.ak_public.0.clone(),
            ek_public: ek_public.0.clone(),
            ek_certificate,
            evidence: evidence_bytes.to_vec(),
            expires_at: now() + i64::from(self.settings.nonce_ttl_secs),
        })?;
        Ok(EnrollAnswer::Challenge(CredentialChallenge {
            credential_blob: Bytes(made.credential_blob),
            encrypted_secret: Bytes(made.encrypted_secret),
        }))
    }

    /// Step 3: the node proved its AK is in its EK's TPM. Record it (a
    /// new node, or a known EK with a new AK: "TPM cleared").
    pub fn activate(&self, request_bytes: &[u8]) -> Result<EnrollResponse, ExchangeError> {
        let req = ActivationRequest::from_bytes(request_bytes)
            .map_err(|e| ExchangeError::Malformed(e.to_string()))?;
        let ch = self
            .registry
            .take_challenge(req.nonce.as_slice())?
            .ok_or(ExchangeError::NoChallenge)?;
        let t = now();
        if ch.expires_at < t {
            return Err(ExchangeError::ChallengeExpired);
        }
        if Sha256::digest(req.secret.as_slice()).as_slice() != ch.secret_sha256.as_slice() {
            return Err(ExchangeError::WrongSecret);
        }
        let ek_sha256 = Sha256::digest(&ch.ek_public).to_vec();
        let node = match self.registry.node_by_ek(&ek_sha256)? {
            Some(old) => {
                // Same TPM (EK), new AK: someone cleared or re-provisioned
                // the TPM. Flag it and wait for the operator.
                log::warn!("node {}: known EK with a new AK (TPM cleared)", old.id);
                self.registry.replace_ak(
                    old.id,
                    &ch.ak_name,
                    &ch.ak_public,
                    NodeStatus::Pending,
                    t,
                )?;
                self.registry.add_event(
                    old.id,
                    "tpm-cleared",
                    &format!(
                        "EK known, AK changed from {} to {}",
                        hex::encode(&old.ak_name),
                        hex::encode(&ch.ak_name)
                    ),
                    t,
                )?;
                self.registry
                    .node(old.id)?
                    .ok_or(ExchangeError::UnknownNode)?
            }
            None => {
                let status = if self.settings.auto_approve {
                    NodeStatus::Approved
                } else {
                    NodeStatus::Pending
                };
                let node = self.registry.create_node(&NewNode {
                    ak_name: ch.ak_name.clone(),
                    ak_public: ch.ak_public.clone(),
                    ek_sha256,
                    ek_public: ch.ek_public.clone(),
                    ek_certificate: ch.ek_certificate.clone(),
                    status,
                    now: t,
                })?;
                self.registry.add_event(
                    node.id,
                    "enrolled",
                    &format!("first enrollment, {}", status.as_str()),
                    t,
                )?;
                node
            }
        };
        let evidence = ReportEvidence::from_bytes(&ch.evidence)
            .map_err(|e| ExchangeError::Malformed(e.to_string()))?;
        let report = Report::from_bytes(evidence.report.as_slice())
            .map_err(|e| ExchangeError::Malformed(e.to_string()))?;
        self.record_report(node.id, &report, &ch.evidence, t)?;
        Ok(EnrollResponse {
            format: EXCHANGE_FORMAT,
            answer: self.answer_for(&node, &report)?,
        })
    }

    /// The policy for a node (its own, else its group's, else `ignore`).
    pub fn resolve_policy(&self, node: &Node) -> Result<(PolicySpec, PolicyScope), ExchangeError> {
        let own = PolicyScope::Node(node.id);
        if let Some(json) = self.registry.policy(&own)? {
            return Ok((policy::parse_spec(&own, &json)?, own));
        }
        if let Some(g) = &node.group {
            let scope = PolicyScope::Group(g.clone());
            if let Some(json) = self.registry.policy(&scope)? {
                return Ok((policy::parse_spec(&scope, &json)?, scope));
            }
        }
        Ok((PolicySpec::Ignore, own))
    }

    /// Step 4: the node's policy, with the next serial, bound to its AK
    /// and to this enrollment's nonce, signed with the org key.
    fn signed_policy(&self, node: &Node, nonce: &[u8]) -> Result<SignedPolicy, ExchangeError> {
        let (spec, scope) = self.resolve_policy(node)?;
        // A node already provisioned through the org gets the password the
        // org holds for it, so it can recognise its AMT as the org's.
        let held = match &spec {
            PolicySpec::Use { .. } => {
                crate::amt::node_password(self.registry.as_ref(), &self.keys.secrets, node.id)
                    .map_err(|e| ExchangeError::Policy(policy::PolicyError::Seal(e.to_string())))?
            }
            _ => None,
        };
        let action = policy::to_wire_action_with(
            &spec,
            &scope,
            &self.keys.secrets,
            &node.ek_public,
            &node.ak_name,
            held.as_deref().map(|v| v.as_slice()),
        )?;
        let serial = self.registry.next_policy_serial(node.id)?;
        let p = Policy {
            format: POLICY_FORMAT,
            serial,
            node: NodeBinding {
                ak_name: Bytes(node.ak_name.clone()),
            },
            nonce: Bytes(nonce.to_vec()),
            extensions: policy::extensions_for(&spec),
            action,
        };
        SignedPolicy::sign(&p, &self.keys.signing)
            .map_err(|e| ExchangeError::Malformed(e.to_string()))
    }

    /// Keeps the AMT credential a provisioned node reports (see `crate::amt`).
    fn record_amt(&self, node: &Node, report: &Report, t: i64) -> Result<(), ExchangeError> {
        let policy_password = || -> Result<_, String> {
            match self.resolve_policy(node).map_err(|e| e.to_string())? {
                (PolicySpec::Use { amt }, scope) => crate::amt::scope_password(
                    &self.keys.secrets,
                    &scope,
                    &amt.admin_password_encrypted,
                ),
                _ => Ok(None),
            }
        };
        match crate::amt::record_outcome(
            self.registry.as_ref(),
            &self.keys.secrets,
            node.id,
            &node.ak_name,
            report,
            policy_password,
            t,
        ) {
            Ok(Some(line)) => self.registry.add_event(node.id, "amt", &line, t)?,
            Ok(None) => {}
            Err(e) => self.registry.add_event(
                node.id,
                "amt",
                &format!("AMT credential not stored: {e}"),
                t,
            )?,
        }
        Ok(())
    }

    /// Step 5: the node's report of what it did, quoted over a fresh nonce.
    pub fn outcome(&self, evidence_bytes: &[u8]) -> Result<OutcomeAck, ExchangeError> {
        let evidence = ReportEvidence::from_bytes(evidence_bytes)
            .map_err(|e| ExchangeError::Malformed(e.to_string()))?;
        // Peek at the AK first: outcomes come only from enrolled nodes.
        let report = Report::from_bytes(evidence.report.as_slice())
            .map_err(|e| ExchangeError::Malformed(e.to_string()))?;
        let ak_name = fortros_wire::tpm::name_sha256(report.node.ak_public.as_slice());
        if self.registry.node_by_ak_name(&ak_name)?.is_none() {
            return Err(ExchangeError::UnknownNode);
        }
        let (verified, node) = self.verify_fresh(&evidence)?;
        let node = node.ok_or(ExchangeError::UnknownNode)?;
        let t = now();
        let id = self
            .registry
            .add_report(node.id, ReportKind::Outcome, t, evidence_bytes, None)?;
        self.registry.touch(node.id, t)?;
        for a in &verified.report.actions {
            log::info!("node {}: {} -> {:?}", node.id, a.action, a.outcome);
        }
        self.record_amt(&node, &verified.report, t)?;
        Ok(OutcomeAck {
            format: EXCHANGE_FORMAT,
            node_id: node.id,
            report_id: id,
        })
    }
}
