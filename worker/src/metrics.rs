//! The worker's metrics, named by Prometheus conventions and labelled only from small fixed
//! sets (a stage, an outcome, a class; never an id). [`register`] describes them and creates
//! every series at zero, so rates and alerts work from the first scrape.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_histogram, histogram};

/// The asset pipeline's stages, as `asepsis_stage_duration_seconds{stage}` names them.
pub const STAGES: [&str; 7] = [
    "decrypt", "strip", "verify", "scan", "redact", "encrypt", "publish",
];

/// How an asset settled: `asepsis_assets_settled_total{outcome, class}`.
pub const SETTLED: &[(&str, &[&str])] = &[
    ("published", &["as_uploaded", "redacted"]),
    ("held", HELD),
    ("rejected", REJECTED),
];

/// Why an asset was held: the face scan's verdict that held it, or a consent that changed
/// while it was processed.
pub const HELD: &[&str] = &[
    "identifiable",
    "uncertain",
    "none",
    "not_scanned",
    "consent_changed",
];

/// Why an asset was rejected.
pub const REJECTED: &[&str] = &[
    "format",
    "limit",
    "malformed",
    "verify",
    "consent",
    "blocked",
    "erased",
];

/// The job runner's outcomes: `asepsis_jobs_total{outcome}`.
pub const JOB_OUTCOMES: [&str; 5] = ["done", "retry", "rejected", "aborted", "malformed"];

/// Describe the worker's metrics and create each series at zero.
pub fn register() {
    describe_counter!(
        "asepsis_jobs_total",
        "Jobs the worker finished, by outcome (done, retry, rejected, aborted, malformed)."
    );
    describe_histogram!(
        "asepsis_job_duration_seconds",
        metrics::Unit::Seconds,
        "Time one job took, delivery to settlement."
    );
    describe_histogram!(
        "asepsis_stage_duration_seconds",
        metrics::Unit::Seconds,
        "Time one pipeline stage took for one asset."
    );
    describe_counter!(
        "asepsis_assets_settled_total",
        "Assets that reached published, held or rejected, by outcome and class."
    );
    describe_histogram!(
        "asepsis_upload_to_settled_seconds",
        metrics::Unit::Seconds,
        "Time from an asset's received event to its settlement."
    );
    for outcome in JOB_OUTCOMES {
        counter!("asepsis_jobs_total", "outcome" => outcome).absolute(0);
    }
    for stage in STAGES {
        let _ = histogram!("asepsis_stage_duration_seconds", "stage" => stage);
    }
    for (outcome, classes) in SETTLED {
        for class in *classes {
            counter!("asepsis_assets_settled_total", "outcome" => *outcome, "class" => *class)
                .absolute(0);
        }
    }
    let _ = histogram!("asepsis_job_duration_seconds");
    let _ = histogram!("asepsis_upload_to_settled_seconds");
}

/// One stage of one asset took `took`.
pub fn stage(stage: &'static str, took: Duration) {
    histogram!("asepsis_stage_duration_seconds", "stage" => stage).record(took.as_secs_f64());
}

/// An asset settled `since_upload` after its upload.
pub fn settled(outcome: &'static str, class: &'static str, since_upload: Duration) {
    counter!("asepsis_assets_settled_total", "outcome" => outcome, "class" => class).increment(1);
    histogram!("asepsis_upload_to_settled_seconds").record(since_upload.as_secs_f64());
}
