//! `/v1/subjects/{ref}/...` and `PATCH /v1/consents/{id}`: a privacy officer's requests on a
//! subject — erase, restrict, unrestrict, object, export, the accounting of disclosures —
//! and the rectification of a consent. Each is carried out by the [`asepsis_rights::Desk`],
//! answers with its receipt (which the audit log holds), and is idempotent: repeated, it
//! changes nothing more and says so (`changed: false`).

use asepsis_common::apikey::Role;
use asepsis_common::consent::Consent;
use asepsis_common::rights::Disclosure;
use asepsis_rights::{Erasure, Restriction, Revision, RightsError};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio_util::compat::TokioAsyncWriteCompatExt;
use tokio_util::io::ReaderStream;
use utoipa::ToSchema;

use crate::AppState;
use crate::audit::{Period, millis};
use crate::auth::Caller;
use crate::consents::{parse_id, parse_json};
use crate::error::ApiError;

const OFFICER: &[Role] = &[Role::PrivacyOfficer];
/// Bytes of the export in flight between the bundle writer and the response.
const EXPORT_PIPE: usize = 256 * 1024;

impl From<RightsError> for ApiError {
    fn from(e: RightsError) -> Self {
        match e {
            RightsError::Invalid(why) => ApiError::Invalid(why),
            RightsError::Busy => ApiError::Conflict(e.to_string()),
            RightsError::NotFound => ApiError::NotFound,
            RightsError::Conflict(why) => ApiError::Conflict(why),
            RightsError::Store(e) => e.into(),
            RightsError::Queue(e) => ApiError::Unavailable(format!("queue unavailable: {e}")),
            RightsError::NoQueue => ApiError::Unavailable(e.to_string()),
            e => ApiError::internal(e),
        }
    }
}

/// Erase the subject: every asset unpublished at once, its blobs deleted and its key
/// shredded; the consents scrubbed to tombstones.
#[utoipa::path(post, path = "/v1/subjects/{ref}/erase", params(("ref" = String, Path, description = "the subject_ref of the tenant's consents")),
    responses((status = 200, description = "receipt, assets_erased, consents_erased, changed"), (status = 403), (status = 409, description = "another request for the subject is running"), (status = 422, description = "malformed reference")),
    security(("api_key" = [])))]
pub async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    Path(subject): Path<String>,
) -> Result<Json<Erasure>, ApiError> {
    caller.require(OFFICER)?;
    Ok(Json(state.desk.erase(&caller.actor(), &subject).await?))
}

/// Restrict the subject: its assets are frozen (not served, not processed, nothing deleted).
#[utoipa::path(post, path = "/v1/subjects/{ref}/restrict", params(("ref" = String, Path, description = "the subject_ref")),
    responses((status = 200, description = "receipt, restricted, consents, assets, changed"), (status = 403), (status = 409), (status = 422)),
    security(("api_key" = [])))]
pub async fn restrict(
    State(state): State<AppState>,
    caller: Caller,
    Path(subject): Path<String>,
) -> Result<Json<Restriction>, ApiError> {
    caller.require(OFFICER)?;
    Ok(Json(
        state.desk.restrict(&caller.actor(), &subject, true).await?,
    ))
}

/// Lift a restriction: what was waiting to be processed is queued again.
#[utoipa::path(post, path = "/v1/subjects/{ref}/unrestrict", params(("ref" = String, Path, description = "the subject_ref")),
    responses((status = 200, description = "receipt, restricted, consents, assets, requeued, changed"), (status = 403), (status = 409), (status = 422)),
    security(("api_key" = [])))]
pub async fn unrestrict(
    State(state): State<AppState>,
    caller: Caller,
    Path(subject): Path<String>,
) -> Result<Json<Restriction>, ApiError> {
    caller.require(OFFICER)?;
    Ok(Json(
        state
            .desk
            .restrict(&caller.actor(), &subject, false)
            .await?,
    ))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Objection {
    /// Purposes the subject objects to; each must be named by one of its consents.
    pub purposes: Vec<String>,
}

/// Object to purposes: removed from the subject's consents (a new version each); an asset
/// whose publication has no purpose left is unpublished.
#[utoipa::path(post, path = "/v1/subjects/{ref}/object", params(("ref" = String, Path, description = "the subject_ref")), request_body = Objection,
    responses((status = 200, description = "receipt, consents_revised, assets_unpublished, changed"), (status = 403), (status = 409), (status = 422, description = "no purpose, or one no consent names")),
    security(("api_key" = [])))]
pub async fn object(
    State(state): State<AppState>,
    caller: Caller,
    Path(subject): Path<String>,
    body: Bytes,
) -> Result<Json<Revision>, ApiError> {
    caller.require(OFFICER)?;
    let objection: Objection = parse_json(&body)?;
    let revision = state
        .desk
        .object(&caller.actor(), &subject, &objection.purposes)
        .await?;
    Ok(Json(revision))
}

/// The subject's data as a ZIP (streamed): manifest, consents with history, originals,
/// published derivatives, provenance, disclosures. Recorded as a disclosure to the subject.
#[utoipa::path(post, path = "/v1/subjects/{ref}/export", params(("ref" = String, Path, description = "the subject_ref")),
    responses((status = 200, description = "application/zip", content_type = "application/zip"), (status = 403), (status = 422)),
    security(("api_key" = [])))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(subject): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(OFFICER)?;
    let export = state.desk.prepare_export(&caller.actor(), &subject).await?;
    let receipt = export.receipt;
    let (writer, reader) = tokio::io::duplex(EXPORT_PIPE);
    tokio::spawn(async move {
        if let Err(e) = export.write(writer.compat_write()).await {
            // The client sees a truncated bundle (no central directory).
            tracing::warn!(receipt = %receipt, error = %e, "export cut short");
        }
    });
    let disposition = format!("attachment; filename=\"export-{receipt}.zip\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::HeaderName::from_static("x-receipt"),
                receipt.to_string(),
            ),
        ],
        Body::from_stream(ReaderStream::new(reader)),
    )
        .into_response())
}

/// The accounting of disclosures (45 CFR 164.528): each publication to the website and each
/// export, computed from the signed logs; `from`/`to` bound the period (default: all).
#[utoipa::path(get, path = "/v1/subjects/{ref}/disclosures", params(("ref" = String, Path, description = "the subject_ref"), Period),
    responses((status = 200, body = [Disclosure]), (status = 400, description = "a bad time"), (status = 403), (status = 422)),
    security(("api_key" = [])))]
pub async fn disclosures(
    State(state): State<AppState>,
    caller: Caller,
    Path(subject): Path<String>,
    Query(period): Query<Period>,
) -> Result<Json<Vec<Disclosure>>, ApiError> {
    caller.require(OFFICER)?;
    let from = millis("from", period.from.as_deref())?.unwrap_or(0);
    let to = millis("to", period.to.as_deref())?.unwrap_or(u64::MAX);
    let found = state
        .desk
        .disclosures(&caller.tenant, &subject, from, to)
        .await?;
    Ok(Json(found))
}

#[derive(Serialize, ToSchema)]
pub struct Rectified {
    /// The record as it now is: current version and history.
    #[schema(value_type = Object)]
    pub consent: Consent,
    #[schema(value_type = Object)]
    pub outcome: Revision,
}

/// Correct fields of a consent (a JSON merge patch of its terms): a new version, the old one
/// in its history. A narrowing that no longer allows publication unpublishes at once; a
/// widening republishes nothing by itself.
#[utoipa::path(patch, path = "/v1/consents/{id}", params(("id" = String, Path, description = "consent id")),
    request_body(content = Object, description = "the terms' fields to correct (RFC 7396 merge patch)"),
    responses((status = 200, body = Rectified), (status = 403), (status = 404), (status = 409), (status = 422, description = "names the field")),
    security(("api_key" = [])))]
pub async fn rectify(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Rectified>, ApiError> {
    caller.require(&[Role::Uploader, Role::PrivacyOfficer])?;
    let id = parse_id(&id)?;
    let patch: serde_json::Value = parse_json(&body)?;
    let (consent, outcome) = state.desk.rectify(&caller.actor(), id, &patch).await?;
    Ok(Json(Rectified { consent, outcome }))
}
