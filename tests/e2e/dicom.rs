//! Hospital scans as DICOM: a CT de-identified by the Basic Profile and published as
//! `application/dicom` (judged by pydicom: names gone, no private tag, UIDs remapped, pixels
//! identical), the same scan from a second tenant remapped differently, a secondary capture
//! held for burned-in text, and a truncated file rejected with the reason.

use std::process::Command;

use reqwest::StatusCode;

use crate::Ctx;
use crate::support::*;

const CT: &str = "dicom/pydicom-CT_small.dcm";

/// (StudyInstanceUID, PatientName, private tags, PatientIdentityRemoved, pixels identical) of a
/// served file, read by pydicom against the original.
fn read_with_pydicom(served: &[u8], original: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("served.dcm");
    std::fs::write(&path, served).unwrap();
    let script = "import pydicom, sys\n\
        d = pydicom.dcmread(sys.argv[1]); o = pydicom.dcmread(sys.argv[2])\n\
        private = sum(1 for e in d.iterall() if e.tag.is_private)\n\
        print(d.StudyInstanceUID, repr(str(d.PatientName)), private, d.PatientIdentityRemoved, d.PixelData == o.PixelData)";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/corpus")
                .join(original),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

async fn published_scan(c: &Ctx, key: &str, consent: &str) -> (String, Vec<String>) {
    let id = c.d.upload_id(key, corpus(CT), &c.file_name, consent).await;
    let done = c.d.settled(key, &id).await;
    assert_eq!(done["state"], "published", "{done}");
    let removed = removed(&done);
    assert!(
        removed.contains(&"DICOM emptied:(0010,0010) Patient's Name")
            && removed.contains(&"DICOM remapped:(0020,000D) Study Instance UID")
            && removed.contains(&"DICOM removed:private groups"),
        "{removed:?}"
    );
    let (status, headers, served) = c.d.media(&id, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/dicom");
    (id, read_with_pydicom(&served, CT))
}

pub async fn scans_are_deidentified_by_the_basic_profile(c: &Ctx) {
    let consent = c.d.consent(&c.uploader, "identifiable", &c.canary).await;
    let (id, seen) = published_scan(c, &c.uploader, &consent).await;
    let [study, name, private, removed, pixels] = <[String; 5]>::try_from(seen).unwrap();
    assert!(study.starts_with("2.25."), "{study}");
    assert_eq!(
        (
            name.as_str(),
            private.as_str(),
            removed.as_str(),
            pixels.as_str()
        ),
        ("''", "0", "YES", "True")
    );
    let (status, prov) =
        c.d.get_json(&c.uploader, &format!("/v1/assets/{id}/provenance"))
            .await;
    assert_eq!(status, StatusCode::OK);
    let text = prov.to_string();
    assert!(
        text.contains("asepsis:deidentified") && text.contains("ruled_out"),
        "{text}"
    );

    // The same scan again from this tenant: the same study UID; from another: a different one.
    let (_, again) = published_scan(c, &c.uploader, &consent).await;
    assert_eq!(again[0], study, "one tenant, one mapping");
    let theirs = c.d.consent(&c.stranger, "identifiable", &c.canary).await;
    let (_, other) = published_scan(c, &c.stranger, &theirs).await;
    assert_ne!(other[0], study, "two tenants cannot be linked");

    // A secondary capture (modality OT) declares no burned-in annotation: held for review.
    let capture = corpus("dicom/pydicom-SC_rgb_jpeg_dcmtk.dcm");
    let held =
        c.d.upload_id(&c.uploader, capture, &c.file_name, &consent)
            .await;
    let done = c.d.settled(&c.uploader, &held).await;
    assert_eq!(done["state"], "held", "{done}");
    let reason = done["reason"].as_str().unwrap();
    assert!(
        reason.contains("Burned In Annotation not declared on modality OT"),
        "{done}"
    );

    // A truncated scan: rejected, with the reason.
    let truncated = corpus("malformed/pydicom-MR_truncated.dcm");
    let bad =
        c.d.upload_id(&c.uploader, truncated, &c.file_name, &consent)
            .await;
    let done = c.d.settled(&c.uploader, &bad).await;
    assert_eq!(done["state"], "rejected", "{done}");
    assert!(
        done["reason"]
            .as_str()
            .unwrap()
            .contains("malformed dicom: (7FE0,0010)"),
        "{done}"
    );
}
