//! Key-encryption keys (KEKs) and the data keys they wrap.
//!
//! Every asset has its own random data key ([`DataKey`]); it is stored only wrapped
//! (AES-256-GCM under a KEK, the asset id bound as AAD) as a [`WrappedKey`]. KEKs have an id
//! and numbered versions; [`Keks`] is the interface a KMS can implement (the embedded keyring
//! file is `asepsis-store`'s). Nothing here logs key material, and no key type implements
//! `Debug`.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::DataKey;

const WRAP_AAD: &[u8] = b"asepsis data key v1";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("KEK {id} version {version} is not in the keyring")]
    UnknownKek { id: String, version: u32 },
    #[error("data key does not unwrap under KEK {id} version {version} (wrong KEK or tampered)")]
    Unwrap { id: String, version: u32 },
    #[error("keyring {path}: {problem}")]
    Keyring { path: String, problem: String },
    #[error("random number generator failed")]
    Random,
}

/// A data key sealed under one KEK version, as stored.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    pub v: u32,
    pub kek_id: String,
    pub kek_version: u32,
    pub nonce: String,
    pub sealed: String,
}

/// Which KEK version wraps new data keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekRef {
    pub id: String,
    pub version: u32,
}

/// A source of key-encryption keys: the local keyring, or a KMS.
pub trait Keks: Send + Sync {
    fn current(&self) -> KekRef;

    /// # Errors
    /// [`KeyError`] when the current KEK cannot be used.
    fn wrap(&self, asset_id: Uuid, key: &DataKey) -> Result<WrappedKey, KeyError>;

    /// # Errors
    /// [`KeyError::UnknownKek`] when the version is not held; [`KeyError::Unwrap`] when it
    /// does not open (wrong KEK version, another asset's key, or tampering).
    fn unwrap(&self, asset_id: Uuid, wrapped: &WrappedKey) -> Result<DataKey, KeyError>;
}

fn aad(asset_id: Uuid) -> Vec<u8> {
    [WRAP_AAD, asset_id.as_bytes()].concat()
}

fn aes(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap_or_else(|_| unreachable!()))
}

/// Seal `key` under `kek` (one version of one KEK).
///
/// # Errors
/// [`KeyError::Random`] when the RNG fails.
pub fn wrap_with(
    kek: &[u8; 32],
    kek_ref: &KekRef,
    asset_id: Uuid,
    key: &DataKey,
) -> Result<WrappedKey, KeyError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| KeyError::Random)?;
    let mut sealed = key.0.to_vec();
    aes(kek)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(asset_id)),
            &mut sealed,
        )
        .map_err(|_| KeyError::Random)?;
    Ok(WrappedKey {
        v: 1,
        kek_id: kek_ref.id.clone(),
        kek_version: kek_ref.version,
        nonce: hex::encode(nonce),
        sealed: hex::encode(sealed),
    })
}

/// Open `wrapped` with `kek`.
///
/// # Errors
/// [`KeyError::Unwrap`] when it does not authenticate.
pub fn unwrap_with(
    kek: &[u8; 32],
    asset_id: Uuid,
    wrapped: &WrappedKey,
) -> Result<DataKey, KeyError> {
    let fail = || KeyError::Unwrap {
        id: wrapped.kek_id.clone(),
        version: wrapped.kek_version,
    };
    let nonce: [u8; NONCE_LEN] = hex::decode(&wrapped.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(fail)?;
    let mut sealed = hex::decode(&wrapped.sealed).map_err(|_| fail())?;
    let plain = aes(kek)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(asset_id)),
            &mut sealed,
        )
        .map_err(|_| fail())?;
    let key: [u8; 32] = plain.try_into().map_err(|_| fail())?;
    Ok(DataKey::from_bytes(key))
}
