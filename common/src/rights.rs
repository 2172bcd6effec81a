//! The rules of a subject's rights: what a subject reference may be, which purposes an
//! objection may name, and the accounting of disclosures (HIPAA 45 CFR 164.528) computed from
//! the signed logs: each period an asset was published to the website, and each export to the
//! subject.
//!
//! Pure: logs in, typed answers out. Carrying a request out (erasing, restricting, exporting)
//! is `asepsis-rights`' business.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::provenance::{AssetState, SignedEvent, fold};

/// Longest subject reference accepted (as consents' `subject_ref`).
const MAX_REF: usize = 256;

/// Is `subject_ref` a reference a consent could hold?
///
/// # Errors
/// What is wrong with it (never quoting it).
pub fn check_ref(subject_ref: &str) -> Result<(), String> {
    if subject_ref.trim().is_empty() {
        Err("subject reference: must not be empty".into())
    } else if subject_ref.len() > MAX_REF {
        Err(format!("subject reference: longer than {MAX_REF} bytes"))
    } else if subject_ref.chars().any(char::is_control) {
        Err("subject reference: holds control characters".into())
    } else {
        Ok(())
    }
}

/// The purposes of an objection, checked against those the subject's consents name.
///
/// # Errors
/// None named, or one that no consent of the subject names (by its position, not its text).
pub fn check_objection(purposes: &[String], known: &[String]) -> Result<(), String> {
    if purposes.is_empty() {
        return Err("purposes: name at least one purpose to object to".into());
    }
    match purposes.iter().position(|p| !known.contains(p)) {
        Some(i) => Err(format!(
            "purposes[{i}]: unknown purpose: no consent of this subject names it"
        )),
        None => Ok(()),
    }
}

/// May an asset published under an earlier version of its consent stay published under one
/// that now allows de-identified use only? Only if its derivative's last face scan found no
/// face (what the pipeline requires before publishing under such a consent); otherwise it
/// goes back to a reviewer.
///
/// # Errors
/// Why not (no PHI).
pub fn fits_deidentified(events: &[SignedEvent]) -> Result<(), String> {
    let last_scan = events.iter().rev().find_map(|e| match &e.event.what {
        crate::provenance::EventKind::Scanned { verdict, .. } => Some(*verdict),
        _ => None,
    });
    match last_scan {
        Some(crate::faces::Verdict::None) => Ok(()),
        _ => Err(
            "the consent now allows de-identified use only, and the published image \
                  was not found free of faces"
                .into(),
        ),
    }
}

/// Who received a disclosure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Recipient {
    /// The public website: the derivative was served at `/media/{id}`.
    Website,
    /// The subject: an export bundle.
    Subject,
}

/// One disclosure: when, to whom, what and for which purposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Disclosure {
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: OffsetDateTime,
    /// When a publication ended (unpublished, withdrawn, erased, restricted); `None` while it
    /// lasts, and for an export.
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub until: Option<OffsetDateTime>,
    pub recipient: Recipient,
    /// `published derivative` or `export bundle (originals, derivatives, consents, provenance)`.
    pub what: String,
    pub assets: Vec<Uuid>,
    /// The purposes the covering consent named at the time of the answer.
    pub purposes: Vec<String>,
    /// The receipt of the request that disclosed (exports).
    pub receipt: Option<Uuid>,
}

/// The periods an asset was published, from its log: `(from_ms, until_ms)`.
pub fn publication_periods(events: &[SignedEvent]) -> Vec<(u64, Option<u64>)> {
    let mut periods = Vec::new();
    let mut open: Option<u64> = None;
    for i in 0..events.len() {
        let published = fold(&events[..=i]) == Some(AssetState::Published);
        let at = events[i].event.at_ms;
        match (published, open) {
            (true, None) => open = Some(at),
            (false, Some(from)) => {
                periods.push((from, Some(at)));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(from) = open {
        periods.push((from, None));
    }
    periods
}

fn time_of(ms: u64) -> OffsetDateTime {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// One asset as the accounting sees it.
pub struct AssetRecord<'a> {
    pub id: Uuid,
    pub events: &'a [SignedEvent],
    pub purposes: &'a [String],
}

/// One export, from the audit log.
pub struct ExportRecord {
    pub at_ms: u64,
    pub receipt: Option<Uuid>,
    pub assets: Vec<Uuid>,
}

/// The accounting of disclosures overlapping `[from_ms, to_ms)`, oldest first.
pub fn account(
    assets: &[AssetRecord<'_>],
    exports: &[ExportRecord],
    from_ms: u64,
    to_ms: u64,
) -> Vec<Disclosure> {
    let mut out: Vec<(u64, Disclosure)> = Vec::new();
    for asset in assets {
        for (start, end) in publication_periods(asset.events) {
            if start < to_ms && end.is_none_or(|e| e > from_ms) {
                out.push((
                    start,
                    Disclosure {
                        at: time_of(start),
                        until: end.map(time_of),
                        recipient: Recipient::Website,
                        what: "published derivative".into(),
                        assets: vec![asset.id],
                        purposes: asset.purposes.to_vec(),
                        receipt: None,
                    },
                ));
            }
        }
    }
    for export in exports {
        if (from_ms..to_ms).contains(&export.at_ms) {
            out.push((
                export.at_ms,
                Disclosure {
                    at: time_of(export.at_ms),
                    until: None,
                    recipient: Recipient::Subject,
                    what: "export bundle (originals, derivatives, consents, provenance)".into(),
                    assets: export.assets.clone(),
                    purposes: vec!["the subject's right of access".into()],
                    receipt: export.receipt,
                },
            ));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out.into_iter().map(|(_, d)| d).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Format;
    use crate::policy::Decision;
    use crate::provenance::{EventKind, Signer};

    fn log(kinds: &[(u64, EventKind)]) -> Vec<SignedEvent> {
        let signer = Signer::generate().unwrap();
        let mut out: Vec<SignedEvent> = Vec::new();
        for (at, what) in kinds {
            let next = signer.sign_next(Uuid::nil(), out.last(), *at, what.clone());
            out.push(next);
        }
        out
    }

    #[test]
    fn only_a_face_free_derivative_stays_published_under_a_de_identified_consent() {
        use crate::faces::Verdict;
        let scanned = |verdict| EventKind::Scanned {
            verdict,
            faces: 0,
            scores_milli: vec![],
            model_sha256: "m".into(),
            pdq: None,
        };
        assert!(fits_deidentified(&log(&[(1, scanned(Verdict::None))])).is_ok());
        for verdict in [
            Verdict::Identifiable,
            Verdict::Uncertain,
            Verdict::NotScanned,
        ] {
            assert!(fits_deidentified(&log(&[(1, scanned(verdict))])).is_err());
        }
        assert!(fits_deidentified(&log(&[(1, EventKind::Published)])).is_err());
    }

    #[test]
    fn refs_and_objections_are_checked_without_quoting_them() {
        assert!(check_ref("p-1").is_ok());
        assert!(check_ref(" ").is_err());
        assert!(check_ref("a\nb").is_err());
        assert!(check_ref(&"x".repeat(300)).is_err());
        let known = vec!["education".to_owned(), "marketing".to_owned()];
        assert!(check_objection(&["marketing".into()], &known).is_ok());
        let err = check_objection(&["education".into(), "secret-x".into()], &known).unwrap_err();
        assert!(
            err.contains("purposes[1]") && !err.contains("secret-x"),
            "{err}"
        );
        assert!(check_objection(&[], &known).is_err());
    }

    #[test]
    fn publications_run_from_published_to_whatever_ended_them() {
        let received = EventKind::Received {
            tenant: "t".into(),
            consent_id: Uuid::nil(),
            format: Format::Jpeg,
            size_bytes: 1,
            sha256: "x".into(),
            uploader: None,
            batch_id: None,
        };
        let events = log(&[
            (1, received),
            (10, EventKind::Published),
            (20, EventKind::Restricted),
            (30, EventKind::Unrestricted),
            (
                40,
                EventKind::Unpublished {
                    reason: "narrowed".into(),
                },
            ),
            (
                50,
                EventKind::Verdict {
                    decision: Decision::Hold,
                    reason: "x".into(),
                },
            ),
            (60, EventKind::Published),
        ]);
        assert_eq!(
            publication_periods(&events),
            vec![(10, Some(20)), (30, Some(40)), (60, None)]
        );
        let purposes = vec!["education".to_owned()];
        let assets = [AssetRecord {
            id: Uuid::nil(),
            events: &events,
            purposes: &purposes,
        }];
        let exports = [ExportRecord {
            at_ms: 45,
            receipt: None,
            assets: vec![Uuid::nil()],
        }];
        let all = account(&assets, &exports, 0, u64::MAX);
        let recipients: Vec<Recipient> = all.iter().map(|d| d.recipient).collect();
        use Recipient::{Subject, Website};
        assert_eq!(recipients, vec![Website, Website, Subject, Website]);
        // A period that overlaps the window counts; one wholly before it does not.
        assert_eq!(account(&assets, &exports, 25, 35).len(), 1);
        assert_eq!(account(&assets, &exports, 41, 59).len(), 1);
    }
}
