//! The job message: what the ingest service asks a worker to do.
//!
//! It carries ids only, never pixels, file names or PHI. It is versioned: a worker that
//! meets a version it does not know treats the message as malformed (dead-lettered at once,
//! never retried), so old and new services can share a queue during a rollout.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The only job version this build writes and reads.
pub const JOB_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Schema version; always [`JOB_VERSION`] when written by this build.
    pub v: u32,
    /// The asset the worker must process.
    pub asset_id: Uuid,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    #[error("malformed job message")]
    Malformed,
    #[error("unsupported job version {0}")]
    UnsupportedVersion(u32),
}

impl Job {
    pub fn new(asset_id: Uuid) -> Self {
        Self {
            v: JOB_VERSION,
            asset_id,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of a number and a UUID always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// # Errors
    /// [`JobError::Malformed`] when the bytes are not a job; [`JobError::UnsupportedVersion`]
    /// when they are a job of another version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, JobError> {
        let job: Job = serde_json::from_slice(bytes).map_err(|_| JobError::Malformed)?;
        if job.v != JOB_VERSION {
            return Err(JobError::UnsupportedVersion(job.v));
        }
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let job = Job::new(Uuid::new_v4());
        assert_eq!(Job::from_bytes(&job.to_bytes()).unwrap(), job);
    }

    #[test]
    fn rejects_garbage_and_other_versions() {
        assert!(matches!(
            Job::from_bytes(b"\xff{"),
            Err(JobError::Malformed)
        ));
        assert!(matches!(
            Job::from_bytes(br#"{"v":1,"asset_id":"x"}"#),
            Err(JobError::Malformed)
        ));
        let id = Uuid::new_v4();
        let v2 = format!(r#"{{"v":2,"asset_id":"{id}"}}"#);
        assert!(matches!(
            Job::from_bytes(v2.as_bytes()),
            Err(JobError::UnsupportedVersion(2))
        ));
    }
}
