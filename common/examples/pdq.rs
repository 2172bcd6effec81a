//! PDQ hashes of image files, and the block list's lookup speed.
//!
//! ```text
//! cargo run --release -p asepsis-common --example pdq -- [--block] FILE...
//! cargo run --release -p asepsis-common --example pdq -- --bench-index 1300000
//! ```
//!
//! Per file one JSON line: `{"file", "hash", "quality", "ms", "query"}` (`ms`: decode
//! excluded; `query`: what the worker matches against the block list), with
//! `--block` also `"block": [hashes...]` and `"block_ms"`; or `{"file", "error"}`.
//! `--bench-index N` builds an `Index` of N hashes twice, uniform random and clustered like
//! take-downs (N / 1296 images of 1296 near-identical crop hashes each), and prints build
//! time, approximate memory, and median / p99 / max lookup time over 10,000 queries (5,000
//! random misses, 5,000 near hits 1 to 24 bits from an entry).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use asepsis_common::faces::{self, Settings};
use asepsis_common::pdq::{self, Hash, Index};
use serde_json::json;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--bench-index") {
        let n = args
            .get(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_300_000);
        bench_index(n);
        return;
    }
    let block = args.first().map(String::as_str) == Some("--block");
    if block {
        args.remove(0);
    }
    let settings = Settings::default();
    for file in args {
        let image = std::fs::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|b| faces::decode_upright(&b, &settings).map_err(|e| e.to_string()));
        let line = match image {
            Err(error) => json!({ "file": file, "error": error }),
            Ok(image) => {
                let start = Instant::now();
                let p = pdq::hash(&image);
                let ms = ms(start.elapsed());
                let query: Vec<pdq::Hash> = pdq::query_hashes(&image, p)
                    .iter()
                    .map(|q| q.hash)
                    .collect();
                let mut line = json!({
                    "file": file, "hash": p.hash, "quality": p.quality, "ms": ms, "query": query,
                });
                if block {
                    let start = Instant::now();
                    let hashes = pdq::block_hashes(&image);
                    line["block_ms"] = json!(ms_of(start));
                    line["block"] = json!(hashes);
                }
                line
            }
        };
        println!("{line}");
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn ms_of(start: Instant) -> f64 {
    ms(start.elapsed())
}

/// xorshift64*: reproducible and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn hash(&mut self) -> Hash {
        let mut b = [0u8; 32];
        for chunk in b.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        Hash(b)
    }

    /// `h` with `n` distinct random bits flipped.
    fn flip(&mut self, h: &Hash, n: usize) -> Hash {
        let mut out = *h;
        while out.distance(h) < n as u32 {
            let k = (self.next() % 256) as usize;
            let mask = 1 << (k % 8);
            if (out.0[k / 8] ^ h.0[k / 8]) & mask == 0 {
                out.0[k / 8] ^= mask;
            }
        }
        out
    }
}

fn bench_index(n: usize) {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let uniform: Vec<Hash> = (0..n).map(|_| rng.hash()).collect();
    // Take-downs: a base hash per image, 1296 crop hashes 0..=20 bits from it.
    let images = n.div_ceil(1296);
    let clustered: Vec<Hash> = (0..images)
        .flat_map(|_| {
            let base = rng.hash();
            (0..1296)
                .map(|_| {
                    let k = (rng.next() % 21) as usize;
                    rng.flip(&base, k)
                })
                .collect::<Vec<_>>()
        })
        .take(n)
        .collect();
    for (name, hashes) in [("uniform", uniform), ("clustered", clustered)] {
        let start = Instant::now();
        let mut index = Index::new();
        for (i, h) in hashes.iter().enumerate() {
            index.insert(*h, (i / 1296) as u32);
        }
        let build = start.elapsed();
        let mut times = Vec::with_capacity(10_000);
        let (mut hits, mut misses) = (0, 0);
        for q in 0..10_000 {
            let query = if q % 2 == 0 {
                rng.hash()
            } else {
                let target = hashes[(rng.next() % n as u64) as usize];
                let k = 1 + (rng.next() % 24) as usize;
                rng.flip(&target, k)
            };
            let start = Instant::now();
            let found = index.find(&query);
            times.push(start.elapsed());
            match (q % 2, found) {
                (0, None) => misses += 1,
                (1, Some(_)) => hits += 1,
                _ => {}
            }
        }
        times.sort_unstable();
        let at = |p: f64| ms(times[((times.len() - 1) as f64 * p) as usize]) * 1000.0;
        println!(
            "index {name}: {n} hashes, build {:.2} s, ~{} MiB; lookup median {:.1} µs, p99 {:.1} µs, \
             max {:.1} µs over 10000 queries ({misses}/5000 random misses missed, {hits}/5000 \
             near hits found)",
            build.as_secs_f64(),
            index.heap_bytes() >> 20,
            at(0.5),
            at(0.99),
            at(1.0),
        );
    }
}
