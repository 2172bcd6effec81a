//! asepsis-worker: the worker daemon, a generic consume loop and the jobs it runs.
//!
//! [`runner`] knows queues and outcomes, nothing of media; [`jobs`] holds the asset job, which
//! loads and stores around the pure pipeline of `asepsis_common::pipeline`; [`retention`] the
//! scheduled purge of what retention rules say is no longer needed. The worker never
//! logs a job body or anything a job refers to beyond its ids and counts.

pub mod jobs;
pub mod metrics;
pub mod retention;
pub mod runner;
pub mod takedowns;
