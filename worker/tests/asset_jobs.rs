//! The asset pipeline on real corpus files, against a temp-dir store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use asepsis_common::consent::Scope;
use asepsis_common::faces::Verdict;
use asepsis_common::job::Job;
use asepsis_common::media::{Limits, verify};
use asepsis_common::policy::Decision;
use asepsis_common::provenance::{self, AssetState, EventKind, EventName, TrustedKeys};
use asepsis_store::asset::AssetLog;
use asepsis_worker::runner::{Handler, Outcome};
use support::*;
use uuid::Uuid;

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
