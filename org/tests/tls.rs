//! The enrollment exchange over TLS: a real org server on a loopback port
//! with a self-signed certificate, the agent's real client pinning it
//! (by SHA-256 or by PEM), and the `fortros-org` program's own TLS setup
//! (`init --tls-self-signed`, `serve` refusing a key that is not the
//! certificate's).

mod common;

use common::*;
use fortros_agent::enroll::{EnrollClient, EnrollError, Enrolled};
use fortros_agent::enroll_tls::{parse_fingerprint, OrgTrust};
use fortros_org::server::Running;
use fortros_org::tls::{self, SelfSigned};
use fortros_wire::testing::sample_report;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// An org serving TLS with a fresh self-signed certificate for 127.0.0.1.
fn tls_org(
    dir: &Path,
) -> (
    Arc<fortros_org::exchange::Org>,
    Running,
    SelfSigned,
    ed25519_dalek::VerifyingKey,
) {
    let cert = tls::self_signed("127.0.0.1").unwrap();
    let loaded = tls::load(
        &write(dir, "cert.pem", &cert.cert_pem),
        &write(dir, "key.pem", &cert.key_pem),
    )
    .unwrap();
    assert_eq!(loaded.fingerprint, cert.fingerprint);
    let keys = fortros_org::keys::OrgKeys::generate();
    let public = keys.verifying();
    let registry =
        Arc::new(fortros_org::store::SqliteRegistry::open(&dir.join("registry.sqlite")).unwrap());
    let org = Arc::new(fortros_org::exchange::Org {
        registry,
        keys,
        settings: settings(true),
    });
    let srv = Running::start_tls(org.clone(), "127.0.0.1:0", loaded.config).unwrap();
    assert!(srv.url().starts_with("https://127.0.0.1:"));
    (org, srv, cert, public)
}

fn pin(fingerprint: &str) -> OrgTrust {
    OrgTrust {
        cert_sha256: Some(parse_fingerprint(fingerprint).unwrap()),
        ..OrgTrust::default()
    }
}

#[test]
fn enrollment_over_tls_with_a_pinned_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (org, srv, cert, public) = tls_org(dir.path());

    // Pinned by fingerprint.
    let client = EnrollClient::with_trust(&srv.url(), public, &pin(&cert.fingerprint)).unwrap();
    let mut node = SoftNode::new(41);
    match client
        .enroll(&mut node, sample_report(&[], &[]), None)
        .unwrap()
    {
        Enrolled::Policy { policy, .. } => assert_eq!(policy.serial, 1),
        Enrolled::Pending { reason, .. } => panic!("pending: {reason}"),
    }
    let ack = client
        .post_outcome(&mut node, sample_report(&[], &[]))
        .unwrap();
    assert_eq!(org.registry.nodes().unwrap()[0].id, ack.node_id);

    // Pinned by the certificate's PEM (org_ca), a second node.
    let ca = write(dir.path(), "org.pem", &cert.cert_pem);
    let trust = OrgTrust::load(Some(ca.to_str().unwrap()), None).unwrap();
    let client = EnrollClient::with_trust(&srv.url(), public, &trust).unwrap();
    let mut second = SoftNode::new(42);
    assert!(matches!(
        client
            .enroll(&mut second, sample_report(&[], &[]), None)
            .unwrap(),
        Enrolled::Policy { .. }
    ));
    assert_eq!(org.registry.nodes().unwrap().len(), 2);
}

#[test]
fn a_wrong_pin_is_refused_naming_both_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let (org, srv, cert, public) = tls_org(dir.path());
    let other = tls::self_signed("127.0.0.1").unwrap();

    let client = EnrollClient::with_trust(&srv.url(), public, &pin(&other.fingerprint)).unwrap();
    let mut node = SoftNode::new(43);
    match client.enroll(&mut node, sample_report(&[], &[]), None) {
        Err(e @ EnrollError::Certificate { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains(&cert.fingerprint) && m.contains(&other.fingerprint),
                "{m}"
            );
        }
        other => panic!("expected a certificate refusal, got {other:?}"),
    }

    // Another certificate as org_ca: neither the same nor its issuer.
    let ca = write(dir.path(), "other.pem", &other.cert_pem);
    let trust = OrgTrust::load(Some(ca.to_str().unwrap()), None).unwrap();
    let client = EnrollClient::with_trust(&srv.url(), public, &trust).unwrap();
    match client.enroll(&mut node, sample_report(&[], &[]), None) {
        Err(e @ EnrollError::Certificate { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains(&cert.fingerprint) && m.contains(&other.fingerprint),
                "{m}"
            );
        }
        other => panic!("expected a certificate refusal, got {other:?}"),
    }

    // No pin at all: https is refused, never trusted by default.
    let client = EnrollClient::new(&srv.url(), public);
    assert!(matches!(
        client.enroll(&mut node, sample_report(&[], &[]), None),
        Err(EnrollError::Certificate { .. })
    ));
    let client = EnrollClient::with_trust(&srv.url(), public, &OrgTrust::default()).unwrap();
    match client.enroll(&mut node, sample_report(&[], &[]), None) {
        Err(EnrollError::Certificate { reason, .. }) => {
            assert!(reason.contains("no org_ca or org_cert_sha256"), "{reason}")
        }
        other => panic!("expected a certificate refusal, got {other:?}"),
    }
    // Plain http to the TLS port gets no answer it could take for the org's.
    let http = srv.url().replace("https://", "http://");
    assert!(EnrollClient::new(&http, public)
        .enroll(&mut node, sample_report(&[], &[]), None)
        .is_err());
    assert!(org.registry.nodes().unwrap().is_empty(), "nothing enrolled");
}

fn org_cli(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fortros-org"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// Kills the server child when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn org_init_makes_a_certificate_that_serve_uses_and_nodes_pin() {
    let dir = tempfile::tempdir().unwrap();
    let out = org_cli(dir.path(), &["init", "--tls-self-signed", "127.0.0.1"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fingerprint = text
        .lines()
        .find_map(|l| l.strip_prefix("TLS certificate SHA-256: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no fingerprint in {text}"))
        .to_string();
    let config = std::fs::read_to_string(dir.path().join("org.toml")).unwrap();
    assert!(config.contains("tls_cert = \"tls-cert.pem\""), "{config}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_fortros-org"))
        .arg("--dir")
        .arg(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let (mut url, mut logged) = (None, None);
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("fortros-org: serving on ") {
            url = Some(u.to_string());
        }
        if let Some(f) = line.strip_prefix("fortros-org: TLS certificate SHA-256 ") {
            logged = f.split_whitespace().next().map(str::to_string);
            break;
        }
    }
    assert_eq!(logged.as_deref(), Some(fingerprint.as_str()));
    let url = url.expect("serving line");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let public = fortros_org::keys::OrgKeys::load(dir.path())
        .unwrap()
        .verifying();
    let client = EnrollClient::with_trust(&url, public, &pin(&fingerprint)).unwrap();
    let mut node = SoftNode::new(44);
    // The org.toml default waits for an operator: pending is the answer.
    match client
        .enroll(&mut node, sample_report(&[], &[]), None)
        .unwrap()
    {
        Enrolled::Pending { .. } => {}
        Enrolled::Policy { .. } => panic!("auto-approved by default"),
    }
    drop(server);
}

#[test]
fn serve_refuses_a_key_that_is_not_the_certificates() {
    let dir = tempfile::tempdir().unwrap();
    assert!(org_cli(dir.path(), &["init"]).status.success());
    let a = tls::self_signed("127.0.0.1").unwrap();
    let b = tls::self_signed("127.0.0.1").unwrap();
    write(dir.path(), "a.pem", &a.cert_pem);
    write(dir.path(), "b.key", &b.key_pem);
    let toml = dir.path().join("org.toml");
    let mut config = std::fs::read_to_string(&toml).unwrap();
    config.push_str("tls_cert = \"a.pem\"\ntls_key = \"b.key\"\n");
    std::fs::write(&toml, config).unwrap();

    let out = org_cli(dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("b.key") && err.contains("does not belong") && err.contains(&a.fingerprint),
        "{err}"
    );

    // A missing key file is named too.
    std::fs::remove_file(dir.path().join("b.key")).unwrap();
    let out = org_cli(dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("tls_key") && err.contains("b.key"), "{err}");
}
