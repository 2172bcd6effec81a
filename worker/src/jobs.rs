//! The asset job: load and decrypt the original, run the pipeline (`asepsis_common::pipeline`:
//! strip, verify, scan, decide, redact, re-scan) in one blocking task under the CPU
//! semaphore, then store the derivative encrypted, append the events the result describes,
//! reject what matches a take-down's block list, publish (re-checking the consent) or hold,
//! and notify.
//!
//! Each event is appended right after the log as read, and is skipped when already there, so
//! a job redelivered after a crash resumes where it stopped and an asset is published at most
//! once. A bad file ends `rejected` with its reason; store trouble is retried; an impossible
//! state is dead-lettered. Logs carry ids and counts, never metadata values, boxes or scores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use asepsis_common::consent::{Consent, Scope};
use asepsis_common::dicom::{UidKey, UidSecret};
use asepsis_common::envelope::BlobRole;
use asepsis_common::faces::{Detector, Scan};
use asepsis_common::job::Job;
use asepsis_common::media::Limits;
use asepsis_common::pipeline::{self, Decided, Processed};
use asepsis_common::policy::Decision;
use asepsis_common::provenance::{AssetState, EventKind, EventName, Signer};
use asepsis_common::rights;
use asepsis_queue::QueueError;
use asepsis_queue::notify::Notifier;
use asepsis_store::asset::{Appended, AssetLog, Published};
use asepsis_store::{Storage, StorageError};
use async_trait::async_trait;
use futures::TryStreamExt;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::metrics;
use crate::runner::{Handler, Outcome};
use asepsis_store::blocklist::BlockList;

pub struct AssetJobs {
    pub storage: Storage,
    pub signer: Arc<Signer>,
    pub limits: Limits,
    pub detector: Arc<dyn Detector>,
    pub notifier: Arc<dyn Notifier>,
    /// Pipelines running at once (decoding and face detection are CPU-bound).
    pub cpu: Arc<Semaphore>,
    /// Content taken down under a DMCA notice: an upload that matches is rejected.
    pub blocklist: Arc<BlockList>,
    /// `takedown.match_distance`.
    pub match_distance: u32,
    /// The DICOM UID secret each tenant's UID key is derived from.
    pub dicom_uid_secret: Arc<UidSecret>,
}

/// Why a job stopped short of its end, typed by what the runner should do about it.
#[derive(Debug, thiserror::Error)]
enum Stop {
    /// The store failed (retried when transient), or holds what it should not (a bug).
    #[error(transparent)]
    Store(StorageError),
    /// Another writer advanced the log between our read and our write: decide again later.
    #[error("the asset's log moved on under us; deciding again")]
    LostRace,
    #[error("notification: {0}")]
    Notify(#[source] QueueError),
    /// The asset was shredded meanwhile (its consent withdrawn): nothing left to do.
    #[error("asset was erased meanwhile")]
    Erased,
    /// A state the job cannot be in: a bug, for an operator.
    #[error("{0}")]
    Impossible(&'static str),
    #[error("pipeline task: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl From<StorageError> for Stop {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Erased(_) => Stop::Erased,
            e => Stop::Store(e),
        }
    }
}

impl From<Stop> for Outcome {
    fn from(stop: Stop) -> Self {
        let why = stop.to_string();
        match stop {
            Stop::Store(StorageError::Store(_) | StorageError::Contended(_))
            | Stop::LostRace
            | Stop::Notify(_) => Outcome::Retry(why),
            Stop::Erased => Outcome::Reject(why),
            Stop::Store(_) | Stop::Impossible(_) | Stop::Task(_) => Outcome::Abort(why),
        }
    }
}

/// The original's bytes, or why the file is refused before the pipeline sees it.
enum Original {
    Bytes(Vec<u8>),
    /// Refused: the class (of [`metrics::REJECTED`]) and the reason.
    Refused(&'static str, String),
}

impl AssetJobs {
    async fn record(&self, log: &mut AssetLog, what: EventKind) -> Result<(), Stop> {
        match log.append(&self.storage, &self.signer, what).await? {
            Appended::Yes => Ok(()),
            Appended::LostRace => Err(Stop::LostRace),
        }
    }

    /// Store the derivative encrypted; if the asset was erased while it was written (the key
    /// was read before the shred), delete it again: an erased asset keeps no blob.
    async fn put_derivative(
        &self,
        log: &AssetLog,
        bytes: std::io::Cursor<Vec<u8>>,
    ) -> Result<asepsis_store::BlobInfo, Stop> {
        let info = self
            .storage
            .put_blob(log.asset, BlobRole::Derivative, bytes)
            .await?;
        if self.storage.is_erased(log.asset).await? {
            self.storage
                .delete_blob(log.asset, BlobRole::Derivative)
                .await?;
            return Err(Stop::Erased);
        }
        Ok(info)
    }

    /// The input is bad: record `rejected` with the reason, then ack. `class` is one of
    /// [`metrics::REJECTED`].
    async fn reject(
        &self,
        log: &mut AssetLog,
        class: &'static str,
        reason: String,
    ) -> Result<Outcome, Stop> {
        let what = EventKind::Rejected {
            reason: reason.clone(),
        };
        self.record(log, what).await?;
        settled(log, "rejected", class);
        self.announce(log).await?;
        Ok(Outcome::Reject(reason))
    }

    /// Tell listeners where the asset now is.
    async fn announce(&self, log: &AssetLog) -> Result<(), Stop> {
        let Some(note) = log.notification() else {
            return Ok(());
        };
        self.notifier.notify(&note).await.map_err(Stop::Notify)
    }

    async fn original(&self, log: &AssetLog) -> Result<Original, Stop> {
        let (len, stream) = match self.storage.get_blob(log.asset, BlobRole::Original).await {
            Err(StorageError::Erased(_)) => {
                return Ok(Original::Refused("erased", "asset was erased".into()));
            }
            other => other?,
        };
        let max = self.limits.max_input_bytes;
        if len > max {
            let why = format!("limit max_input_bytes exceeded: {len} > {max}");
            return Ok(Original::Refused("limit", why));
        }
        let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
        Ok(Original::Bytes(chunks.concat()))
    }

    async fn process(&self, asset: uuid::Uuid) -> Result<Outcome, Stop> {
        let mut log = AssetLog::load(&self.storage, asset).await?;
        let Some(arrival) = log.arrival() else {
            return Err(Stop::Impossible("asset has no received event"));
        };
        match log.state() {
            Some(AssetState::Received | AssetState::Processing) => {}
            Some(AssetState::Published | AssetState::Held | AssetState::Rejected) => {
                // Done before (the ack or the notification may have been lost): say it again.
                self.announce(&log).await?;
                return Ok(Outcome::Done);
            }
            state => {
                tracing::info!(?state, "asset is not to be processed; nothing to do");
                return Ok(Outcome::Done);
            }
        }
        let Some(consent) = self.storage.consent(arrival.consent_id).await? else {
            return self
                .reject(&mut log, "consent", "consent record is missing".into())
                .await;
        };
        if consent.erased_at.is_some() {
            // Uploaded while its subject was being erased: erase it too.
            if log.erase(&self.storage, &self.signer).await? {
                let record = asepsis_common::audit::AuditRecord {
                    actor: "worker".into(),
                    tenant: Some(arrival.tenant.clone()),
                    action: asepsis_common::audit::AuditAction::SubjectErase,
                    targets: vec![consent.id.to_string(), log.asset.to_string()],
                };
                self.storage.append_audit(&self.signer, record).await?;
            }
            tracing::info!("asset erased with its subject; not processed");
            return Ok(Outcome::Done);
        }
        if consent.restricted_at.is_some() {
            if log.freeze(&self.storage, &self.signer, consent.id).await? {
                tracing::info!("subject restricted: not processed until lifted");
                return Ok(Outcome::Done);
            }
            return Ok(Outcome::Retry(
                "the restriction was lifted meanwhile".into(),
            ));
        }
        if !log.has(EventName::Verdict) {
            let decrypting = Instant::now();
            let original = match self.original(&log).await? {
                Original::Bytes(bytes) => bytes,
                Original::Refused(class, reason) => {
                    return self.reject(&mut log, class, reason).await;
                }
            };
            metrics::stage("decrypt", decrypting.elapsed());
            match self.run_pipeline(original, &consent).await? {
                Processed::Rejected(e) => {
                    return self.reject(&mut log, e.class(), e.to_string()).await;
                }
                Processed::Decided(decided) => {
                    let t = &decided.timings;
                    metrics::stage("strip", t.strip);
                    metrics::stage("verify", t.verify);
                    metrics::stage("scan", t.scan);
                    if let Some(redact) = t.redact {
                        metrics::stage("redact", redact);
                    }
                    if let Some(reason) = self.blocked(asset, &decided.block_queries).await? {
                        if !log.has(EventName::Scanned) {
                            self.record(&mut log, scanned(&decided.scan, decided.pdq))
                                .await?;
                        }
                        return self.reject(&mut log, "blocked", reason).await;
                    }
                    self.record_decided(&mut log, *decided).await?
                }
            }
        }
        let decided = match log.last_of(EventName::Verdict) {
            Some(EventKind::Verdict { decision, .. }) => *decision,
            _ => return Err(Stop::Impossible("no verdict after deciding")),
        };
        let recorded = log.pdq();
        if decided == Decision::Publish
            && let Some(reason) = self.blocked(asset, recorded.as_slice()).await?
        {
            // Taken down (another copy) while this one was processed.
            return self.reject(&mut log, "blocked", reason).await;
        }
        if decided == Decision::Publish {
            // The consent as it is now: it may have been rectified, objected to or restricted
            // while the pipeline ran.
            let consent = self
                .storage
                .consent(arrival.consent_id)
                .await?
                .unwrap_or(consent);
            if consent.terms.scope == Scope::Deidentified
                && let Err(why) = rights::fits_deidentified(&log.events)
            {
                let what = EventKind::Verdict {
                    decision: Decision::Hold,
                    reason: format!("consent changed while processing: {why}"),
                };
                self.record(&mut log, what).await?;
                settled(&log, "held", "consent_changed");
                self.announce(&log).await?;
                return Ok(Outcome::Done);
            }
            let now = OffsetDateTime::now_utc();
            let publishing = Instant::now();
            match log
                .publish(&self.storage, &self.signer, &consent, now)
                .await?
            {
                Published::Now | Published::Already => {}
                Published::Refused(why) => tracing::info!(%why, "not published"),
                Published::LostRace => return Err(Stop::LostRace),
            }
            metrics::stage("publish", publishing.elapsed());
        }
        // Counted before the announcement: a redelivery after a failed one is done at once.
        match log.state() {
            Some(AssetState::Published) => {
                let redacted = log.has(EventName::Redacted);
                settled(
                    &log,
                    "published",
                    if redacted { "redacted" } else { "as_uploaded" },
                );
            }
            Some(AssetState::Held) => settled(&log, "held", held_class(&log)),
            _ => {}
        }
        self.announce(&log).await?;
        tracing::info!(state = ?log.state(), "asset processed");
        Ok(Outcome::Done)
    }

    /// Why content with these hashes may not be published: one matches a take-down's.
    async fn blocked(
        &self,
        asset: uuid::Uuid,
        queries: &[asepsis_common::pdq::Pdq],
    ) -> Result<Option<String>, Stop> {
        let found = self
            .blocklist
            .matching(queries, asset, self.match_distance)
            .await?;
        Ok(found.map(|notice| format!("matches content taken down under notice {notice}")))
    }

    /// The pipeline in one blocking task, once a CPU permit is free.
    async fn run_pipeline(&self, original: Vec<u8>, consent: &Consent) -> Result<Processed, Stop> {
        let _permit = self
            .cpu
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Stop::Impossible("the CPU semaphore was closed"))?;
        let (limits, detector, scope) = (
            self.limits.clone(),
            self.detector.clone(),
            consent.terms.scope,
        );
        let uids = UidKey::for_tenant(&self.dicom_uid_secret, &consent.tenant);
        tokio::task::spawn_blocking(move || {
            pipeline::process(&original, scope, &limits, detector.as_ref(), &uids)
        })
        .await
        .map_err(Stop::Task)
    }

    /// Store and record what the pipeline decided, skipping what the log shows done.
    async fn record_decided(&self, log: &mut AssetLog, decided: Decided) -> Result<(), Stop> {
        let Decided {
            stripped,
            deidentified,
            stripped_sha256,
            scan,
            pdq,
            block_queries: _,
            redaction,
            decision,
            reason,
            timings: _,
        } = decided;
        let report = stripped.report;
        if let Some(deid) = deidentified
            && !log.has(EventName::Deidentified)
        {
            let what = EventKind::Deidentified {
                profile: asepsis_common::dicom::PROFILE_NAME.into(),
                removed: deid.removed,
                emptied: deid.emptied,
                replaced: deid.replaced,
                remapped: deid.remapped,
                private_removed: deid.private_removed,
                burned_in: deid.burned_in,
            };
            self.record(log, what).await?;
        }
        if !log.has(EventName::Stripped) {
            let what = EventKind::Stripped {
                removed: report.removed.clone(),
                size_bytes: report.bytes_out,
                sha256: stripped_sha256,
                gps_in_original: report.gps_in_original,
            };
            self.record(log, what).await?;
        }
        if !log.has(EventName::Encrypted) {
            let derivative = std::io::Cursor::new(stripped.bytes);
            let encrypting = Instant::now();
            let info = self.put_derivative(log, derivative).await?;
            metrics::stage("encrypt", encrypting.elapsed());
            let kek = self.storage.current_kek();
            let what = EventKind::Encrypted {
                role: BlobRole::Derivative,
                kek_id: kek.id,
                kek_version: kek.version,
                size_bytes: info.stored_bytes,
            };
            self.record(log, what).await?;
        }
        if !log.has(EventName::Scanned) {
            self.record(log, scanned(&scan, pdq)).await?;
        }
        if let Some(redaction) = redaction {
            // Recorded again on a redelivery, and the redacted derivative stored again: the
            // derivative on record may be the unredacted one from before a crash.
            self.record(log, scanned(&redaction.rescan, None)).await?;
            if let Some(redacted) = redaction.derivative {
                let size_bytes = redacted.bytes.len() as u64;
                let derivative = std::io::Cursor::new(redacted.bytes);
                self.put_derivative(log, derivative).await?;
                let what = EventKind::Redacted {
                    faces: redacted.faces_hidden,
                    format: redacted.format,
                    size_bytes,
                    sha256: redacted.sha256,
                };
                self.record(log, what).await?;
            }
        }
        tracing::info!(
            removed = report.removed.len(),
            gps = report.gps_in_original,
            faces = scan.faces.len(),
            decision = decision.as_str(),
            "asset stripped and decided"
        );
        self.record(log, EventKind::Verdict { decision, reason })
            .await
    }
}

/// Count an asset settled by this job, timed from its upload.
fn settled(log: &AssetLog, outcome: &'static str, class: &'static str) {
    let uploaded = log.events.first().map_or(0, |e| e.event.at_ms);
    let since = asepsis_store::now_ms().saturating_sub(uploaded);
    metrics::settled(outcome, class, Duration::from_millis(since));
}

/// Why a held asset is held, for the metrics: the verdict of its last face scan (the re-scan
/// after a redaction).
fn held_class(log: &AssetLog) -> &'static str {
    match log.last_of(EventName::Scanned) {
        Some(EventKind::Scanned { verdict, .. }) => verdict.as_str(),
        _ => "not_scanned",
    }
}

/// The `scanned` event of a scan: verdict, count, scores, model hash and the perceptual hash;
/// never boxes or pixels.
fn scanned(scan: &Scan, pdq: Option<asepsis_common::pdq::Pdq>) -> EventKind {
    EventKind::Scanned {
        verdict: scan.verdict,
        faces: u32::try_from(scan.faces.len()).unwrap_or(u32::MAX),
        scores_milli: scan
            .faces
            .iter()
            .map(|f| (f.score.clamp(0.0, 1.0) * 1000.0).round() as u16)
            .collect(),
        model_sha256: scan.model_sha256.clone(),
        pdq,
    }
}

#[async_trait]
impl Handler for AssetJobs {
    type Job = Job;

    fn decode(&self, body: &[u8]) -> Result<Job, String> {
        Job::from_bytes(body).map_err(|e| e.to_string())
    }

    async fn handle(&self, job: Job, _attempt: u32) -> Outcome {
        let span = tracing::info_span!("asset", asset.id = %job.asset_id);
        match self.process(job.asset_id).instrument(span).await {
            Ok(outcome) => outcome,
            Err(stop) => stop.into(),
        }
    }
}
