//! Where the original image goes before the flash is written: the org,
//! through its `POST /v1/backup` route, or a stand-in in tests.

use crate::enroll::{Attester, EnrollClient};
use fortros_wire::Report;

/// Keeps the original image somewhere safe before any write.
pub trait BackupStore {
    /// Stores `image` (whose SHA-256 is `sha256`) and returns the SHA-256
    /// the store acknowledged for the bytes it kept. `Err`: not kept.
    fn upload(&mut self, image: &[u8], sha256: [u8; 32]) -> Result<[u8; 32], String>;
}

/// The org as the backup store: uploads with a quote over `report` (the
/// boot's report; the nonce and image digest are filled in per upload).
pub struct OrgBackup<'a> {
    pub client: &'a EnrollClient,
    pub tpm: &'a mut dyn Attester,
    pub report: Report,
}

impl BackupStore for OrgBackup<'_> {
    fn upload(&mut self, image: &[u8], _sha256: [u8; 32]) -> Result<[u8; 32], String> {
        let ack = self
            .client
            .upload_backup(self.tpm, self.report.clone(), image)
            .map_err(|e| e.to_string())?;
        log::info!(
            "org node {} keeps backup {} ({} bytes{})",
            ack.node_id,
            hex::encode(ack.sha256.0),
            ack.size,
            if ack.already_held {
                ", already held"
            } else {
                ""
            }
        );
        Ok(ack.sha256.0)
    }
}

/// A backup store in memory (tests).
#[derive(Debug, Default)]
pub struct MemoryBackup {
    pub images: Vec<Vec<u8>>,
    /// When set, uploads fail with this reason.
    pub fail: Option<String>,
}

impl BackupStore for MemoryBackup {
    fn upload(&mut self, image: &[u8], sha256: [u8; 32]) -> Result<[u8; 32], String> {
        if let Some(f) = &self.fail {
            return Err(f.clone());
        }
        self.images.push(image.to_vec());
        let _ = sha256;
        Ok(crate::hw::flash::sha256(image))
    }
}
