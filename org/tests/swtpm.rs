//! The exchange with a real TPM (swtpm, manufactured with an EK
//! certificate from a local CA) behind the agent's TPM client: the org
//! checks the EK certificate chain, the TPM answers MakeCredential with
//! ActivateCredential, re-enrollment is recognised, and TPM2_Clear (same
//! EK, new AK) is flagged.

mod common;

use common::settings;
use fortros_agent::enroll::{Attester, EnrollClient, Enrolled};
use fortros_agent::hw::tpm::client::Tpm;
use fortros_agent::hw::tpm::identity;
use fortros_agent::hw::tpm::SocketTransport;
use fortros_testkit::swtpm::{Swtpm, SwtpmOptions};
use fortros_wire::ekcert::TrustAnchors;
use fortros_wire::envelope::ReportEvidence;
use fortros_wire::exchange::CredentialChallenge;
use fortros_wire::testing::sample_report;
use fortros_wire::Report;

/// A node: the agent's TPM client on swtpm, its AK name read once.
struct Node {
    tpm: Tpm<SocketTransport>,
    ak_name: Vec<u8>,
}

impl Node {
    fn new(mut tpm: Tpm<SocketTransport>) -> Self {
        let ak = identity::load_ak(&mut tpm).unwrap();
        tpm.flush(ak.handle).unwrap();
        Node {
            ak_name: fortros_wire::tpm::name_sha256(&ak.public),
            tpm,
        }
    }
}

impl Attester for Node {
    fn ak_name(&self) -> Vec<u8> {
        self.ak_name.clone()
    }

    fn attest(&mut self, mut report: Report) -> Result<ReportEvidence, String> {
        identity::attest_report(&mut self.tpm, &mut report).map_err(|e| e.to_string())
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

#[test]
fn swtpm_node_enrolls_reenrolls_and_is_flagged_after_tpm_clear() {
    let Some(sw) = Swtpm::start_or_skip(
        "swtpm_node_enrolls",
        SwtpmOptions {
            ek_certificates: true,
        },
    ) else {
        return;
    };
    let pem = |p: std::path::PathBuf| TrustAnchors::parse_pem(&std::fs::read(p).unwrap()).unwrap();
    let mut s = settings(true);
    s.ek_anchors = Some(TrustAnchors {
        roots: pem(sw.ca_root_pem()),
        intermediates: pem(sw.ca_issuer_pem()),
    });
    let dir = tempfile::tempdir().unwrap();
    let keys = fortros_org::keys::OrgKeys::generate();
    let pubkey = keys.verifying();
    let (org, srv) = common::start_org(dir.path(), keys, s);
    let client = EnrollClient::new(&srv.url(), pubkey);
    let tpm = Tpm::new(SocketTransport::connect(sw.socket_path()).unwrap());
    let mut node = Node::new(tpm);

    let Enrolled::Policy { policy: p1, .. } = client
        .enroll(&mut node, sample_report(&[], &[]), None)
        .unwrap()
    else {
        panic!("not enrolled")
    };
    let nodes = org.registry.nodes().unwrap();
    assert_eq!(nodes.len(), 1);
    assert!(
        !nodes[0].ek_certificate.starts_with("unchecked"),
        "EK certificate not checked: {}",
        nodes[0].ek_certificate
    );

    let Enrolled::Policy { policy: p2, .. } = client
        .enroll(&mut node, sample_report(&[], &[]), Some(p1.serial))
        .unwrap()
    else {
        panic!("re-enrollment not answered")
    };
    assert_eq!(p2.serial, p1.serial + 1);
    assert_eq!(org.registry.nodes().unwrap().len(), 1);

    let mut tpm = node.tpm;
    tpm.clear().unwrap();
    let mut cleared = Node::new(tpm);
    match client
        .enroll(&mut cleared, sample_report(&[], &[]), None)
        .unwrap()
    {
        Enrolled::Pending { node_id, reason } => {
            assert_eq!(node_id, nodes[0].id);
            assert!(reason.contains("TPM cleared"), "{reason}");
        }
        Enrolled::Policy { .. } => panic!("policy to a cleared TPM"),
    }
    assert!(org.registry.node(nodes[0].id).unwrap().unwrap().tpm_cleared);
}
