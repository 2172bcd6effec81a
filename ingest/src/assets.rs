//! `/v1/assets`: upload (streamed, encrypted as it arrives, answered 202 only once the job is
//! confirmed), status, provenance, and the reviewer's queue and decisions.
//!
//! An upload is sniffed by its first bytes (never the client's file name or content type),
//! never held whole in memory, and counted against the size limit as it streams. A retried
//! upload with the same `Idempotency-Key` answers with the asset the first one made.

use std::time::Duration;

use asepsis_common::apikey::Role;
use asepsis_common::audit::AuditAction;
use asepsis_common::consent::Consent;
use asepsis_common::envelope::BlobRole;
use asepsis_common::job::Job;
use asepsis_common::media::{Format, SNIFF_LEN, sniff};
use asepsis_common::policy::{Decision, ReviewDecision};
use asepsis_common::provenance::{self, AssetState, EventKind, EventName};
use asepsis_common::sha256_hex;
use asepsis_store::asset::{Appended, AssetLog, Published};
use asepsis_store::{BlobInfo, Claim, IdempotencyRecord, StorageError, now_ms};
use axum::Json;
use axum::body::Bytes;
use axum::extract::multipart::Field;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::SinkExt;
use futures::channel::mpsc;
use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::task::JoinHandle;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Caller;
use crate::consents::{parse_id, parse_json};
use crate::error::ApiError;
use crate::summary::Summary;

const READERS: &[Role] = &[
    Role::Uploader,
    Role::Reviewer,
    Role::PrivacyOfficer,
    Role::Operator,
];

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub id: Uuid,
    pub status_url: String,
}

/// The multipart form of `POST /v1/assets` (for the document: the handler reads the parts as
/// they stream).
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The image: JPEG, PNG, WebP, TIFF, HEIF/HEIC or AVIF.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The consent that covers this image.
    consent_id: Uuid,
    /// The import batch it belongs to (`POST /v1/batches`), if any.
    batch_id: Option<Uuid>,
}

fn accepted(id: Uuid) -> Response {
    let status_url = format!("/v1/assets/{id}");
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, status_url.clone())],
        Json(Accepted { id, status_url }),
    )
        .into_response()
}

/// Can this consent cover an upload by this caller now? 422 naming `consent_id` if not.
async fn usable_consent(
    state: &AppState,
    caller: &Caller,
    text: &str,
) -> Result<Consent, ApiError> {
    let invalid = |why: &str| ApiError::Invalid(format!("consent_id: {why}"));
    let id = Uuid::parse_str(text.trim()).map_err(|_| invalid("not a consent id"))?;
    let consent = match state.storage.consent(id).await? {
        Some(c) if c.tenant == caller.tenant => c,
        _ => {
            return Err(invalid(
                "no such consent; record one with POST /v1/consents",
            ));
        }
    };
    consent
        .check_for_upload(OffsetDateTime::now_utc())
        .map_err(|why| invalid(&why.to_string()))?;
    Ok(consent)
}

/// Room for the multipart framing and the other fields around the file.
pub(crate) const MULTIPART_FRAMING: u64 = 1 << 20;

fn too_large(state: &AppState) -> ApiError {
    ApiError::TooLarge(format!(
        "file: larger than the limit of {} bytes",
        state.max_upload_bytes
    ))
}

fn multipart_error(state: &AppState, e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(state)
    } else {
        ApiError::BadRequest(format!("multipart body: {}", e.body_text()))
    }
}

/// Is this the caller's tenant's batch? 422 naming `batch_id` if not.
async fn usable_batch(state: &AppState, caller: &Caller, text: &str) -> Result<Uuid, ApiError> {
    let invalid = |why: &str| ApiError::Invalid(format!("batch_id: {why}"));
    let id = Uuid::parse_str(text.trim()).map_err(|_| invalid("not a batch id"))?;
    match crate::batches::owned(state, caller, id).await? {
        Some(batch) => Ok(batch.id),
        None => Err(invalid("no such batch; open one with POST /v1/batches")),
    }
}

/// What a streamed file came to.
struct Stored {
    format: Format,
    size_bytes: u64,
    sha256: String,
}

/// Stream the `file` field into the asset's encrypted original: sniff the first bytes, then
/// pipe chunks to the store while counting and hashing them.
async fn store_file(
    state: &AppState,
    unfinished: &mut Unfinished,
    mut field: Field<'_>,
) -> Result<Stored, ApiError> {
    let asset = unfinished.asset;
    let too_large = || too_large(state);
    let read_error = |e| multipart_error(state, e);
    let mut head = Vec::with_capacity(SNIFF_LEN);
    let mut pending = Vec::new();
    while head.len() < SNIFF_LEN {
        match field.chunk().await.map_err(read_error)? {
            Some(chunk) => {
                head.extend_from_slice(&chunk[..chunk.len().min(SNIFF_LEN - head.len())]);
                pending.push(chunk);
            }
            None => break,
        }
    }
    let format = match sniff(&head) {
        Some(format) => format,
        None => {
            return Err(ApiError::Unsupported(
                "file: not a supported image (JPEG, PNG, WebP, TIFF, HEIF/HEIC, AVIF or DICOM); \
                 the format is read from the file's bytes, not its name"
                    .into(),
            ));
        }
    };
    let (mut tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let storage = state.storage.clone();
    let reader = tokio_util::io::StreamReader::new(rx);
    // Held by `unfinished`: if this request is dropped, the write is aborted and awaited
    // before what it stored is deleted, so a cut-off body never completes as a blob.
    let upload = unfinished.writing.insert(tokio::spawn(async move {
        storage.put_blob(asset, BlobRole::Original, reader).await
    }));
    let mut hash = Context::new(&SHA256);
    let mut size: u64 = 0;
    let mut failure = None;
    let mut next = pending.into_iter();
    loop {
        let chunk = match next.next() {
            Some(chunk) => chunk,
            None => match field.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    failure = Some(read_error(e));
                    break;
                }
            },
        };
        size += chunk.len() as u64;
        if size > state.max_upload_bytes {
            failure = Some(too_large());
            break;
        }
        hash.update(&chunk);
        if tx.send(Ok(chunk)).await.is_err() {
            break; // the store side failed; its error comes from `upload` below
        }
    }
    if failure.is_some() {
        // Make the store side abort its multipart upload rather than finish it.
        let _ = tx
            .send(Err(std::io::Error::other("upload abandoned")))
            .await;
    }
    drop(tx);
    let stored = upload.await.map_err(ApiError::internal);
    unfinished.writing = None;
    let stored = stored?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    stored?;
    Ok(Stored {
        format,
        size_bytes: size,
        sha256: hex::encode(hash.finish()),
    })
}

/// An upload not yet recorded. Dropped before [`Unfinished::recorded`] (an error, or the
/// client gone mid-body, which drops the request), it deletes what it stored and frees its
/// Idempotency-Key, so the client's retry starts afresh instead of waiting out the lease.
struct Unfinished {
    storage: asepsis_store::Storage,
    asset: Uuid,
    key: Option<HeldKey>,
    /// The task writing the original, while it runs.
    writing: Option<JoinHandle<Result<BlobInfo, StorageError>>>,
    recorded: bool,
}

impl Unfinished {
    fn recorded(mut self) {
        self.recorded = true;
    }

    /// Discard it now (before answering a refusal, so that a retry finds the key free).
    async fn discard(mut self) {
        self.recorded = true;
        forget(self.storage.clone(), self.asset, self.key.take()).await;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (storage, asset, key) = (self.storage.clone(), self.asset, self.key.take());
        let writing = self.writing.take();
        runtime.spawn(async move {
            if let Some(writing) = writing {
                writing.abort();
                let _ = writing.await; // cancelled, or done: either way it writes no more
            }
            forget(storage, asset, key).await;
        });
    }
}

async fn forget(storage: asepsis_store::Storage, asset: Uuid, key: Option<HeldKey>) {
    if let Err(e) = storage.forget_upload(asset).await {
        tracing::warn!(asset.id = %asset, error = %e, "could not discard an incomplete upload");
        return; // the key stays claimed: a retry takes over once its lease ends
    }
    if let Some(key) = key
        && let Err(e) = storage.release_idempotency(&key.tenant, &key.sha256).await
    {
        tracing::warn!(asset.id = %asset, error = %e, "could not free an Idempotency-Key");
    }
}

/// Publish the job and wait for the broker's confirm.
async fn enqueue(state: &AppState, asset: Uuid) -> Result<(), ApiError> {
    state
        .queue
        .publish(&Job::new(asset).to_bytes())
        .await
        .map(|_| ())
        .map_err(|e| {
            tracing::warn!(asset.id = %asset, error = %e, "job not confirmed");
            ApiError::Unavailable(
                "the job queue did not confirm; retry the upload with the same Idempotency-Key"
                    .into(),
            )
        })
}

/// What an `Idempotency-Key` says of a request that creates a record (an asset, a take-down).
pub(crate) enum Keyed {
    /// No key, or a key never seen: work on this new id.
    New(Uuid),
    /// The key was claimed before, for this id: answer as the first attempt did, or, when it
    /// died before recording anything, [`take_over`] its work.
    Earlier(IdempotencyRecord),
}

/// An Idempotency-Key as stored (hashed), to free it when the work it claimed fails.
pub(crate) struct HeldKey {
    tenant: String,
    sha256: String,
}

/// Claim the request's `Idempotency-Key` within `namespace` (the same key on two kinds of
/// request names two things) for a new id; with the key, when one was sent (a blank one is
/// none).
///
/// # Errors
/// 400 when the key is more than 255 visible ASCII characters; store failures.
pub(crate) async fn claim_key(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    namespace: &str,
) -> Result<(Keyed, Option<HeldKey>), ApiError> {
    let id = Uuid::new_v4();
    let Some(key) = headers.get("idempotency-key") else {
        return Ok((Keyed::New(id), None));
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| k.len() <= 255)
        .ok_or_else(|| {
            ApiError::BadRequest("Idempotency-Key: at most 255 visible ASCII characters".into())
        })?
        .trim();
    if key.is_empty() {
        return Ok((Keyed::New(id), None));
    }
    let key_sha256 = sha256_hex(format!("{namespace}{key}").as_bytes());
    let claim = IdempotencyRecord {
        asset_id: id,
        started_at_ms: now_ms(),
    };
    let keyed = match state
        .storage
        .claim_idempotency(&caller.tenant, &key_sha256, &claim)
        .await?
    {
        Claim::Created => Keyed::New(id),
        Claim::Existing(earlier) => Keyed::Earlier(earlier),
    };
    let held = HeldKey {
        tenant: caller.tenant.clone(),
        sha256: key_sha256,
    };
    Ok((keyed, Some(held)))
}

/// The earlier attempt's id, to finish its work, once its lease has run out.
///
/// # Errors
/// 409 while the earlier attempt may still be running.
pub(crate) fn take_over(
    state: &AppState,
    earlier: &IdempotencyRecord,
    what: &str,
) -> Result<Uuid, ApiError> {
    let lease = u64::try_from(state.idempotency_lease.as_millis()).unwrap_or(u64::MAX);
    if now_ms() < earlier.started_at_ms.saturating_add(lease) {
        return Err(ApiError::Conflict(format!(
            "{what} with this Idempotency-Key is in progress; retry in a minute"
        )));
    }
    Ok(earlier.asset_id)
}

/// Upload an image under a consent.
#[utoipa::path(post, path = "/v1/assets",
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    params(("Idempotency-Key" = Option<String>, Header, description = "a retried upload with the same key makes no second asset")),
    responses((status = 202, body = Accepted), (status = 413), (status = 415), (status = 422), (status = 409, description = "the same Idempotency-Key is being uploaded now")),
    security(("api_key" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Uploader])?;
    // A body declared larger than any upload may be is refused before a byte is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_upload_bytes.saturating_add(MULTIPART_FRAMING)) {
        return Err(too_large(&state));
    }
    let mut form =
        form.map_err(|e| ApiError::BadRequest(format!("multipart body: {}", e.body_text())))?;
    let (keyed, key) = claim_key(&state, &caller, &headers, "").await?;
    let asset = match keyed {
        Keyed::New(id) => id,
        Keyed::Earlier(earlier) => {
            let log = AssetLog::load(&state.storage, earlier.asset_id).await?;
            if log.has(EventName::Received) {
                // The first attempt got its asset; make sure its job is queued, answer alike.
                enqueue(&state, earlier.asset_id).await?;
                return Ok(accepted(earlier.asset_id));
            }
            // The first attempt died before recording anything: finish its work.
            take_over(&state, &earlier, "an upload")?
        }
    };
    let mut unfinished = Unfinished {
        storage: state.storage.clone(),
        asset,
        key,
        writing: None,
        recorded: false,
    };
    let mut consent: Option<Consent> = None;
    let mut batch: Option<Uuid> = None;
    let mut stored: Option<Stored> = None;
    let outcome: Result<(), ApiError> = async {
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| multipart_error(&state, e))?
        {
            match field.name() {
                Some("consent_id") if consent.is_none() => {
                    let text = field
                        .text()
                        .await
                        .map_err(|_| ApiError::BadRequest("consent_id: unreadable".into()))?;
                    consent = Some(usable_consent(&state, &caller, &text).await?);
                }
                Some("batch_id") if batch.is_none() => {
                    let text = field
                        .text()
                        .await
                        .map_err(|_| ApiError::BadRequest("batch_id: unreadable".into()))?;
                    // A form's empty field is no batch.
                    if !text.trim().is_empty() {
                        batch = Some(usable_batch(&state, &caller, &text).await?);
                    }
                }
                Some("file") if stored.is_none() => {
                    stored = Some(store_file(&state, &mut unfinished, field).await?);
                }
                Some(name @ ("file" | "consent_id" | "batch_id")) => {
                    return Err(ApiError::Invalid(format!("{name}: sent twice; send one")));
                }
                _ => {
                    return Err(ApiError::Invalid(
                        "unexpected form field; send only file, consent_id and batch_id".into(),
                    ));
                }
            }
        }
        Ok(())
    }
    .await;
    let (consent, stored) = match (outcome, consent, stored) {
        (Ok(()), Some(consent), Some(stored)) => (consent, stored),
        (outcome, consent, _) => {
            unfinished.discard().await;
            return Err(match (outcome, consent) {
                (Err(e), _) => e,
                (Ok(()), None) => ApiError::Invalid("consent_id: missing".into()),
                (Ok(()), Some(_)) => ApiError::Invalid("file: missing".into()),
            });
        }
    };
    state
        .storage
        .index_asset(&caller.tenant, consent.id, asset)
        .await?;
    if let Some(batch) = batch {
        state.storage.index_batch_asset(batch, asset).await?;
    }
    let mut log = AssetLog::load(&state.storage, asset).await?;
    // From here a failure may have recorded the arrival: keep what was stored (a retry with
    // the key finds it, or takes over once the lease ends).
    unfinished.recorded();
    if !log.has(EventName::Received) {
        let what = EventKind::Received {
            tenant: caller.tenant.clone(),
            consent_id: consent.id,
            format: stored.format,
            size_bytes: stored.size_bytes,
            sha256: stored.sha256,
            uploader: Some(caller.key_id.clone()),
            batch_id: batch,
        };
        log.append(&state.storage, &state.signer, what).await?;
    }
    if consent.restricted_at.is_some() {
        // Accepted and frozen with the rest of its subject's data until the restriction is
        // lifted (which queues it again).
        log.freeze(&state.storage, &state.signer, consent.id)
            .await?;
    }
    enqueue(&state, asset).await?;
    crate::telemetry::received(stored.size_bytes);
    tracing::info!(
        asset.id = %asset,
        consent.id = %consent.id,
        format = stored.format.name(),
        size_bytes = stored.size_bytes,
        "asset received"
    );
    Ok(accepted(asset))
}

/// A tenant's asset log, or 404.
async fn owned_log(state: &AppState, caller: &Caller, id: &str) -> Result<AssetLog, ApiError> {
    let log = AssetLog::load(&state.storage, parse_id(id)?).await?;
    let arrival = log.arrival().ok_or(ApiError::NotFound)?;
    caller.owns(&arrival.tenant)?;
    Ok(log)
}

/// An asset's state, decision and the names of the metadata removed.
#[utoipa::path(get, path = "/v1/assets/{id}", responses((status = 200, body = Summary), (status = 404)),
    security(("api_key" = [])))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Summary>, ApiError> {
    caller.require(READERS)?;
    Ok(Json(Summary::from(&owned_log(&state, &caller, &id).await?)))
}

/// The asset's signed event log as W3C PROV JSON.
#[utoipa::path(get, path = "/v1/assets/{id}/provenance", responses((status = 200, description = "PROV-JSON"), (status = 404)),
    security(("api_key" = [])))]
pub async fn provenance(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(READERS)?;
    let log = owned_log(&state, &caller, &id).await?;
    Ok(Json(provenance::to_prov(log.asset, &log.events)))
}

/// Held for a reviewer: the latest decision on it is a `hold` verdict, or its unpublishing
/// by a narrowed consent, that no review has answered yet.
fn awaiting_review(log: &AssetLog) -> bool {
    log.state() == Some(AssetState::Held)
        && matches!(
            log.events
                .iter()
                .rev()
                .map(|e| &e.event.what)
                .find(|w| matches!(
                    w,
                    EventKind::Verdict { .. }
                        | EventKind::Unpublished { .. }
                        | EventKind::Reviewed { .. }
                )),
            Some(
                EventKind::Verdict {
                    decision: Decision::Hold,
                    ..
                } | EventKind::Unpublished { .. }
            )
        )
}

/// The tenant's assets held for review.
#[utoipa::path(get, path = "/v1/review", responses((status = 200, body = [Summary])),
    security(("api_key" = [])))]
pub async fn review_queue(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Summary>>, ApiError> {
    caller.require(&[Role::Reviewer])?;
    let mut held = Vec::new();
    for asset in state.storage.tenant_assets(&caller.tenant).await? {
        let log = AssetLog::load(&state.storage, asset).await?;
        if awaiting_review(&log) {
            held.push(Summary::from(&log));
        }
    }
    Ok(Json(held))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Review {
    pub decision: ReviewDecision,
}

/// Approve (publish, if the consent still allows) or reject a held asset.
#[utoipa::path(post, path = "/v1/assets/{id}/review", request_body = Review,
    responses((status = 200, body = Summary), (status = 409, description = "not held for review, or the consent no longer allows publication")),
    security(("api_key" = [])))]
pub async fn review(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Summary>, ApiError> {
    caller.require(&[Role::Reviewer])?;
    let review: Review = parse_json(&body)?;
    let mut log = owned_log(&state, &caller, &id).await?;
    if !awaiting_review(&log) {
        let state_name = log
            .state()
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(ApiError::Conflict(format!(
            "the asset is {state_name}, not held for review"
        )));
    }
    let consent = match log.arrival() {
        Some(arrival) => state.storage.consent(arrival.consent_id).await?,
        None => None,
    }
    .ok_or_else(|| ApiError::internal("asset without its consent record"))?;
    let changed = || ApiError::Conflict("the asset changed meanwhile; reload it".into());
    // A copy of content taken down since it was held is never published: rejected instead.
    if matches!(review.decision, ReviewDecision::Approve)
        && let Some(pdq) = log.pdq()
        && let Some(notice) = state
            .blocklist
            .matching(&[pdq], log.asset, state.match_distance)
            .await?
    {
        let reason = format!("matches content taken down under notice {notice}");
        let what = EventKind::Rejected {
            reason: reason.clone(),
        };
        if log.append(&state.storage, &state.signer, what).await? == Appended::LostRace {
            return Err(changed());
        }
        announce(&state, &log).await;
        return Err(ApiError::Conflict(format!(
            "not published: {reason}; the asset is rejected"
        )));
    }
    let what = EventKind::Reviewed {
        decision: review.decision,
        by_key: caller.key_id.clone(),
    };
    if log.append(&state.storage, &state.signer, what).await? == Appended::LostRace {
        return Err(changed());
    }
    if matches!(review.decision, ReviewDecision::Approve) {
        let now = OffsetDateTime::now_utc();
        match log
            .publish(&state.storage, &state.signer, &consent, now)
            .await?
        {
            Published::Now | Published::Already => {}
            Published::Refused(why) => {
                return Err(ApiError::Conflict(format!("not published: {why}")));
            }
            Published::LostRace => return Err(changed()),
        }
    }
    let targets = vec![log.asset.to_string(), review.decision.as_str().to_owned()];
    crate::audit::record(&state, &caller, AuditAction::Review, targets).await?;
    announce(&state, &log).await;
    tracing::info!(asset.id = %log.asset, decision = review.decision.as_str(), "review recorded");
    Ok(Json(Summary::from(&log)))
}

/// Tell listeners where the asset now is; a failure is logged, not fatal (the event is
/// durable, and listeners can poll the status).
pub(crate) async fn announce(state: &AppState, log: &AssetLog) {
    let Some(note) = log.notification() else {
        return;
    };
    if let Err(e) = state.notifier.notify(&note).await {
        tracing::warn!(asset.id = %log.asset, error = %e, "notification not sent");
    }
}

/// How long an unfinished upload holds its Idempotency-Key before a retry may take over.
pub fn default_idempotency_lease(request_timeout: Duration) -> Duration {
    request_timeout * 2
}
