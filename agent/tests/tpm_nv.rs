//! TPM NV primitives and the FortrOS NV slots against a real swtpm.

mod common;

use fortros_agent::hw::tpm::client::Tpm;
use fortros_agent::hw::tpm::nv::{
    self, attr, NvError, NvSlot, Provisioned, FORTROS_NV_ATTRIBUTES, JOURNAL_INDEX,
};
use fortros_agent::hw::tpm::SocketTransport;
use fortros_testkit::swtpm::{Swtpm, SwtpmOptions};

fn connect(sw: &Swtpm) -> Tpm<SocketTransport> {
    Tpm::new(SocketTransport::connect(sw.socket_path()).expect("connect to swtpm"))
}

#[test]
fn journal_slot_round_trips_in_chunks_persists_and_is_cleared_by_tpm_clear() {
    let Some(mut sw) = Swtpm::start_or_skip("nv_slot_round_trip", SwtpmOptions::default()) else {
        return;
    };
    let payload: Vec<u8> = (0..1900u32).map(|i| (i * 7 % 251) as u8).collect();
    {
        let mut tpm = connect(&sw);
        let buffer_max = tpm.tpm_property(nv::PT_NV_BUFFER_MAX).unwrap();
        assert!(
            (payload.len() as u32) > buffer_max,
            "the payload must need more than one NV_Write ({buffer_max})"
        );
        let mut slot = NvSlot::journal(&mut tpm).unwrap();
        assert!(slot.capacity() >= payload.len(), "{slot:?}");
        assert_eq!(slot.load(&mut tpm).unwrap(), None, "not defined yet");
        assert_eq!(slot.ensure(&mut tpm).unwrap(), Provisioned::Created);
        assert_eq!(slot.ensure(&mut tpm).unwrap(), Provisioned::Existing);
        assert_eq!(slot.load(&mut tpm).unwrap(), None, "defined but empty");

        let public = tpm.nv_read_public(JOURNAL_INDEX).unwrap().unwrap();
        assert_eq!(public.attributes & !attr::STATE, FORTROS_NV_ATTRIBUTES);
        assert_eq!(public.data_size, slot.size);

        slot.store(&mut tpm, &payload).unwrap();
        assert_eq!(slot.load(&mut tpm).unwrap().as_deref(), Some(&payload[..]));
        let too_big = vec![1u8; slot.capacity() + 1];
        assert!(matches!(
            slot.store(&mut tpm, &too_big),
            Err(NvError::TooLarge { .. })
        ));
        assert_eq!(slot.load(&mut tpm).unwrap().as_deref(), Some(&payload[..]));
    }
    sw.restart().unwrap();
    let mut tpm = connect(&sw);
    let slot = NvSlot::journal(&mut tpm).unwrap();
    assert_eq!(
        slot.load(&mut tpm).unwrap().as_deref(),
        Some(&payload[..]),
        "the payload survives a TPM power cycle"
    );
    slot.clear(&mut tpm).unwrap();
    assert_eq!(slot.load(&mut tpm).unwrap(), None);
    slot.store(&mut tpm, b"again").unwrap();

    tpm.clear().unwrap();
    assert!(tpm.nv_read_public(JOURNAL_INDEX).unwrap().is_none());
    assert_eq!(slot.load(&mut tpm).unwrap(), None, "TPM2_Clear removed it");
}

#[test]
fn an_index_of_someone_else_is_left_alone() {
    let Some(sw) = Swtpm::start_or_skip("nv_not_ours", SwtpmOptions::default()) else {
        return;
    };
    let mut tpm = connect(&sw);
    // Same number, writable with its own (empty) auth: not ours.
    tpm.nv_define_space(
        JOURNAL_INDEX,
        64,
        attr::AUTHWRITE | attr::OWNERREAD | attr::AUTHREAD | attr::NO_DA,
    )
    .unwrap();
    let mut slot = NvSlot::journal(&mut tpm).unwrap();
    let e = slot.ensure(&mut tpm).unwrap_err();
    assert!(matches!(e, NvError::NotOurs { size: 64, .. }), "{e}");
    assert!(e.to_string().contains("0x01a0f001"), "{e}");
    // Still there, unchanged.
    let p = tpm.nv_read_public(JOURNAL_INDEX).unwrap().unwrap();
    assert_eq!(p.data_size, 64);
    tpm.nv_undefine_space(JOURNAL_INDEX).unwrap();
    assert!(tpm.nv_read_public(JOURNAL_INDEX).unwrap().is_none());
    assert_eq!(slot.ensure(&mut tpm).unwrap(), Provisioned::Created);
}

// ---- the flash journal in TPM NV, with recovery on an image file ----

use fortros_agent::hw::flash::access::{DescriptorAccess, IfdVersion, RegionSpan};
use fortros_agent::hw::flash::file::FileFlash;
use fortros_agent::hw::flash::journal::{Journal, JournalBlock, JournalError, JournalRecord};
use fortros_agent::hw::flash::nv_journal::NvJournal;
use fortros_agent::hw::flash::recovery::{recover_image, BackupSource, Decision, RecoveryError};
use fortros_agent::hw::flash::write::{
    write_image, PlatformCheck, VerifiedPolicy, WriteAuthorization, WriteOptions,
};
use fortros_agent::hw::flash::{read_image, sha256, Flash, FlashError};

const SIZE: usize = 1 << 20;
const BLOCK: u32 = 4096;

fn old_image() -> Vec<u8> {
    (0..SIZE)
        .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// A strip-like change: 40 separate runs (more than an NV record holds as
/// runs, so the engine journals spans) plus one long run.
fn new_image(old: &[u8]) -> Vec<u8> {
    let mut new = old.to_vec();
    for k in 0..40 {
        new[0x10000 + k * 0x2000] ^= 0xFF;
    }
    for b in new[0x80000..0xC0000].iter_mut() {
        *b = 0xFF;
    }
    new
}

fn auth(old: &[u8]) -> WriteAuthorization {
    WriteAuthorization {
        policy: VerifiedPolicy::after_signature_check([9; 32]),
        backup_sha256: sha256(old),
        platform: PlatformCheck::Passed {
            platform: "synthetic".into(),
        },
        access: DescriptorAccess {
            version: IfdVersion::V2,
            flmstr1: 0xFFFF_FFFF,
            regions: vec![
                RegionSpan {
                    index: 0,
                    base: 0,
                    limit: 0xFFF,
                },
                RegionSpan {
                    index: 2,
                    base: 0x1000,
                    limit: SIZE as u64 - 1,
                },
            ],
            extended_regions: false,
        },
    }
}

/// An image file whose power goes after `ops` erase/write calls: every
/// later call fails, as the chip would if the node lost power.
struct PowerCut {
    inner: FileFlash,
    ops: usize,
}

impl Flash for PowerCut {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn erase_block_size(&self) -> u32 {
        self.inner.erase_block_size()
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), FlashError> {
        self.inner.read(offset, buf)
    }
    fn erase(&mut self, offset: u64, len: u64) -> Result<(), FlashError> {
        self.tick()?;
        self.inner.erase(offset, len)
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), FlashError> {
        self.tick()?;
        self.inner.write(offset, data)
    }
}

impl PowerCut {
    fn tick(&mut self) -> Result<(), FlashError> {
        if self.ops == 0 {
            return Err(FlashError::Device {
                device: self.name(),
                what: "power cut".into(),
            });
        }
        self.ops -= 1;
        Ok(())
    }
}

struct OrgBackup(Option<Vec<u8>>);

impl BackupSource for OrgBackup {
    fn name(&self) -> String {
        "test org".into()
    }
    fn fetch(&mut self, _sha256: &[u8; 32], _size: u64) -> Result<Vec<u8>, String> {
        self.0
            .clone()
            .ok_or_else(|| "connection refused".to_string())
    }
}

/// Writes `new` over `old` in `file` with the NV journal, the power going
/// after `ops` erase/write calls. Returns the TPM back.
fn cut_write(
    tpm: Tpm<SocketTransport>,
    file: &std::path::Path,
    old: &[u8],
    new: &[u8],
    ops: usize,
) -> Tpm<SocketTransport> {
    std::fs::write(file, old).unwrap();
    let mut flash = PowerCut {
        inner: FileFlash::open(file, BLOCK).unwrap(),
        ops,
    };
    let mut journal = NvJournal::open(tpm).unwrap();
    let _ = write_image(
        &mut flash,
        &mut journal,
        old,
        new,
        &auth(old),
        WriteOptions { attempts: 1 },
    );
    journal.into_tpm()
}

/// Power back on: TPM restarted, flash reopened and read once.
fn reboot(
    sw: &mut Swtpm,
    file: &std::path::Path,
) -> (
    NvJournal<SocketTransport>,
    FileFlash,
    fortros_agent::hw::flash::FlashImage,
) {
    sw.restart().unwrap();
    let journal = NvJournal::open(connect(sw)).unwrap();
    let mut flash = FileFlash::open(file, BLOCK).unwrap();
    let image = read_image(&mut flash).unwrap();
    (journal, flash, image)
}

#[test]
fn nv_journal_round_trips_digests_only_and_rejects_a_torn_record() {
    let Some(sw) = Swtpm::start_or_skip("nv_journal_round_trip", SwtpmOptions::default()) else {
        return;
    };
    let mut j = NvJournal::open(connect(&sw)).unwrap();
    assert!(!j.keeps_data());
    let max = j.max_entries().unwrap();
    assert!(max >= 20, "{max} entries in a TPM NV record");
    assert_eq!(j.load().unwrap(), None);
    let entry = |offset| JournalBlock {
        offset,
        len: 4096,
        old_sha256: [1; 32],
        new_sha256: [2; 32],
        old: Some(vec![0xAA; 4096]),
        new: None,
    };
    let rec = JournalRecord {
        device_size: SIZE as u64,
        block_size: BLOCK,
        old_image_sha256: [3; 32],
        new_image_sha256: [4; 32],
        blocks: (0..max as u64).map(|i| entry(i * 0x2000)).collect(),
    };
    j.store(&rec).unwrap();
    let back = j.load().unwrap().unwrap();
    assert_eq!(back.blocks.len(), max);
    assert!(back.blocks.iter().all(|b| b.old.is_none()), "digests only");
    assert_eq!(back.blocks[1].offset, 0x2000);
    assert_eq!(back.old_image_sha256, [3; 32]);

    let mut too_many = rec.clone();
    too_many.blocks.push(entry(0xF0000));
    let e = j.store(&too_many).unwrap_err();
    assert!(matches!(e, JournalError::Store { .. }), "{e}");

    // A store cut between two NV_Write chunks: the frame says a full
    // record, the tail is from an older one.
    let mut tpm = j.into_tpm();
    let mut digests_only = rec.clone();
    for b in &mut digests_only.blocks {
        b.old = None;
    }
    let mut torn = digests_only.encode();
    let last = torn.len() - 40;
    torn[last] ^= 0x5A;
    let mut framed = (torn.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&torn);
    tpm.nv_write(nv::JOURNAL_INDEX, 0, &framed).unwrap();
    let mut j = NvJournal::open(tpm).unwrap();
    let e = j.load().unwrap_err();
    assert!(matches!(e, JournalError::Torn { .. }), "{e}");

    // Recovery discards it without touching the flash.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flash.bin");
    std::fs::write(&file, old_image()).unwrap();
    let mut flash = FileFlash::open(&file, BLOCK).unwrap();
    let mut image = read_image(&mut flash).unwrap();
    let r = recover_image(&mut flash, &mut j, &mut image, None, 3)
        .unwrap()
        .unwrap();
    assert_eq!(r.decision, Decision::DiscardedTornRecord);
    assert_eq!(std::fs::read(&file).unwrap(), old_image());
    assert_eq!(j.load().unwrap(), None);
}

#[test]
fn nv_journal_power_cut_recovery_finished_nothing_restored_and_kept() {
    let Some(mut sw) = Swtpm::start_or_skip("nv_journal_recovery", SwtpmOptions::default()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("flash.bin");
    let old = old_image();
    let new = new_image(&old);

    // 1. Cut mid-write (run 10 erased, not written), no org: journal kept,
    //    nothing written; then the org answers: restored from its backup.
    let tpm = cut_write(connect(&sw), &file, &old, &new, 19);
    drop(tpm);
    let torn = std::fs::read(&file).unwrap();
    assert!(torn != old && torn != new, "the cut left a mixed chip");
    let (mut j, mut flash, mut image) = reboot(&mut sw, &file);
    let rec = j
        .load()
        .unwrap()
        .expect("journal in NV across the TPM restart");
    assert!(rec.blocks.len() <= j.max_entries().unwrap());
    let e = recover_image(&mut flash, &mut j, &mut image, None, 3).unwrap_err();
    assert!(matches!(e, RecoveryError::NeedImage { .. }), "{e}");
    let mut down = OrgBackup(None);
    let e = recover_image(&mut flash, &mut j, &mut image, Some(&mut down), 3).unwrap_err();
    assert!(e.to_string().contains("connection refused"), "{e}");
    let mut wrong = OrgBackup(Some(new.clone()));
    let e = recover_image(&mut flash, &mut j, &mut image, Some(&mut wrong), 3).unwrap_err();
    assert!(e.to_string().contains("journal kept"), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), torn, "nothing written");
    assert!(j.load().unwrap().is_some(), "journal kept");

    let mut org = OrgBackup(Some(old.clone()));
    let r = recover_image(&mut flash, &mut j, &mut image, Some(&mut org), 3)
        .unwrap()
        .unwrap();
    assert_eq!(r.decision, Decision::RestoredFromBackup);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        old,
        "restored to the original"
    );
    assert_eq!(image.sha256, sha256(&old));
    assert!(j.load().unwrap().is_none(), "journal cleared");
    drop(j);

    // 2. Cut after the last write, before the journal clear: finished.
    //    (Every run written: 41 runs x 2 ops; the clear is an NV write, so
    //    simulate its loss by storing the record again.)
    let tpm = cut_write(connect(&sw), &file, &old, &new, usize::MAX);
    assert_eq!(std::fs::read(&file).unwrap(), new);
    let mut j = NvJournal::open(tpm).unwrap();
    assert!(
        j.load().unwrap().is_none(),
        "a finished write clears the journal"
    );
    j.store(&rec).unwrap();
    drop(j);
    let (mut j, mut flash, mut image) = reboot(&mut sw, &file);
    let r = recover_image(&mut flash, &mut j, &mut image, None, 3)
        .unwrap()
        .unwrap();
    assert_eq!(r.decision, Decision::AlreadyComplete);
    assert_eq!(std::fs::read(&file).unwrap(), new);
    assert!(j.load().unwrap().is_none());
    drop(j);

    // 3. Cut before the first erase: nothing happened.
    let tpm = cut_write(connect(&sw), &file, &old, &new, 0);
    drop(tpm);
    assert_eq!(std::fs::read(&file).unwrap(), old);
    let (mut j, mut flash, mut image) = reboot(&mut sw, &file);
    let r = recover_image(&mut flash, &mut j, &mut image, None, 3)
        .unwrap()
        .unwrap();
    assert_eq!(r.decision, Decision::NothingWritten);
    assert!(r.blocks_rewritten.is_empty());
    assert!(j.load().unwrap().is_none());
}

// ---- the last applied policy serial ----

use ed25519_dalek::SigningKey;
use fortros_agent::enroll::{EnrollClient, EnrollError};
use fortros_wire::envelope::{PolicyError, SignedPolicy};
use fortros_wire::policy::{NodeBinding, PolicyAction};
use fortros_wire::{Bytes, Policy, POLICY_FORMAT};

fn signed(org: &SigningKey, serial: u64) -> SignedPolicy {
    let policy = Policy {
        format: POLICY_FORMAT,
        serial,
        node: NodeBinding {
            ak_name: Bytes(b"ak".to_vec()),
        },
        nonce: Bytes(b"nonce".to_vec()),
        action: PolicyAction::Ignore,
        extensions: vec![],
    };
    SignedPolicy::sign(&policy, org).unwrap()
}

#[test]
fn policy_serial_survives_a_restart_and_refuses_replays_until_the_tpm_is_cleared() {
    let Some(mut sw) = Swtpm::start_or_skip("nv_policy_serial", SwtpmOptions::default()) else {
        return;
    };
    let org = SigningKey::from_bytes(&[7; 32]);
    let client = EnrollClient::new("http://127.0.0.1:9", org.verifying_key());
    {
        let mut tpm = connect(&sw);
        assert_eq!(nv::load_policy_serial(&mut tpm).unwrap(), None);
        nv::store_policy_serial(&mut tpm, 5).unwrap();
    }
    sw.restart().unwrap();
    let mut tpm = connect(&sw);
    let last = nv::load_policy_serial(&mut tpm).unwrap();
    assert_eq!(last, Some(5));
    for stale in [4, 5] {
        let e = client
            .verify_policy(&signed(&org, stale), b"ak", b"nonce", last)
            .unwrap_err();
        assert!(
            matches!(
                e,
                EnrollError::Policy(PolicyError::StaleSerial { found, last: 5 }) if found == stale
            ),
            "{e}"
        );
        assert!(e.to_string().contains("replay"), "{e}");
    }
    let p = client
        .verify_policy(&signed(&org, 6), b"ak", b"nonce", last)
        .unwrap();
    nv::store_policy_serial(&mut tpm, p.serial).unwrap();
    assert_eq!(nv::load_policy_serial(&mut tpm).unwrap(), Some(6));

    // Someone else's bytes in our index: refused, not read as "no serial".
    let slot = NvSlot::policy_serial();
    slot.store(&mut tpm, b"garbage").unwrap();
    assert!(matches!(
        nv::load_policy_serial(&mut tpm),
        Err(NvError::Malformed { .. })
    ));

    tpm.clear().unwrap();
    assert_eq!(
        nv::load_policy_serial(&mut tpm).unwrap(),
        None,
        "a cleared TPM starts again from 0"
    );
}

// ---- the CLI killed mid-write with the journal in TPM NV ----

fn agent_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fortros-agent"))
        .args(args)
        .output()
        .expect("run fortros-agent")
}

/// `fortros-agent flash write --journal tpm-nv` SIGKILLed at several points
/// of a 4 MiB write of 128 runs (a power cut as far as the file and the TPM
/// are concerned); `flash recover --journal tpm-nv` must then end with
/// exactly the old or the new image, restoring from `--backup` when the
/// chip was left mixed and refusing (journal kept, nothing written) without.
#[test]
fn killed_cli_write_with_the_nv_journal_recovers_from_the_backup() {
    let Some(sw) = Swtpm::start_or_skip("nv_cli_killed_write", SwtpmOptions::default()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = common::many_run_images();
    let new_path = dir.path().join("new.bin");
    let backup_path = dir.path().join("original.bin");
    std::fs::write(&new_path, &new).unwrap();
    std::fs::write(&backup_path, &old).unwrap();
    let flash_path = dir.path().join("flash.bin");
    let flash = format!("file:{}", flash_path.display());
    let tpm = format!("socket:{}", sw.socket_path().display());
    let recover = |backup: bool| {
        let mut args = vec![
            "flash",
            "recover",
            "--json",
            "-d",
            &flash,
            "--journal",
            "tpm-nv",
            "--tpm",
            &tpm,
        ];
        if backup {
            args.extend(["--backup", backup_path.to_str().unwrap()]);
        }
        agent_cli(&args)
    };
    let mut outcomes = Vec::new();
    for delay_ms in [20u64, 100, 250, 500, 800] {
        std::fs::write(&flash_path, &old).unwrap();
        common::write_then_kill(
            &flash,
            &new_path,
            &old,
            &["--journal", "tpm-nv", "--tpm", &tpm],
            std::time::Duration::from_millis(delay_ms),
        );
        let before = std::fs::read(&flash_path).unwrap();
        let first = recover(false);
        let decision = if first.status.code() == Some(0) {
            let v: serde_json::Value =
                serde_json::from_slice(&first.stdout).unwrap_or(serde_json::Value::Null);
            v["decision"].as_str().unwrap_or("no journal").to_string()
        } else {
            // Mixed chip, digests only: refused without the original.
            let err = String::from_utf8_lossy(&first.stderr);
            assert_eq!(first.status.code(), Some(1), "{err}");
            assert!(err.contains("must come from the org"), "{err}");
            assert_eq!(
                std::fs::read(&flash_path).unwrap(),
                before,
                "nothing written"
            );
            let o = recover(true);
            assert_eq!(
                o.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            assert_eq!(v["decision"], "restored_from_backup", "{v}");
            "restored_from_backup".to_string()
        };
        let after = std::fs::read(&flash_path).unwrap();
        assert!(
            after == old || after == new,
            "kill after {delay_ms} ms left a mixed image ({decision})"
        );
        let again = recover(false);
        assert_eq!(
            String::from_utf8_lossy(&again.stdout).trim(),
            r#"{"journal":null}"#,
            "the NV journal is cleared"
        );
        outcomes.push((delay_ms, decision));
    }
    println!("kill points and recoveries (TPM NV journal): {outcomes:?}");
}
