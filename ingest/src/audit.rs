//! The signed audit log at the HTTP edge: [`record`], which a handler calls once its
//! privileged action is done (as the calling key, for its tenant), and `GET /v1/audit`, the
//! tenant's entries for operators and privacy officers. Entries carry ids only.

use asepsis_common::apikey::Role;
use asepsis_common::audit::{AuditAction, AuditRecord, SignedAuditEntry};
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// Append what `caller` did to the audit log.
pub(crate) async fn record(
    state: &AppState,
    caller: &Caller,
    action: AuditAction,
    targets: Vec<String>,
) -> Result<(), ApiError> {
    let record = AuditRecord {
        actor: caller.key_id.clone(),
        tenant: Some(caller.tenant.clone()),
        action,
        targets,
    };
    state.storage.append_audit(&state.signer, record).await?;
    Ok(())
}

#[derive(Deserialize, IntoParams)]
pub struct Period {
    /// At or after this time (RFC 3339).
    pub(crate) from: Option<String>,
    /// Before this time (RFC 3339).
    pub(crate) to: Option<String>,
}

pub(crate) fn millis(name: &str, value: Option<&str>) -> Result<Option<u64>, ApiError> {
    value
        .map(|v| {
            let at = OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                ApiError::BadRequest(format!(
                    "{name}: not an RFC 3339 time (2026-12-01T00:00:00Z)"
                ))
            })?;
            Ok(u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
        })
        .transpose()
}

/// The caller's tenant's entries of the signed audit log, oldest first.
#[utoipa::path(get, path = "/v1/audit", params(Period),
    responses((status = 200, description = "signed audit entries: seq, time, actor key id, action, target ids"), (status = 400), (status = 403)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(period): Query<Period>,
) -> Result<Json<Vec<SignedAuditEntry>>, ApiError> {
    caller.require(&[Role::Operator, Role::PrivacyOfficer])?;
    let from = millis("from", period.from.as_deref())?.unwrap_or(0);
    let to = millis("to", period.to.as_deref())?.unwrap_or(u64::MAX);
    let entries = state
        .storage
        .audit_log()
        .await?
        .into_iter()
        .filter(|e| e.entry.record.tenant.as_deref() == Some(caller.tenant.as_str()))
        .filter(|e| (from..to).contains(&e.entry.at_ms))
        .collect();
    Ok(Json(entries))
}
