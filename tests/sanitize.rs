//! `asepsis sanitize` on the real corpus, with exiftool as the oracle: nothing it can read in
//! an output is outside the allowed set (file-system facts, image structure, ICC colour data
//! with blank text, Orientation).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

fn sanitize(inputs: &[PathBuf], out: &Path, report: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_asepsis"))
        .arg("sanitize")
        .args(inputs)
        .arg("-o")
        .arg(out)
        .arg("--report")
        .arg(report)
        .output()
        .unwrap()
}

/// Groups exiftool may report on a clean file, and for some the only tags allowed in them.
fn allowed(group: &str, tag: &str, value: &serde_json::Value) -> bool {
    match group {
        "System" | "File" | "ExifTool" | "Composite" => true,
        // Colour data; text tags are checked to be blank below.
        "ICC-header" | "ICC_Profile" | "ICC-meas" | "ICC-view" => true,
        // Orientation, and in TIFF files the tags that lay out the pixels (exiftool calls the
        // strip of a JPEG-compressed TIFF a "PreviewImage").
        "IFD0" => matches!(
            tag,
            "Orientation"
                | "ImageWidth"
                | "ImageHeight"
                | "BitsPerSample"
                | "Compression"
                | "PhotometricInterpretation"
                | "StripOffsets"
                | "SamplesPerPixel"
                | "RowsPerStrip"
                | "StripByteCounts"
                | "PlanarConfiguration"
                | "Predictor"
                | "ExtraSamples"
                | "SampleFormat"
                | "ColorMap"
                | "YCbCrSubSampling"
                | "YCbCrPositioning"
                | "YCbCrCoefficients"
                | "ReferenceBlackWhite"
                | "TileWidth"
                | "TileLength"
                | "TileOffsets"
                | "TileByteCounts"
                | "JPEGTables"
                | "FillOrder"
                | "PreviewImageStart"
                | "PreviewImageLength"
                | "PreviewImage"
        ),
        "Adobe" => true, // APP14: how to read CMYK/YCCK, no content
        // IHDR, gAMA, cHRM, sRGB…; the iCCP name is always our own.
        "PNG" => tag != "ProfileName" || value == "ICC Profile",
        "RIFF" => true, // VP8/VP8L/VP8X/ANIM headers
        // HEIF/AVIF structure: brands, codec configuration, sizes, rotation, primary item.
        "Meta" => matches!(tag, "MetaImageSize" | "PrimaryItemReference"),
        "QuickTime" => matches!(
            tag,
            "MajorBrand"
                | "MinorVersion"
                | "CompatibleBrands"
                | "HandlerType"
                | "ImageSpatialExtent"
                | "ImagePixelDepth"
                | "Rotation"
                | "ChromaFormat"
                | "MediaDataOffset"
                | "MediaDataSize"
                | "AuxiliaryImageType"
                | "ColorProfiles"
                | "ColorPrimaries"
                | "TransferCharacteristics"
                | "MatrixCoefficients"
                | "AV1ConfigurationVersion"
                | "ChromaSamplePosition"
                | "HEVCConfigurationVersion"
                | "GeneralProfileSpace"
                | "GeneralTierFlag"
                | "GeneralProfileIDC"
                | "GenProfileCompatibilityFlags"
                | "ConstraintIndicatorFlags"
                | "GeneralLevelIDC"
                | "MinSpatialSegmentationIDC"
                | "ParallelismType"
                | "BitDepthLuma"
                | "BitDepthChroma"
                | "AverageFrameRate"
                | "ConstantFrameRate"
                | "NumTemporalLayers"
                | "TemporalIDNested"
        ),
        _ => false,
    }
}

const ICC_TEXT: [&str; 8] = [
    "ProfileDescription",
    "ProfileCopyright",
    "DeviceMfgDesc",
    "DeviceModelDesc",
    "ViewingCondDesc",
    "ProfileCreator",
    "DeviceManufacturer",
    "DeviceModel",
];

#[test]
fn exiftool_finds_nothing_outside_the_allowed_set_in_any_output() {
    let out = tempfile::tempdir().unwrap();
    let report = out.path().join("report.json");
    let dest = out.path().join("clean");
    let result = sanitize(&[corpus()], &dest, &report);
    assert_eq!(
        result.status.code(),
        Some(1),
        "some corpus files are refused"
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let files = report["files"].as_array().unwrap();
    let clean: Vec<&serde_json::Value> = files.iter().filter(|f| f["status"] == "clean").collect();
    assert!(clean.len() >= 80, "{} clean", clean.len());
    for f in files.iter().filter(|f| f["status"] == "rejected") {
        assert!(!f["reason"].as_str().unwrap_or_default().is_empty(), "{f}");
    }
    let gps = clean
        .iter()
        .find(|f| f["file"] == "jpeg/ianare-DSCN0010.jpg")
        .unwrap();
    assert_eq!(gps["gps_in_original"], true);
    let removed: Vec<&str> = gps["removed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        removed.contains(&"EXIF:GPSLatitude") && removed.contains(&"MakerNotes"),
        "{removed:?}"
    );

    // DICOM outputs are judged by pydicom (common/tests/dicom_corpus.rs); here, the report.
    let dicom = |status: &str| {
        files
            .iter()
            .filter(|f| f["format"] == "dicom" && f["status"] == status)
            .count()
    };
    // Two are Secondary Capture images (text-prone, no Burned In Annotation): to review.
    assert_eq!((dicom("clean"), dicom("review")), (4, 2));
    let capture = files
        .iter()
        .find(|f| f["file"] == "dicom/pydicom-SC_rgb_jpeg_dcmtk.dcm")
        .unwrap();
    assert_eq!(capture["status"], "review", "{capture}");
    assert!(
        capture["dicom"]["remapped"].as_array().unwrap().len() >= 2,
        "{capture}"
    );
    let truncated = files
        .iter()
        .find(|f| f["file"] == "malformed/pydicom-MR_truncated.dcm")
        .unwrap();
    assert_eq!(truncated["status"], "rejected", "{truncated}");
    let clean: Vec<&serde_json::Value> = clean
        .into_iter()
        .filter(|f| f["format"] != "dicom")
        .collect();

    let exiftool = Command::new("exiftool")
        .args(["-j", "-a", "-G1", "-s", "-r", "--ext", "dcm"])
        .arg(&dest)
        .output()
        .expect("exiftool must be installed (scripts/test installs libimage-exiftool-perl)");
    let seen: serde_json::Value = serde_json::from_slice(&exiftool.stdout).unwrap();
    let seen = seen.as_array().unwrap();
    assert_eq!(seen.len(), clean.len(), "exiftool read every output");
    for file in seen {
        let name = file["SourceFile"].as_str().unwrap_or("?");
        for (key, value) in file.as_object().unwrap() {
            let Some((group, tag)) = key.split_once(':') else {
                continue;
            };
            assert!(allowed(group, tag, value), "{name}: {key} = {value}");
            if group.starts_with("ICC") && ICC_TEXT.iter().any(|t| tag.starts_with(t)) {
                let blank = value
                    .as_str()
                    .is_none_or(|s| s.trim_matches(['\0', ' ']).is_empty())
                    || value == 0;
                assert!(blank, "{name}: {key} is not blank: {value}");
            }
        }
    }
}

#[test]
fn exit_status_is_0_only_when_every_file_is_clean() {
    let out = tempfile::tempdir().unwrap();
    let report = out.path().join("r.json");
    let png = corpus().join("png");
    let ok = sanitize(std::slice::from_ref(&png), &out.path().join("a"), &report);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        out.path().join("a/pillow-hopper.png").is_file(),
        "same relative names"
    );

    let one_bad = corpus().join("malformed/pillow-broken.png");
    let bad = sanitize(&[png, one_bad], &out.path().join("b"), &report);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("rejected pillow-broken.png"));
    assert!(
        !out.path().join("b/pillow-broken.png").exists(),
        "nothing written for a refused file"
    );
}

/// HEIC and AVIF outputs open in Pillow (pillow-heif's own libheif for HEIF, Pillow's libavif
/// for AVIF: readers that share no code with ours) to the original's pixels.
#[test]
fn heif_and_avif_outputs_decode_in_pillow_to_the_original_pixels() {
    for folder in ["heic", "avif"] {
        let out = tempfile::tempdir().unwrap();
        let result = sanitize(
            &[corpus().join(folder)],
            out.path(),
            &out.path().join("r.json"),
        );
        assert_eq!(
            result.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        std::fs::remove_file(out.path().join("r.json")).unwrap();
        let check = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/same_pixels.py"))
            .arg(corpus().join(folder))
            .arg(out.path())
            .output()
            .expect("python3 with Pillow and pillow-heif (scripts/test installs them)");
        let stdout = String::from_utf8_lossy(&check.stdout);
        eprintln!("{stdout}{}", String::from_utf8_lossy(&check.stderr));
        assert!(check.status.success(), "{folder}: {stdout}");
    }
}
