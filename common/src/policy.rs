//! The publication policy: consent scope × face-scan verdict × GPS in the original → what
//! happens to an asset. Pure and total; when unsure, hold for review.
//!
//! | consent scope | verdict | decision |
//! | --- | --- | --- |
//! | internal | any | internal (never published) |
//! | identifiable | any | publish (metadata is stripped regardless) |
//! | de-identified | none | publish |
//! | de-identified | identifiable | redact faces, re-scan, publish if none is left, else hold |
//! | de-identified | uncertain, not scanned | hold for review |
//!
//! GPS in the original is stripped in every case; it is named in the reason so a reviewer
//! knows the photo was geotagged.

use serde::{Deserialize, Serialize};

use crate::consent::Scope;
use crate::faces::Verdict;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Publish,
    Redact,
    Hold,
    Internal,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Publish => "publish",
            Decision::Redact => "redact",
            Decision::Hold => "hold",
            Decision::Internal => "internal",
        }
    }
}

/// A reviewer's decision on a held asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    /// Publish, if the consent still allows it.
    Approve,
    Reject,
}

impl ReviewDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewDecision::Approve => "approve",
            ReviewDecision::Reject => "reject",
        }
    }
}

/// Decide, with a reason a reviewer can read (no PHI: scope, verdict and flags only).
pub fn decide(scope: Scope, verdict: Verdict, gps_in_original: bool) -> (Decision, String) {
    let (decision, why) = match (scope, verdict) {
        (Scope::Internal, _) => (Decision::Internal, "consent allows internal use only"),
        (Scope::Identifiable, _) => (Decision::Publish, "consent allows identifiable use"),
        (Scope::Deidentified, Verdict::None) => {
            (Decision::Publish, "de-identified consent and no face found")
        }
        (Scope::Deidentified, Verdict::Identifiable) => {
            (Decision::Redact, "de-identified consent and a face found")
        }
        (Scope::Deidentified, Verdict::Uncertain) => (
            Decision::Hold,
            "de-identified consent and a possible face: held for review",
        ),
        (Scope::Deidentified, Verdict::NotScanned) => (
            Decision::Hold,
            "de-identified consent and the image was not face-scanned: held for review",
        ),
    };
    let gps = if gps_in_original {
        "; GPS in the original (stripped)"
    } else {
        ""
    };
    (decision, format!("{why}{gps}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_row_by_row() {
        use Decision as D;
        use Scope as S;
        use Verdict as V;
        let rows = [
            (S::Internal, V::None, D::Internal),
            (S::Internal, V::Identifiable, D::Internal),
            (S::Identifiable, V::Identifiable, D::Publish),
            (S::Identifiable, V::NotScanned, D::Publish),
            (S::Deidentified, V::None, D::Publish),
            (S::Deidentified, V::Identifiable, D::Redact),
            (S::Deidentified, V::Uncertain, D::Hold),
            (S::Deidentified, V::NotScanned, D::Hold),
        ];
        for (scope, verdict, want) in rows {
            for gps in [false, true] {
                let (got, reason) = decide(scope, verdict, gps);
                assert_eq!(got, want, "{scope:?} {verdict:?}");
                assert_eq!(reason.contains("GPS"), gps);
            }
        }
    }
}
