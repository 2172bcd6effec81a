//! `GET /v1/stats`: the tenant's assets counted per state, format, verdict and day, with
//! small cells suppressed (`asepsis_common::stats`), for operators and privacy officers.

use asepsis_common::apikey::Role;
use asepsis_common::stats::{self, AssetFacts, Stats};
use asepsis_store::asset::AssetLog;
use axum::Json;
use axum::extract::State;
use time::OffsetDateTime;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::summary::Summary;

/// What one asset's log contributes to the figures.
fn facts(log: &AssetLog) -> Option<AssetFacts> {
    let first = log.events.first()?;
    let at = i128::from(first.event.at_ms) * 1_000_000;
    let day = OffsetDateTime::from_unix_timestamp_nanos(at).ok()?.date();
    let summary = Summary::from(log);
    let state = serde_json::to_value(summary.state?)
        .ok()?
        .as_str()?
        .to_owned();
    Some(AssetFacts {
        state,
        format: summary.format?,
        verdict: summary.face_scan.unwrap_or_else(|| "not_scanned".into()),
        day: day.to_string(),
    })
}

/// Aggregate counts of the tenant's assets; no figure below `stats.min_count` is shown.
#[utoipa::path(get, path = "/v1/stats",
    responses((status = 200, description = "counts per state, format, verdict and day; small cells suppressed"), (status = 403)),
    security(("api_key" = [])))]
pub async fn get(State(state): State<AppState>, caller: Caller) -> Result<Json<Stats>, ApiError> {
    caller.require(&[Role::Operator, Role::PrivacyOfficer])?;
    let mut all = Vec::new();
    for asset in state.storage.tenant_assets(&caller.tenant).await? {
        let log = AssetLog::load(&state.storage, asset).await?;
        all.extend(facts(&log));
    }
    Ok(Json(stats::tally(&all, state.stats_min_count)))
}
