//! HEIF/HEIC and AVIF still images (ISOBMFF): drop metadata items and thumbnails, keep every
//! image item's coded bytes where they are.
//!
//! The `meta` box is rebuilt: `iinf`, `iloc`, `iref` and `ipma` lose the entries of Exif,
//! `mime` (XMP) and `uri ` items and of thumbnails (items with a `thmb` reference); `colr`
//! ICC profiles are cleaned in place and `hdlr`'s name is blanked; any other child (and every
//! top-level box but `ftyp`, `meta` and `mdat`) is removed. `iloc` file offsets are shifted by
//! how much `meta` shrank, and every byte of `mdat` and `idat` that no kept item refers to is
//! zeroed, so the dropped items' bytes are gone too. Image sequences (`moov`) are refused.

use std::collections::{BTreeMap, BTreeSet};

use super::exif::{self, ExifSummary};
use super::{Format, Limits, StripError, check_limit, icc, read_u16, read_u32};

const META_KEEP: [&[u8; 4]; 8] = [
    b"hdlr", b"pitm", b"iloc", b"iinf", b"iref", b"iprp", b"idat", b"dinf",
];
const TOP_KEEP: [&[u8; 4]; 3] = [b"ftyp", b"meta", b"mdat"];

/// Field sizes of the boxes this module rebuilds (ISO/IEC 14496-12 §4.2, §8.4.3), written once
/// for [`strip`] and [`verify`] both.
///
/// A FullBox starts with version (1 byte) and flags (3 bytes).
const FULLBOX_HEADER: usize = 4;
/// `hdlr`: FullBox header, `pre_defined` (u32), `handler_type` (4 bytes), `reserved` (3 × u32),
/// then `name`, a NUL-terminated UTF-8 string. 24 bytes before the name.
const HDLR_FIXED: usize = FULLBOX_HEADER + 4 + 4 + 3 * 4;
/// A rebuilt `hdlr` body: the fixed fields and an empty name (one NUL).
const HDLR_BODY: usize = HDLR_FIXED + 1;
/// The widths `iloc` allows for its offset, length, base-offset and index fields (§8.11.3).
const ILOC_FIELD_SIZES: [usize; 3] = [0, 4, 8];

fn bad(format: Format, problem: impl Into<String>) -> StripError {
    StripError::malformed(format, problem)
}

/// A box: its type, where it starts and ends in the file, and where its body starts.
#[derive(Clone, Copy)]
struct Bx {
    kind: [u8; 4],
    start: usize,
    body: usize,
    end: usize,
}

fn boxes(
    bytes: &[u8],
    from: usize,
    to: usize,
    format: Format,
    limits: &Limits,
    count: &mut usize,
) -> Result<Vec<Bx>, StripError> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        *count += 1;
        check_limit("max_segments", *count as u64, limits.max_segments as u64)?;
        let size =
            read_u32(bytes, pos, true).ok_or_else(|| bad(format, "truncated box header"))? as usize;
        let kind: [u8; 4] = bytes
            .get(pos + 4..pos + 8)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| bad(format, "truncated box header"))?;
        let (body, end) = match size {
            0 => (pos + 8, to),
            1 => {
                let large = bytes
                    .get(pos + 8..pos + 16)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| bad(format, "truncated box header"))?;
                (
                    pos + 16,
                    pos.saturating_add(usize::try_from(large).unwrap_or(usize::MAX)),
                )
            }
            n => (pos + 8, pos.saturating_add(n)),
        };
        if end > to || end < body {
            return Err(bad(
                format,
                format!(
                    "box {} runs past its parent",
                    String::from_utf8_lossy(&kind)
                ),
            ));
        }
        out.push(Bx {
            kind,
            start: pos,
            body,
            end,
        });
        pos = end;
    }
    Ok(out)
}

/// Unsigned big-endian integer of `width` bytes (0, 4 or 8 in iloc).
fn uint(bytes: &[u8], at: usize, width: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(width)?)?;
    Some(b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
}

fn put(out: &mut Vec<u8>, v: u64, width: usize) {
    for i in (0..width).rev() {
        out.push((v >> (8 * i)) as u8);
    }
}

fn push_box(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
    put(out, (body.len() + 8) as u64, 4);
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
}

/// An `iref` reference: type, from item, to items.
type Reference = ([u8; 4], u32, Vec<u32>);

struct Item {
    kind: [u8; 4],
    content_type: String,
}

/// `iinf`: item id → type (and content type for `mime`), with each infe's box range. With
/// `exact`, `entry_count` must be the number of `infe` boxes and nothing else may be inside.
fn read_iinf(
    bytes: &[u8],
    b: Bx,
    f: Format,
    limits: &Limits,
    count: &mut usize,
    exact: bool,
) -> Result<Vec<(u32, Item, Bx)>, StripError> {
    let version = *bytes.get(b.body).ok_or_else(|| bad(f, "short iinf"))?;
    let at = b.body + FULLBOX_HEADER;
    let (entries, first) = if version == 0 {
        (read_u16(bytes, at, true).map(u32::from), at + 2)
    } else {
        (read_u32(bytes, at, true), at + 4)
    };
    let entries = entries.ok_or_else(|| bad(f, "short iinf"))?;
    let children = boxes(bytes, first, b.end, f, limits, count)?;
    if exact && (children.len() != entries as usize || children.iter().any(|c| &c.kind != b"infe"))
    {
        return Err(bad(f, "iinf's entry count does not match its infe boxes"));
    }
    let mut out = Vec::new();
    for infe in children {
        if &infe.kind != b"infe" {
            continue;
        }
        let v = *bytes.get(infe.body).ok_or_else(|| bad(f, "short infe"))?;
        if v < 2 {
            return Err(bad(f, "infe version below 2"));
        }
        let (id, at) = if v == 2 {
            (
                read_u16(bytes, infe.body + FULLBOX_HEADER, true).map(u32::from),
                infe.body + 6,
            )
        } else {
            (
                read_u32(bytes, infe.body + FULLBOX_HEADER, true),
                infe.body + FULLBOX_HEADER + 4,
            )
        };
        let id = id.ok_or_else(|| bad(f, "short infe"))?;
        let kind: [u8; 4] = bytes
            .get(at + 2..at + 6)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| bad(f, "short infe"))?;
        let rest = bytes.get(at + 6..infe.end).unwrap_or_default();
        let mut strings = rest.split(|&c| c == 0);
        let _name = strings.next();
        let content_type = strings
            .next()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_default();
        out.push((id, Item { kind, content_type }, infe));
    }
    Ok(out)
}

/// One `iloc` item: its fields as read, for rewriting.
struct Loc {
    id: u32,
    method: u16,
    base: u64,
    /// (index, offset, length) per extent
    extents: Vec<(u64, u64, u64)>,
}

struct Iloc {
    version: u8,
    offset_size: usize,
    length_size: usize,
    base_size: usize,
    index_size: usize,
    items: Vec<Loc>,
}

/// With `exact`, the fields must fill the box to its last byte (a rebuilt box has no slack).
fn read_iloc(
    bytes: &[u8],
    b: Bx,
    f: Format,
    limits: &Limits,
    exact: bool,
) -> Result<Iloc, StripError> {
    let short = || bad(f, "short iloc");
    let version = *bytes.get(b.body).ok_or_else(short)?;
    let sizes = read_u16(bytes, b.body + FULLBOX_HEADER, true).ok_or_else(short)?;
    let (offset_size, length_size, base_size) = (
        usize::from(sizes >> 12),
        usize::from((sizes >> 8) & 15),
        usize::from((sizes >> 4) & 15),
    );
    let index_size = if version >= 1 {
        usize::from(sizes & 15)
    } else {
        0
    };
    if [offset_size, length_size, base_size, index_size]
        .iter()
        .any(|w| !ILOC_FIELD_SIZES.contains(w))
    {
        return Err(bad(f, "iloc field sizes must be 0, 4 or 8 bytes"));
    }
    let mut at = b.body + 6;
    let count = if version < 2 {
        read_u16(bytes, at, true).map(u32::from)
    } else {
        read_u32(bytes, at, true)
    }
    .ok_or_else(short)?;
    at += if version < 2 { 2 } else { 4 };
    check_limit("max_segments", u64::from(count), limits.max_segments as u64)?;
    let mut items = Vec::with_capacity(count.min(4096) as usize);
    let mut total_extents = 0u64;
    for _ in 0..count {
        if at > b.end {
            return Err(short());
        }
        let id = if version < 2 {
            read_u16(bytes, at, true).map(u32::from)
        } else {
            read_u32(bytes, at, true)
        }
        .ok_or_else(short)?;
        at += if version < 2 { 2 } else { 4 };
        let method = if version >= 1 {
            let m = read_u16(bytes, at, true).ok_or_else(short)? & 15;
            at += 2;
            m
        } else {
            0
        };
        at += 2; // data_reference_index
        let base = uint(bytes, at, base_size).ok_or_else(short)?;
        at += base_size;
        let n = read_u16(bytes, at, true).ok_or_else(short)?;
        at += 2;
        // Extents may take no bytes (zero-width fields): bound their total, not just each item's.
        total_extents += u64::from(n);
        check_limit("max_segments", total_extents, limits.max_segments as u64)?;
        let mut extents = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let index = uint(bytes, at, index_size).ok_or_else(short)?;
            at += index_size;
            let offset = uint(bytes, at, offset_size).ok_or_else(short)?;
            at += offset_size;
            let length = uint(bytes, at, length_size).ok_or_else(short)?;
            at += length_size;
            extents.push((index, offset, length));
        }
        items.push(Loc {
            id,
            method,
            base,
            extents,
        });
    }
    if at > b.end {
        return Err(short());
    }
    if exact && at != b.end {
        return Err(bad(f, "iloc has bytes past its last item"));
    }
    Ok(Iloc {
        version,
        offset_size,
        length_size,
        base_size,
        index_size,
        items,
    })
}

fn write_iloc(
    iloc: &Iloc,
    keep: &BTreeSet<u32>,
    shift: &dyn Fn(u64) -> Option<u64>,
    f: Format,
) -> Result<Vec<u8>, StripError> {
    let mut body = vec![iloc.version, 0, 0, 0];
    let sizes = (iloc.offset_size << 12)
        | (iloc.length_size << 8)
        | (iloc.base_size << 4)
        | iloc.index_size;
    put(&mut body, sizes as u64, 2);
    let items: Vec<&Loc> = iloc.items.iter().filter(|l| keep.contains(&l.id)).collect();
    put(
        &mut body,
        items.len() as u64,
        if iloc.version < 2 { 2 } else { 4 },
    );
    for loc in items {
        put(
            &mut body,
            loc.id.into(),
            if iloc.version < 2 { 2 } else { 4 },
        );
        if iloc.version >= 1 {
            put(&mut body, loc.method.into(), 2);
        }
        put(&mut body, 0, 2);
        let moved =
            |v: u64| shift(v).ok_or_else(|| bad(f, "an image item lies outside the kept boxes"));
        let (base, shift_extents) = match (loc.method, iloc.base_size) {
            (0, 0) => (loc.base, true),
            (0, _) => (moved(loc.base)?, false),
            _ => (loc.base, false),
        };
        put(&mut body, base, iloc.base_size);
        put(&mut body, loc.extents.len() as u64, 2);
        for &(index, offset, length) in &loc.extents {
            put(&mut body, index, iloc.index_size);
            let offset = if shift_extents {
                moved(offset)?
            } else {
                offset
            };
            if iloc.offset_size < 8 && offset >> (8 * iloc.offset_size) != 0 {
                return Err(bad(f, "shifted offset does not fit"));
            }
            put(&mut body, offset, iloc.offset_size);
            put(&mut body, length, iloc.length_size);
        }
    }
    Ok(body)
}

/// `iref`: (type, from, to list) references, and the id width. With `exact`, each reference
/// box must hold its fields and nothing more.
fn read_iref(
    bytes: &[u8],
    b: Bx,
    f: Format,
    limits: &Limits,
    count: &mut usize,
    exact: bool,
) -> Result<(u8, Vec<Reference>), StripError> {
    let version = *bytes.get(b.body).ok_or_else(|| bad(f, "short iref"))?;
    let w = if version == 0 { 2 } else { 4 };
    let id = |at| {
        if w == 2 {
            read_u16(bytes, at, true).map(u32::from)
        } else {
            read_u32(bytes, at, true)
        }
    };
    let mut out = Vec::new();
    for r in boxes(bytes, b.body + FULLBOX_HEADER, b.end, f, limits, count)? {
        let from = id(r.body).ok_or_else(|| bad(f, "short iref"))?;
        let n = read_u16(bytes, r.body + w, true).ok_or_else(|| bad(f, "short iref"))?;
        let to = (0..usize::from(n))
            .map(|i| id(r.body + w + 2 + i * w))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| bad(f, "short iref"))?;
        if exact && r.end != r.body + w + 2 + to.len() * w {
            return Err(bad(
                f,
                "an iref reference box is not the size of its fields",
            ));
        }
        out.push((r.kind, from, to));
    }
    Ok((version, out))
}

pub fn strip(
    bytes: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<(Vec<u8>, Vec<String>, ExifSummary), StripError> {
    let f = format;
    let mut count = 0;
    let top = boxes(bytes, 0, bytes.len(), f, limits, &mut count)?;
    if top.iter().any(|b| &b.kind == b"moov") {
        return Err(StripError::NotStill("HEIF/AVIF image sequences"));
    }
    let meta = *top
        .iter()
        .find(|b| &b.kind == b"meta")
        .ok_or_else(|| bad(f, "no meta box"))?;
    let children = boxes(
        bytes,
        meta.body + FULLBOX_HEADER,
        meta.end,
        f,
        limits,
        &mut count,
    )?;
    let child = |k: &[u8; 4]| children.iter().find(|c| &c.kind == k).copied();
    let mut removed = BTreeSet::new();
    let mut summary = ExifSummary::default();

    let items = read_iinf(
        bytes,
        child(b"iinf").ok_or_else(|| bad(f, "no iinf"))?,
        f,
        limits,
        &mut count,
        false,
    )?;
    let iloc = read_iloc(
        bytes,
        child(b"iloc").ok_or_else(|| bad(f, "no iloc"))?,
        f,
        limits,
        false,
    )?;
    let (iref_version, refs) = match child(b"iref") {
        Some(b) => read_iref(bytes, b, f, limits, &mut count, false)?,
        None => (0, Vec::new()),
    };
    let data_of = |id: u32| -> Vec<u8> {
        // Only for reading an Exif item's orientation and GPS: file-offset extents.
        iloc.items
            .iter()
            .filter(|l| l.id == id && l.method == 0)
            .flat_map(|l| l.extents.iter().map(move |&(_, o, n)| (l.base + o, n)))
            .filter_map(|(o, n)| bytes.get(o as usize..(o + n) as usize))
            .flatten()
            .copied()
            .collect()
    };
    let mut drop = BTreeSet::new();
    for (id, item, _) in &items {
        match &item.kind {
            b"Exif" => {
                let data = data_of(*id);
                // An Exif item starts with a 4-byte offset to the TIFF header.
                let skip = read_u32(&data, 0, true).unwrap_or(0) as usize + 4;
                summary.absorb(exif::summarize(
                    data.get(skip..).unwrap_or_default(),
                    limits,
                )?);
                removed.insert("HEIF:Exif item".to_owned());
                drop.insert(*id);
            }
            b"mime" => {
                let name = if item.content_type.contains("rdf+xml") {
                    "XMP".to_owned()
                } else {
                    "HEIF:mime item".to_owned()
                };
                removed.insert(name);
                drop.insert(*id);
            }
            b"uri " => {
                removed.insert("HEIF:uri item".to_owned());
                drop.insert(*id);
            }
            _ => {}
        }
    }
    for (kind, from, _) in &refs {
        if kind == b"thmb" {
            removed.insert("HEIF:thumbnail".to_owned());
            drop.insert(*from);
        }
    }
    // Items that only feed dropped items (a thumbnail's grid tiles) go too.
    let thumbnails = drop.clone();
    let feeds_kept = |t: &u32| {
        refs.iter()
            .any(|(k, fr, tt)| k == b"dimg" && !thumbnails.contains(fr) && tt.contains(t))
    };
    for (kind, from, to) in &refs {
        if kind == b"dimg" && thumbnails.contains(from) {
            drop.extend(to.iter().copied().filter(|t| !feeds_kept(t)));
        }
    }
    if let Some(pitm) = child(b"pitm") {
        let v = bytes.get(pitm.body).copied().unwrap_or(0);
        let primary = if v == 0 {
            read_u16(bytes, pitm.body + FULLBOX_HEADER, true).map(u32::from)
        } else {
            read_u32(bytes, pitm.body + FULLBOX_HEADER, true)
        };
        if primary.is_some_and(|p| drop.contains(&p)) {
            return Err(bad(f, "the primary item is metadata or a thumbnail"));
        }
    }
    let keep: BTreeSet<u32> = items
        .iter()
        .map(|(id, _, _)| *id)
        .filter(|id| !drop.contains(id))
        .collect();

    // Rebuild meta's children.
    let mut meta_body = bytes[meta.body..meta.body + FULLBOX_HEADER].to_vec();
    let mut iloc_at = None;
    let mut idat_range = None;
    for c in &children {
        match &c.kind {
            b"hdlr" => {
                // The fixed fields stay; the name goes.
                let fixed = bytes
                    .get(c.body..c.body + HDLR_FIXED)
                    .filter(|_| c.end >= c.body + HDLR_FIXED)
                    .ok_or_else(|| bad(f, "short hdlr"))?;
                if bytes[c.body + HDLR_FIXED..c.end].iter().any(|&b| b != 0) {
                    removed.insert("HEIF:hdlr name".to_owned());
                }
                push_box(&mut meta_body, b"hdlr", &[fixed, &[0]].concat());
            }
            b"iinf" => {
                let version = bytes[c.body];
                let mut body = bytes[c.body..c.body + FULLBOX_HEADER].to_vec();
                let kept: Vec<&(u32, Item, Bx)> = items
                    .iter()
                    .filter(|(id, _, _)| keep.contains(id))
                    .collect();
                put(
                    &mut body,
                    kept.len() as u64,
                    if version == 0 { 2 } else { 4 },
                );
                for (_, _, infe) in kept {
                    body.extend_from_slice(&bytes[infe.start..infe.end]);
                }
                push_box(&mut meta_body, b"iinf", &body);
            }
            b"iloc" => {
                iloc_at = Some(meta_body.len());
                push_box(&mut meta_body, b"iloc", &[]); // placeholder: offsets depend on the final size
            }
            b"iref" => {
                let mut body = vec![iref_version, 0, 0, 0];
                let w = if iref_version == 0 { 2 } else { 4 };
                for (kind, from, to) in &refs {
                    let to: Vec<u32> = to.iter().copied().filter(|t| keep.contains(t)).collect();
                    if !keep.contains(from) || to.is_empty() || kind == b"cdsc" || kind == b"thmb" {
                        continue;
                    }
                    let mut r = Vec::new();
                    put(&mut r, (*from).into(), w);
                    put(&mut r, to.len() as u64, 2);
                    for t in to {
                        put(&mut r, t.into(), w);
                    }
                    push_box(&mut body, kind, &r);
                }
                push_box(&mut meta_body, b"iref", &body);
            }
            b"iprp" => {
                let mut raw = bytes[c.start..c.end].to_vec();
                clean_properties(bytes, *c, &mut raw, f, limits, &mut count, &mut removed)?;
                meta_body.extend_from_slice(&raw);
            }
            k if META_KEEP.contains(&k) => {
                if k == b"idat" {
                    idat_range = Some((meta_body.len() + (c.body - c.start), c.body, c.end));
                }
                meta_body.extend_from_slice(&bytes[c.start..c.end]);
            }
            k => {
                removed.insert(format!("HEIF:meta/{}", String::from_utf8_lossy(k)));
            }
        }
    }
    for b in &top {
        if !TOP_KEEP.contains(&&b.kind) {
            removed.insert(format!("HEIF:{}", String::from_utf8_lossy(&b.kind)));
        }
    }
    // Lay out: the kept top-level boxes in order, meta rebuilt. The iloc placeholder is then
    // filled in; its size does not depend on the offsets (field widths are kept).
    let iloc_body_len = write_iloc(&iloc, &keep, &|v| Some(v), f)?.len();
    let meta_len = meta_body.len() + 8 + iloc_body_len;
    let mut placement: Vec<(Bx, usize)> = Vec::new(); // (old box, new start)
    let mut at = 0;
    for b in top.iter().filter(|b| TOP_KEEP.contains(&&b.kind)) {
        placement.push((*b, at));
        at += if &b.kind == b"meta" {
            meta_len
        } else {
            b.end - b.start
        };
    }
    let shift = |old: u64| -> Option<u64> {
        let old = usize::try_from(old).ok()?;
        placement
            .iter()
            .find(|(b, _)| &b.kind == b"mdat" && (b.start..b.end).contains(&old))
            .map(|(b, new)| (old - b.start + new) as u64)
    };
    let iloc_body = write_iloc(&iloc, &keep, &shift, f)?;
    if let Some(pos) = iloc_at {
        let mut rebuilt = meta_body[..pos].to_vec();
        push_box(&mut rebuilt, b"iloc", &iloc_body);
        rebuilt.extend_from_slice(&meta_body[pos + 8..]);
        meta_body = rebuilt;
    }
    let mut out = Vec::with_capacity(bytes.len());
    for (b, _) in &placement {
        match &b.kind {
            b"meta" => push_box(&mut out, b"meta", &meta_body),
            _ => out.extend_from_slice(&bytes[b.start..b.end]),
        }
    }
    // Where idat's body landed: after meta's header, past a grown iloc if it came first.
    let meta_new = placement
        .iter()
        .find(|(b, _)| &b.kind == b"meta")
        .map_or(0, |(_, at)| *at);
    let idat_in_out = idat_range.map(|(off, _, _)| {
        let grown = if iloc_at.is_some_and(|p| p < off) {
            iloc_body.len()
        } else {
            0
        };
        meta_new + 8 + off + grown
    });
    // Zero every byte of mdat and idat that no kept item refers to.
    let mut used: Vec<(usize, usize)> = Vec::new();
    for loc in iloc.items.iter().filter(|l| keep.contains(&l.id)) {
        for &(_, offset, length) in &loc.extents {
            let start = loc.base + offset;
            match loc.method {
                0 => {
                    let new = shift(start)
                        .ok_or_else(|| bad(f, "an image item lies outside mdat"))?
                        as usize;
                    used.push((new, new + length as usize));
                }
                1 => {
                    if let Some(idat_at) = idat_in_out {
                        let new = idat_at + start as usize;
                        used.push((new, new + length as usize));
                    }
                }
                _ => {
                    return Err(StripError::Unsupported(
                        "HEIF items built from other items (construction method 2)",
                    ));
                }
            }
        }
    }
    let mut zero_ranges: Vec<(usize, usize)> = placement
        .iter()
        .filter(|(b, _)| &b.kind == b"mdat")
        .map(|(b, new)| (new + (b.body - b.start), new + (b.end - b.start)))
        .collect();
    if let (Some(start), Some((_, body, end))) = (idat_in_out, idat_range) {
        zero_ranges.push((start, start + (end - body)));
    }
    let mut zeroed = false;
    for (from, to) in zero_ranges {
        for (gap_from, gap_to) in gaps(&used, from, to.min(out.len())) {
            let gap = &mut out[gap_from..gap_to];
            if gap.iter().any(|&b| b != 0) {
                gap.fill(0);
                zeroed = true;
            }
        }
    }
    if zeroed {
        removed.insert("HEIF:unreferenced data (zeroed)".to_owned());
    }
    Ok((out, removed.into_iter().collect(), summary))
}

/// The parts of `from..to` that no range of `used` covers.
fn gaps(used: &[(usize, usize)], from: usize, to: usize) -> Vec<(usize, usize)> {
    let mut covered: Vec<(usize, usize)> = used
        .iter()
        .map(|&(s, e)| (s.max(from), e.min(to)))
        .filter(|(s, e)| s < e)
        .collect();
    covered.sort_unstable();
    let mut out = Vec::new();
    let mut at = from;
    for (s, e) in covered {
        if s > at {
            out.push((at, s));
        }
        at = at.max(e);
    }
    if at < to {
        out.push((at, to));
    }
    out
}

/// Clean `colr` ICC profiles in place and blank `udes` descriptions, within `raw` (a copy of
/// the iprp box starting at `iprp.start`).
fn clean_properties(
    bytes: &[u8],
    iprp: Bx,
    raw: &mut [u8],
    f: Format,
    limits: &Limits,
    count: &mut usize,
    removed: &mut BTreeSet<String>,
) -> Result<(), StripError> {
    for ipco in boxes(bytes, iprp.body, iprp.end, f, limits, count)?
        .into_iter()
        .filter(|b| &b.kind == b"ipco")
    {
        for prop in boxes(bytes, ipco.body, ipco.end, f, limits, count)? {
            let (from, to) = (prop.body - iprp.start, prop.end - iprp.start);
            match &prop.kind {
                b"colr"
                    if matches!(bytes.get(prop.body..prop.body + 4), Some(b"prof" | b"rICC")) =>
                {
                    let profile = &mut raw[from + 4..to];
                    match icc::clean(profile, limits) {
                        Ok(names) => removed.extend(names),
                        Err(_) => {
                            profile.fill(0);
                            removed.insert("ICC_Profile (malformed, zeroed)".to_owned());
                        }
                    }
                }
                b"udes" => {
                    raw[from + FULLBOX_HEADER..to].fill(0);
                    removed.insert("HEIF:udes description".to_owned());
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// An independent reading of a stripped HEIF/AVIF: allowed boxes only, no metadata items or
/// thumbnail references, clean ICC, blank hdlr name and descriptions, and no non-zero byte in
/// mdat that no item refers to.
pub fn verify(bytes: &[u8], format: Format, limits: &Limits) -> Result<(), StripError> {
    let fail = |what: String| Err(StripError::Verify(format!("{}: {what}", format.name())));
    let mut count = 0;
    let top = boxes(bytes, 0, bytes.len(), format, limits, &mut count)
        .map_err(StripError::into_verify)?;
    if let Some(b) = top.iter().find(|b| !TOP_KEEP.contains(&&b.kind)) {
        return fail(format!(
            "top-level box {} is not allowed",
            String::from_utf8_lossy(&b.kind)
        ));
    }
    let Some(meta) = top.iter().find(|b| &b.kind == b"meta") else {
        return fail("no meta box".into());
    };
    let children = boxes(
        bytes,
        meta.body + FULLBOX_HEADER,
        meta.end,
        format,
        limits,
        &mut count,
    )
    .map_err(StripError::into_verify)?;
    let mut extents: Vec<(usize, usize)> = Vec::new();
    for c in &children {
        match &c.kind {
            b"hdlr" if c.end - c.body == HDLR_BODY && bytes[c.end - 1] == 0 => {}
            b"hdlr" => return fail("hdlr is not its fixed fields and an empty name".into()),
            b"iinf" => {
                for (_, item, _) in read_iinf(bytes, *c, format, limits, &mut count, true)
                    .map_err(StripError::into_verify)?
                {
                    if matches!(&item.kind, b"Exif" | b"mime" | b"uri ") {
                        return fail(format!(
                            "item of type {} is not allowed",
                            String::from_utf8_lossy(&item.kind)
                        ));
                    }
                }
            }
            b"iref" => {
                let (_, refs) = read_iref(bytes, *c, format, limits, &mut count, true)
                    .map_err(StripError::into_verify)?;
                if let Some((k, _, _)) = refs.iter().find(|(k, _, _)| k == b"thmb" || k == b"cdsc")
                {
                    return fail(format!(
                        "{} reference is not allowed",
                        String::from_utf8_lossy(k)
                    ));
                }
            }
            b"iloc" => {
                for loc in read_iloc(bytes, *c, format, limits, true)
                    .map_err(StripError::into_verify)?
                    .items
                    .iter()
                    .filter(|l| l.method == 0)
                {
                    for &(_, o, n) in &loc.extents {
                        let start = (loc.base + o) as usize;
                        extents.push((start, start + n as usize));
                    }
                }
            }
            b"iprp" => {
                for ipco in boxes(bytes, c.body, c.end, format, limits, &mut count)
                    .map_err(StripError::into_verify)?
                {
                    for prop in boxes(bytes, ipco.body, ipco.end, format, limits, &mut count)
                        .map_err(StripError::into_verify)?
                    {
                        let body = &bytes[prop.body..prop.end];
                        let is_icc = &prop.kind == b"colr"
                            && matches!(body.get(..4), Some(b"prof" | b"rICC"));
                        if is_icc
                            && !icc::is_clean(&body[4..], limits)
                            && body[4..].iter().any(|&b| b != 0)
                        {
                            return fail("ICC profile is not clean".into());
                        }
                        if &prop.kind == b"udes"
                            && body
                                .get(FULLBOX_HEADER..)
                                .is_some_and(|d| d.iter().any(|&b| b != 0))
                        {
                            return fail("udes description is not blank".into());
                        }
                    }
                }
            }
            k if META_KEEP.contains(&k) => {}
            k => {
                return fail(format!(
                    "meta box {} is not allowed",
                    String::from_utf8_lossy(k)
                ));
            }
        }
    }
    for mdat in top.iter().filter(|b| &b.kind == b"mdat") {
        for (from, to) in gaps(&extents, mdat.body, mdat.end) {
            if let Some(i) = bytes[from..to].iter().position(|&b| b != 0) {
                return fail(format!("unreferenced data in mdat at offset {}", from + i));
            }
        }
    }
    Ok(())
}

/// The coded bytes of each item, by id (file-offset and idat extents), for comparing an
/// original with its stripped form.
pub fn item_bytes(
    bytes: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<BTreeMap<u32, Vec<u8>>, StripError> {
    let mut count = 0;
    let top = boxes(bytes, 0, bytes.len(), format, limits, &mut count)?;
    let meta = top
        .iter()
        .find(|b| &b.kind == b"meta")
        .ok_or_else(|| bad(format, "no meta box"))?;
    let children = boxes(
        bytes,
        meta.body + FULLBOX_HEADER,
        meta.end,
        format,
        limits,
        &mut count,
    )?;
    let iloc = children
        .iter()
        .find(|c| &c.kind == b"iloc")
        .ok_or_else(|| bad(format, "no iloc"))?;
    let idat = children
        .iter()
        .find(|c| &c.kind == b"idat")
        .map(|c| &bytes[c.body..c.end]);
    let mut out = BTreeMap::new();
    for loc in read_iloc(bytes, *iloc, format, limits, false)?.items {
        let source = match loc.method {
            0 => bytes,
            1 => idat.unwrap_or_default(),
            _ => continue,
        };
        let mut data = Vec::new();
        for (_, o, n) in loc.extents {
            let start = (loc.base + o) as usize;
            data.extend_from_slice(
                source
                    .get(start..start + n as usize)
                    .ok_or_else(|| bad(format, "extent out of range"))?,
            );
        }
        out.insert(loc.id, data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: `iloc` fields of width zero make extents cost no bytes, so their
    /// number must be bounded as a whole.
    #[test]
    fn zero_width_extents_are_bounded() {
        let mut iloc = vec![1, 0, 0, 0, 0, 0, 0, 2];
        for id in 1..=2u16 {
            iloc.extend_from_slice(&id.to_be_bytes());
            iloc.extend_from_slice(&[0, 0, 0, 0, 0xFF, 0xFF]);
        }
        let mut meta = vec![0, 0, 0, 0];
        push_box(&mut meta, b"iinf", &[0, 0, 0, 0, 0, 0]);
        push_box(&mut meta, b"iloc", &iloc);
        let mut file = Vec::new();
        push_box(&mut file, b"ftyp", b"heic\0\0\0\0mif1heic");
        push_box(&mut file, b"meta", &meta);
        let err = strip(&file, Format::Heif, &Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                StripError::Limit {
                    limit: "max_segments",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_image_sequence_is_refused_as_not_still() {
        let mut file = Vec::new();
        push_box(&mut file, b"ftyp", b"avis\0\0\0\0avismif1");
        push_box(&mut file, b"moov", &[]);
        let err = strip(&file, Format::Avif, &Limits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "HEIF/AVIF image sequences are not accepted: only still images are"
        );
    }

    /// Found by the HEIF round-trip property: an `iloc` field width of 9 overflowed a shift
    /// when the box was rewritten. Only 0, 4 and 8 are allowed.
    #[test]
    fn iloc_field_widths_other_than_0_4_8_are_refused() {
        let iloc = [0, 0, 0, 0, 0x94, 0x00, 0, 0];
        let mut meta = vec![0, 0, 0, 0];
        push_box(&mut meta, b"iinf", &[0, 0, 0, 0, 0, 0]);
        push_box(&mut meta, b"iloc", &iloc);
        let mut file = Vec::new();
        push_box(&mut file, b"ftyp", b"heic\0\0\0\0mif1heic");
        push_box(&mut file, b"meta", &meta);
        let err = strip(&file, Format::Heif, &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("iloc field sizes"), "{err}");
    }
}
