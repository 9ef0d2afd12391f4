//! Backups of node flash images: the org's half of `POST /v1/backup` and
//! `POST /v1/backup/fetch` (see `fortros_wire::exchange`).
//!
//! Before an agent writes its flash it sends the whole original image with
//! a quote over a report that names the image's SHA-256 and carries a fresh
//! nonce; the org checks the quote against the node's enrolled AK, hashes
//! the bytes itself, and keeps them keyed by node and digest. The agent
//! writes only after the acknowledgement, and records the digest the org
//! returned. A node may fetch its own backups back (to restore after an
//! interrupted write); operators fetch them with `fortros-org nodes backup`.

use crate::exchange::{now, ExchangeError, Org};
use crate::store::NodeStatus;
use fortros_wire::envelope::ReportEvidence;
use fortros_wire::exchange::*;
use fortros_wire::{Bytes, Digest32};
use sha2::{Digest, Sha256};

/// The largest image accepted: 64 MiB, the biggest SPI NOR in PC use.
pub const MAX_IMAGE: usize = 64 << 20;

impl Org {
    /// Checks the evidence (fresh nonce, the node's own AK) and returns the
    /// approved node it comes from, with the verified report.
    fn backup_node(
        &self,
        evidence: &ReportEvidence,
    ) -> Result<(crate::store::Node, fortros_wire::Report), ExchangeError> {
        let report = fortros_wire::Report::from_bytes(evidence.report.as_slice())
            .map_err(|e| ExchangeError::Malformed(e.to_string()))?;
        // Only enrolled nodes: a first-contact AK cannot use this route.
        let ak_name = fortros_wire::tpm::name_sha256(report.node.ak_public.as_slice());
        if self.registry.node_by_ak_name(&ak_name)?.is_none() {
            return Err(ExchangeError::UnknownNode);
        }
        let (verified, node) = self.verify_fresh(evidence)?;
        let node = node.ok_or(ExchangeError::UnknownNode)?;
        if node.status != NodeStatus::Approved {
            return Err(ExchangeError::NotApproved(node.id));
        }
        Ok((node, verified.report))
    }

    /// `POST /v1/backup`: keeps the node's original image.
    pub fn backup(&self, body: &[u8]) -> Result<BackupAck, ExchangeError> {
        let up =
            BackupUpload::from_bytes(body).map_err(|e| ExchangeError::Malformed(e.to_string()))?;
        if up.image.0.is_empty() || up.image.0.len() > MAX_IMAGE {
            return Err(ExchangeError::Backup(format!(
                "image of {} bytes (1 to {MAX_IMAGE} accepted)",
                up.image.0.len()
            )));
        }
        let (node, report) = self.backup_node(&up.evidence)?;
        let sha: [u8; 32] = Sha256::digest(up.image.as_slice()).into();
        let claimed = report
            .flash
            .as_ref()
            .map(|f| f.image_sha256.0)
            .ok_or_else(|| ExchangeError::Backup("the report names no flash image".into()))?;
        if claimed != sha {
            return Err(ExchangeError::Backup(format!(
                "the image hashes to {}, the quoted report says {}",
                hex::encode(sha),
                hex::encode(claimed)
            )));
        }
        let t = now();
        let new = self
            .registry
            .put_backup(node.id, &sha, up.image.as_slice(), t)?;
        if new {
            self.registry.add_event(
                node.id,
                "backup",
                &format!(
                    "flash image kept: {} bytes, SHA-256 {}",
                    up.image.0.len(),
                    hex::encode(sha)
                ),
                t,
            )?;
        }
        log::info!(
            "node {}: backup {} ({} bytes){}",
            node.id,
            hex::encode(sha),
            up.image.0.len(),
            if new { "" } else { ", already held" }
        );
        Ok(BackupAck {
            format: EXCHANGE_FORMAT,
            node_id: node.id,
            sha256: Digest32(sha),
            size: up.image.0.len() as u64,
            already_held: !new,
        })
    }

    /// `POST /v1/backup/fetch`: one of the node's own backups.
    pub fn fetch_backup(&self, body: &[u8]) -> Result<BackupImage, ExchangeError> {
        let req =
            BackupFetch::from_bytes(body).map_err(|e| ExchangeError::Malformed(e.to_string()))?;
        let (node, _) = self.backup_node(&req.evidence)?;
        let image = self
            .registry
            .backup(node.id, &req.sha256.0)?
            .ok_or_else(|| ExchangeError::NoBackup {
                node_id: node.id,
                sha256: hex::encode(req.sha256.0),
            })?;
        log::info!(
            "node {}: backup {} served",
            node.id,
            hex::encode(req.sha256.0)
        );
        Ok(BackupImage {
            format: EXCHANGE_FORMAT,
            sha256: req.sha256,
            image: Bytes(image),
        })
    }
}

/// `fortros-org nodes backup ID (-o FILE [--sha256 HEX] | --list) [--json]`.
pub(crate) fn cli_backup(
    dir: &std::path::Path,
    id: u64,
    output: Option<&std::path::Path>,
    sha256: Option<&str>,
    list: bool,
    json: bool,
) -> crate::cli::CliResult {
    use crate::cli::{input, op, open_registry};
    use crate::store::Registry;
    let reg = open_registry(dir)?;
    if reg.node(id).map_err(op)?.is_none() {
        return Err(input(format!("no node {id}")));
    }
    let all = reg.backups(id).map_err(op)?;
    if list {
        if json {
            println!("{}", serde_json::to_string_pretty(&all).map_err(op)?);
        } else {
            for b in &all {
                println!(
                    "{}  {:>10} bytes  received at {}",
                    hex::encode(&b.sha256),
                    b.size,
                    b.received_at
                );
            }
            println!("{} backup(s) of node {id}", all.len());
        }
        return Ok(());
    }
    let wanted = match sha256 {
        Some(h) => hex::decode(h)
            .ok()
            .filter(|v| v.len() == 32)
            .ok_or_else(|| input(format!("--sha256 {h:?}: not 64 hex digits")))?,
        None => all
            .last()
            .map(|b| b.sha256.clone())
            .ok_or_else(|| input(format!("node {id} has no backup")))?,
    };
    let image = reg
        .backup(id, &wanted)
        .map_err(op)?
        .ok_or_else(|| input(format!("node {id} has no backup {}", hex::encode(&wanted))))?;
    // The bytes must still be what was acknowledged to the node.
    let actual: [u8; 32] = Sha256::digest(&image).into();
    if actual[..] != wanted[..] {
        return Err(op(format!(
            "backup {} of node {id} is damaged in the registry: it hashes to {}",
            hex::encode(&wanted),
            hex::encode(actual)
        )));
    }
    let out = output.ok_or_else(|| input("-o FILE is required"))?;
    write_whole(out, &image).map_err(|e| op(format!("{}: {e}", out.display())))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"node_id": id, "sha256": hex::encode(&wanted),
                               "size": image.len(), "output": out.display().to_string()})
        );
    } else {
        println!(
            "node {id}: backup {} ({} bytes) written to {}",
            hex::encode(&wanted),
            image.len(),
            out.display()
        );
    }
    Ok(())
}

/// Writes a file whole or not at all (temporary file beside it, renamed).
fn write_whole(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}
