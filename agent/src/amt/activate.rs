//! The `use` policy on the node: CCM activation of AMT over the MEI, with
//! no LMS (me-runtime.md §5.1, §5.2, §5.4).
//!
//! 1. read AMTHI (versions, state, mode, LAN) and, on ME 16.1+, the
//!    operational state; evaluate the preconditions;
//! 2. already provisioned: the org's password authenticates as `admin` →
//!    left alone; otherwise "foreign" → reported, untouched, unless the
//!    policy asks to unprovision it (CCM only);
//! 3. half-provisioned → StopConfiguration; soft-disabled → enable;
//! 4. password: the org's (sealed to this TPM) or a fresh one from the
//!    TPM's RNG, sealed to the org for the report;
//! 5. LSA from AMTHI → APF over LME → WS-MAN as the LSA: DigestRealm,
//!    `IPS_HostBasedSetupService.Setup(MD5-A1)`; CommitChanges on AMT 19+;
//! 6. verify control mode 1 and provisioning state 2 over AMTHI;
//! 7. as `admin`: wired interface (DHCP or static) and the redirection
//!    features the policy asks for.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use fortros_amt::client::{Connector, WsmanClient};
use fortros_amt::wsman::{self, class, Ipv4Config};
use fortros_amt::{digest, password};
use fortros_wire::report::{AmtCheck, AmtFacts};
use fortros_wire::Bytes;
use zeroize::Zeroizing;

use super::apf::{Session, Stats};
use super::host;
use super::preconditions::{self, Facts, Verdict};
use crate::hw::mei::amthi::{self, ControlMode, ProvisioningState};
use crate::hw::mei::device::{MeiClient, MeiError, AMTHI_UUID};

/// AMT's plain-HTTP WS-MAN port.
pub const WSMAN_PORT: u16 = 16992;
/// The admin account CCM activation creates.
pub const ADMIN_USER: &str = "admin";

/// What the node needs from its TPM.
pub trait NodeSecrets {
    /// Recovers a secret the org sealed to this TPM (MakeCredential).
    fn unseal(&mut self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, String>;
    /// Fills `buf` from the TPM's RNG.
    fn random(&mut self, buf: &mut [u8]) -> Result<(), String>;
}

/// What the policy asks for, as the agent acts on it.
pub struct Plan {
    /// Sealed org password (empty: the node generates one).
    pub sealed_password: Vec<u8>,
    pub network: Ipv4Config,
    pub enable_kvm: bool,
    pub enable_sol: bool,
    /// Unprovision an AMT provisioned by someone else (CCM only).
    pub unprovision_foreign: bool,
}

/// Where and how to talk to the ME.
pub struct Target {
    pub dev_node: PathBuf,
    pub timeout: Duration,
    /// Facts from the probe (HFSTS, ME version, FWCAPS).
    pub facts: Facts,
    /// The org's X25519 key for sealing a generated password.
    pub org_seal_key: Option<[u8; 32]>,
    /// Context the sealed password is bound to (the AK name).
    pub seal_context: Vec<u8>,
}

/// The outcome for the report.
pub struct Outcome {
    pub facts: AmtFacts,
    /// `Ok(summary)` done; `Err((refused?, reason))`.
    pub result: Result<String, (bool, String)>,
}

fn refuse(mut facts: AmtFacts, why: String) -> Outcome {
    facts.result = "refused".into();
    Outcome {
        facts,
        result: Err((true, why)),
    }
}

fn fail(mut facts: AmtFacts, why: String) -> Outcome {
    facts.result = "failed".into();
    Outcome {
        facts,
        result: Err((false, why)),
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fixable => "fixable",
        Verdict::Fail => "fail",
        Verdict::Unknown => "unknown",
        Verdict::Note => "note",
    }
}

fn mac_bytes(mac: &str) -> Option<Bytes> {
    let v: Result<Vec<u8>, _> = mac.split(':').map(|p| u8::from_str_radix(p, 16)).collect();
    v.ok().filter(|v| v.len() == 6).map(Bytes)
}

/// Reads AMTHI state into `facts` and `out`.
fn read_amthi(t: &Target, f: &mut Facts, out: &mut AmtFacts) -> Result<(), MeiError> {
    let mut c = MeiClient::connect(&t.dev_node, AMTHI_UUID)?;
    let info = amthi::query_all(&mut c, t.timeout);
    f.amthi = Some(
        info.code_versions
            .as_ref()
            .map(|_| ())
            .map_err(|e| e.clone()),
    );
    if let Ok(cv) = &info.code_versions {
        f.amt_version = cv.amt_version.clone();
        f.sku = cv.sku;
        out.amt_version = cv.amt_version.clone();
        out.sku = cv.sku;
    }
    f.provisioning = info.provisioning_state.as_ref().ok().copied();
    f.control = info.control_mode.as_ref().ok().copied();
    out.provisioning_state = f.provisioning.map(prov_number);
    out.control_mode = f.control.map(mode_number);
    f.lan = Some(
        info.lan_wired
            .as_ref()
            .map(|l| (l.mac.clone(), l.link_up))
            .map_err(|e| e.clone()),
    );
    if let Ok(l) = &info.lan_wired {
        out.wired_mac = mac_bytes(&l.mac);
        out.link_up = Some(l.link_up);
    }
    Ok(())
}

fn prov_number(p: ProvisioningState) -> u32 {
    match p {
        ProvisioningState::Pre => 0,
        ProvisioningState::InProvisioning => 1,
        ProvisioningState::Post => 2,
        ProvisioningState::Unknown(n) => n,
    }
}

fn mode_number(m: ControlMode) -> u32 {
    match m {
        ControlMode::None => 0,
        ControlMode::ClientControl => 1,
        ControlMode::AdminControl => 2,
        ControlMode::Unknown(n) => n,
    }
}

fn amt_major(v: Option<&str>) -> Option<u32> {
    v?.split('.').next()?.trim().parse().ok()
}

/// Runs the `use` policy. Never panics; every failure is a reason.
pub fn provision(t: &Target, plan: &Plan, secrets: &mut dyn NodeSecrets) -> Outcome {
    let mut out = AmtFacts::default();
    let mut f = t.facts.clone();

    if let Err(e) = read_amthi(t, &mut f, &mut out) {
        f.amthi = Some(Err(e.to_string()));
    }
    if preconditions::has_operational_state(f.me_version) {
        match MeiClient::connect(&t.dev_node, host::WD_UUID)
            .map_err(|e| e.to_string())
            .and_then(|mut c| {
                host::is_change_to_amt_enabled(&mut c, t.timeout).map_err(|e| e.to_string())
            }) {
            Ok(flags) => f.operational_flags = Some(flags),
            Err(e) => out
                .steps
                .push(format!("operational state not readable: {e}")),
        }
    }
    let checks = preconditions::evaluate(&f);
    out.preconditions = checks
        .iter()
        .map(|c| AmtCheck {
            name: c.name.into(),
            verdict: verdict_word(c.verdict).into(),
            detail: c.detail.clone(),
        })
        .collect();
    for c in &checks {
        log::info!("AMT precondition {}: {:?}: {}", c.name, c.verdict, c.detail);
    }
    if let Some(block) = preconditions::blocking(&checks) {
        return refuse(
            out,
            format!("precondition {} not met: {}", block.name, block.detail),
        );
    }
    if f.amthi.as_ref().map(|r| r.is_err()).unwrap_or(true) {
        return refuse(out, "AMTHI did not answer: AMT is not usable".into());
    }

    // The org's password, when the policy carries one.
    let org_password = if plan.sealed_password.is_empty() {
        None
    } else {
        match secrets.unseal(&plan.sealed_password) {
            Ok(p) => match String::from_utf8(p.to_vec()) {
                Ok(s) => Some(Zeroizing::new(s)),
                Err(_) => return fail(out, "org password is not UTF-8".into()),
            },
            Err(e) => {
                return fail(
                    out,
                    format!("org password does not unseal in this TPM: {e}"),
                )
            }
        }
    };

    // Already provisioned: whose is it?
    if f.provisioning == Some(ProvisioningState::Post) {
        return already_provisioned(t, plan, &f, org_password, out);
    }
    if f.provisioning == Some(ProvisioningState::InProvisioning) {
        let r = MeiClient::connect(&t.dev_node, AMTHI_UUID)
            .map_err(|e| e.to_string())
            .and_then(|mut c| {
                host::stop_configuration(&mut c, t.timeout).map_err(|e| e.to_string())
            });
        match r {
            Ok(()) => out
                .steps
                .push("StopConfiguration: half-finished activation undone".into()),
            Err(e) => return fail(out, format!("StopConfiguration: {e}")),
        }
    }
    if let Some(flags) = f.operational_flags {
        if flags & preconditions::OP_NEW_INTERFACE != 0
            && flags & preconditions::OP_AMT_ENABLED == 0
        {
            let r = MeiClient::connect(&t.dev_node, host::WD_UUID)
                .map_err(|e| e.to_string())
                .and_then(|mut c| {
                    host::set_amt_operational_state(&mut c, true, t.timeout)
                        .map_err(|e| e.to_string())
                });
            match r {
                Ok(()) => out
                    .steps
                    .push("SetAmtOperationalState(1): AMT enabled".into()),
                Err(e) => return fail(out, format!("enabling AMT: {e}")),
            }
        }
    }

    // The password to set.
    let (password, source) = match org_password {
        Some(p) => (p, "org-policy"),
        None => match password::generate(|b| secrets.random(b)) {
            Ok(p) => (p, "node-generated"),
            Err(e) => return fail(out, format!("generating the AMT password: {e}")),
        },
    };
    if let Err(e) = password::check(&password) {
        return refuse(out, format!("{source} password: {e}"));
    }
    out.password_source = Some(source.into());
    if source == "node-generated" {
        let Some(key) = t.org_seal_key else {
            return refuse(
                out,
                "no org AMT key in the agent config ([org] amt_key): a generated password \
                 could not reach the org"
                    .into(),
            );
        };
        match fortros_amt::seal::seal(&key, password.as_bytes(), &t.seal_context) {
            Ok(s) => out.sealed_password = Some(Bytes(s)),
            Err(e) => return fail(out, format!("sealing the password to the org: {e}")),
        }
    }

    let amt_major = amt_major(f.amt_version.as_deref());
    match activate(t, &password, amt_major, &mut out) {
        Ok(()) => {}
        Err(e) => {
            // Setup may have gone through before the link dropped: AMTHI
            // has the last word.
            let _ = read_amthi(t, &mut f, &mut out);
            if f.control != Some(ControlMode::ClientControl) {
                out.sealed_password = None;
                return fail(out, e);
            }
            out.steps
                .push(format!("activation reply lost ({e}) but AMTHI says CCM"));
        }
    }

    // Verify through the host interface, not WS-MAN.
    let _ = read_amthi(t, &mut f, &mut out);
    if f.control != Some(ControlMode::ClientControl)
        || f.provisioning != Some(ProvisioningState::Post)
    {
        out.sealed_password = None;
        return fail(
            out,
            format!(
                "after Setup AMTHI shows {:?} / {:?}, not CCM / post-provisioning",
                f.control, f.provisioning
            ),
        );
    }
    out.steps
        .push("verified over AMTHI: control mode 1 (CCM), provisioning state 2".into());

    configure(t, plan, &password, &mut out);
    out.result = "provisioned".into();
    let summary = format!(
        "AMT {} activated in CCM",
        f.amt_version.as_deref().unwrap_or("?")
    );
    Outcome {
        facts: out,
        result: Ok(summary),
    }
}

/// Post-provisioning found: ours if the org password authenticates.
fn already_provisioned(
    t: &Target,
    plan: &Plan,
    f: &Facts,
    org_password: Option<Zeroizing<String>>,
    mut out: AmtFacts,
) -> Outcome {
    if let Some(pw) = &org_password {
        out.password_source = Some("org-policy".into());
        match Lme::open(t).and_then(|lme| {
            let mut w = WsmanClient::new(lme, ADMIN_USER, pw);
            w.call(|id| wsman::get(class::AMT_GENERAL_SETTINGS, &[], id))
                .map_err(|e| (e.is_unauthorized(), e.to_string()))
                .map_err(|(unauth, e)| {
                    if unauth {
                        "unauthorized".to_string()
                    } else {
                        e
                    }
                })
        }) {
            Ok(_) => {
                out.result = "already-ours".into();
                out.steps
                    .push("AMT already provisioned; the org's password authenticates as admin: left alone".into());
                return Outcome {
                    facts: out,
                    result: Ok("AMT already provisioned by this org: left alone".into()),
                };
            }
            Err(e) if e == "unauthorized" => {}
            Err(e) => return fail(out, format!("checking AMT ownership over WS-MAN: {e}")),
        }
    }
    // Someone else's (or the org holds no password for it).
    if plan.unprovision_foreign {
        if f.control == Some(ControlMode::AdminControl) {
            return refuse_foreign(
                out,
                "provisioned by someone else in ACM: unprovisioning needs its admin password",
            );
        }
        let r = MeiClient::connect(&t.dev_node, AMTHI_UUID)
            .map_err(|e| e.to_string())
            .and_then(|mut c| host::unprovision(&mut c, t.timeout).map_err(|e| e.to_string()));
        return match r {
            Ok(()) => {
                out.result = "unprovisioned".into();
                out.provisioning_state = Some(0);
                out.control_mode = Some(0);
                out.steps
                    .push("AMT provisioned by someone else: unprovisioned (AMTHI Unprovision), as the policy asks; activation on the next boot".into());
                Outcome {
                    facts: out,
                    result: Ok("foreign AMT provisioning removed".into()),
                }
            }
            Err(e) => fail(out, format!("Unprovision: {e}")),
        };
    }
    refuse_foreign(
        out,
        "AMT is provisioned by someone else (the org's password does not authenticate): not touched",
    )
}

fn refuse_foreign(mut out: AmtFacts, why: &str) -> Outcome {
    out.result = "foreign".into();
    out.steps.push(why.into());
    Outcome {
        facts: out,
        result: Err((true, why.into())),
    }
}

/// LSA → APF → DigestRealm → Setup → (CommitChanges).
fn activate(
    t: &Target,
    password: &str,
    amt_major: Option<u32>,
    out: &mut AmtFacts,
) -> Result<(), String> {
    let lsa = MeiClient::connect(&t.dev_node, AMTHI_UUID)
        .map_err(|e| e.to_string())
        .and_then(|mut c| {
            host::get_local_system_account(&mut c, t.timeout).map_err(|e| e.to_string())
        })
        .map_err(|e| format!("local system account: {e}"))?;
    out.steps
        .push(format!("local system account {} read from AMTHI", lsa.user));
    let lme = Lme::open(t).map_err(|e| format!("LME: {e}"))?;
    let stats = lme.stats.clone();
    let mut w = WsmanClient::new(lme, &lsa.user, &lsa.password);
    let realm = w
        .call(|id| wsman::get(class::AMT_GENERAL_SETTINGS, &[], id))
        .map_err(|e| format!("AMT_GeneralSettings: {e}"))
        .and_then(|r| wsman::digest_realm(&r).map_err(|e| e.to_string()))?;
    out.steps.push(format!("digest realm {realm}"));
    let ha1 = Zeroizing::new(digest::ha1(ADMIN_USER, &realm, password));
    let reply = w
        .call(|id| wsman::host_based_setup(&ha1, id))
        .map_err(|e| format!("IPS_HostBasedSetupService.Setup: {e}"))?;
    reply
        .expect_success("Setup")
        .map_err(|e| format!("IPS_HostBasedSetupService.Setup: {e}"))?;
    out.steps
        .push("IPS_HostBasedSetupService.Setup: ReturnValue 0".into());
    if amt_major.is_some_and(|m| m >= 19) {
        let mut w = w.with_credentials(ADMIN_USER, password);
        let r = w
            .call(wsman::commit_changes)
            .map_err(|e| format!("CommitChanges: {e}"))?;
        r.expect_success("CommitChanges")
            .map_err(|e| format!("CommitChanges: {e}"))?;
        out.steps.push("CommitChanges: ReturnValue 0".into());
    }
    let s = *stats.borrow();
    out.steps.push(format!(
        "LME: {} APF handshakes, {} channels, {} keepalives",
        s.handshakes, s.channels, s.keepalives
    ));
    Ok(())
}

/// Wired interface and redirection, as admin. Failures here are reported
/// as steps: AMT is provisioned either way.
fn configure(t: &Target, plan: &Plan, password: &str, out: &mut AmtFacts) {
    let lme = match Lme::open(t) {
        Ok(l) => l,
        Err(e) => {
            out.steps.push(format!("configuration skipped: LME: {e}"));
            return;
        }
    };
    let mut w = WsmanClient::new(lme, ADMIN_USER, password);
    let sel = [("InstanceID", wsman::WIRED_PORT_INSTANCE)];
    let net = w
        .call(|id| wsman::get(class::AMT_ETHERNET_PORT_SETTINGS, &sel, id))
        .map_err(|e| e.to_string())
        .and_then(|r| {
            let read = r
                .instance(class::AMT_ETHERNET_PORT_SETTINGS)
                .map_err(|e| e.to_string())?
                .leaf_fields();
            let fields = wsman::ethernet_settings_for(&read, &plan.network);
            w.call(|id| wsman::put(class::AMT_ETHERNET_PORT_SETTINGS, &sel, &fields, id))
                .map_err(|e| e.to_string())
        });
    out.steps.push(match net {
        Ok(_) => format!("wired interface: {}", describe_network(&plan.network)),
        Err(e) => format!("wired interface not configured: {e}"),
    });
    if plan.enable_sol || plan.enable_kvm {
        // 32768 + 2 (SOL); IDE-R stays off.
        let state = 32768 + if plan.enable_sol { 2 } else { 0 };
        let r = w
            .call(|id| wsman::request_state_change(class::AMT_REDIRECTION_SERVICE, state, id))
            .map_err(|e| e.to_string())
            .and_then(|r| {
                r.expect_success("RequestStateChange")
                    .map_err(|e| e.to_string())
            });
        out.steps.push(match r {
            Ok(()) => format!("redirection service enabled (state {state})"),
            Err(e) => format!("redirection service not enabled: {e}"),
        });
    }
    if plan.enable_kvm {
        let r = w
            .call(|id| wsman::request_state_change(class::CIM_KVM_REDIRECTION_SAP, 2, id))
            .map_err(|e| e.to_string())
            .and_then(|r| {
                r.expect_success("RequestStateChange")
                    .map_err(|e| e.to_string())
            });
        out.steps.push(match r {
            Ok(()) => {
                "KVM redirection enabled (CCM: each session needs the user-consent code)".into()
            }
            Err(e) => format!("KVM redirection not enabled: {e}"),
        });
    }
}

fn describe_network(n: &Ipv4Config) -> String {
    match n {
        Ipv4Config::Dhcp => "DHCP".into(),
        Ipv4Config::Static {
            address,
            netmask,
            gateway,
            ..
        } => {
            format!("static {address}/{netmask} via {gateway}")
        }
    }
}

/// WS-MAN connections over the LME client: each HTTP exchange opens the
/// client, runs the APF handshake, uses one channel and closes the client.
/// Real AMT drops the LME session when a channel closes (and may disconnect
/// the MEI client itself), so starting afresh each time is what works.
pub struct Lme {
    dev_node: PathBuf,
    timeout: Duration,
    stats: Rc<RefCell<Stats>>,
}

impl Lme {
    pub fn open(t: &Target) -> Result<Self, String> {
        Ok(Lme {
            dev_node: t.dev_node.clone(),
            timeout: t.timeout,
            stats: Rc::new(RefCell::new(Stats::default())),
        })
    }
}

/// EBUSY right after another client closed is common: retry a little.
fn connect_with_retry(
    dev: &Path,
    uuid: crate::hw::mei::device::ClientUuid,
) -> Result<MeiClient, MeiError> {
    let mut last = None;
    for i in 0..6 {
        match MeiClient::connect(dev, uuid) {
            Ok(c) => return Ok(c),
            Err(e @ (MeiError::Busy { .. } | MeiError::DeviceGone { .. })) => {
                last = Some(e);
                std::thread::sleep(Duration::from_millis(100 << i));
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(MeiError::Busy {
        path: dev.to_path_buf(),
        uuid: uuid.to_string(),
    }))
}

/// One HTTP exchange: writes are buffered, the flush runs the exchange on
/// a fresh LME connection, reads return the response.
pub struct LmeConn {
    dev_node: PathBuf,
    timeout: Duration,
    stats: Rc<RefCell<Stats>>,
    request: Vec<u8>,
    response: io::Cursor<Vec<u8>>,
}

impl Connector for Lme {
    type Conn = LmeConn;
    fn connect(&mut self) -> io::Result<LmeConn> {
        Ok(LmeConn {
            dev_node: self.dev_node.clone(),
            timeout: self.timeout,
            stats: self.stats.clone(),
            request: Vec::new(),
            response: io::Cursor::new(Vec::new()),
        })
    }
    fn host(&self) -> String {
        format!("[::1]:{WSMAN_PORT}")
    }
}

impl Write for LmeConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.request.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        let client = connect_with_retry(&self.dev_node, host::LME_UUID)
            .map_err(|e| io::Error::other(format!("LME connect: {e}")))?;
        let mut s = Session::new(client);
        s.timeout = self.timeout;
        let got = s.exchange(WSMAN_PORT, &self.request, response_complete);
        {
            let mut total = self.stats.borrow_mut();
            total.handshakes += s.stats.handshakes;
            total.channels += s.stats.channels;
            total.keepalives += s.stats.keepalives;
        }
        let got = got.map_err(|e| io::Error::other(e.to_string()))?;
        self.response = io::Cursor::new(got);
        Ok(())
    }
}

impl Read for LmeConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.response.read(buf)
    }
}

/// Whether `bytes` hold a whole HTTP response with explicit framing
/// (AMT may keep the channel open after answering).
pub fn response_complete(bytes: &[u8]) -> bool {
    match fortros_amt::http::parse_response(bytes) {
        Ok(r) => {
            r.header("Content-Length").is_some()
                || r.header("Transfer-Encoding")
                    .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_framing_decides_completion() {
        assert!(response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        ));
        assert!(!response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok"
        ));
        assert!(!response_complete(b"HTTP/1.1 200 OK\r\n\r\nok"));
        assert!(response_complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        ));
    }

    #[test]
    fn helpers() {
        assert_eq!(amt_major(Some("19.0.5")), Some(19));
        assert_eq!(amt_major(Some("x")), None);
        assert_eq!(
            mac_bytes("00:1b:21:aa:bb:cc").unwrap().as_slice(),
            &[0, 0x1b, 0x21, 0xaa, 0xbb, 0xcc]
        );
        assert!(mac_bytes("00:1b").is_none());
    }
}
