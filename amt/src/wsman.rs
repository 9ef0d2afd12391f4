//! WS-Management (DMTF DSP0226) SOAP 1.2 envelopes for the AMT calls the
//! agent and the org make (me-runtime.md §5.2, §5.4), and a bounded parser
//! for the replies.
//!
//! Envelopes are text with every dynamic value escaped by quick-xml;
//! replies are read with quick-xml into a small element tree (depth and
//! size limits), then typed: a SOAP fault becomes [`WsmanError::Fault`], an
//! `*_OUTPUT` body yields its `ReturnValue`, a Get yields its fields.

use quick_xml::escape::escape;
use quick_xml::events::Event;
use thiserror::Error;

const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
const NS_ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
const NS_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
const ANONYMOUS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous";

pub const ACTION_GET: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get";
pub const ACTION_PUT: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Put";

const AMT_SCHEMA: &str = "http://intel.com/wbem/wscim/1/amt-schema/1/";
const IPS_SCHEMA: &str = "http://intel.com/wbem/wscim/1/ips-schema/1/";
const CIM_SCHEMA: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/";

/// The classes used, as resource URIs.
pub mod class {
    pub const AMT_GENERAL_SETTINGS: &str = "AMT_GeneralSettings";
    pub const AMT_SETUP_AND_CONFIGURATION_SERVICE: &str = "AMT_SetupAndConfigurationService";
    pub const AMT_ETHERNET_PORT_SETTINGS: &str = "AMT_EthernetPortSettings";
    pub const AMT_REDIRECTION_SERVICE: &str = "AMT_RedirectionService";
    pub const IPS_HOST_BASED_SETUP_SERVICE: &str = "IPS_HostBasedSetupService";
    pub const IPS_OPT_IN_SERVICE: &str = "IPS_OptInService";
    pub const CIM_KVM_REDIRECTION_SAP: &str = "CIM_KVMRedirectionSAP";
    pub const CIM_POWER_MANAGEMENT_SERVICE: &str = "CIM_PowerManagementService";
    pub const CIM_COMPUTER_SYSTEM: &str = "CIM_ComputerSystem";
}

/// The resource URI of a class (by its prefix: AMT_, IPS_ or CIM_).
pub fn resource_uri(class: &str) -> String {
    let schema = if class.starts_with("AMT_") {
        AMT_SCHEMA
    } else if class.starts_with("IPS_") {
        IPS_SCHEMA
    } else {
        CIM_SCHEMA
    };
    format!("{schema}{class}")
}

/// Instance of the wired port's settings (§5.4).
pub const WIRED_PORT_INSTANCE: &str = "Intel(r) AMT Ethernet Port Settings 0";

/// `NetAdminPassEncryptionType` 2: the password is given as HTTP Digest
/// MD5 A1, i.e. hex(MD5("admin:" realm ":" password)).
pub const PASS_ENCRYPTION_HTTP_DIGEST_MD5_A1: u32 = 2;

/// CIM power states for `RequestPowerStateChange` (DSP1027).
pub mod power_state {
    pub const ON: u32 = 2;
    pub const CYCLE_OFF_SOFT: u32 = 5;
    pub const OFF_SOFT: u32 = 8;
    /// Master bus reset: the "reset" button.
    pub const RESET: u32 = 10;
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum WsmanError {
    #[error("WS-MAN reply is not well-formed XML at byte {offset}: {what}")]
    Xml { offset: u64, what: String },
    #[error("WS-MAN reply exceeds {what} limit {limit}")]
    TooLarge { what: &'static str, limit: usize },
    #[error("WS-MAN reply: {0}")]
    Shape(String),
    #[error("WS-MAN fault {code}/{subcode}: {reason}{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Fault {
        code: String,
        subcode: String,
        reason: String,
        detail: Option<String>,
    },
    #[error("WS-MAN {method}: ReturnValue {value} ({meaning})")]
    ReturnValue {
        method: String,
        value: u32,
        meaning: &'static str,
    },
}

/// Meaning of AMT's PT_STATUS return values seen in these calls.
pub fn return_value_meaning(v: u32) -> &'static str {
    match v {
        0 => "success",
        1 => "internal error",
        2 => "not ready / not supported",
        3 => "invalid PT mode",
        16 => "not permitted",
        36 => "invalid parameter",
        38 => "flash write limit exceeded",
        2057 => "data missing (MEBx password not set)",
        2082 => "invalid password",
        _ => "unknown",
    }
}

/// The fields every request carries in its header.
pub struct Header<'a> {
    pub action: &'a str,
    pub resource_uri: &'a str,
    /// `uuid:...` style message id, unique per request.
    pub message_id: &'a str,
    pub selectors: &'a [(&'a str, &'a str)],
}

/// A whole envelope around `body` (already XML, or empty).
pub fn envelope(h: &Header<'_>, body: &str) -> String {
    let mut sel = String::new();
    if !h.selectors.is_empty() {
        sel.push_str("<w:SelectorSet>");
        for (name, value) in h.selectors {
            sel.push_str(&format!(
                "<w:Selector Name=\"{}\">{}</w:Selector>",
                escape(*name),
                escape(*value)
            ));
        }
        sel.push_str("</w:SelectorSet>");
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
<Envelope xmlns=\"{NS_SOAP}\" xmlns:a=\"{NS_ADDRESSING}\" xmlns:w=\"{NS_WSMAN}\">\
<Header><a:Action>{}</a:Action><a:To>/wsman</a:To><w:ResourceURI>{}</w:ResourceURI>\
<a:MessageID>{}</a:MessageID><a:ReplyTo><a:Address>{ANONYMOUS}</a:Address></a:ReplyTo>\
<w:OperationTimeout>PT60S</w:OperationTimeout>{sel}</Header><Body>{body}</Body></Envelope>",
        escape(h.action),
        escape(h.resource_uri),
        escape(h.message_id),
    )
}

/// A Get of one instance of `class`.
pub fn get(class: &str, selectors: &[(&str, &str)], message_id: &str) -> String {
    let uri = resource_uri(class);
    envelope(
        &Header {
            action: ACTION_GET,
            resource_uri: &uri,
            message_id,
            selectors,
        },
        "",
    )
}

/// A Put of one instance with `fields` in the order given (the class's
/// schema order, as read by a Get).
pub fn put(
    class: &str,
    selectors: &[(&str, &str)],
    fields: &[(String, String)],
    message_id: &str,
) -> String {
    let uri = resource_uri(class);
    let mut body = format!("<h:{class} xmlns:h=\"{}\">", escape(&uri));
    for (k, v) in fields {
        body.push_str(&format!("<h:{k}>{}</h:{k}>", escape(v.as_str())));
    }
    body.push_str(&format!("</h:{class}>"));
    envelope(
        &Header {
            action: ACTION_PUT,
            resource_uri: &uri,
            message_id,
            selectors,
        },
        &body,
    )
}

/// An input parameter of a method call.
pub enum Arg<'a> {
    Text(&'a str),
    /// An endpoint reference to an instance: (class, selectors).
    Reference(&'a str, &'a [(&'a str, &'a str)]),
}

/// Invokes `method` of `class` with `args` in order.
pub fn invoke(
    class: &str,
    method: &str,
    selectors: &[(&str, &str)],
    args: &[(&str, Arg<'_>)],
    message_id: &str,
) -> String {
    let uri = resource_uri(class);
    let action = format!("{uri}/{method}");
    let mut body = format!("<h:{method}_INPUT xmlns:h=\"{}\">", escape(&uri));
    for (name, arg) in args {
        match arg {
            Arg::Text(v) => body.push_str(&format!("<h:{name}>{}</h:{name}>", escape(*v))),
            Arg::Reference(ref_class, sels) => {
                body.push_str(&format!(
                    "<h:{name}><a:Address>{ANONYMOUS}</a:Address><a:ReferenceParameters>\
<w:ResourceURI>{}</w:ResourceURI><w:SelectorSet>",
                    escape(resource_uri(ref_class))
                ));
                for (n, v) in sels.iter() {
                    body.push_str(&format!(
                        "<w:Selector Name=\"{}\">{}</w:Selector>",
                        escape(*n),
                        escape(*v)
                    ));
                }
                body.push_str(&format!(
                    "</w:SelectorSet></a:ReferenceParameters></h:{name}>"
                ));
            }
        }
    }
    body.push_str(&format!("</h:{method}_INPUT>"));
    envelope(
        &Header {
            action: &action,
            resource_uri: &uri,
            message_id,
            selectors,
        },
        &body,
    )
}

/// `IPS_HostBasedSetupService.Setup` with the admin password as Digest A1.
pub fn host_based_setup(admin_ha1_hex: &str, message_id: &str) -> String {
    let t = PASS_ENCRYPTION_HTTP_DIGEST_MD5_A1.to_string();
    invoke(
        class::IPS_HOST_BASED_SETUP_SERVICE,
        "Setup",
        &[],
        &[
            ("NetAdminPassEncryptionType", Arg::Text(&t)),
            ("NetworkAdminPassword", Arg::Text(admin_ha1_hex)),
        ],
        message_id,
    )
}

/// `AMT_SetupAndConfigurationService.CommitChanges` (AMT 19+ after Setup).
pub fn commit_changes(message_id: &str) -> String {
    invoke(
        class::AMT_SETUP_AND_CONFIGURATION_SERVICE,
        "CommitChanges",
        &[],
        &[],
        message_id,
    )
}

/// `CIM_PowerManagementService.RequestPowerStateChange` for the managed host.
pub fn request_power_state_change(state: u32, message_id: &str) -> String {
    let s = state.to_string();
    invoke(
        class::CIM_POWER_MANAGEMENT_SERVICE,
        "RequestPowerStateChange",
        &[
            ("CreationClassName", "CIM_PowerManagementService"),
            ("Name", "Intel(r) AMT Power Management Service"),
            ("SystemCreationClassName", "CIM_ComputerSystem"),
            ("SystemName", "Intel(r) AMT"),
        ],
        &[
            ("PowerState", Arg::Text(&s)),
            (
                "ManagedElement",
                Arg::Reference(
                    class::CIM_COMPUTER_SYSTEM,
                    &[
                        ("CreationClassName", "CIM_ComputerSystem"),
                        ("Name", "ManagedSystem"),
                    ],
                ),
            ),
        ],
        message_id,
    )
}

/// `RequestStateChange(state)` on a service (KVM SAP: 2 enable, 3 disable;
/// redirection service: 32768 + 1 IDE-R + 2 SOL).
pub fn request_state_change(class: &str, state: u32, message_id: &str) -> String {
    let s = state.to_string();
    invoke(
        class,
        "RequestStateChange",
        &[],
        &[("RequestedState", Arg::Text(&s))],
        message_id,
    )
}

/// One element of a parsed reply: local name, attributes, text, children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the first child of that name.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// Leaf children as (name, text), in document order.
    pub fn leaf_fields(&self) -> Vec<(String, String)> {
        self.children
            .iter()
            .filter(|c| c.children.is_empty())
            .map(|c| (c.name.clone(), c.text.clone()))
            .collect()
    }

    fn path(&self, names: &[&str]) -> Option<&Element> {
        let mut e = self;
        for n in names {
            e = e.child(n)?;
        }
        Some(e)
    }
}

/// Most nesting accepted in a reply.
const MAX_DEPTH: usize = 32;
/// Most elements accepted in a reply.
const MAX_ELEMENTS: usize = 4096;

/// Parses XML into a tree of elements (namespace prefixes dropped).
pub fn parse_xml(xml: &[u8]) -> Result<Element, WsmanError> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Element> = vec![Element::default()];
    let mut count = 0usize;
    let xml_err = |r: &quick_xml::Reader<&[u8]>, e: &dyn std::fmt::Display| WsmanError::Xml {
        offset: r.buffer_position(),
        what: e.to_string(),
    };
    loop {
        let ev = reader.read_event().map_err(|e| xml_err(&reader, &e))?;
        let empty = matches!(ev, Event::Empty(_));
        match ev {
            Event::Start(s) | Event::Empty(s) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(WsmanError::TooLarge {
                        what: "element count",
                        limit: MAX_ELEMENTS,
                    });
                }
                let mut el = Element {
                    name: String::from_utf8_lossy(s.local_name().as_ref()).into_owned(),
                    ..Default::default()
                };
                for a in s.attributes() {
                    let a = a.map_err(|e| xml_err(&reader, &e))?;
                    let v = a.unescape_value().map_err(|e| xml_err(&reader, &e))?;
                    el.attrs.push((
                        String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                        v.into_owned(),
                    ));
                }
                if empty {
                    if let Some(top) = stack.last_mut() {
                        top.children.push(el);
                    }
                } else {
                    if stack.len() > MAX_DEPTH {
                        return Err(WsmanError::TooLarge {
                            what: "nesting depth",
                            limit: MAX_DEPTH,
                        });
                    }
                    stack.push(el);
                }
            }
            Event::End(_) => {
                // quick-xml checks that end tags match their start tags.
                let Some(done) = stack.pop() else {
                    return Err(xml_err(&reader, &"unbalanced end tag"));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => return Err(xml_err(&reader, &"unbalanced end tag")),
                }
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(|e| xml_err(&reader, &e))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(WsmanError::Xml {
            offset: reader.buffer_position(),
            what: format!("{} element(s) not closed", stack.len() - 1),
        });
    }
    let root = stack.pop().unwrap_or_default();
    let mut elems = root.children.into_iter();
    match (elems.next(), elems.next()) {
        (Some(e), None) => Ok(e),
        (None, _) => Err(WsmanError::Shape("no root element".into())),
        (Some(_), Some(_)) => Err(WsmanError::Shape("more than one root element".into())),
    }
}

/// A reply: its action and the first element of its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub action: Option<String>,
    pub body: Element,
}

impl Reply {
    /// The `ReturnValue` of a method's `<Method>_OUTPUT`; non-zero is an error.
    pub fn return_value(&self, method: &str) -> Result<u32, WsmanError> {
        let want = format!("{method}_OUTPUT");
        if self.body.name != want {
            return Err(WsmanError::Shape(format!(
                "expected {want}, got {}",
                self.body.name
            )));
        }
        let text = self
            .body
            .field("ReturnValue")
            .ok_or_else(|| WsmanError::Shape(format!("{want} without ReturnValue")))?;
        text.trim()
            .parse()
            .map_err(|_| WsmanError::Shape(format!("{want}: ReturnValue {text:?}")))
    }

    /// Like [`Reply::return_value`] but 0 is required.
    pub fn expect_success(&self, method: &str) -> Result<(), WsmanError> {
        match self.return_value(method)? {
            0 => Ok(()),
            v => Err(WsmanError::ReturnValue {
                method: method.into(),
                value: v,
                meaning: return_value_meaning(v),
            }),
        }
    }

    /// The body of a Get must be the class asked for.
    pub fn instance(&self, class: &str) -> Result<&Element, WsmanError> {
        if self.body.name == class {
            Ok(&self.body)
        } else {
            Err(WsmanError::Shape(format!(
                "expected {class}, got {}",
                self.body.name
            )))
        }
    }
}

/// Parses a reply envelope; a SOAP fault is returned as the error.
pub fn parse_reply(xml: &[u8]) -> Result<Reply, WsmanError> {
    let root = parse_xml(xml)?;
    if root.name != "Envelope" {
        return Err(WsmanError::Shape(format!("root is {}", root.name)));
    }
    let action = root
        .path(&["Header", "Action"])
        .map(|a| a.text.trim().to_string());
    let body = root
        .child("Body")
        .ok_or_else(|| WsmanError::Shape("no Body".into()))?;
    let first = body
        .children
        .first()
        .cloned()
        .ok_or_else(|| WsmanError::Shape("empty Body".into()))?;
    if first.name == "Fault" {
        let text = |p: &[&str]| first.path(p).map(|e| e.text.trim().to_string());
        return Err(WsmanError::Fault {
            code: text(&["Code", "Value"]).unwrap_or_default(),
            subcode: text(&["Code", "Subcode", "Value"]).unwrap_or_default(),
            reason: text(&["Reason", "Text"]).unwrap_or_default(),
            detail: first.child("Detail").map(|d| {
                let mut s = d.text.trim().to_string();
                for c in &d.children {
                    if !s.is_empty() {
                        s.push(' ');
                    }
                    s.push_str(&format!("{}={}", c.name, c.text.trim()));
                }
                s
            }),
        });
    }
    Ok(Reply {
        action,
        body: first,
    })
}

/// The digest realm AMT authenticates with (`AMT_GeneralSettings.DigestRealm`).
pub fn digest_realm(reply: &Reply) -> Result<String, WsmanError> {
    let inst = reply.instance(class::AMT_GENERAL_SETTINGS)?;
    inst.field("DigestRealm")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| WsmanError::Shape("AMT_GeneralSettings without DigestRealm".into()))
}

/// How the wired interface gets its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ipv4Config {
    Dhcp,
    Static {
        address: String,
        netmask: String,
        gateway: String,
        dns: Vec<String>,
    },
}

/// The fields of a read `AMT_EthernetPortSettings` changed for `config`
/// (rpc-go's `configure wired` rules, me-runtime.md §5.4); order kept.
pub fn ethernet_settings_for(
    read: &[(String, String)],
    config: &Ipv4Config,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = read.to_vec();
    let mut set = |k: &str, v: &str| {
        if let Some(f) = out.iter_mut().find(|(n, _)| n == k) {
            f.1 = v.to_string();
        } else {
            out.push((k.to_string(), v.to_string()));
        }
    };
    match config {
        Ipv4Config::Dhcp => {
            set("DHCPEnabled", "true");
            set("IpSyncEnabled", "true");
            set("SharedStaticIp", "false");
        }
        Ipv4Config::Static {
            address,
            netmask,
            gateway,
            dns,
        } => {
            set("DHCPEnabled", "false");
            set("IpSyncEnabled", "false");
            set("SharedStaticIp", "false");
            set("IPAddress", address);
            set("SubnetMask", netmask);
            set("DefaultGateway", gateway);
            if let Some(d) = dns.first() {
                set("PrimaryDNS", d);
            }
            if let Some(d) = dns.get(1) {
                set("SecondaryDNS", d);
            }
        }
    }
    if matches!(config, Ipv4Config::Dhcp) {
        // Addresses are the DHCP server's business now.
        out.retain(|(n, _)| {
            !matches!(
                n.as_str(),
                "IPAddress" | "SubnetMask" | "DefaultGateway" | "PrimaryDNS" | "SecondaryDNS"
            )
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply in the shape AMT sends (written for these tests).
    fn reply(body: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><a:Envelope xmlns:a="http://www.w3.org/2003/05/soap-envelope" xmlns:b="http://schemas.xmlsoap.org/ws/2004/08/addressing"><a:Header><b:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</b:To><b:RelatesTo>uuid:1</b:RelatesTo><b:Action a:mustUnderstand="true">http://example/Response</b:Action><b:MessageID>uuid:2</b:MessageID></a:Header><a:Body>{body}</a:Body></a:Envelope>"#
        )
    }

    #[test]
    fn setup_envelope_is_well_formed_and_carries_the_hash() {
        let e = host_based_setup("0123456789abcdef0123456789abcdef", "uuid:00000001");
        let root = parse_xml(e.as_bytes()).unwrap();
        assert_eq!(
            root.path(&["Header", "Action"]).unwrap().text,
            "http://intel.com/wbem/wscim/1/ips-schema/1/IPS_HostBasedSetupService/Setup"
        );
        assert_eq!(
            root.path(&["Header", "ResourceURI"]).unwrap().text,
            "http://intel.com/wbem/wscim/1/ips-schema/1/IPS_HostBasedSetupService"
        );
        let input = root.path(&["Body", "Setup_INPUT"]).unwrap();
        assert_eq!(input.field("NetAdminPassEncryptionType"), Some("2"));
        assert_eq!(
            input.field("NetworkAdminPassword"),
            Some("0123456789abcdef0123456789abcdef")
        );
    }

    #[test]
    fn values_are_escaped() {
        let e = get(
            class::AMT_ETHERNET_PORT_SETTINGS,
            &[("InstanceID", "a<b&\"c")],
            "uuid:<x>",
        );
        let root = parse_xml(e.as_bytes()).unwrap();
        let sel = root.path(&["Header", "SelectorSet", "Selector"]).unwrap();
        assert_eq!(sel.text, "a<b&\"c");
        assert_eq!(sel.attrs, vec![("Name".into(), "InstanceID".into())]);
        assert_eq!(
            root.path(&["Header", "MessageID"]).unwrap().text,
            "uuid:<x>"
        );
    }

    #[test]
    fn power_change_has_the_managed_element_reference() {
        let e = request_power_state_change(power_state::RESET, "uuid:3");
        let root = parse_xml(e.as_bytes()).unwrap();
        let input = root
            .path(&["Body", "RequestPowerStateChange_INPUT"])
            .unwrap();
        assert_eq!(input.field("PowerState"), Some("10"));
        let me = input.child("ManagedElement").unwrap();
        assert_eq!(
            me.path(&["ReferenceParameters", "ResourceURI"])
                .unwrap()
                .text,
            "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ComputerSystem"
        );
        let sels = root.path(&["Header", "SelectorSet"]).unwrap();
        assert_eq!(sels.children.len(), 4);
    }

    #[test]
    fn general_settings_realm() {
        let x = reply(
            r#"<g:AMT_GeneralSettings xmlns:g="http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings"><g:AMTNetworkEnabled>1</g:AMTNetworkEnabled><g:DigestRealm>Digest:A3829B3827DE4D33D4449B366831FD01</g:DigestRealm><g:HostName></g:HostName></g:AMT_GeneralSettings>"#,
        );
        let r = parse_reply(x.as_bytes()).unwrap();
        assert_eq!(r.action.as_deref(), Some("http://example/Response"));
        assert_eq!(
            digest_realm(&r).unwrap(),
            "Digest:A3829B3827DE4D33D4449B366831FD01"
        );
        let other = parse_reply(reply("<x:Other xmlns:x=\"u\"/>").as_bytes()).unwrap();
        assert!(digest_realm(&other).is_err());
    }

    #[test]
    fn return_values() {
        let ok = parse_reply(
            reply(
                r#"<h:Setup_OUTPUT xmlns:h="u"><h:ReturnValue>0</h:ReturnValue></h:Setup_OUTPUT>"#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(ok.return_value("Setup"), Ok(0));
        assert!(ok.expect_success("Setup").is_ok());
        assert!(ok.return_value("CommitChanges").is_err());
        let bad = parse_reply(
            reply(r#"<h:CommitChanges_OUTPUT xmlns:h="u"><h:ReturnValue>2057</h:ReturnValue></h:CommitChanges_OUTPUT>"#)
                .as_bytes(),
        )
        .unwrap();
        let err = bad.expect_success("CommitChanges").unwrap_err();
        assert!(err.to_string().contains("MEBx"), "{err}");
    }

    #[test]
    fn faults_are_errors() {
        let x = reply(
            r#"<a:Fault><a:Code><a:Value>a:Sender</a:Value><a:Subcode><a:Value>b:DestinationUnreachable</a:Value></a:Subcode></a:Code><a:Reason><a:Text xml:lang="en-US">No route can be determined to reach the destination role defined by the WS-Addressing To.</a:Text></a:Reason><a:Detail><c:FaultDetail xmlns:c="w">InvalidResourceURI</c:FaultDetail></a:Detail></a:Fault>"#,
        );
        match parse_reply(x.as_bytes()).unwrap_err() {
            WsmanError::Fault {
                code,
                subcode,
                reason,
                detail,
            } => {
                assert_eq!(code, "a:Sender");
                assert_eq!(subcode, "b:DestinationUnreachable");
                assert!(reason.starts_with("No route"));
                assert_eq!(detail.as_deref(), Some("FaultDetail=InvalidResourceURI"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_xml() {
        for bad in [
            &b""[..],
            b"<a>",
            b"<a></b>",
            b"<a/><b/>",
            b"<Envelope><Header/></Envelope>",
            b"<Envelope><Body/></Envelope>",
            b"<Envelope><Body><x>&bogus;</x></Body></Envelope>",
            b"\xff\xfe<",
        ] {
            assert!(
                parse_reply(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert_eq!(
            parse_xml(deep.as_bytes()).unwrap_err(),
            WsmanError::TooLarge {
                what: "nesting depth",
                limit: MAX_DEPTH
            }
        );
        let wide = format!("<a>{}</a>", "<b/>".repeat(MAX_ELEMENTS + 1));
        assert!(matches!(
            parse_xml(wide.as_bytes()).unwrap_err(),
            WsmanError::TooLarge { .. }
        ));
    }

    #[test]
    fn ethernet_settings_dhcp_and_static() {
        let read: Vec<(String, String)> = [
            ("ElementName", "Intel(r) AMT Ethernet Port Settings"),
            ("InstanceID", WIRED_PORT_INSTANCE),
            ("SharedMAC", "true"),
            ("MACAddress", "00-1b-21-aa-bb-cc"),
            ("LinkIsUp", "true"),
            ("DHCPEnabled", "false"),
            ("IPAddress", "10.0.0.5"),
            ("SubnetMask", "255.255.255.0"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let d = ethernet_settings_for(&read, &Ipv4Config::Dhcp);
        let get = |v: &[(String, String)], k: &str| {
            v.iter().find(|(n, _)| n == k).map(|(_, x)| x.clone())
        };
        assert_eq!(get(&d, "DHCPEnabled").as_deref(), Some("true"));
        assert_eq!(get(&d, "IpSyncEnabled").as_deref(), Some("true"));
        assert_eq!(get(&d, "SharedMAC").as_deref(), Some("true"));
        assert!(get(&d, "IPAddress").is_none());
        assert_eq!(d[0].0, "ElementName", "schema order kept");
        let s = ethernet_settings_for(
            &read,
            &Ipv4Config::Static {
                address: "10.0.0.9".into(),
                netmask: "255.255.255.0".into(),
                gateway: "10.0.0.1".into(),
                dns: vec!["10.0.0.2".into()],
            },
        );
        assert_eq!(get(&s, "IPAddress").as_deref(), Some("10.0.0.9"));
        assert_eq!(get(&s, "DHCPEnabled").as_deref(), Some("false"));
        assert_eq!(get(&s, "PrimaryDNS").as_deref(), Some("10.0.0.2"));
        let p = put(
            class::AMT_ETHERNET_PORT_SETTINGS,
            &[("InstanceID", WIRED_PORT_INSTANCE)],
            &s,
            "uuid:4",
        );
        let root = parse_xml(p.as_bytes()).unwrap();
        let inst = root.path(&["Body", "AMT_EthernetPortSettings"]).unwrap();
        assert_eq!(inst.field("IPAddress"), Some("10.0.0.9"));
    }
}
