//! Take-downs in the store: each one's public record (plain JSON of ids, states and times),
//! the claimant's and the counter-noticers' personal data sealed as blobs under the
//! take-down's own data key (so a KEK rotation rewraps it like any other), a lock per
//! take-down, the block list of perceptual hashes, and disabling an API key. The rules are
//! `asepsis_common::takedown`'s; nothing here logs a record's contents.

use asepsis_common::apikey::Disabled;
use asepsis_common::envelope::BlobRole;
use asepsis_common::takedown::Takedown;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use uuid::Uuid;

use crate::storage::{Object, Storage, StorageError};

/// Bytes of one stored perceptual hash.
pub const HASH_BYTES: usize = 32;

impl Storage {
    /// # Errors
    /// Store failures; [`StorageError::Corrupt`].
    pub async fn takedown(&self, id: Uuid) -> Result<Option<Takedown>, StorageError> {
        self.get_json(&Object::Takedown(id).path()).await
    }

    /// Write a take-down's public record (whole).
    ///
    /// # Errors
    /// Store failures.
    pub async fn put_takedown(&self, takedown: &Takedown) -> Result<(), StorageError> {
        self.put_json(&Object::Takedown(takedown.id).path(), takedown, false)
            .await
            .map(|_| ())
    }

    /// Every take-down, oldest first.
    ///
    /// # Errors
    /// Store failures; [`StorageError::Corrupt`].
    pub async fn takedowns(&self) -> Result<Vec<Takedown>, StorageError> {
        let mut all = Vec::new();
        for id in self.list_ids(&Object::Takedowns.path()).await? {
            if let Some(t) = self.takedown(id).await? {
                all.push(t);
            }
        }
        all.sort_by_key(|t| (t.received_at, t.id));
        Ok(all)
    }

    /// Take the take-down's lock for `ttl_ms` (as [`Storage::lock_subject`]).
    ///
    /// # Errors
    /// Store failures.
    pub async fn lock_takedown(
        &self,
        id: Uuid,
        holder: Uuid,
        ttl_ms: u64,
    ) -> Result<bool, StorageError> {
        self.lock(&Object::TakedownLock(id).path(), holder, ttl_ms)
            .await
    }

    /// # Errors
    /// Store failures.
    pub async fn unlock_takedown(&self, id: Uuid) -> Result<(), StorageError> {
        self.delete(&Object::TakedownLock(id).path()).await
    }

    /// Seal `value` (JSON) as the blob `role` of `id`, under `id`'s data key.
    ///
    /// # Errors
    /// Store and key failures.
    pub async fn put_sealed<T: serde::Serialize>(
        &self,
        id: Uuid,
        role: BlobRole,
        value: &T,
    ) -> Result<(), StorageError> {
        let json = serde_json::to_vec(value)
            .map_err(|_| StorageError::Corrupt(format!("blobs/{id}/{}", role.as_str())))?;
        self.put_blob(id, role, std::io::Cursor::new(json)).await?;
        Ok(())
    }

    /// Open what [`Storage::put_sealed`] sealed; `None` when there is none.
    ///
    /// # Errors
    /// Store and key failures; [`StorageError::Corrupt`].
    pub async fn sealed<T: serde::de::DeserializeOwned>(
        &self,
        id: Uuid,
        role: BlobRole,
    ) -> Result<Option<T>, StorageError> {
        let stream = match self.get_blob(id, role).await {
            Ok((_, stream)) => stream,
            Err(StorageError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
        serde_json::from_slice(&chunks.concat())
            .map(Some)
            .map_err(|_| StorageError::Corrupt(format!("blobs/{id}/{}", role.as_str())))
    }

    /// Put `asset`'s perceptual hashes on the block list under `takedown`.
    ///
    /// # Errors
    /// Store failures.
    pub async fn block(
        &self,
        takedown: Uuid,
        asset: Uuid,
        hashes: &[[u8; HASH_BYTES]],
    ) -> Result<(), StorageError> {
        let bytes: Vec<u8> = hashes.concat();
        self.object_store()
            .put(&Object::BlockEntry(takedown, asset).path(), bytes.into())
            .await?;
        Ok(())
    }

    /// Take `asset`'s hashes under `takedown` off the block list (it was restored).
    ///
    /// # Errors
    /// Store failures.
    pub async fn unblock(&self, takedown: Uuid, asset: Uuid) -> Result<(), StorageError> {
        self.delete(&Object::BlockEntry(takedown, asset).path())
            .await
    }

    /// The block list's entries, as `(take-down, asset)`.
    ///
    /// # Errors
    /// Store failures.
    pub async fn block_entries(&self) -> Result<Vec<(Uuid, Uuid)>, StorageError> {
        let metas: Vec<_> = self
            .object_store()
            .list(Some(&Object::BlockList.path()))
            .try_collect()
            .await?;
        let mut entries: Vec<(Uuid, Uuid)> = metas
            .iter()
            .filter_map(|m| {
                let mut parts = m.location.parts().skip(1);
                let takedown = Uuid::parse_str(parts.next()?.as_ref()).ok()?;
                let asset = Uuid::parse_str(parts.next()?.as_ref()).ok()?;
                Some((takedown, asset))
            })
            .collect();
        entries.sort();
        Ok(entries)
    }

    /// The hashes of one block-list entry (none when it was removed meanwhile).
    ///
    /// # Errors
    /// Store failures; [`StorageError::Corrupt`] when its length is not a whole number of
    /// hashes.
    pub async fn blocked_hashes(
        &self,
        takedown: Uuid,
        asset: Uuid,
    ) -> Result<Vec<[u8; HASH_BYTES]>, StorageError> {
        let path = Object::BlockEntry(takedown, asset).path();
        let bytes = match self.object_store().get(&path).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let chunks = bytes.chunks_exact(HASH_BYTES);
        if !chunks.remainder().is_empty() {
            return Err(StorageError::Corrupt(path.to_string()));
        }
        Ok(chunks
            .filter_map(|c| <[u8; HASH_BYTES]>::try_from(c).ok())
            .collect())
    }

    /// Disable an API key: it is refused from then on, with `disabled.reason`. `false` when
    /// there is no such key or it was disabled already.
    ///
    /// # Errors
    /// Store failures.
    pub async fn disable_api_key(
        &self,
        id: &str,
        disabled: Disabled,
    ) -> Result<bool, StorageError> {
        let Some(mut record) = self.api_key(id).await? else {
            return Ok(false);
        };
        if record.disabled.is_some() {
            return Ok(false);
        }
        record.disabled = Some(disabled);
        self.put_json(&Object::ApiKey(id).path(), &record, false)
            .await?;
        Ok(true)
    }
}
