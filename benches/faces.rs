//! Face scanning, stage by stage, on one 512×512 portrait (`pil-hopper.jpg` of
//! ../shared/faces): decode alone, the whole-image detection alone, and the full scan. One
//! thread. `benches/faces-eval` compares whole runs with OpenCV.
//!
//! `cargo bench --bench faces`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use asepsis_common::faces::{Detector, Redaction, Settings, YuNet, decode_upright};
use criterion::{Criterion, criterion_group, criterion_main};

// Measure with the `asepsis` binary's allocator: under glibc's malloc, tract's large per-run
// buffers are mapped and faulted in afresh on every run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn faces(c: &mut Criterion) {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    let settings = Settings {
        model_path: shared.join("models/face_detection_yunet_2023mar.onnx"),
        model_sha256: "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4".into(),
        high_threshold: 0.8,
        low_threshold: 0.5,
        tile_above_px: 1280,
        max_pixels: 100_000_000,
        max_decode_bytes: 1 << 30,
        redaction: Redaction::Pixelate,
        redaction_margin: 0.25,
    };
    let yunet = YuNet::load(settings.clone()).unwrap();
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
