//! The operator's views: queue counts, dead letters (job id, asset id, reason, attempts, when;
//! never a body, a file name or a consent field) and their replay, as JSON under `/v1/ops/…`
//! and as the page under `/ops` ([`page`]). Every replay that moves something is written to the
//! signed audit log. `asepsis ctl` calls [`dead_letters`] and [`replay`] too, so the host
//! commands and the page cannot disagree.

pub mod page;
pub mod pulse;
mod session;

use asepsis_common::apikey::Role;
use asepsis_common::audit::{AuditAction, AuditRecord};
use asepsis_common::job::Job;
use asepsis_common::provenance::Signer;
use asepsis_queue::{Queue, QueueError, QueueStats, Replay};
use asepsis_store::{Storage, StorageError};
use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

pub use page::{Ops, run_sampler};

/// A dead letter as an operator sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetterView {
    /// The queue message's id: what a replay names.
    pub job_id: String,
    /// The asset the job was for; absent when the message is not a job this build reads.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub asset_id: Option<uuid::Uuid>,
    /// Why it was dead-lettered (a code path and ids, never PHI).
    pub reason: String,
    /// Deliveries made before it was given up.
    pub attempts: u32,
    /// When it was dead-lettered (ms since the Unix epoch), where the queue recorded it.
    pub dead_at_ms: Option<u64>,
}

/// Queue counts as `GET /v1/ops/queues` answers them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueueCounts {
    /// Waiting to be delivered.
    pub ready: u64,
    /// Delivered and not settled yet; absent where the backend cannot tell (RabbitMQ).
    pub in_flight: Option<u64>,
    /// Waiting out a retry delay.
    pub retrying: u64,
    /// Dead letters, waiting for an operator.
    pub dead: u64,
}

impl From<QueueStats> for QueueCounts {
    fn from(s: QueueStats) -> Self {
        QueueCounts {
            ready: s.ready,
            in_flight: s.in_flight,
            retrying: s.retrying,
            dead: s.dead,
        }
    }
}

/// What a replay moved back to the queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Replayed {
    /// The job ids now queued again.
    pub replayed: Vec<String>,
}

/// Why an ops action failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StorageError),
}

impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::Queue(QueueError::Unavailable(_)) => {
                ApiError::Unavailable("queue unavailable; retry".into())
            }
            OpsError::Queue(other) => ApiError::internal(other),
            OpsError::Store(e) => e.into(),
        }
    }
}

/// Every dead letter, oldest first, with the asset id read from its job.
///
/// # Errors
/// The queue cannot be read.
pub async fn dead_letters(queue: &dyn Queue) -> Result<Vec<DeadLetterView>, QueueError> {
    let letters = queue.dead_letters().await?;
    Ok(letters
        .into_iter()
        .map(|l| DeadLetterView {
            asset_id: Job::from_bytes(&l.body).ok().map(|job| job.asset_id),
            job_id: l.id,
            reason: l.reason,
            attempts: l.attempts,
            dead_at_ms: l.dead_at_ms,
        })
        .collect())
}

/// Who replays: an API key of a tenant, or `host:<user>` for `asepsis ctl`. Operators act
/// on the one queue every tenant shares (dead letters hold ids only); a replay is recorded
/// under the operator's tenant.
pub struct Actor {
    pub id: String,
    pub tenant: Option<String>,
}

/// Move `which` dead letters back to the queue, recorded in the audit log first: the actor
/// and the ids of the dead letters it names, so no replay goes unaudited (a store that fails
/// moves nothing). One that died between the listing and the move, and moved with `All`, is
/// recorded in a second entry after. A replay that names no dead letter is not recorded.
///
/// # Errors
/// The queue or the audit log fails.
pub async fn replay(
    queue: &dyn Queue,
    storage: &Storage,
    signer: &Signer,
    actor: Actor,
    which: Replay,
) -> Result<Vec<String>, OpsError> {
    let named: Vec<String> = queue
        .dead_letters()
        .await?
        .into_iter()
        .map(|l| l.id)
        .filter(|id| matches!(&which, Replay::All) || matches!(&which, Replay::One(w) if w == id))
        .collect();
    if named.is_empty() {
        return Ok(Vec::new());
    }
    let record = |targets: Vec<String>| AuditRecord {
        actor: actor.id.clone(),
        tenant: actor.tenant.clone(),
        action: AuditAction::Replay,
        targets,
    };
    storage.append_audit(signer, record(named.clone())).await?;
    let moved = queue.replay(which).await?;
    let unnamed: Vec<String> = moved
        .iter()
        .filter(|id| !named.contains(id))
        .cloned()
        .collect();
    if !unnamed.is_empty() {
        storage.append_audit(signer, record(unnamed)).await?;
    }
    Ok(moved)
}

impl Actor {
    /// An API key acting for its tenant.
    pub fn key(key_id: &str, tenant: &str) -> Self {
        Actor {
            id: key_id.to_owned(),
            tenant: Some(tenant.to_owned()),
        }
    }
}

fn actor(caller: &Caller) -> Actor {
    Actor::key(&caller.key_id, &caller.tenant)
}

/// Ready, in-flight, retrying and dead-letter counts.
#[utoipa::path(get, path = "/v1/ops/queues",
    responses((status = 200, body = QueueCounts), (status = 403), (status = 503)),
    security(("api_key" = [])))]
pub async fn queues(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<QueueCounts>, ApiError> {
    caller.require(&[Role::Operator])?;
    let stats = state.queue.stats().await.map_err(OpsError::from)?;
    Ok(Json(stats.into()))
}

/// The dead letters: job id, asset id, reason, attempts, when.
#[utoipa::path(get, path = "/v1/ops/dead-letters",
    responses((status = 200, body = Vec<DeadLetterView>), (status = 403), (status = 503)),
    security(("api_key" = [])))]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<DeadLetterView>>, ApiError> {
    caller.require(&[Role::Operator])?;
    let letters = dead_letters(state.queue.as_ref())
        .await
        .map_err(OpsError::from)?;
    Ok(Json(letters))
}

/// Queue one dead letter again (attempt 1); audited.
#[utoipa::path(post, path = "/v1/ops/dead-letters/{id}/replay",
    params(("id" = String, Path, description = "the dead letter's job id")),
    responses((status = 200, body = Replayed), (status = 403), (status = 404, description = "no dead letter has this id"), (status = 503)),
    security(("api_key" = [])))]
pub async fn replay_one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Replayed>, ApiError> {
    caller.require(&[Role::Operator])?;
    let which = Replay::One(id);
    let replayed = replay(
        &*state.queue,
        &state.storage,
        &state.signer,
        actor(&caller),
        which,
    )
    .await?;
    if replayed.is_empty() {
        return Err(ApiError::NotFound);
    }
    Ok(Json(Replayed { replayed }))
}

/// Queue every dead letter again; audited when any moved.
#[utoipa::path(post, path = "/v1/ops/dead-letters/replay",
    responses((status = 200, body = Replayed), (status = 403), (status = 503)),
    security(("api_key" = [])))]
pub async fn replay_all(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Replayed>, ApiError> {
    caller.require(&[Role::Operator])?;
    let replayed = replay(
        &*state.queue,
        &state.storage,
        &state.signer,
        actor(&caller),
        Replay::All,
    )
    .await?;
    Ok(Json(Replayed { replayed }))
}
