//! The enrollment exchange end to end: a real org server on a loopback
//! port with its SQLite registry, and the agent's real client
//! (`fortros_agent::enroll`) driving software-TPM nodes.

mod common;

use common::*;
use fortros_agent::enroll::{Attester, EnrollClient, EnrollError, Enrolled};
use fortros_org::store::{NodeStatus, ReportKind};
use fortros_wire::envelope::PolicyError;
use fortros_wire::exchange::{EnrollAnswer, EnrollResponse, NonceGrant};
use fortros_wire::policy::PolicyAction;
use fortros_wire::report::MeImageState;
use fortros_wire::testing::sample_report;
use fortros_wire::Bytes;

fn report() -> fortros_wire::Report {
    sample_report(&[], &[])
}

fn policy_of(e: Enrolled) -> fortros_wire::Policy {
    match e {
        Enrolled::Policy { policy, .. } => policy,
        Enrolled::Pending { reason, .. } => panic!("pending: {reason}"),
    }
}

/// Raw POST; returns (status, body).
fn post(url: &str, body: &[u8]) -> (u16, Vec<u8>) {
    match ureq::post(url).send_bytes(body) {
        Ok(r) => {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut r.into_reader(), &mut v).unwrap();
            (200, v)
        }
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default().into_bytes()),
        Err(e) => panic!("{url}: {e}"),
    }
}

#[test]
fn first_enrollment_auto_approved_then_outcome_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let keys = fortros_org::keys::OrgKeys::generate();
    let client_key = keys.verifying();
    let (org, srv) = start_org(dir.path(), keys, settings(true));
    let client = EnrollClient::new(&srv.url(), client_key);
    let mut node = SoftNode::new(1);

    let policy = policy_of(client.enroll(&mut node, report(), None).unwrap());
    assert_eq!(policy.action, PolicyAction::Ignore, "default policy");
    assert_eq!(policy.serial, 1);
    assert_eq!(policy.node.ak_name.as_slice(), node.ak_name().as_slice());

    let nodes = org.registry.nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].status, NodeStatus::Approved);
    assert_eq!(nodes[0].ek_public, node.ek_public);

    let ack = client.post_outcome(&mut node, report()).unwrap();
    assert_eq!(ack.node_id, nodes[0].id);
    let kinds: Vec<ReportKind> = org
        .registry
        .reports(nodes[0].id)
        .unwrap()
        .iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(kinds, [ReportKind::Enroll, ReportKind::Outcome]);
}

#[test]
fn first_enrollment_waits_for_operator_approval() {
    let dir = tempfile::tempdir().unwrap();
    // A real org folder, so the operator CLI works on the same registry.
    let keys = fortros_org::keys::OrgKeys::init(dir.path()).unwrap();
    let client_key = keys.verifying();
    let (org, srv) = start_org(dir.path(), keys, settings(false));
    let client = EnrollClient::new(&srv.url(), client_key);
    let mut node = SoftNode::new(2);

    let id = match client.enroll(&mut node, report(), None).unwrap() {
        Enrolled::Pending { node_id, reason } => {
            assert!(reason.contains("operator approval"), "{reason}");
            node_id
        }
        Enrolled::Policy { .. } => panic!("policy before approval"),
    };
    // Still pending on the next boot; no second challenge (AK is trusted).
    assert!(matches!(
        client.enroll(&mut node, report(), None).unwrap(),
        Enrolled::Pending { .. }
    ));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fortros-org"))
        .args(["--dir", dir.path().to_str().unwrap(), "nodes", "approve"])
        .arg(id.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        org.registry.node(id).unwrap().unwrap().status,
        NodeStatus::Approved
    );
    let policy = policy_of(client.enroll(&mut node, report(), None).unwrap());
    assert_eq!(policy.serial, 1, "first policy issued after approval");
}

#[test]
fn reenrollment_is_recognised_and_diffed() {
    let dir = tempfile::tempdir().unwrap();
    let keys = fortros_org::keys::OrgKeys::generate();
    let client_key = keys.verifying();
    let (org, srv) = start_org(dir.path(), keys, settings(true));
    let client = EnrollClient::new(&srv.url(), client_key);
    let mut node = SoftNode::new(3);

    let p1 = policy_of(client.enroll(&mut node, report(), None).unwrap());
    // Next boot: the disable bit got set and a PCR moved.
    let mut changed = report();
    let flash = changed.flash.as_mut().unwrap();
    flash.me_image.as_mut().unwrap().state = MeImageState::DisableBitSet;
    flash.descriptor.as_mut().unwrap().me_disable_bit = Some(true);
    changed.pcrs.values[8].digest = Bytes(vec![0x5a; 32]);
    let p2 = policy_of(client.enroll(&mut node, changed, Some(p1.serial)).unwrap());
    assert!(p2.serial > p1.serial);

    let nodes = org.registry.nodes().unwrap();
    assert_eq!(nodes.len(), 1, "re-enrollment created a second node");
    let last = org
        .registry
        .last_report(nodes[0].id, ReportKind::Enroll)
        .unwrap()
        .unwrap();
    let diff: Vec<fortros_org::diff::Change> =
        serde_json::from_str(last.diff_json.as_deref().unwrap()).unwrap();
    let fields: Vec<&str> = diff.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["me.image_state", "me.disable_bit", "pcr.13"]);
    assert_eq!(diff[0].before, "stock");
    assert_eq!(diff[0].after, "disable-bit");
}

#[test]
fn forged_or_misdirected_policy_is_rejected_by_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let keys = fortros_org::keys::OrgKeys::generate();
    let real_key = keys.verifying();
    let (_org, srv) = start_org(dir.path(), keys, settings(true));

    // The agent pins another org key: the real org's answer is a forgery to it.
    let impostor = fortros_org::keys::OrgKeys::generate().verifying();
    let mut node = SoftNode::new(4);
    let err = EnrollClient::new(&srv.url(), impostor)
        .enroll(&mut node, report(), None)
        .unwrap_err();
    assert!(
        matches!(err, EnrollError::Policy(PolicyError::BadSignature)),
        "{err}"
    );

    // A genuine policy: tampered bytes, another node, another nonce, old serial.
    let client = EnrollClient::new(&srv.url(), real_key);
    let Enrolled::Policy { policy, signed } = client.enroll(&mut node, report(), None).unwrap()
    else {
        panic!("no policy")
    };
    let ak = node.ak_name();
    let nonce = policy.nonce.0.clone();
    let mut tampered = signed.clone();
    let last = tampered.policy.0.len() - 1;
    tampered.policy.0[last] ^= 1;
    assert!(matches!(
        client.verify_policy(&tampered, &ak, &nonce, None),
        Err(EnrollError::Policy(PolicyError::BadSignature))
    ));
    assert!(matches!(
        client.verify_policy(&signed, &SoftNode::new(5).ak_name(), &nonce, None),
        Err(EnrollError::Policy(PolicyError::WrongNode { .. }))
    ));
    assert!(matches!(
        client.verify_policy(&signed, &ak, &[0; 32], None),
        Err(EnrollError::Policy(PolicyError::WrongNonce))
    ));
    assert!(matches!(
        client.verify_policy(&signed, &ak, &nonce, Some(policy.serial)),
        Err(EnrollError::Policy(PolicyError::StaleSerial { .. }))
    ));
    assert!(client.verify_policy(&signed, &ak, &nonce, None).is_ok());
}

#[test]
fn replayed_report_and_unissued_nonce_are_rejected_by_the_org() {
    let dir = tempfile::tempdir().unwrap();
    let keys = fortros_org::keys::OrgKeys::generate();
    let (org, srv) = start_org(dir.path(), keys, settings(true));
    let url = srv.url();
    let mut node = SoftNode::new(6);

    // A nonce the org never issued.
    let mut r = report();
    r.nonce = Bytes(vec![0x77; 32]);
    let ev = node.attest(r).unwrap().to_bytes().unwrap();
    let (status, body) = post(&format!("{url}/v1/enroll"), &ev);
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("never issued"));

    // A good report, then the same bytes again.
    let (status, body) = post(&format!("{url}/v1/nonce"), &[]);
    assert_eq!(status, 200);
    let grant = NonceGrant::from_bytes(&body).unwrap();
    let mut r = report();
    r.nonce = grant.nonce;
    let ev = node.attest(r).unwrap().to_bytes().unwrap();
    let (status, body) = post(&format!("{url}/v1/enroll"), &ev);
    assert_eq!(status, 200);
    assert!(matches!(
        EnrollResponse::from_bytes(&body).unwrap().answer,
        EnrollAnswer::Challenge(_)
    ));
    let (status, body) = post(&format!("{url}/v1/enroll"), &ev);
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("already used"));

    // A report whose quote does not match its bytes.
    let (_, body) = post(&format!("{url}/v1/nonce"), &[]);
    let mut r = report();
    r.nonce = NonceGrant::from_bytes(&body).unwrap().nonce;
    let mut ev = node.attest(r).unwrap();
    let n = ev.report.0.len();
    ev.report.0[n - 1] ^= 1;
    let (status, _) = post(&format!("{url}/v1/enroll"), &ev.to_bytes().unwrap());
    assert!(status == 400 || status == 403, "tampered report: {status}");

    // Garbage is a 400, not a crash.
    let (status, _) = post(&format!("{url}/v1/enroll"), b"\x01\x00garbage");
    assert_eq!(status, 400);
    assert!(
        org.registry.nodes().unwrap().is_empty(),
        "no challenge answered"
    );
}

#[test]
fn known_ek_with_new_ak_is_flagged_tpm_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let keys = fortros_org::keys::OrgKeys::generate();
    let client_key = keys.verifying();
    let (org, srv) = start_org(dir.path(), keys, settings(true));
    let client = EnrollClient::new(&srv.url(), client_key);

    let mut node = SoftNode::new(7);
    policy_of(client.enroll(&mut node, report(), None).unwrap());
    let id = org.registry.nodes().unwrap()[0].id;

    let mut cleared = node.with_new_ak(8);
    match client.enroll(&mut cleared, report(), None).unwrap() {
        Enrolled::Pending { node_id, reason } => {
            assert_eq!(node_id, id, "same node (same EK)");
            assert!(reason.contains("TPM cleared"), "{reason}");
        }
        Enrolled::Policy { .. } => panic!("policy to a cleared TPM without approval"),
    }
    let n = org.registry.node(id).unwrap().unwrap();
    assert!(n.tpm_cleared);
    assert_eq!(n.ak_name, cleared.ak_name());
    assert_eq!(org.registry.nodes().unwrap().len(), 1);
    let events = org.registry.events(id).unwrap();
    assert!(events.iter().any(|e| e.kind == "tpm-cleared"));
}

#[test]
fn registry_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let keys = fortros_org::keys::OrgKeys::generate();
    let client_key = keys.verifying();
    let keys2 = copy_keys(&keys);
    let (org, srv) = start_org(dir.path(), keys, settings(true));
    let mut node = SoftNode::new(9);
    let p1 = policy_of(
        EnrollClient::new(&srv.url(), client_key)
            .enroll(&mut node, report(), None)
            .unwrap(),
    );
    srv.stop().unwrap();
    drop(org);

    let (org, srv) = start_org(dir.path(), keys2, settings(true));
    let p2 = policy_of(
        EnrollClient::new(&srv.url(), client_key)
            .enroll(&mut node, report(), Some(p1.serial))
            .unwrap(),
    );
    assert_eq!(p2.serial, p1.serial + 1, "serial continues after restart");
    let nodes = org.registry.nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(org.registry.reports(nodes[0].id).unwrap().len(), 2);
}

#[test]
fn concurrent_enrollments_lose_nothing() {
    const NODES: usize = 50;
    const THREADS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let keys = fortros_org::keys::OrgKeys::generate();
    let client_key = keys.verifying();
    let (org, srv) = start_org(dir.path(), keys, settings(true));
    let url = srv.url();

    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let client = EnrollClient::new(&url, client_key);
                let mut names = Vec::new();
                for i in (t..NODES).step_by(THREADS) {
                    let mut node = SoftNode::new(100 + i as u8);
                    let p = policy_of(client.enroll(&mut node, report(), None).unwrap());
                    client.post_outcome(&mut node, report()).unwrap();
                    names.push(p.node.ak_name.0);
                }
                names
            })
        })
        .collect();
    let mut names: Vec<Vec<u8>> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), NODES);

    let nodes = org.registry.nodes().unwrap();
    assert_eq!(nodes.len(), NODES);
    for n in &nodes {
        let reports = org.registry.reports(n.id).unwrap();
        assert_eq!(reports.len(), 2, "node {} lost a report", n.id);
        assert_eq!(n.policy_serial, 1);
    }
}
