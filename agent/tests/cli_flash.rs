//! `fortros-agent flash ...` on image files: what an operator sees, exit
//! codes, and that refused writes leave the file untouched.

mod common;

use fortros_agent::hw::flash::access::{DescriptorAccess, IfdVersion, RegionSpan};
use fortros_agent::hw::flash::file::MemFlash;
use fortros_agent::hw::flash::journal::FileJournal;
use fortros_agent::hw::flash::sha256;
use fortros_agent::hw::flash::write::{
    write_image, PlatformCheck, VerifiedPolicy, WriteAuthorization, WriteOptions,
};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

const SIZE: usize = 1 << 20;

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fortros-agent"))
        .args(args)
        .output()
        .expect("run fortros-agent")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn image() -> Vec<u8> {
    (0..SIZE).map(|i| (i * 31 % 253) as u8).collect()
}

struct Setup {
    _dir: tempfile::TempDir,
    flash: String,
    new: String,
    old: Vec<u8>,
    new_bytes: Vec<u8>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let old = image();
    let mut new_bytes = old.clone();
    new_bytes[0x2_0010] ^= 0xFF; // ME region
    new_bytes[0x9_0000] ^= 0xFF; // BIOS region
    let flash = dir.path().join("flash.bin");
    let new = dir.path().join("new.bin");
    std::fs::write(&flash, &old).unwrap();
    std::fs::write(&new, &new_bytes).unwrap();
    Setup {
        flash: format!("file:{}", flash.display()),
        new: new.display().to_string(),
        _dir: dir,
        old,
        new_bytes,
    }
}

impl Setup {
    fn flash_path(&self) -> &Path {
        Path::new(self.flash.strip_prefix("file:").unwrap())
    }
    fn flash_bytes(&self) -> Vec<u8> {
        std::fs::read(self.flash_path()).unwrap()
    }
    fn write_args(&self, backup: &str, flmstr1: &str) -> Vec<String> {
        [
            "flash",
            "write",
            "--json",
            "-d",
            &self.flash,
            "--image",
            &self.new,
            "--verified-policy-sha256",
            &"ab".repeat(32),
            "--backup-sha256",
            backup,
            "--platform-ok",
            "test platform",
            "--flmstr1",
            flmstr1,
            "--region",
            "0:0:0xfff",
            "--region",
            "2:0x1000:0x7ffff",
            "--region",
            "1:0x80000:0xfffff",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

fn run(args: &[String]) -> Output {
    agent(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn info_and_read() {
    let s = setup();
    let o = agent(&["flash", "info", "--json", "-d", &s.flash]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["size"], SIZE as u64);
    assert_eq!(v["erase_block"], 4096);

    let out = s._dir.path().join("dump.bin");
    let o = agent(&["flash", "read", "-d", &s.flash, "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), s.old);
    assert!(stdout(&o).starts_with(&hex::encode(sha256(&s.old))));
}

#[test]
fn write_without_authorization_is_refused_and_writes_nothing() {
    let s = setup();
    let o = agent(&["flash", "write", "-d", &s.flash, "--image", &s.new]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--verified-policy-sha256 is required"),
        "{}",
        stderr(&o)
    );

    // Everything but the platform check.
    let mut args = s.write_args(&hex::encode(sha256(&s.old)), "0xffffffff");
    let i = args.iter().position(|a| a == "--platform-ok").unwrap();
    args.drain(i..i + 2);
    let o = run(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--platform-ok is required"),
        "{}",
        stderr(&o)
    );
    assert_eq!(s.flash_bytes(), s.old);
}

#[test]
fn write_with_wrong_backup_digest_is_refused() {
    let s = setup();
    let o = run(&s.write_args(&"00".repeat(32), "0xffffffff"));
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("not the backup"), "{e}");
    assert_eq!(e.lines().count(), 1, "one line on stderr: {e}");
    assert_eq!(s.flash_bytes(), s.old);
}

#[test]
fn write_into_a_locked_me_region_is_refused() {
    let s = setup();
    let o = run(&s.write_args(&hex::encode(sha256(&s.old)), "0x00a00f00"));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("region 2 (ME)"), "{}", stderr(&o));
    assert_eq!(s.flash_bytes(), s.old);
}

#[test]
fn authorized_write_changes_only_the_changed_blocks() {
    let s = setup();
    let o = run(&s.write_args(&hex::encode(sha256(&s.old)), "0xffffffff"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["blocks_written"], serde_json::json!([0x2_0000, 0x9_0000]));
    assert_eq!(v["new_sha256"], hex::encode(sha256(&s.new_bytes)));
    assert_eq!(s.flash_bytes(), s.new_bytes);

    // Writing the same image again is a no-op.
    let o = run(&s.write_args(&hex::encode(sha256(&s.new_bytes)), "0xffffffff"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["blocks_written"], serde_json::json!([]));
}

#[test]
fn recover_finishes_an_interrupted_write() {
    let s = setup();
    let journal = s._dir.path().join("flash.journal");
    // Simulate the power cut on an in-memory chip, then put its bytes in the file.
    let mut chip = MemFlash::new(s.old.clone(), 4096);
    chip.fail_from_write = Some(1);
    let auth = WriteAuthorization {
        policy: VerifiedPolicy::after_signature_check([1; 32]),
        backup_sha256: sha256(&s.old),
        platform: PlatformCheck::Passed {
            platform: "t".into(),
        },
        access: DescriptorAccess {
            version: IfdVersion::V2,
            flmstr1: u32::MAX,
            regions: vec![RegionSpan {
                index: 1,
                base: 0,
                limit: SIZE as u64 - 1,
            }],
            extended_regions: false,
        },
    };
    let mut j = FileJournal::new(&journal);
    assert!(write_image(
        &mut chip,
        &mut j,
        &s.old,
        &s.new_bytes,
        &auth,
        WriteOptions { attempts: 1 }
    )
    .is_err());
    assert!(journal.exists());
    std::fs::write(s.flash_path(), &chip.bytes).unwrap();
    assert_ne!(s.flash_bytes(), s.new_bytes);

    let o = agent(&[
        "flash",
        "recover",
        "--json",
        "-d",
        &s.flash,
        "--journal",
        journal.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["decision"], "roll_forward");
    assert_eq!(s.flash_bytes(), s.new_bytes);
    assert!(!journal.exists());

    let o = agent(&[
        "flash",
        "recover",
        "-d",
        &s.flash,
        "--journal",
        journal.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("no interrupted write"));
}

#[test]
fn unreadable_device_is_an_operational_failure() {
    let o = agent(&["flash", "info", "-d", "file:/nonexistent/flash.bin"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/flash.bin"),
        "{}",
        stderr(&o)
    );
}

/// A "power cut": the writing process is killed at some point during a write
/// of many blocks (wherever the kill lands), then `flash recover` runs. The
/// image must end as exactly the old or exactly the new one, with the journal
/// gone. Several kill points are tried; each must recover consistently.
#[test]
fn killed_write_recovers_to_old_or_new() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = common::many_run_images();
    let new_path = dir.path().join("new.bin");
    std::fs::write(&new_path, &new).unwrap();
    let flash_path = dir.path().join("flash.bin");
    let journal = dir.path().join("flash.journal");
    let flash = format!("file:{}", flash_path.display());
    let mut outcomes = Vec::new();
    for delay_ms in [30u64, 150, 300, 500, 700, 900] {
        std::fs::write(&flash_path, &old).unwrap();
        let _ = std::fs::remove_file(&journal);
        common::write_then_kill(
            &flash,
            &new_path,
            &old,
            &["--journal", journal.to_str().unwrap()],
            Duration::from_millis(delay_ms),
        );
        let o = agent(&[
            "flash",
            "recover",
            "--json",
            "-d",
            &flash,
            "--journal",
            journal.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let after = std::fs::read(&flash_path).unwrap();
        assert!(
            after == old || after == new,
            "kill after {delay_ms} ms left a mixed image; recover said {}",
            stdout(&o)
        );
        assert!(!journal.exists());
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        outcomes.push((
            delay_ms,
            v["decision"].as_str().unwrap_or("no journal").to_string(),
        ));
    }
    println!("kill points and recoveries: {outcomes:?}");
}

/// Without --flmstr1, the flash's own descriptor decides: a synthetic v2
/// descriptor whose host master may write BIOS but not ME.
#[test]
fn the_flashs_own_descriptor_decides_what_may_be_written() {
    use fortros_testkit::synth::descriptor::DescriptorBuilder;
    let dir = tempfile::tempdir().unwrap();
    let mut old = DescriptorBuilder::v2().build(); // host FLMSTR1 0x00a00f00
    old.resize(8 << 20, 0xFF);
    let flash_path = dir.path().join("flash.bin");
    std::fs::write(&flash_path, &old).unwrap();
    let flash = format!("file:{}", flash_path.display());
    let write = |new: &[u8]| {
        let p = dir.path().join("new.bin");
        std::fs::write(&p, new).unwrap();
        agent(&[
            "flash",
            "write",
            "--json",
            "-d",
            &flash,
            "--image",
            p.to_str().unwrap(),
            "--verified-policy-sha256",
            &"ab".repeat(32),
            "--backup-sha256",
            &hex::encode(sha256(&old)),
            "--platform-ok",
            "synthetic",
        ])
    };
    let mut me_change = old.clone();
    me_change[0x1_0000] = 0; // ME region 0x1000..=0x1fffff
    let o = write(&me_change);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("region 2 (ME)") && stderr(&o).contains("0x00a00f00"),
        "{}",
        stderr(&o)
    );
    assert!(std::fs::read(&flash_path).unwrap() == old);

    let mut bios_change = old.clone();
    bios_change[0x30_0000] = 0; // BIOS region 0x200000..
    let o = write(&bios_change);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(&flash_path).unwrap() == bios_change);
}
