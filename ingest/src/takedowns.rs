//! `/v1/takedowns`: DMCA notices entered by an operator or a privacy officer (a privacy
//! officer names only its tenant's assets), counter-notices filed by the uploader's tenant,
//! court actions, and the listing with upheld counts for the repeat-infringer policy. Each is
//! carried out by the [`asepsis_rights::Desk`]. A body's error names the element that is
//! wrong, never the value sent (a claimant's name is personal data).

use asepsis_common::apikey::Role;
use asepsis_common::consent::without_value;
use asepsis_common::takedown::{CounterForm, NoticeForm, Takedown};
use asepsis_rights::takedown::{Countered, Listing};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::AppState;
use crate::assets::{Keyed, claim_key, take_over};
use crate::auth::Caller;
use crate::consents::parse_id;
use crate::error::ApiError;

const DESK: &[Role] = &[Role::Operator, Role::PrivacyOfficer];

/// Parse a body that may hold personal data: the error names the path and the problem only.
fn parse_private<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::BadRequest("body is not valid JSON".into());
        }
        let problem = without_value(&inner.to_string());
        ApiError::Invalid(if path == "." {
            problem
        } else {
            format!("{path}: {problem}")
        })
    })
}

/// Operators see every tenant's; a privacy officer and an uploader their own tenant's.
fn scope(caller: &Caller) -> Option<&str> {
    (caller.role != Role::Operator).then_some(caller.tenant.as_str())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Entered {
    pub id: Uuid,
    pub status: &'static str,
    pub assets: usize,
    pub blocked_hashes: usize,
}

/// Enter a DMCA notice (17 U.S.C. 512(c)(3)): every named asset is taken down before the
/// answer (`/media` 404, nothing deleted), its tenant told (`asset.taken_down`), and its
/// perceptual hashes blocked from re-upload in every tenant.
#[utoipa::path(post, path = "/v1/takedowns",
    request_body(content = Object, description = r#"{"assets": [ids or /media URLs], "claimant": {"name", "contact"}, "work", "statements": {"good_faith": true, "accurate_under_penalty_of_perjury": true}, "signature"}"#),
    params(("Idempotency-Key" = Option<String>, Header, description = "a retried notice with the same key enters no second take-down")),
    responses((status = 201, body = Entered), (status = 403), (status = 409, description = "another request on it is running"), (status = 422, description = "names the missing element and its clause")),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Entered>), ApiError> {
    caller.require(DESK)?;
    let form: NoticeForm = parse_private(&body)?;
    let id = match claim_key(&state, &caller, &headers, "takedown\0").await?.0 {
        Keyed::New(id) => id,
        Keyed::Earlier(earlier) => match state.storage.takedown(earlier.asset_id).await? {
            // The notice was entered before (the answer was lost): the same answer.
            Some(t) => return Ok((StatusCode::CREATED, Json(Entered::of(&t)))),
            None => take_over(&state, &earlier, "a notice")?,
        },
    };
    let entered = state
        .desk
        .take_down(&caller.actor(), form, scope(&caller), id)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Entered {
            id: entered.id,
            status: "taken_down",
            assets: entered.assets,
            blocked_hashes: entered.blocked_hashes,
        }),
    ))
}

impl Entered {
    fn of(t: &Takedown) -> Self {
        Self {
            id: t.id,
            status: t.status(),
            assets: t.assets.len(),
            blocked_hashes: t.assets.iter().map(|a| a.blocked_hashes as usize).sum(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct View {
    pub status: &'static str,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub takedown: Takedown,
}

/// A take-down's status and timeline (received, notified, counter-noticed with the restore's
/// due date, restored or upheld), per asset; an uploader sees its own tenant's assets only.
#[utoipa::path(get, path = "/v1/takedowns/{id}", params(("id" = String, Path, description = "take-down id")),
    responses((status = 200, body = View), (status = 404)),
    security(("api_key" = [])))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<View>, ApiError> {
    caller.require(&[Role::Operator, Role::PrivacyOfficer, Role::Uploader])?;
    let takedown = state.desk.takedown(parse_id(&id)?, scope(&caller)).await?;
    Ok(Json(View {
        status: takedown.status(),
        takedown,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct Filter {
    /// Only take-downs naming an asset uploaded with this API key id.
    pub uploader: Option<String>,
}

/// Take-downs, oldest first, with the notices upheld per uploader key and per tenant (the
/// repeat-infringer policy's counts).
#[utoipa::path(get, path = "/v1/takedowns", params(Filter),
    responses((status = 200, description = "takedowns and upheld counts by_uploader, by_tenant"), (status = 403)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(filter): Query<Filter>,
) -> Result<Json<Listing>, ApiError> {
    caller.require(DESK)?;
    let listing = state
        .desk
        .takedowns(scope(&caller), filter.uploader.as_deref())
        .await?;
    Ok(Json(listing))
}

/// File a counter-notice (17 U.S.C. 512(g)(3)) for the caller's tenant's assets: the claimant
/// is told (`asset.counter_noticed`), and the restore is scheduled
/// `takedown.restore_after_business_days` US business days later.
#[utoipa::path(post, path = "/v1/takedowns/{id}/counter-notice", params(("id" = String, Path, description = "take-down id")),
    request_body(content = Object, description = r#"{"statements": {"good_faith_mistake": true, "consent_to_jurisdiction": true}, "signature", "contact"?}"#),
    responses((status = 200, body = Object, description = "id, restore_due, changed"), (status = 404), (status = 409, description = "the take-down stands or its window closed"), (status = 422)),
    security(("api_key" = [])))]
pub async fn counter_notice(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Countered>, ApiError> {
    caller.require(&[Role::Uploader])?;
    let id = parse_id(&id)?;
    let form: CounterForm = parse_private(&body)?;
    Ok(Json(
        state.desk.counter_notice(&caller.actor(), id, form).await?,
    ))
}

/// Record that the claimant filed a court action: every pending restore is cancelled and the
/// take-down stands (upheld).
#[utoipa::path(post, path = "/v1/takedowns/{id}/court-action", params(("id" = String, Path, description = "take-down id")),
    responses((status = 200, body = View), (status = 404), (status = 409, description = "already restored")),
    security(("api_key" = [])))]
pub async fn court_action(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<View>, ApiError> {
    caller.require(DESK)?;
    let id = parse_id(&id)?;
    let takedown = state
        .desk
        .court_action(&caller.actor(), id, scope(&caller))
        .await?;
    Ok(Json(View {
        status: takedown.status(),
        takedown,
    }))
}
