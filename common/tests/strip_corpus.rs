//! Every file of ../shared/corpus comes out clean or is refused with the expected reason, and
//! every clean output decodes to exactly the original's pixels.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

mod support;

use asepsis_common::media::{Format, Limits, StripError, heif_item_bytes, strip, verify};
use support::heif_pixels;

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
            // The coded bytes of every kept item are the same, and libheif (a real decoder)
            // reads the output to the original's pixels.
            let before = heif_item_bytes(&bytes, &limits).unwrap();
            let after = heif_item_bytes(&stripped.bytes, &limits).unwrap();
            assert!(!after.is_empty(), "{path}");
            for (id, data) in &after {
                assert!(before.get(id) == Some(data), "{path}: item {id} changed");
            }
            match (heif_pixels(&bytes), heif_pixels(&stripped.bytes)) {
                (Ok(a), Ok(b)) => {
                    assert_eq!((a.0, a.1), (b.0, b.1), "{path}: size");
                    assert!(a.2 == b.2, "{path}: pixels differ");
                    eprintln!("{path}: libheif decodes {}x{}, same pixels", a.0, a.1);
                }
                // A file with no decodable image (exiftool's 623-byte structure sample): the
                // output must still parse, and fail to decode exactly as the original does.
                (Err(a), Err(b)) => {
                    support::heif_parses(&stripped.bytes).unwrap();
                    assert_eq!(a, b, "{path}");
                    eprintln!("{path}: neither decodes ({a})");
                }
                (a, b) => panic!(
                    "{path}: libheif decodes before: {a:?}, after: {b:?}",
                    a = a.err(),
                    b = b.err()
                ),
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

/// The box layout of `hdlr` (ISO/IEC 14496-12 §8.4.3): 24 bytes of fixed fields, then the
/// name. Regression: the rebuilt box was 4 bytes short and libheif refused every output.
#[test]
fn hdlr_with_an_empty_or_a_long_name_comes_out_decodable() {
    let limits = Limits::default();
    let original = std::fs::read(corpus().join("avif/pillow-icc_profile.avif")).unwrap();
    let want = heif_pixels(&original).unwrap();
    for name in [&b""[..], &[b'n'; 300][..]] {
        let file = with_hdlr_name(&original, name);
        assert_eq!(
            heif_pixels(&file).unwrap(),
            want,
            "the fixture itself decodes"
        );
        let stripped = strip(&file, &limits).unwrap();
        assert_eq!(
            stripped
                .report
                .removed
                .contains(&"HEIF:hdlr name".to_owned()),
            !name.is_empty(),
            "{:?}",
            stripped.report.removed
        );
        assert_eq!(
            heif_pixels(&stripped.bytes).unwrap(),
            want,
            "name of {} bytes",
            name.len()
        );
    }
}

/// The file with `hdlr`'s name replaced, written here apart from the stripper: ftyp, meta, mdat
/// with an iloc of version 0, 4-byte offsets and lengths and no base offset, whose extents
/// shift by how much hdlr grew.
fn with_hdlr_name(file: &[u8], name: &[u8]) -> Vec<u8> {
    let u32_at = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    let boxes = |b: &[u8], mut at: usize, end: usize| {
        let mut out = Vec::new();
        while at < end {
            let size = u32_at(b, at) as usize;
            out.push((b[at + 4..at + 8].to_vec(), at, at + size));
            at += size;
        }
        out
    };
    let sized = |kind: &[u8], body: &[u8]| {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    };
    let top = boxes(file, 0, file.len());
    let kinds: Vec<&[u8]> = top.iter().map(|(k, _, _)| &k[..]).collect();
    assert_eq!(kinds, [&b"ftyp"[..], b"meta", b"mdat"]);
    let (_, meta_start, meta_end) = top[1];
    let children = boxes(file, meta_start + 12, meta_end);
    let (_, hdlr_start, hdlr_end) = children.iter().find(|c| c.0 == b"hdlr").unwrap().clone();
    let hdlr = sized(
        b"hdlr",
        &[&file[hdlr_start + 8..hdlr_start + 32], name, &[0]].concat(),
    );
    let grown = hdlr.len() as i64 - (hdlr_end - hdlr_start) as i64;
    let mut meta = file[meta_start + 8..meta_start + 12].to_vec();
    for (kind, start, end) in &children {
        match &kind[..] {
            b"hdlr" => meta.extend_from_slice(&hdlr),
            b"iloc" => {
                let mut iloc = file[*start..*end].to_vec();
                assert_eq!(
                    &iloc[8..14],
                    &[0, 0, 0, 0, 0x44, 0x00],
                    "iloc v0, 4-byte fields"
                );
                let items = u16::from_be_bytes([iloc[14], iloc[15]]);
                let mut at = 16;
                for _ in 0..items {
                    let extents = u16::from_be_bytes([iloc[at + 4], iloc[at + 5]]);
                    at += 6;
                    for _ in 0..extents {
                        let offset = u32_at(&iloc, at) as i64 + grown;
                        iloc[at..at + 4].copy_from_slice(&(offset as u32).to_be_bytes());
                        at += 8;
                    }
                }
                meta.extend_from_slice(&iloc);
            }
            _ => meta.extend_from_slice(&file[*start..*end]),
        }
    }
    [&file[..top[0].2], &sized(b"meta", &meta), &file[top[2].1..]].concat()
}
