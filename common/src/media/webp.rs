//! WebP (RIFF): lossy, lossless, extended and animated.
//!
//! Kept byte for byte: VP8, VP8L, ALPH, ANIM, and ANMF frames (their sub-chunks filtered to
//! ALPH, VP8, VP8L). Rewritten: VP8X (flags fixed to what is left), ICCP (cleaned), and an
//! EXIF holding only Orientation. Removed and named: EXIF, XMP and any other chunk, and data
//! after the RIFF payload.

use super::exif::{self, ExifSummary};
use super::{Format, Limits, StripError, check_dimensions, check_limit, icc, read_u32};

const FLAG_ICC: u8 = 0x20;
const FLAG_ALPHA: u8 = 0x10;
const FLAG_EXIF: u8 = 0x08;
const FLAG_XMP: u8 = 0x04;
const FLAG_ANIM: u8 = 0x02;
const IMAGE: [&[u8; 4]; 4] = [b"VP8 ", b"VP8L", b"ALPH", b"ANIM"];
const FRAME_PARTS: [&[u8; 4]; 3] = [b"ALPH", b"VP8 ", b"VP8L"];
const ANMF_HEADER: usize = 16;

fn bad(problem: impl Into<String>) -> StripError {
    StripError::malformed(Format::Webp, problem)
}

struct Chunk<'a> {
    kind: [u8; 4],
    data: &'a [u8],
    raw: &'a [u8],
}

/// The chunks of a RIFF body (`body` starts at the first chunk header).
fn chunks<'a>(body: &'a [u8], limits: &Limits) -> Result<Vec<Chunk<'a>>, StripError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        check_limit("max_segments", out.len() as u64, limits.max_segments as u64)?;
        let kind: [u8; 4] = body
            .get(pos..pos + 4)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| bad("truncated chunk header"))?;
        let len =
            read_u32(body, pos + 4, false).ok_or_else(|| bad("truncated chunk header"))? as usize;
        let data = body
            .get(pos + 8..pos + 8 + len)
            .ok_or_else(|| bad("truncated: chunk runs past the end"))?;
        let end = (pos + 8 + len + (len & 1)).min(body.len());
        out.push(Chunk {
            kind,
            data,
            raw: &body[pos..end],
        });
        pos = end;
    }
    Ok(out)
}

/// The RIFF payload and the offset where it ends.
fn riff(bytes: &[u8]) -> Result<(&[u8], usize), StripError> {
    let size = read_u32(bytes, 4, false).ok_or_else(|| bad("no RIFF header"))? as usize;
    let end = size
        .checked_add(8)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad("truncated: RIFF size past the end"))?;
    if size < 4 || bytes.get(8..12) != Some(b"WEBP") {
        return Err(bad("not a WEBP RIFF"));
    }
    Ok((&bytes[12..end], end))
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(kind);
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

pub fn strip(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(Vec<u8>, Vec<String>, ExifSummary), StripError> {
    let (body, end) = riff(bytes)?;
    let all = chunks(body, limits)?;
    let mut removed = Vec::new();
    let mut exif = ExifSummary::default();
    let mut vp8x: Option<[u8; 10]> = None;
    let mut icc: Option<Vec<u8>> = None;
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut image = false;
    for chunk in &all {
        let name = String::from_utf8_lossy(&chunk.kind).trim_end().to_owned();
        match &chunk.kind {
            b"VP8X" => {
                let header: [u8; 10] = chunk
                    .data
                    .get(..10)
                    .and_then(|d| d.try_into().ok())
                    .ok_or_else(|| bad("short VP8X"))?;
                let width = 1 + u32::from_le_bytes([header[4], header[5], header[6], 0]);
                let height = 1 + u32::from_le_bytes([header[7], header[8], header[9], 0]);
                check_dimensions(width, height, limits)?;
                vp8x = Some(header);
            }
            k if IMAGE.contains(&k) => {
                image |= k != b"ANIM";
                kept.push(chunk.raw.to_vec());
            }
            b"ANMF" => {
                let header = chunk
                    .data
                    .get(..ANMF_HEADER)
                    .ok_or_else(|| bad("short ANMF"))?;
                let parts = chunks(&chunk.data[ANMF_HEADER..], limits)?;
                let mut frame = header.to_vec();
                for part in parts {
                    if FRAME_PARTS.contains(&&part.kind) {
                        frame.extend_from_slice(part.raw);
                    } else {
                        removed.push(format!(
                            "WebP:ANMF:{}",
                            String::from_utf8_lossy(&part.kind).trim_end()
                        ));
                    }
                }
                let mut raw = Vec::with_capacity(frame.len() + 8);
                push_chunk(&mut raw, b"ANMF", &frame);
                image = true;
                kept.push(raw);
            }
            b"ICCP" => {
                check_limit(
                    "max_metadata_bytes",
                    chunk.data.len() as u64,
                    limits.max_metadata_bytes as u64,
                )?;
                let mut profile = chunk.data.to_vec();
                match icc::clean(&mut profile, limits) {
                    Ok(names) => {
                        removed.extend(names);
                        icc = Some(profile);
                    }
                    Err(_) => removed.push("ICC_Profile (malformed)".into()),
                }
            }
            b"EXIF" => {
                let tiff = chunk.data.strip_prefix(b"Exif\0\0").unwrap_or(chunk.data);
                exif.absorb(exif::summarize(tiff, limits)?);
                removed.push("WebP:EXIF".into());
            }
            b"XMP " => removed.push("XMP".into()),
            _ => removed.push(format!("WebP:{name}")),
        }
    }
    if !image {
        return Err(bad("no image data"));
    }
    if end < bytes.len() {
        removed.push("trailing data after RIFF".into());
    }
    let orientation = vp8x.and(exif::needs_writing(exif.orientation));
    let mut out_body = Vec::with_capacity(body.len());
    if let Some(mut header) = vp8x {
        let mut flags = header[0] & (FLAG_ALPHA | FLAG_ANIM);
        if icc.is_some() {
            flags |= FLAG_ICC;
        }
        if orientation.is_some() {
            flags |= FLAG_EXIF;
        }
        header[0] = flags;
        header[1..4].fill(0);
        push_chunk(&mut out_body, b"VP8X", &header);
        if let Some(icc) = &icc {
            push_chunk(&mut out_body, b"ICCP", icc);
        }
    } else if icc.is_some() {
        removed.push("ICC_Profile (simple WebP cannot carry one)".into());
    }
    for raw in &kept {
        out_body.extend_from_slice(raw);
    }
    if let Some(o) = orientation {
        push_chunk(&mut out_body, b"EXIF", &exif::minimal(o));
    }
    let mut out = Vec::with_capacity(out_body.len() + 12);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(
        &u32::try_from(out_body.len() + 4)
            .map_err(|_| bad("too large"))?
            .to_le_bytes(),
    );
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(&out_body);
    Ok((out, removed, exif))
}

/// An independent walk of a stripped WebP: exact RIFF size, allowed chunks and frame parts,
/// a minimal EXIF, a clean ICC profile, VP8X flags that match what is there.
pub fn verify(bytes: &[u8], limits: &Limits) -> Result<(), StripError> {
    let fail = |what: String| Err(StripError::Verify(format!("WebP: {what}")));
    let (body, end) = riff(bytes).map_err(StripError::into_verify)?;
    if end != bytes.len() {
        return fail("data after the RIFF payload".into());
    }
    let all = chunks(body, limits).map_err(StripError::into_verify)?;
    let (mut has_icc, mut has_exif, mut flags) = (false, false, None);
    for chunk in &all {
        match &chunk.kind {
            b"VP8X" => flags = chunk.data.first().copied(),
            k if IMAGE.contains(&k) => {}
            b"ANMF" => {
                let parts = chunks(chunk.data.get(ANMF_HEADER..).unwrap_or_default(), limits)
                    .map_err(StripError::into_verify)?;
                if let Some(p) = parts.iter().find(|p| !FRAME_PARTS.contains(&&p.kind)) {
                    return fail(format!(
                        "frame part {} is not allowed",
                        String::from_utf8_lossy(&p.kind)
                    ));
                }
            }
            b"ICCP" if icc::is_clean(chunk.data, limits) => has_icc = true,
            b"EXIF" if exif::is_minimal(chunk.data) => has_exif = true,
            k => {
                return fail(format!(
                    "chunk {} is not allowed",
                    String::from_utf8_lossy(k)
                ));
            }
        }
    }
    if let Some(flags) = flags {
        let want = |flag: u8, present: bool| (flags & flag != 0) == present;
        if !want(FLAG_ICC, has_icc) || !want(FLAG_EXIF, has_exif) || flags & FLAG_XMP != 0 {
            return fail("VP8X flags do not match the chunks".into());
        }
    } else if has_icc || has_exif {
        return fail("metadata in a simple WebP".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webp(chunks: &[(&[u8; 4], &[u8])], trailing: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        for (k, d) in chunks {
            push_chunk(&mut body, k, d);
        }
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
        out.extend_from_slice(b"WEBP");
        out.extend_from_slice(&body);
        out.extend_from_slice(trailing);
        out
    }

    #[test]
    fn drops_exif_and_xmp_fixes_flags_keeps_orientation() {
        let vp8x = [FLAG_EXIF | FLAG_XMP | FLAG_ICC, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let input = webp(
            &[
                (b"VP8X", &vp8x),
                (b"ICCP", &icc::sample_profile()),
                (b"VP8L", b"\x2f\0\0\0\0"),
                (b"EXIF", &exif::minimal(3)),
                (b"XMP ", b"<x:xmpmeta/>"),
            ],
            b"tail",
        );
        let (out, removed, summary) = strip(&input, &Limits::default()).unwrap();
        verify(&out, &Limits::default()).unwrap();
        assert_eq!(summary.orientation, Some(3));
        for name in ["XMP", "WebP:EXIF", "ICC:desc", "trailing data after RIFF"] {
            assert!(removed.contains(&name.to_owned()), "{name} in {removed:?}");
        }
        let flags = out[20];
        assert_eq!(flags, FLAG_ICC | FLAG_EXIF);
    }

    #[test]
    fn verify_refuses_xmp_and_truncation_is_named() {
        let with_xmp = webp(&[(b"VP8L", b"\x2f\0\0\0\0"), (b"XMP ", b"x")], b"");
        assert!(verify(&with_xmp, &Limits::default()).is_err());
        let good = webp(&[(b"VP8L", b"\x2f\0\0\0\0")], b"");
        assert!(strip(&good[..good.len() - 2], &Limits::default()).is_err());
    }
}
