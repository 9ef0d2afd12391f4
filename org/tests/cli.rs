//! The operator CLI (`fortros-org`) run as a program against a registry
//! filled by real enrollments over loopback.

mod common;

use common::*;
use fortros_agent::enroll::{Attester, EnrollClient, Enrolled};
use fortros_wire::exchange::CredentialChallenge;
use fortros_wire::me_evidence::MeEvidence;
use fortros_wire::policy::{AmtControlMode, PolicyAction};
use fortros_wire::report::MeImageState;
use fortros_wire::testing::sample_report;
use std::path::Path;
use std::process::{Command, Output};

fn org_cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fortros-org"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("FORTROS_AMT_PASSWORD")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// An initialised org folder with one enrolled node (enrolled twice, the
/// second time with the disable bit set).
fn fleet_of_one(dir: &Path) -> (SoftNode, EnrollClient, fortros_org::server::Running) {
    let out = org_cli(dir, &["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = fortros_org::keys::OrgKeys::load(dir).unwrap();
    let pubkey = keys.verifying();
    let (_org, srv) = start_org(dir, keys, settings(true));
    let client = EnrollClient::new(&srv.url(), pubkey);
    let mut node = SoftNode::new(21);
    let Enrolled::Policy { policy, .. } = client
        .enroll(&mut node, sample_report(&[], &[]), None)
        .unwrap()
    else {
        panic!("not approved")
    };
    let mut r = sample_report(&[], &[]);
    let flash = r.flash.as_mut().unwrap();
    flash.me_image.as_mut().unwrap().state = MeImageState::DisableBitSet;
    flash.me_image.as_mut().unwrap().version = Some("11.8.82.3838".into());
    flash.descriptor.as_mut().unwrap().me_disable_bit = Some(true);
    let evidence = MeEvidence {
        image_state: Some("disable bit set".into()),
        image_evidence: vec!["disable strap HAP: set (PCHSTRP0 bit 16)".into()],
        live_state: Some("normal".into()),
        ..MeEvidence::default()
    };
    r.extensions.push(evidence.to_extension().unwrap());
    client.enroll(&mut node, r, Some(policy.serial)).unwrap();
    (node, client, srv)
}

#[test]
fn init_refuses_to_replace_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = org_cli(dir.path(), &["init"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("org public key"));
    let out = org_cli(dir.path(), &["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to replace"));
}

#[test]
fn fleet_table_and_node_view_show_state_and_diff() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _client, _srv) = fleet_of_one(dir.path());

    let list = json(&org_cli(dir.path(), &["nodes", "list", "--json"]));
    let row = &list[0];
    assert_eq!(row["id"], 1);
    assert_eq!(row["status"], "approved");
    assert_eq!(row["me_image"], "disable-bit");
    assert_eq!(row["me_live"], "normal");
    assert_eq!(row["me_version"], "11.8.50.3425");
    assert_eq!(row["me_live_version"], "11.8.50.3425");
    assert_eq!(row["me_image_version"], "11.8.82.3838");
    assert_eq!(row["disable_bit"], "set");
    assert_eq!(row["amt"], "unprovisioned");
    assert_eq!(row["changes_last_boot"], 3);
    assert_eq!(row["ak_name"], hex::encode(node.ak_name()));

    let table = stdout(&org_cli(dir.path(), &["nodes", "list"]));
    assert!(table.contains("disable-bit"), "{table}");
    assert!(
        table.contains("DISABLE") && table.contains(" set "),
        "{table}"
    );
    assert!(table.contains("1 node(s)"));

    let show = json(&org_cli(dir.path(), &["nodes", "show", "1", "--json"]));
    assert_eq!(show["last_diff"][0]["field"], "me.image_state");
    assert_eq!(show["last_diff"][0]["before"], "stock");
    assert_eq!(show["history"].as_array().unwrap().len(), 2);
    assert_eq!(show["last_report"]["boot_counter"], 7);
    assert_eq!(show["me_evidence"]["image_state"], "disable bit set");
    let text = stdout(&org_cli(dir.path(), &["nodes", "show", "1"]));
    for line in [
        "me.image_state: stock -> disable-bit",
        "me.image_version: 11.8.50.3425 -> 11.8.82.3838",
        "me.disable_bit: clear -> set",
        "image          disable-bit (ME 11 11.8.82.3838), disable bit set",
        "live           normal (firmware 11.8.50.3425), AMT unprovisioned",
        "image          disable strap HAP: set (PCHSTRP0 bit 16)",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }

    let missing = org_cli(dir.path(), &["nodes", "show", "99"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn report_verify_checks_quote_and_nonce() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, client, _srv) = fleet_of_one(dir.path());
    let mut r = sample_report(&[], &[]);
    r.nonce = fortros_wire::Bytes(client.nonce().unwrap());
    let ev = node.attest(r).unwrap();
    let good = dir.path().join("good.ev");
    std::fs::write(&good, ev.to_bytes().unwrap()).unwrap();
    let v = json(&org_cli(
        dir.path(),
        &["report", "verify", good.to_str().unwrap(), "--json"],
    ));
    assert_eq!(v["verified"], true);
    assert_eq!(v["node_id"], 1);
    assert_eq!(v["nonce"], "issued, not yet used");

    let mut bad = ev.clone();
    let n = bad.attest.0.len();
    bad.attest.0[n - 1] ^= 1;
    let badf = dir.path().join("bad.ev");
    std::fs::write(&badf, bad.to_bytes().unwrap()).unwrap();
    let out = org_cli(dir.path(), &["report", "verify", badf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("NOT verified"));

    let junk = dir.path().join("junk.ev");
    std::fs::write(&junk, b"\x01\x00\xff\xff").unwrap();
    let out = org_cli(dir.path(), &["report", "verify", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn export_network_block_lists_me_mac_and_amt_ports() {
    let dir = tempfile::tempdir().unwrap();
    let _fleet = fleet_of_one(dir.path());
    let nft = stdout(&org_cli(dir.path(), &["export", "network-block"]));
    assert!(nft.contains("elements = { 00:1b:21:01:02:03 }"), "{nft}");
    assert!(nft.contains("16992, 16993, 16994, 16995, 664"));
    let csv = stdout(&org_cli(
        dir.path(),
        &["export", "network-block", "--format", "csv"],
    ));
    let row = csv.lines().nth(1).unwrap();
    assert!(row.starts_with("1,"), "{csv}");
    assert!(row.contains(",00:1b:21:01:02:03,00:1b:21:01:02:04,yes,16992 16993,"));
    let j = json(&org_cli(dir.path(), &["export", "network-block", "--json"]));
    assert_eq!(j[0]["me_mac"], "00:1b:21:01:02:03");
}

#[test]
fn amt_policy_is_encrypted_at_rest_and_sealed_to_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, client, _srv) = fleet_of_one(dir.path());
    let pw = dir.path().join("amt.pw");
    std::fs::write(&pw, "Corr3ct-Horse!\n").unwrap();
    let out = org_cli(
        dir.path(),
        &[
            "policy",
            "set",
            "--node",
            "1",
            "use",
            "--amt-password-file",
            pw.to_str().unwrap(),
            "--interface",
            "eno1",
            "--kvm",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = stdout(&org_cli(
        dir.path(),
        &["policy", "show", "--node", "1", "--json"],
    ));
    assert!(!shown.contains("Corr3ct"), "{shown}");
    let db = std::fs::read(dir.path().join("registry.sqlite")).unwrap();
    assert!(
        !db.windows(7).any(|w| w == b"Corr3ct"),
        "plaintext in the database"
    );

    let Enrolled::Policy { policy, .. } = client
        .enroll(&mut node, sample_report(&[], &[]), None)
        .unwrap()
    else {
        panic!("no policy")
    };
    let PolicyAction::Use { amt } = policy.action else {
        panic!("{:?}", policy.action)
    };
    assert_eq!(amt.control_mode, AmtControlMode::Admin);
    assert_eq!(amt.interface.as_deref(), Some("eno1"));
    assert!(amt.enable_kvm && !amt.enable_sol);
    let sealed: CredentialChallenge =
        postcard::from_bytes(amt.admin_password_sealed.as_slice()).unwrap();
    assert_eq!(
        node.activate_credential(&sealed).unwrap(),
        b"Corr3ct-Horse!"
    );
    // Another TPM cannot open it.
    assert!(SoftNode::new(22).activate_credential(&sealed).is_err());

    // A short password is refused as unusable input.
    std::fs::write(&pw, "short").unwrap();
    let out = org_cli(
        dir.path(),
        &[
            "policy",
            "set",
            "--group",
            "g",
            "use",
            "--amt-password-file",
            pw.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn group_policy_applies_unless_the_node_has_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, client, _srv) = fleet_of_one(dir.path());
    assert!(org_cli(dir.path(), &["nodes", "group", "1", "lab"])
        .status
        .success());
    assert!(org_cli(
        dir.path(),
        &[
            "policy",
            "set",
            "--group",
            "lab",
            "neutralize",
            "--mode",
            "strip"
        ]
    )
    .status
    .success());
    let get =
        |node: &mut SoftNode| match client.enroll(node, sample_report(&[], &[]), None).unwrap() {
            Enrolled::Policy { policy, .. } => policy.action,
            Enrolled::Pending { .. } => panic!("pending"),
        };
    assert_eq!(
        get(&mut node),
        PolicyAction::Neutralize {
            mode: fortros_wire::policy::NeutralizeMode::DisableBitAndStrip
        }
    );
    assert!(
        org_cli(dir.path(), &["policy", "set", "--node", "1", "ignore"])
            .status
            .success()
    );
    assert_eq!(get(&mut node), PolicyAction::Ignore);
}
