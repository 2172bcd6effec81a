//! The asset pipeline: what becomes of one original, as one synchronous function over its
//! bytes. Strip (with its verify) → decode once → perceptual hash and scan → decide → redact → strip and verify
//! again → re-scan. Deterministic for the same bytes, settings and model, so a job redelivered
//! after a crash computes the same result and records only what is missing.
//!
//! Pure: it neither stores nor logs; the worker around it loads the original, stores the
//! derivative and appends the events this result describes.

use std::time::{Duration, Instant};

use crate::consent::Scope;
use crate::dicom::{self, BurnedIn, DeidReport, UidKey};
use crate::faces::{Detector, Scan, Upright, Verdict};
use crate::media::{Format, Limits, Report, StripError, Stripped, sniff, strip};
use crate::pdq::{self, Pdq};
use crate::policy::{Decision, decide};
use crate::sha256_hex;

/// What the pipeline made of an original.
#[derive(Debug)]
pub enum Processed {
    /// The file is refused: unknown or unsupported format, malformed, over a limit, or its
    /// stripped form failed verification. The asset ends `rejected` with this reason.
    Rejected(StripError),
    Decided(Box<Decided>),
}

/// A file that stripped clean, scanned and decided.
#[derive(Debug)]
pub struct Decided {
    /// The original with its metadata removed (verified): the derivative unless redacted.
    /// For DICOM, the de-identified file.
    pub stripped: Stripped,
    /// What DICOM de-identification did, for a DICOM original.
    pub deidentified: Option<DeidReport>,
    pub stripped_sha256: String,
    /// The face scan of the original.
    pub scan: Scan,
    /// The original's perceptual hash, when it decoded.
    pub pdq: Option<Pdq>,
    /// What the block list is asked about (`pdq::query_hashes`): the hash, and the hash
    /// inside flat margins when it has any.
    pub block_queries: Vec<Pdq>,
    /// Set when the policy asked for the faces to be redacted and the redaction was done.
    pub redaction: Option<Redaction>,
    /// Publish, hold or internal; never redact (redaction ends in publish or hold).
    pub decision: Decision,
    /// Why, for a reviewer (scope, verdicts and counts; no PHI).
    pub reason: String,
    pub timings: Timings,
}

/// How long each stage took (the worker's stage metrics; never part of a result's meaning).
#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Rewriting the container (the first strip, without its verify).
    pub strip: Duration,
    /// Re-reading the stripped output.
    pub verify: Duration,
    /// Decode, perceptual hash and face scan.
    pub scan: Duration,
    /// Redaction with its strip, verify and re-scan, when the policy asked for it.
    pub redact: Option<Duration>,
}

impl Timings {
    /// A rewrite started at `started` whose last `verify` was the re-read.
    fn rewritten(started: Instant, verify: Duration) -> Self {
        Self {
            verify,
            strip: started.elapsed().saturating_sub(verify),
            ..Self::default()
        }
    }
}

/// The redaction of a de-identified consent's image.
#[derive(Debug)]
pub struct Redaction {
    /// The scan of the redacted, stripped image.
    pub rescan: Scan,
    /// The redacted image, when the re-scan found no face: it replaces the stripped original
    /// as the derivative. `None`: a face is still seen, and the asset is held.
    pub derivative: Option<Redacted>,
}

/// A redacted, stripped and verified derivative.
#[derive(Debug)]
pub struct Redacted {
    pub bytes: Vec<u8>,
    /// HEIF and AVIF are re-encoded as JPEG.
    pub format: Format,
    pub faces_hidden: u32,
    pub sha256: String,
}

/// Run the pipeline over `original`, uploaded under a consent of `scope`; a DICOM file's UIDs
/// are remapped under its tenant's `uids`.
pub fn process(
    original: &[u8],
    scope: Scope,
    limits: &Limits,
    detector: &dyn Detector,
    uids: &UidKey,
) -> Processed {
    if sniff(original) == Some(Format::Dicom) {
        return process_dicom(original, scope, limits, detector, uids);
    }
    let started = Instant::now();
    let stripped = match strip(original, limits) {
        Ok(stripped) => stripped,
        Err(e) => return Processed::Rejected(e),
    };
    let mut timings = Timings::rewritten(started, stripped.verify_time);
    let scanning = Instant::now();
    let decoded = detector.decode(original);
    let pdq = decoded.as_ref().ok().map(|d| pdq::hash(&d.image));
    let block_queries = match (&decoded, pdq) {
        (Ok(decoded), Some(own)) => pdq::query_hashes(&decoded.image, own),
        _ => Vec::new(),
    };
    let scan = match &decoded {
        Ok(image) => detector.scan_decoded(image),
        Err(why) => Scan::not_scanned(why.clone()),
    };
    timings.scan = scanning.elapsed();
    let (decision, why) = decide(scope, scan.verdict, stripped.report.gps_in_original);
    let redacting = Instant::now();
    let (decision, reason, redaction) = match (decision, decoded) {
        (Decision::Redact, Ok(_)) => {
            let redacted = redact(original, limits, detector, why);
            timings.redact = Some(redacting.elapsed());
            redacted
        }
        (Decision::Redact, Err(e)) => (
            Decision::Hold,
            format!("{why}; redaction failed ({e}): held"),
            None,
        ),
        (other, _) => (other, why, None),
    };
    Processed::Decided(Box::new(Decided {
        stripped_sha256: sha256_hex(&stripped.bytes),
        stripped,
        deidentified: None,
        scan,
        pdq,
        block_queries,
        redaction,
        decision,
        reason,
        timings,
    }))
}

/// De-identify a DICOM file, scan its preview for faces, and decide. Its pixels are never
/// changed, so faces are not redacted (held instead), and burned-in text that is not ruled
/// out holds it for review.
fn process_dicom(
    original: &[u8],
    scope: Scope,
    limits: &Limits,
    detector: &dyn Detector,
    uids: &UidKey,
) -> Processed {
    let started = Instant::now();
    let done = match dicom::deidentify(original, uids, limits) {
        Ok(done) => done,
        Err(e) => return Processed::Rejected(e),
    };
    let mut timings = Timings::rewritten(started, done.verify_time);
    let scanning = Instant::now();
    let (scan, pdq) = match dicom::preview(&done.bytes, limits) {
        Ok(image) => {
            let own = pdq::hash(&image);
            (detector.scan_decoded(&Upright::from(image)), Some(own))
        }
        Err(why) => (Scan::not_scanned(why), None),
    };
    timings.scan = scanning.elapsed();
    let (decision, why) = decide(scope, scan.verdict, false);
    let (decision, reason) = match (&done.report.burned_in, decision) {
        (_, Decision::Internal) => (decision, why),
        (BurnedIn::Declared, _) => (
            Decision::Hold,
            format!("{why}; Burned In Annotation is YES: held for review of text in the pixels"),
        ),
        (BurnedIn::Likely(text), _) => (
            Decision::Hold,
            format!("{why}; {text}: held for review of text in the pixels"),
        ),
        (BurnedIn::RuledOut, Decision::Redact) => (
            Decision::Hold,
            format!("{why}; DICOM pixels are never altered, so the face is not redacted: held"),
        ),
        (BurnedIn::RuledOut, _) => (decision, why),
    };
    let report = Report {
        format: Format::Dicom,
        removed: done.report.names(),
        bytes_in: original.len() as u64,
        bytes_out: done.bytes.len() as u64,
        gps_in_original: false,
        orientation: None,
    };
    Processed::Decided(Box::new(Decided {
        stripped_sha256: sha256_hex(&done.bytes),
        stripped: Stripped {
            bytes: done.bytes,
            report,
            verify_time: done.verify_time,
        },
        deidentified: Some(done.report),
        block_queries: pdq.into_iter().collect(),
        scan,
        pdq,
        redaction: None,
        decision,
        reason,
        timings,
    }))
}

/// Hide the faces, strip and verify the result, and re-scan it: publish when the re-scan
/// finds nothing, else hold.
fn redact(
    original: &[u8],
    limits: &Limits,
    detector: &dyn Detector,
    why: String,
) -> (Decision, String, Option<Redaction>) {
    let done = detector
        .redact(original)
        .and_then(|r| Ok((strip(&r.bytes, limits).map_err(|e| e.to_string())?, r)));
    let (clean, redacted) = match done {
        Ok(done) => done,
        Err(e) => {
            let reason = format!("{why}; redaction failed ({e}): held");
            return (Decision::Hold, reason, None);
        }
    };
    let rescan = detector.scan(&clean.bytes);
    if rescan.verdict != Verdict::None {
        let still = rescan.verdict.as_str();
        let reason = format!("{why}; after redaction the re-scan says {still}: held");
        let redaction = Redaction {
            rescan,
            derivative: None,
        };
        return (Decision::Hold, reason, Some(redaction));
    }
    let hidden = redacted.faces.len();
    let derivative = Redacted {
        sha256: sha256_hex(&clean.bytes),
        bytes: clean.bytes,
        format: redacted.format,
        faces_hidden: u32::try_from(hidden).unwrap_or(u32::MAX),
    };
    let reason = format!("{why}; {hidden} face(s) redacted, re-scan found none");
    let redaction = Redaction {
        rescan,
        derivative: Some(derivative),
    };
    (Decision::Publish, reason, Some(redaction))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faces::Unavailable;

    fn png() -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::new_luma8(4, 4)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    fn key() -> UidKey {
        UidKey::for_tenant(&[0; 32].into(), "t")
    }

    #[test]
    fn a_file_that_does_not_strip_is_rejected_with_the_reason() {
        let detector = Unavailable("no model".into());
        match process(
            b"not an image",
            Scope::Identifiable,
            &Limits::default(),
            &detector,
            &key(),
        ) {
            Processed::Rejected(e) => assert_eq!(e, StripError::UnknownFormat),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_a_detector_the_policy_decides_on_not_scanned() {
        let detector = Unavailable("no model".into());
        let limits = Limits::default();
        for (scope, want) in [
            (Scope::Identifiable, Decision::Publish),
            (Scope::Deidentified, Decision::Hold),
            (Scope::Internal, Decision::Internal),
        ] {
            let Processed::Decided(d) = process(&png(), scope, &limits, &detector, &key()) else {
                panic!("{scope:?}: the PNG strips clean");
            };
            assert_eq!(d.decision, want, "{scope:?}");
            assert_eq!(d.scan.verdict, Verdict::NotScanned);
            assert_eq!(d.scan.reason.as_deref(), Some("no model"));
            assert!(d.redaction.is_none());
            assert_eq!(d.stripped_sha256, sha256_hex(&d.stripped.bytes));
        }
    }
}
