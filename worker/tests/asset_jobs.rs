//! The asset pipeline on real corpus files, against a temp-dir store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use asepsis_common::envelope::Role;
use asepsis_common::job::Job;
use asepsis_common::keys::LocalKeyring;
use asepsis_common::media::{Limits, verify};
use asepsis_common::provenance::{self, AssetState, EventKind, Signer, TrustedKeys};
use asepsis_common::storage::Storage;
use asepsis_worker::jobs::AssetJobs;
use asepsis_worker::runner::{Handler, Outcome};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use uuid::Uuid;

fn corpus(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/corpus")
            .join(path),
    )
    .unwrap()
}

fn jobs(dir: &Path) -> AssetJobs {
    let keyring = LocalKeyring::open_or_create(&dir.join("keyring.json")).unwrap();
    std::fs::create_dir_all(dir.join("store")).unwrap();
    let store = LocalFileSystem::new_with_prefix(dir.join("store")).unwrap();
    AssetJobs {
        storage: Storage::new(Arc::new(store), Arc::new(keyring)),
        signer: Arc::new(Signer::generate().unwrap()),
        limits: Limits::default(),
    }
}

/// What ingest does: store the original encrypted and record `received`.
async fn receive(jobs: &AssetJobs, bytes: Vec<u8>) -> Uuid {
    let asset = Uuid::new_v4();
    let size_bytes = bytes.len() as u64;
    jobs.storage
        .put_blob(asset, Role::Original, std::io::Cursor::new(bytes))
        .await
        .unwrap();
    let what = EventKind::Received {
        consent_id: None,
        format: "jpeg".into(),
        size_bytes,
        sha256: String::new(),
    };
    jobs.storage
        .append_event(asset, &jobs.signer, what)
        .await
        .unwrap();
    asset
}

#[tokio::test]
async fn a_gps_photo_is_stripped_encrypted_and_held_for_review() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = jobs(dir.path());
    let asset = receive(&jobs, corpus("jpeg/ianare-DSCN0010.jpg")).await;
    assert_eq!(jobs.handle(Job::new(asset), 1).await, Outcome::Done);

    let events = jobs.storage.events(asset).await.unwrap();
    assert_eq!(
        provenance::fold(&events),
        Some(AssetState::Held),
        "not scanned: never published"
    );
    let stripped = events.iter().find_map(|e| match &e.event.what {
        EventKind::Stripped {
            removed,
            gps_in_original,
            ..
        } => Some((removed.clone(), *gps_in_original)),
        _ => None,
    });
    let (removed, gps) = stripped.unwrap();
    assert!(gps && removed.contains(&"EXIF:GPSLatitude".to_owned()));
    let mut trusted = TrustedKeys::default();
    trusted.add(jobs.signer.public_key());
    assert_eq!(provenance::verify(asset, &events, &trusted), Ok(5));

    let (_, stream) = jobs
        .storage
        .get_blob(asset, Role::Derivative)
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    verify(&chunks.concat(), &Limits::default()).unwrap();

    // Redelivered: nothing happens twice.
    assert_eq!(jobs.handle(Job::new(asset), 2).await, Outcome::Done);
    assert_eq!(jobs.storage.events(asset).await.unwrap().len(), 5);
}

#[tokio::test]
async fn a_bad_file_ends_rejected_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = jobs(dir.path());
    let asset = receive(&jobs, corpus("malformed/pillow-broken.png")).await;
    let outcome = jobs.handle(Job::new(asset), 1).await;
    assert!(
        matches!(&outcome, Outcome::Reject(r) if r.contains("malformed png")),
        "{outcome:?}"
    );
    let events = jobs.storage.events(asset).await.unwrap();
    assert_eq!(provenance::fold(&events), Some(AssetState::Rejected));

    // The next asset goes through.
    let next = receive(&jobs, corpus("png/pillow-hopper.png")).await;
    assert_eq!(jobs.handle(Job::new(next), 1).await, Outcome::Done);
}

#[tokio::test]
async fn an_erased_or_unknown_asset_is_not_processed() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = jobs(dir.path());
    let asset = receive(&jobs, corpus("png/pillow-hopper.png")).await;
    jobs.storage.shred(asset).await.unwrap();
    assert!(matches!(
        jobs.handle(Job::new(asset), 1).await,
        Outcome::Reject(_)
    ));
    assert!(matches!(
        jobs.handle(Job::new(Uuid::new_v4()), 1).await,
        Outcome::Abort(_)
    ));
}
