//! asepsis-rights: a privacy officer's requests on a subject, carried out over the store —
//! erase, restrict and lift, object to purposes, rectify a consent, export, and the
//! accounting of disclosures — and DMCA take-downs (`takedown`). The HTTP routes
//! (`/v1/subjects/...`, `/v1/takedowns/...`), `asepsis rights` and the worker's scheduled
//! take-down run all call the [`Desk`].
//!
//! Every request holds its subject's lock (a second one meanwhile is [`RightsError::Busy`]),
//! gets a receipt id, and is written to the audit log with that receipt and the ids it
//! touched. Each step is idempotent and ordered so that a request cut short (a crash, a store
//! failure) and repeated finishes the job: the consent records change first (from then on
//! `/media` and uploads refuse), then each asset. The rules (what a consent allows, which
//! purposes exist, what was disclosed) are `asepsis_common`'s; this crate decides nothing of
//! its own and never logs a subject reference, a consent field or a key.

pub mod export;
pub mod takedown;

use std::sync::Arc;
use std::time::Duration;

use asepsis_common::audit::{AuditAction, AuditRecord};
use asepsis_common::consent::{Change, Consent, Scope};
use asepsis_common::job::Job;
use asepsis_common::provenance::{AssetState, EventKind, Signer};
use asepsis_common::rights::{self, AssetRecord, Disclosure, ExportRecord};
use asepsis_common::takedown as takedown_rules;
use asepsis_queue::notify::Notifier;
use asepsis_queue::{Queue, QueueError};
use asepsis_store::asset::AssetLog;
use asepsis_store::{Storage, StorageError};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// Who makes a request: an API key id (or `host:<user>`) acting for a tenant.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub tenant: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RightsError {
    /// The request is malformed: names what is wrong, never quoting PHI.
    #[error("{0}")]
    Invalid(String),
    #[error("another request for this subject is running; retry when it is done")]
    Busy,
    #[error("not found")]
    NotFound,
    /// The request cannot apply to the record as it is (a take-down that stands, say).
    #[error("{0}")]
    Conflict(String),
    /// A blocking task (decoding, hashing) failed.
    #[error("task: {0}")]
    Task(String),
    #[error(transparent)]
    Store(#[from] StorageError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Lifting a restriction queues work again, and no queue was given.
    #[error("lifting a restriction needs the queue (start the service once, or pass --data)")]
    NoQueue,
    /// The export bundle could not be written (the client went away, say).
    #[error("export: {0}")]
    Export(String),
}

/// What `erase` did.
#[derive(Debug, Clone, Serialize)]
pub struct Erasure {
    pub receipt: Uuid,
    /// Assets erased by this request (unpublished, every blob deleted, key shredded).
    pub assets_erased: usize,
    /// Consents scrubbed to a tombstone by this request.
    pub consents_erased: usize,
    /// `false` when everything was already erased: nothing more changed.
    pub changed: bool,
}

/// What `restrict` or `unrestrict` did.
#[derive(Debug, Clone, Serialize)]
pub struct Restriction {
    pub receipt: Uuid,
    /// Whether the subject is restricted now.
    pub restricted: bool,
    /// Consents whose restriction this request set or lifted.
    pub consents: usize,
    /// Assets frozen or released by this request.
    pub assets: usize,
    /// Released assets whose processing was pending, queued again.
    pub requeued: usize,
    pub changed: bool,
}

/// What `object` or `rectify` did.
#[derive(Debug, Clone, Serialize)]
pub struct Revision {
    pub receipt: Uuid,
    /// Consents given a new version by this request.
    pub consents_revised: usize,
    /// Assets taken off the website because their consent no longer allows publication.
    pub assets_unpublished: usize,
    pub changed: bool,
}

/// The privacy officer's desk over one store.
#[derive(Clone)]
pub struct Desk {
    pub storage: Storage,
    pub signer: Arc<Signer>,
    /// Where released assets are queued again; `None` (a host command before the service
    /// ever ran) refuses to lift a restriction.
    pub queue: Option<Arc<dyn Queue>>,
    /// How long a request holds its subject's lock before another may take it over (a
    /// request whose process died).
    pub lock_ttl: Duration,
    /// Where assets' tenants are told what happened (take-downs, restores).
    pub notifier: Arc<dyn Notifier>,
    pub takedown: takedown_rules::Settings,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

impl Desk {
    /// The subject's consents, after checking the reference.
    async fn consents(&self, tenant: &str, subject_ref: &str) -> Result<Vec<Consent>, RightsError> {
        rights::check_ref(subject_ref).map_err(RightsError::Invalid)?;
        let mut out = Vec::new();
        for id in self.storage.subject_consents(tenant, subject_ref).await? {
            if let Some(c) = self.storage.consent(id).await?
                && c.tenant == tenant
            {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// A consent of `tenant`; another tenant's is [`RightsError::NotFound`], as if it did
    /// not exist.
    async fn tenant_consent(&self, tenant: &str, id: Uuid) -> Result<Consent, RightsError> {
        self.storage
            .consent(id)
            .await?
            .filter(|c| c.tenant == tenant)
            .ok_or(RightsError::NotFound)
    }

    /// Run `op` holding the subject's lock (released whatever the outcome), then audit it.
    async fn locked<T, F, Fut>(
        &self,
        actor: &Actor,
        subject_ref: &str,
        action: AuditAction,
        op: F,
    ) -> Result<T, RightsError>
    where
        F: FnOnce(Uuid) -> Fut,
        Fut: Future<Output = Result<(T, Vec<String>), RightsError>>,
    {
        rights::check_ref(subject_ref).map_err(RightsError::Invalid)?;
        let receipt = Uuid::new_v4();
        let ttl = u64::try_from(self.lock_ttl.as_millis()).unwrap_or(u64::MAX);
        if !self
            .storage
            .lock_subject(&actor.tenant, subject_ref, receipt, ttl)
            .await?
        {
            return Err(RightsError::Busy);
        }
        let result = op(receipt).await;
        let unlocked = self
            .storage
            .unlock_subject(&actor.tenant, subject_ref)
            .await;
        let (value, targets) = result?;
        unlocked?;
        self.audit(actor, action, receipt, targets).await?;
        Ok(value)
    }

    async fn audit(
        &self,
        actor: &Actor,
        action: AuditAction,
        receipt: Uuid,
        targets: Vec<String>,
    ) -> Result<(), RightsError> {
        let mut all = vec![format!("receipt:{receipt}")];
        all.extend(targets);
        self.audit_as(actor, action, all).await
    }

    /// Audit `action` on `targets` by `actor` (an actor without a tenant acts service-wide).
    async fn audit_as(
        &self,
        actor: &Actor,
        action: AuditAction,
        targets: Vec<String>,
    ) -> Result<(), RightsError> {
        let record = AuditRecord {
            actor: actor.id.clone(),
            tenant: Some(actor.tenant.clone()).filter(|t| !t.is_empty()),
            action,
            targets,
        };
        self.storage.append_audit(&self.signer, record).await?;
        Ok(())
    }

    /// Erase every asset under the subject's consents (unpublished at once, blobs deleted,
    /// keys shredded, an `erased` event each) and scrub the consents to tombstones.
    ///
    /// # Errors
    /// [`RightsError::Invalid`] for a malformed reference, [`RightsError::Busy`], store
    /// failures (repeat the request: it finishes the job).
    pub async fn erase(&self, actor: &Actor, subject_ref: &str) -> Result<Erasure, RightsError> {
        self.locked(actor, subject_ref, AuditAction::SubjectErase, |receipt| async move {
            let consents = self.consents(&actor.tenant, subject_ref).await?;
            let mut targets = Vec::new();
            let mut consents_erased = 0;
            for mut consent in consents.clone() {
                targets.push(consent.id.to_string());
                let before = consent.clone();
                consent.erase(now());
                if consent != before {
                    self.storage.put_consent(&consent).await?;
                    consents_erased += 1;
                }
            }
            let mut assets_erased = 0;
            for consent in &consents {
                for asset in self.storage.consent_assets(consent.id).await? {
                    let mut log = AssetLog::load(&self.storage, asset).await?;
                    if log.erase(&self.storage, &self.signer).await? {
                        assets_erased += 1;
                    }
                    // Every asset, erased now or before: a request cut short and repeated
                    // still leaves each one in the audit log.
                    targets.push(asset.to_string());
                }
            }
            tracing::info!(receipt = %receipt, assets = assets_erased, consents = consents_erased, "subject erased");
            let changed = assets_erased + consents_erased > 0;
            Ok((
                Erasure {
                    receipt,
                    assets_erased,
                    consents_erased,
                    changed,
                },
                targets,
            ))
        })
        .await
    }

    /// Restrict the subject (`true`) or lift the restriction (`false`). Restricted assets
    /// are frozen: not served, not processed, nothing deleted; lifting queues again what was
    /// waiting to be processed.
    ///
    /// # Errors
    /// As [`Desk::erase`]; a queue failure on lifting (repeat: it queues what is pending).
    pub async fn restrict(
        &self,
        actor: &Actor,
        subject_ref: &str,
        restrict: bool,
    ) -> Result<Restriction, RightsError> {
        let action = if restrict {
            AuditAction::SubjectRestrict
        } else {
            AuditAction::SubjectUnrestrict
        };
        let queue = match (&self.queue, restrict) {
            (Some(queue), _) => Some(queue),
            (None, true) => None,
            (None, false) => return Err(RightsError::NoQueue),
        };
        self.locked(actor, subject_ref, action, |receipt| async move {
            let consents = self.consents(&actor.tenant, subject_ref).await?;
            let mut targets = Vec::new();
            let mut changed_consents = 0;
            for mut consent in consents.clone() {
                targets.push(consent.id.to_string());
                if consent.erased_at.is_some() || consent.restricted_at.is_some() == restrict {
                    continue;
                }
                consent.restricted_at = restrict.then(now);
                self.storage.put_consent(&consent).await?;
                changed_consents += 1;
            }
            let (mut assets, mut requeued) = (0, 0);
            for consent in &consents {
                for asset in self.storage.consent_assets(consent.id).await? {
                    let mut log = AssetLog::load(&self.storage, asset).await?;
                    let changed = if restrict {
                        log.append_if(&self.storage, &self.signer, EventKind::Restricted, |l| {
                            freezable(l.state())
                        })
                        .await?
                    } else {
                        log.append_if(&self.storage, &self.signer, EventKind::Unrestricted, |l| {
                            l.state() == Some(AssetState::Restricted)
                        })
                        .await?
                    };
                    if changed {
                        assets += 1;
                        targets.push(asset.to_string());
                    }
                    let pending = matches!(
                        log.state(),
                        Some(AssetState::Received | AssetState::Processing)
                    );
                    if let (false, true, Some(queue)) = (restrict, pending, queue) {
                        queue.publish(&Job::new(asset).to_bytes()).await?;
                        requeued += 1;
                    }
                }
            }
            tracing::info!(receipt = %receipt, restrict, assets, requeued, "subject restriction changed");
            Ok((
                Restriction {
                    receipt,
                    restricted: restrict,
                    consents: changed_consents,
                    assets,
                    requeued,
                    changed: changed_consents + assets > 0,
                },
                targets,
            ))
        })
        .await
    }

    /// Remove `purposes` from the subject's consents (a new version each); an asset whose
    /// publication no longer has a purpose is unpublished.
    ///
    /// # Errors
    /// [`RightsError::Invalid`] when no purpose is named or one is not in any of the
    /// subject's consents; as [`Desk::erase`].
    pub async fn object(
        &self,
        actor: &Actor,
        subject_ref: &str,
        purposes: &[String],
    ) -> Result<Revision, RightsError> {
        self.locked(actor, subject_ref, AuditAction::SubjectObject, |receipt| async move {
            let consents = self.consents(&actor.tenant, subject_ref).await?;
            let known: Vec<String> = consents
                .iter()
                .flat_map(|c| c.terms.purposes.iter().cloned())
                .collect();
            // A repeated objection names purposes already removed: that is not an error.
            let objected: Vec<String> = consents
                .iter()
                .flat_map(|c| c.history.iter())
                .filter(|v| v.replaced_by == Change::Objection)
                .flat_map(|v| v.terms.purposes.iter().cloned())
                .chain(known.iter().cloned())
                .collect();
            rights::check_objection(purposes, &objected).map_err(RightsError::Invalid)?;
            let mut targets = Vec::new();
            let (mut revised, mut unpublished) = (0, 0);
            for mut consent in consents {
                if consent.erased_at.is_none() && consent.object(purposes, now()) {
                    self.storage.put_consent(&consent).await?;
                    revised += 1;
                    targets.push(consent.id.to_string());
                }
                unpublished += self.unpublish_refused(&consent, false, &mut targets).await?;
            }
            tracing::info!(receipt = %receipt, consents = revised, assets = unpublished, "objection recorded");
            Ok((
                Revision {
                    receipt,
                    consents_revised: revised,
                    assets_unpublished: unpublished,
                    changed: revised + unpublished > 0,
                },
                targets,
            ))
        })
        .await
    }

    /// Correct fields of a consent of the actor's tenant with a JSON merge patch: a new
    /// version, the old one kept in its history. A narrowing that no longer allows
    /// publication unpublishes at once; a widening republishes nothing by itself.
    ///
    /// # Errors
    /// [`RightsError::NotFound`] for another tenant's or an unknown consent;
    /// [`RightsError::Invalid`] naming the field; as [`Desk::erase`].
    pub async fn rectify(
        &self,
        actor: &Actor,
        consent_id: Uuid,
        patch: &serde_json::Value,
    ) -> Result<(Consent, Revision), RightsError> {
        let consent = self.tenant_consent(&actor.tenant, consent_id).await?;
        let subject_ref = consent.terms.subject_ref.clone();
        self.locked(actor, &subject_ref, AuditAction::ConsentRectify, |receipt| async move {
            // Read again under the lock.
            let mut consent = self.tenant_consent(&actor.tenant, consent_id).await?;
            if consent.erased_at.is_some() {
                return Err(RightsError::Invalid(
                    "the consent was erased; it can no longer be corrected".into(),
                ));
            }
            let terms = consent
                .rectified(patch, now())
                .map_err(|e| RightsError::Invalid(e.to_string()))?;
            let mut targets = vec![consent.id.to_string()];
            let revised = terms != consent.terms;
            let narrowed = consent.terms.scope != Scope::Deidentified
                && terms.scope == Scope::Deidentified;
            if revised {
                consent.revise(terms, Change::Rectification, now());
                self.storage.put_consent(&consent).await?;
            }
            let unpublished = self
                .unpublish_refused(&consent, narrowed, &mut targets)
                .await?;
            tracing::info!(receipt = %receipt, consent.id = %consent.id, assets = unpublished, "consent rectified");
            let revision = Revision {
                receipt,
                consents_revised: usize::from(revised),
                assets_unpublished: unpublished,
                changed: revised || unpublished > 0,
            };
            Ok(((consent, revision), targets))
        })
        .await
    }

    /// Withdraw a consent: the record first (from then on `/media` refuses every asset under
    /// it), then each asset gets a `withdrawn` event, its derivative is deleted and its data
    /// key shredded. Returns the record and the number of assets withdrawn by this call.
    ///
    /// # Errors
    /// [`RightsError::NotFound`] for another tenant's or an unknown consent; as
    /// [`Desk::erase`].
    pub async fn withdraw(
        &self,
        actor: &Actor,
        consent_id: Uuid,
    ) -> Result<(Consent, usize), RightsError> {
        let consent = self.tenant_consent(&actor.tenant, consent_id).await?;
        let subject_ref = consent.terms.subject_ref.clone();
        self.locked(
            actor,
            &subject_ref,
            AuditAction::ConsentWithdraw,
            |_| async move {
                // Read again under the lock (an erasure may have scrubbed it meanwhile).
                let mut consent = self.tenant_consent(&actor.tenant, consent_id).await?;
                if consent.withdrawn_at.is_none() {
                    consent.withdrawn_at = Some(now());
                    self.storage.put_consent(&consent).await?;
                }
                let mut targets = vec![consent.id.to_string()];
                let what = EventKind::Withdrawn {
                    consent_id: consent.id,
                };
                let mut withdrawn = 0;
                for asset in self.storage.consent_assets(consent.id).await? {
                    let mut log = AssetLog::load(&self.storage, asset).await?;
                    if log
                        .append_if(&self.storage, &self.signer, what.clone(), |l| {
                            !matches!(
                                l.state(),
                                None | Some(AssetState::Withdrawn | AssetState::Erased)
                            )
                        })
                        .await?
                    {
                        withdrawn += 1;
                        targets.push(asset.to_string());
                    }
                    self.storage
                        .delete_blob(asset, asepsis_common::envelope::BlobRole::Derivative)
                        .await?;
                    self.storage.shred(asset).await?;
                }
                tracing::info!(consent.id = %consent.id, assets = withdrawn, "consent withdrawn");
                Ok(((consent, withdrawn), targets))
            },
        )
        .await
    }

    /// Unpublish every published asset under `consent` that the consent no longer allows:
    /// all of them when it refuses publication, and, when it was `narrowed_to_deidentified`,
    /// each whose derivative was not found free of faces. The number unpublished.
    async fn unpublish_refused(
        &self,
        consent: &Consent,
        narrowed_to_deidentified: bool,
        targets: &mut Vec<String>,
    ) -> Result<usize, RightsError> {
        let refused = consent.check_for_publication(now()).err();
        if refused.is_none() && !narrowed_to_deidentified {
            return Ok(0);
        }
        let mut unpublished = 0;
        for asset in self.storage.consent_assets(consent.id).await? {
            let mut log = AssetLog::load(&self.storage, asset).await?;
            let why = match refused {
                Some(why) => why.to_string(),
                None => match rights::fits_deidentified(&log.events) {
                    Ok(()) => continue,
                    Err(why) => why,
                },
            };
            let what = EventKind::Unpublished {
                reason: format!("consent no longer allows publication: {why}"),
            };
            if log
                .append_if(&self.storage, &self.signer, what, |l| {
                    l.state() == Some(AssetState::Published)
                })
                .await?
            {
                unpublished += 1;
                targets.push(asset.to_string());
            }
        }
        Ok(unpublished)
    }

    /// The accounting of disclosures of the subject's assets overlapping `[from_ms, to_ms)`:
    /// each publication to the website and each export, from the signed logs.
    ///
    /// # Errors
    /// A malformed reference; store failures.
    pub async fn disclosures(
        &self,
        tenant: &str,
        subject_ref: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Vec<Disclosure>, RightsError> {
        let consents = self.consents(tenant, subject_ref).await?;
        let mut logs = Vec::new();
        for consent in &consents {
            for asset in self.storage.consent_assets(consent.id).await? {
                logs.push((asset, self.storage.events(asset).await?, consent));
            }
        }
        let assets: Vec<AssetRecord<'_>> = logs
            .iter()
            .map(|(id, events, consent)| AssetRecord {
                id: *id,
                events,
                purposes: &consent.terms.purposes,
            })
            .collect();
        let exports = self.exports(tenant, &consents).await?;
        Ok(rights::account(&assets, &exports, from_ms, to_ms))
    }

    /// The exports of these consents' assets, from the audit log.
    async fn exports(
        &self,
        tenant: &str,
        consents: &[Consent],
    ) -> Result<Vec<ExportRecord>, RightsError> {
        let ids: Vec<String> = consents.iter().map(|c| c.id.to_string()).collect();
        let mut out = Vec::new();
        for signed in self.storage.audit_log().await? {
            let record = &signed.entry.record;
            if record.action != AuditAction::SubjectExport
                || record.tenant.as_deref() != Some(tenant)
                || !record.targets.iter().any(|t| ids.contains(t))
            {
                continue;
            }
            let receipt = record
                .targets
                .iter()
                .find_map(|t| t.strip_prefix("receipt:"))
                .and_then(|r| Uuid::parse_str(r).ok());
            let assets = record
                .targets
                .iter()
                .filter(|t| !ids.contains(t))
                .filter_map(|t| Uuid::parse_str(t).ok())
                .collect();
            out.push(ExportRecord {
                at_ms: signed.entry.at_ms,
                receipt,
                assets,
            });
        }
        Ok(out)
    }
}

/// May an asset in this state be frozen by a restriction? (Not when erased or withdrawn:
/// nothing is left to freeze.)
fn freezable(state: Option<AssetState>) -> bool {
    !matches!(
        state,
        None | Some(AssetState::Erased | AssetState::Withdrawn | AssetState::Restricted)
    )
}
