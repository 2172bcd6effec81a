//! The Asepsis domain core and the adapters both services share.
//!
//! Pure modules take bytes and typed values and return typed results: the job schema, the
//! encrypted blob format (`envelope`), keys, provenance; stripping, detection and consent as
//! they land (`media`, `envelope`, `provenance`). Adapters that do I/O live in their own
//! modules: `queue`, `storage`, and the local key files (`keys::LocalKeyring`,
//! `provenance::Signer::load_or_create`), whose paths callers pass in. Nothing here reads the
//! environment or configuration: callers pass typed settings in.

pub mod envelope;
pub mod job;
pub mod keys;
pub mod media;
pub mod provenance;
pub mod queue;
pub mod storage;
