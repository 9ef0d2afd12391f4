//! Enrollment over TLS on a QEMU node (TCG): a real `fortros-org serve`
//! speaking https with the self-signed certificate of `init
//! --tls-self-signed 10.0.2.2` (the host's loopback as a user-network guest
//! reaches it), the agent as PID 1 pinning that certificate, swtpm quoting
//! the report, the emulated ME, and a kexec handoff.
//!
//! 1. pinned by `org_cert_sha256` (the fingerprint `init` prints): the node
//!    enrolls, the org verifies and records the report, the node hands off;
//! 2. pinned to another certificate's fingerprint (a wrong org, or a MITM
//!    presenting its own certificate): the agent refuses the handshake and
//!    says so on the console with both fingerprints, sends nothing, and
//!    follows the default failure policy (continue to the OS); the org
//!    still has exactly the node of boot 1 and no new report;
//! 3. pinned by `org_ca` (the org's certificate as a PEM file in the
//!    initramfs), with the guest's clock set to 2001: the pinned
//!    certificate is accepted whatever the node's clock says, and the node
//!    re-enrolls under the same identity.
//!
//! And with an enrollment CA in `org_ca` (the org serving a certificate the
//! CA issued for 10.0.2.2): the node enrolls, because the certificate
//! chains to the CA and names the host of the org URL; with the node's
//! clock before the certificate's notBefore it is refused, with the
//! node's clock in the message.
//!
//! The certificate's name (subject alternative name) matters only on that
//! CA path: a pinned self-signed certificate made for 127.0.0.1 is
//! accepted at 10.0.2.2, a CA-issued one for 127.0.0.1 is refused there.

use fortros_e2e::org::{console_json, TestOrg};
use fortros_e2e::{build_initramfs, fresh_dir, kexec_target, node_available, root, NODE_MODULES};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the guest calls the host's loopback (QEMU user networking): the
/// name in the org URL, and the one the certificate is made for.
const HOST_FROM_GUEST: &str = "10.0.2.2";

/// The handoff marker the kexec target's init prints.
const MARKER: &str = "NODE-RESULT kexec.target booted ";

/// agent.toml for an org at `url` with `pins` (lines of `[org]`).
fn agent_toml(url: &str, public_key: &str, pins: &str) -> String {
    format!(
        r#"
[org]
url = "{url}"
public_key = "{public_key}"
{pins}

[flash]
device = "mtd"

[network]
interface = "eth0"

[handoff]
method = "kexec"
kernel = "/boot/vmlinuz"
initrd = "/boot/initrd.img"
cmdline = "console=ttyS0 panic=-1 quiet loglevel=4 no_timer_check fortros.handoff=tls-test"

{NODE_MODULES}

[[modules]]
name = "mei_me"
"#
    )
}

/// One node: its folder, flash image, TPM state (kept across boots) and the
/// OS it hands off to.
struct Node {
    d: PathBuf,
    spi: PathBuf,
    tpm: PathBuf,
    vmlinuz: PathBuf,
    target: PathBuf,
}

impl Node {
    fn new(d: &Path) -> Node {
        let (vmlinuz, target) = kexec_target(d);
        let spi = d.join("spi.bin");
        std::fs::write(&spi, fortros_testkit::synth::sample_full_image()).unwrap();
        Node {
            d: d.to_path_buf(),
            spi,
            tpm: d.join("tpm"),
            vmlinuz,
            target,
        }
    }

    /// Builds an initramfs with this agent.toml (and `files`: (source,
    /// path in the initramfs)), boots it (with the guest clock at `rtc`
    /// when given, and `append` on the kernel command line), returns the
    /// console.
    fn boot(
        &self,
        name: &str,
        cfg: &str,
        files: &[(&Path, &str)],
        rtc: Option<&str>,
        append: &str,
    ) -> String {
        let cfg_path = self.d.join(format!("{name}.agent.toml"));
        std::fs::write(&cfg_path, cfg).unwrap();
        let initrd = self.d.join(format!("{name}.cpio.gz"));
        let mut args: Vec<String> = vec!["--agent-init".into()];
        let mut add = |src: &Path, dest: &str| {
            args.push("--file".into());
            args.push(src.to_str().expect("a UTF-8 path").into());
            args.push(dest.into());
        };
        add(&cfg_path, "/etc/fortros/agent.toml");
        add(&self.vmlinuz, "/boot/vmlinuz");
        add(&self.target, "/boot/initrd.img");
        for (src, dest) in files {
            add(src, dest);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        build_initramfs(&initrd, &args);

        let out = self.d.join(name);
        let mut cmd = Command::new(root().join("scripts/run-node"));
        if let Some(base) = rtc {
            cmd.args(["--rtc", base]);
        }
        let st = cmd
            .arg("--initrd")
            .arg(&initrd)
            .arg("--out")
            .arg(&out)
            .arg("--timeout")
            .arg("400")
            .arg("--spi")
            .arg(&self.spi)
            .arg("--tpm")
            .arg(&self.tpm)
            .arg("--net")
            .arg("--mei-scenario")
            .arg(root().join("qemu/scenarios/csme11-stock.toml"))
            .arg("--append")
            .arg(format!("no_timer_check FORTROS_MTD_ALLOW_RAM=1 {append}"))
            .status()
            .expect("run scripts/run-node");
        let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
        assert!(st.success(), "QEMU failed; console:\n{console}");
        console
    }
}

/// The handoff marker's line (the OS started), or a panic with the console.
fn handed_off(console: &str) -> String {
    console
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(MARKER))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no handoff marker; console:\n{console}"))
}

/// The node ids the org lists.
fn node_ids(org: &TestOrg) -> Vec<u64> {
    org.json(&["nodes", "list", "--json"])
        .as_array()
        .expect("nodes list is a list")
        .iter()
        .filter_map(|n| n["id"].as_u64())
        .collect()
}

/// What the org's server logged (stdout and stderr).
fn org_log(org: &TestOrg) -> String {
    ["org.log", "org.err"]
        .iter()
        .map(|f| std::fs::read_to_string(org.dir.join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The org's log line about a failed TLS handshake, or a panic.
fn handshake_refusal(org: &TestOrg) -> String {
    let log = org_log(org);
    log.lines()
        .find(|l| l.contains("TLS handshake with") && l.contains("received fatal alert"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no failed handshake in the org's log:\n{log}"))
}

/// How many reports the org holds for `id`.
fn reports_of(org: &TestOrg, id: u64) -> usize {
    org.json(&["nodes", "show", &id.to_string(), "--json"])["history"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0)
}

/// The successful enrollment of a boot: policy received, report taken
/// (the org's report id), ignore applied, no failure, OS started.
fn assert_enrolled(console: &str) -> u64 {
    let line = console_json(console, "FORTROS-REPORT");
    assert!(
        line["enrollment"]
            .as_str()
            .unwrap_or("")
            .starts_with("policy "),
        "enrollment: {line}"
    );
    assert!(line["report_id"].as_u64().is_some(), "{line}");
    let actions = line["report"]["actions"].to_string();
    assert!(
        actions.contains("ignore") && actions.contains("Done"),
        "{actions}"
    );
    assert!(!console.contains("FAILED:"), "console:\n{console}");
    handed_off(console);
    line["node_id"]
        .as_u64()
        .expect("node id in the report line")
}

#[test]
fn node_enrolls_over_tls_and_refuses_an_org_it_has_not_pinned() {
    if !node_available("node_enrolls_over_tls_and_refuses_an_org_it_has_not_pinned") {
        return;
    }
    let d = fresh_dir("e2e-tls", "pinned");
    let org = TestOrg::start_tls(&d.join("org"), HOST_FROM_GUEST);
    let fingerprint = org.tls_fingerprint.clone().expect("a TLS org");
    // What init printed is the certificate the server loaded and announces.
    let cert_pem = org.dir.join("tls-cert.pem");
    let loaded = fortros_org::tls::load(&cert_pem, &org.dir.join("tls-key.pem"))
        .expect("the org's certificate and key");
    assert_eq!(loaded.fingerprint, fingerprint);
    let url = org.guest_url();
    assert!(url.starts_with("https://10.0.2.2:"), "{url}");
    let key = org.public_key();
    let node = Node::new(&d);
    let img = std::fs::read(&node.spi).unwrap();

    // 1. Pinned by the fingerprint init printed.
    let pin = format!("org_cert_sha256 = \"{fingerprint}\"");
    let console = node.boot("boot1", &agent_toml(&url, &key, &pin), &[], None, "");
    let node_id = assert_enrolled(&console);
    assert_eq!(node_ids(&org), vec![node_id]);
    let served = std::fs::read_to_string(org.dir.join("org.err")).unwrap_or_default();
    assert!(
        served.contains(&format!("TLS certificate SHA-256 {fingerprint}")),
        "serve's log: {served}"
    );
    let reports = reports_of(&org, node_id);
    assert!(reports >= 1, "the org holds the node's report");
    let row = &org.json(&["nodes", "list", "--json"])[0];
    assert_eq!(row["me_live"], "normal", "{row}");
    assert_eq!(row["me_image_version"], "11.8.82.3838", "{row}");

    // 2. Pinned to another org's certificate: the real org's is refused.
    let other = fortros_org::tls::self_signed(HOST_FROM_GUEST).expect("another certificate");
    let pin = format!("org_cert_sha256 = \"{}\"", other.fingerprint);
    let console = node.boot("boot2", &agent_toml(&url, &key, &pin), &[], None, "");
    let refusal = format!(
        "FAILED: enrollment: enroll: org {url}/v1/nonce: TLS certificate refused: \
         org certificate SHA-256 {fingerprint} is not the pinned org_cert_sha256 {}",
        other.fingerprint
    );
    assert!(
        console.contains(&refusal),
        "{refusal:?}; console:\n{console}"
    );
    let line = console_json(&console, "FORTROS-REPORT");
    let enrollment = line["enrollment"].as_str().unwrap_or("");
    assert!(
        enrollment.starts_with("failed: enroll:") && enrollment.contains("TLS certificate refused"),
        "enrollment: {line}"
    );
    assert!(line["node_id"].is_null(), "{line}");
    // The default failure policy: say so, then boot the OS anyway.
    assert!(
        console.contains("CONTINUE: booting the OS despite 1 failure(s)"),
        "console:\n{console}"
    );
    assert!(!console.contains("STOP:"), "console:\n{console}");
    handed_off(&console);
    // Nothing reached the org: the same single node, no new report.
    assert_eq!(node_ids(&org), vec![node_id]);
    assert_eq!(reports_of(&org, node_id), reports);
    assert!(std::fs::read(&node.spi).unwrap() == img, "flash untouched");
    // The org's log says a client refused its certificate.
    let refused = handshake_refusal(&org);
    assert!(
        refused.contains("CertificateUnknown") && refused.contains("pins another"),
        "{refused}"
    );

    // 3. Pinned by org_ca (the org's own certificate, PEM), the node's clock
    // in 2001 (a dead CMOS battery): a pinned certificate's dates are not
    // checked, so the node enrolls; loglevel=7 lets the console show the
    // clock the kernel took from the RTC.
    let pin = "org_ca = \"/etc/fortros/org.pem\"";
    let console = node.boot(
        "boot3",
        &agent_toml(&url, &key, pin),
        &[(&cert_pem, "/etc/fortros/org.pem")],
        Some("2001-01-01"),
        "loglevel=7",
    );
    assert!(
        console.contains("setting system clock to 2001-01-01"),
        "the guest's clock is in 2001; console:\n{console}"
    );
    assert_eq!(assert_enrolled(&console), node_id, "the same node");
    assert_eq!(node_ids(&org), vec![node_id]);
    assert!(reports_of(&org, node_id) > reports, "a new report");
}

/// A CA and a server certificate it issued for `host`, valid from
/// 2020-01-01: (CA PEM, server certificate PEM, server key PEM).
fn enrollment_ca_and_server_cert(host: &str) -> (String, String, String) {
    use rcgen::{
        date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "FortrOS test enrollment CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::new(vec![host.to_string()]).expect("server params");
    server
        .distinguished_name
        .push(DnType::CommonName, "FortrOS test org");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.not_before = date_time_ymd(2020, 1, 1);
    server.not_after = date_time_ymd(2100, 1, 1);
    let server = server
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    (ca.pem(), server.pem(), key.serialize_pem())
}

#[test]
fn node_pinned_to_an_enrollment_ca_checks_the_certificate_dates_by_its_clock() {
    if !node_available("node_pinned_to_an_enrollment_ca_checks_the_certificate_dates_by_its_clock")
    {
        return;
    }
    let d = fresh_dir("e2e-tls", "ca");
    let (ca_pem, server_pem, server_key) = enrollment_ca_and_server_cert(HOST_FROM_GUEST);
    let org = TestOrg::start_tls_files(&d.join("org"), &server_pem, &server_key);
    let url = org.guest_url();
    assert!(url.starts_with("https://10.0.2.2:"), "{url}");
    let ca_path = d.join("enroll-ca.pem");
    std::fs::write(&ca_path, &ca_pem).unwrap();
    let cfg = agent_toml(
        &url,
        &org.public_key(),
        "org_ca = \"/etc/fortros/enroll-ca.pem\"",
    );
    let files: &[(&Path, &str)] = &[(&ca_path, "/etc/fortros/enroll-ca.pem")];
    let node = Node::new(&d);

    // The node's clock is the host's: the certificate chains to the CA,
    // names 10.0.2.2 and is valid now.
    let console = node.boot("boot1", &cfg, files, None, "");
    let node_id = assert_enrolled(&console);
    assert_eq!(node_ids(&org), vec![node_id]);
    let reports = reports_of(&org, node_id);

    // The node's clock in 2001, before the certificate's notBefore (2020):
    // refused, and the message says what the node's clock said.
    let console = node.boot("boot2", &cfg, files, Some("2001-01-01"), "");
    let failed = console
        .lines()
        .find(|l| l.contains("FAILED: enrollment:"))
        .unwrap_or_else(|| panic!("no enrollment failure; console:\n{console}"));
    let served = org.tls_fingerprint.as_deref().expect("a TLS org");
    for want in [
        "TLS certificate refused",
        served,
        "/etc/fortros/enroll-ca.pem",
        "not valid yet",
        "2001-01-01",
    ] {
        assert!(failed.contains(want), "{want:?} in {failed}");
    }
    assert!(
        console.contains("CONTINUE: booting the OS despite 1 failure(s)"),
        "console:\n{console}"
    );
    handed_off(&console);
    assert_eq!(node_ids(&org), vec![node_id]);
    assert_eq!(reports_of(&org, node_id), reports, "no new report");
    let refused = handshake_refusal(&org);
    assert!(
        refused.contains("CertificateExpired") && refused.contains("clock"),
        "{refused}"
    );
}

#[test]
fn the_certificate_name_matters_only_through_a_ca() {
    if !node_available("the_certificate_name_matters_only_through_a_ca") {
        return;
    }
    let d = fresh_dir("e2e-tls", "names");
    let node = Node::new(&d);

    // Self-signed for the host's own loopback address, not the one the
    // guest connects to: the pin names the certificate, so it is accepted.
    let pinned = TestOrg::start_tls(&d.join("org-pinned"), "127.0.0.1");
    let pin = format!(
        "org_cert_sha256 = \"{}\"",
        pinned.tls_fingerprint.as_deref().expect("a TLS org")
    );
    let cfg = agent_toml(&pinned.guest_url(), &pinned.public_key(), &pin);
    let console = node.boot("pinned", &cfg, &[], None, "");
    let node_id = assert_enrolled(&console);
    assert_eq!(node_ids(&pinned), vec![node_id]);
    drop(pinned);

    // Issued by the enrollment CA for 127.0.0.1: through the CA the name
    // must be the URL's host, 10.0.2.2, so the node refuses it.
    let (ca_pem, server_pem, server_key) = enrollment_ca_and_server_cert("127.0.0.1");
    let org = TestOrg::start_tls_files(&d.join("org-ca"), &server_pem, &server_key);
    let ca_path = d.join("enroll-ca.pem");
    std::fs::write(&ca_path, &ca_pem).unwrap();
    let cfg = agent_toml(
        &org.guest_url(),
        &org.public_key(),
        "org_ca = \"/etc/fortros/enroll-ca.pem\"",
    );
    let console = node.boot(
        "ca",
        &cfg,
        &[(&ca_path, "/etc/fortros/enroll-ca.pem")],
        None,
        "",
    );
    let failed = console
        .lines()
        .find(|l| l.contains("FAILED: enrollment:"))
        .unwrap_or_else(|| panic!("no enrollment failure; console:\n{console}"));
    for want in [
        "TLS certificate refused",
        org.tls_fingerprint.as_deref().expect("a TLS org"),
        "not valid for name \"10.0.2.2\"",
        "127.0.0.1",
    ] {
        assert!(failed.contains(want), "{want:?} in {failed}");
    }
    assert!(!failed.contains("clock"), "not a date refusal: {failed}");
    handed_off(&console);
    assert!(node_ids(&org).is_empty(), "nothing enrolled");
    let refused = handshake_refusal(&org);
    assert!(refused.contains("BadCertificate"), "{refused}");
}
