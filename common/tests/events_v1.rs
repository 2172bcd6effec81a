//! An event log written before events were typed (formats, verdicts and decisions held as
//! strings) still parses into the typed events, serializes back to the very same bytes, and
//! verifies: the canonical JSON is a serialisation detail this test pins.
//!
//! `fixtures/events-v1.jsonl`: the signer's public key (hex), then one signed event per line,
//! every kind of event, written by the build before the change (commit e3c40c6).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use asepsis_common::faces::Verdict;
use asepsis_common::media::Format;
use asepsis_common::policy::{Decision, ReviewDecision};
use asepsis_common::provenance::{AssetState, EventKind, SignedEvent, TrustedKeys, fold, verify};

#[test]
fn a_log_written_with_string_fields_still_verifies_byte_for_byte() {
    let text = include_str!("fixtures/events-v1.jsonl");
    let mut lines = text.lines();
    let mut trusted = TrustedKeys::default();
    trusted.add(hex::decode(lines.next().unwrap()).unwrap());
    let mut events: Vec<SignedEvent> = Vec::new();
    for line in lines {
        let event: SignedEvent = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_string(&event).unwrap(), line, "same bytes");
        assert_eq!(event.event.hash(), event.hash, "same canonical encoding");
        events.push(event);
    }
    assert_eq!(events.len(), 20);
    let asset = events[0].event.asset_id;
    assert_eq!(verify(asset, &events, &trusted), Ok(20));
    assert_eq!(fold(&events), Some(AssetState::Erased));

    let what: Vec<&EventKind> = events.iter().map(|e| &e.event.what).collect();
    assert!(matches!(
        what[0],
        EventKind::Received {
            format: Format::Heif,
            ..
        }
    ));
    assert!(matches!(
        what[3],
        EventKind::Scanned {
            verdict: Verdict::Identifiable,
            ..
        }
    ));
    assert!(matches!(
        what[4],
        EventKind::Scanned {
            verdict: Verdict::NotScanned,
            ..
        }
    ));
    assert!(matches!(
        what[5],
        EventKind::Redacted {
            format: Format::Jpeg,
            ..
        }
    ));
    assert!(matches!(
        what[7],
        EventKind::Verdict {
            decision: Decision::Publish,
            ..
        }
    ));
    assert!(matches!(
        what[10],
        EventKind::Reviewed {
            decision: ReviewDecision::Approve,
            ..
        }
    ));
    assert!(matches!(
        what[12],
        EventKind::Reviewed {
            decision: ReviewDecision::Reject,
            ..
        }
    ));
}
