//! Where everything Asepsis keeps lives in the object store: the key layout, in one place
//! ([`Object::path`] is the only code that builds an object's key).
//!
//! ```text
//! blobs/{asset}/{role}          encrypted blob (envelope format), role = original | derivative |
//!                                export | notice | counter-notice
//! keys/{asset}                  the asset's data key, wrapped under a KEK (JSON WrappedKey)
//! erased/{asset}                tombstone: the asset was crypto-shredded (its key is gone)
//! events/{asset}/{seq:020}      provenance events (JSON SignedEvent), written create-only
//! consents/{id}                 consent record (JSON; pseudonymous references only)
//! apikeys/{key id}               API key record: tenant, role, SHA-256 of the secret
//! index/tenants/{tenant}/{asset} empty marker: the asset belongs to the tenant
//! index/consents/{id}/{asset}    empty marker: the asset was uploaded under the consent
//! index/subjects/{tenant}/{ref sha256}/{consent}  empty marker: a consent of the subject
//! locks/subjects/{tenant}/{ref sha256}  a rights request on the subject is running (JSON lease)
//! leases/{job}/{period:020}      create-only: the worker that runs a scheduled job this period
//! idempotency/{tenant}/{sha256}  the asset an upload's Idempotency-Key (hashed) made
//! audit/{seq:020}                the audit log (JSON SignedAuditEntry), written create-only
//! takedowns/{id}                 a DMCA take-down's public record (JSON Takedown: ids, states,
//!                                times); the claimant's data is blobs/{id}/notice, sealed
//!                                under keys/{id}, the counter-notices' blobs/{id}/counter-notice
//! locks/takedowns/{id}           a request on the take-down is running (JSON lease)
//! blocklist/{takedown}/{asset}   the perceptual hashes the take-down blocks (32 bytes each)
//! batches/{id}                   an import batch (JSON Batch: tenant, label, expected count)
//! index/tenant-batches/{tenant}/{created ms}-{batch}   empty: a tenant's batches by time
//! index/batches/{id}/{asset}     empty marker: the asset was uploaded into the batch
//! ```
//!
//! Wrapped keys live apart from blobs, so rotating a KEK rewrites only `keys/` and erasing an
//! asset is deleting one small object. There is no cross-asset deduplication: every asset has
//! its own data key. This module never logs plaintext, keys or event contents.

use std::ops::Range;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    WriteMultipart,
};
use tokio::io::AsyncRead;
use uuid::Uuid;

use asepsis_common::apikey::KeyRecord;
use asepsis_common::audit::{self, AuditRecord, SignedAuditEntry};
use asepsis_common::consent::Consent;
use asepsis_common::envelope::{
    self, BlobRole, DEFAULT_SEGMENT_SIZE, DataKey, EnvelopeError, Header, Layout, SegmentCipher,
};
use asepsis_common::keys::{KekRef, Keks, KeyError, WrappedKey};
use asepsis_common::provenance::{EventKind, SignedEvent, Signer};

use crate::blob_stream;

/// Appends that lose a race this many times in a row give up with [`StorageError::Contended`].
const APPEND_RETRIES: usize = 64;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("asset {0} was erased (its data key was shredded)")]
    Erased(Uuid),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("object store: {0}")]
    Store(#[source] object_store::Error),
    #[error("stored record {0} is corrupt")]
    Corrupt(String),
    #[error("could not append to the log of {0}: too many concurrent writers")]
    Contended(String),
}

impl From<object_store::Error> for StorageError {
    /// Counted in `asepsis_store_errors_total`, unless it is an answer the code expects
    /// (not found, already exists, precondition failed) rather than a failure.
    fn from(e: object_store::Error) -> Self {
        use object_store::Error as E;
        if !matches!(
            e,
            E::NotFound { .. }
                | E::AlreadyExists { .. }
                | E::Precondition { .. }
                | E::NotModified { .. }
        ) {
            metrics::counter!("asepsis_store_errors_total").increment(1);
        }
        StorageError::Store(e)
    }
}

/// Describe the store's metric and create it at zero.
pub fn register_metrics() {
    metrics::describe_counter!(
        "asepsis_store_errors_total",
        "Object-store requests that failed (timeouts, refused connections, server errors)."
    );
    metrics::counter!("asepsis_store_errors_total").absolute(0);
}

/// Plaintext and stored sizes of a blob written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobInfo {
    pub plaintext_bytes: u64,
    pub stored_bytes: u64,
}

/// What a KEK rotation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rotation {
    pub rewrapped: u64,
    pub already_current: u64,
    pub erased_meanwhile: u64,
}

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    keks: Arc<dyn Keks>,
    segment_size: u32,
}

/// Every object Asepsis keeps, by what it is (the layout above); [`Object::path`] is its key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Object<'a> {
    Blob(Uuid, BlobRole),
    DataKey(Uuid),
    /// The prefix of every wrapped data key.
    DataKeys,
    Erased(Uuid),
    Events(Uuid),
    Event(Uuid, u64),
    Consent(Uuid),
    ApiKey(&'a str),
    /// The prefix of every tenant's asset index.
    AllTenantAssets,
    TenantAssets(&'a str),
    TenantAsset(&'a str, Uuid),
    ConsentAssets(Uuid),
    ConsentAsset(Uuid, Uuid),
    Idempotency(&'a str, &'a str),
    SubjectConsents(&'a str, &'a str),
    SubjectConsent(&'a str, &'a str, Uuid),
    SubjectLock(&'a str, &'a str),
    Lease(&'a str, u64),
    /// The prefix of every take-down record.
    Takedowns,
    Takedown(Uuid),
    TakedownLock(Uuid),
    /// The prefix of the block list.
    BlockList,
    BlockEntry(Uuid, Uuid),
    Batch(Uuid),
    /// A tenant's batches by creation time: `{created_ms:020}-{batch}` under it.
    TenantBatches(&'a str),
    TenantBatch(&'a str, u64, Uuid),
    BatchAssets(Uuid),
    BatchAsset(Uuid, Uuid),
    /// The prefix of the audit log.
    AuditLog,
    AuditEntry(u64),
}

impl Object<'_> {
    pub(crate) fn path(self) -> Path {
        Path::from(match self {
            Object::Blob(asset, role) => format!("blobs/{asset}/{}", role.as_str()),
            Object::DataKey(asset) => format!("keys/{asset}"),
            Object::DataKeys => "keys".to_owned(),
            Object::Erased(asset) => format!("erased/{asset}"),
            Object::Events(asset) => format!("events/{asset}"),
            Object::Event(asset, seq) => format!("events/{asset}/{seq:020}"),
            Object::Consent(id) => format!("consents/{id}"),
            Object::ApiKey(id) => format!("apikeys/{id}"),
            Object::AllTenantAssets => "index/tenants".to_owned(),
            Object::TenantAssets(tenant) => format!("index/tenants/{tenant}"),
            Object::TenantAsset(tenant, asset) => format!("index/tenants/{tenant}/{asset}"),
            Object::ConsentAssets(consent) => format!("index/consents/{consent}"),
            Object::ConsentAsset(consent, asset) => format!("index/consents/{consent}/{asset}"),
            Object::Idempotency(tenant, key_sha256) => format!("idempotency/{tenant}/{key_sha256}"),
            Object::SubjectConsents(tenant, subject) => {
                format!("index/subjects/{tenant}/{subject}")
            }
            Object::SubjectConsent(tenant, subject, consent) => {
                format!("index/subjects/{tenant}/{subject}/{consent}")
            }
            Object::SubjectLock(tenant, subject) => format!("locks/subjects/{tenant}/{subject}"),
            Object::Lease(job, period) => format!("leases/{job}/{period:020}"),
            Object::Takedowns => "takedowns".to_owned(),
            Object::Takedown(id) => format!("takedowns/{id}"),
            Object::TakedownLock(id) => format!("locks/takedowns/{id}"),
            Object::BlockList => "blocklist".to_owned(),
            Object::BlockEntry(takedown, asset) => format!("blocklist/{takedown}/{asset}"),
            Object::Batch(id) => format!("batches/{id}"),
            Object::TenantBatches(tenant) => format!("index/tenant-batches/{tenant}"),
            Object::TenantBatch(tenant, ms, batch) => {
                format!("index/tenant-batches/{tenant}/{ms:020}-{batch}")
            }
            Object::BatchAssets(batch) => format!("index/batches/{batch}"),
            Object::BatchAsset(batch, asset) => format!("index/batches/{batch}/{asset}"),
            Object::AuditLog => "audit".to_owned(),
            Object::AuditEntry(seq) => format!("audit/{seq:020}"),
        })
    }
}

/// Who made an upload under an Idempotency-Key, and when it started.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdempotencyRecord {
    pub asset_id: Uuid,
    pub started_at_ms: u64,
}

/// Whether this call created a record or found one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim<T> {
    Created,
    Existing(T),
}

/// The one clock of the services: milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Storage {
    pub fn new(store: Arc<dyn ObjectStore>, keks: Arc<dyn Keks>) -> Self {
        Self {
            store,
            keks,
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }

    /// Use another segment size for new blobs (tests use small ones).
    pub fn with_segment_size(mut self, segment_size: u32) -> Self {
        self.segment_size = segment_size;
        self
    }

    /// The KEK version new data keys are wrapped under.
    pub fn current_kek(&self) -> KekRef {
        self.keks.current()
    }

    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    async fn wrapped_key(&self, asset: Uuid) -> Result<Option<WrappedKey>, StorageError> {
        match self.store.get(&Object::DataKey(asset).path()).await {
            Ok(got) => {
                let bytes = got.bytes().await?;
                let wrapped = serde_json::from_slice(&bytes)
                    .map_err(|_| StorageError::Corrupt(format!("keys/{asset}")))?;
                Ok(Some(wrapped))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Was the asset crypto-shredded (its tombstone written)?
    ///
    /// # Errors
    /// Store failures.
    pub async fn is_erased(&self, asset: Uuid) -> Result<bool, StorageError> {
        match self.store.head(&Object::Erased(asset).path()).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The asset's data key.
    ///
    /// # Errors
    /// [`StorageError::Erased`] after shredding; [`StorageError::NotFound`] when the asset
    /// never had one; [`StorageError::Key`] when it does not unwrap.
    pub async fn data_key(&self, asset: Uuid) -> Result<DataKey, StorageError> {
        match self.wrapped_key(asset).await? {
            Some(wrapped) => Ok(self.keks.unwrap(asset, &wrapped)?),
            None if self.is_erased(asset).await? => Err(StorageError::Erased(asset)),
            None => Err(StorageError::NotFound(format!("data key of asset {asset}"))),
        }
    }

    /// The asset's data key, created (random, wrapped, stored create-only) on first use.
    async fn data_key_or_create(&self, asset: Uuid) -> Result<DataKey, StorageError> {
        if self.is_erased(asset).await? {
            return Err(StorageError::Erased(asset));
        }
        if let Some(wrapped) = self.wrapped_key(asset).await? {
            return Ok(self.keks.unwrap(asset, &wrapped)?);
        }
        let key = DataKey::generate()?;
        let wrapped = self.keks.wrap(asset, &key)?;
        if self
            .put_json(&Object::DataKey(asset).path(), &wrapped, true)
            .await?
        {
            // Shredded between the check above and the key's write: shred again, so an
            // erased asset never gets a live key.
            if self.is_erased(asset).await? {
                self.shred(asset).await?;
                return Err(StorageError::Erased(asset));
            }
            Ok(key)
        } else {
            // Another writer created it first: use theirs.
            self.data_key(asset).await
        }
    }

    /// Encrypt `reader` into the asset's blob of `role`, streaming: a multi-gigabyte input
    /// never sits in memory.
    ///
    /// # Errors
    /// [`StorageError`] when the key, the input or the store fails; nothing is left half
    /// written (the multipart upload is aborted).
    #[tracing::instrument(level = "debug", skip_all, fields(asset.id = %asset, blob.role = role.as_str()))]
    pub async fn put_blob<R>(
        &self,
        asset: Uuid,
        role: BlobRole,
        reader: R,
    ) -> Result<BlobInfo, StorageError>
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let key = self.data_key_or_create(asset).await?;
        let kek = self.keks.current();
        let header = Header::new(self.segment_size, &kek.id, kek.version)?;
        let cipher = SegmentCipher::new(&key, header, asset, role);
        let upload = self
            .store
            .put_multipart(&Object::Blob(asset, role).path())
            .await?;
        let mut writer = WriteMultipart::new(upload);
        let mut chunks = std::pin::pin!(blob_stream::encrypt_stream(cipher, reader));
        let (mut stored, mut header_len) = (0u64, None);
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(chunk) => {
                    header_len.get_or_insert(chunk.len() as u64);
                    stored += chunk.len() as u64;
                    writer.wait_for_capacity(4).await?;
                    writer.put(chunk);
                }
                Err(e) => {
                    writer.abort().await?;
                    return Err(e.into());
                }
            }
        }
        writer.finish().await?;
        let segments_and_header = header_len.unwrap_or(0);
        let body = stored - segments_and_header;
        let segments = body
            .div_ceil(u64::from(self.segment_size) + envelope::TAG_LEN as u64)
            .max(1);
        Ok(BlobInfo {
            plaintext_bytes: body - segments * envelope::TAG_LEN as u64,
            stored_bytes: stored,
        })
    }

    /// Open the asset's blob of `role`: its key, header and layout, read once (one ranged GET
    /// of the header bytes, which also tells the size), for its length, ranges or the whole
    /// stream.
    ///
    /// # Errors
    /// [`StorageError::Erased`] after shredding; [`StorageError::NotFound`]; a header that
    /// does not parse.
    #[tracing::instrument(level = "debug", skip_all, fields(asset.id = %asset, blob.role = role.as_str()))]
    pub async fn open_blob(&self, asset: Uuid, role: BlobRole) -> Result<OpenBlob, StorageError> {
        let key = self.data_key(asset).await?;
        let path = Object::Blob(asset, role).path();
        let opts = GetOptions {
            range: Some(GetRange::Bounded(0..Header::MAX_LEN as u64)),
            ..Default::default()
        };
        let got = self
            .store
            .get_opts(&path, opts)
            .await
            .map_err(|e| not_found(e, &path))?;
        let size = got.meta.size;
        let header = Header::decode(&got.bytes().await?)?;
        let layout = Layout::of(&header, size)?;
        Ok(OpenBlob {
            store: self.store.clone(),
            key,
            path,
            asset,
            role,
            header,
            layout,
            stored_len: size,
        })
    }

    /// Decrypt the asset's blob of `role` as a stream of plaintext chunks; also returns its
    /// plaintext length.
    ///
    /// # Errors
    /// As [`Storage::open_blob`]; a chunk of the stream fails with
    /// [`EnvelopeError::Tampered`] when the blob was altered.
    pub async fn get_blob(
        &self,
        asset: Uuid,
        role: BlobRole,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, StorageError>>), StorageError> {
        let blob = self.open_blob(asset, role).await?;
        Ok((blob.plaintext_len(), blob.stream().await?))
    }

    /// Plaintext bytes `range` of the asset's blob of `role`, reading only the segments that
    /// cover it.
    ///
    /// # Errors
    /// As [`Storage::open_blob`], and [`EnvelopeError::RangeOutOfBounds`].
    pub async fn get_range(
        &self,
        asset: Uuid,
        role: BlobRole,
        range: Range<u64>,
    ) -> Result<Bytes, StorageError> {
        self.open_blob(asset, role).await?.range(range).await
    }

    /// Crypto-shred: record the erasure, then delete the wrapped data key. Every blob of the
    /// asset is unreadable from then on. Idempotent.
    ///
    /// # Errors
    /// [`StorageError::Store`] when the store fails; run it again.
    #[tracing::instrument(level = "debug", skip_all, fields(asset.id = %asset))]
    pub async fn shred(&self, asset: Uuid) -> Result<(), StorageError> {
        self.store
            .put(
                &Object::Erased(asset).path(),
                PutPayload::from_static(b"erased"),
            )
            .await?;
        match self.store.delete(&Object::DataKey(asset).path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Re-wrap every data key not yet under the current KEK version; blobs are not touched.
    /// Safe to interrupt and run again: each key is rewritten whole, and keys already under
    /// the current version are skipped. A key erased while this runs stays erased.
    ///
    /// # Errors
    /// [`StorageError`] on the first key that cannot be read, unwrapped or written.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn rotate_kek(&self) -> Result<Rotation, StorageError> {
        let current = self.keks.current();
        let mut done = Rotation::default();
        let mut listing = self.store.list(Some(&Object::DataKeys.path()));
        while let Some(meta) = listing.try_next().await? {
            let Some(asset) = meta
                .location
                .filename()
                .and_then(|f| Uuid::parse_str(f).ok())
            else {
                continue;
            };
            let Some(wrapped) = self.wrapped_key(asset).await? else {
                continue;
            };
            if wrapped.kek_id == current.id && wrapped.kek_version == current.version {
                done.already_current += 1;
                continue;
            }
            let key = self.keks.unwrap(asset, &wrapped)?;
            let rewrapped = self.keks.wrap(asset, &key)?;
            let json = serde_json::to_vec(&rewrapped)
                .map_err(|_| StorageError::Corrupt("wrapped key".into()))?;
            self.store
                .put(&Object::DataKey(asset).path(), json.into())
                .await?;
            if self.is_erased(asset).await? {
                // Shredded between our read and write: shred again.
                self.shred(asset).await?;
                done.erased_meanwhile += 1;
            } else {
                done.rewrapped += 1;
            }
        }
        Ok(done)
    }

    /// The asset's events in sequence order.
    ///
    /// # Errors
    /// [`StorageError`] when the store fails or an event does not parse.
    #[tracing::instrument(level = "debug", skip_all, fields(asset.id = %asset))]
    pub async fn events(&self, asset: Uuid) -> Result<Vec<SignedEvent>, StorageError> {
        self.read_log(&Object::Events(asset).path()).await
    }

    /// The keys of a log's records, in sequence order (sequence numbers are zero-padded).
    async fn log_paths(&self, prefix: &Path) -> Result<Vec<Path>, StorageError> {
        let mut paths: Vec<Path> = self
            .store
            .list(Some(prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await?;
        paths.sort();
        Ok(paths)
    }

    async fn read_record<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<T, StorageError> {
        let bytes = self.store.get(path).await?.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|_| StorageError::Corrupt(path.to_string()))
    }

    /// Every record under `prefix`, in sequence order.
    async fn read_log<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &Path,
    ) -> Result<Vec<T>, StorageError> {
        let mut records = Vec::new();
        for path in self.log_paths(prefix).await? {
            records.push(self.read_record(&path).await?);
        }
        Ok(records)
    }

    /// The last record under `prefix`: what an append follows (one GET, not the whole log).
    async fn last_record<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &Path,
    ) -> Result<Option<T>, StorageError> {
        match self.log_paths(prefix).await?.last() {
            Some(path) => self.read_record(path).await.map(Some),
            None => Ok(None),
        }
    }

    /// The audit log in sequence order.
    ///
    /// # Errors
    /// [`StorageError`] when the store fails or an entry does not parse.
    pub async fn audit_log(&self) -> Result<Vec<SignedAuditEntry>, StorageError> {
        self.read_log(&Object::AuditLog.path()).await
    }

    /// Append a privileged action to the audit log, signed by `signer`, create-only per
    /// sequence number (of two concurrent writers the loser re-reads and appends after).
    ///
    /// # Errors
    /// [`StorageError::Contended`] after losing too many races in a row; store failures.
    #[tracing::instrument(level = "debug", skip_all, fields(audit.action = record.action.as_str()))]
    pub async fn append_audit(
        &self,
        signer: &Signer,
        record: AuditRecord,
    ) -> Result<SignedAuditEntry, StorageError> {
        let mut last = self.last_record(&Object::AuditLog.path()).await?;
        for _ in 0..APPEND_RETRIES {
            let next = audit::sign_next(signer, last.as_ref(), now_ms(), record.clone());
            let path = Object::AuditEntry(next.entry.seq).path();
            if self.put_json(&path, &next, true).await? {
                return Ok(next);
            }
            last = self.last_record(&Object::AuditLog.path()).await?;
        }
        Err(StorageError::Contended("the audit log".into()))
    }

    /// Append an event to the asset's log, signed by `signer`. Each sequence number is written
    /// create-only, so of two concurrent writers exactly one wins it; the loser re-reads the
    /// log and appends after the winner.
    ///
    /// # Errors
    /// [`StorageError::Contended`] after losing too many races in a row; store failures.
    #[tracing::instrument(level = "debug", skip_all, fields(asset.id = %asset, event = what.name().as_str()))]
    pub async fn append_event(
        &self,
        asset: Uuid,
        signer: &Signer,
        what: EventKind,
    ) -> Result<SignedEvent, StorageError> {
        let mut last = self.last_record(&Object::Events(asset).path()).await?;
        for _ in 0..APPEND_RETRIES {
            let next = signer.sign_next(asset, last.as_ref(), now_ms(), what.clone());
            if self
                .put_json(&Object::Event(asset, next.event.seq).path(), &next, true)
                .await?
            {
                return Ok(next);
            }
            last = self.last_record(&Object::Events(asset).path()).await?;
        }
        Err(StorageError::Contended(format!("asset {asset}")))
    }
}

/// A blob whose key and header are read: see [`Storage::open_blob`].
pub struct OpenBlob {
    store: Arc<dyn ObjectStore>,
    key: DataKey,
    path: Path,
    asset: Uuid,
    role: BlobRole,
    header: Header,
    layout: Layout,
    stored_len: u64,
}

impl OpenBlob {
    pub fn plaintext_len(&self) -> u64 {
        self.layout.plaintext_len
    }

    /// Plaintext bytes `range`, reading only the segments that cover it.
    ///
    /// # Errors
    /// [`EnvelopeError::RangeOutOfBounds`]; [`EnvelopeError::Tampered`]; store failures.
    pub async fn range(&self, range: Range<u64>) -> Result<Bytes, StorageError> {
        let (segments, stored) = self.layout.segments_for(&range)?;
        let bytes = self.store.get_range(&self.path, stored).await?;
        let cipher = SegmentCipher::new(&self.key, self.header.clone(), self.asset, self.role);
        let plain = cipher.decrypt_range(&self.layout, segments, &bytes, range)?;
        Ok(Bytes::from(plain))
    }

    /// The whole plaintext as a stream of chunks.
    ///
    /// # Errors
    /// Store failures; a chunk fails with [`EnvelopeError::Tampered`] when the blob was altered.
    pub async fn stream(
        self,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        let got = self
            .store
            .get(&self.path)
            .await
            .map_err(|e| not_found(e, &self.path))?;
        Ok(blob_stream::decrypt_stream(
            self.key,
            self.asset,
            self.role,
            self.stored_len,
            got.into_stream(),
        )
        .map_err(StorageError::from)
        .boxed())
    }
}

/// Small JSON records: consents, API keys, indexes, idempotency claims.
impl Storage {
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<Option<T>, StorageError> {
        match self.store.get(path).await {
            Ok(got) => {
                let bytes = got.bytes().await?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|_| StorageError::Corrupt(path.to_string()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Write `value` at `path`; create-only answers `false` when the object already exists
    /// (the one create-only put: events, wrapped keys, API keys, idempotency claims).
    pub(crate) async fn put_json<T: serde::Serialize>(
        &self,
        path: &Path,
        value: &T,
        create_only: bool,
    ) -> Result<bool, StorageError> {
        let json =
            serde_json::to_vec(value).map_err(|_| StorageError::Corrupt(path.to_string()))?;
        let mode = if create_only {
            PutMode::Create
        } else {
            PutMode::Overwrite
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self.store.put_opts(path, json.into(), opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn list_ids(&self, prefix: &Path) -> Result<Vec<Uuid>, StorageError> {
        let metas: Vec<_> = self.store.list(Some(prefix)).try_collect().await?;
        let mut ids: Vec<Uuid> = metas
            .iter()
            .filter_map(|m| m.location.filename().and_then(|f| Uuid::parse_str(f).ok()))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// # Errors
    /// Store failures; [`StorageError::Corrupt`] when the record does not parse.
    pub async fn consent(&self, id: Uuid) -> Result<Option<Consent>, StorageError> {
        self.get_json(&Object::Consent(id).path()).await
    }

    /// Write a consent record (whole: a withdrawal rewrites it with `withdrawn_at` set).
    ///
    /// # Errors
    /// Store failures.
    pub async fn put_consent(&self, consent: &Consent) -> Result<(), StorageError> {
        self.put_json(&Object::Consent(consent.id).path(), consent, false)
            .await
            .map(|_| ())
    }

    /// # Errors
    /// Store failures; [`StorageError::Corrupt`].
    pub async fn api_key(&self, id: &str) -> Result<Option<KeyRecord>, StorageError> {
        if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        self.get_json(&Object::ApiKey(id).path()).await
    }

    /// Store a new key record, create-only.
    ///
    /// # Errors
    /// Store failures; [`StorageError::Corrupt`] if the id is taken (64 random bits: never).
    pub async fn put_api_key(&self, record: &KeyRecord) -> Result<(), StorageError> {
        let path = Object::ApiKey(&record.id).path();
        match self.put_json(&path, record, true).await? {
            true => Ok(()),
            false => Err(StorageError::Corrupt(path.to_string())),
        }
    }

    /// Record that `asset` belongs to `tenant` and was uploaded under `consent`. Idempotent.
    ///
    /// # Errors
    /// Store failures.
    pub async fn index_asset(
        &self,
        tenant: &str,
        consent: Uuid,
        asset: Uuid,
    ) -> Result<(), StorageError> {
        for key in [
            Object::TenantAsset(tenant, asset),
            Object::ConsentAsset(consent, asset),
        ] {
            self.store.put(&key.path(), PutPayload::default()).await?;
        }
        Ok(())
    }

    /// The assets of a tenant, in id order.
    ///
    /// # Errors
    /// Store failures.
    pub async fn tenant_assets(&self, tenant: &str) -> Result<Vec<Uuid>, StorageError> {
        self.list_ids(&Object::TenantAssets(tenant).path()).await
    }

    /// The assets uploaded under a consent, in id order.
    ///
    /// # Errors
    /// Store failures.
    pub async fn consent_assets(&self, consent: Uuid) -> Result<Vec<Uuid>, StorageError> {
        self.list_ids(&Object::ConsentAssets(consent).path()).await
    }

    /// Claim an Idempotency-Key (already hashed by the caller) for `record`, or return the
    /// record that holds it.
    ///
    /// # Errors
    /// Store failures.
    pub async fn claim_idempotency(
        &self,
        tenant: &str,
        key_sha256: &str,
        record: &IdempotencyRecord,
    ) -> Result<Claim<IdempotencyRecord>, StorageError> {
        let path = Object::Idempotency(tenant, key_sha256).path();
        // A claim freed between the two calls (its upload failed) is claimed again.
        for _ in 0..APPEND_RETRIES {
            if self.put_json(&path, record, true).await? {
                return Ok(Claim::Created);
            }
            if let Some(existing) = self.get_json(&path).await? {
                return Ok(Claim::Existing(existing));
            }
        }
        Err(StorageError::Contended(path.to_string()))
    }

    /// Free an Idempotency-Key whose upload failed before recording anything, so that the
    /// client's retry starts afresh instead of waiting out the claim's lease. Idempotent.
    ///
    /// # Errors
    /// Store failures.
    pub async fn release_idempotency(
        &self,
        tenant: &str,
        key_sha256: &str,
    ) -> Result<(), StorageError> {
        self.delete(&Object::Idempotency(tenant, key_sha256).path())
            .await
    }

    /// Delete one blob of an asset (a derivative purged on withdrawal, or an upload that
    /// never got its `received` event). Idempotent.
    ///
    /// # Errors
    /// Store failures.
    pub async fn delete_blob(&self, asset: Uuid, role: BlobRole) -> Result<(), StorageError> {
        match self.store.delete(&Object::Blob(asset, role).path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Forget an upload that never got its `received` event: delete its original and its
    /// data key, leaving no tombstone (an Idempotency-Key retry may use the id again).
    /// Idempotent.
    ///
    /// # Errors
    /// Store failures.
    pub async fn forget_upload(&self, asset: Uuid) -> Result<(), StorageError> {
        self.delete_blob(asset, BlobRole::Original).await?;
        match self.store.delete(&Object::DataKey(asset).path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Append `what` right after `last` (the whole log as the caller saw it ends there), or
    /// not at all: `None` when another writer appended first. This is what makes a step
    /// happen once: a caller that loses re-reads the log and decides again.
    ///
    /// # Errors
    /// Store failures.
    #[tracing::instrument(level = "debug", skip_all, fields(asset.id = %asset, event = what.name().as_str()))]
    pub async fn append_after(
        &self,
        asset: Uuid,
        signer: &Signer,
        last: Option<&SignedEvent>,
        what: EventKind,
    ) -> Result<Option<SignedEvent>, StorageError> {
        let next = signer.sign_next(asset, last, now_ms(), what);
        let path = Object::Event(asset, next.event.seq).path();
        Ok(self.put_json(&path, &next, true).await?.then_some(next))
    }
}

/// A subject's reference as it appears in keys: SHA-256 of tenant and reference, so a key
/// never holds the reference itself.
fn subject_hash(tenant: &str, subject_ref: &str) -> String {
    asepsis_common::sha256_hex(format!("{tenant}\0{subject_ref}").as_bytes())
}

/// Who holds a subject's lock, until when.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct LockRecord {
    holder: Uuid,
    until_ms: u64,
}

/// Subjects (by consents' `subject_ref`), their locks, and the leases of scheduled jobs.
impl Storage {
    /// Record that `consent` is one of its subject's. Idempotent; written before the consent
    /// record, so every stored consent can be found by its subject.
    ///
    /// # Errors
    /// Store failures.
    pub async fn index_subject_consent(&self, consent: &Consent) -> Result<(), StorageError> {
        let subject = subject_hash(&consent.tenant, &consent.terms.subject_ref);
        let key = Object::SubjectConsent(&consent.tenant, &subject, consent.id);
        self.store.put(&key.path(), PutPayload::default()).await?;
        Ok(())
    }

    /// The ids of a tenant's subject's consents, in id order (an erased subject's too: the
    /// index outlives the scrubbed records).
    ///
    /// # Errors
    /// Store failures.
    pub async fn subject_consents(
        &self,
        tenant: &str,
        subject_ref: &str,
    ) -> Result<Vec<Uuid>, StorageError> {
        let subject = subject_hash(tenant, subject_ref);
        self.list_ids(&Object::SubjectConsents(tenant, &subject).path())
            .await
    }

    /// Take the subject's lock for `ttl_ms` as `holder`: `false` while another holder's lock
    /// has not expired. An expired lock (its holder died) is taken over.
    ///
    /// # Errors
    /// Store failures.
    pub async fn lock_subject(
        &self,
        tenant: &str,
        subject_ref: &str,
        holder: Uuid,
        ttl_ms: u64,
    ) -> Result<bool, StorageError> {
        let subject = subject_hash(tenant, subject_ref);
        self.lock(
            &Object::SubjectLock(tenant, &subject).path(),
            holder,
            ttl_ms,
        )
        .await
    }

    /// Release the subject's lock. Idempotent.
    ///
    /// # Errors
    /// Store failures.
    pub async fn unlock_subject(
        &self,
        tenant: &str,
        subject_ref: &str,
    ) -> Result<(), StorageError> {
        let subject = subject_hash(tenant, subject_ref);
        self.delete(&Object::SubjectLock(tenant, &subject).path())
            .await
    }

    pub(crate) async fn lock(
        &self,
        path: &Path,
        holder: Uuid,
        ttl_ms: u64,
    ) -> Result<bool, StorageError> {
        let record = LockRecord {
            holder,
            until_ms: now_ms().saturating_add(ttl_ms),
        };
        if self.put_json(path, &record, true).await? {
            return Ok(true);
        }
        match self.get_json::<LockRecord>(path).await? {
            Some(held) if held.holder != holder && held.until_ms > now_ms() => Ok(false),
            _ => {
                self.put_json(path, &record, false).await?;
                Ok(true)
            }
        }
    }

    /// Delete an object; one already gone is no error.
    pub(crate) async fn delete(&self, path: &Path) -> Result<(), StorageError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Claim scheduled job `job`'s run for `period` (create-only): of all workers, exactly one
    /// gets `true`.
    ///
    /// # Errors
    /// Store failures.
    pub async fn claim_lease(
        &self,
        job: &str,
        period: u64,
        holder: Uuid,
    ) -> Result<bool, StorageError> {
        let record = LockRecord {
            holder,
            until_ms: now_ms(),
        };
        self.put_json(&Object::Lease(job, period).path(), &record, true)
            .await
    }

    /// Every asset of every tenant, as `(tenant, asset)`.
    ///
    /// # Errors
    /// Store failures.
    pub async fn all_assets(&self) -> Result<Vec<(String, Uuid)>, StorageError> {
        let metas: Vec<_> = self
            .store
            .list(Some(&Object::AllTenantAssets.path()))
            .try_collect()
            .await?;
        let mut all: Vec<(String, Uuid)> = metas
            .iter()
            .filter_map(|m| {
                let mut parts = m.location.parts();
                let (_, _, tenant, asset) =
                    (parts.next(), parts.next(), parts.next()?, parts.next()?);
                Some((
                    tenant.as_ref().to_owned(),
                    Uuid::parse_str(asset.as_ref()).ok()?,
                ))
            })
            .collect();
        all.sort();
        Ok(all)
    }
}

fn not_found(e: object_store::Error, path: &Path) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound(path.to_string()),
        other => other.into(),
    }
}
