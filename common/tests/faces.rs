//! The face detector and redaction on the labelled images of ../shared/faces, with the model
//! the binary embeds and the thresholds of config/defaults.toml.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use asepsis_common::faces::{
    Detector, Face, FaceError, Redaction, Settings, Unavailable, Verdict, YuNet, decode_upright,
};

fn shared(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(path)
}

fn settings() -> Settings {
    Settings::default()
}

/// The model the binary embeds (models/ at the root of the repository).
fn model() -> Vec<u8> {
    include_bytes!("../../models/face_detection_yunet_2023mar.onnx").to_vec()
}

fn yunet() -> YuNet {
    YuNet::from_model(&model(), settings()).unwrap()
}

fn face_image(name: &str) -> Vec<u8> {
    std::fs::read(shared("faces").join(name)).unwrap()
}

#[test]
fn faces_are_identifiable_and_face_free_images_are_not() {
    let detector = yunet();
    for name in [
        "fr-obama2.jpg",
        "fr-alex-lacamoire.png",
        "fr-two_people.jpg",
        "uf-imgs_13.jpg",
        "ski-camera.png",
        "uf-masked_face_imgs_img2.jpeg",
    ] {
        let scan = detector.scan(&face_image(name));
        assert_eq!(scan.verdict, Verdict::Identifiable, "{name}: {scan:?}");
        assert_eq!(scan.model_sha256, settings().model_sha256);
    }
    for name in [
        "exs-DSCN0010.jpg",
        "ski-rocket.jpg",
        "dcm-CT_small.png",
        "mpl-mri_s1045.png",
        "ski-ihc.png",
    ] {
        let scan = detector.scan(&face_image(name));
        assert_eq!(scan.verdict, Verdict::None, "{name}: {scan:?}");
        assert!(scan.faces.is_empty());
    }
}

#[test]
fn a_group_photo_yields_many_faces() {
    let scan = yunet().scan(&face_image("uf-imgs_9.jpg"));
    assert_eq!(scan.verdict, Verdict::Identifiable);
    assert!(scan.faces.len() >= 5, "{} faces", scan.faces.len());
}

/// A JPEG of `image` with an APP1 EXIF holding only `orientation`.
fn jpeg_with_orientation(image: &image::DynamicImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image
        .to_rgb8()
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    let jpeg = jpeg.into_inner();
    let mut tiff = b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&u16::try_from(app1.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn a_sideways_face_with_its_orientation_tag_is_seen_upright() {
    let detector = yunet();
    let upright = decode_upright(&face_image("fr-obama2.jpg"), &settings()).unwrap();
    // Stored turned a quarter to the left; Orientation 6 says "turn right to display".
    let sideways = upright.rotate270();
    let tagged = jpeg_with_orientation(&sideways, 6);
    let seen = decode_upright(&tagged, &settings()).unwrap();
    assert_eq!(
        (seen.width(), seen.height()),
        (upright.width(), upright.height())
    );
    let scan = detector.scan(&tagged);
    assert_eq!(scan.verdict, Verdict::Identifiable, "{scan:?}");
    // The box is in upright coordinates: it lies within the upright frame.
    let f = scan.faces[0];
    assert!(f.x + f.width <= upright.width() as f32 * 1.05);
    assert!(f.y + f.height <= upright.height() as f32 * 1.05);
}

fn iou(a: &Face, b: &Face) -> f32 {
    let w = ((a.x + a.width).min(b.x + b.width) - a.x.max(b.x)).max(0.0);
    let h = ((a.y + a.height).min(b.y + b.height) - a.y.max(b.y)).max(0.0);
    w * h / (a.width * a.height + b.width * b.height - w * h)
}

#[test]
fn a_large_jpeg_is_scanned_from_a_dct_scaled_decode_with_faces_in_full_size_pixels() {
    let detector = yunet();
    let bytes = face_image("fr-knn_examples_test_obama_and_biden.jpg");
    let full = decode_upright(&bytes, &settings()).unwrap();
    let scaled = detector.decode(&bytes).unwrap();
    assert_eq!(scaled.full, (full.width(), full.height()));
    let longer = scaled.image.width().max(scaled.image.height());
    assert!(
        (1280..full.width().max(full.height())).contains(&longer),
        "decoded at {longer} px on the longer side"
    );
    // The faces the full-size decode shows are the scan's, in the same pixels; and so when
    // the file is stored sideways with its orientation tag.
    let expected = detector
        .faces_in(&full, settings().high_threshold, true)
        .unwrap();
    assert!(expected.len() >= 2, "{expected:?}");
    let tagged = jpeg_with_orientation(&full.rotate270(), 6);
    for (what, file) in [("as stored", bytes), ("sideways, tagged", tagged)] {
        let scan = detector.scan(&file);
        assert_eq!(scan.verdict, Verdict::Identifiable, "{what}");
        for face in &expected {
            assert!(
                scan.faces.iter().any(|f| iou(f, face) > 0.6),
                "{what}: {face:?} not among {:?}",
                scan.faces
            );
        }
    }
}

#[test]
fn a_missing_or_corrupt_model_is_unavailable_and_images_are_not_scanned() {
    assert!(matches!(
        YuNet::from_model(b"", settings()),
        Err(FaceError::Model(_))
    ));
    // What the service runs when the model cannot be loaded.
    let reason = YuNet::from_model(b"", settings())
        .err()
        .unwrap()
        .to_string();
    let detector = Unavailable(reason);
    let scan = detector.scan(&face_image("fr-obama2.jpg"));
    assert_eq!(scan.verdict, Verdict::NotScanned);
    assert!(scan.reason.is_some() && detector.ready().is_err());

    let mut bytes = model();
    bytes[1000] ^= 1;
    let err = YuNet::from_model(&bytes, settings())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("SHA-256"), "{err}");
}

#[test]
fn heic_is_decoded_and_what_cannot_be_decoded_is_not_scanned_never_none() {
    let detector = yunet();
    let heic = std::fs::read(shared("corpus/heic/pillow-hopper.heif")).unwrap();
    assert_eq!(detector.scan(&heic).verdict, Verdict::Identifiable);
    let lab = std::fs::read(shared("corpus/tiff/pillow-hopper.Lab.tif")).unwrap();
    for bytes in [lab, b"\xFF\xD8\xFF\xE0 broken".to_vec()] {
        let scan = detector.scan(&bytes);
        assert_eq!(scan.verdict, Verdict::NotScanned, "{scan:?}");
        assert!(scan.reason.is_some());
    }
}

#[test]
fn a_redacted_heic_becomes_a_jpeg_without_faces() {
    let detector = yunet();
    let heic = std::fs::read(shared("corpus/heic/pillow-hopper.heif")).unwrap();
    let done = detector.redact(&heic).unwrap();
    assert_eq!(done.format, asepsis_common::media::Format::Jpeg);
    assert!(!done.faces.is_empty());
    assert_eq!(detector.scan(&done.bytes).verdict, Verdict::None);
}

fn overlaps(a: &Face, b: &Face) -> bool {
    a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height
}

#[test]
fn redaction_leaves_no_face_the_detector_can_find_at_its_low_threshold() {
    let detector = yunet();
    for how in [Redaction::Pixelate, Redaction::Blur] {
        let mut s = settings();
        s.redaction = how;
        let redactor = YuNet::from_model(&model(), s).unwrap();
        for name in [
            "fr-obama2.jpg",
            "fr-two_people.jpg",
            "pil-hopper.jpg",
            "fr-alex-lacamoire.png",
            "uf-imgs_12.jpg",
        ] {
            let original = face_image(name);
            let done = redactor.redact(&original).unwrap();
            let (redacted, hidden) = (done.bytes, done.faces);
            assert!(!hidden.is_empty(), "{name}");
            assert_eq!(
                image::guess_format(&redacted).unwrap(),
                image::guess_format(&original).unwrap(),
                "{name} keeps its format"
            );
            let after = decode_upright(&redacted, &settings()).unwrap();
            let left = detector
                .faces_in(&after, settings().low_threshold, false)
                .unwrap();
            for face in &left {
                assert!(
                    !hidden.iter().any(|h| overlaps(h, face)),
                    "{name} ({how:?}): a face found again in a redacted region: {face:?}"
                );
            }
            assert!(left.is_empty(), "{name} ({how:?}): {left:?}");
        }
    }
}
