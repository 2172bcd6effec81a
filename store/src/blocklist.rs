//! The block list as the worker matches uploads against it: every take-down's perceptual
//! hashes (`blocklist/{takedown}/{asset}` in the store) in one multi-index, kept current —
//! each check lists the entries, loads only the new ones and drops the removed (restored)
//! ones. What a match is, is `asepsis_common::pdq`'s.

use std::collections::BTreeSet;

use crate::{Storage, StorageError};
use asepsis_common::pdq::{Hash, Index, MIN_QUALITY, Pdq};
use tokio::sync::Mutex;
use uuid::Uuid;

/// `(take-down, asset)`: one block-list entry.
type Entry = (Uuid, Uuid);

pub struct BlockList {
    storage: Storage,
    loaded: Mutex<Loaded>,
}

#[derive(Default)]
struct Loaded {
    index: Index<Entry>,
    entries: BTreeSet<Entry>,
}

impl BlockList {
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            loaded: Mutex::new(Loaded::default()),
        }
    }

    /// The take-down whose content one of `queries` (hashes of `asset`) matches within
    /// `max_distance`, if any; the block list is brought up to date once. An asset's own entry does not count (it was taken down while it was processed: the
    /// take-down freezes it, and a restore must find it unharmed). A hash below PDQ's quality
    /// floor matches nothing (flat or tiny images).
    ///
    /// # Errors
    /// Store failures (the job is retried: never published unchecked).
    pub async fn matching(
        &self,
        queries: &[Pdq],
        asset: Uuid,
        max_distance: u32,
    ) -> Result<Option<Uuid>, StorageError> {
        let queries: Vec<&Pdq> = queries
            .iter()
            .filter(|p| p.quality >= MIN_QUALITY)
            .collect();
        if queries.is_empty() {
            return Ok(None);
        }
        // Listed under the lock: a caller with an older listing never undoes a newer one.
        let mut loaded = self.loaded.lock().await;
        let current: BTreeSet<Entry> = self.storage.block_entries().await?.into_iter().collect();
        let gone: Vec<Entry> = loaded.entries.difference(&current).copied().collect();
        for entry in gone {
            loaded.index.remove(&entry);
            loaded.entries.remove(&entry);
        }
        let new: Vec<Entry> = current.difference(&loaded.entries).copied().collect();
        for entry in new {
            for bytes in self.storage.blocked_hashes(entry.0, entry.1).await? {
                loaded.index.insert(Hash(bytes), entry);
            }
            loaded.entries.insert(entry);
        }
        Ok(queries.iter().find_map(|pdq| {
            loaded
                .index
                .find(&pdq.hash)
                .filter(|((_, of), distance)| *distance <= max_distance && *of != asset)
                .map(|((takedown, _), _)| *takedown)
        }))
    }
}
