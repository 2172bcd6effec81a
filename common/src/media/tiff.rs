//! TIFF and BigTIFF, single- and multi-page: rebuild every page's IFD with only the tags a
//! decoder needs, and copy the strips or tiles byte for byte.
//!
//! Kept per page: dimensions, sample layout, compression and its options, photometric
//! interpretation, colour map, strips or tiles (offsets rewritten), predictor, YCbCr and
//! sample-range tags, JPEG tables, Orientation, and the ICC profile (cleaned). Removed and
//! named: every other tag (descriptions, dates, make, model, software, artist, copyright, …),
//! the Exif, GPS and Interop IFDs, SubIFDs, and reduced-resolution pages (thumbnails).
//! Refused: DNG and other raw variants, and old-style JPEG-in-TIFF. The output keeps the
//! input's byte order and flavour (classic or BigTIFF).

use std::collections::BTreeSet;

use ::exif::{Context, Tag};

use super::exif::{self, ExifSummary};
use super::{Format, Limits, StripError, check_dimensions, check_limit, icc};

const NEW_SUBFILE_TYPE: u16 = 254;
const WIDTH: u16 = 256;
const HEIGHT: u16 = 257;
const COMPRESSION: u16 = 259;
const STRIP_OFFSETS: u16 = 273;
const ORIENTATION: u16 = 274;
const STRIP_COUNTS: u16 = 279;
const TILE_OFFSETS: u16 = 324;
const TILE_COUNTS: u16 = 325;
const SUB_IFDS: u16 = 330;
const JPEG_IF: u16 = 513;
const EXIF_IFD: u16 = 34665;
const GPS_IFD: u16 = 34853;
const ICC_TAG: u16 = 34675;
const DNG_VERSION: u16 = 50706;

/// Tags kept as they are (offsets tags are rewritten, ICC is cleaned).
const KEEP: [u16; 28] = [
    256, 257, 258, 259, 262, 266, 273, 274, 277, 278, 279, 284, 292, 293, 317, 320, 322, 323, 324,
    325, 338, 339, 340, 341, 347, 529, 530, 531,
];
const KEEP_ALSO: [u16; 2] = [532, ICC_TAG];

fn kept(tag: u16) -> bool {
    KEEP.contains(&tag) || KEEP_ALSO.contains(&tag)
}

fn bad(problem: impl Into<String>) -> StripError {
    StripError::malformed(Format::Tiff, problem)
}

#[derive(Clone, Copy)]
struct Flavour {
    big_endian: bool,
    bigtiff: bool,
}

impl Flavour {
    fn of(bytes: &[u8]) -> Result<(Self, u64), StripError> {
        let (big_endian, bigtiff) = match bytes.get(..4) {
            Some(b"II*\0") => (false, false),
            Some(b"MM\0*") => (true, false),
            Some(b"II+\0") => (false, true),
            Some(b"MM\0+") => (true, true),
            _ => return Err(bad("not a TIFF header")),
        };
        let f = Self {
            big_endian,
            bigtiff,
        };
        let first = if bigtiff {
            if f.uint(bytes, 4, 2) != Some(8) {
                return Err(bad("BigTIFF offset size is not 8"));
            }
            f.uint(bytes, 8, 8)
        } else {
            f.uint(bytes, 4, 4)
        };
        Ok((f, first.ok_or_else(|| bad("truncated header"))?))
    }

    fn uint(self, bytes: &[u8], at: usize, width: usize) -> Option<u64> {
        let b = bytes.get(at..at.checked_add(width)?)?;
        let mut v = 0u64;
        for i in 0..width {
            let byte = if self.big_endian {
                b[i]
            } else {
                b[width - 1 - i]
            };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    }

    fn put(self, out: &mut Vec<u8>, v: u64, width: usize) {
        for i in 0..width {
            let shift = if self.big_endian {
                8 * (width - 1 - i)
            } else {
                8 * i
            };
            out.push((v >> shift) as u8);
        }
    }

    fn offset_width(self) -> usize {
        if self.bigtiff { 8 } else { 4 }
    }

    fn header_len(self) -> usize {
        if self.bigtiff { 16 } else { 8 }
    }
}

fn type_size(kind: u16) -> Option<u64> {
    Some(match kind {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 | 17 | 18 => 8,
        _ => return None,
    })
}

struct Entry<'a> {
    tag: u16,
    kind: u16,
    count: u64,
    /// The value's bytes, in the file's byte order.
    data: &'a [u8],
}

impl Entry<'_> {
    fn uints(&self, f: Flavour) -> Option<Vec<u64>> {
        let width = match self.kind {
            1 => 1,
            3 => 2,
            4 | 13 => 4,
            16 | 18 => 8,
            _ => return None,
        };
        (0..self.count as usize)
            .map(|i| f.uint(self.data, i * width, width))
            .collect()
    }
}

/// One IFD: its entries, the offset of the next, and how many bytes it spans.
fn read_ifd<'a>(
    bytes: &'a [u8],
    f: Flavour,
    at: u64,
    limits: &Limits,
) -> Result<(Vec<Entry<'a>>, u64, u64), StripError> {
    let at = usize::try_from(at).map_err(|_| bad("IFD offset out of range"))?;
    let (count_width, entry_len) = if f.bigtiff { (8, 20) } else { (2, 12) };
    let count = f
        .uint(bytes, at, count_width)
        .ok_or_else(|| bad("IFD runs past the end"))?;
    check_limit("max_ifd_entries", count, limits.max_ifd_entries as u64)?;
    let ow = f.offset_width();
    let mut entries = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let e = at + count_width + i * entry_len;
        let short = |o| f.uint(bytes, e + o, 2).map(|v| v as u16);
        let (Some(tag), Some(kind), Some(n)) = (short(0), short(2), f.uint(bytes, e + 4, ow))
        else {
            return Err(bad("IFD runs past the end"));
        };
        let Some(size) = type_size(kind) else {
            continue; // an unknown type: the tag cannot be one we keep
        };
        let len = n
            .checked_mul(size)
            .filter(|&l| l <= bytes.len() as u64)
            .ok_or_else(|| bad("tag value too large"))? as usize;
        let value_at = e + 4 + ow;
        let data = if len <= ow {
            bytes.get(value_at..value_at + len)
        } else {
            let off = f
                .uint(bytes, value_at, ow)
                .ok_or_else(|| bad("IFD runs past the end"))? as usize;
            bytes.get(
                off..off
                    .checked_add(len)
                    .ok_or_else(|| bad("tag value out of range"))?,
            )
        }
        .ok_or_else(|| bad("tag value runs past the end"))?;
        entries.push(Entry {
            tag,
            kind,
            count: n,
            data,
        });
    }
    let next_at = at + count_width + count as usize * entry_len;
    let next = f
        .uint(bytes, next_at, ow)
        .ok_or_else(|| bad("IFD runs past the end"))?;
    Ok((
        entries,
        next,
        (count_width + count as usize * entry_len + ow) as u64,
    ))
}

/// Every IFD of the main chain (pages), each once, at most `max_segments`.
fn pages<'a>(
    bytes: &'a [u8],
    f: Flavour,
    first: u64,
    limits: &Limits,
) -> Result<Vec<(Vec<Entry<'a>>, u64)>, StripError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut at = first;
    let mut total_entries = 0u64;
    while at != 0 {
        if !seen.insert(at) {
            return Err(bad("IFD chain loops"));
        }
        check_limit(
            "max_segments",
            out.len() as u64 + 1,
            limits.max_segments as u64,
        )?;
        let (entries, next, span) = read_ifd(bytes, f, at, limits)?;
        // Overlapping IFDs could otherwise make a small file cost a great deal.
        total_entries += entries.len() as u64;
        check_limit(
            "max_ifd_entries",
            total_entries,
            4 * limits.max_ifd_entries as u64,
        )?;
        out.push((entries, span));
        at = next;
    }
    if out.is_empty() {
        return Err(bad("no image directory"));
    }
    Ok(out)
}

/// The (offset, length) of each strip or tile of a page.
fn blocks(entries: &[Entry], f: Flavour, total: usize) -> Result<Vec<(usize, usize)>, StripError> {
    let find = |tag| entries.iter().find(|e| e.tag == tag);
    let (offsets, counts) = match (
        find(STRIP_OFFSETS),
        find(STRIP_COUNTS),
        find(TILE_OFFSETS),
        find(TILE_COUNTS),
    ) {
        (Some(o), Some(c), None, None) | (None, None, Some(o), Some(c)) => (o, c),
        _ => return Err(bad("no (or mixed) strip and tile layout")),
    };
    let (Some(offsets), Some(counts)) = (offsets.uints(f), counts.uints(f)) else {
        return Err(bad("strip offsets of a wrong type"));
    };
    if offsets.len() != counts.len() {
        return Err(bad("strip offsets and byte counts differ in number"));
    }
    offsets
        .into_iter()
        .zip(counts)
        .map(|(o, c)| {
            let end = o
                .checked_add(c)
                .filter(|&e| e <= total as u64)
                .ok_or_else(|| bad("strip runs past the end"))?;
            Ok((o as usize, (end - o) as usize))
        })
        .collect()
}

pub fn strip(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(Vec<u8>, Vec<String>, ExifSummary), StripError> {
    let (f, first) = Flavour::of(bytes)?;
    let all = pages(bytes, f, first, limits)?;
    let mut removed = BTreeSet::new();
    let mut summary = ExifSummary::default();
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..4]);
    if f.bigtiff {
        f.put(&mut out, 8, 2);
        f.put(&mut out, 0, 2);
    }
    let mut next_slot = out.len();
    f.put(&mut out, 0, f.offset_width());
    let mut written = 0;
    for (entries, _) in &all {
        let find = |tag| entries.iter().find(|e: &&Entry| e.tag == tag);
        if find(DNG_VERSION).is_some() {
            return Err(StripError::Unsupported("DNG and other raw TIFF"));
        }
        if find(JPEG_IF).is_some()
            || find(COMPRESSION)
                .and_then(|e| e.uints(f))
                .is_some_and(|c| c.first() == Some(&6))
        {
            return Err(StripError::Unsupported("old-style JPEG-in-TIFF"));
        }
        if find(NEW_SUBFILE_TYPE)
            .and_then(|e| e.uints(f))
            .is_some_and(|v| v.first().is_some_and(|t| t & 1 == 1))
        {
            removed.insert("TIFF:reduced-resolution page (thumbnail)".to_owned());
            continue;
        }
        let dim = |tag| {
            find(tag)
                .and_then(|e| e.uints(f))
                .and_then(|v| v.first().copied())
                .unwrap_or(0)
        };
        let (width, height) = (dim(WIDTH), dim(HEIGHT));
        check_dimensions(
            u32::try_from(width).unwrap_or(u32::MAX),
            u32::try_from(height).unwrap_or(u32::MAX),
            limits,
        )?;
        if written == 0 {
            summary.orientation = u16::try_from(dim(ORIENTATION))
                .ok()
                .filter(|o| (1..=8).contains(o));
        }
        // Name what goes; the Exif and GPS IFDs by their own tags.
        let pointer = |tag| {
            find(tag)
                .and_then(|e| e.uints(f))
                .and_then(|v| v.first().copied())
                .and_then(|v| u32::try_from(v).ok())
        };
        if !f.bigtiff {
            summary.absorb(exif::summarize_sub_ifds(
                bytes,
                f.big_endian,
                pointer(EXIF_IFD),
                pointer(GPS_IFD),
                limits,
            )?);
        }
        summary.gps |= find(GPS_IFD).is_some();
        for e in entries.iter().filter(|e| !kept(e.tag)) {
            removed.insert(match e.tag {
                SUB_IFDS => "TIFF:SubIFDs (reduced images)".to_owned(),
                EXIF_IFD => "EXIF".to_owned(),
                GPS_IFD => "EXIF:GPS".to_owned(),
                t => format!("TIFF:{}", Tag(Context::Tiff, t)),
            });
        }
        // Copy the pixel data, then write the page's values and IFD.
        let mut new_offsets = Vec::new();
        for (off, len) in blocks(entries, f, bytes.len())? {
            if out.len() % 2 == 1 {
                out.push(0);
            }
            new_offsets.push(out.len() as u64);
            out.extend_from_slice(&bytes[off..off + len]);
        }
        let mut keep: Vec<(u16, u16, u64, Vec<u8>)> = Vec::new();
        for e in entries.iter().filter(|e| kept(e.tag)) {
            match e.tag {
                STRIP_OFFSETS | TILE_OFFSETS => {
                    let (kind, width) = if f.bigtiff { (16, 8) } else { (4, 4) };
                    let mut data = Vec::with_capacity(new_offsets.len() * width);
                    for &o in &new_offsets {
                        if !f.bigtiff && o > u64::from(u32::MAX) {
                            return Err(bad("output over 4 GiB needs BigTIFF"));
                        }
                        f.put(&mut data, o, width);
                    }
                    keep.push((e.tag, kind, new_offsets.len() as u64, data));
                }
                ICC_TAG => {
                    let mut profile = e.data.to_vec();
                    match icc::clean(&mut profile, limits) {
                        Ok(names) => {
                            removed.extend(names);
                            keep.push((e.tag, 7, profile.len() as u64, profile));
                        }
                        Err(_) => {
                            removed.insert("ICC_Profile (malformed)".to_owned());
                        }
                    }
                }
                _ => keep.push((e.tag, e.kind, e.count, e.data.to_vec())),
            }
        }
        keep.sort_by_key(|k| k.0);
        keep.dedup_by_key(|k| k.0);
        let ow = f.offset_width();
        let mut external = Vec::with_capacity(keep.len());
        for (_, _, _, data) in &keep {
            if data.len() > ow {
                if out.len() % 2 == 1 {
                    out.push(0);
                }
                external.push(Some(out.len() as u64));
                out.extend_from_slice(data);
            } else {
                external.push(None);
            }
        }
        if out.len() % 2 == 1 {
            out.push(0);
        }
        let ifd_at = out.len() as u64;
        let mut slot = Vec::new();
        f.put(&mut slot, ifd_at, ow);
        out[next_slot..next_slot + ow].copy_from_slice(&slot);
        f.put(&mut out, keep.len() as u64, if f.bigtiff { 8 } else { 2 });
        for ((tag, kind, count, data), ext) in keep.iter().zip(&external) {
            f.put(&mut out, u64::from(*tag), 2);
            f.put(&mut out, u64::from(*kind), 2);
            f.put(&mut out, *count, ow);
            match ext {
                Some(at) => f.put(&mut out, *at, ow),
                None => {
                    out.extend_from_slice(data);
                    out.resize(out.len() + ow - data.len(), 0);
                }
            }
        }
        next_slot = out.len();
        f.put(&mut out, 0, ow);
        written += 1;
    }
    if written == 0 {
        return Err(bad("no full-resolution page"));
    }
    Ok((out, removed.into_iter().collect(), summary))
}

/// An independent reading of a stripped TIFF: every tag of every page allowed, the ICC
/// profile clean, strips in bounds, and no bytes unaccounted for.
pub fn verify(bytes: &[u8], limits: &Limits) -> Result<(), StripError> {
    let fail = |what: String| Err(StripError::Verify(format!("TIFF: {what}")));
    let (f, first) = Flavour::of(bytes).map_err(StripError::into_verify)?;
    let all = pages(bytes, f, first, limits).map_err(StripError::into_verify)?;
    let mut accounted = f.header_len() as u64;
    let mut pieces = 0u64;
    for (entries, span) in &all {
        accounted += span;
        pieces += 1;
        for e in entries {
            if !kept(e.tag) {
                return fail(format!("tag {} is not allowed", Tag(Context::Tiff, e.tag)));
            }
            if e.tag == ICC_TAG && !icc::is_clean(e.data, limits) {
                return fail("ICC profile is not clean".into());
            }
            if e.data.len() > f.offset_width() {
                accounted += e.data.len() as u64;
                pieces += 1;
            }
        }
        for (_, len) in blocks(entries, f, bytes.len()).map_err(StripError::into_verify)? {
            accounted += len as u64;
            pieces += 1;
        }
    }
    // Each piece may be preceded by one byte of padding; anything more is hidden data.
    if bytes.len() as u64 > accounted + pieces {
        return fail(format!(
            "{} bytes are not part of the image",
            bytes.len() as u64 - accounted
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Append an IFD of (tag, type, count, value) entries; SHORT values and the 4-byte
    /// Artist string ("DrX") are inline.
    fn ifd(f: Flavour, out: &mut Vec<u8>, entries: &[(u16, u16, u32, u32)], next: u64) {
        f.put(out, entries.len() as u64, 2);
        for &(tag, kind, count, value) in entries {
            f.put(out, tag.into(), 2);
            f.put(out, kind.into(), 2);
            f.put(out, count.into(), 4);
            if kind == 3 {
                f.put(out, value.into(), 2);
                out.extend_from_slice(&[0, 0]);
            } else if tag == 315 {
                out.extend_from_slice(b"DrX\0");
            } else {
                f.put(out, value.into(), 4);
            }
        }
        f.put(out, next, 4);
    }

    /// A 2×1 8-bit grey TIFF with an Artist tag, a thumbnail page and trailing junk.
    fn tiff(big_endian: bool) -> Vec<u8> {
        let f = Flavour {
            big_endian,
            bigtiff: false,
        };
        let mut out = if big_endian {
            b"MM\0*".to_vec()
        } else {
            b"II*\0".to_vec()
        };
        f.put(&mut out, 8, 4);
        let entries: [(u16, u16, u32, u32); 8] = [
            (256, 3, 1, 2),
            (257, 3, 1, 1),
            (258, 3, 1, 8),
            (259, 3, 1, 1),
            (262, 3, 1, 1),
            (273, 4, 1, 220),
            (279, 4, 1, 2),
            (315, 2, 4, 0x0058_5244), // Artist "DrX\0" inline
        ];
        ifd(f, &mut out, &entries, 150); // next page: a thumbnail
        out.resize(150, 0);
        let thumb: [(u16, u16, u32, u32); 4] = [
            (254, 4, 1, 1),
            (256, 3, 1, 1),
            (273, 4, 1, 222),
            (279, 4, 1, 1),
        ];
        ifd(f, &mut out, &thumb, 0);
        out.resize(220, 0);
        out.extend_from_slice(&[0x11, 0x22, 0x33]);
        out
    }

    #[test]
    fn keeps_pixels_drops_tags_and_thumbnails_in_both_byte_orders() {
        for big in [false, true] {
            let input = tiff(big);
            let (out, removed, _) = strip(&input, &Limits::default()).unwrap();
            verify(&out, &Limits::default()).unwrap();
            assert!(removed.contains(&"TIFF:Artist".to_owned()), "{removed:?}");
            assert!(removed.contains(&"TIFF:reduced-resolution page (thumbnail)".to_owned()));
            assert!(!out.windows(3).any(|w| w == b"DrX"));
            assert!(out.windows(2).any(|w| w == [0x11, 0x22]), "pixels copied");
        }
    }

    #[test]
    fn loops_truncation_and_hidden_bytes_are_caught() {
        let mut looped = tiff(false);
        looped[4..8].copy_from_slice(&150u32.to_le_bytes());
        looped[150 + 2 + 4 * 12..150 + 2 + 4 * 12 + 4].copy_from_slice(&150u32.to_le_bytes());
        assert!(strip(&looped, &Limits::default()).is_err());
        let input = tiff(false);
        assert!(strip(&input[..120], &Limits::default()).is_err());
        let (mut out, _, _) = strip(&input, &Limits::default()).unwrap();
        out.extend_from_slice(b"hidden patient name");
        assert!(verify(&out, &Limits::default()).is_err());
    }
}
