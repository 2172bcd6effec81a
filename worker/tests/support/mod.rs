//! What the worker's tests share: a job handler over a temp-dir store, consents, received
//! assets as ingest leaves them, and reading back what the worker stored.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use asepsis_common::consent::{Consent, Method, Scope, Terms};
use asepsis_common::envelope::BlobRole;
use asepsis_common::faces::Unavailable;
use asepsis_common::media::{Format, Limits};
use asepsis_common::provenance::{self, EventKind, Signer};
use asepsis_queue::notify::InProcess;
use asepsis_store::Storage;
use asepsis_store::keyring::LocalKeyring;
use asepsis_worker::jobs::AssetJobs;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use uuid::Uuid;

/// A file of ../shared (the corpus, the labelled faces).
pub fn shared(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared")
            .join(path),
    )
    .unwrap()
}

pub fn corpus(path: &str) -> Vec<u8> {
    shared(&format!("corpus/{path}"))
}

pub fn jobs(dir: &Path) -> (AssetJobs, Arc<InProcess>) {
    let keyring = LocalKeyring::open_or_create(&dir.join("keyring.json")).unwrap();
    std::fs::create_dir_all(dir.join("store")).unwrap();
    let store = LocalFileSystem::new_with_prefix(dir.join("store")).unwrap();
    let notes = Arc::new(InProcess::new());
    let storage = Storage::new(Arc::new(store), Arc::new(keyring));
    let jobs = AssetJobs {
        storage: storage.clone(),
        signer: Arc::new(Signer::generate().unwrap()),
        limits: Limits::default(),
        detector: Arc::new(Unavailable("no face model in this test".into())),
        notifier: notes.clone(),
        cpu: Arc::new(tokio::sync::Semaphore::new(2)),
        blocklist: Arc::new(asepsis_store::blocklist::BlockList::new(storage.clone())),
        match_distance: 31,
        dicom_uid_secret: Arc::new([3; 32].into()),
    };
    (jobs, notes)
}

pub async fn consent(jobs: &AssetJobs, scope: Scope) -> Uuid {
    let now = time::OffsetDateTime::now_utc();
    let consent = Consent::new(
        Uuid::new_v4(),
        "clinic".into(),
        now,
        Terms {
            subject_ref: "s-1".into(),
            obtained_by: "dr".into(),
            obtained_at: now,
            method: Method::Written,
            scope,
            purposes: vec!["education".into()],
            jurisdiction: "US".into(),
            expires_at: None,
            licence_version: "1".into(),
            minor: false,
            guardian: None,
        },
    );
    jobs.storage.put_consent(&consent).await.unwrap();
    consent.id
}

/// The import batch every test asset is received into.
pub const BATCH: Uuid = Uuid::from_u128(0xba7c4);

/// What ingest does: store the original encrypted and record `received`.
pub async fn receive(jobs: &AssetJobs, bytes: Vec<u8>, consent_id: Uuid) -> Uuid {
    let asset = Uuid::new_v4();
    let size_bytes = bytes.len() as u64;
    jobs.storage
        .put_blob(asset, BlobRole::Original, std::io::Cursor::new(bytes))
        .await
        .unwrap();
    let what = EventKind::Received {
        tenant: "clinic".into(),
        consent_id,
        format: Format::Jpeg,
        size_bytes,
        sha256: String::new(),
        uploader: None,
        batch_id: Some(BATCH),
    };
    jobs.storage
        .append_event(asset, &jobs.signer, what)
        .await
        .unwrap();
    asset
}

/// The decrypted derivative of an asset.
pub async fn derivative(jobs: &AssetJobs, asset: Uuid) -> Vec<u8> {
    let (_, stream) = jobs
        .storage
        .get_blob(asset, BlobRole::Derivative)
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    chunks.concat()
}

pub fn names(events: &[provenance::SignedEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| e.event.what.name().as_str())
        .collect()
}
