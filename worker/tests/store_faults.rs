//! The asset job against a flaky object store: a fault-injecting wrapper fails a fixed
//! pseudo-random share of requests, and every job is delivered again until it settles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use asepsis_common::consent::Scope;
use asepsis_common::job::Job;
use asepsis_common::media::{Limits, verify};
use asepsis_common::provenance::{self, AssetState, TrustedKeys};
use asepsis_store::Storage;
use asepsis_store::keyring::LocalKeyring;
use asepsis_worker::jobs::AssetJobs;
use asepsis_worker::runner::{Handler, Outcome};
use support::*;

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
        dicom_uid_secret: Arc::new([3; 32].into()),
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
