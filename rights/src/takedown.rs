//! DMCA take-downs on the desk: enter a notice (each asset taken down before the answer, its
//! tenant told, its perceptual hashes blocked), a counter-notice (the restore scheduled), a
//! court action (the restore cancelled), and the scheduled run that restores what is due,
//! upholds what nobody countered, and disables repeat infringers' keys.
//!
//! Every request holds the take-down's lock and is audited with ids only. Steps are
//! idempotent and ordered so that a request cut short finishes on the next scheduled run: the
//! sealed claimant record and the public record first, then each asset. The claimant's name
//! and contact are sealed (`blobs/{id}/notice`) and never logged; the rules are
//! `asepsis_common::takedown`'s.

use std::collections::BTreeSet;

use asepsis_common::apikey::Disabled;
use asepsis_common::audit::AuditAction;
use asepsis_common::envelope::BlobRole;
use asepsis_common::faces;
use asepsis_common::job::Job;
use asepsis_common::pdq;
use asepsis_common::provenance::{AssetState, EventKind};
use asepsis_common::takedown::{
    self, CounterForm, CounterParty, Counts, NoticeForm, NoticedAsset, Status, StepKind, Takedown,
    TakedownError,
};
use asepsis_store::asset::AssetLog;
use futures::TryStreamExt;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Actor, Desk, RightsError};

/// What entering a notice did.
#[derive(Debug, Clone, Serialize)]
pub struct Entered {
    pub id: Uuid,
    pub assets: usize,
    /// Perceptual hashes put on the block list.
    pub blocked_hashes: usize,
}

/// What a counter-notice did.
#[derive(Debug, Clone, Serialize)]
pub struct Countered {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub restore_due: OffsetDateTime,
    pub changed: bool,
}

/// What a scheduled run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Run {
    pub restored: usize,
    /// Restored but held: the consent no longer allowed publication.
    pub restored_held: usize,
    pub upheld: usize,
    pub keys_disabled: Vec<String>,
    /// Notices a crash left half entered, finished now.
    pub finished: usize,
}

/// Take-downs and the upheld counts, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub takedowns: Vec<Summary>,
    pub upheld: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub id: Uuid,
    pub status: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    pub assets: Vec<NoticedAsset>,
}

impl From<TakedownError> for RightsError {
    fn from(e: TakedownError) -> Self {
        match e {
            TakedownError::NotFound => RightsError::NotFound,
            TakedownError::Conflict(why) => RightsError::Conflict(why),
            other => RightsError::Conflict(other.to_string()),
        }
    }
}

/// Which take-downs a caller may see: `None` all (an operator), or one tenant's assets.
pub type Scope<'a> = Option<&'a str>;

/// The record as `scope` may see it: only its own assets, or not at all.
fn scoped(mut t: Takedown, scope: Scope<'_>) -> Option<Takedown> {
    if let Some(tenant) = scope {
        t.assets.retain(|a| a.tenant == tenant);
        if t.assets.is_empty() {
            return None;
        }
        let mine: BTreeSet<Uuid> = t.assets.iter().map(|a| a.asset).collect();
        t.timeline.retain_mut(|step| match &mut step.what {
            StepKind::Notified { tenants } => {
                tenants.retain(|t| t == tenant);
                true
            }
            StepKind::CounterNoticed { tenant: t, .. } => t == tenant,
            StepKind::Restored { asset, .. } => mine.contains(asset),
            _ => true,
        });
    }
    Some(t)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

impl Desk {
    /// Run `op` holding take-down `id`'s lock (released whatever the outcome).
    async fn with_lock<T>(
        &self,
        id: Uuid,
        op: impl Future<Output = Result<T, RightsError>>,
    ) -> Result<T, RightsError> {
        let ttl = u64::try_from(self.lock_ttl.as_millis()).unwrap_or(u64::MAX);
        if !self.storage.lock_takedown(id, Uuid::new_v4(), ttl).await? {
            return Err(RightsError::Busy);
        }
        let result = op.await;
        let unlocked = self.storage.unlock_takedown(id).await;
        let value = result?;
        unlocked?;
        Ok(value)
    }

    /// Run `op` on take-down `id`'s record, holding its lock.
    async fn with_takedown<T, F, Fut>(&self, id: Uuid, op: F) -> Result<T, RightsError>
    where
        F: FnOnce(Takedown) -> Fut,
        Fut: Future<Output = Result<T, RightsError>>,
    {
        self.with_lock(id, async {
            match self.storage.takedown(id).await? {
                Some(t) => op(t).await,
                None => Err(RightsError::NotFound),
            }
        })
        .await
    }

    /// Enter a notice: every named asset is taken down (`/media` answers 404 from then on),
    /// its tenant told by an `asset.taken_down` event, and its hashes blocked. `scope` limits
    /// the assets a privacy officer may name to its tenant's. `id` is the new take-down's (a
    /// caller's retry passes the same one).
    ///
    /// # Errors
    /// [`RightsError::Invalid`] naming a missing element or an unknown asset; store failures.
    pub async fn take_down(
        &self,
        actor: &Actor,
        form: NoticeForm,
        scope: Scope<'_>,
        id: Uuid,
    ) -> Result<Entered, RightsError> {
        let notice = form.validate().map_err(RightsError::Invalid)?;
        let mut assets = Vec::with_capacity(notice.assets.len());
        for (i, &asset) in notice.assets.iter().enumerate() {
            let log = AssetLog::load(&self.storage, asset).await?;
            let arrival = log
                .arrival()
                .filter(|a| scope.is_none_or(|t| t == a.tenant))
                .ok_or_else(|| RightsError::Invalid(format!("assets[{i}]: no such asset")))?;
            assets.push(NoticedAsset {
                asset,
                tenant: arrival.tenant,
                uploader: log.uploader(),
                status: Status::TakenDown,
                blocked_hashes: 0,
                hashed: false,
            });
        }
        let targets = std::iter::once(format!("takedown:{id}"))
            .chain(assets.iter().map(|a| a.asset.to_string()))
            .collect();
        let record = Takedown::new(id, now(), &actor.id, assets);
        // Under the new take-down's lock (so the scheduled run leaves it alone): the claimant's
        // data sealed first, then the record, then each asset. A crash leaves a record the
        // scheduled run finishes, never one without its notice.
        self.with_lock(id, async {
            self.storage
                .put_sealed(id, BlobRole::Notice, &notice.party)
                .await?;
            self.storage.put_takedown(&record).await?;
            self.take_down_assets(record).await
        })
        .await?;
        self.audit_as(actor, AuditAction::TakedownReceive, targets)
            .await?;
        let t = match self
            .with_takedown(id, |t| async move { self.hash_assets(t).await })
            .await
        {
            Ok(t) => t,
            // The scheduled run took the lock meanwhile: it hashes what is left.
            Err(RightsError::Busy) => self
                .storage
                .takedown(id)
                .await?
                .ok_or(RightsError::NotFound)?,
            Err(e) => return Err(e),
        };
        let entered = Entered {
            id,
            assets: t.assets.len(),
            blocked_hashes: t.assets.iter().map(|a| a.blocked_hashes as usize).sum(),
        };
        tracing::info!(takedown.id = %id, assets = entered.assets, blocked_hashes = entered.blocked_hashes, "take-down entered");
        Ok(entered)
    }

    /// Take down and announce each asset of `t`, block the hash the worker recorded for it,
    /// then record `notified`. Cheap (no decoding), so it all happens before the answer.
    /// Idempotent.
    async fn take_down_assets(&self, mut t: Takedown) -> Result<Takedown, RightsError> {
        let id = t.id;
        for a in &mut t.assets {
            let mut log = AssetLog::load(&self.storage, a.asset).await?;
            let taken = log
                .append_if(
                    &self.storage,
                    &self.signer,
                    EventKind::TakenDown { takedown_id: id },
                    |l| {
                        !matches!(l.state(), Some(AssetState::Erased | AssetState::Withdrawn))
                            && !l.events.iter().any(|e| {
                                matches!(e.event.what, EventKind::TakenDown { takedown_id } if takedown_id == id)
                            })
                    },
                )
                .await?;
            if taken {
                self.announce(&log).await;
            }
            if a.blocked_hashes == 0
                && let Some(p) = log.pdq().filter(|p| p.quality >= pdq::MIN_QUALITY)
            {
                self.storage.block(id, a.asset, &[p.hash.0]).await?;
                a.blocked_hashes = 1;
            }
        }
        t.notified(now());
        self.storage.put_takedown(&t).await?;
        Ok(t)
    }

    /// Put each asset's crop grid, flips and copies on the block list (decoding it: ~50 ms
    /// and the decode an image), saving progress after each. Done after the answer; what a
    /// dropped request leaves undone, the scheduled run finishes. Restored assets stay off.
    async fn hash_assets(&self, mut t: Takedown) -> Result<Takedown, RightsError> {
        for i in 0..t.assets.len() {
            let a = &t.assets[i];
            if a.hashed || matches!(a.status, Status::Restored { .. }) {
                continue;
            }
            let log = AssetLog::load(&self.storage, a.asset).await?;
            let hashes = self.block_hashes(&log).await?;
            self.storage.block(t.id, a.asset, &hashes).await?;
            t.assets[i].blocked_hashes = u32::try_from(hashes.len()).unwrap_or(u32::MAX);
            t.assets[i].hashed = true;
            self.storage.put_takedown(&t).await?;
        }
        Ok(t)
    }

    /// The hashes that block re-uploads of the asset: the crop grid and flips of its
    /// derivative (what the website showed) and, when it was redacted, of its original. The hash the worker recorded stays the fallback when no blob is left.
    async fn block_hashes(&self, log: &AssetLog) -> Result<Vec<[u8; 32]>, RightsError> {
        let mut images = Vec::new();
        let redacted = log.has(asepsis_common::provenance::EventName::Redacted);
        let roles: &[BlobRole] = if redacted {
            &[BlobRole::Derivative, BlobRole::Original]
        } else {
            &[BlobRole::Derivative]
        };
        for &role in roles {
            match self.storage.get_blob(log.asset, role).await {
                Ok((_, stream)) => {
                    let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
                    images.push(chunks.concat());
                }
                Err(
                    asepsis_store::StorageError::NotFound(_)
                    | asepsis_store::StorageError::Erased(_),
                ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let recorded = log.pdq();
        let hashes = tokio::task::spawn_blocking(move || {
            let mut all: Vec<pdq::Hash> = Vec::new();
            for bytes in images {
                if let Ok(image) = faces::decode_upright(&bytes, &faces::Settings::default()) {
                    all.extend(pdq::block_hashes(&image));
                }
            }
            all.extend(
                recorded
                    .filter(|p| p.quality >= pdq::MIN_QUALITY)
                    .map(|p| p.hash),
            );
            all.sort_by_key(|h| h.0);
            all.dedup();
            all.into_iter().map(|h| h.0).collect::<Vec<_>>()
        })
        .await
        .map_err(|e| RightsError::Task(e.to_string()))?;
        Ok(hashes)
    }

    /// Tell the asset's tenant where it now is; a lost notification is logged, not fatal
    /// (the signed log is the record, and listeners can poll `/v1/assets/{id}`).
    async fn announce(&self, log: &AssetLog) {
        if let Some(note) = log.notification()
            && let Err(e) = self.notifier.notify(&note).await
        {
            tracing::warn!(asset.id = %log.asset, error = %e, "notification not sent");
        }
    }

    /// A take-down as `scope` may see it.
    ///
    /// # Errors
    /// [`RightsError::NotFound`]; store failures.
    pub async fn takedown(&self, id: Uuid, scope: Scope<'_>) -> Result<Takedown, RightsError> {
        let t = self.storage.takedown(id).await?;
        t.and_then(|t| scoped(t, scope))
            .ok_or(RightsError::NotFound)
    }

    /// Take-downs `scope` may see, optionally only those naming an asset of `uploader`, with
    /// the upheld counts per uploader and per tenant over the same set.
    ///
    /// # Errors
    /// Store failures.
    pub async fn takedowns(
        &self,
        scope: Scope<'_>,
        uploader: Option<&str>,
    ) -> Result<Listing, RightsError> {
        let mut seen: Vec<Takedown> = Vec::new();
        for t in self.storage.takedowns().await? {
            let Some(mut t) = scoped(t, scope) else {
                continue;
            };
            if let Some(u) = uploader {
                t.assets.retain(|a| a.uploader.as_deref() == Some(u));
                if t.assets.is_empty() {
                    continue;
                }
            }
            seen.push(t);
        }
        let upheld = takedown::upheld_counts(&seen);
        let takedowns = seen
            .into_iter()
            .map(|t| Summary {
                id: t.id,
                status: t.status(),
                received_at: t.received_at,
                assets: t.assets,
            })
            .collect();
        Ok(Listing { takedowns, upheld })
    }

    /// The uploader's tenant counters the notice: restore scheduled, the claimant told
    /// (an `asset.counter_noticed` event per asset, for the website to forward).
    ///
    /// # Errors
    /// [`RightsError::Invalid`] naming a missing element; [`RightsError::NotFound`] when the
    /// tenant has no asset in it; [`RightsError::Conflict`] when it stands; store failures.
    pub async fn counter_notice(
        &self,
        actor: &Actor,
        id: Uuid,
        form: CounterForm,
    ) -> Result<Countered, RightsError> {
        let at = now();
        let party = form
            .validate(&actor.tenant, at)
            .map_err(RightsError::Invalid)?;
        let countered = self
            .with_takedown(id, |mut t| async move {
                let (due, changed) = t.counter_notice(&actor.tenant, at, &self.takedown)?;
                if changed {
                    let mut parties: Vec<CounterParty> = self
                        .storage
                        .sealed(id, BlobRole::CounterNotice)
                        .await?
                        .unwrap_or_default();
                    parties.push(party);
                    self.storage
                        .put_sealed(id, BlobRole::CounterNotice, &parties)
                        .await?;
                    self.storage.put_takedown(&t).await?;
                }
                let due_ms = u64::try_from(due.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
                let mine: Vec<Uuid> = t
                    .assets
                    .iter()
                    .filter(|a| a.tenant == actor.tenant)
                    .map(|a| a.asset)
                    .collect();
                for &asset in &mine {
                    let mut log = AssetLog::load(&self.storage, asset).await?;
                    let what = EventKind::CounterNoticed {
                        takedown_id: id,
                        restore_due_ms: due_ms,
                    };
                    let noted = log
                        .append_if(&self.storage, &self.signer, what, |l| {
                            !l.events.iter().any(|e| matches!(e.event.what, EventKind::CounterNoticed { takedown_id, .. } if takedown_id == id))
                        })
                        .await?;
                    if noted {
                        self.announce(&log).await;
                    }
                }
                Ok((Countered { id, restore_due: due, changed }, mine))
            })
            .await;
        let (countered, mine) = countered?;
        if countered.changed {
            let targets = std::iter::once(format!("takedown:{id}"))
                .chain(mine.iter().map(Uuid::to_string))
                .collect();
            self.audit_as(actor, AuditAction::TakedownCounterNotice, targets)
                .await?;
        }
        Ok(countered)
    }

    /// The claimant filed a court action: restores cancelled, the notice upheld, and the
    /// repeat-infringer policy applied.
    ///
    /// # Errors
    /// [`RightsError::NotFound`]; [`RightsError::Conflict`] when everything was restored;
    /// store failures.
    pub async fn court_action(
        &self,
        actor: &Actor,
        id: Uuid,
        scope: Scope<'_>,
    ) -> Result<Takedown, RightsError> {
        let t = self
            .with_takedown(id, |mut t| async move {
                if scoped(t.clone(), scope).is_none() {
                    return Err(RightsError::NotFound);
                }
                let upheld = t.court_action(now(), scope)?;
                if upheld > 0 {
                    self.storage.put_takedown(&t).await?;
                }
                Ok((t, upheld))
            })
            .await;
        let (t, upheld) = t?;
        if upheld > 0 {
            let targets = std::iter::once(format!("takedown:{id}"))
                .chain(t.assets.iter().map(|a| a.asset.to_string()))
                .collect();
            self.audit_as(actor, AuditAction::TakedownCourtAction, targets)
                .await?;
            let uploaders: Vec<String> =
                t.upheld_against().into_iter().map(str::to_owned).collect();
            self.repeat_infringers(&uploaders).await?;
        }
        Ok(t)
    }

    /// The scheduled run at `now`: finish notices a crash left half entered, restore what is
    /// due (re-checking the consent), uphold what nobody countered in time, and disable the
    /// keys of uploaders over the repeat-infringer limit.
    ///
    /// # Errors
    /// Store and queue failures (the next run carries on).
    pub async fn run_takedowns(&self, now: OffsetDateTime) -> Result<Run, RightsError> {
        let mut run = Run::default();
        for t in self.storage.takedowns().await? {
            let half_entered = !t.has_step(|s| matches!(s, StepKind::Notified { .. }));
            let due = t.due_restores(now);
            let lapses = t.clone().lapse(now, &self.takedown) > 0;
            let unhashed = t
                .assets
                .iter()
                .any(|a| !a.hashed && !matches!(a.status, Status::Restored { .. }));
            if !(half_entered || unhashed || lapses || !due.is_empty()) {
                continue;
            }
            let id = t.id;
            let done = self
                .with_takedown(id, |t| async move { self.run_one(t, now).await })
                .await;
            let (restored, held, upheld) = match done {
                Ok(done) => done,
                Err(RightsError::Busy) => continue,
                Err(e) => {
                    // One take-down's trouble must not hold back every later restore.
                    tracing::warn!(takedown.id = %id, error = %e, "take-down run step failed; the next run retries");
                    continue;
                }
            };
            run.finished += usize::from(half_entered);
            run.restored += restored.len();
            run.restored_held += held;
            run.upheld += upheld;
            let system = Actor {
                id: "worker:takedown".into(),
                tenant: String::new(),
            };
            for asset in restored {
                let targets = vec![format!("takedown:{id}"), asset.to_string()];
                self.audit_as(&system, AuditAction::TakedownRestore, targets)
                    .await?;
            }
            if upheld > 0 {
                self.audit_as(
                    &system,
                    AuditAction::TakedownUphold,
                    vec![format!("takedown:{id}")],
                )
                .await?;
            }
        }
        // Every uploader over the limit, not only this run's: a disable that failed before
        // (after its notice was upheld) is done now.
        let counts = takedown::upheld_counts(&self.storage.takedowns().await?);
        let over: Vec<String> = counts
            .by_uploader
            .into_iter()
            .filter(|(_, n)| *n >= self.takedown.repeat_infringer_limit)
            .map(|(k, _)| k)
            .collect();
        run.keys_disabled = self.repeat_infringers(&over).await?;
        Ok(run)
    }

    /// One take-down's scheduled work; returns the assets restored now, how many of them
    /// were left held, and how many assets were upheld.
    async fn run_one(
        &self,
        t: Takedown,
        now: OffsetDateTime,
    ) -> Result<(Vec<Uuid>, usize, usize), RightsError> {
        let id = t.id;
        let t = if t.has_step(|s| matches!(s, StepKind::Notified { .. })) {
            t
        } else {
            self.take_down_assets(t).await?
        };
        let mut t = self.hash_assets(t).await?;
        let (mut restored, mut held) = (Vec::new(), 0);
        for asset in t.due_restores(now) {
            let (republished, now_restored) = self.restore(id, asset, now).await?;
            t.restored(asset, republished, now);
            self.storage.put_takedown(&t).await?;
            if now_restored {
                held += usize::from(!republished);
                restored.push(asset);
            }
        }
        let upheld = t.lapse(now, &self.takedown);
        if upheld > 0 {
            self.storage.put_takedown(&t).await?;
        }
        Ok((restored, held, upheld))
    }

    /// Lift take-down `id` from `asset`, re-checking its consent first: a published asset
    /// whose consent no longer allows publication is unpublished (held) while still frozen,
    /// then `restored` is recorded, then its hashes leave the block list (a crash in between
    /// leaves it blocked and taken down, and the next run finishes). Returns whether it is
    /// published (or queued to be) again, and whether this call recorded the restore.
    async fn restore(
        &self,
        id: Uuid,
        asset: Uuid,
        now: OffsetDateTime,
    ) -> Result<(bool, bool), RightsError> {
        let mut log = AssetLog::load(&self.storage, asset).await?;
        let consent = match log.arrival() {
            Some(a) => self.storage.consent(a.consent_id).await?,
            None => None,
        };
        let refusal = match &consent {
            Some(c) => c
                .check_for_publication(now)
                .err()
                .map(|why| why.to_string()),
            None => Some("consent record is missing".to_owned()),
        };
        let was_published = |l: &AssetLog| {
            l.under_takedown(id)
                && {
                    let mut lifted = l.clone();
                    lifted.events.retain(|e| !matches!(e.event.what, EventKind::TakenDown { takedown_id } if takedown_id == id));
                    lifted.state() == Some(AssetState::Published)
                }
        };
        if let Some(why) = &refusal {
            let what = EventKind::Unpublished {
                reason: format!("restored after a take-down, but {why}"),
            };
            log.append_if(&self.storage, &self.signer, what, was_published)
                .await?;
        }
        let recorded = log
            .append_if(
                &self.storage,
                &self.signer,
                EventKind::Restored { takedown_id: id },
                |l| l.under_takedown(id),
            )
            .await?;
        self.storage.unblock(id, asset).await?;
        let mut queued = false;
        if recorded
            && matches!(
                log.state(),
                Some(AssetState::Received | AssetState::Processing)
            )
        {
            let queue = self.queue.as_ref().ok_or(RightsError::NoQueue)?;
            queue.publish(&Job::new(asset).to_bytes()).await?;
            queued = true;
        }
        let republished = queued || log.state() == Some(AssetState::Published);
        if recorded {
            self.announce(&log).await;
            tracing::info!(takedown.id = %id, asset.id = %asset, republished, "take-down lifted");
        }
        Ok((republished, recorded))
    }

    /// Disable the key of each of `uploaders` with at least the limit of upheld notices.
    /// Returns the keys disabled now.
    async fn repeat_infringers(&self, uploaders: &[String]) -> Result<Vec<String>, RightsError> {
        if uploaders.is_empty() {
            return Ok(Vec::new());
        }
        let all = self.storage.takedowns().await?;
        let counts = takedown::upheld_counts(&all);
        let limit = self.takedown.repeat_infringer_limit;
        let mut disabled = Vec::new();
        for key in uploaders {
            let n = counts.by_uploader.get(key).copied().unwrap_or(0);
            if n < limit {
                continue;
            }
            let reason = format!(
                "disabled under the repeat-infringer policy: {n} take-down notices upheld against uploads made with it (limit {limit})"
            );
            let at_ms = asepsis_store::now_ms();
            if !self
                .storage
                .disable_api_key(key, Disabled { at_ms, reason })
                .await?
            {
                continue;
            }
            let record = self.storage.api_key(key).await?;
            let system = Actor {
                id: "worker:takedown".into(),
                tenant: record.map(|r| r.tenant).unwrap_or_default(),
            };
            let targets = std::iter::once(format!("key:{key}"))
                .chain(
                    all.iter()
                        .filter(|t| t.upheld_against().contains(key.as_str()))
                        .map(|t| format!("takedown:{}", t.id)),
                )
                .collect();
            self.audit_as(&system, AuditAction::KeyDisable, targets)
                .await?;
            tracing::warn!(key.id = %key, upheld = n, "API key disabled: repeat infringer");
            disabled.push(key.clone());
        }
        Ok(disabled)
    }
}
