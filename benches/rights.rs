//! Erase and export of one subject with many assets, as a privacy officer waits for them:
//! wall time and peak resident memory of each, on the local store (`cargo bench --bench
//! rights`, or `cargo bench --bench rights -- 1000` for the asset count; default 1,000).
//!
//! Each asset is a real corpus JPEG stored encrypted as original and derivative, with the
//! `received`, `stripped`, `encrypted`, `verdict` and `published` events the worker writes;
//! the export streams every original and derivative into a ZIP file, then the erase shreds
//! them all. Peak RSS is reset (`/proc/self/clear_refs`) before each phase and read from
//! `VmHWM` after it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use asepsis_common::consent::{Consent, Method, Scope, Terms};
use asepsis_common::envelope::BlobRole;
use asepsis_common::media::Format;
use asepsis_common::policy::Decision;
use asepsis_common::provenance::{EventKind, Signer};
use asepsis_queue::{EmbeddedQueue, RetryPolicy};
use asepsis_rights::{Actor, Desk};
use asepsis_store::Storage;
use asepsis_store::keyring::LocalKeyring;
use tokio_util::compat::TokioAsyncWriteCompatExt;
use uuid::Uuid;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    let keyring = LocalKeyring::open_or_create(&dir.path().join("keyring.json")).unwrap();
    std::fs::create_dir_all(dir.path().join("store")).unwrap();
    let store =
        object_store::local::LocalFileSystem::new_with_prefix(dir.path().join("store")).unwrap();
    let storage = Storage::new(Arc::new(store), Arc::new(keyring));
    let signer = Arc::new(Signer::generate().unwrap());
    let policy = RetryPolicy {
        max_attempts: 3,
        retry_delays: vec![Duration::from_millis(10)],
    };
    let queue = Arc::new(EmbeddedQueue::open(&dir.path().join("queue"), policy).unwrap());
    let desk = Desk {
        storage: storage.clone(),
        signer: signer.clone(),
        queue: Some(queue),
        lock_ttl: Duration::from_secs(600),
        notifier: Arc::new(asepsis_queue::notify::InProcess::new()),
        takedown: Default::default(),
    };
    let now = time::OffsetDateTime::now_utc();
    let consent = Consent::new(
        Uuid::new_v4(),
        "clinic".into(),
        now,
        Terms {
            subject_ref: "bench-subject".into(),
            obtained_by: "dr".into(),
            obtained_at: now,
            method: Method::Written,
            scope: Scope::Identifiable,
            purposes: vec!["education".into()],
            jurisdiction: "US".into(),
            expires_at: None,
            licence_version: "1".into(),
            minor: false,
            guardian: None,
        },
    );
    storage.index_subject_consent(&consent).await.unwrap();
    storage.put_consent(&consent).await.unwrap();
    let jpeg = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/corpus/jpeg/ianare-DSCN0010.jpg"),
    )
    .unwrap();
    let started = Instant::now();
    for _ in 0..count {
        let asset = Uuid::new_v4();
        for role in [BlobRole::Original, BlobRole::Derivative] {
            let reader = std::io::Cursor::new(jpeg.clone());
            storage.put_blob(asset, role, reader).await.unwrap();
        }
        storage
            .index_asset("clinic", consent.id, asset)
            .await
            .unwrap();
        let sha256 = asepsis_common::sha256_hex(&jpeg);
        let events = [
            EventKind::Received {
                tenant: "clinic".into(),
                consent_id: consent.id,
                format: Format::Jpeg,
                size_bytes: jpeg.len() as u64,
                sha256: sha256.clone(),
                uploader: None,
                batch_id: None,
            },
            EventKind::Stripped {
                removed: vec!["EXIF".into()],
                size_bytes: jpeg.len() as u64,
                sha256,
                gps_in_original: false,
            },
            EventKind::Verdict {
                decision: Decision::Publish,
                reason: "bench".into(),
            },
            EventKind::Published,
        ];
        for what in events {
            storage.append_event(asset, &signer, what).await.unwrap();
        }
    }
    println!(
        "setup: {count} assets ({} KiB original + derivative each) in {:.1} s",
        jpeg.len() * 2 / 1024,
        started.elapsed().as_secs_f64()
    );
    let officer = Actor {
        id: "bench".into(),
        tenant: "clinic".into(),
    };

    reset_peak();
    let started = Instant::now();
    let export = desk
        .prepare_export(&officer, "bench-subject")
        .await
        .unwrap();
    let path = dir.path().join("export.zip");
    let file = tokio::fs::File::create(&path).await.unwrap();
    export.write(file.compat_write()).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).unwrap().len() as f64 / (1 << 20) as f64;
    println!(
        "export: {count} assets, {size:.0} MiB ZIP in {secs:.2} s ({:.0} assets/s, {:.0} MiB/s); peak RSS {:.1} MiB",
        count as f64 / secs,
        size / secs,
        peak_rss_mib()
    );

    reset_peak();
    let started = Instant::now();
    let erasure = desk.erase(&officer, "bench-subject").await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(erasure.assets_erased, count);
    println!(
        "erase: {count} assets in {secs:.2} s ({:.0} assets/s); peak RSS {:.1} MiB",
        count as f64 / secs,
        peak_rss_mib()
    );
}
