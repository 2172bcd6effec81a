//! What `GET /v1/assets/{id}` and the review queue show of an asset: its state, decision and
//! the names of the metadata removed, folded from its log. Names, never values.

use asepsis_common::provenance::{AssetState, EventKind};
use asepsis_store::asset::AssetLog;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// An asset's status as clients see it. Names of removed metadata, never values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Summary {
    pub id: Uuid,
    /// received, processing, held, published, rejected, withdrawn, erased, restricted,
    /// taken_down
    #[schema(value_type = Option<String>)]
    pub state: Option<AssetState>,
    /// The latest decision: publish, hold, internal, reject, or `reviewer: approve|reject`.
    pub verdict: Option<String>,
    pub reason: Option<String>,
    pub format: Option<String>,
    /// Names of the metadata items removed (`EXIF:GPSLatitude`, `XMP`, ...).
    pub removed: Vec<String>,
    pub gps_in_original: Option<bool>,
    /// identifiable, uncertain, none or not_scanned.
    pub face_scan: Option<String>,
    pub faces: Option<u32>,
    /// Faces hidden in the published derivative.
    pub redacted_faces: Option<u32>,
    pub media_url: Option<String>,
}

impl From<&AssetLog> for Summary {
    fn from(log: &AssetLog) -> Self {
        let mut s = Summary {
            id: log.asset,
            state: log.state(),
            ..Summary::default()
        };
        for e in &log.events {
            match &e.event.what {
                EventKind::Received { format, .. } => s.format = Some(format.name().into()),
                EventKind::Stripped {
                    removed,
                    gps_in_original,
                    ..
                } => {
                    s.removed.clone_from(removed);
                    s.gps_in_original = Some(*gps_in_original);
                }
                EventKind::Scanned { verdict, faces, .. } => {
                    s.face_scan = Some(verdict.as_str().into());
                    s.faces = Some(*faces);
                }
                EventKind::Redacted { faces, .. } => s.redacted_faces = Some(*faces),
                EventKind::Verdict { decision, reason } => {
                    s.verdict = Some(decision.as_str().into());
                    s.reason = Some(reason.clone());
                }
                EventKind::Reviewed { decision, .. } => {
                    s.verdict = Some(format!("reviewer: {}", decision.as_str()));
                }
                EventKind::Rejected { reason } => {
                    s.verdict = Some("reject".into());
                    s.reason = Some(reason.clone());
                }
                _ => {}
            }
        }
        if s.state == Some(AssetState::Published) {
            s.media_url = Some(format!("/media/{}", log.asset));
        }
        s
    }
}
