//! One asset's log as the services work with it: read it, ask it questions, append to it
//! only where it was read (so each step happens once), and publish under the consent rules.
//!
//! Both the worker and the reviewer's approval publish through [`AssetLog::publish`], which
//! re-checks the consent at that moment. Never logs event contents.

use asepsis_common::consent::{Consent, Unusable};
use asepsis_common::media::Format;
use asepsis_common::notify::Notification;
use asepsis_common::policy::Decision;
use asepsis_common::provenance::{AssetState, EventKind, EventName, SignedEvent, Signer, fold};
use time::OffsetDateTime;
use uuid::Uuid;

use asepsis_common::envelope::BlobRole;

use crate::storage::{Storage, StorageError};

/// Appends that lose a race this many times in a row give up.
const APPEND_RETRIES: usize = 64;

/// What ingest recorded when the asset arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub tenant: String,
    pub consent_id: Uuid,
    pub format: Format,
}

#[derive(Debug, Clone)]
pub struct AssetLog {
    pub asset: Uuid,
    pub events: Vec<SignedEvent>,
}

/// The outcome of trying to append where the log was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Yes,
    /// Another writer appended first; re-read and decide again.
    LostRace,
}

/// The outcome of [`AssetLog::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Now,
    Already,
    /// The consent no longer allows it; a `hold` verdict was recorded instead.
    Refused(Unusable),
    LostRace,
}

impl AssetLog {
    /// # Errors
    /// Store failures; unparsable events.
    pub async fn load(storage: &Storage, asset: Uuid) -> Result<Self, StorageError> {
        Ok(Self {
            asset,
            events: storage.events(asset).await?,
        })
    }

    pub fn arrival(&self) -> Option<Arrival> {
        self.events.iter().find_map(|e| match &e.event.what {
            EventKind::Received {
                tenant,
                consent_id,
                format,
                ..
            } => Some(Arrival {
                tenant: tenant.clone(),
                consent_id: *consent_id,
                format: *format,
            }),
            _ => None,
        })
    }

    /// The API key id that uploaded the asset, when recorded.
    pub fn uploader(&self) -> Option<String> {
        self.events.iter().find_map(|e| match &e.event.what {
            EventKind::Received { uploader, .. } => uploader.clone(),
            _ => None,
        })
    }

    /// The import batch the asset was uploaded into, if any.
    pub fn batch(&self) -> Option<Uuid> {
        self.events.iter().find_map(|e| match &e.event.what {
            EventKind::Received { batch_id, .. } => *batch_id,
            _ => None,
        })
    }

    /// The original's perceptual hash, as the worker recorded it.
    pub fn pdq(&self) -> Option<asepsis_common::pdq::Pdq> {
        self.events.iter().find_map(|e| match &e.event.what {
            EventKind::Scanned { pdq, .. } => *pdq,
            _ => None,
        })
    }

    /// Is take-down `id` on the asset and not yet lifted?
    pub fn under_takedown(&self, id: Uuid) -> bool {
        let mut on = false;
        for e in &self.events {
            match e.event.what {
                EventKind::TakenDown { takedown_id } if takedown_id == id => on = true,
                EventKind::Restored { takedown_id } if takedown_id == id => on = false,
                _ => {}
            }
        }
        on
    }

    pub fn state(&self) -> Option<AssetState> {
        fold(&self.events)
    }

    /// Does the log hold an event of this kind?
    pub fn has(&self, name: EventName) -> bool {
        self.events.iter().any(|e| e.event.what.name() == name)
    }

    /// The latest event of this kind.
    pub fn last_of(&self, name: EventName) -> Option<&EventKind> {
        self.events
            .iter()
            .rev()
            .map(|e| &e.event.what)
            .find(|w| w.name() == name)
    }

    /// Append `what` after the last event read.
    ///
    /// # Errors
    /// Store failures.
    pub async fn append(
        &mut self,
        storage: &Storage,
        signer: &Signer,
        what: EventKind,
    ) -> Result<Appended, StorageError> {
        match storage
            .append_after(self.asset, signer, self.events.last(), what)
            .await?
        {
            Some(event) => {
                self.events.push(event);
                Ok(Appended::Yes)
            }
            None => Ok(Appended::LostRace),
        }
    }

    /// Record `published` if the consent allows publication at `now`; otherwise record a
    /// `hold` verdict naming why. One `published` event per publication, whoever calls (an
    /// asset unpublished by a narrowed consent may be published again by a reviewer).
    ///
    /// # Errors
    /// Store failures.
    pub async fn publish(
        &mut self,
        storage: &Storage,
        signer: &Signer,
        consent: &Consent,
        now: OffsetDateTime,
    ) -> Result<Published, StorageError> {
        if self.state() == Some(AssetState::Published) {
            return Ok(Published::Already);
        }
        let (what, result) = match consent.check_for_publication(now) {
            Ok(()) => (EventKind::Published, Published::Now),
            Err(why) => (
                EventKind::Verdict {
                    decision: Decision::Hold,
                    reason: format!("not published: {why}"),
                },
                Published::Refused(why),
            ),
        };
        Ok(match self.append(storage, signer, what).await? {
            Appended::Yes => result,
            Appended::LostRace => Published::LostRace,
        })
    }

    /// Append `what` if `wanted` holds for the log as it is; when another writer appended
    /// first, re-read and decide again. `true` when appended. The log is current afterwards.
    ///
    /// # Errors
    /// Store failures; [`StorageError::Contended`] after too many lost races.
    pub async fn append_if(
        &mut self,
        storage: &Storage,
        signer: &Signer,
        what: EventKind,
        wanted: impl Fn(&AssetLog) -> bool,
    ) -> Result<bool, StorageError> {
        for _ in 0..APPEND_RETRIES {
            if !wanted(self) {
                return Ok(false);
            }
            if self.append(storage, signer, what.clone()).await? == Appended::Yes {
                return Ok(true);
            }
            *self = Self::load(storage, self.asset).await?;
        }
        Err(StorageError::Contended(format!("asset {}", self.asset)))
    }

    /// Erase the asset: append `erased` (once), shred its data key, delete its blobs. What
    /// stays is the signed log of ids and hashes: the proof. Idempotent and safe to repeat
    /// after a crash; `true` when this call recorded the erasure.
    ///
    /// # Errors
    /// Store failures.
    pub async fn erase(
        &mut self,
        storage: &Storage,
        signer: &Signer,
    ) -> Result<bool, StorageError> {
        let erased = self
            .append_if(storage, signer, EventKind::Erased, |log| {
                log.state() != Some(AssetState::Erased)
            })
            .await?;
        // The tombstone first: a worker that stores a blob after this sees it and deletes it.
        storage.shred(self.asset).await?;
        storage.delete_blob(self.asset, BlobRole::Original).await?;
        storage
            .delete_blob(self.asset, BlobRole::Derivative)
            .await?;
        Ok(erased)
    }

    /// Freeze an asset that is waiting to be processed because its consent is restricted,
    /// then read the consent again: if the restriction was lifted meanwhile (and the lift
    /// did not see this asset), release it at once. `true` while it stays frozen.
    ///
    /// # Errors
    /// Store failures.
    pub async fn freeze(
        &mut self,
        storage: &Storage,
        signer: &Signer,
        consent_id: Uuid,
    ) -> Result<bool, StorageError> {
        self.append_if(storage, signer, EventKind::Restricted, |l| {
            matches!(
                l.state(),
                Some(AssetState::Received | AssetState::Processing)
            )
        })
        .await?;
        let restricted = storage
            .consent(consent_id)
            .await?
            .is_some_and(|c| c.restricted_at.is_some());
        if !restricted {
            self.append_if(storage, signer, EventKind::Unrestricted, |l| {
                l.state() == Some(AssetState::Restricted)
            })
            .await?;
        }
        Ok(restricted)
    }

    /// The notification that announces where the asset now is.
    pub fn notification(&self) -> Option<Notification> {
        let last = self.events.last()?;
        let event = match (&last.event.what, self.state()?) {
            // A take-down is announced as such, even on an asset also restricted.
            (EventKind::TakenDown { .. } | EventKind::CounterNoticed { .. }, _) => {
                last.event.what.name().as_str()
            }
            (_, state) => match state {
                AssetState::Published => "published",
                AssetState::Held => "held",
                AssetState::Rejected => "rejected",
                AssetState::Withdrawn => "withdrawn",
                AssetState::Erased => "erased",
                AssetState::Restricted => "restricted",
                _ => last.event.what.name().as_str(),
            },
        };
        Some(Notification {
            asset_id: self.asset,
            tenant: self.arrival()?.tenant,
            event: event.into(),
            seq: last.event.seq,
            event_hash: last.hash.clone(),
            batch_id: self.batch(),
        })
    }
}
