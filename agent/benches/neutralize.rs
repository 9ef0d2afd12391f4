//! `neutralize` (strip + disable bit, the default) of each 8 MiB assembled
//! corpus image, with the re-parse and check included — the whole cost a
//! user pays. `disable` alone and `inspect` alone are measured beside it
//! to show where the time goes. Figures go in docs/neutralize.md. Without
//! the corpus it says so and measures nothing.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fortros_agent::image::inspect::inspect;
use fortros_agent::image::neutralize::{neutralize, Mode, Options};
use fortros_testkit::corpus::Corpus;

fn bench(c: &mut Criterion) {
    let Some(corpus) = Corpus::open_or_skip("bench neutralize") else {
        return;
    };
    let mut group = c.benchmark_group("neutralize");
    group.sample_size(20);
    for label in ["lumpy", "link", "x210", "fbg1701", "minnowmax_sb"] {
        let image = corpus.assemble_full(label).expect(label);
        group.throughput(Throughput::Bytes(image.len() as u64));
        for (name, mode) in [
            ("strip+disable", Mode::StripAndDisable),
            ("disable", Mode::Disable),
        ] {
            let o = Options {
                mode,
                ..Options::default()
            };
            group.bench_with_input(BenchmarkId::new(name, label), &image, |b, i| {
                b.iter(|| neutralize(i, &o).expect("corpus image neutralizes"))
            });
        }
        group.bench_with_input(BenchmarkId::new("inspect", label), &image, |b, i| {
            b.iter(|| inspect(i).expect("corpus image inspects"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
