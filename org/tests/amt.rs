//! The org's side of the `use` policy, end to end over loopback: a node
//! that generates its AMT password seals it to the org in its outcome
//! report; the org stores it encrypted, sends it back sealed to the node's
//! TPM on the next enrollment (so the node recognises its AMT), and
//! `fortros-org nodes reboot` resets the node through a WS-MAN endpoint
//! that checks Digest credentials (a small AMT stand-in on loopback).

mod common;

use common::*;
use fortros_agent::enroll::{Attester, EnrollClient, Enrolled};
use fortros_amt::digest;
use fortros_wire::exchange::CredentialChallenge;
use fortros_wire::policy::PolicyAction;
use fortros_wire::report::AmtFacts;
use fortros_wire::testing::sample_report;
use fortros_wire::Bytes;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::mpsc;

const GENERATED: &str = "Gen3rated-by-TPM!x";

fn org_cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fortros-org"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("FORTROS_AMT_PASSWORD")
        .output()
        .unwrap()
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn policy_of(e: Enrolled) -> fortros_wire::Policy {
    match e {
        Enrolled::Policy { policy, .. } => policy,
        Enrolled::Pending { reason, .. } => panic!("pending: {reason}"),
    }
}

/// A WS-MAN endpoint standing in for AMT's 16992: challenges, checks the
/// Digest response for `admin`/`password`, answers RequestPowerStateChange.
/// Sends each PowerState it accepted on `seen`.
fn fake_amt(password: &'static str, seen: mpsc::Sender<String>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let realm = "Digest:0123456789ABCDEF0123456789ABCDEF";
        let nonce = "fake-nonce-1";
        for conn in l.incoming() {
            let Ok(mut s) = conn else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut auth = None;
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("Authorization: ") {
                    auth = Some(v.to_string());
                }
                if let Some(v) = line.strip_prefix("Content-Length: ") {
                    len = v.parse().unwrap();
                }
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).unwrap();
            let body = String::from_utf8_lossy(&body).to_string();
            let good = auth.as_deref().is_some_and(|a| {
                // Recompute the response from the client's own nc/cnonce.
                let field = |k: &str| {
                    let i = a.find(&format!("{k}=")).unwrap() + k.len() + 1;
                    let rest = &a[i..];
                    let rest = rest.strip_prefix('"').unwrap_or(rest);
                    rest.split(['"', ',']).next().unwrap().to_string()
                };
                let ha1 = digest::ha1("admin", realm, password);
                let ha2 = digest::md5_hex(b"POST:/wsman");
                let want = digest::md5_hex(
                    format!(
                        "{ha1}:{nonce}:{}:{}:auth:{ha2}",
                        field("nc"),
                        field("cnonce")
                    )
                    .as_bytes(),
                );
                field("username") == "admin" && field("response") == want
            });
            let resp = if !good {
                format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"{realm}\", \
                     nonce=\"{nonce}\", stale=\"false\", qop=\"auth\"\r\nContent-Length: 0\r\n\r\n"
                )
            } else {
                let state = body
                    .split("<h:PowerState>")
                    .nth(1)
                    .and_then(|x| x.split('<').next())
                    .unwrap_or("")
                    .to_string();
                let _ = seen.send(state);
                let env = "<a:Envelope xmlns:a=\"http://www.w3.org/2003/05/soap-envelope\">\
                    <a:Header/><a:Body><g:RequestPowerStateChange_OUTPUT xmlns:g=\"x\">\
                    <g:ReturnValue>0</g:ReturnValue></g:RequestPowerStateChange_OUTPUT></a:Body></a:Envelope>";
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/soap+xml\r\nContent-Length: {}\r\n\r\n{env}",
                    env.len()
                )
            };
            let _ = s.write_all(resp.as_bytes());
        }
    });
    port
}

#[test]
fn generated_password_reaches_the_org_sealed_is_stored_encrypted_and_powers_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let init = ok(org_cli(d, &["init"]));
    assert!(init.contains("AMT seal key"), "{init}");
    let amt_pub: [u8; 32] = hex::decode(std::fs::read_to_string(d.join("amt.pub")).unwrap().trim())
        .unwrap()
        .try_into()
        .unwrap();
    let keys = fortros_org::keys::OrgKeys::load(d).unwrap();
    let pubkey = keys.verifying();
    let (_org, srv) = start_org(d, keys, settings(true));
    let client = EnrollClient::new(&srv.url(), pubkey);
    let mut node = SoftNode::new(31);
    policy_of(
        client
            .enroll(&mut node, sample_report(&[], &[]), None)
            .unwrap(),
    );

    // `use` without an org password: the node generates one.
    let set = ok(org_cli(
        d,
        &[
            "policy",
            "set",
            "--node",
            "1",
            "use",
            "--unprovision-foreign",
        ],
    ));
    assert!(set.contains("generated by each node"), "{set}");
    let p = policy_of(
        client
            .enroll(&mut node, sample_report(&[], &[]), None)
            .unwrap(),
    );
    let PolicyAction::Use { amt } = &p.action else {
        panic!("{:?}", p.action)
    };
    assert!(amt.admin_password_sealed.as_slice().is_empty());
    assert_eq!(p.extensions.len(), 1, "unprovision-foreign travels");
    assert_eq!(p.extensions[0].tag, 0x414D_5402);

    // The node reports CCM and its password sealed to the org.
    let sealed = fortros_amt::seal::seal(&amt_pub, GENERATED.as_bytes(), &node.ak_name()).unwrap();
    let facts = AmtFacts {
        amt_version: Some("16.1.25".into()),
        provisioning_state: Some(2),
        control_mode: Some(1),
        result: "provisioned".into(),
        password_source: Some("node-generated".into()),
        sealed_password: Some(Bytes(sealed)),
        ..AmtFacts::default()
    };
    let mut report = sample_report(&[], &[]);
    report.extensions.push(facts.to_extension().unwrap());
    client.post_outcome(&mut node, report).unwrap();

    let show = ok(org_cli(d, &["nodes", "show", "1", "--json"]));
    assert!(
        show.contains("admin credential (node-generated) stored encrypted"),
        "{show}"
    );
    let db = std::fs::read(d.join("registry.sqlite")).unwrap();
    let wal = std::fs::read(d.join("registry.sqlite-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(9).any(|w| w == &GENERATED.as_bytes()[..9]),
            "plaintext password in the database"
        );
    }

    // Next enrollment: the org sends the password it holds, sealed to
    // this node's TPM only.
    let p = policy_of(
        client
            .enroll(&mut node, sample_report(&[], &[]), None)
            .unwrap(),
    );
    let PolicyAction::Use { amt } = &p.action else {
        panic!("{:?}", p.action)
    };
    let ch: CredentialChallenge =
        postcard::from_bytes(amt.admin_password_sealed.as_slice()).unwrap();
    assert_eq!(node.activate_credential(&ch).unwrap(), GENERATED.as_bytes());
    assert!(SoftNode::new(32).activate_credential(&ch).is_err());

    // Out-of-band reset with the stored credential.
    let (tx, rx) = mpsc::channel();
    let port = fake_amt(GENERATED, tx);
    let out = ok(org_cli(
        d,
        &[
            "nodes",
            "reboot",
            "1",
            "--amt",
            &format!("127.0.0.1:{port}"),
        ],
    ));
    assert!(out.contains("ReturnValue 0"), "{out}");
    assert_eq!(rx.recv().unwrap(), "10", "master bus reset");
    let show = ok(org_cli(d, &["nodes", "show", "1"]));
    assert!(show.contains("reset through AMT"), "{show}");

    // An AMT that does not know this password refuses; the CLI says so.
    let (tx, _rx) = mpsc::channel();
    let port = fake_amt("Someone-Else's-1", tx);
    let out = org_cli(
        d,
        &[
            "nodes",
            "reboot",
            "1",
            "--amt",
            &format!("127.0.0.1:{port}"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rejected"), "{err}");
    assert!(
        !err.contains(GENERATED)
            && !out
                .stdout
                .windows(9)
                .any(|w| w == &GENERATED.as_bytes()[..9])
    );

    // A node the org holds no credential for: a clear failure.
    let out = org_cli(d, &["nodes", "reboot", "9", "--amt", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_sealed_password_for_another_node_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(org_cli(d, &["init"]));
    let keys = fortros_org::keys::OrgKeys::load(d).unwrap();
    let amt_pub = fortros_org::amt::seal_public(&keys.secrets);
    let pubkey = keys.verifying();
    let (_org, srv) = start_org(d, keys, settings(true));
    let client = EnrollClient::new(&srv.url(), pubkey);
    let mut node = SoftNode::new(41);
    policy_of(
        client
            .enroll(&mut node, sample_report(&[], &[]), None)
            .unwrap(),
    );
    // Sealed with another node's AK name as context: it does not open here.
    let sealed = fortros_amt::seal::seal(&amt_pub, GENERATED.as_bytes(), b"other node").unwrap();
    let facts = AmtFacts {
        result: "provisioned".into(),
        sealed_password: Some(Bytes(sealed)),
        ..AmtFacts::default()
    };
    let mut report = sample_report(&[], &[]);
    report.extensions.push(facts.to_extension().unwrap());
    client.post_outcome(&mut node, report).unwrap();
    let show = ok(org_cli(d, &["nodes", "show", "1"]));
    assert!(show.contains("AMT credential not stored"), "{show}");
    let out = org_cli(d, &["nodes", "reboot", "1", "--amt", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no AMT credential"));
}
