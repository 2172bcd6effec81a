//! DICOM de-identification speed in process, for `benches/dicom-vs-peers`.
//!
//! ```text
//! cargo run --release -p asepsis-common --example deidentify -- ROUNDS FILE...
//! ```
//!
//! Reads the files, de-identifies each ROUNDS times in memory on one thread (output verified
//! as always, never written), and prints `{"files": N, "seconds": S}` as one JSON line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use asepsis_common::dicom::{UidKey, deidentify};
use asepsis_common::media::Limits;

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args
        .next()
        .and_then(|r| r.parse().ok())
        .expect("ROUNDS FILE...");
    let files: Vec<Vec<u8>> = args.map(|f| std::fs::read(f).unwrap()).collect();
    let key = UidKey::for_tenant(&[7; 32].into(), "bench");
    let limits = Limits::default();
    let start = Instant::now();
    let mut bytes_out = 0;
    for _ in 0..rounds {
        for file in &files {
            bytes_out += deidentify(file, &key, &limits).unwrap().bytes.len();
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    assert!(bytes_out > 0);
    println!(
        "{}",
        serde_json::json!({ "files": rounds * files.len(), "seconds": seconds })
    );
}
