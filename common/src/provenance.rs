//! Provenance: each asset's append-only, hash-chained, signed log of events, the asset state
//! folded from it, and its export as W3C PROV JSON.
//!
//! Events hold ids, names, counts and hashes, never PHI values (no metadata values, file
//! names, consent details or face crops). Each [`Event`]'s hash is SHA-256 over its canonical
//! encoding: the compact JSON serialization of the `Event` struct, fields in declaration
//! order, with no maps (so it is the same bytes on every machine). `prev` is the previous
//! event's hash (empty for seq 0), and the hash is signed with Ed25519 by the writing
//! service's key, whose id is in the event. Where events are stored, and how appends race, is
//! `asepsis-store`'s business; this module is pure.

use std::collections::BTreeMap;

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::BlobRole;
use crate::faces::Verdict;
use crate::media::Format;
use crate::policy::{Decision, ReviewDecision};
use crate::retention::RetentionRule;

pub const EVENT_VERSION: u32 = 1;

/// What happened to an asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    Received {
        tenant: String,
        consent_id: Uuid,
        format: Format,
        size_bytes: u64,
        sha256: String,
        /// The API key id that uploaded it (absent in logs written before it was recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uploader: Option<String>,
        /// The import batch it was uploaded into, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch_id: Option<Uuid>,
    },
    Stripped {
        removed: Vec<String>,
        size_bytes: u64,
        sha256: String,
        gps_in_original: bool,
    },
    /// A DICOM file de-identified by the Basic Profile: the attributes acted on, by tag and
    /// name (never a value), the private elements removed, and whether burned-in text was
    /// ruled out.
    Deidentified {
        profile: String,
        removed: Vec<String>,
        emptied: Vec<String>,
        replaced: Vec<String>,
        remapped: Vec<String>,
        private_removed: u32,
        burned_in: crate::dicom::BurnedIn,
    },
    Scanned {
        verdict: Verdict,
        faces: u32,
        /// Each face's score in thousandths, best first (integers keep the hash portable).
        #[serde(default)]
        scores_milli: Vec<u16>,
        model_sha256: String,
        /// The PDQ perceptual hash of the decoded, upright pixels (what the block list of
        /// take-downs is matched against); absent when the image could not be decoded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pdq: Option<crate::pdq::Pdq>,
    },
    /// Faces hidden in the derivative (consent allows de-identified use only).
    Redacted {
        faces: u32,
        /// The derivative's format from now on (HEIF and AVIF are re-encoded as JPEG).
        format: Format,
        size_bytes: u64,
        sha256: String,
    },
    Verdict {
        decision: Decision,
        reason: String,
    },
    Encrypted {
        role: BlobRole,
        kek_id: String,
        kek_version: u32,
        size_bytes: u64,
    },
    /// A reviewer's decision on a held asset, by API key id.
    Reviewed {
        decision: ReviewDecision,
        by_key: String,
    },
    Published,
    Rejected {
        reason: String,
    },
    Withdrawn {
        consent_id: Uuid,
    },
    Restricted,
    Unrestricted,
    TakenDown {
        takedown_id: Uuid,
    },
    /// The uploader's tenant countered take-down `takedown_id`; the restore is due then
    /// unless the claimant files a court action. The asset stays taken down.
    CounterNoticed {
        takedown_id: Uuid,
        restore_due_ms: u64,
    },
    Restored {
        takedown_id: Uuid,
    },
    Erased,
    /// Taken off the website because its consent no longer allows publication (narrowed by a
    /// rectification or an objection); held until a reviewer or a new upload decides.
    Unpublished {
        reason: String,
    },
    /// A retention rule deleted what it no longer needed; `shredded` when the data key went
    /// too.
    Purged {
        rule: RetentionRule,
        blobs: Vec<BlobRole>,
        shredded: bool,
    },
}

/// Which kind of event, without its fields: what the log is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    Received,
    Stripped,
    Deidentified,
    Scanned,
    Redacted,
    Verdict,
    Encrypted,
    Reviewed,
    Published,
    Rejected,
    Withdrawn,
    Restricted,
    Unrestricted,
    TakenDown,
    CounterNoticed,
    Restored,
    Erased,
    Unpublished,
    Purged,
}

impl EventName {
    /// The `type` tag of the event's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Received => "received",
            EventName::Stripped => "stripped",
            EventName::Deidentified => "deidentified",
            EventName::Scanned => "scanned",
            EventName::Redacted => "redacted",
            EventName::Verdict => "verdict",
            EventName::Encrypted => "encrypted",
            EventName::Reviewed => "reviewed",
            EventName::Published => "published",
            EventName::Rejected => "rejected",
            EventName::Withdrawn => "withdrawn",
            EventName::Restricted => "restricted",
            EventName::Unrestricted => "unrestricted",
            EventName::TakenDown => "taken_down",
            EventName::CounterNoticed => "counter_noticed",
            EventName::Restored => "restored",
            EventName::Erased => "erased",
            EventName::Unpublished => "unpublished",
            EventName::Purged => "purged",
        }
    }
}

impl EventKind {
    pub fn name(&self) -> EventName {
        match self {
            EventKind::Received { .. } => EventName::Received,
            EventKind::Stripped { .. } => EventName::Stripped,
            EventKind::Deidentified { .. } => EventName::Deidentified,
            EventKind::Scanned { .. } => EventName::Scanned,
            EventKind::Redacted { .. } => EventName::Redacted,
            EventKind::Verdict { .. } => EventName::Verdict,
            EventKind::Encrypted { .. } => EventName::Encrypted,
            EventKind::Reviewed { .. } => EventName::Reviewed,
            EventKind::Published => EventName::Published,
            EventKind::Rejected { .. } => EventName::Rejected,
            EventKind::Withdrawn { .. } => EventName::Withdrawn,
            EventKind::Restricted => EventName::Restricted,
            EventKind::Unrestricted => EventName::Unrestricted,
            EventKind::TakenDown { .. } => EventName::TakenDown,
            EventKind::CounterNoticed { .. } => EventName::CounterNoticed,
            EventKind::Restored { .. } => EventName::Restored,
            EventKind::Erased => EventName::Erased,
            EventKind::Unpublished { .. } => EventName::Unpublished,
            EventKind::Purged { .. } => EventName::Purged,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub v: u32,
    pub asset_id: Uuid,
    pub seq: u64,
    pub at_ms: u64,
    /// Hex SHA-256 of the previous event; empty for seq 0.
    pub prev: String,
    /// Id of the key that signs this event.
    pub signer: String,
    pub what: EventKind,
}

impl Event {
    /// The canonical encoding that is hashed.
    pub fn canonical(&self) -> Vec<u8> {
        // Plain structs and enums of strings and numbers always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn hash(&self) -> String {
        crate::sha256_hex(&self.canonical())
    }
}

/// An event as stored: the event, its hash, and the signer's Ed25519 signature of the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEvent {
    pub event: Event,
    pub hash: String,
    pub signature: String,
}

/// A service's signing key: Ed25519 from ring (its PKCS#8 file is `asepsis-store`'s).
pub struct Signer {
    pair: Ed25519KeyPair,
    id: String,
}

impl Signer {
    /// # Errors
    /// When `pkcs8` is not an Ed25519 key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, ring::error::KeyRejected> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)?;
        let id = key_id(pair.public_key().as_ref());
        Ok(Self { pair, id })
    }

    /// A throwaway key (tests).
    ///
    /// # Errors
    /// When the RNG fails.
    pub fn generate() -> Result<Self, ring::error::Unspecified> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())?;
        Self::from_pkcs8(doc.as_ref()).map_err(|_| ring::error::Unspecified)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// The hex Ed25519 signature of a hex hash (events and audit entries sign their hash).
    pub fn sign_hash(&self, hash: &str) -> String {
        hex::encode(self.pair.sign(hash.as_bytes()).as_ref())
    }

    /// Build, hash and sign the event that follows `prev` (or the first, when `None`).
    pub fn sign_next(
        &self,
        asset_id: Uuid,
        prev: Option<&SignedEvent>,
        at_ms: u64,
        what: EventKind,
    ) -> SignedEvent {
        let event = Event {
            v: EVENT_VERSION,
            asset_id,
            seq: prev.map_or(0, |p| p.event.seq + 1),
            at_ms,
            prev: prev.map(|p| p.hash.clone()).unwrap_or_default(),
            signer: self.id.clone(),
            what,
        };
        let hash = event.hash();
        let signature = self.sign_hash(&hash);
        SignedEvent {
            event,
            hash,
            signature,
        }
    }
}

/// Key id: the first 16 hex digits of SHA-256 of the public key.
pub fn key_id(public_key: &[u8]) -> String {
    let mut id = crate::sha256_hex(public_key);
    id.truncate(16);
    id
}

/// The public keys whose signatures a verifier accepts, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(BTreeMap<String, Vec<u8>>);

impl TrustedKeys {
    pub fn add(&mut self, public_key: Vec<u8>) {
        self.0.insert(key_id(&public_key), public_key);
    }

    /// Is `signature` (hex) the signature of `hash` by the trusted key `signer`?
    ///
    /// # Errors
    /// What is wrong: an unknown key, a signature that is not hex, or a bad signature.
    pub fn check(&self, signer: &str, hash: &str, signature: &str) -> Result<(), String> {
        let key = self
            .0
            .get(signer)
            .ok_or_else(|| format!("signed by unknown key {signer}"))?;
        let signature = hex::decode(signature).map_err(|_| "signature is not hex".to_owned())?;
        UnparsedPublicKey::new(&ED25519, key)
            .verify(hash.as_bytes(), &signature)
            .map_err(|_| "bad signature".to_owned())
    }
}

/// The first broken link of a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {position} (seq {seq}): {problem}")]
pub struct BrokenLink {
    /// Position in the log as stored (0-based).
    pub position: usize,
    pub seq: u64,
    pub problem: String,
}

/// One link of a signed, hash-chained log: provenance events and audit entries.
pub(crate) trait Link {
    fn seq(&self) -> u64;
    /// The previous link's hash, as recorded in this one.
    fn prev(&self) -> &str;
    fn signer(&self) -> &str;
    /// The hash of the content as it is now.
    fn content_hash(&self) -> String;
    /// The hash as stored (and signed).
    fn stored_hash(&self) -> &str;
    fn signature(&self) -> &str;
}

impl Link for SignedEvent {
    fn seq(&self) -> u64 {
        self.event.seq
    }
    fn prev(&self) -> &str {
        &self.event.prev
    }
    fn signer(&self) -> &str {
        &self.event.signer
    }
    fn content_hash(&self) -> String {
        self.event.hash()
    }
    fn stored_hash(&self) -> &str {
        &self.hash
    }
    fn signature(&self) -> &str {
        &self.signature
    }
}

/// Check a whole log in stored order: sequence, then `check` (what is particular to the
/// log), then hash, chain and signature. Returns the number of links.
pub(crate) fn verify_chain<L: Link>(
    links: &[L],
    trusted: &TrustedKeys,
    check: impl Fn(&L) -> Result<(), String>,
) -> Result<usize, BrokenLink> {
    let mut prev_hash = "";
    for (position, link) in links.iter().enumerate() {
        let broken = |problem: String| BrokenLink {
            position,
            seq: link.seq(),
            problem,
        };
        if link.seq() != position as u64 {
            return Err(broken(format!("sequence gap: expected seq {position}")));
        }
        check(link).map_err(broken)?;
        if link.content_hash() != link.stored_hash() {
            return Err(broken("content does not match its hash (edited)".into()));
        }
        if link.prev() != prev_hash {
            return Err(broken("does not chain to the previous link".into()));
        }
        trusted
            .check(link.signer(), link.stored_hash(), link.signature())
            .map_err(broken)?;
        prev_hash = link.stored_hash();
    }
    Ok(links.len())
}

/// Check sequence, asset, hashes, chain and signatures of one asset's log, in stored order.
/// Returns the number of events.
///
/// # Errors
/// [`BrokenLink`] at the first event that does not check out.
pub fn verify(
    asset_id: Uuid,
    events: &[SignedEvent],
    trusted: &TrustedKeys,
) -> Result<usize, BrokenLink> {
    verify_chain(events, trusted, |signed| {
        if signed.event.asset_id != asset_id {
            return Err("belongs to another asset".into());
        }
        if signed.event.v != EVENT_VERSION {
            return Err(format!("unknown event version {}", signed.event.v));
        }
        Ok(())
    })
}

/// Where an asset is in its life, folded from its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetState {
    Received,
    Processing,
    Held,
    Published,
    Rejected,
    Withdrawn,
    Erased,
    Restricted,
    TakenDown,
}

/// Fold a log into the asset's state. Erasure and withdrawal are final. A restriction and
/// each take-down freeze the asset, independently: it shows `restricted` while restricted,
/// else `taken_down` while any take-down stands, and returns to where its own events put it
/// when every freeze is lifted.
pub fn fold(events: &[SignedEvent]) -> Option<AssetState> {
    use AssetState as S;
    let mut base: Option<AssetState> = None;
    let mut restricted = false;
    let mut takedowns: Vec<Uuid> = Vec::new();
    for e in events {
        if matches!(base, Some(S::Erased | S::Withdrawn)) {
            if matches!(e.event.what, EventKind::Erased) {
                base = Some(S::Erased);
            }
            continue;
        }
        base = Some(match &e.event.what {
            EventKind::Restricted => {
                restricted = true;
                continue;
            }
            EventKind::Unrestricted => {
                restricted = false;
                continue;
            }
            EventKind::TakenDown { takedown_id } => {
                if !takedowns.contains(takedown_id) {
                    takedowns.push(*takedown_id);
                }
                continue;
            }
            EventKind::Restored { takedown_id } => {
                takedowns.retain(|t| t != takedown_id);
                continue;
            }
            EventKind::CounterNoticed { .. } => continue,
            EventKind::Received { .. } => S::Received,
            EventKind::Stripped { .. }
            | EventKind::Deidentified { .. }
            | EventKind::Scanned { .. }
            | EventKind::Redacted { .. }
            | EventKind::Encrypted { .. } => S::Processing,
            EventKind::Verdict {
                decision: Decision::Hold | Decision::Internal,
                ..
            } => S::Held,
            EventKind::Verdict { .. } => base.unwrap_or(S::Processing),
            EventKind::Reviewed {
                decision: ReviewDecision::Reject,
                ..
            } => S::Rejected,
            EventKind::Reviewed { .. } => base.unwrap_or(S::Held),
            EventKind::Published => S::Published,
            EventKind::Unpublished { .. } => S::Held,
            EventKind::Purged { .. } => base.unwrap_or(S::Received),
            EventKind::Rejected { .. } => S::Rejected,
            EventKind::Withdrawn { .. } => S::Withdrawn,
            EventKind::Erased => S::Erased,
        });
    }
    match base {
        Some(S::Erased | S::Withdrawn) => base,
        _ if restricted => Some(S::Restricted),
        _ if !takedowns.is_empty() => Some(S::TakenDown),
        _ => base,
    }
}

/// Render a log as W3C PROV-JSON: the asset's blobs are entities, each event an activity,
/// each signing key an agent.
pub fn to_prov(asset_id: Uuid, events: &[SignedEvent]) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    let original = format!("asepsis:asset/{asset_id}/original");
    let derivative = format!("asepsis:asset/{asset_id}/derivative");
    let mut entity = Map::new();
    let mut activity = Map::new();
    let mut agent = Map::new();
    let (mut generated, mut derived, mut used, mut associated) =
        (Map::new(), Map::new(), Map::new(), Map::new());
    entity.insert(original.clone(), json!({"prov:type": "asepsis:Original"}));
    for (i, signed) in events.iter().enumerate() {
        let e = &signed.event;
        let act = format!("asepsis:asset/{asset_id}/event/{}", e.seq);
        let signer = format!("asepsis:key/{}", e.signer);
        activity.insert(
            act.clone(),
            json!({
                "prov:type": format!("asepsis:{}", e.what.name().as_str()),
                "prov:startTime": e.at_ms,
                "asepsis:detail": serde_json::to_value(&e.what).unwrap_or(Value::Null),
                "asepsis:hash": signed.hash,
                "asepsis:prev": e.prev,
            }),
        );
        agent.insert(signer.clone(), json!({"prov:type": "prov:SoftwareAgent"}));
        associated.insert(
            format!("_:assoc{i}"),
            json!({"prov:activity": act, "prov:agent": signer}),
        );
        match &e.what {
            EventKind::Received { .. } => {
                generated.insert(
                    format!("_:gen{i}"),
                    json!({"prov:entity": original, "prov:activity": act}),
                );
            }
            EventKind::Stripped { .. } => {
                used.insert(
                    format!("_:use{i}"),
                    json!({"prov:activity": act, "prov:entity": original}),
                );
                entity.insert(
                    derivative.clone(),
                    json!({"prov:type": "asepsis:Derivative"}),
                );
                generated.insert(
                    format!("_:gen{i}"),
                    json!({"prov:entity": derivative, "prov:activity": act}),
                );
                derived.insert(format!("_:der{i}"), json!({
                    "prov:generatedEntity": derivative, "prov:usedEntity": original, "prov:activity": act,
                }));
            }
            _ => {
                used.insert(
                    format!("_:use{i}"),
                    json!({"prov:activity": act, "prov:entity": original}),
                );
            }
        }
    }
    json!({
        "prefix": {"prov": "http://www.w3.org/ns/prov#", "asepsis": "urn:asepsis:"},
        "entity": entity,
        "activity": activity,
        "agent": agent,
        "wasGeneratedBy": generated,
        "wasDerivedFrom": derived,
        "used": used,
        "wasAssociatedWith": associated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(signer: &Signer, asset: Uuid, kinds: Vec<EventKind>) -> Vec<SignedEvent> {
        let mut out: Vec<SignedEvent> = Vec::new();
        for (i, what) in kinds.into_iter().enumerate() {
            let next = signer.sign_next(asset, out.last(), 1_000 + i as u64, what);
            out.push(next);
        }
        out
    }

    fn sample(signer: &Signer, asset: Uuid) -> Vec<SignedEvent> {
        chain(
            signer,
            asset,
            vec![
                EventKind::Received {
                    tenant: "t".into(),
                    consent_id: Uuid::nil(),
                    format: Format::Jpeg,
                    size_bytes: 10,
                    sha256: "ab".into(),
                    uploader: None,
                    batch_id: None,
                },
                EventKind::Stripped {
                    removed: vec!["EXIF:GPSLatitude".into()],
                    size_bytes: 8,
                    sha256: "cd".into(),
                    gps_in_original: true,
                },
                EventKind::Verdict {
                    decision: Decision::Publish,
                    reason: "identifiable consent".into(),
                },
                EventKind::Published,
            ],
        )
    }

    fn trusted(signer: &Signer) -> TrustedKeys {
        let mut t = TrustedKeys::default();
        t.add(signer.public_key());
        t
    }

    #[test]
    fn a_clean_chain_verifies_and_folds() {
        let signer = Signer::generate().unwrap();
        let asset = Uuid::new_v4();
        let log = sample(&signer, asset);
        assert_eq!(verify(asset, &log, &trusted(&signer)), Ok(4));
        assert_eq!(fold(&log), Some(AssetState::Published));
    }

    #[test]
    fn edits_removals_reorders_and_forgeries_are_caught() {
        let signer = Signer::generate().unwrap();
        let asset = Uuid::new_v4();
        let log = sample(&signer, asset);
        let keys = trusted(&signer);

        let mut edited = log.clone();
        edited[1].event.what = EventKind::Stripped {
            removed: vec![],
            size_bytes: 8,
            sha256: "cd".into(),
            gps_in_original: false,
        };
        assert_eq!(verify(asset, &edited, &keys).unwrap_err().position, 1);

        let mut removed = log.clone();
        removed.remove(1);
        assert_eq!(verify(asset, &removed, &keys).unwrap_err().position, 1);

        let mut reordered = log.clone();
        reordered.swap(1, 2);
        assert_eq!(verify(asset, &reordered, &keys).unwrap_err().position, 1);

        // Re-hashed after an edit, but not re-signable without the key.
        let mut rehashed = log.clone();
        rehashed[2].event.what = EventKind::Verdict {
            decision: Decision::Publish,
            reason: "forged".into(),
        };
        rehashed[2].hash = rehashed[2].event.hash();
        let err = verify(asset, &rehashed, &keys).unwrap_err();
        assert_eq!(err.position, 2);

        // Signed by someone else.
        let stranger = Signer::generate().unwrap();
        let forged = sample(&stranger, asset);
        assert!(
            verify(asset, &forged, &keys)
                .unwrap_err()
                .problem
                .contains("unknown key")
        );
        assert!(verify(Uuid::new_v4(), &log, &keys).is_err());
    }

    #[test]
    fn state_fold_follows_the_rules() {
        let signer = Signer::generate().unwrap();
        let asset = Uuid::new_v4();
        let recv = EventKind::Received {
            tenant: "t".into(),
            consent_id: Uuid::nil(),
            format: Format::Png,
            size_bytes: 1,
            sha256: "x".into(),
            uploader: None,
            batch_id: None,
        };
        let hold = EventKind::Verdict {
            decision: Decision::Hold,
            reason: "not scanned".into(),
        };
        let cases = vec![
            (vec![recv.clone()], AssetState::Received),
            (vec![recv.clone(), hold.clone()], AssetState::Held),
            (
                vec![recv.clone(), hold.clone(), EventKind::Published],
                AssetState::Published,
            ),
            (
                vec![recv.clone(), EventKind::Published, EventKind::Restricted],
                AssetState::Restricted,
            ),
            (
                vec![
                    recv.clone(),
                    EventKind::Published,
                    EventKind::Restricted,
                    EventKind::Unrestricted,
                ],
                AssetState::Published,
            ),
            (
                vec![
                    recv.clone(),
                    EventKind::Published,
                    EventKind::Withdrawn { consent_id: asset },
                    EventKind::Published,
                ],
                AssetState::Withdrawn,
            ),
            (
                vec![
                    recv.clone(),
                    EventKind::Withdrawn { consent_id: asset },
                    EventKind::Erased,
                ],
                AssetState::Erased,
            ),
            (
                vec![
                    recv,
                    EventKind::Rejected {
                        reason: "unknown format".into(),
                    },
                ],
                AssetState::Rejected,
            ),
        ];
        for (kinds, want) in cases {
            assert_eq!(
                fold(&chain(&signer, asset, kinds.clone())),
                Some(want),
                "{kinds:?}"
            );
        }
    }

    #[test]
    fn a_restriction_and_take_downs_freeze_independently() {
        let signer = Signer::generate().unwrap();
        let asset = Uuid::new_v4();
        let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
        let mut kinds: Vec<EventKind> = sample(&signer, asset)
            .into_iter()
            .map(|e| e.event.what)
            .collect();
        let mut step = |what: EventKind, want: AssetState| {
            kinds.push(what);
            assert_eq!(fold(&chain(&signer, asset, kinds.clone())), Some(want));
        };
        step(
            EventKind::TakenDown { takedown_id: one },
            AssetState::TakenDown,
        );
        step(EventKind::Restricted, AssetState::Restricted);
        step(
            EventKind::TakenDown { takedown_id: two },
            AssetState::Restricted,
        );
        step(EventKind::Unrestricted, AssetState::TakenDown);
        step(
            EventKind::CounterNoticed {
                takedown_id: one,
                restore_due_ms: 1,
            },
            AssetState::TakenDown,
        );
        step(
            EventKind::Restored { takedown_id: one },
            AssetState::TakenDown,
        );
        step(
            EventKind::Restored { takedown_id: two },
            AssetState::Published,
        );
        step(EventKind::Erased, AssetState::Erased);
        step(EventKind::Restored { takedown_id: two }, AssetState::Erased);
    }

    #[test]
    fn prov_export_uses_prov_terms() {
        let signer = Signer::generate().unwrap();
        let asset = Uuid::new_v4();
        let prov = to_prov(asset, &sample(&signer, asset));
        for term in [
            "entity",
            "activity",
            "agent",
            "wasGeneratedBy",
            "wasDerivedFrom",
            "used",
        ] {
            assert!(
                prov.get(term)
                    .is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty())),
                "{term}"
            );
        }
        assert_eq!(prov["activity"].as_object().unwrap().len(), 4);
    }
}
