//! The flashrom backend against the real flashrom binary and its `dummy`
//! programmer emulating a W25Q128FV over an image file. Skipped, with a
//! SKIPPED line, when flashrom is not installed.

use fortros_agent::hw::flash::access::{DescriptorAccess, IfdVersion, RegionSpan};
use fortros_agent::hw::flash::flashrom::FlashromFlash;
use fortros_agent::hw::flash::journal::MemoryJournal;
use fortros_agent::hw::flash::write::{
    write_image, PlatformCheck, VerifiedPolicy, WriteAuthorization, WriteError, WriteOptions,
};
use fortros_agent::hw::flash::{read_image, sha256, Flash, FlashError};
use std::path::Path;

const SIZE: usize = 16 << 20;

fn flashrom_or_skip(test: &str) -> bool {
    let ok = std::process::Command::new(fortros_agent::hw::flash::flashrom::program())
        .arg("--version")
        .output()
        .is_ok();
    if !ok {
        println!("SKIPPED {test}: flashrom is not installed");
    }
    ok
}

fn pseudo_random(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn dummy(image: &Path) -> String {
    format!("dummy:emulate=W25Q128FV,image={}", image.display())
}

fn access(flmstr1: u32) -> DescriptorAccess {
    DescriptorAccess {
        version: IfdVersion::V2,
        flmstr1,
        regions: vec![
            RegionSpan {
                index: 0,
                base: 0,
                limit: 0xFFF,
            },
            RegionSpan {
                index: 2,
                base: 0x1000,
                limit: 0x7F_FFFF,
            },
            RegionSpan {
                index: 1,
                base: 0x80_0000,
                limit: SIZE as u64 - 1,
            },
        ],
        extended_regions: false,
    }
}

fn auth(old: &[u8], flmstr1: u32) -> WriteAuthorization {
    WriteAuthorization {
        policy: VerifiedPolicy::after_signature_check([7; 32]),
        backup_sha256: sha256(old),
        platform: PlatformCheck::Passed {
            platform: "flashrom dummy".into(),
        },
        access: access(flmstr1),
    }
}

#[test]
fn reads_the_whole_chip_and_a_range() {
    if !flashrom_or_skip("reads_the_whole_chip_and_a_range") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chip.bin");
    let content = pseudo_random(SIZE, 1);
    std::fs::write(&path, &content).unwrap();
    let mut f = FlashromFlash::open(&dummy(&path)).unwrap();
    assert_eq!(f.size(), SIZE as u64);
    let img = read_image(&mut f).unwrap();
    assert_eq!(img.sha256, sha256(&content));
    let mut buf = vec![0u8; 0x1800];
    f.read(0x12_3000, &mut buf).unwrap();
    assert_eq!(buf, content[0x12_3000..0x12_4800]);
}

#[test]
fn engine_writes_only_changed_blocks_through_flashrom() {
    if !flashrom_or_skip("engine_writes_only_changed_blocks_through_flashrom") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chip.bin");
    let old = pseudo_random(SIZE, 2);
    std::fs::write(&path, &old).unwrap();
    let mut new = old.clone();
    new[0x3000..0x3010].fill(0xFF); // ME region, one block
    new[0x9_0000..0x9_2000].fill(0x00); // two adjacent blocks
    let mut f = FlashromFlash::open(&dummy(&path)).unwrap();
    let mut j = MemoryJournal::default();
    let r = write_image(
        &mut f,
        &mut j,
        &old,
        &new,
        &auth(&old, 0xFFFF_FFFF),
        WriteOptions::default(),
    )
    .unwrap();
    assert_eq!(r.blocks_written, vec![0x3000, 0x9_0000, 0x9_1000]);
    assert_eq!(r.runs, vec![(0x3000, 0x1000), (0x9_0000, 0x2000)]);
    drop(f);
    let after = std::fs::read(&path).unwrap();
    assert!(after == new, "the emulated chip holds the new image");
    assert!(j.bytes.is_none());
}

#[test]
fn erase_touches_only_its_blocks() {
    if !flashrom_or_skip("erase_touches_only_its_blocks") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chip.bin");
    let old = pseudo_random(SIZE, 3);
    std::fs::write(&path, &old).unwrap();
    let mut f = FlashromFlash::open(&dummy(&path)).unwrap();
    f.erase(0x1_0000, 0x2000).unwrap();
    drop(f);
    let after = std::fs::read(&path).unwrap();
    assert!(after[0x1_0000..0x1_2000].iter().all(|&b| b == 0xFF));
    assert!(after[..0x1_0000] == old[..0x1_0000]);
    assert!(after[0x1_2000..] == old[0x1_2000..]);
}

#[test]
fn locked_me_region_is_refused_and_nothing_is_written() {
    if !flashrom_or_skip("locked_me_region_is_refused_and_nothing_is_written") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chip.bin");
    let old = pseudo_random(SIZE, 4);
    std::fs::write(&path, &old).unwrap();
    let mut new = old.clone();
    new[0x5000] ^= 1;
    let mut f = FlashromFlash::open(&dummy(&path)).unwrap();
    let mut j = MemoryJournal::default();
    // A typical locked descriptor: the host may write BIOS and GbE only.
    let e = write_image(
        &mut f,
        &mut j,
        &old,
        &new,
        &auth(&old, 0x00A0_0F00),
        WriteOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, WriteError::Access(_)), "{e}");
    assert!(e.to_string().contains("region 2 (ME)"), "{e}");
    drop(f);
    assert!(std::fs::read(&path).unwrap() == old);
}

#[test]
fn a_bad_programmer_gives_a_clear_reason() {
    if !flashrom_or_skip("a_bad_programmer_gives_a_clear_reason") {
        return;
    }
    let e = FlashromFlash::open("no_such_programmer").unwrap_err();
    match &e {
        FlashError::Flashrom { action, reason, .. } => {
            assert_eq!(action, "probe");
            assert!(!reason.is_empty());
        }
        other => panic!("unexpected {other}"),
    }
    println!("flashrom error as shown: {e}");
}
