//! WS-Management envelopes: SOAP 1.2 + WS-Addressing, parsed with quick-xml
//! by namespace-resolved local names (clients choose their own prefixes),
//! and built the way AMT writes them (prefixes a: to h:, one line).

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

pub const NS_SOAP: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const NS_ADDRESSING: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
pub const NS_WSMAN: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd";
pub const NS_ENUMERATION: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration";

pub const ACTION_GET: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get";
pub const ACTION_PUT: &str = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Put";
pub const ACTION_ENUMERATE: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Enumerate";
pub const ACTION_PULL: &str = "http://schemas.xmlsoap.org/ws/2004/09/enumeration/Pull";
pub const ACTION_FAULT: &str = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault";

const MAX_DEPTH: usize = 32;
const MAX_TEXT: usize = 4096;
const MAX_FIELDS: usize = 128;

/// A request envelope, reduced to what the handlers need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    pub action: String,
    pub resource_uri: String,
    pub message_id: String,
    pub to: String,
    /// Header SelectorSet: (Name attribute, text).
    pub selectors: Vec<(String, String)>,
    /// Local name of the Body's first element (e.g. `Setup_INPUT`), if any.
    pub body_name: Option<String>,
    /// The text of that element's direct children: (local name, text).
    pub body: Vec<(String, String)>,
}

impl Envelope {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.body
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn selector(&self, name: &str) -> Option<&str> {
        self.selectors
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The class name: the last segment of the resource URI.
    pub fn class(&self) -> &str {
        self.resource_uri
            .rsplit('/')
            .next()
            .unwrap_or(&self.resource_uri)
    }
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("XML at byte {offset}: {reason}")]
    Xml { offset: u64, reason: String },
    #[error("not a SOAP 1.2 envelope: root element {0}")]
    NotSoap12(String),
    #[error("envelope lacks {0}")]
    Missing(&'static str),
    #[error("envelope at byte {offset}: {reason}")]
    Limit { offset: u64, reason: &'static str },
}

/// Parses one request envelope.
pub fn parse(xml: &[u8]) -> Result<Envelope, EnvelopeError> {
    let mut r = NsReader::from_reader(xml);
    r.config_mut().trim_text(true);
    let mut buf = Vec::new();
    // (namespace, local name) of each open element
    let mut stack: Vec<(String, String)> = Vec::new();
    let mut env = Envelope::default();
    let mut text = String::new();
    let mut selector_name: Option<String> = None;
    let mut saw_root = false;
    loop {
        let pos = r.buffer_position();
        let (ns, ev) = r
            .read_resolved_event_into(&mut buf)
            .map_err(|e| EnvelopeError::Xml {
                offset: pos,
                reason: e.to_string(),
            })?;
        let ns = match ns {
            ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
            _ => String::new(),
        };
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                if !saw_root {
                    saw_root = true;
                    if local != "Envelope" || ns != NS_SOAP {
                        return Err(EnvelopeError::NotSoap12(format!("{{{ns}}}{local}")));
                    }
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(EnvelopeError::Limit {
                        offset: pos,
                        reason: "elements nested too deep",
                    });
                }
                if local == "Selector" {
                    selector_name = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.local_name().as_ref() == b"Name")
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned());
                }
                stack.push((ns, local));
                text.clear();
                if empty {
                    close(&mut stack, &mut env, &mut text, &mut selector_name, pos)?;
                }
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(|e| EnvelopeError::Xml {
                    offset: pos,
                    reason: e.to_string(),
                })?;
                if text.len() + s.len() > MAX_TEXT {
                    return Err(EnvelopeError::Limit {
                        offset: pos,
                        reason: "text value too long",
                    });
                }
                text.push_str(&s);
            }
            Event::CData(t) => {
                let s = String::from_utf8_lossy(&t).into_owned();
                if text.len() + s.len() > MAX_TEXT {
                    return Err(EnvelopeError::Limit {
                        offset: pos,
                        reason: "text value too long",
                    });
                }
                text.push_str(&s);
            }
            Event::End(_) => {
                close(&mut stack, &mut env, &mut text, &mut selector_name, pos)?;
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !saw_root {
        return Err(EnvelopeError::NotSoap12("(none)".into()));
    }
    if env.action.is_empty() {
        return Err(EnvelopeError::Missing("wsa:Action"));
    }
    if env.resource_uri.is_empty() {
        return Err(EnvelopeError::Missing("wsman:ResourceURI"));
    }
    Ok(env)
}

/// Handles the end of the innermost open element.
fn close(
    stack: &mut Vec<(String, String)>,
    env: &mut Envelope,
    text: &mut String,
    selector_name: &mut Option<String>,
    pos: u64,
) -> Result<(), EnvelopeError> {
    let Some((ns, local)) = stack.pop() else {
        return Err(EnvelopeError::Xml {
            offset: pos,
            reason: "end tag without a start".into(),
        });
    };
    let parent = stack.get(1).map(|(_, l)| l.as_str());
    let depth = stack.len();
    let value = std::mem::take(text);
    match (depth, parent, local.as_str()) {
        (2, Some("Header"), "Action") if ns == NS_ADDRESSING => env.action = value,
        (2, Some("Header"), "To") if ns == NS_ADDRESSING => env.to = value,
        (2, Some("Header"), "MessageID") if ns == NS_ADDRESSING => env.message_id = value,
        (2, Some("Header"), "ResourceURI") if ns == NS_WSMAN => env.resource_uri = value,
        (_, _, "Selector") if ns == NS_WSMAN && stack.iter().any(|(_, l)| l == "Header") => {
            if let Some(n) = selector_name.take() {
                env.selectors.push((n, value));
            }
        }
        (2, Some("Body"), _) => {
            env.body_name.get_or_insert(local);
        }
        (3, _, _) if stack.get(1).is_some_and(|(_, l)| l == "Body") => {
            if env.body.len() >= MAX_FIELDS {
                return Err(EnvelopeError::Limit {
                    offset: pos,
                    reason: "too many body fields",
                });
            }
            env.body.push((local, value));
        }
        _ => {}
    }
    Ok(())
}

/// Escapes text for element content.
pub fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

fn uuid_text() -> String {
    let b = super::random_bytes(16);
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A response envelope; `body` is the inner XML of `<a:Body>`, where the
/// class namespace is bound to prefix `g`.
pub fn envelope(action: &str, relates_to: &str, resource_uri: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a:Envelope xmlns:a=\"{NS_SOAP}\" \
         xmlns:b=\"{NS_ADDRESSING}\" xmlns:c=\"{NS_WSMAN}\" \
         xmlns:d=\"http://schemas.xmlsoap.org/ws/2005/02/trust\" \
         xmlns:e=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd\" \
         xmlns:f=\"http://schemas.dmtf.org/wbem/wsman/1/cimbinding.xsd\" \
         xmlns:g=\"{}\" xmlns:h=\"{NS_ENUMERATION}\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><a:Header>\
         <b:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</b:To>\
         <b:RelatesTo>{}</b:RelatesTo><b:Action a:mustUnderstand=\"true\">{}</b:Action>\
         <b:MessageID>{}</b:MessageID><c:ResourceURI>{}</c:ResourceURI></a:Header>\
         <a:Body>{body}</a:Body></a:Envelope>",
        esc(resource_uri),
        esc(relates_to),
        esc(action),
        uuid_text(),
        esc(resource_uri),
    )
}

/// `<g:NAME><g:k>v</g:k>...</g:NAME>`.
pub fn element(name: &str, fields: &[(&str, String)]) -> String {
    let mut s = format!("<g:{name}>");
    for (k, v) in fields {
        s.push_str(&format!("<g:{k}>{}</g:{k}>", esc(v)));
    }
    s.push_str(&format!("</g:{name}>"));
    s
}

/// A SOAP 1.2 fault as AMT sends it: Sender, a WS-Man or WS-Addressing
/// subcode (e.g. `c:AccessDenied`, `b:DestinationUnreachable`) and a reason.
pub fn fault(relates_to: &str, subcode: &str, reason: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a:Envelope xmlns:a=\"{NS_SOAP}\" \
         xmlns:b=\"{NS_ADDRESSING}\" xmlns:c=\"{NS_WSMAN}\"><a:Header>\
         <b:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</b:To>\
         <b:RelatesTo>{}</b:RelatesTo><b:Action a:mustUnderstand=\"true\">{ACTION_FAULT}</b:Action>\
         <b:MessageID>{}</b:MessageID></a:Header><a:Body><a:Fault><a:Code><a:Value>a:Sender</a:Value>\
         <a:Subcode><a:Value>{}</a:Value></a:Subcode></a:Code><a:Reason><a:Text xml:lang=\"en-US\">{}</a:Text>\
         </a:Reason></a:Fault></a:Body></a:Envelope>",
        esc(relates_to),
        uuid_text(),
        esc(subcode),
        esc(reason)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Setup request as a WS-MAN client writes it (recorded from our own
    /// client-side notes, with its own prefixes).
    pub const SETUP: &str = r#"<?xml version="1.0" encoding="utf-8"?><Envelope xmlns="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><Header><a:Action>http://intel.com/wbem/wscim/1/ips-schema/1/IPS_HostBasedSetupService/Setup</a:Action><a:To>/wsman</a:To><w:ResourceURI>http://intel.com/wbem/wscim/1/ips-schema/1/IPS_HostBasedSetupService</w:ResourceURI><a:MessageID>uuid:00000000-8086-8086-8086-000000000001</a:MessageID><a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo><w:OperationTimeout>PT60S</w:OperationTimeout></Header><Body><h:Setup_INPUT xmlns:h="http://intel.com/wbem/wscim/1/ips-schema/1/IPS_HostBasedSetupService"><h:NetAdminPassEncryptionType>2</h:NetAdminPassEncryptionType><h:NetworkAdminPassword>8f3a4c2b8f3a4c2b8f3a4c2b8f3a4c2b</h:NetworkAdminPassword></h:Setup_INPUT></Body></Envelope>"#;

    #[test]
    fn setup_request_parses_by_namespace() {
        let e = parse(SETUP.as_bytes()).unwrap();
        assert_eq!(e.class(), "IPS_HostBasedSetupService");
        assert!(e.action.ends_with("/Setup"));
        assert_eq!(e.message_id, "uuid:00000000-8086-8086-8086-000000000001");
        assert_eq!(e.body_name.as_deref(), Some("Setup_INPUT"));
        assert_eq!(e.field("NetAdminPassEncryptionType"), Some("2"));
        assert_eq!(
            e.field("NetworkAdminPassword"),
            Some("8f3a4c2b8f3a4c2b8f3a4c2b8f3a4c2b")
        );
    }

    #[test]
    fn selectors_and_empty_bodies() {
        let x = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:wsman="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"><s:Header><wsa:Action>http://schemas.xmlsoap.org/ws/2004/09/transfer/Get</wsa:Action><wsman:ResourceURI>http://intel.com/wbem/wscim/1/amt-schema/1/AMT_EthernetPortSettings</wsman:ResourceURI><wsa:MessageID>m1</wsa:MessageID><wsman:SelectorSet><wsman:Selector Name="InstanceID">Intel(r) AMT Ethernet Port Settings 0</wsman:Selector></wsman:SelectorSet></s:Header><s:Body/></s:Envelope>"#;
        let e = parse(x.as_bytes()).unwrap();
        assert_eq!(e.action, ACTION_GET);
        assert_eq!(
            e.selector("InstanceID"),
            Some("Intel(r) AMT Ethernet Port Settings 0")
        );
        assert_eq!(e.body_name, None);
    }

    #[test]
    fn refusals() {
        // SOAP 1.1 namespace
        let x = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>"#;
        assert!(matches!(
            parse(x.as_bytes()),
            Err(EnvelopeError::NotSoap12(_))
        ));
        let x = r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header></s:Header></s:Envelope>"#;
        assert_eq!(
            parse(x.as_bytes()),
            Err(EnvelopeError::Missing("wsa:Action"))
        );
        assert!(matches!(
            parse(b"<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><a></b>"),
            Err(EnvelopeError::Xml { .. })
        ));
        let deep = format!("<s:Envelope xmlns:s=\"{NS_SOAP}\">{}", "<x>".repeat(40));
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(EnvelopeError::Limit { .. })
        ));
        assert!(parse(b"").is_err());
    }

    #[test]
    fn built_envelopes_parse_back() {
        let body = element("Setup_OUTPUT", &[("ReturnValue", "0".into())]);
        let x = envelope(
            "http://intel.com/wbem/wscim/1/ips-schema/1/IPS_HostBasedSetupService/SetupResponse",
            "m1",
            "http://intel.com/wbem/wscim/1/ips-schema/1/IPS_HostBasedSetupService",
            &body,
        );
        let e = parse(x.as_bytes()).unwrap();
        assert_eq!(e.body_name.as_deref(), Some("Setup_OUTPUT"));
        assert_eq!(e.field("ReturnValue"), Some("0"));
        let f = fault("m1", "c:AccessDenied", "no <rights>");
        assert!(f.contains("no &lt;rights&gt;"));
    }
}
