//! Import batches in the store: each batch's record and the index of the assets uploaded into
//! it. The rules (what a batch may be, how its assets are tallied) are
//! `asepsis_common::batch`'s; a label is the tenant's text and is never logged.

use asepsis_common::batch::Batch;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use uuid::Uuid;

use crate::storage::{Object, Storage, StorageError};

impl Storage {
    /// Store a new batch, create-only.
    ///
    /// # Errors
    /// Store failures; [`StorageError::Corrupt`] if the id is taken (a random UUID: never).
    pub async fn put_batch(&self, batch: &Batch) -> Result<(), StorageError> {
        let path = Object::Batch(batch.id).path();
        if !self.put_json(&path, batch, true).await? {
            return Err(StorageError::Corrupt(path.to_string()));
        }
        let ms = u64::try_from(batch.created_at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let index = Object::TenantBatch(&batch.tenant, ms, batch.id).path();
        let create = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .object_store()
            .put_opts(&index, PutPayload::default(), create)
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The tenant's batches created at or after `since_ms`, oldest first: one listing from
    /// that time on (index names sort by time); the records are not read.
    ///
    /// # Errors
    /// Store failures.
    pub async fn batches_since(
        &self,
        tenant: &str,
        since_ms: u64,
    ) -> Result<Vec<Uuid>, StorageError> {
        let prefix = Object::TenantBatches(tenant).path();
        // Every name at `since_ms` or later sorts after `{since_ms - 1:020}-…`.
        let offset = prefix
            .clone()
            .join(format!("{:020}", since_ms.saturating_sub(1)));
        let metas: Vec<_> = self
            .object_store()
            .list_with_offset(Some(&prefix), &offset)
            .try_collect()
            .await?;
        let mut found: Vec<(u64, Uuid)> = metas
            .iter()
            .filter_map(|m| {
                let (ms, id) = m.location.filename()?.split_once('-')?;
                Some((ms.parse().ok()?, Uuid::parse_str(id).ok()?))
            })
            .filter(|(ms, _)| *ms >= since_ms)
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, id)| id).collect())
    }

    /// # Errors
    /// Store failures; [`StorageError::Corrupt`].
    pub async fn batch(&self, id: Uuid) -> Result<Option<Batch>, StorageError> {
        self.get_json(&Object::Batch(id).path()).await
    }

    /// Record that `asset` was uploaded into `batch`. Idempotent.
    ///
    /// # Errors
    /// Store failures.
    pub async fn index_batch_asset(&self, batch: Uuid, asset: Uuid) -> Result<(), StorageError> {
        self.object_store()
            .put(
                &Object::BatchAsset(batch, asset).path(),
                PutPayload::default(),
            )
            .await?;
        Ok(())
    }

    /// The assets uploaded into a batch, in id order.
    ///
    /// # Errors
    /// Store failures.
    pub async fn batch_assets(&self, batch: Uuid) -> Result<Vec<Uuid>, StorageError> {
        self.list_ids(&Object::BatchAssets(batch).path()).await
    }
}
