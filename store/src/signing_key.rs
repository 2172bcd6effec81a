//! This service's key files beside the keyring, each created once on first start (mode 0600):
//! the Ed25519 signing key `DATA/keys/signing.pk8` (PKCS#8) and the DICOM UID secret
//! `DATA/keys/dicom-uid.key` (32 random bytes, from which each tenant's UID key is derived).
//! Never logs a key.

use std::path::Path;

use asepsis_common::provenance::Signer;
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;

use crate::keyring::create_once;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningKeyError {
    #[error("signing key {path}: {problem}")]
    Key { path: String, problem: String },
}

/// Load the key at `path`, creating it if missing.
///
/// # Errors
/// [`SigningKeyError::Key`] when it cannot be read, parsed or created.
pub fn load_or_create(path: &Path) -> Result<Signer, SigningKeyError> {
    let pkcs8 = read_or_create(path, || {
        Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|_| "random number generator failed".into())
    })?;
    Signer::from_pkcs8(&pkcs8).map_err(|_| key_error(path, "not an Ed25519 PKCS#8 key".into()))
}

/// Load the 32-byte DICOM UID secret at `path`, creating it if missing. Replacing it remaps
/// every UID differently from then on: files de-identified before and after no longer refer
/// to each other.
///
/// # Errors
/// [`SigningKeyError::Key`] when it cannot be read or created, or is not 32 bytes.
pub fn load_or_create_secret(path: &Path) -> Result<[u8; 32], SigningKeyError> {
    let bytes = read_or_create(path, || {
        let mut secret = [0u8; 32];
        ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut secret)
            .map_err(|_| "random number generator failed".to_owned())?;
        Ok(secret.to_vec())
    })?;
    bytes
        .try_into()
        .map_err(|_| key_error(path, "not a 32-byte secret".into()))
}

fn key_error(path: &Path, problem: String) -> SigningKeyError {
    SigningKeyError::Key {
        path: path.display().to_string(),
        problem,
    }
}

/// The file at `path`, or `make`'s bytes written there first (mode 0600). Processes racing on
/// a new data dir: one file wins, every one uses it.
fn read_or_create(
    path: &Path,
    make: impl FnOnce() -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, SigningKeyError> {
    let err = |problem: String| key_error(path, problem);
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes = make().map_err(err)?;
            match create_once(path, &bytes) {
                Ok(true) => Ok(bytes),
                Ok(false) => std::fs::read(path).map_err(|e| err(e.to_string())),
                Err(e) => Err(err(e.to_string())),
            }
        }
        Err(e) => Err(err(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.pk8");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn the_dicom_uid_secret_is_private_stable_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dicom-uid.key");
        let a = load_or_create_secret(&path).unwrap();
        assert_eq!(a, load_or_create_secret(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, b"short").unwrap();
        assert!(load_or_create_secret(&path).is_err());
    }
}
