//! Boot recovery with a digest-only journal fetches the original image from
//! a real org over loopback (`POST /v1/backup/fetch`, the agent's
//! `OrgBackup` as the `BackupSource`) and restores a flash left mixed.

mod common;

use common::*;
use fortros_agent::apply::OrgBackup;
use fortros_agent::enroll::EnrollClient;
use fortros_agent::hw::flash::file::MemFlash;
use fortros_agent::hw::flash::journal::{Journal, JournalBlock, JournalRecord, MemoryJournal};
use fortros_agent::hw::flash::recovery::{recover_image, Decision};
use fortros_agent::hw::flash::{read_image, sha256};
use fortros_wire::testing::sample_report;

const BLOCK: usize = 4096;

/// A digest-only record of one run at 0x8000 (four blocks) going from
/// `old` to `new`, as the TPM NV journal keeps it.
fn record(old: &[u8], new: &[u8]) -> JournalRecord {
    let run = 0x8000..0xC000;
    JournalRecord {
        device_size: old.len() as u64,
        block_size: BLOCK as u32,
        old_image_sha256: sha256(old),
        new_image_sha256: sha256(new),
        blocks: vec![JournalBlock {
            offset: run.start as u64,
            len: (run.end - run.start) as u32,
            old_sha256: sha256(&old[run.clone()]),
            new_sha256: sha256(&new[run]),
            old: None,
            new: None,
        }],
    }
}

#[test]
fn a_torn_write_is_restored_from_the_orgs_backup_and_not_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = fortros_org::keys::OrgKeys::init(dir.path()).unwrap();
    let client_key = keys.verifying();
    let (_org, srv) = start_org(dir.path(), keys, settings(true));
    let client = EnrollClient::new(&srv.url(), client_key);
    let mut node = SoftNode::new(9);
    client
        .enroll(&mut node, sample_report(&[], &[]), None)
        .unwrap();

    let old: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut new = old.clone();
    for b in new[0x8000..0xC000].iter_mut() {
        *b = 0xFF;
    }
    // The power went after the first two blocks of the run were written and
    // the third erased: new, new, erased, old.
    let mut torn = old.clone();
    torn[0x8000..0xA000].copy_from_slice(&new[0x8000..0xA000]);
    torn[0xA000..0xB000].fill(0xFF);
    let rec = record(&old, &new);

    // Not yet backed up at the org: refused, journal kept, nothing written.
    let mut flash = MemFlash::new(torn.clone(), BLOCK as u32);
    let mut journal = MemoryJournal::default();
    journal.store(&rec).unwrap();
    let mut image = read_image(&mut flash).unwrap();
    let mut source = OrgBackup {
        client: &client,
        tpm: &mut node,
        report: sample_report(&[], &[]),
    };
    let e = recover_image(&mut flash, &mut journal, &mut image, Some(&mut source), 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("journal kept") && e.contains("no backup"), "{e}");
    assert_eq!(flash.bytes, torn);
    assert!(journal.load().unwrap().is_some());

    // Backed up (as apply does before writing): restored from it.
    client
        .upload_backup(&mut node, sample_report(&[], &[]), &old)
        .unwrap();
    let mut source = OrgBackup {
        client: &client,
        tpm: &mut node,
        report: sample_report(&[], &[]),
    };
    let r = recover_image(&mut flash, &mut journal, &mut image, Some(&mut source), 3)
        .unwrap()
        .unwrap();
    assert_eq!(r.decision, Decision::RestoredFromBackup);
    assert!(r.backup.unwrap().starts_with("the org at http://"));
    assert_eq!(flash.bytes, old, "the chip holds the original again");
    assert_eq!(image.sha256, sha256(&old));
    // Only the three blocks that differed from the original were written.
    assert_eq!(r.blocks_rewritten, vec![0x8000]);
    let erases: Vec<_> = flash
        .log
        .iter()
        .filter(|(op, _, _)| *op == "erase")
        .collect();
    assert_eq!(erases, vec![&("erase", 0x8000, 0x3000)]);
    assert!(journal.load().unwrap().is_none());
}
