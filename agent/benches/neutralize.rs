//! `neutralize` in process, on the same inputs and options as the
//! me_cleaner rows of CORPUS.tsv that `scripts/bench-neutralize` times
//! (ME region files: clean, `-r -t`; assembled full images: clean, `-S`,
//! `-s`, `-S -d`), with the re-parse and check of the result included —
//! the whole cost of the library call. `inspect` alone (which hashes the
//! whole image) is measured beside it for scale. Figures go in
//! docs/neutralize.md ("Speed"). Without the corpus it says so and
//! measures nothing.
//!
//! Benchmark ids are `neutralize/<options>/<input>`; scripts/bench-neutralize
//! reads the medians from target/criterion under those names.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fortros_agent::image::inspect::inspect;
use fortros_agent::image::neutralize::{neutralize, Mode, Options};
use fortros_testkit::corpus::Corpus;

/// (benchmark name, options): the names stand for me_cleaner's options
/// (clean, `-r -t`; full images: clean, `-S`, `-s`, `-S -d`).
fn cases(me_file: bool) -> Vec<(&'static str, Options)> {
    let o = |mode, relocate, truncate, restrict_me_access| Options {
        mode,
        relocate,
        truncate,
        restrict_me_access,
        allow_boot_guard: false,
    };
    if me_file {
        vec![
            ("me_strip", o(Mode::Strip, false, false, false)),
            (
                "me_strip_relocate_truncate",
                o(Mode::Strip, true, true, false),
            ),
        ]
    } else {
        vec![
            ("full_strip", o(Mode::Strip, false, false, false)),
            (
                "full_strip_disable",
                o(Mode::StripAndDisable, false, false, false),
            ),
            ("full_disable", o(Mode::Disable, false, false, false)),
            (
                "full_strip_disable_unlock",
                o(Mode::StripAndDisable, false, false, true),
            ),
        ]
    }
}

/// The corpus labels me_cleaner handles correctly, with their ME file.
const LABELS: [(&str, &str); 5] = [
    ("lumpy", "cbblobs_samsung_lumpy_me.bin"),
    ("link", "cbblobs_google_link_me.bin"),
    ("x210", "x210_me.bin"),
    ("fbg1701", "cbblobs_facebook_fbg1701_me.bin"),
    ("minnowmax_sb", "dasharo_minnowmax_txe_sb.bin"),
];

fn bench(c: &mut Criterion) {
    let Some(corpus) = Corpus::open_or_skip("bench neutralize") else {
        return;
    };
    let mut group = c.benchmark_group("neutralize");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (label, me_file) in LABELS {
        let full = corpus.assemble_full(label).expect(label);
        let me = corpus.read(me_file).expect(me_file);
        for (image, is_me_file) in [(&me, true), (&full, false)] {
            group.throughput(Throughput::Bytes(image.len() as u64));
            for (name, o) in cases(is_me_file) {
                group.bench_with_input(BenchmarkId::new(name, label), image, |b, i| {
                    b.iter(|| neutralize(i, &o).expect("corpus image neutralizes"))
                });
            }
        }
        group.throughput(Throughput::Bytes(full.len() as u64));
        group.bench_with_input(BenchmarkId::new("inspect_full", label), &full, |b, i| {
            b.iter(|| inspect(i).expect("corpus image inspects"))
        });
    }
    // me_cleaner is right on the already-cleaned x230 only with `-s`.
    let x230 = corpus.assemble_full("x230_cleaned").expect("x230_cleaned");
    group.throughput(Throughput::Bytes(x230.len() as u64));
    let disable = Options {
        mode: Mode::Disable,
        ..Options::default()
    };
    group.bench_with_input(
        BenchmarkId::new("full_disable", "x230_cleaned"),
        &x230,
        |b, i| b.iter(|| neutralize(i, &disable).expect("x230 neutralizes")),
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
