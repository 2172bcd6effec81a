//! Import batches in the store: each batch's record and the index of the assets uploaded into
//! it. The rules (what a batch may be, how its assets are tallied) are
//! `asepsis_common::batch`'s; a label is the tenant's text and is never logged.

use asepsis_common::batch::Batch;
use object_store::{ObjectStoreExt, PutPayload};
use uuid::Uuid;

use crate::storage::{Object, Storage, StorageError};

impl Storage {
    /// Store a new batch, create-only.
    ///
    /// # Errors
    /// Store failures; [`StorageError::Corrupt`] if the id is taken (a random UUID: never).
    pub async fn put_batch(&self, batch: &Batch) -> Result<(), StorageError> {
        let path = Object::Batch(batch.id).path();
        match self.put_json(&path, batch, true).await? {
            true => Ok(()),
            false => Err(StorageError::Corrupt(path.to_string())),
        }
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
