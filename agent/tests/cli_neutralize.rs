//! `fortros-agent neutralize` as a user runs it: the real binary on
//! synthetic images it writes to a scratch folder (corpus images only in
//! dry runs: modified Intel bytes are never written).

use std::path::PathBuf;
use std::process::{Command, Output};

use fortros_testkit::corpus::Corpus;
use fortros_testkit::synth::descriptor::DescriptorBuilder;

fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "fortros-cli-neutralize-{}-{test}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fortros-agent"))
        .args(args)
        .output()
        .expect("run fortros-agent")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn disable_mode_writes_the_output_and_leaves_the_input_alone() {
    let dir = scratch_dir("disable");
    let input = dir.join("in.bin");
    let output = dir.join("out.bin");
    let image = DescriptorBuilder::v1().build_image(8 << 20);
    std::fs::write(&input, &image).unwrap();
    let o = agent(&[
        "neutralize",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--mode",
        "disable",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("set AltMeDisable PCHSTRP10 bit 7"), "{text}");
    assert_eq!(std::fs::read(&input).unwrap(), image, "input modified");
    let out = std::fs::read(&output).unwrap();
    assert_eq!(out.len(), image.len());
    assert_eq!(out[0x128] & 0x80, 0x80);
    let differing = image.iter().zip(&out).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 1);
    // The result inspects as "disable bit set".
    let o = agent(&["inspect", output.to_str().unwrap(), "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["disable_bit"]["state"], "set");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refuses_to_overwrite_the_input() {
    let dir = scratch_dir("overwrite");
    let input = dir.join("in.bin");
    let image = DescriptorBuilder::v2().build_image(1 << 20);
    std::fs::write(&input, &image).unwrap();
    // The same file under another spelling.
    let alias = dir.join(".").join("in.bin");
    let o = agent(&[
        "neutralize",
        input.to_str().unwrap(),
        "-o",
        alias.to_str().unwrap(),
        "--mode",
        "disable",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("refusing to overwrite the input"));
    assert_eq!(stderr(&o).lines().count(), 1);
    assert_eq!(std::fs::read(&input).unwrap(), image);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn refusals_exit_2_with_one_line_and_write_nothing() {
    let dir = scratch_dir("refusal");
    let input = dir.join("in.bin");
    let output = dir.join("out.bin");
    // Unknown platform: no strap location to set.
    let image = DescriptorBuilder::v2()
        .shape(77, 2, 0x400, 0x40)
        .build_image(8 << 20);
    std::fs::write(&input, &image).unwrap();
    let o = agent(&[
        "neutralize",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("never guessed"), "{}", stderr(&o));
    assert!(!output.exists());
    // Not an image at all: the offset is named.
    let junk: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(7) | 1).collect();
    std::fs::write(&input, junk).unwrap();
    let o = agent(&[
        "neutralize",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("offset 0x"), "{}", stderr(&o));
    assert!(!output.exists());
    // Options that do not fit together.
    let o = agent(&[
        "neutralize",
        input.to_str().unwrap(),
        "--dry-run",
        "--mode",
        "disable",
        "--relocate",
    ]);
    assert_eq!(o.status.code(), Some(2));
    // No output and no dry run.
    let o = agent(&["neutralize", input.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    // Unreadable input.
    let o = agent(&[
        "neutralize",
        dir.join("missing").to_str().unwrap(),
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dry_run_json_lists_the_plan_and_writes_nothing() {
    let Some(corpus) = Corpus::open_or_skip("dry_run_json_lists_the_plan_and_writes_nothing")
    else {
        return;
    };
    let dir = scratch_dir("dry");
    let output = dir.join("never.bin");
    let input = corpus.dir.join("cbblobs_google_link_me.bin");
    let o = agent(&[
        "neutralize",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--mode",
        "strip",
        "--relocate",
        "--truncate",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!output.exists());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // me_cleaner -r -t gives the same bytes (CORPUS.tsv).
    assert_eq!(
        j["output_sha256"],
        "a98d4125927ee21246679a8e98213a1924f9cb87b00a17b4bc73aa1198da8199"
    );
    assert_eq!(j["plan"]["output_len"], 94208);
    assert_eq!(j["plan"]["relocated"][1], 0x4C0);
    let parts = j["plan"]["partitions"].as_array().unwrap();
    let kept: Vec<&str> = parts
        .iter()
        .filter(|p| p["action"] == "kept")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["FTPR"]);
    let mods = j["plan"]["modules"].as_array().unwrap();
    let kept: Vec<&str> = mods
        .iter()
        .filter(|m| m["removed"] == false)
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["ROMP", "BUP"]);
    assert_eq!(j["plan"]["result_state"], "cleaned");
    std::fs::remove_dir_all(&dir).unwrap();
}
