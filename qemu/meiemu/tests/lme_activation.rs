//! CCM activation through the emulator's in-process MEI link, as an agent
//! does it without LMS: AMTHI local system account, LME/APF handshake,
//! WS-MAN over APF channels with HTTP Digest, Setup with the MD5-A1 hash,
//! then admin calls; state persists in the state file across a restart.

mod common;

use common::*;
use fortros_meiemu::amt::apf::{self, encode};
use fortros_meiemu::amt::state::StateFile;
use fortros_meiemu::amt::{lock, AmtEvent, AmtModel};
use fortros_meiemu::clients::amthi;
use fortros_meiemu::hostsim::HostSim;
use fortros_meiemu::{Event, MeDevice, Scenario};
use std::sync::{Arc, Mutex};

fn device(scenario: &str, state: Option<&std::path::Path>) -> HostSim {
    let s = Scenario::load(&scenario_path(scenario))
        .and_then(Scenario::resolve)
        .unwrap();
    let model = AmtModel::new(&s, state.map(StateFile::new)).unwrap();
    HostSim::with_device(MeDevice::with_amt(s, Arc::new(Mutex::new(model))))
}

fn amthi_call(h: &mut HostSim, host: u8, command: u32, body: &[u8]) -> Vec<u8> {
    let got = exchange(h, AMTHI, host, Some(&amthi::request(command, body)));
    assert_eq!(got.msgs.len(), 1);
    let r = got.msgs[0].clone();
    assert_eq!(&r[12..16], &[0, 0, 0, 0], "AMTHI status of {command:#x}");
    r
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn cstr(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap()).into_owned()
}

/// One WS-MAN call on a fresh channel of a fresh LME connection (the
/// default scenario drops the MEI connection after each CHANNEL_CLOSE, so
/// the host reconnects and replays the handshake every time).
fn call(h: &mut HostSim, host: &mut u8, body: &str, auth: Option<&str>, chunked: bool) -> Response {
    *host += 1;
    connect(h, LME, *host);
    let (web, _) = handshake(h, *host);
    assert_eq!(web, 16992);
    let (r, dropped) = http_over_channel(h, *host, web, &post(body, auth, chunked), 1500);
    assert!(
        dropped,
        "the ME drops the LME connection after CHANNEL_CLOSE"
    );
    r
}

#[test]
fn ccm_activation_over_lme_and_state_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("meiemu-lme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("amt-state.json");
    let _ = std::fs::remove_file(&state);
    let mut h = device("amt-unprovisioned", Some(&state));

    // AMTHI: unprovisioned, and the local system account
    connect(&mut h, AMTHI, 1);
    let r = amthi_call(&mut h, 1, amthi::GET_PROVISIONING_STATE, &[]);
    assert_eq!(u32_at(&r, 16), 0);
    let r = amthi_call(&mut h, 1, amthi::GET_LOCAL_SYSTEM_ACCOUNT, &[0; 40]);
    let (lsa_user, lsa_pw) = (cstr(&r[16..49]), cstr(&r[49..82]));
    assert_eq!(lsa_user, "$$OsAdmin");
    assert!(lsa_pw.len() >= 16);

    let mut host = 10u8;
    let get_general = wsman(GET, &format!("{AMT}AMT_GeneralSettings"), &[], "");
    // no credentials: 401 with a Digest challenge
    let r = call(&mut h, &mut host, &get_general, None, true);
    assert_eq!(r.status, 401);
    let challenge = r.header("WWW-Authenticate").unwrap().to_string();
    assert!(challenge.contains("qop=\"auth\""), "{challenge}");
    assert_eq!(param(&challenge, "stale").as_deref(), Some("false"));
    let mut lsa = DigestClient::from_challenge(&lsa_user, &lsa_pw, &challenge);

    // as the LSA: the realm, chunked request (rpc-go style), chunked answer
    let auth = lsa.authorization("POST", "/wsman");
    let r = call(&mut h, &mut host, &get_general, Some(&auth), true);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    let realm = xml_value(&r.body, "DigestRealm").unwrap();
    assert_eq!(realm, "Digest:6F3C2E1D0A9B8C7D6E5F4A3B2C1D0E9F");
    assert_eq!(
        xml_value(&r.body, "HostName").as_deref(),
        Some("fortros-node")
    );

    // a replayed nonce count is stale: 401 stale="true"
    let mut replay = DigestClient::from_challenge(&lsa_user, &lsa_pw, &challenge);
    let auth = replay.authorization("POST", "/wsman");
    let r = call(&mut h, &mut host, &get_general, Some(&auth), false);
    assert_eq!(r.status, 401);
    assert_eq!(
        param(r.header("WWW-Authenticate").unwrap(), "stale").as_deref(),
        Some("true")
    );

    // the LSA may not touch the network settings
    let auth = lsa.authorization("POST", "/wsman");
    let eth = wsman(
        GET,
        &format!("{AMT}AMT_EthernetPortSettings"),
        &[("InstanceID", "Intel(r) AMT Ethernet Port Settings 0")],
        "",
    );
    let r = call(&mut h, &mut host, &eth, Some(&auth), false);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("AccessDenied"), "{}", r.body);

    // Setup with a wrong encryption type: ReturnValue 3, still unprovisioned
    let password = "Fortr0s-Test-Pw!";
    let a1 = md5_hex(&format!("admin:{realm}:{password}"));
    let setup = |kind: &str| {
        wsman(
            &format!("{IPS}IPS_HostBasedSetupService/Setup"),
            &format!("{IPS}IPS_HostBasedSetupService"),
            &[],
            &format!(
                "<h:Setup_INPUT xmlns:h=\"{IPS}IPS_HostBasedSetupService\">\
                 <h:NetAdminPassEncryptionType>{kind}</h:NetAdminPassEncryptionType>\
                 <h:NetworkAdminPassword>{a1}</h:NetworkAdminPassword></h:Setup_INPUT>"
            ),
        )
    };
    let auth = lsa.authorization("POST", "/wsman");
    let r = call(&mut h, &mut host, &setup("1"), Some(&auth), true);
    assert_eq!(xml_value(&r.body, "ReturnValue").as_deref(), Some("3"));
    // the real Setup
    let auth = lsa.authorization("POST", "/wsman");
    let r = call(&mut h, &mut host, &setup("2"), Some(&auth), true);
    assert_eq!(r.status, 200);
    assert_eq!(xml_value(&r.body, "ReturnValue").as_deref(), Some("0"));
    // AMTHI now says CCM, post-provisioning (AMT 16: no commit needed)
    let r = amthi_call(&mut h, 1, amthi::GET_PROVISIONING_STATE, &[]);
    assert_eq!(u32_at(&r, 16), 2);
    let r = amthi_call(&mut h, 1, amthi::GET_CONTROL_MODE, &[]);
    assert_eq!(u32_at(&r, 16), 1);
    // a second Setup is refused: invalid state
    let auth = lsa.authorization("POST", "/wsman");
    let r = call(&mut h, &mut host, &setup("2"), Some(&auth), true);
    assert_eq!(xml_value(&r.body, "ReturnValue").as_deref(), Some("2"));

    // admin with a wrong password: 401; with the right one: Ethernet Get/Put
    let mut wrong = DigestClient::from_challenge("admin", "not-it", &challenge);
    wrong.nonce = lsa.nonce.clone();
    wrong.nc = lsa.nc + 100;
    let auth = wrong.authorization("POST", "/wsman");
    let r = call(&mut h, &mut host, &eth, Some(&auth), false);
    assert_eq!(r.status, 401);
    let mut admin =
        DigestClient::from_challenge("admin", password, r.header("WWW-Authenticate").unwrap());
    let auth = admin.authorization("POST", "/wsman");
    let r = call(&mut h, &mut host, &eth, Some(&auth), false);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        xml_value(&r.body, "MACAddress").as_deref(),
        Some("00-1b-21-4a-5b-6c")
    );
    assert_eq!(xml_value(&r.body, "DHCPEnabled").as_deref(), Some("true"));
    let put = wsman(
        PUT,
        &format!("{AMT}AMT_EthernetPortSettings"),
        &[("InstanceID", "Intel(r) AMT Ethernet Port Settings 0")],
        &format!(
            "<h:AMT_EthernetPortSettings xmlns:h=\"{AMT}AMT_EthernetPortSettings\">\
             <h:DHCPEnabled>false</h:DHCPEnabled><h:IpSyncEnabled>false</h:IpSyncEnabled>\
             <h:SharedStaticIp>false</h:SharedStaticIp><h:IPAddress>10.0.2.77</h:IPAddress>\
             <h:SubnetMask>255.255.255.0</h:SubnetMask><h:DefaultGateway>10.0.2.2</h:DefaultGateway>\
             <h:PrimaryDNS>10.0.2.3</h:PrimaryDNS></h:AMT_EthernetPortSettings>"
        ),
    );
    let auth = admin.authorization("POST", "/wsman");
    let r = call(&mut h, &mut host, &put, Some(&auth), true);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        xml_value(&r.body, "IPAddress").as_deref(),
        Some("10.0.2.77")
    );
    // AMTHI's LAN settings follow
    let r = amthi_call(
        &mut h,
        1,
        amthi::GET_LAN_INTERFACE_SETTINGS,
        &0u32.to_le_bytes(),
    );
    assert_eq!(u32_at(&r, 20), 0x0A00_024D);
    assert_eq!(u32_at(&r, 24), 0, "DHCP off");
    // redirection and KVM
    for (res, method, state) in [
        ("AMT_RedirectionService", "RequestStateChange", "32771"),
        ("CIM_KVMRedirectionSAP", "RequestStateChange", "2"),
    ] {
        let ns = if res.starts_with("AMT") { AMT } else { CIM };
        let body = wsman(
            &format!("{ns}{res}/{method}"),
            &format!("{ns}{res}"),
            &[],
            &format!("<h:{method}_INPUT xmlns:h=\"{ns}{res}\"><h:RequestedState>{state}</h:RequestedState></h:{method}_INPUT>"),
        );
        let auth = admin.authorization("POST", "/wsman");
        let r = call(&mut h, &mut host, &body, Some(&auth), true);
        assert_eq!(
            xml_value(&r.body, "ReturnValue").as_deref(),
            Some("0"),
            "{res}"
        );
    }
    {
        let m = lock(h.dev.amt());
        assert!(m.events.contains(&AmtEvent::Provisioned {
            control_mode: 1,
            state: 2
        }));
        assert_eq!(m.state.redirection_state, 32771);
        assert!(m.state.kvm_enabled);
    }

    // the state file holds it all; a new emulator on it starts provisioned
    let text = std::fs::read_to_string(&state).unwrap();
    assert!(text.contains(&a1), "{text}");
    assert!(
        !text.contains(password),
        "the password itself is never stored"
    );
    let mut h2 = device("amt-unprovisioned", Some(&state));
    connect(&mut h2, AMTHI, 1);
    let r = amthi_call(&mut h2, 1, amthi::GET_PROVISIONING_STATE, &[]);
    assert_eq!(u32_at(&r, 16), 2);
    let r = amthi_call(&mut h2, 1, amthi::GET_CONTROL_MODE, &[]);
    assert_eq!(u32_at(&r, 16), 1);
    // a new boot, a new LSA password
    let r = amthi_call(&mut h2, 1, amthi::GET_LOCAL_SYSTEM_ACCOUNT, &[0; 40]);
    assert_ne!(cstr(&r[49..82]), lsa_pw);
    assert_eq!(lock(h2.dev.amt()).state.ethernet.ip_address, "10.0.2.77");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keep_policy_serves_several_channels_on_one_session() {
    let s = Scenario::from_toml("[amt]\nlme_on_channel_close = \"keep\"")
        .and_then(Scenario::resolve)
        .unwrap();
    let mut h = HostSim::with_device(MeDevice::new(s));
    connect(&mut h, LME, 3);
    handshake(&mut h, 3);
    let body = wsman(GET, &format!("{AMT}AMT_GeneralSettings"), &[], "");
    for _ in 0..3 {
        let (r, dropped) = http_over_channel(&mut h, 3, 16992, &post(&body, None, false), 4096);
        assert_eq!(r.status, 401);
        assert!(!dropped);
    }
}

fn handshaken(toml: &str) -> HostSim {
    let s = Scenario::from_toml(toml)
        .and_then(Scenario::resolve)
        .unwrap();
    let mut h = HostSim::with_device(MeDevice::new(s));
    connect(&mut h, LME, 3);
    handshake(&mut h, 3);
    h
}

fn lme_notes(h: &HostSim) -> Vec<String> {
    h.dev
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::Lme(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn malformed_and_out_of_place_frames_end_the_session() {
    // data on a channel that was never opened
    let mut h = handshaken("");
    let got = exchange(&mut h, LME, 3, Some(&encode::channel_data(42, b"x")));
    assert_eq!(
        got.msgs,
        vec![encode::disconnect(apf::REASON_PROTOCOL_ERROR)]
    );
    assert!(got.me_disconnected);
    assert!(lme_notes(&h)
        .iter()
        .any(|n| n.contains("unknown channel 42")));

    // a truncated CHANNEL_OPEN names the field and offset
    let mut h = handshaken("");
    let mut open = encode::channel_open("forwarded-tcpip", 1, 100, 16992, 1);
    open.truncate(30);
    let got = exchange(&mut h, LME, 3, Some(&open));
    assert_eq!(
        got.msgs,
        vec![encode::disconnect(apf::REASON_PROTOCOL_ERROR)]
    );
    assert!(
        lme_notes(&h)
            .iter()
            .any(|n| n.contains("CHANNEL_OPEN") && n.contains("offset")),
        "{:?}",
        lme_notes(&h)
    );

    // more data than the window the ME granted
    let mut h = handshaken("[amt]\nlme_window = 64");
    let got = exchange(
        &mut h,
        LME,
        3,
        Some(&encode::channel_open("forwarded-tcpip", 1, 4096, 16992, 1)),
    );
    let theirs = be32(&got.msgs[0], 5);
    assert_eq!(be32(&got.msgs[0], 9), 64);
    let got = exchange(
        &mut h,
        LME,
        3,
        Some(&encode::channel_data(theirs, &[b'P'; 65])),
    );
    assert_eq!(
        got.msgs,
        vec![encode::disconnect(apf::REASON_PROTOCOL_ERROR)]
    );
    assert!(lme_notes(&h)
        .iter()
        .any(|n| n.contains("exceeds the window")));

    // a channel before the handshake
    let s = Scenario::default().resolve().unwrap();
    let mut h = HostSim::with_device(MeDevice::new(s));
    connect(&mut h, LME, 3);
    let got = exchange(
        &mut h,
        LME,
        3,
        Some(&encode::channel_open("forwarded-tcpip", 1, 4096, 16992, 1)),
    );
    assert_eq!(
        got.msgs,
        vec![encode::disconnect(apf::REASON_PROTOCOL_ERROR)]
    );

    // other ports and channel types are refused without ending the session
    let mut h = handshaken("");
    let got = exchange(
        &mut h,
        LME,
        3,
        Some(&encode::channel_open("forwarded-tcpip", 1, 4096, 16994, 1)),
    );
    assert_eq!(
        got.msgs,
        vec![encode::channel_open_failure(1, apf::OPEN_CONNECT_FAILED)]
    );
    let got = exchange(
        &mut h,
        LME,
        3,
        Some(&encode::channel_open("session", 2, 4096, 16992, 1)),
    );
    assert_eq!(
        got.msgs,
        vec![encode::channel_open_failure(
            2,
            apf::OPEN_UNKNOWN_CHANNEL_TYPE
        )]
    );
    // at most 8 channels
    for i in 0..8 {
        let got = exchange(
            &mut h,
            LME,
            3,
            Some(&encode::channel_open(
                "forwarded-tcpip",
                10 + i,
                4096,
                16992,
                1,
            )),
        );
        assert_eq!(got.msgs[0][0], apf::CHANNEL_OPEN_CONFIRMATION);
    }
    let got = exchange(
        &mut h,
        LME,
        3,
        Some(&encode::channel_open("forwarded-tcpip", 99, 4096, 16992, 1)),
    );
    assert_eq!(
        got.msgs,
        vec![encode::channel_open_failure(
            99,
            apf::OPEN_RESOURCE_SHORTAGE
        )]
    );
}

#[test]
fn amt19_tls_forwards_tls_ports_and_refuses_the_web_channel() {
    let mut h = device("amt19-tls", None);
    connect(&mut h, LME, 3);
    let (web, redir) = handshake(&mut h, 3);
    assert_eq!((web, redir), (16993, 664));
    let got = exchange(
        &mut h,
        LME,
        3,
        Some(&encode::channel_open("forwarded-tcpip", 5, 4096, 16993, 1)),
    );
    assert_eq!(
        got.msgs,
        vec![encode::channel_open_failure(5, apf::OPEN_CONNECT_FAILED)]
    );
    assert!(lme_notes(&h)
        .iter()
        .any(|n| n.contains("TLS over APF is not emulated")));
    // the state-independence client says so too (bit 6), with AMT enabled
    let got = exchange(&mut h, 11, 4, None);
    assert!(got.msgs.is_empty());
    connect(&mut h, 11, 4);
    let got = exchange(&mut h, 11, 4, Some(&[0x05, 0x02, 0x51, 0x10]));
    assert_eq!(got.msgs, vec![vec![0x80 | 0x40 | 0x02 | 0x01]]);
}

#[test]
fn consumer_sku_has_no_amt_clients() {
    let mut h = device("amt-consumer-sku", None);
    for me in [9u8, 10, 11] {
        h.write(0, 0, &[0x06, me, 1, 0], true);
        let r = h.read_all();
        assert_eq!(r[0].2, vec![0x86, me, 1, 1], "client {me}: not found");
    }
}

#[test]
fn amt19_needs_commit_changes() {
    // AMT 19 without TLS enforcement (not a real part: it isolates the
    // CommitChanges rule, which the TLS scenario cannot reach over APF)
    let s = Scenario::from_toml(
        "[firmware]\ncode = \"19.0.0.1854\"\n[amt]\ncode_versions = [[\"AMT\", \"19.0.0\"]]",
    )
    .and_then(Scenario::resolve)
    .unwrap();
    let mut h = HostSim::with_device(MeDevice::new(s));
    connect(&mut h, AMTHI, 1);
    let r = amthi_call(&mut h, 1, amthi::GET_LOCAL_SYSTEM_ACCOUNT, &[0; 40]);
    let (user, pw) = (cstr(&r[16..49]), cstr(&r[49..82]));
    let mut host = 10;
    let general = wsman(GET, &format!("{AMT}AMT_GeneralSettings"), &[], "");
    let r = call(&mut h, &mut host, &general, None, false);
    let mut lsa = DigestClient::from_challenge(&user, &pw, r.header("WWW-Authenticate").unwrap());
    let realm = lsa.realm.clone();
    let a1 = md5_hex(&format!("admin:{realm}:P@ss-w0rd-19"));
    let setup = wsman(
        &format!("{IPS}IPS_HostBasedSetupService/Setup"),
        &format!("{IPS}IPS_HostBasedSetupService"),
        &[],
        &format!("<h:Setup_INPUT xmlns:h=\"{IPS}IPS_HostBasedSetupService\"><h:NetAdminPassEncryptionType>2</h:NetAdminPassEncryptionType><h:NetworkAdminPassword>{a1}</h:NetworkAdminPassword></h:Setup_INPUT>"),
    );
    let auth = lsa.authorization("POST", "/wsman");
    let r = call(&mut h, &mut host, &setup, Some(&auth), false);
    assert_eq!(xml_value(&r.body, "ReturnValue").as_deref(), Some("0"));
    let r = amthi_call(&mut h, 1, amthi::GET_PROVISIONING_STATE, &[]);
    assert_eq!(u32_at(&r, 16), 1, "in provisioning until CommitChanges");
    let commit = wsman(
        &format!("{AMT}AMT_SetupAndConfigurationService/CommitChanges"),
        &format!("{AMT}AMT_SetupAndConfigurationService"),
        &[],
        &format!("<h:CommitChanges_INPUT xmlns:h=\"{AMT}AMT_SetupAndConfigurationService\"></h:CommitChanges_INPUT>"),
    );
    // the LSA may not commit
    let auth = lsa.authorization("POST", "/wsman");
    let r = call(&mut h, &mut host, &commit, Some(&auth), false);
    assert!(r.body.contains("AccessDenied"));
    let mut admin = DigestClient::from_challenge(
        "admin",
        "P@ss-w0rd-19",
        &format!("realm=\"{realm}\", nonce=\"{}\"", lsa.nonce),
    );
    admin.nc = lsa.nc;
    let auth = admin.authorization("POST", "/wsman");
    let r = call(&mut h, &mut host, &commit, Some(&auth), false);
    assert_eq!(
        xml_value(&r.body, "ReturnValue").as_deref(),
        Some("0"),
        "{}",
        r.body
    );
    let r = amthi_call(&mut h, 1, amthi::GET_PROVISIONING_STATE, &[]);
    assert_eq!(u32_at(&r, 16), 2);
}
