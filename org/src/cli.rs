//! `fortros-org`: the operator's commands. Read commands take `--json`.
//! Exit codes: 0 ok, 1 operational failure, 2 unusable input.

use crate::config::{OrgConfig, DATABASE_FILE};
use crate::diff::{self, Change};
use crate::exchange::{self, ExchangeSettings, Org};
use crate::export::{self, BlockEntry};
use crate::keys::{OrgKeys, PUBLIC_KEY_FILE};
use crate::policy::{self, AmtSpec, PolicySpec};
use crate::store::*;
use clap::{Args, Parser, Subcommand, ValueEnum};
use fortros_wire::ekcert::TrustAnchors;
use fortros_wire::envelope::ReportEvidence;
use fortros_wire::me_evidence::MeEvidence;
use fortros_wire::policy::{AmtControlMode, NeutralizeMode};
use fortros_wire::verify::{verify_report, Expectation};
use fortros_wire::Report;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "fortros-org",
    about = "FortrOS org: enrollment service, node registry, policies"
)]
pub struct Cli {
    /// The org folder (keys, org.toml, registry.sqlite).
    #[arg(long, env = "FORTROS_ORG_DIR", default_value = ".")]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Create the org keys, a default org.toml and the registry.
    Init {
        /// Also create a self-signed TLS certificate for HOST (the name or
        /// IP address nodes use), set it in org.toml and print its SHA-256
        /// for the nodes' agent.toml (org_cert_sha256).
        #[arg(long, value_name = "HOST")]
        tls_self_signed: Option<String>,
    },
    /// Run the enrollment service.
    Serve {
        /// Listen address (default from org.toml: loopback).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Set or show policies.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// The fleet.
    #[command(subcommand)]
    Nodes(NodesCmd),
    /// Reports.
    #[command(subcommand)]
    Report(ReportCmd),
    /// Exports.
    #[command(subcommand)]
    Export(ExportCmd),
}

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Scope {
    /// A node's own policy.
    #[arg(long)]
    node: Option<u64>,
    /// A group's policy (nodes without their own).
    #[arg(long)]
    group: Option<String>,
}

impl Scope {
    fn get(&self) -> PolicyScope {
        match (&self.node, &self.group) {
            (Some(id), _) => PolicyScope::Node(*id),
            (None, Some(g)) => PolicyScope::Group(g.clone()),
            (None, None) => PolicyScope::Group(String::new()),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ActionArg {
    Ignore,
    Neutralize,
    Use,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ModeArg {
    DisableBit,
    Strip,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ControlArg {
    Client,
    Admin,
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Set the policy of a node or a group.
    Set {
        #[command(flatten)]
        scope: Scope,
        action: ActionArg,
        /// neutralize: disable bit only, or strip + disable bit.
        #[arg(long, value_enum, default_value = "disable-bit")]
        mode: ModeArg,
        /// use: file holding the AMT admin password (8-32 bytes, one line).
        /// Or set FORTROS_AMT_PASSWORD. Never on the command line. Neither:
        /// each node generates its own from its TPM and seals it to the org.
        #[arg(long)]
        amt_password_file: Option<PathBuf>,
        /// use: unprovision an AMT provisioned by someone else (CCM only)
        /// instead of leaving it alone.
        #[arg(long)]
        unprovision_foreign: bool,
        #[arg(long, value_enum, default_value = "admin")]
        control_mode: ControlArg,
        #[arg(long)]
        interface: Option<String>,
        #[arg(long)]
        kvm: bool,
        #[arg(long)]
        sol: bool,
    },
    /// Show the stored policy of a node or group (AMT password not shown).
    Show {
        #[command(flatten)]
        scope: Scope,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum NodesCmd {
    /// The fleet table: ME state per node.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One node: record, events, report history, last report, last diff.
    Show {
        id: u64,
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending node (also acknowledges "TPM cleared").
    Approve { id: u64 },
    /// Put a node in a group (empty name: none).
    Group { id: u64, group: String },
    /// A flash image the node sent before writing its flash: write it to
    /// FILE (the latest, or the one with --sha256), or list them.
    Backup {
        id: u64,
        #[arg(short = 'o', long = "output", required_unless_present = "list")]
        output: Option<PathBuf>,
        /// Which backup (hex SHA-256); default: the latest.
        #[arg(long)]
        sha256: Option<String>,
        /// List the node's backups instead.
        #[arg(long)]
        list: bool,
        #[arg(long)]
        json: bool,
    },
    /// Reset a node out of band through its AMT (WS-MAN
    /// RequestPowerStateChange as admin, with the credential the org holds).
    Reboot {
        id: u64,
        /// The node's AMT WS-MAN endpoint, host:port (AMT listens on 16992).
        #[arg(long)]
        amt: String,
    },
}

#[derive(Subcommand)]
pub enum ReportCmd {
    /// Verify a report evidence file (postcard ReportEvidence).
    Verify {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Nft,
    Csv,
}

#[derive(Subcommand)]
pub enum ExportCmd {
    /// ME MACs and AMT ports as nftables rules or CSV.
    NetworkBlock {
        #[arg(long, value_enum, default_value = "nft")]
        format: ExportFormat,
        #[arg(long)]
        json: bool,
    },
}

/// A failure with its exit code.
pub struct Failure {
    pub code: i32,
    pub message: String,
}

pub(crate) fn op<E: std::fmt::Display>(e: E) -> Failure {
    Failure {
        code: 1,
        message: e.to_string(),
    }
}

pub(crate) fn input<E: std::fmt::Display>(e: E) -> Failure {
    Failure {
        code: 2,
        message: e.to_string(),
    }
}

pub(crate) type CliResult = Result<(), Failure>;

pub(crate) fn open_registry(dir: &Path) -> Result<SqliteRegistry, Failure> {
    SqliteRegistry::open(&dir.join(DATABASE_FILE)).map_err(op)
}

pub fn run(cli: Cli) -> CliResult {
    let dir = cli.dir.as_path();
    match cli.cmd {
        Cmd::Init { tls_self_signed } => init(dir, tls_self_signed.as_deref()),
        Cmd::Serve { listen } => serve(dir, listen),
        Cmd::Policy(PolicyCmd::Set {
            scope,
            action,
            mode,
            amt_password_file,
            unprovision_foreign,
            control_mode,
            interface,
            kvm,
            sol,
        }) => {
            let scope = scope.get();
            let spec = match action {
                ActionArg::Ignore => PolicySpec::Ignore,
                ActionArg::Neutralize => PolicySpec::Neutralize {
                    mode: match mode {
                        ModeArg::DisableBit => NeutralizeMode::DisableBit,
                        ModeArg::Strip => NeutralizeMode::DisableBitAndStrip,
                    },
                },
                ActionArg::Use => {
                    let keys = OrgKeys::load(dir).map_err(op)?;
                    let encrypted = match read_password(amt_password_file.as_deref())? {
                        Some(password) => {
                            fortros_amt::password::check(&password).map_err(input)?;
                            policy::encrypt_password(&keys.secrets, &scope, &password)
                                .map_err(input)?
                        }
                        None => Vec::new(),
                    };
                    PolicySpec::Use {
                        amt: AmtSpec {
                            admin_password_encrypted: encrypted,
                            unprovision_foreign,
                            control_mode: match control_mode {
                                ControlArg::Client => AmtControlMode::Client,
                                ControlArg::Admin => AmtControlMode::Admin,
                            },
                            interface,
                            enable_kvm: kvm,
                            enable_sol: sol,
                        },
                    }
                }
            };
            let reg = open_registry(dir)?;
            if let PolicyScope::Node(id) = scope {
                if reg.node(id).map_err(op)?.is_none() {
                    return Err(input(format!("no node {id}")));
                }
            }
            let json = serde_json::to_string(&spec).map_err(op)?;
            reg.set_policy(&scope, &json, exchange::now()).map_err(op)?;
            println!(
                "policy for {} set: {}",
                policy::scope_label(&scope),
                describe(&spec)
            );
            Ok(())
        }
        Cmd::Policy(PolicyCmd::Show { scope, json }) => {
            let scope = scope.get();
            let reg = open_registry(dir)?;
            let spec = match reg.policy(&scope).map_err(op)? {
                Some(j) => policy::parse_spec(&scope, &j).map_err(op)?,
                None => PolicySpec::Ignore,
            };
            if json {
                println!(
                    "{}",
                    json!({"scope": policy::scope_label(&scope), "policy": redact(&spec)})
                );
            } else {
                println!("{}: {}", policy::scope_label(&scope), describe(&spec));
            }
            Ok(())
        }
        Cmd::Nodes(NodesCmd::List { json }) => nodes_list(dir, json),
        Cmd::Nodes(NodesCmd::Show { id, json }) => nodes_show(dir, id, json),
        Cmd::Nodes(NodesCmd::Approve { id }) => {
            let reg = open_registry(dir)?;
            if !reg.set_status(id, NodeStatus::Approved).map_err(op)? {
                return Err(input(format!("no node {id}")));
            }
            reg.add_event(id, "approved", "by operator", exchange::now())
                .map_err(op)?;
            println!("node {id} approved");
            Ok(())
        }
        Cmd::Nodes(NodesCmd::Group { id, group }) => {
            let reg = open_registry(dir)?;
            let g = (!group.is_empty()).then_some(group.as_str());
            if !reg.set_group(id, g).map_err(op)? {
                return Err(input(format!("no node {id}")));
            }
            println!("node {id} group: {}", g.unwrap_or("-"));
            Ok(())
        }
        Cmd::Nodes(NodesCmd::Backup {
            id,
            output,
            sha256,
            list,
            json,
        }) => crate::backup::cli_backup(dir, id, output.as_deref(), sha256.as_deref(), list, json),
        Cmd::Nodes(NodesCmd::Reboot { id, amt }) => nodes_reboot(dir, id, &amt),
        Cmd::Report(ReportCmd::Verify { file, json }) => report_verify(dir, &file, json),
        Cmd::Export(ExportCmd::NetworkBlock { format, json }) => export_block(dir, format, json),
    }
}

/// The org's AMT password, if given (file or FORTROS_AMT_PASSWORD).
fn read_password(file: Option<&Path>) -> Result<Option<String>, Failure> {
    let raw = match file {
        Some(f) => {
            std::fs::read_to_string(f).map_err(|e| input(format!("{}: {e}", f.display())))?
        }
        None => match std::env::var("FORTROS_AMT_PASSWORD") {
            Ok(v) => v,
            Err(_) => return Ok(None),
        },
    };
    Ok(Some(raw.trim_end_matches(['\r', '\n']).to_string()))
}

fn describe(spec: &PolicySpec) -> String {
    match spec {
        PolicySpec::Ignore => "ignore".into(),
        PolicySpec::Neutralize { mode } => format!("neutralize ({mode:?})"),
        PolicySpec::Use { amt } => format!(
            "use AMT ({:?} control, interface {}, kvm {}, sol {}, {}{})",
            amt.control_mode,
            amt.interface.as_deref().unwrap_or("-"),
            amt.enable_kvm,
            amt.enable_sol,
            if amt.admin_password_encrypted.is_empty() {
                "admin password generated by each node"
            } else {
                "admin password encrypted"
            },
            if amt.unprovision_foreign {
                ", unprovision foreign AMT"
            } else {
                ""
            }
        ),
    }
}

/// The spec as JSON without the encrypted password.
fn redact(spec: &PolicySpec) -> serde_json::Value {
    let mut v = serde_json::to_value(spec).unwrap_or_default();
    if let Some(amt) = v.get_mut("amt").and_then(|a| a.as_object_mut()) {
        let set = amt
            .get("admin_password_encrypted")
            .and_then(|v| v.as_str())
            .is_some_and(|v| !v.is_empty());
        amt.insert(
            "admin_password_encrypted".into(),
            json!(if set { "(set)" } else { "(node-generated)" }),
        );
    }
    v
}

fn init(dir: &Path, tls_host: Option<&str>) -> CliResult {
    let keys = OrgKeys::init(dir).map_err(op)?;
    OrgConfig::write_default(dir).map_err(op)?;
    open_registry(dir)?;
    println!("org keys created in {}", dir.display());
    println!(
        "org public key ({}): {}",
        dir.join(PUBLIC_KEY_FILE).display(),
        hex::encode(keys.verifying().as_bytes())
    );
    if let Some(host) = tls_host {
        init_tls(dir, host)?;
    }
    let amt_pub = hex::encode(crate::amt::seal_public(&keys.secrets));
    let amt_path = dir.join(crate::amt::AMT_PUBLIC_KEY_FILE);
    std::fs::write(&amt_path, format!("{amt_pub}\n"))
        .map_err(|e| op(format!("{}: {e}", amt_path.display())))?;
    println!(
        "org AMT seal key ({}, agent config [org] amt_key): {amt_pub}",
        amt_path.display()
    );
    Ok(())
}

/// Files `init --tls-self-signed` writes, in the org folder.
const TLS_CERT_FILE: &str = "tls-cert.pem";
const TLS_KEY_FILE: &str = "tls-key.pem";

/// A self-signed certificate for `host`, named in org.toml.
fn init_tls(dir: &Path, host: &str) -> CliResult {
    let config = OrgConfig::load(dir).map_err(input)?;
    if let Some(cert) = &config.tls_cert {
        return Err(input(format!(
            "org.toml already names tls_cert {}: not replaced",
            cert.display()
        )));
    }
    let (cert_path, key_path) = (dir.join(TLS_CERT_FILE), dir.join(TLS_KEY_FILE));
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(input(format!("{} exists: not overwritten", p.display())));
        }
    }
    let made = crate::tls::self_signed(host).map_err(input)?;
    write_private(&key_path, made.key_pem.as_bytes())?;
    std::fs::write(&cert_path, &made.cert_pem)
        .map_err(|e| op(format!("{}: {e}", cert_path.display())))?;
    let toml_path = dir.join(crate::config::CONFIG_FILE);
    let mut text = std::fs::read_to_string(&toml_path)
        .map_err(|e| op(format!("{}: {e}", toml_path.display())))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "tls_cert = \"{TLS_CERT_FILE}\"\ntls_key = \"{TLS_KEY_FILE}\"\n"
    ));
    std::fs::write(&toml_path, text).map_err(|e| op(format!("{}: {e}", toml_path.display())))?;
    println!(
        "TLS certificate for {host} (self-signed): {}",
        cert_path.display()
    );
    println!(
        "TLS certificate SHA-256: {}  (agent.toml [org]: org_cert_sha256)",
        made.fingerprint
    );
    Ok(())
}

/// Writes a file only its owner may read (a private key).
fn write_private(path: &Path, bytes: &[u8]) -> CliResult {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| op(format!("{}: {e}", path.display())))
}

/// Builds the exchange from the org folder.
pub fn load_org(dir: &Path) -> Result<(Org, OrgConfig), Failure> {
    let config = OrgConfig::load(dir).map_err(input)?;
    let keys = OrgKeys::load(dir).map_err(op)?;
    let registry = Arc::new(open_registry(dir)?);
    let ek_anchors = if config.ek_roots.is_empty() {
        None
    } else {
        let mut anchors = TrustAnchors::default();
        let load = |p: &PathBuf| {
            std::fs::read(p)
                .map_err(|e| input(format!("{}: {e}", p.display())))
                .and_then(|b| {
                    TrustAnchors::parse_pem(&b).map_err(|e| input(format!("{}: {e}", p.display())))
                })
        };
        for p in &config.ek_roots {
            anchors.roots.extend(load(p)?);
        }
        for p in &config.ek_intermediates {
            anchors.intermediates.extend(load(p)?);
        }
        Some(anchors)
    };
    let org = Org {
        registry,
        keys,
        settings: ExchangeSettings {
            auto_approve: config.auto_approve,
            nonce_ttl_secs: config.nonce_ttl_secs,
            ek_anchors,
        },
    };
    Ok((org, config))
}

fn serve(dir: &Path, listen: Option<String>) -> CliResult {
    let (org, config) = load_org(dir)?;
    let listen = listen.unwrap_or(config.listen.clone());
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::load(cert, key).map_err(input)?),
        _ => None,
    };
    let rt = tokio::runtime::Runtime::new().map_err(op)?;
    if let Some(tls) = tls {
        return rt.block_on(serve_tls(org, &listen, tls));
    }
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| op(format!("listen {listen}: {e}")))?;
        log::info!(
            "fortros-org serving on http://{}",
            listener.local_addr().map_err(op)?
        );
        eprintln!("fortros-org: serving on http://{listen}");
        crate::server::serve(Arc::new(org), listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(op)
    })
}

/// `serve` with the certificate of org.toml.
async fn serve_tls(org: Org, listen: &str, tls: crate::tls::ServerTls) -> CliResult {
    let listener =
        std::net::TcpListener::bind(listen).map_err(|e| op(format!("listen {listen}: {e}")))?;
    listener.set_nonblocking(true).map_err(op)?;
    let addr = listener.local_addr().map_err(op)?;
    log::info!(
        "fortros-org serving on https://{addr}, TLS certificate SHA-256 {}",
        tls.fingerprint
    );
    eprintln!("fortros-org: serving on https://{addr}");
    eprintln!(
        "fortros-org: TLS certificate SHA-256 {} (agent.toml [org]: org_cert_sha256)",
        tls.fingerprint
    );
    crate::server::serve_tls(Arc::new(org), listener, tls.config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(op)
}

/// The last enrollment report of a node, decoded.
fn last_report(reg: &dyn Registry, id: u64) -> Result<Option<(StoredReport, Report)>, Failure> {
    let Some(stored) = reg.last_report(id, ReportKind::Enroll).map_err(op)? else {
        return Ok(None);
    };
    let report = decode_evidence(&stored.evidence)
        .map_err(|e| op(format!("node {id} report {}: {e}", stored.id)))?
        .1;
    Ok(Some((stored, report)))
}

fn decode_evidence(bytes: &[u8]) -> Result<(ReportEvidence, Report), String> {
    let ev = ReportEvidence::from_bytes(bytes).map_err(|e| e.to_string())?;
    let r = Report::from_bytes(ev.report.as_slice()).map_err(|e| e.to_string())?;
    Ok((ev, r))
}

/// One row of the fleet table.
#[derive(serde::Serialize)]
struct FleetRow {
    id: u64,
    status: NodeStatus,
    tpm_cleared: bool,
    group: Option<String>,
    me_image: String,
    me_live: String,
    /// The live firmware's version, else the image's (the table's column).
    me_version: String,
    me_live_version: String,
    me_image_version: String,
    /// The image's disable strap: "set", "clear" or "-".
    disable_bit: String,
    amt: String,
    changes_last_boot: usize,
    last_seen: i64,
    ak_name: String,
}

fn fleet(reg: &dyn Registry) -> Result<Vec<FleetRow>, Failure> {
    let mut rows = Vec::new();
    for n in reg.nodes().map_err(op)? {
        let last = last_report(reg, n.id)?;
        let (me, changes) = match &last {
            Some((stored, r)) => (
                Some(r),
                stored
                    .diff_json
                    .as_deref()
                    .and_then(|j| serde_json::from_str::<Vec<Change>>(j).ok())
                    .map(|c| c.len())
                    .unwrap_or(0),
            ),
            None => (None, 0),
        };
        let word = |f: fn(&Report) -> String| me.map(f).unwrap_or_else(|| "-".into());
        rows.push(FleetRow {
            id: n.id,
            status: n.status,
            tpm_cleared: n.tpm_cleared,
            group: n.group.clone(),
            me_image: word(diff::image_state),
            me_live: word(diff::live_state),
            me_version: word(diff::me_version),
            me_live_version: word(diff::live_version),
            me_image_version: word(diff::image_version),
            disable_bit: word(diff::disable_bit),
            amt: word(diff::amt_state),
            changes_last_boot: changes,
            last_seen: n.last_seen,
            ak_name: hex::encode(&n.ak_name),
        });
    }
    Ok(rows)
}

fn nodes_list(dir: &Path, json: bool) -> CliResult {
    let reg = open_registry(dir)?;
    let rows = fleet(&reg)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(op)?);
        return Ok(());
    }
    println!(
        "{:>4}  {:<8}  {:<11}  {:<8}  {:<19}  {:<16}  {:<14}  {:<7}  {:<20}  {:>7}  AK",
        "ID",
        "STATUS",
        "FLAGS",
        "GROUP",
        "ME IMAGE",
        "ME LIVE",
        "ME VERSION",
        "DISABLE",
        "AMT",
        "CHANGES"
    );
    for r in &rows {
        println!(
            "{:>4}  {:<8}  {:<11}  {:<8}  {:<19}  {:<16}  {:<14}  {:<7}  {:<20}  {:>7}  {}",
            r.id,
            r.status.as_str(),
            if r.tpm_cleared { "TPM-CLEARED" } else { "-" },
            r.group.as_deref().unwrap_or("-"),
            r.me_image,
            r.me_live,
            r.me_version,
            r.disable_bit,
            r.amt,
            r.changes_last_boot,
            r.ak_name.get(..16).unwrap_or(&r.ak_name)
        );
    }
    println!("{} node(s)", rows.len());
    Ok(())
}

fn nodes_show(dir: &Path, id: u64, json: bool) -> CliResult {
    let reg = open_registry(dir)?;
    let node = reg
        .node(id)
        .map_err(op)?
        .ok_or_else(|| input(format!("no node {id}")))?;
    let history = reg.reports(id).map_err(op)?;
    let events = reg.events(id).map_err(op)?;
    let backups = reg.backups(id).map_err(op)?;
    let last = last_report(&reg, id)?;
    let last_diff: Vec<Change> = last
        .as_ref()
        .and_then(|(s, _)| s.diff_json.as_deref())
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_default();
    let hist: Vec<serde_json::Value> = history
        .iter()
        .map(|h| {
            let changes: Vec<Change> = h
                .diff_json
                .as_deref()
                .and_then(|j| serde_json::from_str(j).ok())
                .unwrap_or_default();
            json!({"report_id": h.id, "kind": h.kind, "received_at": h.received_at,
                   "changes": changes})
        })
        .collect();
    if json {
        let report: serde_json::Value = last
            .as_ref()
            .and_then(|(_, r)| serde_json::to_value(r).ok())
            .unwrap_or(serde_json::Value::Null);
        let evidence: serde_json::Value = last
            .as_ref()
            .and_then(|(_, r)| MeEvidence::from_report(r))
            .map(|e| match e {
                Ok(e) => serde_json::to_value(e).unwrap_or_default(),
                Err(e) => json!({ "error": e.to_string() }),
            })
            .unwrap_or(serde_json::Value::Null);
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "node": node, "events": events, "history": hist,
                "last_diff": last_diff, "last_report": report, "me_evidence": evidence,
                "backups": backups,
            }))
            .map_err(op)?
        );
        return Ok(());
    }
    println!(
        "node {}  status {}{}",
        node.id,
        node.status.as_str(),
        if node.tpm_cleared {
            "  TPM CLEARED (known EK, new AK): approve to acknowledge"
        } else {
            ""
        }
    );
    println!("  AK name        {}", hex::encode(&node.ak_name));
    println!("  EK sha256      {}", hex::encode(&node.ek_sha256));
    println!("  EK certificate {}", node.ek_certificate);
    println!("  group          {}", node.group.as_deref().unwrap_or("-"));
    println!("  policy serial  {}", node.policy_serial);
    println!("events:");
    for e in &events {
        println!("  {}  {:<12} {}", e.at, e.kind, e.detail);
    }
    println!("backups (fortros-org nodes backup {id} -o FILE [--sha256 HEX]):");
    for b in &backups {
        println!(
            "  {}  {} bytes  at {}",
            hex::encode(&b.sha256),
            b.size,
            b.received_at
        );
    }
    println!("history:");
    for h in &hist {
        println!(
            "  report {:>5}  {:<8} at {}  {} change(s)",
            h["report_id"],
            h["kind"].as_str().unwrap_or(""),
            h["received_at"],
            h["changes"].as_array().map(|a| a.len()).unwrap_or(0)
        );
    }
    println!("changes since the previous enrollment:");
    if last_diff.is_empty() {
        println!("  none");
    }
    for c in &last_diff {
        println!("  {c}");
    }
    if let Some((_, r)) = &last {
        for line in me_lines(r) {
            println!("{line}");
        }
        println!("last report:\n{}", r.to_json());
    }
    Ok(())
}

/// The ME as the last report shows it, for people: states, versions, the
/// disable bit, and the agent's evidence (extension 1).
fn me_lines(r: &Report) -> Vec<String> {
    let family = r
        .flash
        .as_ref()
        .and_then(|f| f.me_image.as_ref())
        .map(|m| m.family.clone())
        .unwrap_or_else(|| "-".into());
    let mut out = vec![
        "ME:".to_string(),
        format!(
            "  image          {} ({family} {}), disable bit {}",
            diff::image_state(r),
            diff::image_version(r),
            diff::disable_bit(r)
        ),
        format!(
            "  live           {} (firmware {}), AMT {}",
            diff::live_state(r),
            diff::live_version(r),
            diff::amt_state(r)
        ),
    ];
    match MeEvidence::from_report(r) {
        None => {}
        Some(Err(e)) => out.push(format!("  evidence       unreadable: {e}")),
        Some(Ok(ev)) => {
            let lists = [
                ("image", &ev.image_evidence),
                ("live", &ev.live_evidence),
                ("not seen", &ev.not_seen),
            ];
            for (what, lines) in lists {
                for l in lines {
                    out.push(format!("  {what:<14} {l}"));
                }
            }
        }
    }
    out
}

fn report_verify(dir: &Path, file: &Path, json: bool) -> CliResult {
    let bytes = std::fs::read(file).map_err(|e| input(format!("{}: {e}", file.display())))?;
    let (evidence, report) =
        decode_evidence(&bytes).map_err(|e| input(format!("{}: {e}", file.display())))?;
    // The registry is optional: without it, only the evidence itself is checked.
    let reg = SqliteRegistry::open(&dir.join(DATABASE_FILE)).ok();
    let ak_name = fortros_wire::tpm::name_sha256(report.node.ak_public.as_slice());
    let node = reg
        .as_ref()
        .and_then(|r| r.node_by_ak_name(&ak_name).ok().flatten());
    let nonce_status = reg.as_ref().and_then(|r| {
        r.nonce_status(report.nonce.as_slice(), exchange::now())
            .ok()
    });
    let result = verify_report(
        &evidence,
        &Expectation {
            nonce: report.nonce.as_slice(),
            enrolled_ak: node.as_ref().map(|n| n.ak_public.as_slice()),
        },
    );
    let nonce_word = match nonce_status {
        None => "unknown (no registry)",
        Some(NonceStatus::Unknown) => "not issued by this org",
        Some(NonceStatus::Fresh) => "issued, not yet used",
        Some(NonceStatus::Used) => "issued and used",
        Some(NonceStatus::Expired) => "issued, expired unused",
    };
    let ok = result.is_ok();
    if json {
        println!(
            "{}",
            json!({
                "file": file.display().to_string(),
                "verified": ok,
                "error": result.as_ref().err().map(|e| e.to_string()),
                "ak_name": hex::encode(&ak_name),
                "node_id": node.as_ref().map(|n| n.id),
                "nonce": nonce_word,
            })
        );
    } else {
        match &result {
            Ok(_) => println!("{}: quote verifies under the report's AK", file.display()),
            Err(e) => println!("{}: NOT verified: {e}", file.display()),
        }
        println!("  AK name {}", hex::encode(&ak_name));
        match &node {
            Some(n) => println!("  node {} ({})", n.id, n.status.as_str()),
            None => println!("  node not enrolled with this org"),
        }
        println!("  nonce {nonce_word}");
    }
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(op(format!("{}: {e}", file.display()))),
    }
}

fn export_block(dir: &Path, format: ExportFormat, json: bool) -> CliResult {
    let reg = open_registry(dir)?;
    let mut entries = Vec::new();
    for n in reg.nodes().map_err(op)? {
        let net = last_report(&reg, n.id)?.and_then(|(_, r)| r.network);
        let mac =
            |b: Option<&fortros_wire::Bytes>| b.and_then(|b| export::format_mac(b.as_slice()));
        entries.push(BlockEntry {
            node_id: n.id,
            ak_name: hex::encode(&n.ak_name),
            me_mac: mac(net.as_ref().and_then(|x| x.me_mac.as_ref())),
            host_mac: mac(net.as_ref().and_then(|x| x.host_mac.as_ref())),
            observed_amt_ports: net.map(|x| x.amt_ports).unwrap_or_default(),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&entries).map_err(op)?);
        return Ok(());
    }
    print!(
        "{}",
        match format {
            ExportFormat::Nft => export::nftables(&entries),
            ExportFormat::Csv => export::csv(&entries),
        }
    );
    Ok(())
}

/// `nodes reboot`: reset through AMT with the credential the org holds.
fn nodes_reboot(dir: &Path, id: u64, amt_addr: &str) -> CliResult {
    use crate::amt::PowerControl;
    let reg = open_registry(dir)?;
    if reg.node(id).map_err(op)?.is_none() {
        return Err(input(format!("no node {id}")));
    }
    let keys = OrgKeys::load(dir).map_err(op)?;
    let cred = reg
        .amt_credential(id)
        .map_err(op)?
        .ok_or_else(|| op(crate::amt::AmtError::NoCredential(id)))?;
    let password = crate::amt::decrypt_credential(&keys.secrets, &cred).map_err(op)?;
    let password = String::from_utf8(password.to_vec())
        .map(zeroize::Zeroizing::new)
        .map_err(|_| op("stored AMT password is not UTF-8"))?;
    let mut power = crate::amt::AmtPower::new(amt_addr, &cred.username, &password);
    let said = power.reset().map_err(op)?;
    reg.add_event(
        id,
        "power",
        &format!("reset through AMT at {amt_addr}"),
        exchange::now(),
    )
    .map_err(op)?;
    println!("node {id}: {said}");
    Ok(())
}
