//! asepsis-store: everything Asepsis keeps, and how.
//!
//! - [`Storage`]: the object store (`object_store`: local files or S3) and its key layout,
//!   the one place an object's key is built; encrypted blobs, consents, API keys, indexes,
//!   idempotency claims, import batches (`batches`), each asset's provenance events written
//!   create-only, and take-downs with the block list (`takedowns`);
//! - [`blob_stream`]: blobs sealed and opened as streams in the envelope format;
//! - [`blocklist`]: the take-down block list, kept current in memory for matching uploads;
//! - [`asset`]: one asset's log as the services use it (append where read, publish once);
//! - [`keyring`] and [`signing_key`]: the embedded KEK keyring and Ed25519 signing key files.
//!
//! Business rules are not here (they are `asepsis-common`'s), and nothing here logs
//! plaintext, keys or event contents.

pub mod asset;
mod batches;
pub mod blob_stream;
pub mod blocklist;
pub mod keyring;
pub mod signing_key;
mod storage;
mod takedowns;

pub use storage::{
    BlobInfo, Claim, IdempotencyRecord, OpenBlob, Rotation, Storage, StorageError, now_ms,
    register_metrics,
};
