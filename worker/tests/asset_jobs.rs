//! The asset pipeline on real corpus files, against a temp-dir store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use asepsis_common::consent::{Consent, Method, Scope, Terms};
use asepsis_common::envelope::BlobRole;
use asepsis_common::faces::Unavailable;
use asepsis_common::faces::Verdict;
use asepsis_common::job::Job;
use asepsis_common::media::{Format, Limits, verify};
use asepsis_common::policy::Decision;
use asepsis_common::provenance::{self, AssetState, EventKind, EventName, Signer, TrustedKeys};
use asepsis_queue::notify::InProcess;
use asepsis_store::Storage;
use asepsis_store::asset::AssetLog;
use asepsis_store::keyring::LocalKeyring;
use asepsis_worker::jobs::AssetJobs;
use asepsis_worker::runner::{Handler, Outcome};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use uuid::Uuid;

/// A file of ../shared (the corpus, the labelled faces).
fn shared(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared")
            .join(path),
    )
    .unwrap()
}

fn corpus(path: &str) -> Vec<u8> {
    shared(&format!("corpus/{path}"))
}

fn jobs(dir: &Path) -> (AssetJobs, Arc<InProcess>) {
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
    };
    (jobs, notes)
}

async fn consent(jobs: &AssetJobs, scope: Scope) -> Uuid {
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
const BATCH: Uuid = Uuid::from_u128(0xba7c4);

/// What ingest does: store the original encrypted and record `received`.
async fn receive(jobs: &AssetJobs, bytes: Vec<u8>, consent_id: Uuid) -> Uuid {
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
async fn derivative(jobs: &AssetJobs, asset: Uuid) -> Vec<u8> {
    let (_, stream) = jobs
        .storage
        .get_blob(asset, BlobRole::Derivative)
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    chunks.concat()
}

fn names(events: &[provenance::SignedEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| e.event.what.name().as_str())
        .collect()
}

#[tokio::test]
async fn identifiable_consent_publishes_a_stripped_encrypted_derivative() {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, notes) = jobs(dir.path());
    let mut published = notes.subscribe();
    let consent = consent(&jobs, Scope::Identifiable).await;
    let asset = receive(&jobs, corpus("jpeg/ianare-DSCN0010.jpg"), consent).await;
    assert_eq!(jobs.handle(Job::new(asset), 1).await, Outcome::Done);

    let events = jobs.storage.events(asset).await.unwrap();
    assert_eq!(
        names(&events),
        [
            "received",
            "stripped",
            "encrypted",
            "scanned",
            "verdict",
            "published"
        ]
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
    assert_eq!(provenance::verify(asset, &events, &trusted), Ok(6));
    let note = published.try_recv().unwrap();
    assert_eq!((note.asset_id, note.event.as_str()), (asset, "published"));
    assert_eq!(note.batch_id, Some(BATCH), "asset.* events carry the batch");

    verify(&derivative(&jobs, asset).await, &Limits::default()).unwrap();

    // Redelivered: nothing happens twice.
    assert_eq!(jobs.handle(Job::new(asset), 2).await, Outcome::Done);
    assert_eq!(jobs.storage.events(asset).await.unwrap().len(), 6);
}

#[tokio::test]
async fn deidentified_consent_without_a_face_scan_is_held_and_internal_never_published() {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, _) = jobs(dir.path());
    for (scope, decision) in [
        (Scope::Deidentified, Decision::Hold),
        (Scope::Internal, Decision::Internal),
    ] {
        let consent = consent(&jobs, scope).await;
        let asset = receive(&jobs, corpus("jpeg/ianare-DSCN0010.jpg"), consent).await;
        assert_eq!(jobs.handle(Job::new(asset), 1).await, Outcome::Done);
        let log = AssetLog::load(&jobs.storage, asset).await.unwrap();
        assert_eq!(log.state(), Some(AssetState::Held));
        assert!(!log.has(EventName::Published));
        assert!(matches!(
            log.last_of(EventName::Verdict),
            Some(EventKind::Verdict { decision: d, .. }) if *d == decision
        ));
        assert!(matches!(
            log.last_of(EventName::Scanned),
            Some(EventKind::Scanned {
                verdict: Verdict::NotScanned,
                ..
            })
        ));
    }
}

#[tokio::test]
async fn a_job_redelivered_after_a_crash_resumes_and_publishes_once() {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, _) = jobs(dir.path());
    let consent = consent(&jobs, Scope::Identifiable).await;
    let asset = receive(&jobs, corpus("png/pillow-hopper.png"), consent).await;
    // A first worker got as far as `stripped` and died.
    let mut log = AssetLog::load(&jobs.storage, asset).await.unwrap();
    let what = EventKind::Stripped {
        removed: vec![],
        size_bytes: 1,
        sha256: String::new(),
        gps_in_original: false,
    };
    log.append(&jobs.storage, &jobs.signer, what).await.unwrap();
    // Two deliveries of the same job race.
    let (a, b) = tokio::join!(
        jobs.handle(Job::new(asset), 2),
        jobs.handle(Job::new(asset), 2)
    );
    for outcome in [a, b] {
        assert!(
            matches!(outcome, Outcome::Done | Outcome::Retry(_)),
            "{outcome:?}"
        );
    }
    assert_eq!(jobs.handle(Job::new(asset), 3).await, Outcome::Done);
    let events = jobs.storage.events(asset).await.unwrap();
    let count = |name| names(&events).iter().filter(|n| **n == name).count();
    assert_eq!(
        (count("stripped"), count("published")),
        (1, 1),
        "{:?}",
        names(&events)
    );
    assert_eq!(provenance::fold(&events), Some(AssetState::Published));
}

#[tokio::test]
async fn publishing_rechecks_the_consent() {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, _) = jobs(dir.path());
    let id = consent(&jobs, Scope::Identifiable).await;
    let asset = receive(&jobs, corpus("png/pillow-hopper.png"), id).await;
    let mut withdrawn = jobs.storage.consent(id).await.unwrap().unwrap();
    withdrawn.withdrawn_at = Some(time::OffsetDateTime::now_utc());
    jobs.storage.put_consent(&withdrawn).await.unwrap();
    assert_eq!(jobs.handle(Job::new(asset), 1).await, Outcome::Done);
    let log = AssetLog::load(&jobs.storage, asset).await.unwrap();
    assert!(!log.has(EventName::Published));
    assert_eq!(log.state(), Some(AssetState::Held));
}

#[tokio::test]
async fn a_bad_file_ends_rejected_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, _) = jobs(dir.path());
    let consent = consent(&jobs, Scope::Identifiable).await;
    let asset = receive(&jobs, corpus("malformed/pillow-broken.png"), consent).await;
    let outcome = jobs.handle(Job::new(asset), 1).await;
    assert!(
        matches!(&outcome, Outcome::Reject(r) if r.contains("malformed png")),
        "{outcome:?}"
    );
    let events = jobs.storage.events(asset).await.unwrap();
    assert_eq!(provenance::fold(&events), Some(AssetState::Rejected));

    // The next asset goes through.
    let next = receive(&jobs, corpus("png/pillow-hopper.png"), consent).await;
    assert_eq!(jobs.handle(Job::new(next), 1).await, Outcome::Done);
}

#[tokio::test]
async fn an_erased_or_unknown_asset_is_not_processed() {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, _) = jobs(dir.path());
    let consent = consent(&jobs, Scope::Identifiable).await;
    let asset = receive(&jobs, corpus("png/pillow-hopper.png"), consent).await;
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

fn yunet() -> Arc<asepsis_common::faces::YuNet> {
    let model = include_bytes!("../../models/face_detection_yunet_2023mar.onnx");
    Arc::new(asepsis_common::faces::YuNet::from_model(model, Default::default()).unwrap())
}

fn face(name: &str) -> Vec<u8> {
    shared(&format!("faces/{name}"))
}

/// A log sink for one test: everything the worker logs while it runs.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_policy_with_a_real_face_detector() {
    use asepsis_common::faces::{Detector, decode_upright};
    let dir = tempfile::tempdir().unwrap();
    let (mut jobs, _) = jobs(dir.path());
    let detector = yunet();
    jobs.detector = detector.clone();
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // (scope, image, final state, redacted?)
    let rows = [
        (
            Scope::Identifiable,
            "fr-obama2.jpg",
            AssetState::Published,
            false,
        ),
        (
            Scope::Deidentified,
            "fr-obama2.jpg",
            AssetState::Published,
            true,
        ),
        (
            Scope::Deidentified,
            "exs-DSCN0012.jpg",
            AssetState::Published,
            false,
        ),
        (Scope::Internal, "fr-obama2.jpg", AssetState::Held, false),
    ];
    for (scope, name, state, redacted) in rows {
        let consent = consent(&jobs, scope).await;
        let asset = receive(&jobs, face(name), consent).await;
        assert_eq!(jobs.handle(Job::new(asset), 1).await, Outcome::Done);
        let log = AssetLog::load(&jobs.storage, asset).await.unwrap();
        assert_eq!(
            log.state(),
            Some(state),
            "{scope:?} {name}: {:?}",
            names(&log.events)
        );
        assert_eq!(log.has(EventName::Redacted), redacted, "{scope:?} {name}");
        if redacted {
            let published = derivative(&jobs, asset).await;
            verify(&published, &Limits::default()).unwrap();
            assert_eq!(detector.scan(&published).verdict, Verdict::None);
            let s = detector.settings();
            let image = decode_upright(&published, s).unwrap();
            assert!(
                detector
                    .faces_in(&image, s.low_threshold, false)
                    .unwrap()
                    .is_empty()
            );
        }
    }
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("asset stripped and decided"), "{text}");
    let scan = detector.scan(&face("fr-obama2.jpg"));
    for f in &scan.faces {
        for value in [f.x, f.y, f.width, f.height, f.score] {
            assert!(
                !text.contains(&format!("{value}")),
                "a face box or score was logged: {text}"
            );
        }
    }
}

/// An object store that fails one request in `one_in` (writes, reads, listings and deletes
/// alike) with a store error, as a flaky S3 would after its client's own retries: which ones is
/// a fixed pseudo-random sequence, so a run fails the same requests every time.
#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn object_store::ObjectStore>,
    one_in: u64,
    calls: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

impl std::fmt::Display for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

impl Faulty {
    fn fault(&self) -> object_store::Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        // SplitMix64 of the request's number.
        let mut z = self
            .calls
            .fetch_add(1, Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        if (z ^ (z >> 31)).is_multiple_of(self.one_in) {
            self.failed.fetch_add(1, Relaxed);
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: "injected fault: connection reset".into(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.fault()?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.fault()?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        self.fault()?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        match self.fault() {
            Ok(()) => self.inner.delete_stream(locations),
            Err(e) => Box::pin(futures::stream::once(async { Err(e) })),
        }
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        match self.fault() {
            Ok(()) => self.inner.list(prefix),
            Err(e) => Box::pin(futures::stream::once(async { Err(e) })),
        }
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.fault()?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.fault()?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn with_one_store_request_in_ten_failing_every_asset_publishes_once() {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, _) = jobs(dir.path());
    let consent = consent(&jobs, Scope::Identifiable).await;
    let files = [
        "png/pillow-hopper.png",
        "jpeg/ianare-DSCN0010.jpg",
        "webp/pillow-flower.webp",
    ];
    let mut assets = Vec::new();
    for file in files {
        assets.push(receive(&jobs, corpus(file), consent).await);
    }
    let faulty = Arc::new(Faulty {
        inner: jobs.storage.object_store().clone(),
        one_in: 10,
        calls: Default::default(),
        failed: Default::default(),
    });
    let keyring = LocalKeyring::open_or_create(&dir.path().join("keyring.json")).unwrap();
    let flaky = AssetJobs {
        storage: Storage::new(faulty.clone(), Arc::new(keyring)),
        signer: jobs.signer.clone(),
        limits: jobs.limits.clone(),
        detector: jobs.detector.clone(),
        notifier: jobs.notifier.clone(),
        cpu: jobs.cpu.clone(),
        blocklist: Arc::new(asepsis_store::blocklist::BlockList::new(
            jobs.storage.clone(),
        )),
        match_distance: 31,
    };
    let mut retries = 0;
    for asset in &assets {
        // The runner's loop: deliver again after each retry, until the job is settled.
        let mut attempt = 1;
        loop {
            match flaky.handle(Job::new(*asset), attempt).await {
                Outcome::Done => break,
                Outcome::Retry(why) => {
                    assert!(
                        why.contains("object store") || why.contains("notify"),
                        "{why}"
                    );
                    retries += 1;
                    attempt += 1;
                    assert!(attempt < 200, "asset {asset} never settled");
                }
                other => panic!("asset {asset}: {other:?} (a store fault must be retried)"),
            }
        }
    }
    let failed = faulty.failed.load(std::sync::atomic::Ordering::Relaxed);
    let calls = faulty.calls.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{failed} of {calls} store requests failed; {retries} job retries");
    assert!(failed >= 3 && retries >= 3, "the faults were hit");
    let mut trusted = TrustedKeys::default();
    trusted.add(jobs.signer.public_key());
    for asset in assets {
        let events = jobs.storage.events(asset).await.unwrap();
        let published = names(&events).iter().filter(|n| **n == "published").count();
        assert_eq!(published, 1, "{:?}", names(&events));
        provenance::verify(asset, &events, &trusted).unwrap();
        assert_eq!(provenance::fold(&events), Some(AssetState::Published));
        verify(&derivative(&jobs, asset).await, &Limits::default()).unwrap();
    }
}
