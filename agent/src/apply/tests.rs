//! The apply sequence on synthetic images in files and in memory.

use super::*;
use crate::hw::flash::file::{FileFlash, MemFlash};
use crate::hw::flash::journal::{FileJournal, MemoryJournal};
use crate::hw::flash::{read_image, sha256};
use crate::hw::mei::classify::MeState;
use fortros_testkit::synth::descriptor::{full_image_with_me, DescriptorBuilder};
use fortros_testkit::synth::me::gen3_stock;

/// FLMSTR1 letting the host read and write every region.
const UNLOCKED: u32 = 0xFFFF_FFFF;

fn image(flmstr1: u32) -> Vec<u8> {
    full_image_with_me(
        DescriptorBuilder::v2().master(1, flmstr1),
        &gen3_stock().bytes,
        8 << 20,
    )
}

fn flash_image(bytes: &[u8]) -> FlashImage {
    FlashImage {
        bytes: bytes.to_vec(),
        sha256: sha256(bytes),
    }
}

fn request<'a>(mode: NeutralizeMode, img: &'a FlashImage, live: &'a LiveFacts) -> Request<'a> {
    Request {
        mode,
        policy: VerifiedPolicy::after_signature_check([5; 32]),
        image: img,
        live,
        write_blocked: None,
        write: WriteOptions::default(),
    }
}

/// What `fortros-agent neutralize` computes on the host for the same mode.
fn expected(old: &[u8], mode: Mode) -> Vec<u8> {
    neutralize::neutralize(
        old,
        &Options {
            mode,
            ..Options::default()
        },
    )
    .unwrap()
    .image
}

/// The 4 KiB blocks where two images differ, from a plain byte diff.
fn diff_blocks(a: &[u8], b: &[u8]) -> Vec<u64> {
    a.chunks(4096)
        .zip(b.chunks(4096))
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i as u64 * 4096)
        .collect()
}

#[test]
fn disable_bit_on_an_image_file_writes_only_the_descriptor_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spi.bin");
    let old = image(UNLOCKED);
    std::fs::write(&path, &old).unwrap();
    let mut flash = FileFlash::open(&path, 4096).unwrap();
    let img = read_image(&mut flash).unwrap();
    let mut journal = FileJournal::new(dir.path().join("journal"));
    let mut backup = MemoryBackup::default();
    let live = LiveFacts::default();
    let rec = neutralize_on_node(
        &request(NeutralizeMode::DisableBit, &img, &live),
        &mut flash,
        &mut journal,
        &mut backup,
    );
    assert_eq!(rec.outcome, ApplyOutcome::Written, "{rec:?}");
    let want = expected(&old, Mode::Disable);
    let now = std::fs::read(&path).unwrap();
    assert!(now == want, "the file holds what neutralize computes");
    assert_eq!(rec.blocks_written, diff_blocks(&old, &want));
    assert_eq!(
        rec.blocks_written,
        vec![0],
        "the strap is in the descriptor"
    );
    assert_eq!(rec.runs, vec![(0, 4096)]);
    assert_eq!(rec.new_sha256, Some(hex::encode(sha256(&want))));
    assert_eq!(rec.old_sha256, hex::encode(sha256(&old)));
    assert_eq!(rec.backup_sha256, Some(hex::encode(sha256(&old))));
    assert!(
        backup.images == vec![old.clone()],
        "original uploaded first"
    );
    assert_eq!(rec.state_before.as_deref(), Some("stock"));
    assert_eq!(rec.state_after.as_deref(), Some("disable bit set"));
    assert!(rec.planned.iter().any(|p| p.contains("HAP")), "{rec:?}");
    assert!(journal.load().unwrap().is_none(), "journal cleared");
    let a = rec.action_taken();
    assert_eq!(a.action, "neutralize:disable-bit");
    assert_eq!(a.outcome, Outcome::Done);
    assert!(a.detail.unwrap().contains("1 erase block(s)"));
    let ext = rec.extension().unwrap();
    assert_eq!(ext.tag, APPLY_RECORD_TAG);
    let back: serde_json::Value = serde_json::from_slice(ext.data.as_slice()).unwrap();
    assert_eq!(back["outcome"]["result"], "written");
}

#[test]
fn strip_writes_the_changed_blocks_and_a_second_run_writes_nothing() {
    let old = image(UNLOCKED);
    let img = flash_image(&old);
    let live = LiveFacts::default();
    let mut flash = MemFlash::new(old.clone(), 4096);
    let mut journal = MemoryJournal::default();
    let mut backup = MemoryBackup::default();
    let req = request(NeutralizeMode::DisableBitAndStrip, &img, &live);
    let rec = neutralize_on_node(&req, &mut flash, &mut journal, &mut backup);
    assert_eq!(rec.outcome, ApplyOutcome::Written, "{rec:?}");
    let want = expected(&old, Mode::StripAndDisable);
    assert!(flash.bytes == want);
    let blocks = diff_blocks(&old, &want);
    assert!(blocks.len() > 1 && blocks.contains(&0), "{blocks:?}");
    assert_eq!(rec.blocks_written, blocks);
    assert_eq!(flash.erased().len(), rec.runs.len(), "one erase per run");
    assert_eq!(
        rec.state_after.as_deref(),
        Some("cleaned + disable bit set")
    );

    // The next boot reads the new image: nothing left to do.
    let img2 = flash_image(&flash.bytes);
    let mut flash2 = MemFlash::new(flash.bytes.clone(), 4096);
    let mut backup2 = MemoryBackup::default();
    let req2 = request(NeutralizeMode::DisableBitAndStrip, &img2, &live);
    let rec2 = neutralize_on_node(&req2, &mut flash2, &mut journal, &mut backup2);
    assert_eq!(rec2.outcome, ApplyOutcome::AlreadyNeutralized, "{rec2:?}");
    assert!(flash2.log.iter().all(|(op, _, _)| *op == "read"));
    assert!(
        backup2.images.is_empty(),
        "no backup when nothing is written"
    );
    assert_eq!(rec2.action_taken().outcome, Outcome::Done);
}

#[test]
fn locked_descriptor_is_refused_before_the_backup_and_writes_nothing() {
    // The synthetic default: FLMSTR1 0x00A00F00, host writes BIOS and GbE only.
    let old = image(0x00A0_0F00);
    let img = flash_image(&old);
    let live = LiveFacts::default();
    for mode in [
        NeutralizeMode::DisableBit,
        NeutralizeMode::DisableBitAndStrip,
    ] {
        let mut flash = MemFlash::new(old.clone(), 4096);
        let mut journal = MemoryJournal::default();
        let mut backup = MemoryBackup::default();
        let rec = neutralize_on_node(
            &request(mode, &img, &live),
            &mut flash,
            &mut journal,
            &mut backup,
        );
        let ApplyOutcome::Refused { reason } = &rec.outcome else {
            panic!("{rec:?}")
        };
        assert!(
            reason.contains("FLMSTR1=0x00a00f00") && reason.contains("HMRFPO"),
            "{reason}"
        );
        assert!(flash.bytes == old);
        assert!(flash.erased().is_empty());
        assert!(backup.images.is_empty(), "no upload for a refused write");
        assert!(journal.bytes.is_none());
        assert!(matches!(
            rec.action_taken().outcome,
            Outcome::Refused { .. }
        ));
    }
}

#[test]
fn no_backup_no_write() {
    let old = image(UNLOCKED);
    let img = flash_image(&old);
    let live = LiveFacts::default();
    let mut flash = MemFlash::new(old.clone(), 4096);
    let mut journal = MemoryJournal::default();
    let mut backup = MemoryBackup {
        fail: Some("org unreachable".into()),
        ..MemoryBackup::default()
    };
    let rec = neutralize_on_node(
        &request(NeutralizeMode::DisableBit, &img, &live),
        &mut flash,
        &mut journal,
        &mut backup,
    );
    assert!(
        matches!(&rec.outcome, ApplyOutcome::Refused { reason } if reason.contains("org unreachable")),
        "{rec:?}"
    );
    assert!(flash.bytes == old && flash.erased().is_empty());
}

#[test]
fn a_write_that_never_verifies_is_restored_and_reported_failed() {
    let old = image(UNLOCKED);
    let img = flash_image(&old);
    let live = LiveFacts::default();
    let mut flash = MemFlash::new(old.clone(), 4096);
    flash.corrupt_writes = vec![(0, 3)];
    let mut journal = MemoryJournal::default();
    let mut backup = MemoryBackup::default();
    let rec = neutralize_on_node(
        &request(NeutralizeMode::DisableBit, &img, &live),
        &mut flash,
        &mut journal,
        &mut backup,
    );
    assert!(
        matches!(rec.outcome, ApplyOutcome::Failed { restored: true, .. }),
        "{rec:?}"
    );
    assert!(flash.bytes == old, "original bytes back");
    assert!(matches!(
        rec.action_taken().outcome,
        Outcome::Failed { restored: true, .. }
    ));
}

fn refusal(mode: NeutralizeMode, old: &[u8], live: &LiveFacts, blocked: Option<&str>) -> String {
    let img = flash_image(old);
    let mut flash = MemFlash::new(old.to_vec(), 4096);
    let mut journal = MemoryJournal::default();
    let mut backup = MemoryBackup::default();
    let mut req = request(mode, &img, live);
    req.write_blocked = blocked;
    let rec = neutralize_on_node(&req, &mut flash, &mut journal, &mut backup);
    assert!(flash.bytes == old && backup.images.is_empty(), "{rec:?}");
    match rec.outcome {
        ApplyOutcome::Refused { reason } => reason,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn live_facts_that_contradict_the_image_are_refused() {
    let old = image(UNLOCKED);
    let hap = LiveFacts {
        state: Some(MeState::DisabledByHap),
        ..LiveFacts::default()
    };
    let r = refusal(NeutralizeMode::DisableBit, &old, &hap, None);
    assert!(r.contains("strap location does not match"), "{r}");

    let other_fw = LiveFacts {
        state: Some(MeState::Normal),
        fw_version: Some("11.0.0.1".into()),
        ..LiveFacts::default()
    };
    let r = refusal(NeutralizeMode::DisableBit, &old, &other_fw, None);
    assert!(r.contains("running ME firmware is 11.0.0.1"), "{r}");

    let bg = LiveFacts {
        boot_guard_verified: Some(true),
        ..LiveFacts::default()
    };
    let r = refusal(NeutralizeMode::DisableBitAndStrip, &old, &bg, None);
    assert!(r.contains("Boot Guard verified boot"), "{r}");

    let r = refusal(
        NeutralizeMode::DisableBit,
        &old,
        &LiveFacts::default(),
        Some("recovery needs the image"),
    );
    assert!(r.contains("recovery needs the image"), "{r}");
}

#[test]
fn boot_guard_still_allows_the_disable_bit_and_live_hap_with_the_bit_is_done() {
    let old = image(UNLOCKED);
    let bg = LiveFacts {
        boot_guard_verified: Some(true),
        state: Some(MeState::Normal),
        ..LiveFacts::default()
    };
    let img = flash_image(&old);
    let mut flash = MemFlash::new(old.clone(), 4096);
    let mut journal = MemoryJournal::default();
    let mut backup = MemoryBackup::default();
    let rec = neutralize_on_node(
        &request(NeutralizeMode::DisableBit, &img, &bg),
        &mut flash,
        &mut journal,
        &mut backup,
    );
    assert_eq!(rec.outcome, ApplyOutcome::Written, "{rec:?}");

    // The ME now reports HAP and the image has the bit: nothing to do.
    let hap = LiveFacts {
        state: Some(MeState::DisabledByHap),
        ..LiveFacts::default()
    };
    let img2 = flash_image(&flash.bytes);
    let mut flash2 = MemFlash::new(flash.bytes.clone(), 4096);
    let rec2 = neutralize_on_node(
        &request(NeutralizeMode::DisableBit, &img2, &hap),
        &mut flash2,
        &mut journal,
        &mut backup,
    );
    assert_eq!(rec2.outcome, ApplyOutcome::AlreadyNeutralized, "{rec2:?}");
}

#[test]
fn an_image_without_a_known_platform_is_refused() {
    // A strap section shape no fingerprint knows: the platform stays unknown.
    let old = full_image_with_me(
        DescriptorBuilder::v2()
            .master(1, UNLOCKED)
            .shape(70, 5, 0x300, 0x31),
        &gen3_stock().bytes,
        8 << 20,
    );
    let r = refusal(
        NeutralizeMode::DisableBit,
        &old,
        &LiveFacts::default(),
        None,
    );
    assert!(r.contains("platform"), "{r}");
}
