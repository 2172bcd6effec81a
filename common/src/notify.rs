//! The notification schema: what listeners (the website) are told when something happened to
//! an asset (published, held, rejected, withdrawn). Ids and the event's name only; delivering
//! it is `asepsis-queue`'s business.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub asset_id: Uuid,
    pub tenant: String,
    /// The event's name (`published`, `held`, ...).
    pub event: String,
    pub seq: u64,
    pub event_hash: String,
    /// The import batch the asset was uploaded into, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<Uuid>,
}

impl Notification {
    pub fn routing_key(&self) -> String {
        format!("asset.{}", self.event)
    }
}
