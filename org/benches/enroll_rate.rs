//! Enrollments per second: a real org server on loopback (SQLite file in a
//! temporary folder, WAL mode) and the agent's client driving software-TPM
//! nodes from several threads. Measures two things:
//! - first enrollments (nonce, report + quote verification, MakeCredential,
//!   ActivateCredential answer, node creation, signed policy);
//! - re-enrollments of known nodes (nonce, report, diff, signed policy),
//!   the per-boot steady state.
//!
//! RSA EK generation for the simulated nodes happens before timing.
//! Run: `scripts/bench-org` (figures go to docs/bench-org.md by hand).

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use fortros_agent::enroll::{EnrollClient, Enrolled};
use fortros_wire::testing::sample_report;
use std::time::Instant;

fn main() {
    let nodes: usize = std::env::var("BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let threads: usize = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let rounds = 4;
    let dir = tempfile::tempdir().unwrap();
    let keys = fortros_org::keys::OrgKeys::generate();
    let pubkey = keys.verifying();
    let (_org, srv) = start_org(dir.path(), keys, settings(true));
    let url = srv.url();

    eprintln!("generating {nodes} software EKs (not timed)...");
    let mut pool: Vec<Vec<SoftNode>> = (0..threads).map(|_| Vec::new()).collect();
    let gen: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                (t..nodes)
                    .step_by(threads)
                    .map(|i| SoftNode::new(i as u8))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (slot, h) in pool.iter_mut().zip(gen) {
        *slot = h.join().unwrap();
    }

    let run = |pool: Vec<Vec<SoftNode>>, rounds: usize| {
        let start = Instant::now();
        let handles: Vec<_> = pool
            .into_iter()
            .map(|mut mine| {
                let url = url.clone();
                std::thread::spawn(move || {
                    let client = EnrollClient::new(&url, pubkey);
                    for _ in 0..rounds {
                        for n in mine.iter_mut() {
                            match client.enroll(n, sample_report(&[], &[]), None).unwrap() {
                                Enrolled::Policy { .. } => {}
                                Enrolled::Pending { reason, .. } => panic!("{reason}"),
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        let back: Vec<Vec<SoftNode>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (start.elapsed(), back)
    };

    let (first, pool) = run(pool, 1);
    println!(
        "first enrollment: {nodes} nodes, {threads} client threads: {:.2} s, {:.1} enrollments/s",
        first.as_secs_f64(),
        nodes as f64 / first.as_secs_f64()
    );
    let (again, _) = run(pool, rounds);
    let n = nodes * rounds;
    println!(
        "re-enrollment: {n} enrollments of known nodes, {threads} client threads: {:.2} s, {:.1} enrollments/s",
        again.as_secs_f64(),
        n as f64 / again.as_secs_f64()
    );
}
