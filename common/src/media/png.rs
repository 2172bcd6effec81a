//! PNG and APNG: keep image and colour chunks byte for byte, rebuild the ICC profile, drop
//! every other chunk.
//!
//! Kept: IHDR, PLTE, tRNS, IDAT, IEND, acTL, fcTL, fdAT, gAMA, cHRM, sRGB, sBIT, cICP, mDCv,
//! cLLi. Rewritten: iCCP (profile cleaned, its name replaced), and an eXIf holding only
//! Orientation when the original said the image is rotated. Removed and named: tEXt, zTXt,
//! iTXt (by keyword), eXIf, tIME, pHYs and anything else, and data after IEND. A kept chunk
//! with a bad CRC refuses the file.

use miniz_oxide::deflate::compress_to_vec_zlib;
use miniz_oxide::inflate::decompress_to_vec_zlib_with_limit;

use super::exif::{self, ExifSummary};
use super::{Format, Limits, StripError, check_dimensions, check_limit, icc, read_u32};

const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const KEEP: [&[u8; 4]; 15] = [
    b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND", b"acTL", b"fcTL", b"fdAT", b"gAMA", b"cHRM",
    b"sRGB", b"sBIT", b"cICP", b"mDCv", b"cLLi",
];
const ICC_NAME: &[u8] = b"ICC Profile";

fn bad(problem: impl Into<String>) -> StripError {
    StripError::malformed(Format::Png, problem)
}

struct Chunk<'a> {
    kind: [u8; 4],
    data: &'a [u8],
    raw: &'a [u8],
    crc_ok: bool,
}

/// Walk from the signature to IEND; returns the chunks and the offset just past IEND.
fn walk<'a>(bytes: &'a [u8], limits: &Limits) -> Result<(Vec<Chunk<'a>>, usize), StripError> {
    if !bytes.starts_with(SIGNATURE) {
        return Err(bad("no PNG signature"));
    }
    let mut chunks = Vec::new();
    let mut pos = SIGNATURE.len();
    loop {
        check_limit(
            "max_segments",
            chunks.len() as u64,
            limits.max_segments as u64,
        )?;
        let len =
            read_u32(bytes, pos, true).ok_or_else(|| bad("truncated: no IEND chunk"))? as usize;
        if len > 0x7FFF_FFFF {
            return Err(bad("chunk length over 2^31-1"));
        }
        let end = pos
            .checked_add(12 + len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| bad("truncated: chunk runs past the end"))?;
        let kind: [u8; 4] = bytes[pos + 4..pos + 8]
            .try_into()
            .map_err(|_| bad("short chunk"))?;
        let data = &bytes[pos + 8..pos + 8 + len];
        let crc = read_u32(bytes, pos + 8 + len, true).unwrap_or(0);
        let crc_ok = crc32fast::hash(&bytes[pos + 4..pos + 8 + len]) == crc;
        chunks.push(Chunk {
            kind,
            data,
            raw: &bytes[pos..end],
            crc_ok,
        });
        pos = end;
        if chunks.len() == 1 && &kind != b"IHDR" {
            return Err(bad("did not start with IHDR"));
        }
        if &kind == b"IEND" {
            return Ok((chunks, pos));
        }
    }
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// A text chunk's keyword, as a safe name: printable ASCII, at most 79 characters.
fn keyword(data: &[u8]) -> String {
    data.iter()
        .take_while(|&&b| b != 0)
        .take(79)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

pub fn strip(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(Vec<u8>, Vec<String>, ExifSummary), StripError> {
    let (chunks, end) = walk(bytes, limits)?;
    let ihdr = chunks
        .first()
        .map(|c| c.data)
        .filter(|d| d.len() == 13)
        .ok_or_else(|| bad("IHDR is not 13 bytes"))?;
    let (width, height) = (
        read_u32(ihdr, 0, true).unwrap_or(0),
        read_u32(ihdr, 4, true).unwrap_or(0),
    );
    check_dimensions(width, height, limits)?;
    let mut removed = Vec::new();
    let mut exif = ExifSummary::default();
    let mut kept = Vec::new();
    let mut icc_chunk: Option<Vec<u8>> = None;
    let mut idat = false;
    for chunk in &chunks[1..] {
        let name = String::from_utf8_lossy(&chunk.kind).into_owned();
        match &chunk.kind {
            k if KEEP.contains(&k) => {
                if !chunk.crc_ok {
                    return Err(bad(format!("bad CRC in {name}")));
                }
                idat |= k == b"IDAT";
                kept.push(chunk);
            }
            b"iCCP" => {
                let split = chunk
                    .data
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| bad("iCCP without a name"))?;
                let packed = chunk.data.get(split + 2..).unwrap_or_default();
                removed.push("PNG:iCCP:name".into());
                match decompress_to_vec_zlib_with_limit(packed, limits.max_metadata_bytes) {
                    Ok(mut profile) => match icc::clean(&mut profile, limits) {
                        Ok(names) => {
                            removed.extend(names);
                            icc_chunk = Some(
                                [ICC_NAME, &[0, 0], &compress_to_vec_zlib(&profile, 6)].concat(),
                            );
                        }
                        Err(_) => removed.push("ICC_Profile (malformed)".into()),
                    },
                    Err(_) => {
                        removed.push("ICC_Profile (undecodable or over max_metadata_bytes)".into())
                    }
                }
            }
            b"eXIf" => {
                exif.absorb(exif::summarize(chunk.data, limits)?);
                removed.push("PNG:eXIf".into());
            }
            k @ (b"tEXt" | b"zTXt" | b"iTXt") => {
                removed.push(format!(
                    "PNG:{}:{}",
                    String::from_utf8_lossy(k),
                    keyword(chunk.data)
                ));
            }
            _ => removed.push(format!("PNG:{name}")),
        }
    }
    if !idat {
        return Err(bad("no IDAT: no image data"));
    }
    if end < bytes.len() {
        removed.push("trailing data after IEND".into());
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(chunks[0].raw);
    if let Some(o) = exif::needs_writing(exif.orientation) {
        push_chunk(&mut out, b"eXIf", &exif::minimal(o));
    }
    if let Some(icc) = &icc_chunk {
        push_chunk(&mut out, b"iCCP", icc);
    }
    for chunk in kept {
        out.extend_from_slice(chunk.raw);
    }
    Ok((out, removed, exif))
}

/// An independent walk of a stripped PNG: allowed chunks only, good CRCs, a minimal eXIf, a
/// clean iCCP under our own name, nothing after IEND.
pub fn verify(bytes: &[u8], limits: &Limits) -> Result<(), StripError> {
    let fail = |what: String| Err(StripError::Verify(format!("PNG: {what}")));
    let (chunks, end) = walk(bytes, limits).map_err(StripError::into_verify)?;
    if end != bytes.len() {
        return fail("data after IEND".into());
    }
    for chunk in &chunks {
        let name = String::from_utf8_lossy(&chunk.kind).into_owned();
        if !chunk.crc_ok {
            return fail(format!("bad CRC in {name}"));
        }
        match &chunk.kind {
            k if KEEP.contains(&k) => {}
            b"eXIf" if exif::is_minimal(chunk.data) => {}
            b"iCCP"
                if chunk.data.starts_with(ICC_NAME)
                    && chunk.data.get(ICC_NAME.len()) == Some(&0) =>
            {
                let packed = chunk.data.get(ICC_NAME.len() + 2..).unwrap_or_default();
                let profile = decompress_to_vec_zlib_with_limit(packed, limits.max_metadata_bytes)
                    .unwrap_or_default();
                if !icc::is_clean(&profile, limits) {
                    return fail("ICC profile is not clean".into());
                }
            }
            _ => return fail(format!("chunk {name} is not allowed")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(extra_before: &[(&[u8; 4], &[u8])], trailing: &[u8]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        push_chunk(&mut out, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
        for (k, d) in extra_before {
            push_chunk(&mut out, k, d);
        }
        push_chunk(&mut out, b"IDAT", &compress_to_vec_zlib(&[0, 7], 6));
        push_chunk(&mut out, b"IEND", &[]);
        out.extend_from_slice(trailing);
        out
    }

    #[test]
    fn drops_text_and_keeps_pixels() {
        let icc = [
            b"Dr X's profile\0\0".as_slice(),
            &compress_to_vec_zlib(&icc::sample_profile(), 6),
        ]
        .concat();
        let input = png(
            &[
                (b"tEXt", b"Author\0Dr X"),
                (b"tIME", &[0; 7]),
                (b"eXIf", &exif::minimal(8)),
                (b"iCCP", &icc),
                (b"gAMA", &[0, 0, 0xB1, 0x8F]),
            ],
            b"appended",
        );
        let (out, removed, summary) = strip(&input, &Limits::default()).unwrap();
        verify(&out, &Limits::default()).unwrap();
        assert_eq!(summary.orientation, Some(8));
        for name in [
            "PNG:tEXt:Author",
            "PNG:tIME",
            "PNG:eXIf",
            "ICC:desc",
            "PNG:iCCP:name",
            "trailing data after IEND",
        ] {
            assert!(removed.contains(&name.to_owned()), "{name} in {removed:?}");
        }
        assert!(!out.windows(4).any(|w| w == b"Dr X"));
        assert!(out.windows(4).any(|w| w == b"gAMA"));
    }

    #[test]
    fn corrupt_and_truncated_files_are_refused() {
        let good = png(&[], b"");
        let mut bad_crc = good.clone();
        let idat = bad_crc.windows(4).position(|w| w == b"IDAT").unwrap();
        bad_crc[idat + 4] ^= 1;
        assert!(matches!(
            strip(&bad_crc, &Limits::default()),
            Err(StripError::Malformed { .. })
        ));
        for cut in [8, 20, good.len() - 1] {
            assert!(
                strip(&good[..cut], &Limits::default()).is_err(),
                "cut {cut}"
            );
        }
        assert!(verify(&png(&[(b"tEXt", b"a\0b")], b""), &Limits::default()).is_err());
    }
}
