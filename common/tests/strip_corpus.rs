//! Every file of ../shared/corpus comes out clean or is refused with the expected reason, and
//! every clean output decodes to exactly the original's pixels.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use asepsis_common::media::{Format, Limits, StripError, strip, verify};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus")
}

/// (path, format folder, metadata groups) from MANIFEST.tsv.
fn manifest() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(corpus().join("MANIFEST.tsv"))
        .expect("../shared/corpus/MANIFEST.tsv");
    text.lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols[0].to_owned(), cols[1].to_owned(), cols[5].to_owned())
        })
        .collect()
}

#[derive(Debug)]
enum Expect {
    Clean,
    Unsupported,
    Malformed(&'static str),
}

fn expected(path: &str, folder: &str) -> Expect {
    match (folder, path.rsplit('/').next().unwrap_or(path)) {
        ("jpeg" | "png" | "webp", "pillow-ultrahdr.jpg") => Expect::Malformed("truncated"),
        ("jpeg" | "png" | "webp", _) => Expect::Clean,
        ("tiff" | "heic" | "avif" | "dicom", _) => Expect::Unsupported,
        ("malformed", name) => match name {
            "ianare-corrupted.jpg" => Expect::Malformed("expected a marker"),
            "ianare-trunc-DSCN0042.jpg" | "pillow-trunc-itxt_chunks.png" => {
                Expect::Malformed("truncated")
            }
            "pillow-broken.png" => Expect::Malformed("runs past the end"),
            n if n.ends_with(".tif") || n.ends_with(".dcm") => Expect::Unsupported,
            _ => Expect::Clean, // bad EXIF in a good image: the EXIF goes, the image stays
        },
        _ => panic!("unknown corpus folder {folder}"),
    }
}

#[test]
fn every_corpus_file_is_clean_or_refused_as_expected() {
    let limits = Limits::default();
    let rows = manifest();
    assert!(rows.len() >= 90, "corpus is all there");
    let mut clean = 0;
    for (path, folder, groups) in rows {
        let bytes = std::fs::read(corpus().join(&path)).unwrap();
        let got = strip(&bytes, &limits);
        match (expected(&path, &folder), &got) {
            (Expect::Clean, Ok(s)) => {
                clean += 1;
                verify(&s.bytes, &limits).unwrap();
                if groups.split(',').any(|g| g == "GPS") {
                    assert!(
                        s.report.gps_in_original,
                        "{path}: GPS in the original must be reported"
                    );
                }
                assert_eq!(s.report.bytes_out, s.bytes.len() as u64);
                assert!(s.bytes.len() <= bytes.len() + 64, "{path}");
            }
            (Expect::Unsupported, Err(StripError::Unsupported(_))) => {}
            (Expect::Malformed(why), Err(StripError::Malformed { problem, .. }))
                if problem.contains(why) => {}
            (want, got) => panic!(
                "{path}: expected {want:?}, got {:?}",
                got.as_ref().map(|s| &s.report)
            ),
        }
    }
    assert!(clean >= 60, "{clean} clean");
}

/// Stripping never re-encodes: every clean output decodes to the original's exact pixels.
#[test]
fn clean_outputs_decode_to_identical_pixels() {
    let limits = Limits::default();
    let mut compared = 0;
    for (path, _, _) in manifest() {
        let bytes = std::fs::read(corpus().join(&path)).unwrap();
        let Ok(stripped) = strip(&bytes, &limits) else {
            continue;
        };
        let kind = match stripped.report.format {
            Format::Jpeg => image::ImageFormat::Jpeg,
            Format::Png => image::ImageFormat::Png,
            Format::Webp => image::ImageFormat::WebP,
            other => panic!("{path}: unexpected clean {other:?}"),
        };
        let before = image::load_from_memory_with_format(&bytes, kind);
        let after = image::load_from_memory_with_format(&stripped.bytes, kind);
        match (before, after) {
            (Ok(a), Ok(b)) => {
                assert_eq!(
                    (a.width(), a.height(), a.color()),
                    (b.width(), b.height(), b.color()),
                    "{path}"
                );
                assert!(a.as_bytes() == b.as_bytes(), "{path}: pixels differ");
                compared += 1;
            }
            (a, b) => panic!(
                "{path}: decodes before: {}, after: {}",
                a.is_ok(),
                b.is_ok()
            ),
        }
    }
    eprintln!("{compared} files compared pixel for pixel");
    assert!(compared >= 60, "{compared} files compared");
}
