//! Every file of ../shared/corpus comes out clean or is refused with the expected reason, and
//! every clean output decodes to exactly the original's pixels.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use asepsis_common::media::{Format, Limits, StripError, heif_item_bytes, strip, verify};

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
        ("jpeg" | "png" | "webp" | "tiff" | "heic" | "avif", _) => Expect::Clean,
        ("dicom", _) => Expect::Unsupported,
        ("malformed", name) => match name {
            "ianare-corrupted.jpg" => Expect::Malformed("expected a marker"),
            "ianare-trunc-DSCN0042.jpg" | "pillow-trunc-itxt_chunks.png" => {
                Expect::Malformed("truncated")
            }
            "pillow-broken.png" => Expect::Malformed("runs past the end"),
            n if n.ends_with(".tif") => Expect::Malformed("tag value"),
            n if n.ends_with(".dcm") => Expect::Unsupported,
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
    assert!(clean >= 80, "{clean} clean");
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
        if matches!(stripped.report.format, Format::Heif | Format::Avif) {
            // No HEVC/AV1 decoder here: the coded bytes of every kept item must be the same.
            let before = heif_item_bytes(&bytes, &limits).unwrap();
            let after = heif_item_bytes(&stripped.bytes, &limits).unwrap();
            assert!(!after.is_empty(), "{path}");
            for (id, data) in &after {
                assert!(before.get(id) == Some(data), "{path}: item {id} changed");
            }
            compared += 1;
            continue;
        }
        let kind = match stripped.report.format {
            Format::Jpeg => image::ImageFormat::Jpeg,
            Format::Png => image::ImageFormat::Png,
            Format::Webp => image::ImageFormat::WebP,
            Format::Tiff => image::ImageFormat::Tiff,
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
            // The decoder cannot read some TIFFs (palette, CIELab, YCbCr JPEG): compare their
            // coded pages, read by the tiff crate, instead.
            (Err(_), Err(_)) if kind == image::ImageFormat::Tiff => {
                assert_eq!(coded_pages(&bytes), coded_pages(&stripped.bytes), "{path}");
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
    assert!(compared >= 80, "{compared} files compared");
}

/// Layout tags and the concatenated strips or tiles of each full-resolution page.
fn coded_pages(bytes: &[u8]) -> Vec<(Vec<u64>, Vec<u8>)> {
    use tiff::tags::Tag;
    let mut d = tiff::decoder::Decoder::new(std::io::Cursor::new(bytes)).unwrap();
    let mut pages = Vec::new();
    loop {
        let subfile = d.get_tag_u64(Tag::NewSubfileType).unwrap_or(0);
        if subfile & 1 == 0 {
            let layout = [
                Tag::ImageWidth,
                Tag::ImageLength,
                Tag::Compression,
                Tag::PhotometricInterpretation,
                Tag::SamplesPerPixel,
            ]
            .into_iter()
            .map(|t| d.get_tag_u64(t).unwrap_or(0))
            .collect();
            let (offsets, counts) = match d.get_tag_u64_vec(Tag::StripOffsets) {
                Ok(o) => (o, d.get_tag_u64_vec(Tag::StripByteCounts).unwrap()),
                Err(_) => (
                    d.get_tag_u64_vec(Tag::TileOffsets).unwrap(),
                    d.get_tag_u64_vec(Tag::TileByteCounts).unwrap(),
                ),
            };
            let data = offsets
                .iter()
                .zip(&counts)
                .flat_map(|(&o, &c)| bytes[o as usize..(o + c) as usize].to_vec())
                .collect();
            pages.push((layout, data));
        }
        if !d.more_images() {
            break;
        }
        d.next_image().unwrap();
    }
    pages
}

/// BigTIFF and multi-page files (none in the corpus) made with the tiff crate's encoder.
#[test]
fn bigtiff_and_multipage_keep_every_page_s_pixels() {
    use tiff::encoder::{TiffEncoder, colortype::Gray8};
    let pages: [Vec<u8>; 2] = [(0..64).collect(), (64..128).collect()];
    let mut classic = std::io::Cursor::new(Vec::new());
    let mut big = std::io::Cursor::new(Vec::new());
    {
        let mut e = TiffEncoder::new(&mut classic).unwrap();
        for p in &pages {
            let mut image = e.new_image::<Gray8>(8, 8).unwrap();
            image
                .encoder()
                .write_tag(tiff::tags::Tag::Artist, "Dr X")
                .unwrap();
            image.write_data(p).unwrap();
        }
        let mut e = TiffEncoder::new_big(&mut big).unwrap();
        e.write_image::<Gray8>(8, 8, &pages[0]).unwrap();
    }
    for (name, bytes, want) in [
        ("classic", classic.into_inner(), 2),
        ("bigtiff", big.into_inner(), 1),
    ] {
        let stripped = strip(&bytes, &Limits::default()).unwrap();
        assert!(
            stripped.report.removed.contains(&"TIFF:Artist".to_owned()) || name == "bigtiff",
            "{:?}",
            stripped.report.removed
        );
        let mut d = tiff::decoder::Decoder::new(std::io::Cursor::new(&stripped.bytes)).unwrap();
        for (i, page) in pages.iter().take(want).enumerate() {
            if i > 0 {
                d.next_image().unwrap();
            }
            match d.read_image().unwrap() {
                tiff::decoder::DecodingResult::U8(px) => assert_eq!(&px, page, "{name} page {i}"),
                _ => panic!("{name}: not 8-bit"),
            }
        }
        assert!(!d.more_images(), "{name}: no extra page");
    }
}
