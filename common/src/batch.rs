//! Batches: a hospital's import named as one unit (`POST /v1/batches`), and the tally of where
//! its assets are (`GET /v1/batches/{id}`).
//!
//! Pure: the request's rules and the fold of asset states into counts; storing a batch and
//! loading its assets' logs is `asepsis-store`'s business. A label is the tenant's own text and
//! may name a department or a date; it is returned to the tenant, never logged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::provenance::AssetState;

/// Longest label accepted, in bytes.
pub const MAX_LABEL: usize = 200;
/// Most files one batch may announce.
pub const MAX_EXPECTED: u64 = 1_000_000;

/// What a client asks for (`POST /v1/batches`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewBatch {
    /// The tenant's name for the import (a department, a date); returned, never logged.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 200, pattern = r"\S")
    )]
    pub label: String,
    /// How many files the import will upload into it.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub expected: u64,
}

/// A request field that is not acceptable, and why (never its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: &'static str,
    pub problem: String,
}

impl NewBatch {
    /// # Errors
    /// An empty or overlong label, or `expected` of 0 or above [`MAX_EXPECTED`].
    pub fn validate(&self) -> Result<(), FieldError> {
        let problem = |field, problem: String| Err(FieldError { field, problem });
        if self.label.trim().is_empty() {
            return problem("label", "must not be empty".into());
        }
        if self.label.len() > MAX_LABEL {
            return problem("label", format!("longer than {MAX_LABEL} bytes"));
        }
        if !(1..=MAX_EXPECTED).contains(&self.expected) {
            return problem("expected", format!("must be 1 to {MAX_EXPECTED}"));
        }
        Ok(())
    }
}

/// A stored batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub id: Uuid,
    pub tenant: String,
    pub label: String,
    pub expected: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The API key id that made it.
    pub created_by: String,
}

/// Where an asset is, for the tally: its state and, when rejected, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetPlace {
    pub asset: Uuid,
    pub state: Option<AssetState>,
    pub reason: Option<String>,
}

/// A rejected asset of the batch and the worker's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RejectedAsset {
    pub asset_id: Uuid,
    pub reason: String,
}

/// The counts `GET /v1/batches/{id}` answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tally {
    pub expected: u64,
    /// Assets uploaded into the batch so far.
    pub assets: u64,
    /// Assets per state (`received`, `processing`, `published`, `held`, `rejected`, ...).
    pub counts: BTreeMap<String, u64>,
    /// Assets past the pipeline: in any state but `received` and `processing`.
    pub settled: u64,
    /// Every expected file has been uploaded and has settled.
    pub done: bool,
    /// Oldest first by asset id order of the listing; each with the reason.
    pub rejected: Vec<RejectedAsset>,
}

/// A state's name as the API spells it.
pub fn state_name(state: Option<AssetState>) -> String {
    state
        .and_then(|s| serde_json::to_value(s).ok())
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

impl Tally {
    /// Fold the batch's assets' places into counts.
    pub fn of(expected: u64, places: &[AssetPlace]) -> Self {
        let mut counts = BTreeMap::new();
        let mut settled = 0;
        let mut rejected = Vec::new();
        for place in places {
            *counts.entry(state_name(place.state)).or_insert(0) += 1;
            if !matches!(
                place.state,
                None | Some(AssetState::Received | AssetState::Processing)
            ) {
                settled += 1;
            }
            if place.state == Some(AssetState::Rejected) {
                rejected.push(RejectedAsset {
                    asset_id: place.asset,
                    reason: place.reason.clone().unwrap_or_default(),
                });
            }
        }
        let assets = places.len() as u64;
        Tally {
            expected,
            assets,
            counts,
            settled,
            done: assets >= expected && settled == assets,
            rejected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(state: AssetState, reason: Option<&str>) -> AssetPlace {
        AssetPlace {
            asset: Uuid::new_v4(),
            state: Some(state),
            reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn a_batch_is_done_when_every_expected_asset_has_settled() {
        let mut places = vec![
            place(AssetState::Published, None),
            place(AssetState::Held, None),
            place(AssetState::Processing, None),
        ];
        let tally = Tally::of(3, &places);
        assert_eq!((tally.assets, tally.settled, tally.done), (3, 2, false));
        assert_eq!(tally.counts["processing"], 1);
        places[2] = place(AssetState::Rejected, Some("not a JPEG"));
        let tally = Tally::of(3, &places);
        assert!(tally.done);
        assert_eq!(tally.rejected.len(), 1);
        assert_eq!(tally.rejected[0].reason, "not a JPEG");
        assert!(
            !Tally::of(4, &places).done,
            "one expected file not uploaded yet"
        );
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let ok = NewBatch {
            label: "radiology 2026-11".into(),
            expected: 40,
        };
        assert_eq!(ok.validate(), Ok(()));
        let bad = |label: &str, expected| {
            NewBatch {
                label: label.into(),
                expected,
            }
            .validate()
            .map_err(|e| e.field)
        };
        assert_eq!(bad(" ", 1), Err("label"));
        assert_eq!(bad(&"x".repeat(MAX_LABEL + 1), 1), Err("label"));
        assert_eq!(bad("a", 0), Err("expected"));
        assert_eq!(bad("a", MAX_EXPECTED + 1), Err("expected"));
    }
}
