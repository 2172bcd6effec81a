//! `/v1/consents`: record a consent, read it back, withdraw it. Withdrawal (carried out by the
//! rights desk, under the subject's lock) cascades at once: each asset under the consent gets
//! a `withdrawn` event, its derivative is deleted and its data key shredded, so `/media` stops
//! serving it before this call returns.

use asepsis_common::apikey::Role;
use asepsis_common::consent::{Consent, Terms};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::AppState;
use crate::assets::{Keyed, claim_key, take_over};
use crate::auth::Caller;
use crate::error::ApiError;

const WRITERS: &[Role] = &[Role::Uploader, Role::PrivacyOfficer];

#[derive(Serialize, ToSchema)]
pub struct Created {
    pub id: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct Withdrawal {
    pub id: Uuid,
    /// RFC 3339.
    pub withdrawn_at: String,
    /// Assets that were withdrawn (unpublished, purged, shredded) by this call.
    pub assets_withdrawn: usize,
}

/// Parse a JSON body, naming the field that is wrong.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::BadRequest(format!("body is not valid JSON: {inner}"))
        } else if path == "." {
            ApiError::Invalid(inner.to_string())
        } else {
            ApiError::Invalid(format!("{path}: {inner}"))
        }
    })
}

pub(crate) fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound)
}

/// Record a consent.
#[utoipa::path(post, path = "/v1/consents", request_body = Terms,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retried request with the same key records no second consent")),
    responses((status = 201, body = Created), (status = 422, description = "a field is wrong; the message names it"), (status = 409, description = "the same Idempotency-Key is being used now")),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    caller.require(WRITERS)?;
    let terms: Terms = parse_json(&body)?;
    let now = OffsetDateTime::now_utc();
    terms
        .validate(now)
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    let id = match claim_key(&state, &caller, &headers, "consent\0").await?.0 {
        Keyed::New(id) => id,
        Keyed::Earlier(earlier) => match state.storage.consent(earlier.asset_id).await? {
            Some(consent) => return Ok((StatusCode::CREATED, Json(Created { id: consent.id }))),
            None => take_over(&state, &earlier, "a consent")?,
        },
    };
    let consent = Consent::new(id, caller.tenant, now, terms);
    // The subject's index first: every stored consent can be found by its subject.
    state.storage.index_subject_consent(&consent).await?;
    state.storage.put_consent(&consent).await?;
    tracing::info!(consent.id = %consent.id, "consent recorded");
    Ok((StatusCode::CREATED, Json(Created { id: consent.id })))
}

/// A tenant's consent, or 404.
pub(crate) async fn load(state: &AppState, caller: &Caller, id: Uuid) -> Result<Consent, ApiError> {
    let consent = state.storage.consent(id).await?.ok_or(ApiError::NotFound)?;
    caller.owns(&consent.tenant)?;
    Ok(consent)
}

/// Read a consent record: its current version and the versions before it.
#[utoipa::path(get, path = "/v1/consents/{id}", params(("id" = String, Path, description = "consent id")), responses((status = 200, body = Consent), (status = 404)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Consent>, ApiError> {
    caller.require(WRITERS)?;
    Ok(Json(load(&state, &caller, parse_id(&id)?).await?))
}

/// Withdraw a consent: its assets are unpublished, purged and shredded at once.
#[utoipa::path(post, path = "/v1/consents/{id}/withdraw", responses((status = 200, body = Withdrawal), (status = 404)),
    security(("api_key" = [])))]
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Withdrawal>, ApiError> {
    caller.require(WRITERS)?;
    let (consent, withdrawn) = state.desk.withdraw(&caller.actor(), parse_id(&id)?).await?;
    let withdrawn_at = consent.withdrawn_at.unwrap_or_else(OffsetDateTime::now_utc);
    Ok(Json(Withdrawal {
        id: consent.id,
        withdrawn_at: withdrawn_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        assets_withdrawn: withdrawn,
    }))
}
