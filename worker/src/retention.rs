//! The retention job: on a schedule, one worker at a time (a create-only lease per period in
//! the store) walks every asset, asks `asepsis_common::retention::due` what its tenant's
//! policy says must go, and carries it out in a bounded batch: deletes blobs, shreds keys or
//! rejects stale held assets, appending a `purged` (or `rejected`) event and an audit entry
//! per purge. `asepsis rights purge --dry-run` runs the same walk without changing anything.
//!
//! Each purge is recorded first (only while the log still says it is due, so a restriction
//! appended meanwhile wins), then carried out. A run killed between the two leaves a recorded
//! purge's blobs behind (a shredded asset's are undecryptable; a published asset's original
//! is not): a known gap, in the README.
//! Logs carry ids, rules and counts only.

use std::sync::Arc;
use std::time::Duration;

use asepsis_common::audit::{AuditAction, AuditRecord};
use asepsis_common::envelope::BlobRole;
use asepsis_common::provenance::{EventKind, Signer};
use asepsis_common::retention::{self, Action, Due, RetentionRule};
use asepsis_store::asset::AssetLog;
use asepsis_store::{Storage, StorageError, now_ms};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The actor retention purges are audited as.
pub const ACTOR: &str = "worker:retention";

pub struct Retention {
    pub storage: Storage,
    pub signer: Arc<Signer>,
    pub settings: retention::Settings,
}

/// One purge, planned or carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purge {
    pub tenant: String,
    pub asset: Uuid,
    pub rule: RetentionRule,
    /// delete_original, delete_all or reject.
    pub action: &'static str,
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::DeleteOriginal => "delete_original",
        Action::DeleteAll => "delete_all",
        Action::Reject(_) => "reject",
    }
}

impl Retention {
    /// Walk every asset as of `now_ms` and carry out (or, with `dry_run`, only list) what is
    /// due, at most `retention.batch` purges.
    ///
    /// # Errors
    /// Store failures (the next run carries on where this one stopped).
    pub async fn run_once(&self, now_ms: u64, dry_run: bool) -> Result<Vec<Purge>, StorageError> {
        let mut done = Vec::new();
        for (tenant, asset) in self.storage.all_assets().await? {
            if done.len() >= self.settings.batch {
                break;
            }
            let policy = self.settings.policy_for(&tenant);
            let mut log = AssetLog::load(&self.storage, asset).await?;
            let Some(due) = retention::due(&log.events, now_ms, &policy) else {
                continue;
            };
            if !dry_run && !self.purge(&mut log, &due, now_ms, &policy).await? {
                continue;
            }
            done.push(Purge {
                tenant,
                asset,
                rule: due.rule,
                action: action_name(&due.action),
            });
        }
        if !dry_run && !done.is_empty() {
            tracing::info!(purged = done.len(), "retention purge done");
        }
        Ok(done)
    }

    /// Carry out one purge; `false` when another writer changed the asset first.
    async fn purge(
        &self,
        log: &mut AssetLog,
        due: &Due,
        now_ms: u64,
        policy: &retention::Policy,
    ) -> Result<bool, StorageError> {
        let asset = log.asset;
        let (what, blobs, shred) = match &due.action {
            Action::DeleteOriginal => (
                EventKind::Purged {
                    rule: due.rule,
                    blobs: vec![BlobRole::Original],
                    shredded: false,
                },
                vec![BlobRole::Original],
                false,
            ),
            Action::DeleteAll => (
                EventKind::Purged {
                    rule: due.rule,
                    blobs: vec![BlobRole::Original, BlobRole::Derivative],
                    shredded: true,
                },
                vec![BlobRole::Original, BlobRole::Derivative],
                true,
            ),
            Action::Reject(reason) => (
                EventKind::Rejected {
                    reason: reason.clone(),
                },
                Vec::new(),
                false,
            ),
        };
        // Recorded first, where the log still says it is due: a restriction (or any other
        // change) appended meanwhile wins, and nothing is deleted.
        let rule = due.rule;
        let appended = log
            .append_if(&self.storage, &self.signer, what, |l| {
                retention::due(&l.events, now_ms, policy).is_some_and(|d| d.rule == rule)
            })
            .await?;
        if !appended {
            return Ok(false);
        }
        if shred {
            self.storage.shred(asset).await?;
        }
        for role in blobs {
            self.storage.delete_blob(asset, role).await?;
        }
        let record = AuditRecord {
            actor: ACTOR.into(),
            tenant: log.arrival().map(|a| a.tenant),
            action: AuditAction::RetentionPurge,
            targets: vec![rule.as_str().into(), asset.to_string()],
        };
        self.storage.append_audit(&self.signer, record).await?;
        tracing::info!(asset.id = %asset, rule = rule.as_str(), "purged");
        Ok(true)
    }

    /// Run every `retention.interval_secs` until `shutdown`; each period only the worker that
    /// wins its lease runs. A failed run is logged and the next period tries again.
    pub async fn schedule(self: Arc<Self>, instance: Uuid, shutdown: CancellationToken) {
        let interval = self.settings.interval_secs.max(1);
        let mut ticks = tokio::time::interval(Duration::from_secs(interval));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let now = now_ms();
            let period = now / 1000 / interval;
            match self
                .storage
                .claim_lease("retention", period, instance)
                .await
            {
                Ok(true) => {
                    if let Err(e) = self.run_once(now, false).await {
                        tracing::warn!(error = %e, "retention run failed; the next one carries on");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "retention lease unavailable"),
            }
        }
    }
}
