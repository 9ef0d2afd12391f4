//! Org-side verification throughput: one full `verify_report` (postcard
//! decode, AK checks, P-256 ECDSA verify, attest parse, extraData, PCR
//! digest) per iteration, on a fully populated report quoted in the TPM's
//! format. Also signing and verifying the policy envelope.
//! `cargo bench -p fortros-wire --bench verify`; figures in
//! docs/report-format.md. Set FORTROS_BENCH_THREADS to measure the
//! aggregate rate over several cores.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use fortros_wire::envelope::{PolicyExpectation, SignedPolicy};
use fortros_wire::policy::*;
use fortros_wire::testing::{sample_report, SoftAk};
use fortros_wire::verify::{verify_report, Expectation};
use fortros_wire::{tpm, Bytes, POLICY_FORMAT};
use std::time::{Duration, Instant};

const NONCE: &[u8] = b"bench-nonce-0123456789abcdefghij";

fn bench(c: &mut Criterion) {
    let ak = SoftAk::from_seed(1);
    let report = sample_report(ak.public(), NONCE);
    let ev = ak.quote(&report, &report.to_bytes().unwrap());
    let expect = Expectation {
        nonce: NONCE,
        enrolled_ak: Some(ak.public()),
    };
    let mut g = c.benchmark_group("org");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_report", |b| {
        b.iter(|| verify_report(black_box(&ev), black_box(&expect)).unwrap())
    });

    let org = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let name = tpm::name_sha256(ak.public());
    let policy = Policy {
        format: POLICY_FORMAT,
        serial: 5,
        node: NodeBinding {
            ak_name: Bytes(name.clone()),
        },
        nonce: Bytes(NONCE.to_vec()),
        action: PolicyAction::Ignore,
        extensions: vec![],
    };
    g.bench_function("sign_policy", |b| {
        b.iter(|| SignedPolicy::sign(black_box(&policy), &org).unwrap())
    });
    let env = SignedPolicy::sign(&policy, &org).unwrap();
    let pexp = PolicyExpectation {
        ak_name: &name,
        nonce: NONCE,
        last_serial: Some(4),
    };
    g.bench_function("verify_policy", |b| {
        b.iter(|| env.verify(&org.verifying_key(), black_box(&pexp)).unwrap())
    });
    g.finish();

    // Aggregate rate over N threads (the org verifies reports in parallel).
    let threads: usize = std::env::var("FORTROS_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let window = Duration::from_secs(3);
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < window {
                        verify_report(&ev, &expect).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "verify_report aggregate: {:.0} reports/s on {threads} threads ({total} in {secs:.1} s)",
        total as f64 / secs
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).sample_size(30);
    targets = bench
}
criterion_main!(benches);
