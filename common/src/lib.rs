//! asepsis-common: the pure core of Asepsis.
//!
//! It takes bytes and typed values and returns typed results: stripping and verifying media
//! (`media`), DICOM de-identification (`dicom`), face detection and redaction over decoded pixels with the model's bytes passed
//! in (`faces`), the one asset pipeline that chains them (`pipeline`), the envelope's segment
//! sealing (`envelope`) and key wrapping (`keys`), typed provenance events (`provenance`), the
//! signed audit log's entries (`audit`), batches and the import manifest (`batch`,
//! `manifest`), consent rules (`consent`), the publication policy
//! (`policy`), PDQ perceptual hashes, the hashes a take-down blocks and their index (`pdq`),
//! the rules of a subject's rights and the accounting of disclosures (`rights`),
//! retention (`retention`), DMCA take-downs (`takedown`), API-key parsing (`apikey`),
//! small-cell-suppressed statistics
//! (`stats`), and the job and notification schemas (`job`, `notify`).
//!
//! It must not do I/O: no tokio, no sockets, no files, no environment, no logging. Storage,
//! queues and key files are `asepsis-store`'s and `asepsis-queue`'s; settings are passed in.

pub mod apikey;
pub mod audit;
pub mod batch;
pub mod consent;
pub mod dicom;
pub mod envelope;
pub mod faces;
pub mod job;
pub mod keys;
pub mod manifest;
pub mod media;
pub mod notify;
pub mod pdq;
pub mod pipeline;
pub mod policy;
pub mod provenance;
pub mod retention;
pub mod rights;
pub mod stats;
pub mod takedown;

/// Hex SHA-256 of `bytes` (content hashes in events, hashed secrets and keys).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// Whether two secrets (hashed keys, tokens) are equal, in time that does not depend on where
/// they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_whole() {
        assert!(super::same_secret("abc", "abc"));
        assert!(!super::same_secret("abc", "abd"));
        assert!(!super::same_secret("abc", "ab"));
    }
}
