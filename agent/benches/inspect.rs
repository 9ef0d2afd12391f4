//! `inspect` of the 16 MiB and 32 MiB assembled corpus images against a
//! plain SHA-256 of the same bytes (the floor: inspect must at least hash
//! the image). Goal: inspect within 1.3 × the hash alone. Figures go in
//! docs/image.md. Without the corpus it says so and measures nothing.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fortros_agent::image::descriptor::Descriptor;
use fortros_agent::image::digest::digest;
use fortros_agent::image::inspect::inspect;
use fortros_agent::image::me::parse_me_region;
use fortros_testkit::corpus::Corpus;
use sha2::{Digest, Sha256};

fn bench(c: &mut Criterion) {
    let Some(corpus) = Corpus::open_or_skip("bench inspect") else {
        return;
    };
    let mut group = c.benchmark_group("inspect");
    group.sample_size(20);
    for label in ["darp6", "ms7d25"] {
        let image = corpus.assemble_full(label).expect(label);
        let mib = image.len() >> 20;
        group.throughput(Throughput::Bytes(image.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("sha256", format!("{label} {mib} MiB")),
            &image,
            |b, i| b.iter(|| Sha256::digest(i)),
        );
        group.bench_with_input(
            BenchmarkId::new("inspect", format!("{label} {mib} MiB")),
            &image,
            |b, i| b.iter(|| inspect(i).expect("corpus image inspects")),
        );
        // The parts, to see where the time goes.
        let desc = Descriptor::parse(&image).expect(label);
        let me = desc.me_region().and_then(|r| r.range()).expect(label);
        group.bench_with_input(
            BenchmarkId::new("part: digests", format!("{label} {mib} MiB")),
            &image,
            |b, i| b.iter(|| digest(i, &desc.regions)),
        );
        group.bench_with_input(
            BenchmarkId::new("part: ME parse", format!("{label} {mib} MiB")),
            &image[me],
            |b, i| b.iter(|| parse_me_region(i).expect("ME region parses")),
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
