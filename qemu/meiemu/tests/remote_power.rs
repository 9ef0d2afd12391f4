//! The remote port (the org's side of AMT) and the QMP power backend: it
//! refuses before provisioning, then answers WS-MAN as `admin` with Digest,
//! and RequestPowerStateChange reaches QEMU's QMP socket.

mod common;

use common::*;
use fortros_meiemu::amt::remote::{self, Qmp};
use fortros_meiemu::amt::{lock, AmtEvent, AmtModel, PowerAction};
use fortros_meiemu::Scenario;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::sync::mpsc;
use std::time::Duration;

/// A stand-in for QEMU's QMP socket that records the commands it gets.
fn fake_qmp(path: &std::path::Path) -> mpsc::Receiver<String> {
    let l = UnixListener::bind(path).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let mut w = s.try_clone().unwrap();
            w.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n")
                .unwrap();
            for line in BufReader::new(s).lines() {
                let Ok(line) = line else { break };
                tx.send(line).unwrap();
                w.write_all(b"{\"return\": {}}\r\n").unwrap();
            }
        }
    });
    rx
}

fn roundtrip(addr: &str, req: &[u8]) -> Option<Response> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(r) = parse_response(&buf) {
            return Some(r);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn remote_port_resets_the_node_through_qmp_once_provisioned() {
    let dir = std::env::temp_dir().join(format!("meiemu-remote-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let qmp_path = dir.join("qmp.sock");
    let _ = std::fs::remove_file(&qmp_path);
    let qmp_log = fake_qmp(&qmp_path);

    let s = Scenario::load(&scenario_path("amt-unprovisioned"))
        .and_then(Scenario::resolve)
        .unwrap();
    let amt = AmtModel::shared(&s);
    lock(&amt).set_power(Box::new(Qmp {
        path: qmp_path.clone(),
    }));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    remote::spawn(l, amt.clone());

    let power = |state: u32| {
        wsman(
            &format!("{CIM}CIM_PowerManagementService/RequestPowerStateChange"),
            &format!("{CIM}CIM_PowerManagementService"),
            &[],
            &format!(
                "<h:RequestPowerStateChange_INPUT xmlns:h=\"{CIM}CIM_PowerManagementService\">\
                 <h:PowerState>{state}</h:PowerState><h:ManagedElement><a:Address>x</a:Address>\
                 </h:ManagedElement></h:RequestPowerStateChange_INPUT>"
            ),
        )
    };
    // unprovisioned: the network side is off, the connection closes unanswered
    assert!(roundtrip(&addr, &post(&power(10), None, false)).is_none());

    // provisioned by someone (the state the agent's Setup leaves)
    let realm = lock(&amt).state.realm.clone();
    {
        let mut m = lock(&amt);
        m.state.provisioning_state = 2;
        m.state.control_mode = 1;
        m.state.admin_digest_a1 = Some(md5_hex(&format!("admin:{realm}:Org-Pw-123!")));
    }
    let r = roundtrip(&addr, &post(&power(10), None, false)).unwrap();
    assert_eq!(r.status, 401);
    let challenge = r.header("WWW-Authenticate").unwrap().to_string();
    // the local system account does not work from the network
    let lsa_pw = lock(&amt).lsa_password.clone();
    let mut lsa = DigestClient::from_challenge("$$OsAdmin", &lsa_pw, &challenge);
    let r = roundtrip(
        &addr,
        &post(
            &power(10),
            Some(&lsa.authorization("POST", "/wsman")),
            false,
        ),
    )
    .unwrap();
    assert_eq!(r.status, 401);
    let mut admin = DigestClient::from_challenge(
        "admin",
        "Org-Pw-123!",
        r.header("WWW-Authenticate").unwrap(),
    );
    // not a power state AMT supports
    let r = roundtrip(
        &addr,
        &post(
            &power(77),
            Some(&admin.authorization("POST", "/wsman")),
            true,
        ),
    )
    .unwrap();
    assert_eq!(xml_value(&r.body, "ReturnValue").as_deref(), Some("1"));
    assert!(
        !lock(&amt)
            .events
            .iter()
            .any(|e| matches!(e, AmtEvent::Power(_))),
        "no power action for a refused state"
    );
    // master bus reset
    let r = roundtrip(
        &addr,
        &post(
            &power(10),
            Some(&admin.authorization("POST", "/wsman")),
            true,
        ),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(xml_value(&r.body, "ReturnValue").as_deref(), Some("0"));
    let got: Vec<String> = (0..2)
        .map(|_| qmp_log.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert!(got[0].contains("qmp_capabilities"), "{got:?}");
    assert!(got[1].contains("system_reset"), "{got:?}");
    // off
    let r = roundtrip(
        &addr,
        &post(
            &power(8),
            Some(&admin.authorization("POST", "/wsman")),
            false,
        ),
    )
    .unwrap();
    assert_eq!(xml_value(&r.body, "ReturnValue").as_deref(), Some("0"));
    let got: Vec<String> = (0..2)
        .map(|_| qmp_log.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert!(got[1].contains("quit"), "{got:?}");
    assert_eq!(
        lock(&amt)
            .events
            .iter()
            .filter(|e| matches!(e, AmtEvent::Power(_)))
            .cloned()
            .collect::<Vec<_>>(),
        vec![
            AmtEvent::Power(PowerAction::Reset),
            AmtEvent::Power(PowerAction::Off)
        ]
    );
    // keep-alive: two requests on one connection
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let get = wsman(GET, &format!("{AMT}AMT_GeneralSettings"), &[], "");
    let mut two = post(&get, Some(&admin.authorization("POST", "/wsman")), false);
    two.extend(post(
        &get,
        Some(&admin.authorization("POST", "/wsman")),
        false,
    ));
    s.write_all(&two).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while String::from_utf8_lossy(&buf)
        .matches("HTTP/1.1 200")
        .count()
        < 2
    {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
