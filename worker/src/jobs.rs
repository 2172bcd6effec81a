//! The handlers the worker runs.
//!
//! [`AssetJobs`] processes an uploaded asset: load and decrypt the original → strip and
//! verify → encrypt the derivative → face scan → policy (redacting faces, then re-scanning,
//! when the consent allows de-identified use only) → publish (re-checking the consent) or
//! hold → notify. Each step appends its event right after the log as read, and is skipped
//! when its event is already there, so a job redelivered after a crash resumes where it
//! stopped and an asset is published at most once. A bad file ends `rejected` with its
//! reason; store trouble is retried; an impossible state is dead-lettered.

use std::sync::Arc;

use asepsis_common::asset::{Appended, AssetLog, Published};
use asepsis_common::consent::Consent;
use asepsis_common::envelope::Role;
use asepsis_common::faces::{Detector, Scan, Verdict};
use asepsis_common::job::Job;
use asepsis_common::media::{Limits, strip};
use asepsis_common::notify::Notifier;
use asepsis_common::policy::{Decision, decide};
use asepsis_common::provenance::{AssetState, EventKind, Signer};
use asepsis_common::storage::{Storage, StorageError};
use async_trait::async_trait;
use futures::TryStreamExt;
use ring::digest::{SHA256, digest};
use time::OffsetDateTime;
use tracing::Instrument;

use crate::runner::{Handler, Outcome};

pub struct AssetJobs {
    pub storage: Storage,
    pub signer: Arc<Signer>,
    pub limits: Limits,
    pub detector: Arc<dyn Detector>,
    pub notifier: Arc<dyn Notifier>,
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes))
}

/// Store trouble is transient; an asset shredded meanwhile (its consent withdrawn) is done
/// with; anything else about the asset is a bug to look at.
fn outcome_of(e: StorageError) -> Outcome {
    match e {
        StorageError::Store(_) | StorageError::Contended(_) => Outcome::Retry(e.to_string()),
        StorageError::Erased(_) => Outcome::Reject("asset was erased meanwhile".into()),
        other => Outcome::Abort(other.to_string()),
    }
}

/// Another writer advanced the log between our read and our write: come back later and
/// decide again from what is there.
fn lost_race() -> Outcome {
    Outcome::Retry("the asset's log moved on under us; deciding again".into())
}

impl AssetJobs {
    async fn record(&self, log: &mut AssetLog, what: EventKind) -> Result<(), Outcome> {
        match log.append(&self.storage, &self.signer, what).await {
            Ok(Appended::Yes) => Ok(()),
            Ok(Appended::LostRace) => Err(lost_race()),
            Err(e) => Err(outcome_of(e)),
        }
    }

    /// The input is bad: record `rejected` with the reason, then ack.
    async fn reject(&self, log: &mut AssetLog, reason: String) -> Result<Outcome, Outcome> {
        let what = EventKind::Rejected {
            reason: reason.clone(),
        };
        self.record(log, what).await?;
        self.announce(log).await?;
        Ok(Outcome::Reject(reason))
    }

    /// Tell listeners where the asset now is.
    async fn announce(&self, log: &AssetLog) -> Result<(), Outcome> {
        let Some(note) = log.notification() else {
            return Ok(());
        };
        self.notifier
            .notify(&note)
            .await
            .map_err(|e| Outcome::Retry(format!("notification: {e}")))
    }

    async fn original(&self, log: &mut AssetLog) -> Result<Result<Vec<u8>, String>, Outcome> {
        let (len, stream) = match self.storage.get_blob(log.asset, Role::Original).await {
            Err(StorageError::Erased(_)) => return Ok(Err("asset was erased".into())),
            other => other.map_err(outcome_of)?,
        };
        let max = self.limits.max_input_bytes;
        if len > max {
            return Ok(Err(format!(
                "limit max_input_bytes exceeded: {len} > {max}"
            )));
        }
        let chunks: Vec<bytes::Bytes> = stream.try_collect().await.map_err(outcome_of)?;
        Ok(Ok(chunks.concat()))
    }

    async fn process(&self, asset: uuid::Uuid) -> Result<Outcome, Outcome> {
        let mut log = AssetLog::load(&self.storage, asset)
            .await
            .map_err(outcome_of)?;
        let Some(arrival) = log.arrival() else {
            return Ok(Outcome::Abort("asset has no received event".into()));
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
        let consent = match self.storage.consent(arrival.consent_id).await {
            Ok(Some(consent)) => consent,
            Ok(None) => {
                return self
                    .reject(&mut log, "consent record is missing".into())
                    .await;
            }
            Err(e) => return Err(outcome_of(e)),
        };
        if !log.has("verdict")
            && let Some(outcome) = self.strip_scan_decide(&mut log, &consent).await?
        {
            return Ok(outcome);
        }
        let decided = match log.last_of("verdict") {
            Some(EventKind::Verdict { decision, .. }) => decision.clone(),
            _ => return Ok(Outcome::Abort("no verdict after deciding".into())),
        };
        if decided == Decision::Publish.as_str() {
            let now = OffsetDateTime::now_utc();
            match log
                .publish(&self.storage, &self.signer, &consent, now)
                .await
            {
                Ok(Published::Now | Published::Already) => {}
                Ok(Published::Refused(why)) => tracing::info!(%why, "not published"),
                Ok(Published::LostRace) => return Err(lost_race()),
                Err(e) => return Err(outcome_of(e)),
            }
        }
        self.announce(&log).await?;
        tracing::info!(state = ?log.state(), "asset processed");
        Ok(Outcome::Done)
    }

    /// Strip, store the derivative, scan and decide, skipping what the log shows done.
    /// `Some(outcome)` when the asset ended here (rejected).
    async fn strip_scan_decide(
        &self,
        log: &mut AssetLog,
        consent: &Consent,
    ) -> Result<Option<Outcome>, Outcome> {
        let original = match self.original(log).await? {
            Ok(bytes) => Arc::new(bytes),
            Err(reason) => return self.reject(log, reason).await.map(Some),
        };
        let (limits, input) = (self.limits.clone(), original.clone());
        let stripped = tokio::task::spawn_blocking(move || strip(&input, &limits))
            .await
            .map_err(|e| Outcome::Abort(format!("strip task: {e}")))?;
        let stripped = match stripped {
            Ok(s) => s,
            Err(e) => return self.reject(log, e.to_string()).await.map(Some),
        };
        let report = stripped.report;
        if !log.has("stripped") {
            let what = EventKind::Stripped {
                removed: report.removed.clone(),
                size_bytes: report.bytes_out,
                sha256: sha256(&stripped.bytes),
                gps_in_original: report.gps_in_original,
            };
            self.record(log, what).await?;
        }
        if !log.has("encrypted") {
            let derivative = std::io::Cursor::new(stripped.bytes);
            let info = self
                .storage
                .put_blob(log.asset, Role::Derivative, derivative)
                .await
                .map_err(outcome_of)?;
            let kek = self.storage.current_kek();
            let what = EventKind::Encrypted {
                role: Role::Derivative,
                kek_id: kek.id,
                kek_version: kek.version,
                size_bytes: info.stored_bytes,
            };
            self.record(log, what).await?;
        }
        let scan = self.scan(original.clone()).await?;
        if !log.has("scanned") {
            self.record(log, scanned(&scan)).await?;
        }
        let (decision, reason) = decide(consent.terms.scope, scan.verdict, report.gps_in_original);
        let (decision, reason) = match decision {
            Decision::Redact => self.redact(log, original, reason).await?,
            other => (other, reason),
        };
        tracing::info!(
            removed = report.removed.len(),
            gps = report.gps_in_original,
            faces = scan.faces.len(),
            decision = decision.as_str(),
            "asset stripped and decided"
        );
        let what = EventKind::Verdict {
            decision: decision.as_str().into(),
            reason,
        };
        self.record(log, what).await?;
        Ok(None)
    }
}

impl AssetJobs {
    async fn scan(&self, image: Arc<Vec<u8>>) -> Result<Scan, Outcome> {
        let detector = self.detector.clone();
        tokio::task::spawn_blocking(move || detector.scan(&image))
            .await
            .map_err(|e| Outcome::Abort(format!("scan task: {e}")))
    }

    /// Hide the faces, strip and re-scan the result; store it as the derivative when the
    /// re-scan finds no face (publish), else hold. Always re-stores on a redelivery, since
    /// the derivative on record may be the unredacted one from before a crash.
    async fn redact(
        &self,
        log: &mut AssetLog,
        original: Arc<Vec<u8>>,
        why: String,
    ) -> Result<(Decision, String), Outcome> {
        let (detector, limits) = (self.detector.clone(), self.limits.clone());
        let redacted = tokio::task::spawn_blocking(move || {
            let redacted = detector.redact(&original)?;
            let clean = strip(&redacted.bytes, &limits).map_err(|e| e.to_string())?;
            Ok::<_, String>((clean.bytes, redacted.faces.len(), redacted.format))
        })
        .await
        .map_err(|e| Outcome::Abort(format!("redaction task: {e}")))?;
        let (bytes, hidden, format) = match redacted {
            Ok(done) => done,
            Err(e) => {
                return Ok((
                    Decision::Hold,
                    format!("{why}; redaction failed ({e}): held"),
                ));
            }
        };
        let bytes = Arc::new(bytes);
        let rescan = self.scan(bytes.clone()).await?;
        self.record(log, scanned(&rescan)).await?;
        if rescan.verdict != Verdict::None {
            let still = rescan.verdict.as_str();
            return Ok((
                Decision::Hold,
                format!("{why}; after redaction the re-scan says {still}: held"),
            ));
        }
        let digest = sha256(&bytes);
        let size_bytes = bytes.len() as u64;
        let derivative = std::io::Cursor::new(bytes.to_vec());
        self.storage
            .put_blob(log.asset, Role::Derivative, derivative)
            .await
            .map_err(outcome_of)?;
        let what = EventKind::Redacted {
            faces: u32::try_from(hidden).unwrap_or(u32::MAX),
            format: format.name().into(),
            size_bytes,
            sha256: digest,
        };
        self.record(log, what).await?;
        Ok((
            Decision::Publish,
            format!("{why}; {hidden} face(s) redacted, re-scan found none"),
        ))
    }
}

/// The `scanned` event of a scan: verdict, count, scores and model hash; never boxes or pixels.
fn scanned(scan: &Scan) -> EventKind {
    EventKind::Scanned {
        verdict: scan.verdict.as_str().into(),
        faces: u32::try_from(scan.faces.len()).unwrap_or(u32::MAX),
        scores_milli: scan
            .faces
            .iter()
            .map(|f| (f.score.clamp(0.0, 1.0) * 1000.0).round() as u16)
            .collect(),
        model_sha256: scan.model_sha256.clone(),
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
            Ok(outcome) | Err(outcome) => outcome,
        }
    }
}
