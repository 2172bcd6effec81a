//! `/v1/batches`: a hospital's import named as one unit. An uploader opens a batch saying how
//! many files it will send, names it on each upload (multipart `batch_id`), and follows it:
//! counts per state, `done` once every expected file has settled, and the rejected ones with
//! their reasons. A batch belongs to its tenant; its label is returned, never logged.

use asepsis_common::apikey::Role;
use asepsis_common::batch::{AssetPlace, Batch, NewBatch, Tally};
use asepsis_store::asset::AssetLog;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::assets::{Keyed, claim_key, take_over};
use crate::auth::Caller;
use crate::consents::{Created, parse_id, parse_json};
use crate::error::ApiError;
use crate::summary::Summary;

/// Asset logs read at once for a batch's tally.
const LOADS_AT_ONCE: usize = 16;

/// Where a batch's assets are.
#[derive(Serialize, ToSchema)]
pub struct BatchStatus {
    pub id: Uuid,
    pub label: String,
    /// RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub created_at: OffsetDateTime,
    #[serde(flatten)]
    pub tally: Tally,
}

/// Open a batch for an import; name it on each upload as the multipart field `batch_id`.
#[utoipa::path(post, path = "/v1/batches", request_body = NewBatch,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retried request with the same key opens no second batch")),
    responses((status = 201, body = Created), (status = 422, description = "a field is wrong; the message names it"), (status = 409, description = "the same Idempotency-Key is being used now")),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    caller.require(&[Role::Uploader])?;
    let asked: NewBatch = parse_json(&body)?;
    asked
        .validate()
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    let id = match claim_key(&state, &caller, &headers, "batch\0").await?.0 {
        Keyed::New(id) => id,
        Keyed::Earlier(earlier) => match state.storage.batch(earlier.asset_id).await? {
            Some(batch) => return Ok((StatusCode::CREATED, Json(Created { id: batch.id }))),
            None => take_over(&state, &earlier, "a batch")?,
        },
    };
    let batch = Batch {
        id,
        tenant: caller.tenant.clone(),
        label: asked.label,
        expected: asked.expected,
        created_at: OffsetDateTime::now_utc(),
        created_by: caller.key_id.clone(),
    };
    state.storage.put_batch(&batch).await?;
    tracing::info!(batch.id = %id, expected = batch.expected, "batch opened");
    Ok((StatusCode::CREATED, Json(Created { id })))
}

/// The caller's tenant's batch, or `None`.
pub(crate) async fn owned(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<Option<Batch>, ApiError> {
    Ok(state
        .storage
        .batch(id)
        .await?
        .filter(|b| b.tenant == caller.tenant))
}

/// Where a batch's assets are: counts per state, whether every expected file has settled,
/// and the rejected ones with their reasons.
#[utoipa::path(get, path = "/v1/batches/{id}", params(("id" = String, Path, description = "batch id")),
    responses((status = 200, body = BatchStatus), (status = 404)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<BatchStatus>, ApiError> {
    caller.require(&[Role::Uploader, Role::Reviewer, Role::Operator])?;
    let batch = owned(&state, &caller, parse_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    let tally = tally(&state, &batch).await?;
    Ok(Json(BatchStatus {
        id: batch.id,
        label: batch.label,
        created_at: batch.created_at,
        tally,
    }))
}

/// Where the batch's assets are now (every asset's log is read).
pub(crate) async fn tally(state: &AppState, batch: &Batch) -> Result<Tally, ApiError> {
    let assets = state.storage.batch_assets(batch.id).await?;
    // An upload indexed but cut short before its `received` event has an empty log: it is
    // not an asset, and its retry is indexed again under the id it gets.
    let places: Vec<Option<AssetPlace>> = futures::stream::iter(assets)
        .map(|asset| {
            let storage = state.storage.clone();
            async move {
                let log = AssetLog::load(&storage, asset).await?;
                let summary = Summary::from(&log);
                Ok::<_, ApiError>(log.arrival().map(|_| AssetPlace {
                    asset,
                    state: summary.state,
                    reason: summary.reason,
                }))
            }
        })
        .buffered(LOADS_AT_ONCE)
        .try_collect()
        .await?;
    let places: Vec<AssetPlace> = places.into_iter().flatten().collect();
    Ok(Tally::of(batch.expected, &places))
}
