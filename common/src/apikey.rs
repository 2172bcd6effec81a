//! API keys: their text form, what is stored of them, and the roles they carry.
//!
//! A key reads `asp_<key id>_<secret>`: the id (16 hex digits) finds the stored record, the
//! secret (256 random bits, 64 hex digits) proves possession. Only SHA-256 of the secret is
//! stored. A fast, unsalted hash is right here because the secret is random and 256 bits
//! long: nobody can guess it or build a table for it, so a slow password hash (argon2,
//! bcrypt) would add only CPU per request; a salt adds nothing either. A leaked record set
//! lets nobody log in. Pure; never logs a key or a hash.

use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "asp_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Records consents and uploads.
    Uploader,
    /// Decides on held assets.
    Reviewer,
    /// Runs the service: queues, dead letters; sees no PHI.
    Operator,
    /// Answers a patient's request: withdrawal, erasure, restriction, export.
    PrivacyOfficer,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uploader" => Ok(Role::Uploader),
            "reviewer" => Ok(Role::Reviewer),
            "operator" => Ok(Role::Operator),
            "privacy-officer" => Ok(Role::PrivacyOfficer),
            _ => Err("expected uploader, reviewer, operator or privacy-officer".into()),
        }
    }
}

/// What is stored of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub tenant: String,
    pub role: Role,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    pub created_at_ms: u64,
    /// Set when the key may no longer be used, and why (no PHI: a policy and ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Disabled>,
}

/// Why and when a key was disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disabled {
    pub at_ms: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("tenant must be 1 to 64 characters of a-z, 0-9, '-' or '_'")]
    BadTenant,
    #[error("random number generator failed")]
    Random,
}

/// Tenant ids name objects in the store and appear in logs: keep them plain.
pub fn valid_tenant(tenant: &str) -> bool {
    (1..=64).contains(&tenant.len())
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn sha256_hex(secret: &str) -> String {
    crate::sha256_hex(secret.as_bytes())
}

/// Make a new key: its text (shown once) and the record to store.
///
/// # Errors
/// [`KeyError::BadTenant`]; [`KeyError::Random`].
pub fn generate(tenant: &str, role: Role, now_ms: u64) -> Result<(String, KeyRecord), KeyError> {
    if !valid_tenant(tenant) {
        return Err(KeyError::BadTenant);
    }
    let rng = SystemRandom::new();
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill(&mut id).map_err(|_| KeyError::Random)?;
    rng.fill(&mut secret).map_err(|_| KeyError::Random)?;
    let (id, secret) = (hex::encode(id), hex::encode(secret));
    let record = KeyRecord {
        id: id.clone(),
        tenant: tenant.to_owned(),
        role,
        secret_sha256: sha256_hex(&secret),
        created_at_ms: now_ms,
        disabled: None,
    };
    Ok((format!("{PREFIX}{id}_{secret}"), record))
}

/// Split a presented key into its id and secret, if it has the shape of one.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    let hex_of = |s: &str, n: usize| s.len() == 2 * n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(id, ID_BYTES) && hex_of(secret, SECRET_BYTES)).then_some((id, secret))
}

impl KeyRecord {
    /// Does `secret` belong to this record? Compares the hashes in constant time.
    pub fn matches(&self, secret: &str) -> bool {
        crate::same_secret(&sha256_hex(secret), &self.secret_sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_matches_only_its_record() {
        let (token, record) = generate("clinic-a", Role::Uploader, 1).unwrap();
        let (id, secret) = parse(&token).unwrap();
        assert_eq!(id, record.id);
        assert!(record.matches(secret));
        assert!(!token.contains(&record.secret_sha256));
        let (_, other) = generate("clinic-a", Role::Uploader, 1).unwrap();
        assert!(!other.matches(secret));
    }

    #[test]
    fn malformed_keys_and_tenants_are_refused() {
        for bad in [
            "",
            "asp_",
            "asp_zz_yy",
            "Bearer x",
            "asp_0123456789abcdef_00",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        for bad in ["", "Clinic", "a/b", "..", &"x".repeat(65)] {
            assert_eq!(
                generate(bad, Role::Reviewer, 0).unwrap_err(),
                KeyError::BadTenant
            );
        }
        assert_eq!("privacy-officer".parse::<Role>(), Ok(Role::PrivacyOfficer));
        assert!("admin".parse::<Role>().is_err());
    }
}
