//! A power cut in the middle of a flash write, under QEMU (TCG): the agent
//! as PID 1 enrolls with a real `fortros-org serve` (swtpm TPM, journal in
//! TPM NV), gets a signed `neutralize --mode strip` policy, uploads the
//! original flash to the org, and writes the new image to `/dev/mtd0`
//! (block2mtd over the host's image file). QEMU is killed (SIGKILL: no
//! shutdown, no guest flush) while it writes. See `fortros_e2e::cut` for how
//! the moment is made deterministic (a slow virtual chip; a pause knob).
//!
//! One node, one org, boots in sequence:
//!
//! 0. policy `ignore`: the node enrolls; nothing written;
//! 1. policy strip, the chip throttled: cut as soon as the console shows
//!    "run 1/N ... written and verified" (N >= 2). The host file is torn:
//!    some runs new, some old, nothing outside the changed blocks touched;
//! 2. the org stopped: the agent finds the TPM NV journal and the mixed
//!    chip, cannot fetch the original (NeedImage), writes nothing, keeps
//!    the journal, follows the failure policy (stop);
//! 3. the org back: the agent fetches the original from the org's backup,
//!    verifies it, restores (RestoredFromBackup), clears the journal, then
//!    applies the policy again from the original: the host file equals the
//!    host's `neutralize --mode strip+disable` of the original; the org
//!    still serves the original (nothing lost) and logged the fetch;
//! 4. the original put back on the chip, cut while the agent pauses between
//!    the last verified run and the journal clear (a test knob on the
//!    kernel command line, `FORTROS_TEST_PAUSE_BEFORE_JOURNAL_CLEAR`): the
//!    host file is already the new image, the journal is still set;
//! 5. the agent decides AlreadyComplete, rewrites nothing, clears the
//!    journal; the image is neutralized, nothing more to write.

use fortros_e2e::cut::{run_node_command, RunningNode};
use fortros_e2e::host::{agent_bin, host_neutralize, unlock_host_master};
use fortros_e2e::org::{console_json, TestOrg};
use fortros_e2e::sha_hex;
use fortros_e2e::{agent_initramfs, fresh_dir, node_available, NODE_MODULES};
use fortros_testkit::corpus::Corpus;
use fortros_testkit::synth::descriptor::{full_image_with_me, DescriptorBuilder};
use fortros_testkit::synth::me::gen3_stock;
use std::path::Path;
use std::time::Duration;

const BLOCK: usize = 4096;
/// Kernel command line: block2mtd is a RAM-type MTD.
const APPEND: &str = "FORTROS_MTD_ALLOW_RAM=1";
/// The slow chip: guest writes to the SPI image at this many bytes a
/// second. QEMU lets a request through when its bucket is (nearly) empty
/// and charges it afterwards, so after a 4 KiB run the next request waits
/// about 4096 / 256 = 16 s: the window in which the cut lands.
const SLOW_CHIP_BPS: u64 = 256;
/// A boot under TCG on a loaded 2-core host: minutes, not seconds.
const BOOT_LIMIT: Duration = Duration::from_secs(540);

/// The node's config: the org, the flash as /dev/mtd0, the journal in TPM
/// NV (digests only: recovery needs the org's backup), DHCP; failures stop
/// the boot (no OS here anyway: power off).
fn agent_toml(org: &TestOrg) -> String {
    format!(
        r#"
[org]
url = "{}"
public_key = "{}"

[flash]
device = "mtd"
journal = "tpm-nv"

[failure]
policy = "stop"
stop_hold_seconds = 0

[network]
interface = "eth0"

{NODE_MODULES}
"#,
        org.guest_url(),
        org.public_key()
    )
}

/// What a block of the chip holds compared with the write's two images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Old,
    New,
    Neither,
}

/// The state of every 4 KiB block the write changes, in order.
fn block_states(now: &[u8], old: &[u8], new: &[u8]) -> Vec<(usize, Held)> {
    old.chunks(BLOCK)
        .zip(new.chunks(BLOCK))
        .zip(now.chunks(BLOCK))
        .enumerate()
        .filter(|(_, ((o, n), _))| o != n)
        .map(|(i, ((o, n), x))| {
            let held = if x == n {
                Held::New
            } else if x == o {
                Held::Old
            } else {
                Held::Neither
            };
            (i * BLOCK, held)
        })
        .collect()
}

/// `offset:state` for every changed block, for the test's output.
fn describe(states: &[(usize, Held)]) -> String {
    states
        .iter()
        .map(|(o, h)| format!("{o:#x}:{h:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The blocks outside `changed` equal the original.
fn untouched_elsewhere(now: &[u8], old: &[u8], new: &[u8]) -> bool {
    old.chunks(BLOCK)
        .zip(new.chunks(BLOCK))
        .zip(now.chunks(BLOCK))
        .all(|((o, n), x)| o != n || x == o)
}

/// "run i/N at ... written and verified" lines: the largest i seen, and N.
fn runs_logged(console: &str) -> Option<(u32, u32)> {
    console
        .lines()
        .filter(|l| l.contains("written and verified"))
        .filter_map(|l| {
            let rest = l.split("run ").nth(1)?;
            let (i, rest) = rest.split_once('/')?;
            let n = rest.split_whitespace().next()?;
            Some((i.parse().ok()?, n.parse().ok()?))
        })
        .max()
}

/// One complete boot; panics with the console when QEMU fails.
fn boot(initrd: &Path, out: &Path, spi: &Path, tpm: &Path) -> String {
    let cmd = run_node_command(initrd, out, spi, tpm, 540, APPEND);
    let (ok, console) = RunningNode::spawn(cmd, out).wait();
    assert!(ok, "QEMU failed; console:\n{console}");
    console
}

fn org_log(d: &Path) -> String {
    std::fs::read_to_string(d.join("org/org.err")).unwrap_or_default()
        + &std::fs::read_to_string(d.join("org/org.log")).unwrap_or_default()
}

#[test]
fn power_cut_mid_write_is_recovered_from_the_org_backup() {
    let name = "power_cut_mid_write_is_recovered_from_the_org_backup";
    if !node_available(name) {
        return;
    }
    let d = fresh_dir("e2e-power-cut", "mid-write");
    let mut org = TestOrg::start(&d.join("org"));
    let agent = agent_bin();
    let cfg = d.join("agent.toml");
    std::fs::write(&cfg, agent_toml(&org)).unwrap();
    let initrd = d.join("initrd.cpio.gz");
    agent_initramfs(&initrd, &cfg, None);
    let spi = d.join("spi.bin");
    let tpm = d.join("tpm");
    let original = full_image_with_me(
        DescriptorBuilder::v2().master(1, 0xFFFF_FFFF),
        &gen3_stock().bytes,
        8 << 20,
    );
    let expected = host_neutralize(&agent, &d, &original, "strip+disable");
    let changed = block_states(&original, &original, &expected);
    println!(
        "power cut: strip changes {} blocks: {}",
        changed.len(),
        describe(&changed)
    );

    // 0. Enrollment under `ignore`.
    std::fs::write(&spi, &original).unwrap();
    let console = boot(&initrd, &d.join("boot0"), &spi, &tpm);
    let node = console_json(&console, "FORTROS-REPORT")["node_id"]
        .as_u64()
        .expect("enrolled");
    let id = node.to_string();
    assert!(
        std::fs::read(&spi).unwrap() == original,
        "ignore writes nothing"
    );
    org.cli(&[
        "policy",
        "set",
        "--node",
        &id,
        "neutralize",
        "--mode",
        "strip",
    ]);

    // 1. The cut, right after the first run is verified.
    let out = d.join("boot1");
    let mut node1 = RunningNode::spawn(
        run_node_command(&initrd, &out, &spi, &tpm, 600, APPEND),
        &out,
    );
    node1.slow_writes(&spi, SLOW_CHIP_BPS);
    let throttled = std::time::Instant::now();
    let console = node1.wait_console("\"run 1/N ... written and verified\"", BOOT_LIMIT, |c| {
        runs_logged(c).is_some()
    });
    let seen = throttled.elapsed();
    let (done, runs) = runs_logged(&console).unwrap();
    assert!(
        runs >= 2,
        "the strip must take several runs to cut between; console:\n{console}"
    );
    assert!(
        !console.contains("write verified, new SHA-256"),
        "the write finished before the cut; console:\n{console}"
    );
    node1.kill_qemu();
    let console = node1.console();
    let after_cut = std::fs::read(&spi).unwrap();
    let states = block_states(&after_cut, &original, &expected);
    println!(
        "power cut: killed QEMU {:.1} s after the chip was slowed, after run {done}/{runs}; \
         host file SHA-256 {}; blocks: {}",
        seen.as_secs_f64(),
        sha_hex(&after_cut),
        describe(&states)
    );
    assert!(
        runs_logged(&console).is_some_and(|(i, _)| i < runs),
        "the last run was not logged before the cut; console:\n{console}"
    );
    assert!(
        untouched_elsewhere(&after_cut, &original, &expected),
        "nothing outside the changed blocks was written"
    );
    assert!(
        after_cut != original,
        "run 1 reached the chip before it was logged as verified"
    );
    assert!(after_cut != expected, "the cut left the write unfinished");
    assert!(
        states.iter().any(|(_, h)| *h == Held::New) && states.iter().any(|(_, h)| *h != Held::New),
        "torn: some blocks new, some not: {}",
        describe(&states)
    );

    // 2. The org is unreachable: nothing written, the journal kept.
    org.stop();
    let console = boot(&initrd, &d.join("boot2"), &spi, &tpm);
    assert!(
        console.contains("interrupted flash write found in TPM NV index 0x01a0f001")
            && console.contains("decision NeedImage"),
        "console:\n{console}"
    );
    assert!(
        console.contains("the backup from the org at")
            && console.contains("could not be had")
            && console.contains("Connection refused")
            && console.contains("journal kept, no flash write this boot"),
        "console:\n{console}"
    );
    assert!(
        console.contains("decision NeedImage: restoring from the org at")
            && !console.contains("recovery RestoredFromBackup done")
            && !console.contains("FORTROS-FLASH-RECOVERY="),
        "no restore claimed; console:\n{console}"
    );
    assert!(
        console.contains("STOP: not booting the OS"),
        "console:\n{console}"
    );
    assert!(!console.contains("FORTROS-APPLY="), "console:\n{console}");
    assert!(
        std::fs::read(&spi).unwrap() == after_cut,
        "without the original, the chip is left as the cut left it"
    );

    // 3. The org is back: restored from its backup, then the policy again.
    org.restart();
    let console = boot(&initrd, &d.join("boot3"), &spi, &tpm);
    assert!(
        console.contains("decision NeedImage"),
        "console:\n{console}"
    );
    assert!(
        console.contains("decision NeedImage: restoring from the org at")
            && console.contains("recovery RestoredFromBackup done")
            && console.contains("flash recovery: RestoredFromBackup"),
        "console:\n{console}"
    );
    assert!(
        console.contains(&format!("verified (SHA-256 {})", sha_hex(&original))),
        "the backup's digest checked; console:\n{console}"
    );
    assert!(
        console.contains("FORTROS-FLASH-RECOVERY=RestoredFromBackup"),
        "console:\n{console}"
    );
    let apply = console_json(&console, "FORTROS-APPLY");
    assert_eq!(apply["outcome"]["result"], "written", "{apply}");
    assert_eq!(
        apply["old_sha256"],
        sha_hex(&original),
        "re-applied from the original"
    );
    assert_eq!(apply["new_sha256"], sha_hex(&expected));
    let now = std::fs::read(&spi).unwrap();
    assert_eq!(
        sha_hex(&now),
        sha_hex(&expected),
        "the host file is the neutralized image"
    );
    assert!(!console.contains("FAILED:"), "console:\n{console}");
    let log = org_log(&d);
    assert!(
        log.contains(&format!(
            "node {node}: backup {} served",
            sha_hex(&original)
        )),
        "the org served the original for the restore; org log:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "node {node}: flash-recovery:RestoredFromBackup -> Done"
        )),
        "the org recorded the recovery with the outcome; org log:\n{log}"
    );
    let actions = console_json(&console, "FORTROS-REPORT")["report"]["actions"].to_string();
    assert!(
        actions.contains("flash-recovery:RestoredFromBackup")
            && actions.contains(&format!("flash SHA-256 {}", sha_hex(&original))),
        "{actions}"
    );
    assert!(
        org.backup(node, &sha_hex(&original), &d.join("backup.bin")) == original,
        "nothing lost: the org still holds the original"
    );
    println!("power cut: boot 3 restored and re-applied; host file = expected");

    // 4. The cut between the last verified run and the journal clear: the
    //    agent's test knob holds it there (a stalled swtpm would freeze
    //    QEMU's vCPU, which reads the TPM's control socket synchronously).
    std::fs::write(&spi, &original).unwrap();
    let out = d.join("boot4");
    let append = format!("{APPEND} FORTROS_TEST_PAUSE_BEFORE_JOURNAL_CLEAR=300");
    let mut node4 = RunningNode::spawn(
        run_node_command(&initrd, &out, &spi, &tpm, 600, &append),
        &out,
    );
    let console = node4.wait_console("the pause before the journal clear", BOOT_LIMIT, |c| {
        c.contains("pausing 300 s before clearing the journal")
    });
    node4.kill_qemu();
    assert!(
        runs_logged(&console).is_some_and(|(i, n)| i == n),
        "every run verified before the pause; console:\n{console}"
    );
    assert!(
        !node4.console().contains("write verified, new SHA-256"),
        "the journal was not cleared before the cut"
    );
    let now = std::fs::read(&spi).unwrap();
    assert!(now == expected, "every run reached the chip before the cut");

    // 5. AlreadyComplete: nothing rewritten, nothing left to write.
    let console = boot(&initrd, &d.join("boot5"), &spi, &tpm);
    assert!(
        console.contains("decision AlreadyComplete")
            && console.contains("flash recovery: AlreadyComplete (0 ranges rewritten)"),
        "console:\n{console}"
    );
    let apply = console_json(&console, "FORTROS-APPLY");
    assert_eq!(apply["outcome"]["result"], "already_neutralized", "{apply}");
    assert!(std::fs::read(&spi).unwrap() == expected);
    assert!(
        org_log(&d).contains(&format!(
            "node {node}: flash-recovery:AlreadyComplete -> Done"
        )),
        "org log:\n{}",
        org_log(&d)
    );
    assert!(!console.contains("FAILED:"), "console:\n{console}");
}

/// The same cut on the assembled CSME 11 image (x210) when the corpus is
/// here: its strip is dozens of runs, more than the TPM NV journal's 25
/// entries, so the journal holds spans; the cut lands after half the runs.
/// Boot 2 restores from the org's backup and applies the policy again.
#[test]
fn power_cut_on_the_x210_image_with_many_runs() {
    let name = "power_cut_on_the_x210_image_with_many_runs";
    if !node_available(name) {
        return;
    }
    let Some(corpus) = Corpus::open_or_skip(name) else {
        return;
    };
    let d = fresh_dir("e2e-power-cut", "x210");
    let org = TestOrg::start(&d.join("org"));
    let agent = agent_bin();
    let cfg = d.join("agent.toml");
    std::fs::write(&cfg, agent_toml(&org)).unwrap();
    let initrd = d.join("initrd.cpio.gz");
    agent_initramfs(&initrd, &cfg, None);
    let spi = d.join("spi.bin");
    let tpm = d.join("tpm");
    let mut original = corpus.assemble_full("x210").expect("assemble x210");
    unlock_host_master(&mut original);
    let expected = host_neutralize(&agent, &d, &original, "strip+disable");
    let changed = block_states(&original, &original, &expected);

    std::fs::write(&spi, &original).unwrap();
    let console = boot(&initrd, &d.join("boot0"), &spi, &tpm);
    let node = console_json(&console, "FORTROS-REPORT")["node_id"]
        .as_u64()
        .expect("enrolled");
    org.cli(&[
        "policy",
        "set",
        "--node",
        &node.to_string(),
        "neutralize",
        "--mode",
        "strip",
    ]);

    // 1. A chip slow enough that the whole write takes about a minute;
    //    the cut once half the runs are verified.
    let bps = (changed.len() * BLOCK / 60).max(256) as u64;
    let out = d.join("boot1");
    let mut node1 = RunningNode::spawn(
        run_node_command(&initrd, &out, &spi, &tpm, 600, APPEND),
        &out,
    );
    node1.slow_writes(&spi, bps);
    let console = node1.wait_console("half the runs verified", BOOT_LIMIT, |c| {
        runs_logged(c).is_some_and(|(i, n)| i * 2 >= n)
    });
    node1.kill_qemu();
    let (done, runs) = runs_logged(&console).unwrap();
    assert!(
        done < runs && !console.contains("write verified, new SHA-256"),
        "the cut came before the last run; console:\n{console}"
    );
    let after_cut = std::fs::read(&spi).unwrap();
    let states = block_states(&after_cut, &original, &expected);
    let count = |h: Held| states.iter().filter(|(_, s)| *s == h).count();
    println!(
        "power cut (x210): {} changed blocks in {runs} runs, {bps} B/s; killed after run \
         {done}/{runs}: {} new, {} old, {} neither",
        changed.len(),
        count(Held::New),
        count(Held::Old),
        count(Held::Neither)
    );
    assert!(untouched_elsewhere(&after_cut, &original, &expected));
    assert!(count(Held::New) > 0 && count(Held::New) < changed.len());

    // 2. Restored from the org's backup, then written again.
    let console = boot(&initrd, &d.join("boot2"), &spi, &tpm);
    assert!(
        console.contains("recovery RestoredFromBackup done")
            && console.contains("FORTROS-FLASH-RECOVERY=RestoredFromBackup"),
        "console:\n{console}"
    );
    let apply = console_json(&console, "FORTROS-APPLY");
    assert_eq!(apply["outcome"]["result"], "written", "{apply}");
    assert_eq!(apply["old_sha256"], sha_hex(&original));
    assert!(
        std::fs::read(&spi).unwrap() == expected,
        "the host file equals the host's strip of x210"
    );
    assert!(
        org.backup(node, &sha_hex(&original), &d.join("backup.bin")) == original,
        "nothing lost: the org still holds the original"
    );
    // Corpus-derived bytes stay out of the repository and out of .work.
    for f in ["spi.bin", "host-in.bin", "host-out.bin", "backup.bin"] {
        let _ = std::fs::remove_file(d.join(f));
    }
}
