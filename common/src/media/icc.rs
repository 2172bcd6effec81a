//! ICC profiles: keep the colour data, blank what describes or identifies.
//!
//! Cleaning zeroes the header's date, device manufacturer and model, creator and profile ID
//! (an MD5 that would no longer match), and the contents of every tag that holds text, after
//! its 8-byte type header: tags of a text type (`desc`, `text`, `mluc`, `utf8`, `utf16`,
//! `zut8`, `dict`), whatever their signature (so vendor tags such as Apple's `dscm` too), and
//! the known text tags (descriptions, copyright, device names, viewing conditions, target,
//! metadata). The profile still parses and renders the same colours.

use super::{Limits, StripError, check_limit, read_u32};

/// Header byte ranges that are blanked.
const HEADER_BLANKS: [(usize, usize); 4] = [(24, 36), (48, 56), (80, 84), (84, 100)];
/// Tags whose contents are text.
const TEXT_TAGS: [&[u8; 4]; 9] = [
    b"desc", b"cprt", b"dmnd", b"dmdd", b"vued", b"scrd", b"targ", b"meta", b"dscm",
];
/// Tag types that hold text.
const TEXT_TYPES: [&[u8; 4]; 7] = [
    b"desc", b"text", b"mluc", b"utf8", b"ut16", b"zut8", b"dict",
];

fn is_text(profile: &[u8], sig: &[u8; 4], offset: usize) -> bool {
    let kind = profile.get(offset..offset + 4);
    TEXT_TAGS.contains(&sig) || TEXT_TYPES.iter().any(|t| kind == Some(&t[..]))
}
const HEADER_LEN: usize = 128;

fn tag_table(profile: &[u8], limits: &Limits) -> Result<Vec<([u8; 4], usize, usize)>, StripError> {
    let bad = |p: &str| StripError::Malformed {
        format: "ICC profile",
        problem: p.into(),
    };
    if profile.len() < HEADER_LEN + 4 || profile.get(36..40) != Some(b"acsp") {
        return Err(bad("no profile header"));
    }
    let count = read_u32(profile, HEADER_LEN, true).ok_or_else(|| bad("no tag count"))? as usize;
    check_limit("max_segments", count as u64, limits.max_segments as u64)?;
    let mut tags = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        let at = HEADER_LEN + 4 + i * 12;
        let sig: [u8; 4] = profile
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| bad("tag table runs past the end"))?;
        let (Some(offset), Some(size)) = (
            read_u32(profile, at + 4, true),
            read_u32(profile, at + 8, true),
        ) else {
            return Err(bad("tag table runs past the end"));
        };
        let (offset, size) = (offset as usize, size as usize);
        if offset
            .checked_add(size)
            .is_none_or(|end| end > profile.len())
        {
            return Err(bad("tag data runs past the end"));
        }
        tags.push((sig, offset, size));
    }
    Ok(tags)
}

/// Blank the identifying parts of `profile` in place; returns the names blanked
/// (`ICC:desc`, …).
///
/// # Errors
/// [`StripError::Malformed`] when it is not an ICC profile.
pub fn clean(profile: &mut [u8], limits: &Limits) -> Result<Vec<String>, StripError> {
    let tags = tag_table(profile, limits)?;
    let mut names = Vec::new();
    for (from, to) in HEADER_BLANKS {
        if profile[from..to].iter().any(|&b| b != 0) {
            profile[from..to].fill(0);
        }
    }
    for (sig, offset, size) in tags {
        if size > 8 && is_text(profile, &sig, offset) {
            profile[offset + 8..offset + size].fill(0);
            names.push(format!("ICC:{}", String::from_utf8_lossy(&sig)));
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Whether `profile` is clean as [`clean`] leaves it.
pub fn is_clean(profile: &[u8], limits: &Limits) -> bool {
    let Ok(tags) = tag_table(profile, limits) else {
        return false;
    };
    let header_blank = HEADER_BLANKS
        .iter()
        .all(|&(f, t)| profile[f..t].iter().all(|&b| b == 0));
    header_blank
        && tags
            .iter()
            .filter(|(sig, offset, size)| *size > 8 && is_text(profile, sig, *offset))
            .all(|&(_, offset, size)| profile[offset + 8..offset + size].iter().all(|&b| b == 0))
}

#[cfg(test)]
pub(crate) fn sample_profile() -> Vec<u8> {
    let mut p = vec![0u8; 128];
    p[36..40].copy_from_slice(b"acsp");
    p[24..36].copy_from_slice(b"DATEDATEDATE");
    p[48..56].copy_from_slice(b"MAKEMODL");
    p.extend_from_slice(&2u32.to_be_bytes());
    let table_end = 128 + 4 + 2 * 12;
    let desc = b"desc\0\0\0\0\0\0\0\x05Dr X";
    let wtpt = b"XYZ \0\0\0\0\0\0\xf6\xd6\0\x01\0\0\0\0\xd3\x2d";
    for (sig, off, len) in [
        (b"desc", table_end, desc.len()),
        (b"wtpt", table_end + desc.len(), wtpt.len()),
    ] {
        p.extend_from_slice(sig);
        p.extend_from_slice(&(off as u32).to_be_bytes());
        p.extend_from_slice(&(len as u32).to_be_bytes());
    }
    p.extend_from_slice(desc);
    p.extend_from_slice(wtpt);
    let len = p.len() as u32;
    p[..4].copy_from_slice(&len.to_be_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanks_text_and_header_ids_and_keeps_colour() {
        let mut p = sample_profile();
        let wtpt_before = p[p.len() - 20..].to_vec();
        assert!(!is_clean(&p, &Limits::default()));
        let names = clean(&mut p, &Limits::default()).unwrap();
        assert_eq!(names, vec!["ICC:desc".to_owned()]);
        assert!(is_clean(&p, &Limits::default()));
        assert_eq!(
            &p[p.len() - 20..],
            &wtpt_before[..],
            "colour tags untouched"
        );
        assert!(!String::from_utf8_lossy(&p).contains("Dr X"));
    }

    #[test]
    fn rejects_broken_tables() {
        let mut p = sample_profile();
        p[128..132].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(clean(&mut p, &Limits::default()).is_err());
        assert!(clean(&mut [0u8; 10], &Limits::default()).is_err());
    }
}
