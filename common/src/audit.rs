//! The audit log: one signed, hash-chained log of every privileged action — API-key creation,
//! KEK rotation, dead-letter replay, review decisions, consent withdrawal, rights requests
//! with their receipts, retention purges, take-downs and disabled keys — saying who (an API
//! key id, or `host:<user>` for a command run on the host), for which tenant, what, and on
//! which ids. Never PHI: no consent fields, file names, metadata or keys.
//!
//! Entries are hashed, chained and signed as provenance events are (canonical JSON of the
//! [`AuditEntry`], SHA-256, Ed25519 by the writing service's key); storing them create-only is
//! `asepsis-store`'s business. Pure.

use serde::{Deserialize, Serialize};

use crate::provenance::{BrokenLink, Link, Signer, TrustedKeys, verify_chain};

pub const AUDIT_VERSION: u32 = 1;

/// A privileged action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AuditAction {
    /// `asepsis keys create`; target: the new key's id.
    KeysCreate,
    /// `asepsis keys rotate-kek`; target: `kek-id:version`.
    RotateKek,
    /// `asepsis ctl replay`; targets: the dead letters' ids.
    Replay,
    /// A reviewer's decision; targets: the asset and `approve` or `reject`.
    Review,
    /// A consent withdrawn; targets: the consent, then each asset it unpublished.
    ConsentWithdraw,
    /// A subject's data erased; targets: `receipt:<id>`, each consent, then each asset erased.
    SubjectErase,
    /// A subject's data restricted; targets: the receipt, each consent, each asset frozen.
    SubjectRestrict,
    /// A restriction lifted; targets: the receipt, each consent, each asset released.
    SubjectUnrestrict,
    /// An objection to purposes; targets: the receipt, each consent given a new version, each
    /// asset unpublished.
    SubjectObject,
    /// A consent corrected; targets: the receipt, the consent, each asset unpublished.
    ConsentRectify,
    /// A subject's data exported to the subject; targets: the receipt, each consent, each
    /// asset in the bundle.
    SubjectExport,
    /// A retention purge; targets: the rule, then the asset.
    RetentionPurge,
    /// A DMCA notice entered; targets: the take-down, then each asset taken down.
    TakedownReceive,
    /// A counter-notice filed; targets: the take-down, then each asset scheduled for restore.
    TakedownCounterNotice,
    /// The claimant's court action recorded; targets: the take-down, then each asset upheld.
    TakedownCourtAction,
    /// A restore carried out when due; targets: the take-down, then the asset.
    TakedownRestore,
    /// Notices upheld because nobody countered them in time; targets: the take-down, then
    /// each asset.
    TakedownUphold,
    /// An API key disabled (the repeat-infringer policy); targets: the key id, then the
    /// take-downs upheld against it.
    KeyDisable,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::KeysCreate => "keys-create",
            AuditAction::RotateKek => "rotate-kek",
            AuditAction::Replay => "replay",
            AuditAction::Review => "review",
            AuditAction::ConsentWithdraw => "consent-withdraw",
            AuditAction::SubjectErase => "subject-erase",
            AuditAction::SubjectRestrict => "subject-restrict",
            AuditAction::SubjectUnrestrict => "subject-unrestrict",
            AuditAction::SubjectObject => "subject-object",
            AuditAction::ConsentRectify => "consent-rectify",
            AuditAction::SubjectExport => "subject-export",
            AuditAction::RetentionPurge => "retention-purge",
            AuditAction::TakedownReceive => "takedown-receive",
            AuditAction::TakedownCounterNotice => "takedown-counter-notice",
            AuditAction::TakedownCourtAction => "takedown-court-action",
            AuditAction::TakedownRestore => "takedown-restore",
            AuditAction::TakedownUphold => "takedown-uphold",
            AuditAction::KeyDisable => "key-disable",
        }
    }
}

/// What happened, as the caller states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// An API key id, or `host:<user>`.
    pub actor: String,
    /// The tenant acted for; `None` for actions on the whole service (KEK rotation, replay).
    pub tenant: Option<String>,
    pub action: AuditAction,
    /// Ids only (assets, consents, keys, dead letters).
    pub targets: Vec<String>,
}

/// One entry of the log, as hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub v: u32,
    pub seq: u64,
    pub at_ms: u64,
    /// Hex SHA-256 of the previous entry; empty for seq 0.
    pub prev: String,
    /// Id of the key that signs this entry.
    pub signer: String,
    pub record: AuditRecord,
}

impl AuditEntry {
    /// The canonical encoding that is hashed: compact JSON, fields in declaration order.
    pub fn canonical(&self) -> Vec<u8> {
        // Strings, numbers and a fieldless enum always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn hash(&self) -> String {
        crate::sha256_hex(&self.canonical())
    }
}

/// An entry as stored: the entry, its hash, and the signer's Ed25519 signature of the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAuditEntry {
    pub entry: AuditEntry,
    pub hash: String,
    pub signature: String,
}

/// Build, hash and sign the entry that follows `prev` (or the first, when `None`).
pub fn sign_next(
    signer: &Signer,
    prev: Option<&SignedAuditEntry>,
    at_ms: u64,
    record: AuditRecord,
) -> SignedAuditEntry {
    let entry = AuditEntry {
        v: AUDIT_VERSION,
        seq: prev.map_or(0, |p| p.entry.seq + 1),
        at_ms,
        prev: prev.map(|p| p.hash.clone()).unwrap_or_default(),
        signer: signer.id().to_owned(),
        record,
    };
    let hash = entry.hash();
    let signature = signer.sign_hash(&hash);
    SignedAuditEntry {
        entry,
        hash,
        signature,
    }
}

impl Link for SignedAuditEntry {
    fn seq(&self) -> u64 {
        self.entry.seq
    }
    fn prev(&self) -> &str {
        &self.entry.prev
    }
    fn signer(&self) -> &str {
        &self.entry.signer
    }
    fn content_hash(&self) -> String {
        self.entry.hash()
    }
    fn stored_hash(&self) -> &str {
        &self.hash
    }
    fn signature(&self) -> &str {
        &self.signature
    }
}

/// Check sequence, hashes, chain and signatures of the whole log, in stored order. Returns
/// the number of entries.
///
/// # Errors
/// [`BrokenLink`] at the first entry that does not check out.
pub fn verify(entries: &[SignedAuditEntry], trusted: &TrustedKeys) -> Result<usize, BrokenLink> {
    verify_chain(entries, trusted, |signed| match signed.entry.v {
        AUDIT_VERSION => Ok(()),
        v => Err(format!("unknown entry version {v}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: AuditAction, target: &str) -> AuditRecord {
        AuditRecord {
            actor: "host:ops".into(),
            tenant: Some("clinic-a".into()),
            action,
            targets: vec![target.into()],
        }
    }

    fn log(signer: &Signer) -> Vec<SignedAuditEntry> {
        let mut out: Vec<SignedAuditEntry> = Vec::new();
        for (i, action) in [
            AuditAction::KeysCreate,
            AuditAction::Review,
            AuditAction::Replay,
        ]
        .into_iter()
        .enumerate()
        {
            let next = sign_next(signer, out.last(), 1_000 + i as u64, record(action, "id"));
            out.push(next);
        }
        out
    }

    #[test]
    fn a_clean_log_verifies_and_edits_removals_and_strangers_are_caught() {
        let signer = Signer::generate().unwrap();
        let mut trusted = TrustedKeys::default();
        trusted.add(signer.public_key());
        let entries = log(&signer);
        assert_eq!(verify(&entries, &trusted), Ok(3));

        let mut edited = entries.clone();
        edited[1].entry.record.targets = vec!["other".into()];
        assert_eq!(verify(&edited, &trusted).unwrap_err().position, 1);

        let mut removed = entries.clone();
        removed.remove(1);
        assert_eq!(verify(&removed, &trusted).unwrap_err().position, 1);

        let mut rehashed = entries.clone();
        rehashed[2].entry.record.action = AuditAction::RotateKek;
        rehashed[2].hash = rehashed[2].entry.hash();
        let err = verify(&rehashed, &trusted).unwrap_err();
        assert_eq!((err.position, err.problem.as_str()), (2, "bad signature"));

        let stranger = Signer::generate().unwrap();
        let err = verify(&log(&stranger), &trusted).unwrap_err();
        assert!(err.problem.contains("unknown key"), "{err}");
    }

    #[test]
    fn actions_are_named_in_kebab_case() {
        let json = serde_json::to_string(&record(AuditAction::RotateKek, "local:2")).unwrap();
        assert!(json.contains("\"action\":\"rotate-kek\""), "{json}");
        assert_eq!(AuditAction::ConsentWithdraw.as_str(), "consent-withdraw");
    }
}
