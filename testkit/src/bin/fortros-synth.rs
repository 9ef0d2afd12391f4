//! Writes test images for the demo and for manual runs:
//!
//! - `fortros-synth sample OUT`: a synthetic 8 MiB full image (IFD v2
//!   descriptor, ME region, BIOS region 0xFF) built by the testkit builders.
//! - `fortros-synth assemble LABEL OUT`: the corpus's assembled full image
//!   for LABEL (CORPUS.tsv recipe). Its bytes are Intel's: write it only
//!   under an ignored scratch folder, never into the repository.
//! - `fortros-synth labels`: the assembled-image labels of the corpus.

use std::process::ExitCode;

use fortros_testkit::corpus::{corpus_dir, Corpus};
use fortros_testkit::synth;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["sample", out] => {
            std::fs::write(out, synth::sample_full_image()).map_err(|e| format!("{out}: {e}"))
        }
        ["assemble", label, out] => Corpus::open(&corpus_dir())
            .and_then(|c| c.assemble_full(label))
            .and_then(|image| std::fs::write(out, image))
            .map_err(|e| format!("full:{label}: {e}")),
        ["labels"] => Corpus::open(&corpus_dir())
            .map(|c| c.full_images.keys().for_each(|l| println!("{l}")))
            .map_err(|e| format!("corpus at {}: {e}", corpus_dir().display())),
        _ => Err("usage: fortros-synth sample OUT | assemble LABEL OUT | labels".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fortros-synth: {e}");
            ExitCode::from(2)
        }
    }
}
