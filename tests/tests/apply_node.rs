//! The org's `neutralize` policy applied on a node under QEMU (TCG): the
//! agent as PID 1 enrolls with a real `fortros-org serve` (swtpm TPM), gets
//! a signed neutralize policy, uploads the original flash to the org, and
//! writes the new image to `/dev/mtd0` (block2mtd over the host's image
//! file) through the safe write engine. One node, several boots:
//!
//! 1. a descriptor whose BIOS master may not write the ME region, policy
//!    `ignore`: enrollment;
//! 2. the same, `neutralize --mode strip`: refused, on the console and to
//!    the org; the host file is unchanged; no backup taken;
//! 3. unlocked synthetic image, disable bit: the host file afterwards equals
//!    what `fortros-agent neutralize --mode disable` computes on the host;
//!    only the erase blocks a host-side diff finds were written; the org
//!    serves the original back (`fortros-org nodes backup`);
//! 4. policy strip: the report shows "disable bit set"; the file becomes
//!    `neutralize --mode strip+disable` of it;
//! 5. the report shows "cleaned + disable bit set"; nothing left to write;
//! 6. with the corpus present: the same strip on the assembled CSME 11
//!    image (x210), its descriptor unlocked in memory (never committed).

use fortros_e2e::cut::run_node_command;
use fortros_e2e::host::{agent_bin, host_neutralize, unlock_host_master};
use fortros_e2e::org::{console_json, TestOrg};
use fortros_e2e::sha_hex;
use fortros_e2e::NODE_MODULES;
use fortros_e2e::{agent_initramfs, fresh_dir, node_available};
use fortros_testkit::corpus::Corpus;
use fortros_testkit::synth::descriptor::{full_image_with_me, DescriptorBuilder};
use fortros_testkit::synth::me::gen3_stock;
use std::path::Path;

const BLOCK: usize = 4096;

/// Offsets of the 4 KiB blocks where two images differ.
fn diff_blocks(a: &[u8], b: &[u8]) -> Vec<u64> {
    a.chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| (i * BLOCK) as u64)
        .collect()
}

fn boot(initrd: &Path, out: &Path, spi: &Path, tpm: &Path) -> String {
    let st = run_node_command(
        initrd,
        out,
        spi,
        tpm,
        400,
        "no_timer_check FORTROS_MTD_ALLOW_RAM=1",
    )
    .status()
    .expect("run scripts/run-node");
    let console = std::fs::read_to_string(out.join("console.log")).unwrap_or_default();
    assert!(st.success(), "QEMU failed; console:\n{console}");
    console
}

/// The node's config: the org, the flash as /dev/mtd0 with a journal, DHCP,
/// power off afterwards (no OS to hand off to in this test).
fn agent_toml(org: &TestOrg) -> String {
    format!(
        r#"
[org]
url = "{}"
public_key = "{}"

[flash]
device = "mtd"
journal = "/tmp/flash.journal"

[network]
interface = "eth0"

{NODE_MODULES}
"#,
        org.guest_url(),
        org.public_key()
    )
}

/// Checks a boot that wrote `expected` over `before`.
fn assert_written(console: &str, spi: &Path, before: &[u8], expected: &[u8]) {
    let apply = console_json(console, "FORTROS-APPLY");
    assert_eq!(apply["outcome"]["result"], "written", "{apply}");
    let now = std::fs::read(spi).unwrap();
    assert_eq!(
        sha_hex(&now),
        sha_hex(expected),
        "the host file equals the host's neutralize output"
    );
    let written: Vec<u64> = apply["blocks_written"]
        .as_array()
        .expect("blocks_written")
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    assert_eq!(
        written,
        diff_blocks(before, expected),
        "only the changed erase blocks"
    );
    assert_eq!(apply["old_sha256"], sha_hex(before));
    assert_eq!(apply["new_sha256"], sha_hex(expected));
    assert_eq!(apply["backup_sha256"], sha_hex(before));
    let report = console_json(console, "FORTROS-REPORT");
    let actions = report["report"]["actions"].to_string();
    assert!(
        actions.contains("neutralize:") && actions.contains("Done"),
        "{actions}"
    );
    assert!(!console.contains("FAILED:"), "console:\n{console}");
}

fn image_state(console: &str) -> String {
    console_json(console, "FORTROS-REPORT")["image"]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn neutralize_policy_writes_the_node_flash_safely() {
    if !node_available("neutralize_policy_writes_the_node_flash_safely") {
        return;
    }
    let d = fresh_dir("e2e-apply", "neutralize");
    let org = TestOrg::start(&d.join("org"));
    let agent = agent_bin();
    let cfg = d.join("agent.toml");
    std::fs::write(&cfg, agent_toml(&org)).unwrap();
    let initrd = d.join("initrd.cpio.gz");
    agent_initramfs(&initrd, &cfg, None);
    let spi = d.join("spi.bin");
    let tpm = d.join("tpm");

    // 1. A descriptor that lets the host write the descriptor and BIOS but
    //    not the ME region (FLMSTR1 0x00B00F00), policy ignore: the node
    //    enrolls.
    let locked = full_image_with_me(
        DescriptorBuilder::v2().master(1, 0x00B0_0F00),
        &gen3_stock().bytes,
        8 << 20,
    );
    std::fs::write(&spi, &locked).unwrap();
    let console = boot(&initrd, &d.join("boot1"), &spi, &tpm);
    let line = console_json(&console, "FORTROS-REPORT");
    let node = line["node_id"].as_u64().expect("enrolled");
    let id = node.to_string();

    // 2. A strip under that descriptor: refused, nothing written.
    org.cli(&[
        "policy",
        "set",
        "--node",
        &id,
        "neutralize",
        "--mode",
        "strip",
    ]);
    let console = boot(&initrd, &d.join("boot2"), &spi, &tpm);
    let apply = console_json(&console, "FORTROS-APPLY");
    assert_eq!(apply["outcome"]["result"], "refused", "{apply}");
    let reason = apply["outcome"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("region 2 (ME)")
            && reason.contains("FLMSTR1=0x00b00f00")
            && reason.contains("HMRFPO"),
        "{reason}"
    );
    assert!(console.contains("refused"), "console:\n{console}");
    assert!(std::fs::read(&spi).unwrap() == locked, "flash untouched");
    let backups = org.json(&["nodes", "backup", &id, "--list", "--json"]);
    assert_eq!(backups.as_array().map(Vec::len), Some(0), "{backups}");
    let org_log = std::fs::read_to_string(d.join("org/org.err")).unwrap_or_default()
        + &std::fs::read_to_string(d.join("org/org.log")).unwrap_or_default();
    assert!(
        org_log.contains("neutralize:strip+disable-bit -> Refused"),
        "the org records the refusal; org log:\n{org_log}"
    );

    // 3. An unlocked image: the disable bit is written.
    org.cli(&[
        "policy",
        "set",
        "--node",
        &id,
        "neutralize",
        "--mode",
        "disable-bit",
    ]);
    let synth = full_image_with_me(
        DescriptorBuilder::v2().master(1, 0xFFFF_FFFF),
        &gen3_stock().bytes,
        8 << 20,
    );
    std::fs::write(&spi, &synth).unwrap();
    let stage1 = host_neutralize(&agent, &d, &synth, "disable");
    let console = boot(&initrd, &d.join("boot3"), &spi, &tpm);
    assert_eq!(image_state(&console), "stock");
    assert_written(&console, &spi, &synth, &stage1);
    assert_eq!(diff_blocks(&synth, &stage1), vec![0], "the strap block");
    assert!(
        org.backup(node, &sha_hex(&synth), &d.join("backup.bin")) == synth,
        "the org serves the original image back"
    );

    // 4. Strip: the report shows the bit; the strip is written.
    org.cli(&[
        "policy",
        "set",
        "--node",
        &id,
        "neutralize",
        "--mode",
        "strip",
    ]);
    let stage2 = host_neutralize(&agent, &d, &stage1, "strip+disable");
    let console = boot(&initrd, &d.join("boot4"), &spi, &tpm);
    assert_eq!(image_state(&console), "disable_bit_set");
    assert_written(&console, &spi, &stage1, &stage2);
    assert!(org.backup(node, &sha_hex(&stage1), &d.join("backup.bin")) == stage1);

    // 5. Nothing left to do.
    let console = boot(&initrd, &d.join("boot5"), &spi, &tpm);
    assert_eq!(image_state(&console), "cleaned_and_disable_bit_set");
    let apply = console_json(&console, "FORTROS-APPLY");
    assert_eq!(apply["outcome"]["result"], "already_neutralized", "{apply}");
    assert!(std::fs::read(&spi).unwrap() == stage2);

    // 6. A corpus-shaped image (CSME 11.8, x210), when the corpus is here.
    let Some(corpus) =
        Corpus::open_or_skip("neutralize_policy_writes_the_node_flash_safely (x210)")
    else {
        return;
    };
    let mut x210 = corpus.assemble_full("x210").expect("assemble x210");
    unlock_host_master(&mut x210);
    std::fs::write(&spi, &x210).unwrap();
    let expected = host_neutralize(&agent, &d, &x210, "strip+disable");
    let console = boot(&initrd, &d.join("boot6"), &spi, &tpm);
    assert_eq!(image_state(&console), "stock");
    assert_written(&console, &spi, &x210, &expected);
    let apply = console_json(&console, "FORTROS-APPLY");
    assert!(
        apply["firmware"].as_str().unwrap_or("").contains("11.8"),
        "{apply}"
    );
    // Corpus-derived bytes stay out of the repository; do not leave them
    // lying around in .work either.
    for f in ["spi.bin", "host-in.bin", "host-out.bin", "backup.bin"] {
        let _ = std::fs::remove_file(d.join(f));
    }
}
