//! Envelope throughput: AES-256-GCM over 256 MiB in 64 KiB segments, sealing and opening each
//! segment in place as the streaming code does once a segment is in its buffer (the copy from
//! the source into that buffer is I/O, not cipher, and is left out, as in `openssl speed`).
//!
//! `cargo bench --bench crypto`, or `benches/crypto-vs-openssl` for the ratio to
//! `openssl speed -evp aes-256-gcm -bytes 16384` from the same run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use asepsis_common::envelope::{
    BlobRole, DEFAULT_SEGMENT_SIZE, DataKey, Header, SegmentCipher, TAG_LEN,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use uuid::Uuid;

const TOTAL: usize = 256 * 1024 * 1024;
const SEG: usize = DEFAULT_SEGMENT_SIZE as usize;

fn cipher() -> SegmentCipher {
    let header = Header::new(DEFAULT_SEGMENT_SIZE, "local", 1).unwrap();
    SegmentCipher::new(
        &DataKey::generate().unwrap(),
        header,
        Uuid::new_v4(),
        BlobRole::Original,
    )
}

fn envelope(c: &mut Criterion) {
    let plain: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    let cipher = cipher();
    let segments = TOTAL / SEG;
    let mut group = c.benchmark_group("crypto");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.sample_size(10);

    group.bench_function("encrypt_64k_segments_256MiB", |b| {
        let mut tags = Vec::with_capacity(segments);
        b.iter_batched_ref(
            || plain.clone(),
            |data| {
                tags.clear();
                for (i, seg) in data.chunks_mut(SEG).enumerate() {
                    tags.push(
                        cipher
                            .seal_in_place(i as u64, i + 1 == segments, seg)
                            .unwrap(),
                    );
                }
            },
            BatchSize::PerIteration,
        );
    });

    let mut sealed = Vec::with_capacity(TOTAL + segments * TAG_LEN);
    let mut buf = Vec::with_capacity(SEG + TAG_LEN);
    for (i, chunk) in plain.chunks(SEG).enumerate() {
        buf.clear();
        buf.extend_from_slice(chunk);
        cipher.seal(i as u64, i + 1 == segments, &mut buf).unwrap();
        sealed.extend_from_slice(&buf);
    }
    group.bench_function("decrypt_64k_segments_256MiB", |b| {
        b.iter_batched_ref(
            || sealed.clone(),
            |blob| {
                for (i, seg) in blob.chunks_mut(SEG + TAG_LEN).enumerate() {
                    cipher.open(i as u64, i + 1 == segments, seg).unwrap();
                }
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, envelope);
criterion_main!(benches);
