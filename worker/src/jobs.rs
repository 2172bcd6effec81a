//! The handlers the worker runs.
//!
//! [`AssetJobs`] takes [`Job`] messages. The media pipeline it will run (load, strip, verify,
//! scan, policy, encrypt, record) is not in this build yet: until it is, every job is
//! rejected with that reason, so nothing is ever published unprocessed.

use asepsis_common::job::Job;
use async_trait::async_trait;

use crate::runner::{Handler, Outcome};

pub struct AssetJobs;

/// The reason every asset job ends with until the media pipeline lands.
pub const NOT_BUILT: &str = "media pipeline not in this build";

#[async_trait]
impl Handler for AssetJobs {
    type Job = Job;

    fn decode(&self, body: &[u8]) -> Result<Job, String> {
        Job::from_bytes(body).map_err(|e| e.to_string())
    }

    async fn handle(&self, job: Job, _attempt: u32) -> Outcome {
        tracing::info!(asset.id = %job.asset_id, "asset job received");
        Outcome::Reject(NOT_BUILT.into())
    }
}
