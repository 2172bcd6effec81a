//! The handlers the worker runs.
//!
//! [`AssetJobs`] processes an uploaded asset: load and decrypt the original → strip and
//! verify (`media::strip`) → encrypt the derivative → record `stripped`, `encrypted`,
//! `scanned` and `verdict` events. Face detection is not in this build, so every image is
//! `not_scanned` and held for review: never a fake "no face", never published from here.
//! A bad file ends `rejected` with its reason. Store failures are retried. A job for an
//! asset that is past processing is a no-op, so redelivery is safe.

use std::sync::Arc;

use asepsis_common::envelope::Role;
use asepsis_common::job::Job;
use asepsis_common::media::{Limits, strip};
use asepsis_common::provenance::{AssetState, EventKind, Signer, fold};
use asepsis_common::storage::{Storage, StorageError};
use async_trait::async_trait;
use futures::TryStreamExt;
use ring::digest::{SHA256, digest};
use tracing::Instrument;

use crate::runner::{Handler, Outcome};

pub struct AssetJobs {
    pub storage: Storage,
    pub signer: Arc<Signer>,
    pub limits: Limits,
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes))
}

/// Store trouble is transient; anything else about the asset is a bug to look at.
fn outcome_of(e: StorageError) -> Outcome {
    match e {
        StorageError::Store(_) | StorageError::Contended(_) => Outcome::Retry(e.to_string()),
        other => Outcome::Abort(other.to_string()),
    }
}

impl AssetJobs {
    async fn record(&self, asset: uuid::Uuid, what: EventKind) -> Result<(), Outcome> {
        self.storage
            .append_event(asset, &self.signer, what)
            .await
            .map(|_| ())
            .map_err(outcome_of)
    }

    /// The input is bad: record `rejected` with the reason, then ack.
    async fn reject(&self, asset: uuid::Uuid, reason: String) -> Result<Outcome, Outcome> {
        let what = EventKind::Rejected {
            reason: reason.clone(),
        };
        self.record(asset, what).await?;
        Ok(Outcome::Reject(reason))
    }

    async fn process(&self, asset: uuid::Uuid) -> Result<Outcome, Outcome> {
        let events = self.storage.events(asset).await.map_err(outcome_of)?;
        match fold(&events) {
            None => return Ok(Outcome::Abort("asset has no received event".into())),
            Some(AssetState::Received | AssetState::Processing) => {}
            Some(state) => {
                tracing::info!(?state, "asset already processed; nothing to do");
                return Ok(Outcome::Done);
            }
        }
        let (len, stream) = match self.storage.get_blob(asset, Role::Original).await {
            Err(StorageError::Erased(_)) => return Ok(Outcome::Reject("asset was erased".into())),
            other => other.map_err(outcome_of)?,
        };
        if len > self.limits.max_input_bytes {
            let max = self.limits.max_input_bytes;
            let reason = format!("limit max_input_bytes exceeded: {len} > {max}");
            return self.reject(asset, reason).await;
        }
        let chunks: Vec<bytes::Bytes> = stream.try_collect().await.map_err(outcome_of)?;
        let original = chunks.concat();
        let limits = self.limits.clone();
        let stripped = tokio::task::spawn_blocking(move || strip(&original, &limits))
            .await
            .map_err(|e| Outcome::Abort(format!("strip task: {e}")))?;
        let stripped = match stripped {
            Ok(s) => s,
            Err(e) => return self.reject(asset, e.to_string()).await,
        };
        let report = stripped.report;
        self.record(
            asset,
            EventKind::Stripped {
                removed: report.removed.clone(),
                size_bytes: report.bytes_out,
                sha256: sha256(&stripped.bytes),
                gps_in_original: report.gps_in_original,
            },
        )
        .await?;
        let info = self
            .storage
            .put_blob(
                asset,
                Role::Derivative,
                std::io::Cursor::new(stripped.bytes),
            )
            .await
            .map_err(outcome_of)?;
        let kek = self.storage.current_kek();
        self.record(
            asset,
            EventKind::Encrypted {
                role: Role::Derivative,
                kek_id: kek.id,
                kek_version: kek.version,
                size_bytes: info.stored_bytes,
            },
        )
        .await?;
        self.record(
            asset,
            EventKind::Scanned {
                verdict: "not_scanned".into(),
                faces: 0,
                model_sha256: String::new(),
            },
        )
        .await?;
        self.record(
            asset,
            EventKind::Verdict {
                decision: "hold".into(),
                reason: "face scan not available: held for review".into(),
            },
        )
        .await?;
        tracing::info!(
            removed = report.removed.len(),
            gps = report.gps_in_original,
            "asset stripped and held for review"
        );
        Ok(Outcome::Done)
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
