//! Face scanning, stage by stage, on one 512×512 portrait (`pil-hopper.jpg` of
//! ../shared/faces): decode alone, the whole-image detection alone, and the full scan. One
//! thread. `benches/faces-eval` compares whole runs with OpenCV.
//!
//! `cargo bench --bench faces`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use asepsis_common::faces::{Detector, Settings, YuNet, decode_upright};
use criterion::{Criterion, criterion_group, criterion_main};

// Measure with the `asepsis` binary's allocator: under glibc's malloc, tract's large per-run
// buffers are mapped and faulted in afresh on every run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn faces(c: &mut Criterion) {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    let settings = Settings::default();
    let yunet = YuNet::from_model(asepsis::FACE_MODEL, settings.clone()).unwrap();
    let bytes = std::fs::read(shared.join("faces/pil-hopper.jpg")).unwrap();
    let image = decode_upright(&bytes, &settings).unwrap();
    let mut group = c.benchmark_group("faces");
    group.sample_size(30);
    group.bench_function("decode", |b| {
        b.iter(|| decode_upright(&bytes, &settings).unwrap())
    });
    group.bench_function("detect", |b| {
        b.iter(|| yunet.faces_in(&image, 0.5, true).unwrap())
    });
    group.bench_function("scan", |b| b.iter(|| yunet.scan(&bytes)));
    group.finish();
}

criterion_group!(benches, faces);
criterion_main!(benches);
