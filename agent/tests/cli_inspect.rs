//! `fortros-agent inspect` as a user runs it: the real binary on files the
//! test writes, checking exit codes, the table, the JSON and the one-line
//! errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fortros_testkit::synth::descriptor::DescriptorBuilder;

/// A scratch file unique to this test process.
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fortros-cli-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fortros-agent"))
        .args(args)
        .output()
        .expect("run fortros-agent")
}

fn inspect(path: &Path, json: bool) -> Output {
    let p = path.to_str().unwrap();
    if json {
        agent(&["inspect", p, "--json"])
    } else {
        agent(&["inspect", p])
    }
}

#[test]
fn descriptor_file_prints_a_table_and_exits_0() {
    let path = scratch(
        "desc.bin",
        &DescriptorBuilder::v2()
            .set_pch_strap_bits(0, 1 << 16)
            .build(),
    );
    let out = inspect(&path, false);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("descriptor alone, 4096 bytes"), "{text}");
    assert!(text.contains("STATE        DISABLE BIT SET"), "{text}");
    assert!(
        text.contains("PCHSTRP0 bit 16 = 1 (byte 0x102 bit 0"),
        "{text}"
    );
    assert!(text.contains("Sunrise Point-LP"), "{text}");
}

#[test]
fn full_image_json_is_machine_readable() {
    let path = scratch("full.bin", &DescriptorBuilder::v2().build_image(8 << 20));
    let out = inspect(&path, true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["format"], 1);
    assert_eq!(v["input"], "full_image");
    assert_eq!(v["digests"]["size"], 8 << 20);
    assert_eq!(v["descriptor"]["version"]["version"], "v2");
    assert_eq!(v["disable_bit"]["state"], "clear");
    assert_eq!(v["me"]["location"]["where"], "me_region");
    assert_eq!(v["me"]["location"]["base"], 0x1000);
    let regions = v["digests"]["regions"].as_array().unwrap();
    assert_eq!(regions.len(), 3);
    assert!(out.stderr.is_empty() || !String::from_utf8_lossy(&out.stderr).contains("error"));
}

#[test]
fn tgl_h_trap_descriptor_is_not_disabled() {
    let b = DescriptorBuilder::v2()
        .shape(101, 1, 0xB00, 0x11)
        .read_clock(0)
        .set_pch_strap_bits(0, 1 << 16);
    let out = inspect(&scratch("tgl.bin", &b.build()), true);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["disable_bit"]["state"], "clear");
    assert_eq!(v["disable_bit"]["bits"][0]["name"], "PCHSTRP37 bit 16");
    assert_ne!(v["state"], "disable_bit_set");
}

fn assert_bad_input(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("offset 0x"), "{err}");
    assert!(err.contains(needle), "{needle} in {err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn garbage_exits_2_with_one_line() {
    let out = inspect(&scratch("garbage.bin", &[0x42; 8192]), false);
    assert_bad_input(&out, "not a flash image");
}

#[test]
fn truncated_image_exits_2_naming_the_region() {
    let out = inspect(
        &scratch("short.bin", &DescriptorBuilder::v2().build_image(3 << 20)),
        false,
    );
    assert_bad_input(&out, "FLREG1 at 0x44");
}

#[test]
fn overlapping_regions_exit_2() {
    let b = DescriptorBuilder::v2().region(3, 0x1F_0000, 0x1F_FFFF);
    let out = inspect(&scratch("overlap.bin", &b.build_image(8 << 20)), true);
    assert_bad_input(&out, "overlaps");
}

#[test]
fn truncated_descriptor_exits_2_naming_the_structure() {
    let d = DescriptorBuilder::v2().build();
    let out = inspect(&scratch("cut.bin", &d[..0x150]), false);
    assert_bad_input(&out, "PCH straps");
}

#[test]
fn empty_file_exits_2() {
    let out = inspect(&scratch("empty.bin", &[]), false);
    assert_bad_input(&out, "empty input");
}

#[test]
fn missing_file_exits_1() {
    let out = agent(&["inspect", "/nonexistent/fortros/image.bin"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
