//! The privacy officer's desk over a real temp-dir store, with the real worker job and face
//! model: erasure (and its race with a worker mid-job), restriction, objection,
//! rectification, the export bundle read back by the `zip` crate, disclosures, and the
//! retention purge on a clock the test sets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use asepsis_common::audit::AuditAction;
use asepsis_common::consent::{Consent, Method, Scope, Terms};
use asepsis_common::envelope::BlobRole;
use asepsis_common::faces::{Detector, Redacted, Scan, Unavailable, Upright, YuNet};
use asepsis_common::job::Job;
use asepsis_common::media::Limits;
use asepsis_common::provenance::{AssetState, EventKind, EventName, Signer};
use asepsis_common::rights::Recipient;
use asepsis_queue::notify::InProcess;
use asepsis_queue::{EmbeddedQueue, Queue, RetryPolicy};
use asepsis_rights::{Actor, Desk};
use asepsis_store::asset::AssetLog;
use asepsis_store::keyring::LocalKeyring;
use asepsis_store::{Storage, StorageError};
use asepsis_worker::jobs::AssetJobs;
use asepsis_worker::retention::Retention;
use asepsis_worker::runner::{Handler, Outcome};
use futures::TryStreamExt;
use image::DynamicImage;
use object_store::{ObjectStore, ObjectStoreExt};
use uuid::Uuid;

const DAY_MS: u64 = 86_400_000;
const CANARY: &str = "CANARY-desk-7f3a";

fn corpus(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/corpus")
            .join(path),
    )
    .unwrap()
}

struct World {
    _dir: tempfile::TempDir,
    desk: Desk,
    queue: Arc<dyn Queue>,
    officer: Actor,
    /// What the desk told assets' tenants.
    notes: Arc<InProcess>,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keyring = LocalKeyring::open_or_create(&dir.path().join("keyring.json")).unwrap();
        std::fs::create_dir_all(dir.path().join("store")).unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path().join("store"))
            .unwrap();
        let policy = RetryPolicy {
            max_attempts: 3,
            retry_delays: vec![Duration::from_millis(10)],
        };
        let queue: Arc<dyn Queue> =
            Arc::new(EmbeddedQueue::open(&dir.path().join("queue"), policy).unwrap());
        let notes = Arc::new(InProcess::new());
        let desk = Desk {
            storage: Storage::new(Arc::new(store), Arc::new(keyring)),
            signer: Arc::new(Signer::generate().unwrap()),
            queue: Some(queue.clone()),
            lock_ttl: Duration::from_secs(60),
            notifier: notes.clone(),
            takedown: Default::default(),
        };
        let officer = Actor {
            id: "officer-key".into(),
            tenant: "clinic".into(),
        };
        Self {
            _dir: dir,
            desk,
            queue,
            officer,
            notes,
        }
    }

    fn storage(&self) -> &Storage {
        &self.desk.storage
    }

    fn jobs(&self, detector: Arc<dyn Detector>) -> AssetJobs {
        AssetJobs {
            storage: self.desk.storage.clone(),
            signer: self.desk.signer.clone(),
            limits: Limits::default(),
            detector,
            notifier: Arc::new(InProcess::new()),
            cpu: Arc::new(tokio::sync::Semaphore::new(2)),
            blocklist: Arc::new(asepsis_store::blocklist::BlockList::new(
                self.desk.storage.clone(),
            )),
            match_distance: 31,
            dicom_uid_secret: Arc::new([3; 32].into()),
        }
    }

    /// A consent of the subject, indexed as `POST /v1/consents` does.
    async fn consent(&self, subject: &str, purposes: &[&str]) -> Uuid {
        self.consent_of(subject, purposes, Scope::Identifiable)
            .await
    }

    async fn consent_of(&self, subject: &str, purposes: &[&str], scope: Scope) -> Uuid {
        let now = time::OffsetDateTime::now_utc();
        let consent = Consent::new(
            Uuid::new_v4(),
            "clinic".into(),
            now,
            Terms {
                subject_ref: subject.into(),
                obtained_by: format!("{CANARY}-doctor"),
                obtained_at: now,
                method: Method::Written,
                scope,
                purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
                jurisdiction: format!("{CANARY}-jurisdiction"),
                expires_at: None,
                licence_version: "1".into(),
                minor: false,
                guardian: None,
            },
        );
        self.storage()
            .index_subject_consent(&consent)
            .await
            .unwrap();
        self.storage().put_consent(&consent).await.unwrap();
        consent.id
    }

    /// What ingest does with an upload.
    async fn receive(&self, bytes: &[u8], consent: Uuid) -> Uuid {
        self.receive_as(bytes, consent, "clinic", "uploader-key")
            .await
    }

    async fn receive_as(&self, bytes: &[u8], consent: Uuid, tenant: &str, uploader: &str) -> Uuid {
        let asset = Uuid::new_v4();
        let storage = self.storage();
        storage
            .put_blob(
                asset,
                BlobRole::Original,
                std::io::Cursor::new(bytes.to_vec()),
            )
            .await
            .unwrap();
        storage.index_asset(tenant, consent, asset).await.unwrap();
        let what = EventKind::Received {
            tenant: tenant.into(),
            consent_id: consent,
            format: asepsis_common::media::sniff(bytes).unwrap(),
            size_bytes: bytes.len() as u64,
            sha256: asepsis_common::sha256_hex(bytes),
            uploader: Some(uploader.into()),
            batch_id: None,
        };
        storage
            .append_event(asset, &self.desk.signer, what)
            .await
            .unwrap();
        asset
    }

    async fn state(&self, asset: Uuid) -> Option<AssetState> {
        AssetLog::load(self.storage(), asset).await.unwrap().state()
    }

    /// Every object key the store holds.
    async fn keys(&self) -> Vec<String> {
        let store = self.storage().object_store();
        let all: Vec<_> = store.list(None).try_collect().await.unwrap();
        all.into_iter().map(|m| m.location.to_string()).collect()
    }
}

fn yunet() -> Arc<dyn Detector> {
    let model = include_bytes!("../../models/face_detection_yunet_2023mar.onnx");
    Arc::new(YuNet::from_model(model, Default::default()).unwrap())
}

/// A published asset: a face-free corpus photo under an identifiable consent.
async fn published(w: &World, consent: Uuid) -> (Uuid, Vec<u8>) {
    let bytes = corpus("jpeg/ianare-DSCN0010.jpg");
    let asset = w.receive(&bytes, consent).await;
    let outcome = w.jobs(yunet()).handle(Job::new(asset), 1).await;
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(w.state(asset).await, Some(AssetState::Published));
    (asset, bytes)
}

#[tokio::test]
async fn erasure_leaves_nothing_decryptable_and_says_so_when_repeated() {
    let w = World::new();
    let consent = w.consent("subj-erase", &["education"]).await;
    let (asset, _) = published(&w, consent).await;
    let held = w.receive(&corpus("png/pillow-hopper.png"), consent).await;
    let erasure = w.desk.erase(&w.officer, "subj-erase").await.unwrap();
    assert_eq!((erasure.assets_erased, erasure.consents_erased), (2, 1));
    assert!(erasure.changed);
    for id in [asset, held] {
        assert_eq!(w.state(id).await, Some(AssetState::Erased));
        assert!(matches!(
            w.storage().data_key(id).await,
            Err(StorageError::Erased(_))
        ));
    }
    // Read the store directly: no blob and no wrapped key of either asset is left, and no
    // consent field survives in any record.
    let keys = w.keys().await;
    for id in [asset, held] {
        let id = id.to_string();
        assert!(
            !keys
                .iter()
                .any(|k| (k.starts_with("blobs/") || k.starts_with("keys/")) && k.contains(&id)),
            "{keys:?}"
        );
    }
    let record = w.storage().consent(consent).await.unwrap().unwrap();
    assert!(record.erased_at.is_some());
    assert!(!serde_json::to_string(&record).unwrap().contains(CANARY));
    assert!(
        record
            .check_for_upload(time::OffsetDateTime::now_utc())
            .is_err()
    );
    // Repeated: nothing more changes, and the answer says so.
    let again = w.desk.erase(&w.officer, "subj-erase").await.unwrap();
    assert_eq!(
        (again.assets_erased, again.consents_erased, again.changed),
        (0, 0, false)
    );
    assert_ne!(again.receipt, erasure.receipt);
    // Both receipts are in the audit log, with ids only.
    let audit = w.storage().audit_log().await.unwrap();
    let erasures: Vec<_> = audit
        .iter()
        .filter(|e| e.entry.record.action == AuditAction::SubjectErase)
        .collect();
    assert_eq!(erasures.len(), 2);
    assert!(erasures[0].entry.record.targets[0].contains(&erasure.receipt.to_string()));
    assert!(
        !serde_json::to_string(&audit)
            .unwrap()
            .contains("subj-erase")
    );
}

#[tokio::test]
async fn an_erase_cut_short_after_scrubbing_the_consents_is_finished_by_repeating_it() {
    let w = World::new();
    let consent = w.consent("subj-cut", &["education"]).await;
    let (asset, _) = published(&w, consent).await;
    // What an erase killed right after its first step leaves behind.
    let mut record = w.storage().consent(consent).await.unwrap().unwrap();
    record.erase(time::OffsetDateTime::now_utc());
    w.storage().put_consent(&record).await.unwrap();
    let erasure = w.desk.erase(&w.officer, "subj-cut").await.unwrap();
    assert_eq!((erasure.assets_erased, erasure.consents_erased), (1, 0));
    assert_eq!(w.state(asset).await, Some(AssetState::Erased));
}

/// A detector that stops in `decode` until the test lets it go (then finds nothing to scan).
struct Gate {
    entered: Mutex<mpsc::Sender<()>>,
    go: Mutex<mpsc::Receiver<()>>,
}

impl Detector for Gate {
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
    fn decode(&self, _image: &[u8]) -> Result<Upright, String> {
        self.entered.lock().unwrap().send(()).unwrap();
        self.go.lock().unwrap().recv().unwrap();
        Err("gate".into())
    }
    fn scan_decoded(&self, _image: &Upright) -> Scan {
        Scan::not_scanned("gate")
    }
    fn redact(&self, _image: &[u8]) -> Result<Redacted, String> {
        Err("gate".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erase_racing_a_worker_mid_job_leaves_nothing_and_publishes_nothing() {
    let w = World::new();
    let consent = w.consent("subj-race", &["education"]).await;
    let asset = w
        .receive(&corpus("jpeg/ianare-DSCN0010.jpg"), consent)
        .await;
    let (entered_tx, entered) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    let gate = Arc::new(Gate {
        entered: Mutex::new(entered_tx),
        go: Mutex::new(go_rx),
    });
    let jobs = Arc::new(w.jobs(gate));
    let job = {
        let jobs = jobs.clone();
        tokio::spawn(async move { jobs.handle(Job::new(asset), 1).await })
    };
    // The worker has decrypted and stripped the original and is in the face scan.
    tokio::task::spawn_blocking(move || entered.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .unwrap();
    let erasure = w.desk.erase(&w.officer, "subj-race").await.unwrap();
    assert_eq!(erasure.assets_erased, 1);
    go.send(()).unwrap();
    let first = job.await.unwrap();
    assert!(
        matches!(
            first,
            Outcome::Retry(_) | Outcome::Reject(_) | Outcome::Done
        ),
        "{first:?}"
    );
    // Delivered again, the job finds the asset erased and does nothing.
    assert_eq!(jobs.handle(Job::new(asset), 2).await, Outcome::Done);
    let log = AssetLog::load(w.storage(), asset).await.unwrap();
    assert_eq!(log.state(), Some(AssetState::Erased));
    assert!(!log.has(EventName::Published));
    assert!(!log.has(EventName::Encrypted));
    let keys = w.keys().await;
    let id = asset.to_string();
    assert!(
        !keys
            .iter()
            .any(|k| (k.starts_with("blobs/") || k.starts_with("keys/")) && k.contains(&id)),
        "{keys:?}"
    );
}

#[tokio::test]
async fn a_restricted_subject_is_frozen_and_released_work_is_queued_again() {
    let w = World::new();
    let consent = w.consent("subj-frozen", &["education"]).await;
    let (published_asset, _) = published(&w, consent).await;
    let pending = w
        .receive(&corpus("jpeg/ianare-DSCN0010.jpg"), consent)
        .await;
    let r = w
        .desk
        .restrict(&w.officer, "subj-frozen", true)
        .await
        .unwrap();
    assert_eq!((r.restricted, r.consents, r.assets), (true, 1, 2));
    let jobs = w.jobs(yunet());
    // The worker meets the restricted asset: acked, nothing processed, nothing deleted.
    assert_eq!(jobs.handle(Job::new(pending), 1).await, Outcome::Done);
    let log = AssetLog::load(w.storage(), pending).await.unwrap();
    assert_eq!(log.state(), Some(AssetState::Restricted));
    assert!(!log.has(EventName::Stripped));
    assert!(w.storage().data_key(pending).await.is_ok());
    let record = w.storage().consent(consent).await.unwrap().unwrap();
    assert!(
        record
            .check_for_publication(time::OffsetDateTime::now_utc())
            .is_err()
    );
    let again = w
        .desk
        .restrict(&w.officer, "subj-frozen", true)
        .await
        .unwrap();
    assert!(!again.changed);
    // Lifted: the published one is published again, the pending one queued and processed.
    let ready_before = w.queue.stats().await.unwrap().ready;
    let lifted = w
        .desk
        .restrict(&w.officer, "subj-frozen", false)
        .await
        .unwrap();
    assert_eq!((lifted.assets, lifted.requeued), (2, 1));
    assert_eq!(w.queue.stats().await.unwrap().ready, ready_before + 1);
    assert_eq!(w.state(published_asset).await, Some(AssetState::Published));
    assert_eq!(jobs.handle(Job::new(pending), 1).await, Outcome::Done);
    assert_eq!(w.state(pending).await, Some(AssetState::Published));
}

#[tokio::test]
async fn objection_and_a_narrowing_rectification_unpublish_and_a_widening_does_not_republish() {
    let w = World::new();
    let consent = w.consent("subj-object", &["education", "marketing"]).await;
    let (asset, _) = published(&w, consent).await;
    // Objecting to one of two purposes leaves it published.
    let one = w
        .desk
        .object(&w.officer, "subj-object", &["marketing".into()])
        .await
        .unwrap();
    assert_eq!((one.consents_revised, one.assets_unpublished), (1, 0));
    let unknown = w
        .desk
        .object(&w.officer, "subj-object", &["research".into()])
        .await;
    assert!(matches!(
        unknown,
        Err(asepsis_rights::RightsError::Invalid(_))
    ));
    // A repeated objection is no error and changes nothing.
    let repeat = w
        .desk
        .object(&w.officer, "subj-object", &["marketing".into()])
        .await
        .unwrap();
    assert!(!repeat.changed);
    // Rectification narrowing the scope to internal: unpublished at once.
    let patch = serde_json::json!({"scope": "internal"});
    let (record, outcome) = w.desk.rectify(&w.officer, consent, &patch).await.unwrap();
    assert_eq!(outcome.assets_unpublished, 1);
    assert_eq!((record.version, record.history.len()), (3, 2));
    assert_eq!(w.state(asset).await, Some(AssetState::Held));
    // Widening again does not republish on its own.
    let patch = serde_json::json!({"scope": "identifiable"});
    let (_, outcome) = w.desk.rectify(&w.officer, consent, &patch).await.unwrap();
    assert_eq!(outcome.assets_unpublished, 0);
    assert_eq!(w.state(asset).await, Some(AssetState::Held));
    // Another tenant's officer finds no such consent.
    let stranger = Actor {
        id: "other".into(),
        tenant: "other-clinic".into(),
    };
    let patch = serde_json::json!({"scope": "internal"});
    assert!(matches!(
        w.desk.rectify(&stranger, consent, &patch).await,
        Err(asepsis_rights::RightsError::NotFound)
    ));
}

#[tokio::test]
async fn narrowing_to_de_identified_unpublishes_a_face_but_not_a_face_free_photo() {
    let w = World::new();
    let consent = w.consent("subj-narrow", &["education"]).await;
    let (face_free, _) = published(&w, consent).await;
    let faces = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/faces/fr-obama2.jpg"),
    )
    .unwrap();
    let face = w.receive(&faces, consent).await;
    assert_eq!(
        w.jobs(yunet()).handle(Job::new(face), 1).await,
        Outcome::Done
    );
    assert_eq!(w.state(face).await, Some(AssetState::Published));
    let patch = serde_json::json!({"scope": "deidentified"});
    let (_, outcome) = w.desk.rectify(&w.officer, consent, &patch).await.unwrap();
    assert_eq!(outcome.assets_unpublished, 1);
    assert_eq!(w.state(face).await, Some(AssetState::Held));
    assert_eq!(w.state(face_free).await, Some(AssetState::Published));
}

#[tokio::test]
async fn the_export_lists_every_file_with_its_hash_and_is_a_disclosure() {
    let w = World::new();
    let consent = w.consent("subj-export", &["education"]).await;
    let (asset, original) = published(&w, consent).await;
    let export = w
        .desk
        .prepare_export(&w.officer, "subj-export")
        .await
        .unwrap();
    let receipt = export.receipt;
    let mut bytes = futures::io::Cursor::new(Vec::new());
    export.write(&mut bytes).await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.into_inner())).unwrap();
    let mut read = |name: &str| {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_name(name).unwrap(), &mut out).unwrap();
        out
    };
    let manifest: serde_json::Value = serde_json::from_slice(&read("manifest.json")).unwrap();
    assert_eq!(manifest["receipt"], receipt.to_string());
    let files = manifest["files"].as_array().unwrap();
    for file in files {
        let body = read(file["path"].as_str().unwrap());
        assert_eq!(file["sha256"], asepsis_common::sha256_hex(&body), "{file}");
        assert_eq!(file["size_bytes"], body.len() as u64);
    }
    let names: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    for name in [
        "README.txt".to_owned(),
        format!("consents/{consent}.json"),
        format!("assets/{asset}/original.jpg"),
        format!("assets/{asset}/published.jpg"),
        format!("assets/{asset}/provenance.json"),
        "disclosures.json".to_owned(),
    ] {
        assert!(names.contains(&name.as_str()), "{name} in {names:?}");
    }
    assert_eq!(read(&format!("assets/{asset}/original.jpg")), original);
    let published = read(&format!("assets/{asset}/published.jpg"));
    assert!(image::load_from_memory(&published).is_ok());
    let prov: serde_json::Value =
        serde_json::from_slice(&read(&format!("assets/{asset}/provenance.json"))).unwrap();
    assert!(
        prov["prov"]["activity"]
            .as_object()
            .is_some_and(|a| !a.is_empty())
    );
    // The accounting lists the publication and this export.
    let disclosures = w
        .desk
        .disclosures("clinic", "subj-export", 0, u64::MAX)
        .await
        .unwrap();
    let recipients: Vec<Recipient> = disclosures.iter().map(|d| d.recipient).collect();
    assert_eq!(recipients, vec![Recipient::Website, Recipient::Subject]);
    assert_eq!(disclosures[1].receipt, Some(receipt));
    // After erasure the export holds no file of the asset.
    w.desk.erase(&w.officer, "subj-export").await.unwrap();
    let export = w
        .desk
        .prepare_export(&w.officer, "subj-export")
        .await
        .unwrap();
    let mut bytes = futures::io::Cursor::new(Vec::new());
    export.write(&mut bytes).await.unwrap();
    let zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.into_inner())).unwrap();
    let names: Vec<&str> = zip.file_names().collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("original") || n.contains("published")),
        "{names:?}"
    );
}

#[tokio::test]
async fn retention_purges_exactly_what_is_due_on_the_clock_it_is_given() {
    let w = World::new();
    let consent = w.consent("subj-retain", &["education"]).await;
    let (published_asset, _) = published(&w, consent).await;
    // De-identified use only and no face scan: held for a reviewer.
    let deidentified = w
        .consent_of("subj-retain", &["education"], Scope::Deidentified)
        .await;
    let unavailable: Arc<dyn Detector> = Arc::new(Unavailable("no model".into()));
    let held = w
        .receive(&corpus("jpeg/ianare-DSCN0010.jpg"), deidentified)
        .await;
    assert_eq!(
        w.jobs(unavailable).handle(Job::new(held), 1).await,
        Outcome::Done
    );
    assert_eq!(w.state(held).await, Some(AssetState::Held));
    let mut settings: asepsis_common::retention::Settings =
        serde_json::from_value(serde_json::json!({
            "interval_secs": 3600, "batch": 10,
            "original_after_published_days": 30, "rejected_after_days": 30,
            "held_unreviewed_after_days": 90, "withdrawn_after_days": 7,
        }))
        .unwrap();
    settings.batch = 10;
    let retention = Retention {
        storage: w.storage().clone(),
        signer: w.desk.signer.clone(),
        settings,
    };
    let now = asepsis_store::now_ms();
    assert!(
        retention
            .run_once(now + 29 * DAY_MS, false)
            .await
            .unwrap()
            .is_empty()
    );
    // Day 31, dry run: the published original is due; nothing changes.
    let planned = retention.run_once(now + 31 * DAY_MS, true).await.unwrap();
    assert_eq!(planned.len(), 1);
    assert_eq!(planned[0].asset, published_asset);
    assert!(
        w.storage()
            .open_blob(published_asset, BlobRole::Original)
            .await
            .is_ok()
    );
    // Day 31 for real: the original goes, the derivative stays published.
    let done = retention.run_once(now + 31 * DAY_MS, false).await.unwrap();
    assert_eq!(done, planned);
    assert!(
        w.storage()
            .open_blob(published_asset, BlobRole::Original)
            .await
            .is_err()
    );
    assert!(
        w.storage()
            .open_blob(published_asset, BlobRole::Derivative)
            .await
            .is_ok()
    );
    assert_eq!(w.state(published_asset).await, Some(AssetState::Published));
    assert!(
        retention
            .run_once(now + 31 * DAY_MS, false)
            .await
            .unwrap()
            .is_empty()
    );
    // Day 91: the held asset is rejected; 30 days later everything of it is purged.
    let done = retention.run_once(now + 91 * DAY_MS, false).await.unwrap();
    assert_eq!(
        (done.len(), done[0].asset, done[0].action),
        (1, held, "reject")
    );
    assert_eq!(w.state(held).await, Some(AssetState::Rejected));
    let done = retention.run_once(now + 122 * DAY_MS, false).await.unwrap();
    assert_eq!((done.len(), done[0].action), (1, "delete_all"));
    assert!(matches!(
        w.storage().data_key(held).await,
        Err(StorageError::Erased(_))
    ));
    let purges = w
        .storage()
        .audit_log()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.entry.record.action == AuditAction::RetentionPurge)
        .count();
    assert_eq!(purges, 3);
}

/// The claimant's name and contact in the notices: personal data, never in the clear.
const CLAIMANT: &str = "CLAIMANT-5e0b";

/// A complete DMCA notice for `assets`, its claimant named by the canary.
fn notice(assets: &[Uuid]) -> asepsis_common::takedown::NoticeForm {
    serde_json::from_value(serde_json::json!({
        "assets": assets.iter().map(|a| format!("https://site.example/media/{a}")).collect::<Vec<_>>(),
        "claimant": {"name": format!("{CLAIMANT} Claimant"), "contact": format!("{CLAIMANT}@example.org")},
        "work": "a photograph",
        "statements": {"good_faith": true, "accurate_under_penalty_of_perjury": true},
        "signature": format!("/{CLAIMANT}/"),
    }))
    .unwrap()
}

fn counter() -> asepsis_common::takedown::CounterForm {
    serde_json::from_value(serde_json::json!({
        "statements": {"good_faith_mistake": true, "consent_to_jurisdiction": true},
        "signature": "/Clinic Counsel/",
    }))
    .unwrap()
}

/// `bytes` decoded, changed by `edit`, and saved as a JPEG at quality 70: what a re-uploader
/// makes of a downloaded copy.
fn reencoded(bytes: &[u8], edit: impl Fn(DynamicImage) -> DynamicImage) -> Vec<u8> {
    let image = edit(image::load_from_memory(bytes).unwrap());
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 70)
        .encode_image(&image.to_rgb8())
        .unwrap();
    out
}

async fn rejection(w: &World, asset: Uuid) -> Option<String> {
    let log = AssetLog::load(w.storage(), asset).await.unwrap();
    match log.last_of(EventName::Rejected) {
        Some(EventKind::Rejected { reason }) => Some(reason.clone()),
        _ => None,
    }
}

fn actions(entries: &[asepsis_common::audit::SignedAuditEntry]) -> Vec<AuditAction> {
    entries.iter().map(|e| e.entry.record.action).collect()
}

#[tokio::test]
async fn a_take_down_disables_blocks_copies_everywhere_and_is_restored_when_due() {
    let w = World::new();
    let mut notes = w.notes.subscribe();
    let consent = w.consent("subj-dmca", &["education"]).await;
    let (asset, bytes) = published(&w, consent).await;

    let entered = w
        .desk
        .take_down(&w.officer, notice(&[asset]), None, Uuid::new_v4())
        .await
        .unwrap();
    assert_eq!(w.state(asset).await, Some(AssetState::TakenDown));
    let note = notes.recv().await.unwrap();
    assert_eq!(
        (note.asset_id, note.routing_key()),
        (asset, "asset.taken_down".to_owned())
    );
    // Disabled, not deleted: the key and both blobs are still there.
    assert!(
        w.storage()
            .get_blob(asset, BlobRole::Derivative)
            .await
            .is_ok()
    );
    assert!(
        w.storage()
            .get_blob(asset, BlobRole::Original)
            .await
            .is_ok()
    );
    // The crop grid and the flips of the image are blocked.
    assert!(entered.blocked_hashes > 1000, "{}", entered.blocked_hashes);
    // The claimant is sealed: no object holds the name in the clear.
    for key in w.keys().await {
        let bytes = w
            .storage()
            .object_store()
            .get(&key.as_str().into())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(CLAIMANT), "{key}");
    }

    // The same file, a re-encoded copy and a half-size copy, in this tenant and another:
    // each rejected naming the notice. An unrelated photo is published.
    let other = w.consent("subj-other", &["education"]).await;
    let copies = [
        ("same file", bytes.clone(), "clinic"),
        ("re-encoded", reencoded(&bytes, |i| i), "clinic"),
        (
            "half size",
            reencoded(&bytes, |i| {
                i.resize(
                    i.width() / 2,
                    i.height() / 2,
                    image::imageops::FilterType::Triangle,
                )
            }),
            "other-hospital",
        ),
    ];
    let jobs = w.jobs(Arc::new(Unavailable("no model".into())));
    for (what, copy, tenant) in copies {
        let again = w.receive_as(&copy, other, tenant, "someone-else").await;
        assert!(
            matches!(jobs.handle(Job::new(again), 1).await, Outcome::Reject(_)),
            "{what}"
        );
        assert_eq!(w.state(again).await, Some(AssetState::Rejected), "{what}");
        let want = format!("matches content taken down under notice {}", entered.id);
        assert_eq!(
            rejection(&w, again).await.as_deref(),
            Some(want.as_str()),
            "{what}"
        );
    }
    let unrelated = w
        .receive(&corpus("jpeg/ianare-nikon-e950.jpg"), other)
        .await;
    assert_eq!(jobs.handle(Job::new(unrelated), 1).await, Outcome::Done);
    assert_eq!(w.state(unrelated).await, Some(AssetState::Published));

    // The uploader's tenant counters; the claimant is told; the restore waits 10 business days.
    let uploader = Actor {
        id: "uploader-key".into(),
        tenant: "clinic".into(),
    };
    let stranger = Actor {
        id: "k".into(),
        tenant: "other-hospital".into(),
    };
    assert!(matches!(
        w.desk
            .counter_notice(&stranger, entered.id, counter())
            .await,
        Err(asepsis_rights::RightsError::NotFound)
    ));
    let bad = serde_json::from_value(serde_json::json!({"signature": "x"})).unwrap();
    let err = w
        .desk
        .counter_notice(&uploader, entered.id, bad)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("statements.good_faith_mistake: must be true"),
        "{err}"
    );
    let countered = w
        .desk
        .counter_notice(&uploader, entered.id, counter())
        .await
        .unwrap();
    let due = countered.restore_due;
    let now = time::OffsetDateTime::now_utc();
    assert!(
        due - now >= time::Duration::days(14) - time::Duration::MINUTE,
        "{due}"
    );
    let note = notes.recv().await.unwrap();
    assert_eq!(note.routing_key(), "asset.counter_noticed");
    assert!(
        !w.desk
            .counter_notice(&uploader, entered.id, counter())
            .await
            .unwrap()
            .changed
    );

    // Not yet due: nothing happens. When due: restored, published again, unblocked.
    let early = w
        .desk
        .run_takedowns(due - time::Duration::SECOND)
        .await
        .unwrap();
    assert_eq!(early.restored, 0);
    assert_eq!(w.state(asset).await, Some(AssetState::TakenDown));
    let run = w.desk.run_takedowns(due).await.unwrap();
    assert_eq!((run.restored, run.restored_held), (1, 0));
    assert_eq!(w.state(asset).await, Some(AssetState::Published));
    assert!(w.storage().block_entries().await.unwrap().is_empty());
    let record = w.desk.takedown(entered.id, None).await.unwrap();
    assert_eq!(record.status(), "restored");
    let steps: Vec<String> = record
        .timeline
        .iter()
        .map(|s| {
            serde_json::to_value(s).unwrap()["step"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        steps,
        ["received", "notified", "counter_noticed", "restored"]
    );
    assert_eq!(w.desk.run_takedowns(due).await.unwrap().restored, 0);
    // A privacy officer of another tenant does not see it.
    assert!(
        w.desk
            .takedown(entered.id, Some("other-hospital"))
            .await
            .is_err()
    );

    let audit = actions(&w.storage().audit_log().await.unwrap());
    for action in [
        AuditAction::TakedownReceive,
        AuditAction::TakedownCounterNotice,
        AuditAction::TakedownRestore,
    ] {
        assert!(audit.contains(&action), "{action:?} in {audit:?}");
    }
    assert!(!format!("{:?}", w.storage().audit_log().await.unwrap()).contains(CLAIMANT));
}

#[tokio::test]
async fn court_actions_keep_take_downs_and_the_limit_of_upheld_notices_disables_the_key() {
    let w = World::new();
    let (token, key) =
        asepsis_common::apikey::generate("clinic", asepsis_common::apikey::Role::Uploader, 0)
            .unwrap();
    assert!(token.starts_with("asp_"));
    w.storage().put_api_key(&key).await.unwrap();
    let consent = w.consent("subj-repeat", &["education"]).await;
    let jobs = w.jobs(Arc::new(Unavailable("no model".into())));
    let photos = [
        "jpeg/ianare-DSCN0010.jpg",
        "jpeg/ianare-nikon-e950.jpg",
        "jpeg/ianare-sanyo-vpcsx550.jpg",
        "jpeg/ianare-olympus-d320l.jpg",
    ];
    let mut assets = Vec::new();
    for photo in photos {
        let asset = w
            .receive_as(&corpus(photo), consent, "clinic", &key.id)
            .await;
        assert_eq!(jobs.handle(Job::new(asset), 1).await, Outcome::Done);
        assert_eq!(w.state(asset).await, Some(AssetState::Published), "{photo}");
        assets.push(asset);
    }
    let uploader = Actor {
        id: key.id.clone(),
        tenant: "clinic".into(),
    };

    // A notice missing an element is refused, naming it.
    let mut bad = serde_json::to_value(serde_json::json!({
        "assets": [assets[0]], "claimant": {"name": "n", "contact": "c"}, "work": "w",
        "statements": {"good_faith": true}, "signature": "s"
    }))
    .unwrap();
    let form = serde_json::from_value(bad.take()).unwrap();
    let err = w
        .desk
        .take_down(&w.officer, form, None, Uuid::new_v4())
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("statements.accurate_under_penalty_of_perjury: must be true (17 U.S.C. 512(c)(3)(A)(vi))"),
        "{err}"
    );
    assert_eq!(w.state(assets[0]).await, Some(AssetState::Published));
    // A privacy officer names only its own tenant's assets.
    let err = w
        .desk
        .take_down(
            &w.officer,
            notice(&[assets[0]]),
            Some("other"),
            Uuid::new_v4(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "assets[0]: no such asset");

    // First notice: countered, then the claimant's court action: never restored.
    let first = w
        .desk
        .take_down(&w.officer, notice(&[assets[0]]), None, Uuid::new_v4())
        .await
        .unwrap();
    let due = w
        .desk
        .counter_notice(&uploader, first.id, counter())
        .await
        .unwrap()
        .restore_due;
    let upheld = w
        .desk
        .court_action(&w.officer, first.id, None)
        .await
        .unwrap();
    assert_eq!(upheld.status(), "upheld");
    let run = w
        .desk
        .run_takedowns(due + time::Duration::days(30))
        .await
        .unwrap();
    assert_eq!(run.restored, 0);
    assert_eq!(w.state(assets[0]).await, Some(AssetState::TakenDown));
    assert!(
        w.storage()
            .api_key(&key.id)
            .await
            .unwrap()
            .unwrap()
            .disabled
            .is_none()
    );

    // Second: upheld by court action too; third: nobody counters it within the window.
    let second = w
        .desk
        .take_down(&w.officer, notice(&[assets[1]]), None, Uuid::new_v4())
        .await
        .unwrap();
    w.desk
        .court_action(&w.officer, second.id, None)
        .await
        .unwrap();
    assert!(
        w.storage()
            .api_key(&key.id)
            .await
            .unwrap()
            .unwrap()
            .disabled
            .is_none()
    );
    let third = w
        .desk
        .take_down(&w.officer, notice(&[assets[2]]), None, Uuid::new_v4())
        .await
        .unwrap();
    let listing = w.desk.takedowns(None, Some(&key.id)).await.unwrap();
    assert_eq!(listing.takedowns.len(), 3);
    assert_eq!(listing.upheld.by_uploader.get(&key.id), Some(&2));
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(15);
    w.desk
        .court_action(&w.officer, third.id, None)
        .await
        .unwrap();
    let record = w.storage().api_key(&key.id).await.unwrap().unwrap();
    let disabled = record
        .disabled
        .expect("the third upheld notice disables the key");
    assert!(
        disabled.reason.contains("repeat-infringer policy: 3"),
        "{}",
        disabled.reason
    );
    let audit = w.storage().audit_log().await.unwrap();
    let disable = audit
        .iter()
        .find(|e| e.entry.record.action == AuditAction::KeyDisable)
        .unwrap();
    assert_eq!(disable.entry.record.targets[0], format!("key:{}", key.id));

    // A fourth notice nobody counters is upheld when its window closes.
    let fourth = w
        .desk
        .take_down(&w.officer, notice(&[assets[3]]), None, Uuid::new_v4())
        .await
        .unwrap();
    let run = w.desk.run_takedowns(later).await.unwrap();
    assert_eq!(run.upheld, 1);
    assert_eq!(
        w.desk.takedown(fourth.id, None).await.unwrap().status(),
        "upheld"
    );
    let counts = w.desk.takedowns(None, None).await.unwrap().upheld;
    assert_eq!(counts.by_uploader.get(&key.id), Some(&4));
    assert_eq!(counts.by_tenant.get("clinic"), Some(&4));
    assert!(
        actions(&w.storage().audit_log().await.unwrap()).contains(&AuditAction::TakedownUphold)
    );
}

#[tokio::test]
async fn a_notice_whose_hashing_was_cut_short_is_blocked_by_the_next_run() {
    let w = World::new();
    let consent = w.consent("subj-cut", &["education"]).await;
    let (asset, _) = published(&w, consent).await;
    let entered = w
        .desk
        .take_down(&w.officer, notice(&[asset]), None, Uuid::new_v4())
        .await
        .unwrap();
    // As a request dropped after the answer's first half leaves it: taken down, only the
    // recorded hash blocked.
    let mut t = w.storage().takedown(entered.id).await.unwrap().unwrap();
    t.assets[0].hashed = false;
    t.assets[0].blocked_hashes = 1;
    w.storage().put_takedown(&t).await.unwrap();
    let recorded = AssetLog::load(w.storage(), asset)
        .await
        .unwrap()
        .pdq()
        .unwrap();
    w.storage()
        .block(entered.id, asset, &[recorded.hash.0])
        .await
        .unwrap();
    assert_eq!(w.state(asset).await, Some(AssetState::TakenDown));
    w.desk
        .run_takedowns(time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let t = w.storage().takedown(entered.id).await.unwrap().unwrap();
    assert!(t.assets[0].hashed);
    assert!(
        t.assets[0].blocked_hashes > 1000,
        "{}",
        t.assets[0].blocked_hashes
    );
    let stored = w.storage().blocked_hashes(entered.id, asset).await.unwrap();
    assert_eq!(stored.len(), t.assets[0].blocked_hashes as usize);
}
