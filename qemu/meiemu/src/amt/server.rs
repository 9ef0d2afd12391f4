//! The AMT web server's request path: HTTP checks, Digest authentication,
//! who may call what in which provisioning state, and the WS-MAN handlers.
//! One function, [`serve`], turns one HTTP request into one HTTP response;
//! the LME channel and the remote port both call it.

use super::digest::{self, Verdict};
use super::http::{self, Request};
use super::state::REDIRECTION_DISABLED;
use super::wsman::{
    self, element, envelope, Envelope, ACTION_ENUMERATE, ACTION_GET, ACTION_PULL, ACTION_PUT,
};
use super::{AmtEvent, AmtModel, PowerAction, ADMIN_USER, LSA_USER};
use log::{info, warn};

pub const AMT_NS: &str = "http://intel.com/wbem/wscim/1/amt-schema/1/";
pub const IPS_NS: &str = "http://intel.com/wbem/wscim/1/ips-schema/1/";
pub const CIM_NS: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/";

pub const ETHERNET_0: &str = "Intel(r) AMT Ethernet Port Settings 0";

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An APF channel from the host OS (LME).
    Local,
    /// The network port (the org).
    Remote,
}

/// Who the request authenticated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Admin,
    Lsa,
}

/// One HTTP response, and whether the connection should close after it.
pub struct Reply {
    pub bytes: Vec<u8>,
    pub close: bool,
}

fn plain(m: &AmtModel, status: u16, close: bool) -> Reply {
    Reply {
        bytes: http::response(status, &m.config.version, &[], b"", false),
        close,
    }
}

fn soap(m: &AmtModel, status: u16, xml: String) -> Reply {
    Reply {
        bytes: http::response(
            status,
            &m.config.version,
            &[("Content-Type", "application/soap+xml; charset=UTF-8".into())],
            xml.as_bytes(),
            true,
        ),
        close: false,
    }
}

fn unauthorized(m: &mut AmtModel, stale: bool) -> Reply {
    let nonce = m.new_nonce();
    let realm = m.state.realm.clone();
    Reply {
        bytes: http::response(
            401,
            &m.config.version,
            &[
                ("WWW-Authenticate", digest::challenge(&realm, &nonce, stale)),
                ("Content-Type", "text/html".into()),
            ],
            b"",
            false,
        ),
        close: false,
    }
}

/// Answers one HTTP request.
pub fn serve(m: &mut AmtModel, req: &Request, via: Via) -> Reply {
    if req.target != "/wsman" {
        info!("AMT web: {} {}: not found", req.method, req.target);
        return plain(m, 404, false);
    }
    if req.method != "POST" {
        return plain(m, 405, false);
    }
    let role = match authenticate(m, req, via) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let env = match wsman::parse(&req.body) {
        Ok(e) => e,
        Err(e) => {
            warn!("AMT web: bad envelope: {e}");
            m.record(AmtEvent::Refused(format!("envelope: {e}")));
            return soap(
                m,
                400,
                wsman::fault("", "c:SchemaValidationError", &e.to_string()),
            );
        }
    };
    info!(
        "AMT web ({via:?}, {role:?}): {} {}",
        env.class(),
        env.action.rsplit('/').next().unwrap_or("")
    );
    match dispatch(m, &env, role) {
        Ok(xml) => soap(m, 200, xml),
        Err((subcode, reason)) => {
            m.record(AmtEvent::Refused(format!("{}: {reason}", env.class())));
            soap(m, 400, wsman::fault(&env.message_id, subcode, &reason))
        }
    }
}

fn authenticate(m: &mut AmtModel, req: &Request, via: Via) -> Result<Role, Reply> {
    let Some(header) = req.header("authorization") else {
        return Err(unauthorized(m, false));
    };
    let c = match digest::parse(header) {
        Ok(c) => c,
        Err(e) => {
            m.record(AmtEvent::Refused(format!("authorization: {e}")));
            return Err(unauthorized(m, false));
        }
    };
    let realm = m.state.realm.clone();
    let (role, ha1) = if c.username == ADMIN_USER {
        (Role::Admin, m.state.admin_digest_a1.clone())
    } else if c.username == LSA_USER && via == Via::Local {
        let pw = m.lsa_password.clone();
        (
            Role::Lsa,
            Some(super::md5_hex(&format!("{LSA_USER}:{realm}:{pw}"))),
        )
    } else {
        (Role::Lsa, None)
    };
    match digest::check(&c, ha1.as_deref(), &realm, &req.method, &req.target) {
        Verdict::Ok => {
            let nc =
                c.nc.as_deref()
                    .and_then(|n| u32::from_str_radix(n, 16).ok())
                    .unwrap_or(0);
            if m.use_nonce(&c.nonce, nc) {
                Ok(role)
            } else {
                info!("AMT web: stale nonce for {:?}", c.username);
                Err(unauthorized(m, true))
            }
        }
        Verdict::Stale => Err(unauthorized(m, true)),
        Verdict::Denied(why) => {
            warn!("AMT web: digest refused: {why}");
            m.record(AmtEvent::Refused(format!("digest: {why}")));
            Err(unauthorized(m, false))
        }
    }
}

type Handled = Result<String, (&'static str, String)>;

fn denied(what: &str) -> (&'static str, String) {
    (
        "c:AccessDenied",
        format!("{what}: not allowed for this account"),
    )
}

fn response_action(action: &str) -> String {
    format!("{action}Response")
}

/// Routes by class and action, after the role check.
fn dispatch(m: &mut AmtModel, e: &Envelope, role: Role) -> Handled {
    let class = e.class().to_string();
    let method = e
        .action
        .strip_prefix(&format!("{}/", e.resource_uri))
        .map(str::to_string);
    let is_get = e.action == ACTION_GET;
    // The local system account reads setup state and calls Setup; nothing else.
    if role == Role::Lsa {
        let ok = matches!(
            (class.as_str(), is_get, method.as_deref()),
            ("AMT_GeneralSettings", true, _)
                | ("IPS_HostBasedSetupService", true, _)
                | ("AMT_SetupAndConfigurationService", true, _)
                | ("IPS_HostBasedSetupService", false, Some("Setup"))
        );
        if !ok {
            return Err(denied(&format!("{class} {}", e.action)));
        }
    }
    let ns = if class.starts_with("AMT_") {
        AMT_NS
    } else if class.starts_with("IPS_") {
        IPS_NS
    } else {
        CIM_NS
    };
    if e.resource_uri != format!("{ns}{class}") {
        return Err((
            "b:DestinationUnreachable",
            format!("no resource {}", e.resource_uri),
        ));
    }
    let instance = |m: &AmtModel, e: &Envelope| -> Result<String, (&'static str, String)> {
        get_instance(m, &class, e)
    };
    let body = if is_get {
        instance(m, e)?
    } else if e.action == ACTION_ENUMERATE {
        instance(m, e)?; // the class must exist
        format!(
            "<h:EnumerateResponse><h:EnumerationContext>{}</h:EnumerationContext></h:EnumerateResponse>",
            wsman::esc(&class)
        )
    } else if e.action == ACTION_PULL {
        let item = instance(m, e)?;
        format!("<h:PullResponse><h:Items>{item}</h:Items><h:EndOfSequence></h:EndOfSequence></h:PullResponse>")
    } else if e.action == ACTION_PUT {
        put(m, &class, e)?
    } else if let Some(method) = method {
        invoke(m, &class, &method, e)?
    } else {
        return Err((
            "b:ActionNotSupported",
            format!("action {} on {class}", e.action),
        ));
    };
    Ok(envelope(
        &response_action(&e.action),
        &e.message_id,
        &e.resource_uri,
        &body,
    ))
}

fn b(v: bool) -> String {
    if v { "true" } else { "false" }.into()
}

fn get_instance(m: &AmtModel, class: &str, e: &Envelope) -> Handled {
    let s = &m.state;
    let x = match class {
        "AMT_GeneralSettings" => element(
            class,
            &[
                ("AMTNetworkEnabled", "1".into()),
                ("DDNSPeriodicUpdateInterval", "1440".into()),
                ("DDNSTTL", "900".into()),
                ("DDNSUpdateByDHCPServerEnabled", "true".into()),
                ("DDNSUpdateEnabled", "false".into()),
                ("DHCPv6ConfigurationTimeout", "0".into()),
                ("DigestRealm", s.realm.clone()),
                ("DomainName", String::new()),
                ("ElementName", "Intel(r) AMT: General Settings".into()),
                ("HostName", m.config.hostname.clone()),
                ("HostOSFQDN", String::new()),
                ("IdleWakeTimeout", "65535".into()),
                ("InstanceID", "Intel(r) AMT: General Settings".into()),
                ("NetworkInterfaceEnabled", b(s.provisioning_state == 2)),
                ("PingResponseEnabled", "true".into()),
                ("PowerSource", "0".into()),
                ("PreferredAddressFamily", "0".into()),
                ("PresenceNotificationInterval", "0".into()),
                ("PrivacyLevel", "0".into()),
                ("RmcpPingResponseEnabled", "true".into()),
                ("SharedFQDN", "true".into()),
                ("WsmanOnlyMode", "false".into()),
            ],
        ),
        "IPS_HostBasedSetupService" => element(
            class,
            &[
                ("AllowedControlModes", "2".into()),
                ("AllowedControlModes", "1".into()),
                ("CertChainStatus", "0".into()),
                ("CreationClassName", class.into()),
                ("CurrentControlMode", s.control_mode.to_string()),
                (
                    "ElementName",
                    "Intel(r) AMT Host Based Setup Service".into(),
                ),
                ("Name", "Intel(r) AMT Host Based Setup Service".into()),
                ("SystemCreationClassName", "CIM_ComputerSystem".into()),
                ("SystemName", "Intel(r) AMT".into()),
            ],
        ),
        "AMT_SetupAndConfigurationService" => element(
            class,
            &[
                ("CreationClassName", class.into()),
                (
                    "ElementName",
                    "Intel(r) AMT Setup and Configuration Service".into(),
                ),
                ("EnabledState", "5".into()),
                (
                    "Name",
                    "Intel(r) AMT Setup and Configuration Service".into(),
                ),
                ("PasswordModel", "1".into()),
                ("ProvisioningMode", "1".into()),
                ("ProvisioningServerOTP", String::new()),
                ("ProvisioningState", s.provisioning_state.to_string()),
                ("RequestedState", "12".into()),
                ("SystemCreationClassName", "CIM_ComputerSystem".into()),
                ("SystemName", "Intel(r) AMT".into()),
                ("ZeroTouchConfigurationEnabled", "false".into()),
            ],
        ),
        "AMT_EthernetPortSettings" => {
            match e.selector("InstanceID") {
                None | Some(ETHERNET_0) => {}
                Some(other) => {
                    return Err(("c:InvalidSelectors", format!("no instance {other:?}")))
                }
            }
            ethernet(m)
        }
        "AMT_RedirectionService" => element(
            class,
            &[
                ("AccessLog", String::new()),
                ("CreationClassName", class.into()),
                ("ElementName", "Intel(r) AMT Redirection Service".into()),
                ("EnabledState", s.redirection_state.to_string()),
                ("ListenerEnabled", b(s.redirection_listener)),
                ("Name", "Intel(r) AMT Redirection Service".into()),
                ("SystemCreationClassName", "CIM_ComputerSystem".into()),
                ("SystemName", "Intel(r) AMT".into()),
            ],
        ),
        "CIM_KVMRedirectionSAP" => element(
            class,
            &[
                ("CreationClassName", class.into()),
                ("ElementName", "KVM Redirection Service Access Point".into()),
                ("EnabledState", if s.kvm_enabled { "2" } else { "3" }.into()),
                ("KVMProtocol", "4".into()),
                ("Name", "KVM Redirection Service Access Point".into()),
                (
                    "RequestedState",
                    if s.kvm_enabled { "2" } else { "3" }.into(),
                ),
                ("SystemCreationClassName", "CIM_ComputerSystem".into()),
                ("SystemName", "ManagedSystem".into()),
            ],
        ),
        "CIM_PowerManagementService" => element(
            class,
            &[
                ("CreationClassName", class.into()),
                (
                    "ElementName",
                    "Intel(r) AMT Power Management Service".into(),
                ),
                ("EnabledState", "5".into()),
                ("Name", "Intel(r) AMT Power Management Service".into()),
                ("SystemCreationClassName", "CIM_ComputerSystem".into()),
                ("SystemName", "Intel(r) AMT".into()),
            ],
        ),
        "CIM_AssociatedPowerManagementService" => element(
            class,
            &[
                ("AvailableRequestedPowerStates", "2".into()),
                ("AvailableRequestedPowerStates", "5".into()),
                ("AvailableRequestedPowerStates", "8".into()),
                ("AvailableRequestedPowerStates", "10".into()),
                ("PowerState", "2".into()),
            ],
        ),
        _ => {
            return Err((
                "b:DestinationUnreachable",
                format!("no resource class {class}"),
            ))
        }
    };
    Ok(x)
}

fn ethernet(m: &AmtModel) -> String {
    let n = &m.state.ethernet;
    let mut f: Vec<(&str, String)> = vec![
        ("DHCPEnabled", b(n.dhcp_enabled)),
        ("ElementName", "Intel(r) AMT Ethernet Port Settings".into()),
        ("InstanceID", ETHERNET_0.into()),
        ("IpSyncEnabled", b(n.ip_sync_enabled)),
        ("LinkIsUp", b(n.link_up)),
        ("LinkPolicy", "1".into()),
        ("LinkPolicy", "14".into()),
        ("MACAddress", n.mac.clone()),
        ("PhysicalConnectionType", "0".into()),
        ("SharedDynamicIP", "true".into()),
        ("SharedMAC", b(n.shared_mac)),
        ("SharedStaticIp", b(n.shared_static_ip)),
    ];
    for (k, v) in [
        ("IPAddress", &n.ip_address),
        ("SubnetMask", &n.subnet_mask),
        ("DefaultGateway", &n.default_gateway),
        ("PrimaryDNS", &n.primary_dns),
        ("SecondaryDNS", &n.secondary_dns),
    ] {
        if !v.is_empty() {
            f.push((k, v.clone()));
        }
    }
    element("AMT_EthernetPortSettings", &f)
}

fn parse_bool(e: &Envelope, name: &str) -> Result<Option<bool>, (&'static str, String)> {
    match e.field(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(v) => Err(("c:InvalidRepresentation", format!("{name} = {v:?}"))),
    }
}

fn put(m: &mut AmtModel, class: &str, e: &Envelope) -> Handled {
    match class {
        "AMT_EthernetPortSettings" => {
            if e.selector("InstanceID") != Some(ETHERNET_0) {
                return Err((
                    "c:InvalidSelectors",
                    format!("Put needs InstanceID {ETHERNET_0:?}"),
                ));
            }
            if e.body_name.as_deref() != Some(class) {
                return Err(("c:InvalidRepresentation", format!("body is not {class}")));
            }
            let dhcp = parse_bool(e, "DHCPEnabled")?
                .ok_or(("c:InvalidRepresentation", "DHCPEnabled missing".to_string()))?;
            let sync = parse_bool(e, "IpSyncEnabled")?.unwrap_or(dhcp);
            let shared = parse_bool(e, "SharedStaticIp")?.unwrap_or(false);
            let ip = |k: &str| -> Result<String, (&'static str, String)> {
                match e.field(k) {
                    None | Some("") => Ok(String::new()),
                    Some(v) => v
                        .parse::<std::net::Ipv4Addr>()
                        .map(|a| a.to_string())
                        .map_err(|_| ("c:InvalidRepresentation", format!("{k} = {v:?}"))),
                }
            };
            let (addr, mask, gw, dns1, dns2) = (
                ip("IPAddress")?,
                ip("SubnetMask")?,
                ip("DefaultGateway")?,
                ip("PrimaryDNS")?,
                ip("SecondaryDNS")?,
            );
            if !dhcp && !sync && (addr.is_empty() || mask.is_empty()) {
                return Err((
                    "c:InvalidRepresentation",
                    "static settings need IPAddress and SubnetMask".into(),
                ));
            }
            let n = &mut m.state.ethernet;
            n.dhcp_enabled = dhcp;
            n.ip_sync_enabled = sync;
            n.shared_static_ip = shared;
            if dhcp {
                n.subnet_mask.clear();
                n.default_gateway.clear();
                n.primary_dns.clear();
                n.secondary_dns.clear();
            } else {
                n.ip_address = addr;
                n.subnet_mask = mask;
                n.default_gateway = gw;
                n.primary_dns = dns1;
                n.secondary_dns = dns2;
            }
            m.record(AmtEvent::EthernetChanged);
            m.save();
            Ok(ethernet(m))
        }
        "AMT_RedirectionService" => {
            if let Some(l) = parse_bool(e, "ListenerEnabled")? {
                m.state.redirection_listener = l;
                m.record(AmtEvent::RedirectionChanged);
                m.save();
            }
            get_instance(m, class, e)
        }
        _ => Err(("b:ActionNotSupported", format!("Put on {class}"))),
    }
}

fn output(method: &str, rv: u32) -> String {
    element(
        &format!("{method}_OUTPUT"),
        &[("ReturnValue", rv.to_string())],
    )
}

/// IPS_HostBasedSetupService.Setup return values.
const SETUP_INVALID_STATE: u32 = 2;
const SETUP_INVALID_PARAM: u32 = 3;
/// PT_STATUS_NOT_PERMITTED.
const NOT_PERMITTED: u32 = 16;
/// CIM: Not Supported / Failed / Invalid Parameter.
const CIM_NOT_SUPPORTED: u32 = 1;
const CIM_FAILED: u32 = 4;
const CIM_INVALID_PARAMETER: u32 = 5;

fn invoke(m: &mut AmtModel, class: &str, method: &str, e: &Envelope) -> Handled {
    let rv = match (class, method) {
        ("IPS_HostBasedSetupService", "Setup") => setup(m, e),
        ("AMT_SetupAndConfigurationService", "CommitChanges") => match m.state.provisioning_state {
            1 => {
                m.state.provisioning_state = 2;
                m.record(AmtEvent::Committed);
                m.save();
                0
            }
            2 => 0,
            _ => NOT_PERMITTED,
        },
        ("AMT_SetupAndConfigurationService", "Unprovision") => {
            if m.state.provisioning_state == 0 {
                NOT_PERMITTED
            } else {
                m.unprovision();
                0
            }
        }
        ("AMT_RedirectionService", "RequestStateChange") => {
            match e
                .field("RequestedState")
                .and_then(|v| v.parse::<u32>().ok())
            {
                Some(v @ REDIRECTION_DISABLED..=32771) => {
                    m.state.redirection_state = v;
                    m.record(AmtEvent::RedirectionChanged);
                    m.save();
                    0
                }
                _ => CIM_INVALID_PARAMETER,
            }
        }
        ("CIM_KVMRedirectionSAP", "RequestStateChange") => {
            match e
                .field("RequestedState")
                .and_then(|v| v.parse::<u32>().ok())
            {
                Some(2) => {
                    m.state.kvm_enabled = true;
                    m.record(AmtEvent::RedirectionChanged);
                    m.save();
                    0
                }
                Some(3) => {
                    m.state.kvm_enabled = false;
                    m.record(AmtEvent::RedirectionChanged);
                    m.save();
                    0
                }
                _ => CIM_INVALID_PARAMETER,
            }
        }
        ("CIM_PowerManagementService", "RequestPowerStateChange") => {
            match e.field("PowerState").and_then(|v| v.parse::<u32>().ok()) {
                // on, while on: nothing to do
                Some(2) => 0,
                Some(5 | 10 | 14) => {
                    if m.power(PowerAction::Reset) {
                        0
                    } else {
                        CIM_FAILED
                    }
                }
                Some(8 | 12) => {
                    if m.power(PowerAction::Off) {
                        0
                    } else {
                        CIM_FAILED
                    }
                }
                Some(_) => CIM_NOT_SUPPORTED,
                None => CIM_INVALID_PARAMETER,
            }
        }
        _ => {
            return Err((
                "b:ActionNotSupported",
                format!("method {method} of {class}"),
            ))
        }
    };
    Ok(output(method, rv))
}

fn setup(m: &mut AmtModel, e: &Envelope) -> u32 {
    if m.state.provisioning_state != 0 {
        warn!(
            "AMT: Setup in provisioning state {}",
            m.state.provisioning_state
        );
        m.record(AmtEvent::Refused("Setup: not pre-provisioning".into()));
        return SETUP_INVALID_STATE;
    }
    if e.field("NetAdminPassEncryptionType") != Some("2") {
        m.record(AmtEvent::Refused(
            "Setup: NetAdminPassEncryptionType is not 2 (HTTPDigestMD5A1)".into(),
        ));
        return SETUP_INVALID_PARAM;
    }
    let hash = e.field("NetworkAdminPassword").unwrap_or("");
    if hash.len() != 32 || !hash.bytes().all(|c| c.is_ascii_hexdigit()) {
        m.record(AmtEvent::Refused(
            "Setup: NetworkAdminPassword is not 32 hex digits".into(),
        ));
        return SETUP_INVALID_PARAM;
    }
    m.state.admin_digest_a1 = Some(hash.to_ascii_lowercase());
    m.state.control_mode = 1;
    m.state.provisioning_state = if m.config.commit_required() { 1 } else { 2 };
    let ev = AmtEvent::Provisioned {
        control_mode: 1,
        state: m.state.provisioning_state,
    };
    m.record(ev);
    m.save();
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amt::{lock, md5_hex};
    use crate::scenario::Scenario;

    const SETUP_ACTION: &str =
        "http://intel.com/wbem/wscim/1/ips-schema/1/IPS_HostBasedSetupService/Setup";

    /// A recorded-style request envelope (our own prefixes, as a client
    /// library would write it).
    fn envelope_text(action: &str, resource: &str, selector: Option<&str>, body: &str) -> String {
        let sel = selector
            .map(|v| {
                format!("<w:SelectorSet><w:Selector Name=\"InstanceID\">{v}</w:Selector></w:SelectorSet>")
            })
            .unwrap_or_default();
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Envelope xmlns=\"http://www.w3.org/2003/05/soap-envelope\" \
             xmlns:a=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" xmlns:w=\"http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd\">\
             <Header><a:Action>{action}</a:Action><a:To>/wsman</a:To><w:ResourceURI>{resource}</w:ResourceURI>\
             <a:MessageID>uuid:rec-1</a:MessageID>{sel}</Header><Body>{body}</Body></Envelope>"
        )
    }

    /// Sends `body` authenticated as `user` with `ha1`, over `via`.
    fn call(m: &mut AmtModel, user: &str, ha1: &str, body: String, via: Via) -> (u16, String) {
        let nonce = m.new_nonce();
        let realm = m.state.realm.clone();
        let resp = digest::response(ha1, &nonce, "00000001", "cn", "POST", "/wsman");
        let req = Request {
            method: "POST".into(),
            target: "/wsman".into(),
            headers: vec![(
                "Authorization".into(),
                format!(
                    "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"/wsman\", \
                     response=\"{resp}\", qop=auth, nc=00000001, cnonce=\"cn\""
                ),
            )],
            body: body.into_bytes(),
        };
        let r = serve(m, &req, via);
        let text = String::from_utf8(r.bytes).unwrap();
        let status = text[9..12].parse().unwrap();
        (status, text)
    }

    fn model(toml: &str) -> crate::amt::SharedAmt {
        AmtModel::shared(&Scenario::from_toml(toml).unwrap().resolve().unwrap())
    }

    fn lsa_ha1(m: &AmtModel) -> String {
        md5_hex(&format!("{LSA_USER}:{}:{}", m.state.realm, m.lsa_password))
    }

    fn setup_body(kind: &str, hash: &str) -> String {
        envelope_text(
            SETUP_ACTION,
            &format!("{IPS_NS}IPS_HostBasedSetupService"),
            None,
            &format!(
                "<h:Setup_INPUT xmlns:h=\"{IPS_NS}IPS_HostBasedSetupService\">\
                 <h:NetAdminPassEncryptionType>{kind}</h:NetAdminPassEncryptionType>\
                 <h:NetworkAdminPassword>{hash}</h:NetworkAdminPassword></h:Setup_INPUT>"
            ),
        )
    }

    #[test]
    fn setup_rules() {
        let amt = model("");
        let mut m = lock(&amt);
        let ha1 = lsa_ha1(&m);
        let hash = "00112233445566778899AABBCCDDEEFF";
        // bad parameters
        let (_, r) = call(&mut m, LSA_USER, &ha1, setup_body("1", hash), Via::Local);
        assert!(r.contains("<g:ReturnValue>3</g:ReturnValue>"), "{r}");
        let (_, r) = call(&mut m, LSA_USER, &ha1, setup_body("2", "xyz"), Via::Local);
        assert!(r.contains("<g:ReturnValue>3</g:ReturnValue>"), "{r}");
        // the LSA is local only
        let (status, _) = call(&mut m, LSA_USER, &ha1, setup_body("2", hash), Via::Remote);
        assert_eq!(status, 401);
        assert_eq!(m.state.provisioning_state, 0);
        let (status, r) = call(&mut m, LSA_USER, &ha1, setup_body("2", hash), Via::Local);
        assert_eq!(status, 200);
        assert!(
            r.contains("Setup_OUTPUT><g:ReturnValue>0</g:ReturnValue>"),
            "{r}"
        );
        assert!(r.contains("<b:RelatesTo>uuid:rec-1</b:RelatesTo>"), "{r}");
        assert!(r.contains(&format!("{SETUP_ACTION}Response")), "{r}");
        assert_eq!(m.state.provisioning_state, 2, "AMT 11: no commit needed");
        assert_eq!(m.state.control_mode, 1);
        assert_eq!(
            m.state.admin_digest_a1.as_deref(),
            Some("00112233445566778899aabbccddeeff")
        );
        // again: invalid state
        let (_, r) = call(&mut m, LSA_USER, &ha1, setup_body("2", hash), Via::Local);
        assert!(r.contains("<g:ReturnValue>2</g:ReturnValue>"), "{r}");
    }

    #[test]
    fn roles_classes_and_put_validation() {
        let amt = model("");
        let mut m = lock(&amt);
        let admin = md5_hex(&format!("admin:{}:pw", m.state.realm));
        m.state.provisioning_state = 2;
        m.state.control_mode = 1;
        m.state.admin_digest_a1 = Some(admin.clone());
        let lsa = lsa_ha1(&m);
        let eth = format!("{AMT_NS}AMT_EthernetPortSettings");
        let get = |sel: Option<&str>| envelope_text(wsman::ACTION_GET, &eth, sel, "");
        // LSA: Ethernet denied
        let (status, r) = call(&mut m, LSA_USER, &lsa, get(Some(ETHERNET_0)), Via::Local);
        assert_eq!(status, 400);
        assert!(r.contains("c:AccessDenied"), "{r}");
        // admin: fine; wireless instance does not exist
        let (status, r) = call(&mut m, "admin", &admin, get(Some(ETHERNET_0)), Via::Remote);
        assert_eq!(status, 200, "{r}");
        assert!(
            r.contains("<g:MACAddress>02-46-52-54-4f-53</g:MACAddress>"),
            "{r}"
        );
        let (_, r) = call(
            &mut m,
            "admin",
            &admin,
            get(Some("Intel(r) AMT Ethernet Port Settings 1")),
            Via::Remote,
        );
        assert!(r.contains("c:InvalidSelectors"), "{r}");
        // unknown class and unknown method
        let (_, r) = call(
            &mut m,
            "admin",
            &admin,
            envelope_text(wsman::ACTION_GET, &format!("{AMT_NS}AMT_Nothing"), None, ""),
            Via::Remote,
        );
        assert!(r.contains("b:DestinationUnreachable"), "{r}");
        let (_, r) = call(
            &mut m,
            "admin",
            &admin,
            envelope_text(&format!("{eth}/Frobnicate"), &eth, None, ""),
            Via::Remote,
        );
        assert!(r.contains("b:ActionNotSupported"), "{r}");
        // static settings without an address are refused, with one accepted
        let put = |fields: &str| {
            envelope_text(
                wsman::ACTION_PUT,
                &eth,
                Some(ETHERNET_0),
                &format!("<h:AMT_EthernetPortSettings xmlns:h=\"{eth}\">{fields}</h:AMT_EthernetPortSettings>"),
            )
        };
        let (_, r) = call(
            &mut m,
            "admin",
            &admin,
            put("<h:DHCPEnabled>false</h:DHCPEnabled><h:IpSyncEnabled>false</h:IpSyncEnabled>"),
            Via::Remote,
        );
        assert!(r.contains("c:InvalidRepresentation"), "{r}");
        let (_, r) = call(
            &mut m,
            "admin",
            &admin,
            put("<h:DHCPEnabled>maybe</h:DHCPEnabled>"),
            Via::Remote,
        );
        assert!(r.contains("c:InvalidRepresentation"), "{r}");
        let (status, r) = call(
            &mut m,
            "admin",
            &admin,
            put(
                "<h:DHCPEnabled>false</h:DHCPEnabled><h:IpSyncEnabled>false</h:IpSyncEnabled>\
                 <h:IPAddress>192.168.1.9</h:IPAddress><h:SubnetMask>255.255.255.0</h:SubnetMask>",
            ),
            Via::Remote,
        );
        assert_eq!(status, 200, "{r}");
        assert!(r.contains("<g:IPAddress>192.168.1.9</g:IPAddress>"), "{r}");
        assert!(!m.state.ethernet.dhcp_enabled);
        // a wrong admin password
        let wrong = md5_hex(&format!("admin:{}:nope", m.state.realm));
        let (status, r) = call(&mut m, "admin", &wrong, get(None), Via::Remote);
        assert_eq!(status, 401);
        assert!(r.contains("stale=\"false\""), "{r}");
    }

    #[test]
    fn enumerate_and_pull_return_the_instance() {
        let amt = model("[amt]\nprovisioning_state = 2\ncontrol_mode = 1");
        let mut m = lock(&amt);
        let admin = md5_hex(&format!("admin:{}:pw", m.state.realm));
        m.state.admin_digest_a1 = Some(admin.clone());
        let eth = format!("{AMT_NS}AMT_EthernetPortSettings");
        let (status, r) = call(
            &mut m,
            "admin",
            &admin,
            envelope_text(
                wsman::ACTION_ENUMERATE,
                &eth,
                None,
                "<n:Enumerate xmlns:n=\"http://schemas.xmlsoap.org/ws/2004/09/enumeration\"/>",
            ),
            Via::Remote,
        );
        assert_eq!(status, 200, "{r}");
        assert!(
            r.contains("<h:EnumerationContext>AMT_EthernetPortSettings</h:EnumerationContext>"),
            "{r}"
        );
        assert!(r.contains("enumeration/EnumerateResponse"), "{r}");
        let (_, r) = call(
            &mut m,
            "admin",
            &admin,
            envelope_text(wsman::ACTION_PULL, &eth, None, "<n:Pull xmlns:n=\"http://schemas.xmlsoap.org/ws/2004/09/enumeration\"><n:EnumerationContext>AMT_EthernetPortSettings</n:EnumerationContext></n:Pull>"),
            Via::Remote,
        );
        assert!(r.contains("<h:Items><g:AMT_EthernetPortSettings>"), "{r}");
        assert!(r.contains("<h:EndOfSequence>"), "{r}");
    }

    #[test]
    fn http_level_refusals() {
        let amt = model("");
        let mut m = lock(&amt);
        let req = |method: &str, target: &str| Request {
            method: method.into(),
            target: target.into(),
            headers: vec![],
            body: vec![],
        };
        let status = |r: Reply| String::from_utf8(r.bytes).unwrap()[9..12].to_string();
        assert_eq!(
            status(serve(&mut m, &req("POST", "/index.htm"), Via::Local)),
            "404"
        );
        assert_eq!(
            status(serve(&mut m, &req("GET", "/wsman"), Via::Local)),
            "405"
        );
        let r = serve(&mut m, &req("POST", "/wsman"), Via::Local);
        let text = String::from_utf8(r.bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 401"));
        assert!(
            text.contains("WWW-Authenticate: Digest realm=\"Digest:"),
            "{text}"
        );
        // an unparsable envelope from an authenticated user: a fault
        let ha1 = lsa_ha1(&m);
        let (status, r) = call(&mut m, LSA_USER, &ha1, "<not-soap/>".into(), Via::Local);
        assert_eq!(status, 400);
        assert!(r.contains("SchemaValidationError"), "{r}");
    }
}
