//! JPEG: keep the frame, tables and scans byte for byte; rebuild everything else.
//!
//! Kept: SOF*, DHT, DQT, DRI, DAC, DNL, every SOS with its entropy-coded data (baseline,
//! progressive, lossless, arithmetic), APP14 Adobe (rebuilt from its 12 bytes: it tells the
//! decoder how to read CMYK/YCCK). Written fresh: an APP1 EXIF holding only Orientation, and
//! the ICC profile (APP2, cleaned and re-chunked). Removed and named: JFIF/JFXX, EXIF, XMP and
//! extended XMP, ICC text, MPF and the secondary images after EOI, Photoshop/IPTC, JUMBF/C2PA,
//! comments, every other APPn, and anything after EOI.

use memchr::memchr;

use super::exif::{self, ExifSummary};
use super::{Format, Limits, StripError, check_dimensions, check_limit, icc, read_u16};

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const APP1: u8 = 0xE1;
const APP2: u8 = 0xE2;
const APP14: u8 = 0xEE;
const COM: u8 = 0xFE;
const EXIF_ID: &[u8] = b"Exif\0\0";
const ICC_ID: &[u8] = b"ICC_PROFILE\0";
const ADOBE_LEN: usize = 12;
/// Largest payload of one APP2 ICC chunk: 65535 − 2 (length) − 14 (id, seq, count).
const ICC_CHUNK: usize = 65_519;

fn bad(problem: impl Into<String>) -> StripError {
    StripError::malformed(Format::Jpeg, problem)
}

/// Frame markers: SOF0–SOF15 but DHT (C4), JPG (C8) and DAC (CC).
fn is_sof(m: u8) -> bool {
    (0xC0..=0xCF).contains(&m) && !matches!(m, 0xC4 | 0xC8 | 0xCC)
}

/// Tables and frame structure a decoder needs, kept byte for byte.
fn is_structural(m: u8) -> bool {
    is_sof(m) || matches!(m, 0xC4 | 0xCC | 0xDB | 0xDC | 0xDD)
}

fn is_rst(m: u8) -> bool {
    (0xD0..=0xD7).contains(&m)
}

/// One marker segment, or a scan (SOS header and its entropy-coded data).
struct Piece<'a> {
    marker: u8,
    /// The whole piece as it appears in the file, marker included.
    raw: &'a [u8],
    /// The segment's payload (after the length), empty for standalone markers.
    payload: &'a [u8],
}

/// Most scans a JPEG may have. A progressive file has about ten; a crafted one repeats scans
/// so that every decoder that shows it (ours, and each viewer's) walks the image again per
/// scan. libjpeg-turbo advises a limit like this one for untrusted files.
pub const MAX_SCANS: u32 = 500;

/// Walk from SOI to EOI. Returns the pieces and the offset just past EOI.
fn walk<'a>(bytes: &'a [u8], limits: &Limits) -> Result<(Vec<Piece<'a>>, usize), StripError> {
    if bytes.get(..2) != Some(&[0xFF, SOI]) {
        return Err(bad("does not start with SOI"));
    }
    let mut pieces = Vec::new();
    let (mut pos, mut scans) = (2, 0);
    loop {
        check_limit(
            "max_segments",
            pieces.len() as u64,
            limits.max_segments as u64,
        )?;
        if bytes.get(pos) != Some(&0xFF) {
            return match bytes.get(pos) {
                None => Err(bad("truncated: no end-of-image marker")),
                Some(_) => Err(bad(format!("expected a marker at offset {pos}"))),
            };
        }
        let start = pos;
        while bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1; // fill bytes
        }
        let marker = *bytes
            .get(pos + 1)
            .ok_or_else(|| bad("truncated: no end-of-image marker"))?;
        pos += 2;
        match marker {
            EOI => return Ok((pieces, pos)),
            SOI => return Err(bad("a second start-of-image marker")),
            0x00 => return Err(bad(format!("stray 0xFF00 at offset {start}"))),
            m if is_rst(m) || m == 0x01 => {
                pieces.push(Piece {
                    marker: m,
                    raw: &bytes[start..pos],
                    payload: &[],
                });
                continue;
            }
            _ => {}
        }
        let len =
            usize::from(read_u16(bytes, pos, true).ok_or_else(|| bad("truncated segment length"))?);
        if len < 2 {
            return Err(bad(format!("segment length {len} at offset {pos}")));
        }
        let payload = bytes
            .get(pos + 2..pos + len)
            .ok_or_else(|| bad("truncated: segment runs past the end"))?;
        pos += len;
        if marker == SOS {
            scans += 1;
            if scans > MAX_SCANS {
                return Err(bad(format!("more than {MAX_SCANS} scans")));
            }
            // Entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or RSTn.
            loop {
                let ff = memchr(0xFF, &bytes[pos..])
                    .ok_or_else(|| bad("truncated: scan data runs to the end"))?;
                pos += ff;
                match bytes.get(pos + 1) {
                    None => return Err(bad("truncated: scan data runs to the end")),
                    Some(&b) if b == 0x00 || is_rst(b) => pos += 2,
                    Some(0xFF) => pos += 1,
                    Some(_) => break,
                }
            }
        }
        pieces.push(Piece {
            marker,
            raw: &bytes[start..pos],
            payload,
        });
    }
}

fn app_name(marker: u8, payload: &[u8]) -> String {
    let starts = |p: &[u8]| payload.starts_with(p);
    match marker {
        0xE0 if starts(b"JFIF\0") => "JFIF".into(),
        0xE0 if starts(b"JFXX\0") => "JFIF:Thumbnail".into(),
        APP1 if starts(b"http://ns.adobe.com/xap/1.0/\0") => "XMP".into(),
        APP1 if starts(b"http://ns.adobe.com/xmp/extension/\0") => "XMP-Extended".into(),
        APP2 if starts(b"MPF\0") => "MPF".into(),
        APP2 if starts(b"FPXR\0") => "FlashPix".into(),
        0xED if starts(b"Photoshop 3.0\0") => "Photoshop/IPTC".into(),
        0xEB => "JUMBF/C2PA".into(),
        COM => "Comment".into(),
        m => format!("APP{}", m - 0xE0),
    }
}

pub fn strip(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(Vec<u8>, Vec<String>, ExifSummary), StripError> {
    let (pieces, end) = walk(bytes, limits)?;
    let mut removed = Vec::new();
    let mut exif = ExifSummary::default();
    let mut icc_chunks: Vec<(u8, &[u8])> = Vec::new();
    let mut adobe: Option<&[u8]> = None;
    let mut kept: Vec<&Piece> = Vec::new();
    let (mut frame, mut scan) = (false, false);
    for piece in &pieces {
        let p = piece.payload;
        match piece.marker {
            APP1 if p.starts_with(EXIF_ID) => {
                exif.absorb(exif::summarize(&p[EXIF_ID.len()..], limits)?);
                removed.push("EXIF".into());
            }
            APP2 if p.starts_with(ICC_ID) && p.len() > ICC_ID.len() + 2 => {
                icc_chunks.push((p[ICC_ID.len()], &p[ICC_ID.len() + 2..]));
            }
            APP14 if p.starts_with(b"Adobe") && p.len() >= ADOBE_LEN => {
                adobe = Some(&p[..ADOBE_LEN])
            }
            m @ (0xE0..=0xEF | COM) => removed.push(app_name(m, p)),
            m if is_sof(m) => {
                let height = read_u16(p, 1, true).ok_or_else(|| bad("short frame header"))?;
                let width = read_u16(p, 3, true).ok_or_else(|| bad("short frame header"))?;
                check_dimensions(width.into(), height.into(), limits)?;
                frame = true;
                kept.push(piece);
            }
            SOS => {
                scan = true;
                kept.push(piece);
            }
            m if is_structural(m) || is_rst(m) => kept.push(piece),
            m => return Err(bad(format!("unsupported marker 0xFF{m:02X}"))),
        }
    }
    if !frame || !scan {
        return Err(bad("no frame or no scan: not an image"));
    }
    if end < bytes.len() {
        removed.push("trailing data after end of image".into());
    }
    let icc = assemble_icc(&mut icc_chunks, limits)?;
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&[0xFF, SOI]);
    if let Some(o) = exif::needs_writing(exif.orientation) {
        push_segment(&mut out, APP1, &[EXIF_ID, &exif::minimal(o)].concat());
    }
    if let Some(mut profile) = icc {
        match icc::clean(&mut profile, limits) {
            Ok(names) => {
                removed.extend(names);
                let count = u8::try_from(profile.len().div_ceil(ICC_CHUNK))
                    .map_err(|_| bad("ICC profile too large"))?;
                for (i, chunk) in profile.chunks(ICC_CHUNK).enumerate() {
                    let seq = u8::try_from(i + 1).unwrap_or(u8::MAX);
                    push_segment(&mut out, APP2, &[ICC_ID, &[seq, count], chunk].concat());
                }
            }
            Err(_) => removed.push("ICC_Profile (malformed)".into()),
        }
    }
    if let Some(adobe) = adobe {
        push_segment(&mut out, APP14, adobe);
    }
    for piece in kept {
        out.extend_from_slice(piece.raw);
    }
    out.extend_from_slice(&[0xFF, EOI]);
    Ok((out, removed, exif))
}

/// Put ICC chunks in order and join them; `None` when there are none. Inconsistent chunk
/// numbering drops the profile (it cannot be trusted to be whole).
fn assemble_icc(
    chunks: &mut [(u8, &[u8])],
    limits: &Limits,
) -> Result<Option<Vec<u8>>, StripError> {
    if chunks.is_empty() {
        return Ok(None);
    }
    chunks.sort_by_key(|(seq, _)| *seq);
    let total: usize = chunks.iter().map(|(_, d)| d.len()).sum();
    check_limit(
        "max_metadata_bytes",
        total as u64,
        limits.max_metadata_bytes as u64,
    )?;
    let in_order = chunks
        .iter()
        .enumerate()
        .all(|(i, (seq, _))| usize::from(*seq) == i + 1);
    Ok(in_order.then(|| chunks.iter().flat_map(|(_, d)| d.iter().copied()).collect()))
}

fn push_segment(out: &mut Vec<u8>, marker: u8, payload: &[u8]) {
    let len = u16::try_from(payload.len() + 2).unwrap_or(u16::MAX);
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An independent walk of a stripped JPEG: only SOI, the kept structure, at most one minimal
/// EXIF, a clean ICC profile, one Adobe segment and EOI, with nothing after EOI.
pub fn verify(bytes: &[u8], limits: &Limits) -> Result<(), StripError> {
    let fail = |what: String| Err(StripError::Verify(format!("JPEG: {what}")));
    let (pieces, end) = walk(bytes, limits).map_err(StripError::into_verify)?;
    if end != bytes.len() {
        return fail("data after end of image".into());
    }
    let mut icc = Vec::new();
    for piece in &pieces {
        let p = piece.payload;
        match piece.marker {
            APP1 if p.starts_with(EXIF_ID) && exif::is_minimal(&p[EXIF_ID.len()..]) => {}
            APP2 if p.starts_with(ICC_ID) && p.len() > ICC_ID.len() + 2 => {
                icc.extend_from_slice(&p[ICC_ID.len() + 2..])
            }
            APP14 if p.starts_with(b"Adobe") && p.len() == ADOBE_LEN => {}
            m if is_structural(m) || is_rst(m) || m == SOS => {}
            m => {
                return fail(format!(
                    "segment 0xFF{m:02X} ({}) is not allowed",
                    app_name(m, p)
                ));
            }
        }
    }
    if !icc.is_empty() && !icc::is_clean(&icc, limits) {
        return fail("ICC profile is not clean".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny structurally valid JPEG: SOI, segments, SOF0, DHT, SOS with data, EOI.
    fn jpeg(extra: &[(u8, &[u8])], trailing: &[u8]) -> Vec<u8> {
        let mut out = vec![0xFF, SOI];
        for (m, p) in extra {
            push_segment(&mut out, *m, p);
        }
        push_segment(&mut out, 0xC0, &[8, 0, 16, 0, 16, 1, 1, 0x11, 0]);
        push_segment(&mut out, 0xC4, &[0; 17]);
        push_segment(&mut out, SOS, &[1, 1, 0, 0, 63, 0]);
        out.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]);
        out.extend_from_slice(&[0xFF, EOI]);
        out.extend_from_slice(trailing);
        out
    }

    #[test]
    fn a_file_of_more_scans_than_any_decoder_should_walk_is_refused() {
        let with_scans = |n: u32| {
            let one = jpeg(&[], b"");
            let (head, scan) = (&one[..one.len() - 2], &one[one.len() - 19..one.len() - 2]);
            assert_eq!(scan[..2], [0xFF, SOS]);
            let mut out = head.to_vec();
            for _ in 1..n {
                out.extend_from_slice(scan);
            }
            out.extend_from_slice(&[0xFF, EOI]);
            out
        };
        let limits = Limits::default();
        let (out, _, _) = strip(&with_scans(MAX_SCANS), &limits).unwrap();
        verify(&out, &limits).unwrap();
        let err = strip(&with_scans(MAX_SCANS + 1), &limits).unwrap_err();
        assert!(err.to_string().contains("more than 500 scans"), "{err}");
    }

    #[test]
    fn strips_everything_but_structure_and_keeps_scans_byte_for_byte() {
        let exif = [EXIF_ID, &exif::minimal(6)].concat();
        let icc = [ICC_ID, &[1, 1], &icc::sample_profile()].concat();
        let input = jpeg(
            &[
                (0xE0, b"JFIF\0\x01\x02"),
                (APP1, &exif),
                (APP1, b"http://ns.adobe.com/xap/1.0/\0<x/>"),
                (APP2, &icc),
                (0xED, b"Photoshop 3.0\0..."),
                (COM, b"patient name"),
                (APP14, b"Adobe\0\x64\0\0\0\0\x01"),
            ],
            b"MPF secondary image",
        );
        // Through `strip_as`, which adds the EXIF tag names to every container's report.
        let stripped = super::super::strip_as(Format::Jpeg, &input, &Limits::default()).unwrap();
        let (out, removed) = (stripped.bytes, stripped.report.removed);
        verify(&out, &Limits::default()).unwrap();
        assert_eq!(stripped.report.orientation, Some(6));
        for name in [
            "JFIF",
            "XMP",
            "Photoshop/IPTC",
            "Comment",
            "ICC:desc",
            "EXIF:Orientation",
            "trailing data after end of image",
        ] {
            assert!(removed.contains(&name.to_owned()), "{name} in {removed:?}");
        }
        assert!(!out.windows(12).any(|w| w == b"patient name"));
        let scan = &input[input.len() - 28..input.len() - 19];
        assert!(
            out.windows(scan.len()).any(|w| w == scan),
            "scan data kept as is"
        );
        assert!(out.ends_with(&[0xFF, EOI]));
    }

    #[test]
    fn verify_refuses_what_strip_would_remove() {
        let with_com = jpeg(&[(COM, b"x")], b"");
        assert!(verify(&with_com, &Limits::default()).is_err());
        let trailing = jpeg(&[], b"junk");
        assert!(verify(&trailing, &Limits::default()).is_err());
        assert!(verify(&jpeg(&[], b""), &Limits::default()).is_ok());
    }

    #[test]
    fn truncation_and_limits_are_named() {
        let full = jpeg(&[], b"");
        for cut in [3, 10, full.len() - 1] {
            assert!(
                matches!(
                    strip(&full[..cut], &Limits::default()),
                    Err(StripError::Malformed { .. })
                ),
                "cut {cut}"
            );
        }
        let tiny = Limits {
            max_width: 8,
            ..Limits::default()
        };
        assert!(matches!(
            strip(&full, &tiny),
            Err(StripError::Limit {
                limit: "max_width",
                ..
            })
        ));
    }
}
