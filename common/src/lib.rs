//! The Asepsis domain core and the adapters both services share.
//!
//! Pure modules take bytes and typed values and return typed results (the job schema today;
//! stripping, detection, crypto and consent as they land). Adapters that do I/O live in their
//! own modules (`queue`). Nothing here reads the environment or configuration files: callers
//! pass typed settings in.

pub mod job;
pub mod queue;
