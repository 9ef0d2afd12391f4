//! The org's power control through the emulated AMT: the node boots, the
//! test (standing in for `fortros-org nodes reboot`) calls
//! CIM_PowerManagementService.RequestPowerStateChange(10) on the emulator's
//! remote port with Digest auth as admin, the emulator sends QEMU
//! `system_reset` over QMP, and the node boots a second time.

use fortros_e2e::{boot, fresh_dir, node_available, root, Boot};
use fortros_meiemu::amt::state::{AmtState, StateFile};
use fortros_meiemu::amt::{md5_hex, AmtEvent, PowerAction};
use fortros_meiemu::Scenario;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const PASSWORD: &str = "Org-Admin-Pw-1!";

fn http(addr: &str, auth: Option<&str>, body: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the AMT remote port");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "POST /wsman HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn quoted(h: &str, key: &str) -> String {
    let i = h.find(&format!("{key}=\"")).expect(key) + key.len() + 2;
    h[i..i + h[i..].find('"').unwrap()].to_string()
}

/// RequestPowerStateChange(10) as admin; returns the final response.
fn power_cycle(addr: &str) -> String {
    let cim = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_PowerManagementService";
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\">\
         <s:Header><a:Action>{cim}/RequestPowerStateChange</a:Action><a:To>/wsman</a:To>\
         <w:ResourceURI>{cim}</w:ResourceURI><a:MessageID>uuid:power-1</a:MessageID></s:Header>\
         <s:Body><p:RequestPowerStateChange_INPUT xmlns:p=\"{cim}\"><p:PowerState>10</p:PowerState>\
         </p:RequestPowerStateChange_INPUT></s:Body></s:Envelope>"
    );
    let first = http(addr, None, &body);
    assert!(first.starts_with("HTTP/1.1 401"), "{first}");
    let realm = quoted(&first, "realm");
    let nonce = quoted(&first, "nonce");
    let ha1 = md5_hex(&format!("admin:{realm}:{PASSWORD}"));
    let ha2 = md5_hex("POST:/wsman");
    let resp = md5_hex(&format!("{ha1}:{nonce}:00000001:abc:auth:{ha2}"));
    let auth = format!(
        "Digest username=\"admin\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"/wsman\", \
         response=\"{resp}\", qop=auth, nc=00000001, cnonce=\"abc\""
    );
    http(addr, Some(&auth), &body)
}

fn wait_for_console(path: &Path, needle: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(170) {
        if std::fs::read_to_string(path).is_ok_and(|c| c.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn org_power_cycles_the_node_through_the_amt_remote_port() {
    if !node_available("org_power_cycles_the_node_through_the_amt_remote_port") {
        return;
    }
    let d = fresh_dir("e2e-amt", "power");
    let scratch = d.join("scratch.img");
    std::fs::write(&scratch, vec![0u8; 65536]).unwrap();
    // AMT already activated in CCM by the org (as the agent's Setup leaves it)
    let text =
        std::fs::read_to_string(root().join("qemu/scenarios/amt-unprovisioned.toml")).unwrap();
    let s = Scenario::from_toml(&text)
        .and_then(Scenario::resolve)
        .unwrap();
    let mut st = AmtState::seed(&s);
    st.provisioning_state = 2;
    st.control_mode = 1;
    st.admin_digest_a1 = Some(md5_hex(&format!("admin:{}:{PASSWORD}", st.realm)));
    let state = d.join("amt-state.json");
    StateFile::new(&state).save(&st).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // boot() starts from an empty folder; clear it now so the watcher below
    // cannot see a previous run's console
    let _ = std::fs::remove_dir_all(fortros_e2e::work().join("e2e/amt-power"));
    let console = fortros_e2e::work().join("e2e/amt-power/console.log");
    let org = std::thread::spawn(move || {
        if !wait_for_console(&console, "RESULT boot first") {
            return String::from("first boot never came up");
        }
        power_cycle(&addr)
    });
    let o = boot(&Boot {
        name: "amt-power",
        checks: "reset",
        scenario: Some(&text),
        spi: Some(&scratch),
        amt_state: Some(&state),
        amt_remote: Some(&listener),
        allow_reboot: true,
        ..Boot::default()
    });
    let answer = org.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("<g:ReturnValue>0</g:ReturnValue>"),
        "{answer}"
    );
    assert_eq!(
        o.results.get("boot").cloned().unwrap_or_default(),
        vec!["first".to_string(), "second".to_string()],
        "console:\n{}",
        o.console
    );
    assert_eq!(o.console.matches("RESULT boot ").count(), 2);
    assert!(o.amt_events.contains(&AmtEvent::Power(PowerAction::Reset)));
    // the ME (and its state) lived on through the reset: the driver bound twice
    let link_resets = o
        .events
        .iter()
        .filter(|e| matches!(e, fortros_meiemu::Event::LinkReset))
        .count();
    assert!(link_resets >= 2, "{:?}", o.events);
}

/// The LME under the guest's real mei_me driver: APF handshake, one HTTP
/// exchange (401 with the scenario's realm), and after CHANNEL_CLOSE the
/// ME's own disconnect reaches the client as ENODEV; a new connection
/// handshakes again.
#[test]
fn lme_session_through_the_real_driver() {
    if !node_available("lme_session_through_the_real_driver") {
        return;
    }
    let text =
        std::fs::read_to_string(root().join("qemu/scenarios/amt-unprovisioned.toml")).unwrap();
    let o = boot(&Boot {
        name: "amt-lme",
        image: fortros_e2e::Image::MeiClient,
        checks: "meiclient",
        append: "fortros.meiclient=lme",
        scenario: Some(&text),
        ..Boot::default()
    });
    assert_eq!(o.get("lme.ports"), "16992,623", "{}", o.console);
    assert_eq!(o.get("lme.http_status"), "401");
    assert_eq!(
        o.get("lme.realm"),
        "Digest:6F3C2E1D0A9B8C7D6E5F4A3B2C1D0E9F"
    );
    assert_eq!(o.get("lme.close"), "ok");
    assert_eq!(o.get("lme.after_close"), "read ENODEV");
    assert_eq!(o.get("lme.rehandshake"), "ok 2");
    assert!(o
        .events
        .iter()
        .any(|e| matches!(e, fortros_meiemu::Event::MeDisconnect { .. })));
    assert!(
        !o.events
            .iter()
            .any(|e| matches!(e, fortros_meiemu::Event::ProtocolError(_))),
        "{:?}",
        o.events
    );
}
