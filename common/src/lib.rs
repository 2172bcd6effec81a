//! The Asepsis domain core and the adapters both services share.
//!
//! Pure modules take bytes and typed values and return typed results: the job schema,
//! stripping (`media`), consent rules (`consent`), API keys (`apikey`), the face-scan
//! interface (`faces`), the publication policy (`policy`), the encrypted blob format
//! (`envelope`), keys and provenance. Adapters that do I/O live in their own modules:
//! `queue`, `notify`, `storage`, and the local key files (`keys::LocalKeyring`,
//! `provenance::Signer::load_or_create`), whose paths callers pass in. Nothing here reads the
//! environment or configuration: callers pass typed settings in.

pub mod apikey;
pub mod asset;
pub mod consent;
pub mod envelope;
pub mod faces;
pub mod job;
pub mod keys;
pub mod media;
pub mod notify;
pub mod policy;
pub mod provenance;
pub mod queue;
pub mod storage;
