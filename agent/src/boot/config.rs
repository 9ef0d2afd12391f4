//! The agent's configuration, `/etc/fortros/agent.toml` in the initramfs:
//! where the org is and how to trust it, what to do on failure, how to hand
//! off to the OS, which flash and modules to use.
//!
//! ```toml
//! mode = "enroll"              # default; "measure-only": measure, never enroll
//!
//! [org]
//! url = "http://10.0.2.2:18080"
//! public_key = "<64 hex digits: the org's ed25519 public key>"
//! # https: pin the org's TLS certificate (no system CA store is used)
//! org_cert_sha256 = "<64 hex digits, as fortros-org prints it>"
//! org_ca = "/etc/fortros/org.pem"   # or: the org's certificate / its CA (PEM)
//! allow_http = true            # plain http beyond loopback and 10.0.2.2
//! amt_key = "<64 hex digits: the org's X25519 AMT seal key (amt.pub)>"  # optional
//!
//! [failure]
//! policy = "continue"          # or "stop": no OS boot after a failure
//! on_enroll_failure = "stop"   # enrollment failed or impossible (default: policy)
//! on_apply_failure = "continue" # policy action failed or refused (default: policy)
//! stop_hold_seconds = 60       # "stop": keep the message on screen, then power off
//!
//! [handoff]
//! method = "kexec"             # or "switch_root", or "none" (power off)
//! root = "/dev/vdb"            # the OS root device, mounted read-only (kexec without
//!                              # root: kernel and initrd are files in the initramfs)
//! fstype = "ext4"
//! kernel = "/boot/vmlinuz"     # kexec: paths inside the root
//! initrd = "/boot/initrd.img"
//! cmdline = "console=ttyS0 root=/dev/vdb"
//! init = "/sbin/init"          # switch_root: the OS's init
//!
//! [flash]
//! device = "mtd"               # file:PATH, mtd, mtd:/dev/mtdN, flashrom:PROGRAMMER
//! journal = "tpm-nv"          # the write journal: "tpm-nv" (TPM NV index, digests only;
//!                              # the default when the node has a TPM), or an absolute
//!                              # file path on persistent storage (keeps the bytes)
//!
//! [network]
//! interface = "eth0"           # DHCP through busybox udhcpc; omit to skip
//!
//! [[modules]]
//! name = "block2mtd"
//! params = "block2mtd=/dev/vda,4096"
//! ```

use serde::Deserialize;

/// Where PID 1 reads the config.
pub const CONFIG_PATH: &str = "/etc/fortros/agent.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {field}: {what}")]
    Invalid {
        path: String,
        field: &'static str,
        what: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub mode: Mode,
    pub org: Org,
    #[serde(default)]
    pub failure: Failure,
    #[serde(default)]
    pub handoff: Handoff,
    #[serde(default)]
    pub flash: FlashConfig,
    #[serde(default)]
    pub network: Option<Network>,
    #[serde(default)]
    pub modules: Vec<Module>,
}

/// What the node is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Measure and enroll with the org; not reaching it is an enrollment
    /// failure, handled by `[failure] on_enroll_failure`.
    #[default]
    Enroll,
    /// Measure and print the report, never contact the org (said so
    /// explicitly, so a forgotten `[network]` is never mistaken for it).
    MeasureOnly,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Org {
    pub url: String,
    /// Hex of the org's 32-byte ed25519 public key (checked at parse).
    pub public_key: String,

    // TLS to the org: an https URL needs one of the two pins. Plain http
    // is allowed to loopback and to QEMU's user-net host (10.0.2.2) only,
    // unless `allow_http` says otherwise.
    /// PEM file in the initramfs: the org's certificate, or its CA.
    #[serde(default)]
    pub org_ca: Option<String>,
    /// SHA-256 of the org's certificate (hex; colons allowed).
    #[serde(default)]
    pub org_cert_sha256: Option<String>,
    /// Allow plain http to any org address.
    #[serde(default)]
    pub allow_http: bool,
    /// Hex of the org's X25519 key that AMT passwords generated on the node
    /// are sealed to (`fortros-org init` writes it to `amt.pub`).
    #[serde(default)]
    pub amt_key: Option<String>,
}

impl Org {
    /// The AMT seal key bytes, if configured (validated at parse).
    pub fn amt_key_bytes(&self) -> Option<[u8; 32]> {
        hex::decode(self.amt_key.as_ref()?).ok()?.try_into().ok()
    }

    /// The public key bytes (validated when the config was parsed).
    pub fn public_key_bytes(&self) -> [u8; 32] {
        hex::decode(&self.public_key)
            .ok()
            .and_then(|v| v.try_into().ok())
            .unwrap_or([0; 32])
    }

    /// The TLS pins (reads `org_ca`).
    pub fn trust(&self) -> Result<crate::enroll_tls::OrgTrust, crate::enroll_tls::TrustError> {
        crate::enroll_tls::OrgTrust::load(self.org_ca.as_deref(), self.org_cert_sha256.as_deref())
    }
}

/// Hosts plain http may reach without `allow_http`: this machine, and the
/// host of QEMU's user network (tests and demos).
fn http_allowed_by_default(host: &str) -> bool {
    host == "localhost"
        || host == "10.0.2.2"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What to do when enrollment or policy application fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Say so on the console and boot the OS anyway (the flash is never
    /// left half-written either way).
    #[default]
    Continue,
    /// Say so and do not boot the OS: power off.
    Stop,
}

/// `[failure]`: what each kind of failure does to the boot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// Boot steps (modules, flash, recovery) and the default for the others.
    #[serde(default)]
    pub policy: FailurePolicy,
    /// Enrollment failed or was impossible (no network, org unreachable,
    /// TPM missing, report rejected). Default: `policy`.
    pub on_enroll_failure: Option<FailurePolicy>,
    /// A policy action failed or was refused. Default: `policy`.
    pub on_apply_failure: Option<FailurePolicy>,
    /// With `stop`: how long the message stays on the console before the
    /// machine powers off (a person at the screen must be able to read it).
    #[serde(default = "default_stop_hold")]
    pub stop_hold_seconds: u64,
}

impl Default for Failure {
    fn default() -> Self {
        Failure {
            policy: FailurePolicy::default(),
            on_enroll_failure: None,
            on_apply_failure: None,
            stop_hold_seconds: default_stop_hold(),
        }
    }
}

impl Failure {
    pub fn on_enroll(&self) -> FailurePolicy {
        self.on_enroll_failure.unwrap_or(self.policy)
    }
    pub fn on_apply(&self) -> FailurePolicy {
        self.on_apply_failure.unwrap_or(self.policy)
    }
}

fn default_stop_hold() -> u64 {
    60
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HandoffMethod {
    Kexec,
    SwitchRoot,
    /// Power off after the agent's work (tests, or a measure-only node).
    #[default]
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handoff {
    #[serde(default)]
    pub method: HandoffMethod,
    pub root: Option<String>,
    #[serde(default = "default_fstype")]
    pub fstype: String,
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    #[serde(default)]
    pub cmdline: String,
    #[serde(default = "default_init")]
    pub init: String,
}

impl Default for Handoff {
    fn default() -> Self {
        Handoff {
            method: HandoffMethod::None,
            root: None,
            fstype: default_fstype(),
            kernel: None,
            initrd: None,
            cmdline: String::new(),
            init: default_init(),
        }
    }
}

fn default_fstype() -> String {
    "ext4".into()
}
fn default_init() -> String {
    "/sbin/init".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlashConfig {
    #[serde(default = "default_device")]
    pub device: String,
    pub journal: Option<String>,
}

/// Where the flash write journal lives (`[flash] journal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalChoice {
    /// The TPM NV index (digests only; the org keeps the original image).
    TpmNv,
    /// A file on persistent storage (digests and bytes).
    File(String),
    /// No journal: no TPM and no path. A power cut during a write is then
    /// seen only by the org (the image digest).
    None,
}

impl FlashConfig {
    /// The journal to use; `tpm_present` is whether the node has a TPM
    /// (the default is the TPM NV journal when it does).
    pub fn journal_choice(&self, tpm_present: bool) -> JournalChoice {
        match self.journal.as_deref() {
            Some(JOURNAL_TPM_NV) => JournalChoice::TpmNv,
            Some(path) => JournalChoice::File(path.to_string()),
            None if tpm_present => JournalChoice::TpmNv,
            None => JournalChoice::None,
        }
    }
}

/// The `[flash] journal` value that selects the TPM NV journal.
pub const JOURNAL_TPM_NV: &str = "tpm-nv";

impl Default for FlashConfig {
    fn default() -> Self {
        FlashConfig {
            device: default_device(),
            journal: None,
        }
    }
}

fn default_device() -> String {
    "mtd".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub interface: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Module {
    pub name: String,
    #[serde(default)]
    pub params: String,
}

/// https needs a pin; http needs a local org or `allow_http`.
fn check_org_transport(org: &Org) -> Result<(), String> {
    if let Some(f) = &org.org_cert_sha256 {
        crate::enroll_tls::parse_fingerprint(f).map_err(|e| e.to_string())?;
    }
    if let Some(ca) = &org.org_ca {
        if !ca.starts_with('/') {
            return Err(format!(
                "org_ca {ca:?} must be an absolute path in the initramfs"
            ));
        }
    }
    // The URL as the agent will use it: a bad one fails here, at boot
    // step 1, not at the first request.
    let url = crate::org_http::OrgUrl::parse(org.url.trim_end_matches('/'))?;
    let host = url.host.as_str();
    if url.https {
        if org.org_ca.is_none() && org.org_cert_sha256.is_none() {
            return Err(format!(
                "{:?} is https but no org certificate is pinned: set org_cert_sha256 or org_ca \
                 (no system CA store is used)",
                org.url
            ));
        }
    } else if !org.allow_http && !http_allowed_by_default(host) {
        return Err(format!(
            "{:?} is plain http to {host}: use https with a pinned certificate, or set \
             allow_http = true (plain http is allowed by default to loopback and 10.0.2.2 only)",
            org.url
        ));
    }
    Ok(())
}

impl Config {
    /// Parses and validates a config; `path` only names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.into(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let invalid = |field, what: String| ConfigError::Invalid {
            path: path.into(),
            field,
            what,
        };
        if !(cfg.org.url.starts_with("http://") || cfg.org.url.starts_with("https://")) {
            return Err(invalid(
                "org.url",
                format!("{:?} is not an http(s) URL", cfg.org.url),
            ));
        }
        check_org_transport(&cfg.org).map_err(|what| invalid("org.url", what))?;
        match hex::decode(&cfg.org.public_key) {
            Ok(k) if k.len() == 32 => {}
            _ => {
                return Err(invalid(
                    "org.public_key",
                    "must be 64 hex digits (an ed25519 public key)".into(),
                ))
            }
        }
        if let Some(k) = &cfg.org.amt_key {
            if !matches!(hex::decode(k), Ok(v) if v.len() == 32) {
                return Err(invalid(
                    "org.amt_key",
                    "must be 64 hex digits (the org's X25519 AMT seal key)".into(),
                ));
            }
        }
        let h = &cfg.handoff;
        match h.method {
            HandoffMethod::Kexec => {
                if h.kernel.is_none() {
                    return Err(invalid(
                        "handoff",
                        "kexec needs kernel (a path in root, or in the initramfs without root)"
                            .into(),
                    ));
                }
            }
            HandoffMethod::SwitchRoot => {
                if h.root.is_none() {
                    return Err(invalid(
                        "handoff",
                        "switch_root needs root (the OS device)".into(),
                    ));
                }
            }
            HandoffMethod::None => {}
        }
        for p in [&h.kernel, &h.initrd]
            .into_iter()
            .flatten()
            .chain([&h.init])
        {
            if !p.starts_with('/') {
                return Err(invalid(
                    "handoff",
                    format!("{p:?} must be an absolute path inside the root"),
                ));
            }
        }
        if h.cmdline.contains('\0') {
            return Err(invalid("handoff.cmdline", "contains a NUL byte".into()));
        }
        if let Some(j) = &cfg.flash.journal {
            if j != JOURNAL_TPM_NV && !j.starts_with('/') {
                return Err(invalid(
                    "flash.journal",
                    format!("{j:?} is neither \"{JOURNAL_TPM_NV}\" nor an absolute path"),
                ));
            }
        }
        if cfg.failure.stop_hold_seconds > 3600 {
            return Err(invalid(
                "failure.stop_hold_seconds",
                "at most 3600 (an hour on screen, then power off)".into(),
            ));
        }
        if cfg.modules.iter().any(|m| m.name.is_empty()) {
            return Err(invalid("modules", "a module without a name".into()));
        }
        Ok(cfg)
    }

    /// Reads [`CONFIG_PATH`] (or another path).
    pub fn load(path: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn full() -> String {
        format!(
            r#"
[org]
url = "http://10.0.2.2:18080"
public_key = "{KEY}"

[failure]
policy = "stop"
on_apply_failure = "continue"
stop_hold_seconds = 0

[handoff]
method = "kexec"
root = "/dev/vdb"
kernel = "/boot/vmlinuz"
initrd = "/boot/initrd.img"
cmdline = "console=ttyS0"

[flash]
device = "mtd:/dev/mtd0"
journal = "/fortros/flash.journal"

[network]
interface = "eth0"

[[modules]]
name = "virtio_pci"

[[modules]]
name = "block2mtd"
params = "block2mtd=/dev/vda,4096"
"#
        )
    }

    #[test]
    fn parses_a_full_config() {
        let c = Config::parse(&full(), "agent.toml").unwrap();
        assert_eq!(c.failure.policy, FailurePolicy::Stop);
        assert_eq!(c.failure.on_enroll(), FailurePolicy::Stop, "from policy");
        assert_eq!(c.failure.on_apply(), FailurePolicy::Continue);
        assert_eq!(c.failure.stop_hold_seconds, 0);
        assert_eq!(c.mode, Mode::Enroll);
        assert_eq!(c.handoff.method, HandoffMethod::Kexec);
        assert_eq!(c.handoff.fstype, "ext4");
        assert_eq!(c.handoff.init, "/sbin/init");
        assert_eq!(c.flash.device, "mtd:/dev/mtd0");
        assert_eq!(
            c.flash.journal_choice(true),
            JournalChoice::File("/fortros/flash.journal".into())
        );
        assert_eq!(c.network.unwrap().interface, "eth0");
        assert_eq!(c.modules[1].params, "block2mtd=/dev/vda,4096");
        assert_eq!(c.org.public_key_bytes()[0], 0xd7);
    }

    #[test]
    fn minimal_config_takes_safe_defaults() {
        let c = Config::parse(
            &format!(
                "[org]\nurl = \"https://org.example\"\npublic_key = \"{KEY}\"\norg_cert_sha256 = \"{KEY}\"\n"
            ),
            "a",
        )
        .unwrap();
        assert_eq!(c.failure.policy, FailurePolicy::Continue);
        assert_eq!(c.failure.on_enroll(), FailurePolicy::Continue);
        assert_eq!(c.failure.on_apply(), FailurePolicy::Continue);
        assert_eq!(c.failure.stop_hold_seconds, 60);
        assert_eq!(c.mode, Mode::Enroll);
        assert_eq!(c.handoff.method, HandoffMethod::None);
        assert_eq!(c.flash.device, "mtd");
        assert!(c.flash.journal.is_none());
        assert_eq!(c.flash.journal_choice(true), JournalChoice::TpmNv);
        assert_eq!(c.flash.journal_choice(false), JournalChoice::None);
        assert!(c.network.is_none());
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let bad_key = full().replace(KEY, "abcd");
        let e = Config::parse(&bad_key, "agent.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("agent.toml: org.public_key"), "{e}");

        let typo = full().replace("policy = \"stop\"", "policy = \"halt\"");
        let e = Config::parse(&typo, "agent.toml").unwrap_err().to_string();
        assert!(e.contains("agent.toml") && e.contains("halt"), "{e}");

        let unknown = full().replace("[network]", "[network]\nbogus = 1");
        let e = Config::parse(&unknown, "agent.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");

        let no_kernel = full().replace("kernel = \"/boot/vmlinuz\"\n", "");
        let e = Config::parse(&no_kernel, "agent.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kexec needs"), "{e}");

        let rel = full().replace("\"/boot/vmlinuz\"", "\"boot/vmlinuz\"");
        assert!(Config::parse(&rel, "a").is_err());

        let url = full().replace("http://10.0.2.2:18080", "10.0.2.2");
        assert!(Config::parse(&url, "a")
            .unwrap_err()
            .to_string()
            .contains("org.url"));

        let nv = full().replace("\"/fortros/flash.journal\"", "\"tpm-nv\"");
        let c = Config::parse(&nv, "a").unwrap();
        assert_eq!(c.flash.journal_choice(false), JournalChoice::TpmNv);
        let rel = full().replace("\"/fortros/flash.journal\"", "\"flash.journal\"");
        assert!(Config::parse(&rel, "a")
            .unwrap_err()
            .to_string()
            .contains("flash.journal"));

        assert!(Config::parse("not toml [", "a").is_err());

        let measure = format!("mode = \"measure-only\"\n{}", full());
        assert_eq!(
            Config::parse(&measure, "a").unwrap().mode,
            Mode::MeasureOnly
        );
        let bad_mode = format!("mode = \"measure\"\n{}", full());
        let e = Config::parse(&bad_mode, "agent.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("measure-only"), "{e}");
        let typo = full().replace("on_apply_failure", "on_apply_fail");
        assert!(Config::parse(&typo, "a").is_err());
        assert!(Config::load("/nonexistent/agent.toml")
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/agent.toml"));
    }

    fn org(url: &str, extra: &str) -> Result<Config, ConfigError> {
        Config::parse(
            &format!("[org]\nurl = \"{url}\"\npublic_key = \"{KEY}\"\n{extra}"),
            "agent.toml",
        )
    }

    #[test]
    fn https_needs_a_pinned_org_certificate() {
        let e = org("https://org.example:8443", "").unwrap_err().to_string();
        assert!(e.contains("org.url") && e.contains("pinned"), "{e}");
        let pin = format!("org_cert_sha256 = \"{}\"", "AB:".repeat(31) + "AB");
        let c = org("https://org.example:8443", &pin).unwrap();
        assert!(c.org.trust().unwrap().is_pinned());
        assert!(org("https://org.example", "org_ca = \"/etc/fortros/org.pem\"").is_ok());
        let e = org("https://org.example", "org_ca = \"org.pem\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute"), "{e}");
        let e = org("https://org.example", "org_cert_sha256 = \"abcd\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("org_cert_sha256"), "{e}");
    }

    #[test]
    fn plain_http_only_to_local_orgs_unless_allowed() {
        for ok in [
            "http://127.0.0.1:8443",
            "http://localhost/",
            "http://[::1]:80",
            "http://10.0.2.2:18080",
        ] {
            assert!(org(ok, "").is_ok(), "{ok}");
        }
        let e = org("http://10.0.0.5:8443", "").unwrap_err().to_string();
        assert!(e.contains("plain http") && e.contains("allow_http"), "{e}");
        assert!(org("http://10.0.0.5:8443", "allow_http = true").is_ok());
        assert!(org("http://user@127.0.0.1.evil.example/", "").is_err());
    }
}
