//! Stripping throughput per format over the corpus files of that format, in MB/s:
//! `strip` (rewrite + verify, what production runs) and `verify` alone. In-process, one core.
//!
//! `cargo bench --bench strip`; `benches/strip-vs-peers` compares whole processes with
//! exiftool.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use asepsis_common::media::{Limits, strip, verify};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(path)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read(p).unwrap())
        .filter(|b| strip(b, &Limits::default()).is_ok())
        .collect()
}

fn formats(c: &mut Criterion) {
    let limits = Limits::default();
    for dir in ["jpeg", "png", "webp", "tiff", "heic", "avif"] {
        let files = corpus(dir);
        let total: usize = files.iter().map(Vec::len).sum();
        let outputs: Vec<Vec<u8>> = files
            .iter()
            .map(|f| strip(f, &limits).unwrap().bytes)
            .collect();
        let mut group = c.benchmark_group(format!("strip/{dir}"));
        group.throughput(Throughput::Bytes(total as u64));
        group.bench_function("strip_and_verify", |b| {
            b.iter(|| {
                for f in &files {
                    std::hint::black_box(strip(f, &limits).unwrap());
                }
            });
        });
        group.throughput(Throughput::Bytes(
            outputs.iter().map(Vec::len).sum::<usize>() as u64,
        ));
        group.bench_function("verify_only", |b| {
            b.iter(|| {
                for o in &outputs {
                    verify(o, &limits).unwrap();
                }
            });
        });
        group.finish();
    }
}

criterion_group!(benches, formats);
criterion_main!(benches);
