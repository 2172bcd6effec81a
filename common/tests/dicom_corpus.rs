//! Every DICOM file of ../shared/corpus de-identified, and judged by an independent reader
//! (tests/dicom_check.py: pydicom with dicom-anonymizer's copy of Table E.1-1): the output
//! parses, no identifying attribute survives with its value, nothing private is left, every
//! UID is remapped — the same way for one tenant across runs, differently across tenants —
//! and the pixels are identical. Truncated, mutated and headerless files are handled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use asepsis_common::dicom::{BurnedIn, UidKey, deidentify};
use asepsis_common::media::{Limits, StripError};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

fn originals() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus().join("dicom"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 6, "the corpus's six DICOM files");
    files
}

/// De-identify every original into `out` under `tenant`'s key.
fn run(out: &Path, tenant: &str) {
    let key = UidKey::for_tenant(&[42; 32].into(), tenant);
    for path in originals() {
        let done = deidentify(&std::fs::read(&path).unwrap(), &key, &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        std::fs::write(out.join(path.file_name().unwrap()), &done.bytes).unwrap();
    }
}

/// The independent check's verdict on `out`.
fn judge(out: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/dicom_check.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(corpus().join("dicom"))
        .arg(out)
        .output()
        .expect("python3 (scripts/test installs pydicom and dicom-anonymizer)");
    assert!(
        output.status.success(),
        "dicom_check.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn corpus_files_are_deidentified_as_an_independent_reader_sees_them() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    run(dirs[0].path(), "clinic-a");
    run(dirs[1].path(), "clinic-a");
    run(dirs[2].path(), "clinic-b");
    let verdicts: Vec<serde_json::Value> = dirs.iter().map(|d| judge(d.path())).collect();
    for file in verdicts[0]["files"].as_array().unwrap() {
        let name = &file["file"];
        assert_eq!(file["parsed"], true, "{name}: {file}");
        assert_eq!(file["surviving"], serde_json::json!([]), "{name}: {file}");
        assert_eq!(file["private"], 0, "{name}: {file}");
        assert_eq!(
            file["uid_problems"],
            serde_json::json!([]),
            "{name}: {file}"
        );
        assert_eq!(file["pixels_identical"], true, "{name}: {file}");
    }
    let maps: Vec<&serde_json::Map<String, serde_json::Value>> = verdicts
        .iter()
        .map(|v| v["uid_map"].as_object().unwrap())
        .collect();
    assert!(maps[0].len() >= 10, "UIDs seen: {}", maps[0].len());
    assert_eq!(maps[0], maps[1], "one tenant, two runs: the same UIDs");
    for (uid, new) in maps[0] {
        assert_ne!(Some(new), maps[2].get(uid), "{uid}: two tenants, one UID");
    }
    assert_eq!(verdicts[0]["inconsistent_uids"], 0);
}

#[test]
fn truncated_files_are_rejected_and_bare_data_sets_get_a_header() {
    let key = UidKey::for_tenant(&[42; 32].into(), "t");
    let limits = Limits::default();
    let truncated = std::fs::read(corpus().join("malformed/pydicom-MR_truncated.dcm")).unwrap();
    let err = deidentify(&truncated, &key, &limits).unwrap_err();
    assert!(matches!(err, StripError::Malformed { .. }), "{err}");
    // The RT plan cut inside an element, every 256 bytes (odd offsets: every element starts at
    // an even one, and a cut between two elements leaves a shorter but valid file): refused,
    // never half-written.
    let plan = std::fs::read(corpus().join("dicom/pydicom-rtplan.dcm")).unwrap();
    for cut in (257..plan.len()).step_by(256) {
        if let Ok(done) = deidentify(&plan[..cut], &key, &limits) {
            panic!("cut at {cut} accepted ({} bytes out)", done.bytes.len());
        }
    }
    // Without its preamble and file meta: the data set alone, read and given a header.
    let ct = std::fs::read(corpus().join("dicom/pydicom-CT_small.dcm")).unwrap();
    let meta_len = u32::from_le_bytes(ct[140..144].try_into().unwrap()) as usize;
    let bare = &ct[144 + meta_len..];
    let done = deidentify(bare, &key, &limits).unwrap();
    assert!(done.report.header_added);
    assert_eq!(done.report.burned_in, BurnedIn::RuledOut);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bare.dcm");
    std::fs::write(&out, &done.bytes).unwrap();
    let read = Command::new("python3")
        .args(["-c", "import pydicom,sys; d=pydicom.dcmread(sys.argv[1]); print(d.PatientIdentityRemoved, d.file_meta.TransferSyntaxUID)"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&read.stdout).trim(),
        "YES 1.2.840.10008.1.2.1"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The corpus files with bytes overwritten and cut short never panic, and whatever is
    /// still accepted passed verify and de-identifies again.
    #[test]
    fn mutated_corpus_files_never_panic(
        file in 0usize..6,
        edits in proptest::collection::vec((0usize..40_000, proptest::prelude::any::<u8>()), 1..8),
        cut in 0usize..40_000,
    ) {
        let key = UidKey::for_tenant(&[42; 32].into(), "t");
        let limits = Limits::default();
        let mut bytes = std::fs::read(&originals()[file]).unwrap();
        for (at, byte) in edits {
            let len = bytes.len();
            bytes[at % len] = byte;
        }
        bytes.truncate(bytes.len() - cut % bytes.len());
        if let Ok(done) = deidentify(&bytes, &key, &limits) {
            proptest::prop_assert!(deidentify(&done.bytes, &key, &limits).is_ok());
        }
    }
}
