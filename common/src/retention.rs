//! Retention: how long each kind of asset keeps what it no longer needs, and what is due to go
//! from one asset at a given time, decided from its event log alone.
//!
//! Pure: an asset's events, the time and the tenant's policy in, at most one [`Due`] out. The
//! worker's retention job carries it out (deletes, shreds, appends a `purged` event) and
//! `asepsis rights purge --dry-run` prints it. A restricted, taken-down or erased asset is
//! never due: restriction means nothing is deleted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::policy::{Decision, ReviewDecision};
use crate::provenance::{AssetState, EventKind, SignedEvent, fold};

const DAY_MS: u64 = 86_400_000;

/// Which rule a purge followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionRule {
    /// The original (it carries the PHI metadata) once the derivative was published that long.
    OriginalAfterPublished,
    /// Everything of a rejected asset.
    Rejected,
    /// A held asset nobody reviewed is rejected.
    HeldUnreviewed,
    /// The original a withdrawal left (undecryptable already: its key was shredded).
    Withdrawn,
}

impl RetentionRule {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionRule::OriginalAfterPublished => "original_after_published",
            RetentionRule::Rejected => "rejected",
            RetentionRule::HeldUnreviewed => "held_unreviewed",
            RetentionRule::Withdrawn => "withdrawn",
        }
    }
}

/// Days after which each rule applies; `None` keeps forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub original_after_published_days: Option<u32>,
    pub rejected_after_days: Option<u32>,
    pub held_unreviewed_after_days: Option<u32>,
    pub withdrawn_after_days: Option<u32>,
}

impl Policy {
    /// This policy with each field `other` sets taking its place.
    pub fn overridden_by(self, other: &Policy) -> Policy {
        Policy {
            original_after_published_days: other
                .original_after_published_days
                .or(self.original_after_published_days),
            rejected_after_days: other.rejected_after_days.or(self.rejected_after_days),
            held_unreviewed_after_days: other
                .held_unreviewed_after_days
                .or(self.held_unreviewed_after_days),
            withdrawn_after_days: other.withdrawn_after_days.or(self.withdrawn_after_days),
        }
    }
}

/// The retention settings: a default policy, per-tenant overrides (field by field), and how
/// the worker's job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Seconds between runs of the retention job (one worker runs each period).
    pub interval_secs: u64,
    /// Most purges one run carries out; the rest wait for the next run.
    pub batch: usize,
    pub original_after_published_days: Option<u32>,
    pub rejected_after_days: Option<u32>,
    pub held_unreviewed_after_days: Option<u32>,
    pub withdrawn_after_days: Option<u32>,
    #[serde(default)]
    pub tenants: BTreeMap<String, Policy>,
}

impl Settings {
    /// The policy of tenants without an override.
    pub fn default_policy(&self) -> Policy {
        Policy {
            original_after_published_days: self.original_after_published_days,
            rejected_after_days: self.rejected_after_days,
            held_unreviewed_after_days: self.held_unreviewed_after_days,
            withdrawn_after_days: self.withdrawn_after_days,
        }
    }

    /// The policy in force for `tenant`.
    pub fn policy_for(&self, tenant: &str) -> Policy {
        match self.tenants.get(tenant) {
            Some(over) => self.default_policy().overridden_by(over),
            None => self.default_policy(),
        }
    }
}

/// What a purge does to the asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Delete the original blob; the derivative and the key stay.
    DeleteOriginal,
    /// Delete every blob and shred the data key.
    DeleteAll,
    /// Record `rejected` with this reason (the next run's `Rejected` rule purges it later).
    Reject(String),
}

/// A purge due now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub rule: RetentionRule,
    pub action: Action,
}

/// What is due to be purged from the asset with these events at `now_ms` under `policy`.
pub fn due(events: &[SignedEvent], now_ms: u64, policy: &Policy) -> Option<Due> {
    let already = |rule: RetentionRule| {
        events
            .iter()
            .any(|e| matches!(&e.event.what, EventKind::Purged { rule: r, .. } if *r == rule))
    };
    let since = |f: &dyn Fn(&EventKind) -> bool| {
        events
            .iter()
            .rev()
            .find(|e| f(&e.event.what))
            .map(|e| e.event.at_ms)
    };
    let past = |at: Option<u64>, days: Option<u32>| match (at, days) {
        (Some(at), Some(days)) => now_ms >= at.saturating_add(u64::from(days) * DAY_MS),
        _ => false,
    };
    let (rule, action, at, days) = match fold(events)? {
        AssetState::Published => (
            RetentionRule::OriginalAfterPublished,
            Action::DeleteOriginal,
            since(&|w| matches!(w, EventKind::Published)),
            policy.original_after_published_days,
        ),
        AssetState::Rejected => (
            RetentionRule::Rejected,
            Action::DeleteAll,
            since(&|w| {
                matches!(
                    w,
                    EventKind::Rejected { .. }
                        | EventKind::Reviewed {
                            decision: ReviewDecision::Reject,
                            ..
                        }
                )
            }),
            policy.rejected_after_days,
        ),
        AssetState::Held => {
            // Held for a reviewer (not an internal-use-only asset, which is kept on purpose).
            let held_at =
                since(&|w| matches!(w, EventKind::Verdict { .. } | EventKind::Unpublished { .. }));
            let waiting = events.iter().rev().find_map(|e| match &e.event.what {
                EventKind::Verdict { decision, .. } => Some(*decision == Decision::Hold),
                EventKind::Unpublished { .. } => Some(true),
                _ => None,
            });
            if waiting != Some(true) {
                return None;
            }
            let days = policy.held_unreviewed_after_days?;
            let reason = format!("held for review longer than {days} days without a decision");
            (
                RetentionRule::HeldUnreviewed,
                Action::Reject(reason),
                held_at,
                Some(days),
            )
        }
        AssetState::Withdrawn => (
            RetentionRule::Withdrawn,
            Action::DeleteOriginal,
            since(&|w| matches!(w, EventKind::Withdrawn { .. })),
            policy.withdrawn_after_days,
        ),
        _ => return None,
    };
    (!already(rule) && past(at, days)).then_some(Due { rule, action })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Format;
    use crate::provenance::Signer;
    use uuid::Uuid;

    fn log(kinds: &[(u64, EventKind)]) -> Vec<SignedEvent> {
        let signer = Signer::generate().unwrap();
        let asset = Uuid::nil();
        let mut out: Vec<SignedEvent> = Vec::new();
        for (at, what) in kinds {
            let next = signer.sign_next(asset, out.last(), *at, what.clone());
            out.push(next);
        }
        out
    }

    fn received() -> EventKind {
        EventKind::Received {
            tenant: "t".into(),
            consent_id: Uuid::nil(),
            format: Format::Jpeg,
            size_bytes: 1,
            sha256: "x".into(),
            uploader: None,
            batch_id: None,
        }
    }

    fn policy() -> Policy {
        Policy {
            original_after_published_days: Some(30),
            rejected_after_days: Some(7),
            held_unreviewed_after_days: Some(90),
            withdrawn_after_days: Some(1),
        }
    }

    const D: u64 = DAY_MS;

    #[test]
    fn each_rule_is_due_exactly_when_its_days_have_passed() {
        let published = log(&[(0, received()), (D, EventKind::Published)]);
        assert_eq!(due(&published, 31 * D - 1, &policy()), None);
        assert_eq!(
            due(&published, 31 * D, &policy()),
            Some(Due {
                rule: RetentionRule::OriginalAfterPublished,
                action: Action::DeleteOriginal
            })
        );
        let rejected = log(&[
            (0, received()),
            (D, EventKind::Rejected { reason: "x".into() }),
        ]);
        assert_eq!(due(&rejected, 8 * D - 1, &policy()), None);
        assert_eq!(
            due(&rejected, 8 * D, &policy()).map(|d| d.action),
            Some(Action::DeleteAll)
        );
        let held = log(&[
            (0, received()),
            (
                D,
                EventKind::Verdict {
                    decision: Decision::Hold,
                    reason: "face".into(),
                },
            ),
        ]);
        assert_eq!(due(&held, 91 * D - 1, &policy()), None);
        assert!(matches!(
            due(&held, 91 * D, &policy()).map(|d| d.action),
            Some(Action::Reject(r)) if r.contains("90 days")
        ));
        let withdrawn = log(&[
            (0, received()),
            (D, EventKind::Published),
            (
                2 * D,
                EventKind::Withdrawn {
                    consent_id: Uuid::nil(),
                },
            ),
        ]);
        assert_eq!(
            due(&withdrawn, 3 * D, &policy()).map(|d| d.rule),
            Some(RetentionRule::Withdrawn)
        );
    }

    #[test]
    fn nothing_is_due_twice_nor_from_a_frozen_internal_or_unset_asset() {
        let purged = log(&[
            (0, received()),
            (D, EventKind::Published),
            (
                40 * D,
                EventKind::Purged {
                    rule: RetentionRule::OriginalAfterPublished,
                    blobs: vec![crate::envelope::BlobRole::Original],
                    shredded: false,
                },
            ),
        ]);
        assert_eq!(due(&purged, 400 * D, &policy()), None);
        let restricted = log(&[
            (0, received()),
            (D, EventKind::Published),
            (D, EventKind::Restricted),
        ]);
        assert_eq!(due(&restricted, 400 * D, &policy()), None);
        let internal = log(&[
            (0, received()),
            (
                D,
                EventKind::Verdict {
                    decision: Decision::Internal,
                    reason: "internal use only".into(),
                },
            ),
        ]);
        assert_eq!(due(&internal, 400 * D, &policy()), None);
        let published = log(&[(0, received()), (D, EventKind::Published)]);
        assert_eq!(due(&published, 400 * D, &Policy::default()), None);
    }

    #[test]
    fn a_tenant_overrides_field_by_field() {
        let mut tenants = BTreeMap::new();
        tenants.insert(
            "strict".to_owned(),
            Policy {
                rejected_after_days: Some(0),
                ..Policy::default()
            },
        );
        let p = policy();
        let settings = Settings {
            interval_secs: 3600,
            batch: 100,
            original_after_published_days: p.original_after_published_days,
            rejected_after_days: p.rejected_after_days,
            held_unreviewed_after_days: p.held_unreviewed_after_days,
            withdrawn_after_days: p.withdrawn_after_days,
            tenants,
        };
        let strict = settings.policy_for("strict");
        assert_eq!(strict.rejected_after_days, Some(0));
        assert_eq!(strict.original_after_published_days, Some(30));
        assert_eq!(settings.policy_for("other"), policy());
    }
}
