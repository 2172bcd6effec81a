//! The worker daemon: a generic consume loop and the jobs it runs.
//!
//! [`runner`] knows queues and outcomes, nothing of media; [`jobs`] holds the handlers. The
//! worker never logs a job body or anything a job refers to beyond its ids.

pub mod jobs;
pub mod runner;
