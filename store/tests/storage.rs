//! Storage, keys and provenance together, on `InMemory` and on a temp-dir `LocalFileSystem`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use asepsis_common::envelope::BlobRole;
use asepsis_common::keys::Keks;
use asepsis_common::policy::Decision;
use asepsis_common::provenance::{self, EventKind, Signer, TrustedKeys};
use asepsis_store::keyring::LocalKeyring;
use asepsis_store::{Storage, StorageError};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use uuid::Uuid;

const SEG: u32 = 4096;

struct Fx {
    storage: Storage,
    keyring: Arc<LocalKeyring>,
    _dir: tempfile::TempDir,
}

fn fixtures() -> Vec<(&'static str, Fx)> {
    let make = |store: Arc<dyn ObjectStore>, dir: tempfile::TempDir| {
        let keyring =
            Arc::new(LocalKeyring::open_or_create(&dir.path().join("keyring.json")).unwrap());
        let storage = Storage::new(store, keyring.clone()).with_segment_size(SEG);
        Fx {
            storage,
            keyring,
            _dir: dir,
        }
    };
    let mem_dir = tempfile::tempdir().unwrap();
    let fs_dir = tempfile::tempdir().unwrap();
    let root = fs_dir.path().join("store");
    std::fs::create_dir_all(&root).unwrap();
    let local = LocalFileSystem::new_with_prefix(&root).unwrap();
    vec![
        ("in-memory", make(Arc::new(InMemory::new()), mem_dir)),
        ("local-fs", make(Arc::new(local), fs_dir)),
    ]
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

fn cursor(bytes: Vec<u8>) -> std::io::Cursor<Vec<u8>> {
    std::io::Cursor::new(bytes)
}

async fn read_all(storage: &Storage, asset: Uuid, role: BlobRole) -> Result<Vec<u8>, StorageError> {
    let (len, stream) = storage.get_blob(asset, role).await?;
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
    let all = chunks.concat();
    assert_eq!(all.len() as u64, len);
    Ok(all)
}

async fn object(storage: &Storage, path: String) -> bytes::Bytes {
    let store = storage.object_store();
    store
        .get(&path.into())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

#[tokio::test]
async fn blobs_round_trip_and_ranges_cross_segments() {
    for (name, fx) in fixtures() {
        let asset = Uuid::new_v4();
        let plain = data(5 * SEG as usize + 123);
        let info = fx
            .storage
            .put_blob(asset, BlobRole::Original, cursor(plain.clone()))
            .await
            .unwrap();
        assert_eq!(info.plaintext_bytes, plain.len() as u64, "{name}");
        let all = read_all(&fx.storage, asset, BlobRole::Original)
            .await
            .unwrap();
        assert_eq!(all, plain, "{name}");
        let ranges = [
            (0, 1),
            (SEG - 1, SEG + 1),
            (100, 3 * SEG + 7),
            (5 * SEG, 5 * SEG + 123),
            (7, 7),
        ];
        for (a, b) in ranges {
            let range = u64::from(a)..u64::from(b);
            let got = fx
                .storage
                .get_range(asset, BlobRole::Original, range)
                .await
                .unwrap();
            assert_eq!(&got[..], &plain[a as usize..b as usize], "{name} {a}..{b}");
        }
        let past_end = 0..plain.len() as u64 + 1;
        assert!(
            fx.storage
                .get_range(asset, BlobRole::Original, past_end)
                .await
                .is_err()
        );
        // A derivative of the same asset has its own blob under the same data key.
        let small = cursor(b"small".to_vec());
        fx.storage
            .put_blob(asset, BlobRole::Derivative, small)
            .await
            .unwrap();
        let got = read_all(&fx.storage, asset, BlobRole::Derivative)
            .await
            .unwrap();
        assert_eq!(got, b"small");
    }
}

#[tokio::test]
async fn a_swapped_blob_is_detected() {
    for (name, fx) in fixtures() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for asset in [a, b] {
            let plain = cursor(data(100));
            fx.storage
                .put_blob(asset, BlobRole::Original, plain)
                .await
                .unwrap();
        }
        let other = object(&fx.storage, format!("blobs/{b}/original")).await;
        let store = fx.storage.object_store();
        let target = format!("blobs/{a}/original").into();
        store.put(&target, other.into()).await.unwrap();
        let read = read_all(&fx.storage, a, BlobRole::Original).await;
        assert!(read.is_err(), "{name}");
    }
}

#[tokio::test]
async fn rotation_rewraps_without_touching_blobs_and_retires_the_old_version() {
    for (name, fx) in fixtures() {
        let assets: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for asset in &assets {
            let plain = cursor(data(9000));
            fx.storage
                .put_blob(*asset, BlobRole::Original, plain)
                .await
                .unwrap();
        }
        let blob = format!("blobs/{}/original", assets[0]);
        let before = object(&fx.storage, blob.clone()).await;
        let old = fx.keyring.current().version;
        let new = fx.keyring.add_version().unwrap();
        let done = fx.storage.rotate_kek().await.unwrap();
        assert_eq!(done.rewrapped, 5, "{name}");
        // Interrupted or not, running it again finds nothing left to do.
        let again = fx.storage.rotate_kek().await.unwrap();
        assert_eq!((again.rewrapped, again.already_current), (0, 5), "{name}");
        assert_eq!(
            before,
            object(&fx.storage, blob).await,
            "blobs are not rewritten"
        );
        // The old version is no longer needed.
        fx.keyring.retire(old).unwrap();
        assert_eq!(fx.keyring.versions(), vec![new.version]);
        for asset in &assets {
            let all = read_all(&fx.storage, *asset, BlobRole::Original)
                .await
                .unwrap();
            assert_eq!(all, data(9000), "{name}");
        }
    }
}

#[tokio::test]
async fn shredding_makes_every_blob_unreadable() {
    for (name, fx) in fixtures() {
        let asset = Uuid::new_v4();
        for role in [BlobRole::Original, BlobRole::Derivative] {
            fx.storage
                .put_blob(asset, role, cursor(data(10)))
                .await
                .unwrap();
        }
        fx.storage.shred(asset).await.unwrap();
        fx.storage.shred(asset).await.unwrap(); // idempotent
        for role in [BlobRole::Original, BlobRole::Derivative] {
            let read = fx.storage.get_blob(asset, role).await.map(|_| ());
            assert!(
                matches!(read, Err(StorageError::Erased(a)) if a == asset),
                "{name}"
            );
            let range = fx.storage.get_range(asset, role, 0..1).await;
            assert!(matches!(range, Err(StorageError::Erased(_))), "{name}");
        }
        // Rotation does not resurrect it, and no new blob can be written for it.
        fx.keyring.add_version().unwrap();
        fx.storage.rotate_kek().await.unwrap();
        let key = fx.storage.data_key(asset).await.map(|_| ());
        assert!(matches!(key, Err(StorageError::Erased(_))), "{name}");
        let again = fx
            .storage
            .put_blob(asset, BlobRole::Original, cursor(data(10)))
            .await;
        assert!(matches!(again, Err(StorageError::Erased(_))), "{name}");
    }
}

#[tokio::test]
async fn concurrent_appends_win_each_sequence_number_once_and_the_chain_verifies() {
    for (name, fx) in fixtures() {
        let asset = Uuid::new_v4();
        let signer = Arc::new(Signer::generate().unwrap());
        let per_task = 20;
        let tasks: Vec<_> = (0..2)
            .map(|t| {
                let (storage, signer) = (fx.storage.clone(), signer.clone());
                tokio::spawn(async move {
                    let mut seqs = Vec::new();
                    for i in 0..per_task {
                        let what = EventKind::Verdict {
                            decision: Decision::Hold,
                            reason: format!("task {t} #{i}"),
                        };
                        let event = storage.append_event(asset, &signer, what).await.unwrap();
                        seqs.push(event.event.seq);
                    }
                    seqs
                })
            })
            .collect();
        let mut won = Vec::new();
        for task in tasks {
            won.extend(task.await.unwrap());
        }
        won.sort_unstable();
        let expected: Vec<u64> = (0..2 * per_task as u64).collect();
        assert_eq!(won, expected, "{name}: each seq won exactly once");
        let log = fx.storage.events(asset).await.unwrap();
        let mut trusted = TrustedKeys::default();
        trusted.add(signer.public_key());
        let verified = provenance::verify(asset, &log, &trusted);
        assert_eq!(verified, Ok(2 * per_task), "{name}");
    }
}

#[tokio::test]
async fn verify_catches_a_stored_event_edited_or_removed() {
    for (name, fx) in fixtures() {
        let asset = Uuid::new_v4();
        let signer = Signer::generate().unwrap();
        for decision in [Decision::Hold, Decision::Publish, Decision::Hold] {
            let what = EventKind::Verdict {
                decision,
                reason: "r".into(),
            };
            fx.storage.append_event(asset, &signer, what).await.unwrap();
        }
        let mut trusted = TrustedKeys::default();
        trusted.add(signer.public_key());
        let path = format!("events/{asset}/{:020}", 1);
        let text = object(&fx.storage, path.clone()).await;
        let edited = String::from_utf8(text.to_vec())
            .unwrap()
            .replace("publish", "internal");
        let store = fx.storage.object_store();
        let location = path.into();
        store
            .put(&location, edited.into_bytes().into())
            .await
            .unwrap();
        let log = fx.storage.events(asset).await.unwrap();
        let err = provenance::verify(asset, &log, &trusted).unwrap_err();
        assert_eq!(err.seq, 1, "{name}: {err}");
        store.delete(&location).await.unwrap();
        let log = fx.storage.events(asset).await.unwrap();
        let err = provenance::verify(asset, &log, &trusted).unwrap_err();
        assert_eq!(err.position, 1, "{name}: {err}");
    }
}

#[tokio::test]
async fn a_subject_s_lock_refuses_another_holder_until_it_expires_and_a_lease_has_one_winner() {
    for (name, fx) in fixtures() {
        let s = &fx.storage;
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(
            s.lock_subject("t", "ref", a, 60_000).await.unwrap(),
            "{name}"
        );
        assert!(
            !s.lock_subject("t", "ref", b, 60_000).await.unwrap(),
            "{name}"
        );
        // Another subject, or another tenant's subject of the same reference, is free.
        assert!(
            s.lock_subject("t", "other", b, 60_000).await.unwrap(),
            "{name}"
        );
        assert!(
            s.lock_subject("u", "ref", b, 60_000).await.unwrap(),
            "{name}"
        );
        s.unlock_subject("t", "ref").await.unwrap();
        assert!(s.lock_subject("t", "ref", b, 0).await.unwrap(), "{name}");
        // b's lock expired at once (its process died, say): a takes it over.
        assert!(
            s.lock_subject("t", "ref", a, 60_000).await.unwrap(),
            "{name}"
        );
        // The reference never appears in a key.
        let keys: Vec<_> = s.object_store().list(None).try_collect().await.unwrap();
        assert!(
            keys.iter().all(|m| !m.location.as_ref().contains("ref")),
            "{name}"
        );
        let claims = [
            s.claim_lease("retention", 7, a).await.unwrap(),
            s.claim_lease("retention", 7, b).await.unwrap(),
            s.claim_lease("retention", 8, b).await.unwrap(),
        ];
        assert_eq!(claims, [true, false, true], "{name}");
    }
}

#[tokio::test]
async fn a_tenant_s_recent_batches_are_listed_by_creation_time_and_no_other_s() {
    use asepsis_common::batch::Batch;
    use time::{Duration, OffsetDateTime};
    for (name, fx) in fixtures() {
        let now = OffsetDateTime::now_utc();
        let batch = |tenant: &str, age: Duration| Batch {
            id: Uuid::new_v4(),
            tenant: tenant.into(),
            label: "label".into(),
            expected: 1,
            created_at: now - age,
            created_by: "k".into(),
        };
        let (old, newer, newest) = (
            batch("t1", Duration::days(3)),
            batch("t1", Duration::hours(2)),
            batch("t1", Duration::minutes(1)),
        );
        for b in [&newest, &old, &newer, &batch("t2", Duration::minutes(1))] {
            fx.storage.put_batch(b).await.unwrap();
        }
        let day_ago = u64::try_from((now - Duration::days(1)).unix_timestamp() * 1000).unwrap();
        let recent = fx.storage.batches_since("t1", day_ago).await.unwrap();
        assert_eq!(recent, vec![newer.id, newest.id], "{name}");
    }
}
