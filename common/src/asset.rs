//! One asset's log as the services work with it: read it, ask it questions, append to it
//! only where it was read (so each step happens once), and publish under the consent rules.
//!
//! Both the worker and the reviewer's approval publish through [`AssetLog::publish`], which
//! re-checks the consent at that moment. Never logs event contents.

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::consent::{Consent, Unusable};
use crate::notify::Notification;
use crate::provenance::{AssetState, EventKind, SignedEvent, Signer, fold};
use crate::storage::{Storage, StorageError};

/// What ingest recorded when the asset arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub tenant: String,
    pub consent_id: Uuid,
    pub format: String,
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
                format: format.clone(),
            }),
            _ => None,
        })
    }

    pub fn state(&self) -> Option<AssetState> {
        fold(&self.events)
    }

    /// Does the log hold an event of this name (`stripped`, `published`, ...)?
    pub fn has(&self, name: &str) -> bool {
        self.events.iter().any(|e| e.event.what.name() == name)
    }

    /// The latest event of this name.
    pub fn last_of(&self, name: &str) -> Option<&EventKind> {
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
    /// `hold` verdict naming why. Exactly one `published` event per asset, whoever calls.
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
        if self.has("published") {
            return Ok(Published::Already);
        }
        let (what, result) = match consent.check_for_publication(now) {
            Ok(()) => (EventKind::Published, Published::Now),
            Err(why) => (
                EventKind::Verdict {
                    decision: "hold".into(),
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

    /// The notification that announces where the asset now is.
    pub fn notification(&self) -> Option<Notification> {
        let last = self.events.last()?;
        let event = match self.state()? {
            AssetState::Published => "published",
            AssetState::Held => "held",
            AssetState::Rejected => "rejected",
            AssetState::Withdrawn => "withdrawn",
            _ => last.event.what.name(),
        };
        Some(Notification {
            asset_id: self.asset,
            tenant: self.arrival()?.tenant,
            event: event.into(),
            seq: last.event.seq,
            event_hash: last.hash.clone(),
        })
    }

    /// What `GET /v1/assets/{id}` shows: state, decision and the names of what was removed.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            id: self.asset,
            state: self.state(),
            ..Summary::default()
        };
        for e in &self.events {
            match &e.event.what {
                EventKind::Received { format, .. } => s.format = Some(format.clone()),
                EventKind::Stripped {
                    removed,
                    gps_in_original,
                    ..
                } => {
                    s.removed.clone_from(removed);
                    s.gps_in_original = Some(*gps_in_original);
                }
                EventKind::Scanned { verdict, faces, .. } => {
                    s.face_scan = Some(verdict.clone());
                    s.faces = Some(*faces);
                }
                EventKind::Redacted { faces, .. } => s.redacted_faces = Some(*faces),
                EventKind::Verdict { decision, reason } => {
                    s.verdict = Some(decision.clone());
                    s.reason = Some(reason.clone());
                }
                EventKind::Reviewed { decision, .. } => {
                    s.verdict = Some(format!("reviewer: {decision}"));
                }
                EventKind::Rejected { reason } => {
                    s.verdict = Some("reject".into());
                    s.reason = Some(reason.clone());
                }
                _ => {}
            }
        }
        if s.state == Some(AssetState::Published) {
            s.media_url = Some(format!("/media/{}", self.asset));
        }
        s
    }
}

/// An asset's status as clients see it. Names of removed metadata, never values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Summary {
    pub id: Uuid,
    /// received, processing, held, published, rejected, withdrawn, erased, restricted,
    /// taken_down
    #[schema(value_type = Option<String>)]
    pub state: Option<AssetState>,
    /// The latest decision: publish, hold, redact, internal, reject.
    pub verdict: Option<String>,
    pub reason: Option<String>,
    pub format: Option<String>,
    /// Names of the metadata items removed (`EXIF:GPSLatitude`, `XMP`, ...).
    pub removed: Vec<String>,
    pub gps_in_original: Option<bool>,
    /// identifiable, uncertain, none or not_scanned.
    pub face_scan: Option<String>,
    pub faces: Option<u32>,
    /// Faces hidden in the published derivative.
    pub redacted_faces: Option<u32>,
    pub media_url: Option<String>,
}
