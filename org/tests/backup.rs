//! Backups over loopback: a real org server with its SQLite registry and
//! the agent's real client (`EnrollClient::upload_backup`/`fetch_backup`)
//! with a software TPM node; the operator fetches the image with
//! `fortros-org nodes backup`.

mod common;

use common::*;
use fortros_agent::enroll::{EnrollClient, EnrollError};
use fortros_wire::exchange::{BackupUpload, EXCHANGE_FORMAT};
use fortros_wire::testing::sample_report;
use fortros_wire::Bytes;
use sha2::{Digest, Sha256};

fn image(seed: u8) -> Vec<u8> {
    (0..256 * 1024u32).map(|i| (i % 253) as u8 ^ seed).collect()
}

fn org_cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fortros-org"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn node_uploads_its_image_and_the_operator_and_node_get_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let keys = fortros_org::keys::OrgKeys::init(dir.path()).unwrap();
    let client_key = keys.verifying();
    let (org, srv) = start_org(dir.path(), keys, settings(true));
    let client = EnrollClient::new(&srv.url(), client_key);
    let mut node = SoftNode::new(7);
    client
        .enroll(&mut node, sample_report(&[], &[]), None)
        .unwrap();
    let id = org.registry.nodes().unwrap()[0].id;

    let img = image(1);
    let sha: [u8; 32] = Sha256::digest(&img).into();
    let ack = client
        .upload_backup(&mut node, sample_report(&[], &[]), &img)
        .unwrap();
    assert_eq!(
        (ack.node_id, ack.sha256.0, ack.size),
        (id, sha, img.len() as u64)
    );
    assert!(!ack.already_held);
    let again = client
        .upload_backup(&mut node, sample_report(&[], &[]), &img)
        .unwrap();
    assert!(again.already_held, "the same image is kept once");
    client
        .upload_backup(&mut node, sample_report(&[], &[]), &image(2))
        .unwrap();

    // The node gets it back, checked against the digest.
    let back = client
        .fetch_backup(&mut node, sample_report(&[], &[]), sha)
        .unwrap();
    assert!(back == img);
    let missing = client
        .fetch_backup(&mut node, sample_report(&[], &[]), [9; 32])
        .unwrap_err();
    assert!(
        matches!(missing, EnrollError::Refused { status: 404, .. }),
        "{missing}"
    );

    // The operator: list, fetch by digest, fetch the latest.
    let out = org_cli(
        dir.path(),
        &["nodes", "backup", &id.to_string(), "--list", "--json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list[0]["sha256"], hex::encode(sha));
    let f = dir.path().join("b.bin");
    let out = org_cli(
        dir.path(),
        &[
            "nodes",
            "backup",
            &id.to_string(),
            "-o",
            f.to_str().unwrap(),
            "--sha256",
            &hex::encode(sha),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&f).unwrap() == img);
    let out = org_cli(
        dir.path(),
        &[
            "nodes",
            "backup",
            &id.to_string(),
            "-o",
            f.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    assert!(std::fs::read(&f).unwrap() == image(2), "latest by default");
    let out = org_cli(
        dir.path(),
        &["nodes", "backup", "99", "-o", f.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "unknown node is unusable input");
    let events = org.registry.events(id).unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "backup").count(), 2);
}

#[test]
fn backups_need_an_enrolled_node_a_fresh_quote_and_the_right_digest() {
    let dir = tempfile::tempdir().unwrap();
    let keys = fortros_org::keys::OrgKeys::generate();
    let client_key = keys.verifying();
    let (org, srv) = start_org(dir.path(), keys, settings(true));
    let client = EnrollClient::new(&srv.url(), client_key);

    // Not enrolled: refused.
    let mut stranger = SoftNode::new(8);
    let e = client
        .upload_backup(&mut stranger, sample_report(&[], &[]), &image(3))
        .unwrap_err();
    assert!(matches!(e, EnrollError::Refused { status: 403, .. }), "{e}");

    let mut node = SoftNode::new(9);
    client
        .enroll(&mut node, sample_report(&[], &[]), None)
        .unwrap();

    // A quote whose report names another image: refused, nothing kept.
    let img = image(4);
    let mut report = sample_report(&[], &[]);
    report.nonce = Bytes(client.nonce().unwrap());
    if let Some(f) = report.flash.as_mut() {
        f.image_sha256 = fortros_wire::Digest32([0xAB; 32]);
    }
    let evidence = fortros_agent::enroll::Attester::attest(&mut node, report).unwrap();
    let body = BackupUpload {
        format: EXCHANGE_FORMAT,
        evidence: evidence.clone(),
        image: Bytes(img.clone()),
    }
    .to_bytes()
    .unwrap();
    let r = ureq::post(&format!("{}/v1/backup", srv.url())).send_bytes(&body);
    match r {
        Err(ureq::Error::Status(403, resp)) => {
            let text = resp.into_string().unwrap();
            assert!(text.contains("the quoted report says"), "{text}");
        }
        other => panic!("expected 403, got {other:?}"),
    }
    // The same evidence again: its nonce is used up.
    let r = ureq::post(&format!("{}/v1/backup", srv.url())).send_bytes(&body);
    assert!(matches!(r, Err(ureq::Error::Status(403, _))));
    let id = org.registry.nodes().unwrap()[0].id;
    assert!(org.registry.backups(id).unwrap().is_empty());

    // A 16 MiB image passes the body limit (the general limit is 256 KiB).
    let big = vec![0x5A; 16 << 20];
    let ack = client
        .upload_backup(&mut node, sample_report(&[], &[]), &big)
        .unwrap();
    assert_eq!(ack.size, 16 << 20);
}
