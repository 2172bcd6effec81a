//! EXIF (a TIFF structure): a bounded walk that names every tag and finds Orientation and
//! GPS, and the one EXIF we ever write: IFD0 holding only Orientation.
//!
//! The walk follows IFD0, IFD1 (the thumbnail), the Exif, GPS and Interop IFDs, each once
//! (a visited set stops cycles), at most `max_depth` IFDs and `max_ifd_entries` entries each.
//! It reads no value but Orientation's.

use std::collections::BTreeSet;

use ::exif::{Context, Tag};

use super::{Limits, StripError, check_limit, read_u16, read_u32};

const ORIENTATION: u16 = 0x0112;
const EXIF_IFD: u16 = 0x8769;
const GPS_IFD: u16 = 0x8825;
const INTEROP_IFD: u16 = 0xA005;
const MAKER_NOTE: u16 = 0x927C;
const SHORT: u16 = 3;

/// What the EXIF of an original held, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExifSummary {
    pub orientation: Option<u16>,
    pub gps: bool,
    pub names: Vec<String>,
}

impl ExifSummary {
    /// Merge another EXIF block's findings (a file may carry more than one).
    pub fn absorb(&mut self, other: ExifSummary) {
        self.orientation = self.orientation.or(other.orientation);
        self.gps |= other.gps;
        self.names.extend(other.names);
    }
}

/// Walk a TIFF-structured EXIF block (starting at the byte-order mark).
///
/// A block too broken to walk is reported as `EXIF (unreadable)` with GPS assumed present
/// (it cannot be ruled out); the block is removed either way.
///
/// # Errors
/// [`StripError::Limit`] when an IFD has more entries than `max_ifd_entries`.
pub fn summarize(tiff: &[u8], limits: &Limits) -> Result<ExifSummary, StripError> {
    let big = match tiff.get(..4) {
        Some(b"MM\0*") => true,
        Some(b"II*\0") => false,
        _ => return Ok(unreadable()),
    };
    let Some(ifd0) = read_u32(tiff, 4, big) else {
        return Ok(unreadable());
    };
    walk(tiff, big, vec![(ifd0, Context::Tiff, "IFD0")], limits)
}

/// Name the tags of the Exif and GPS IFDs of a classic TIFF file (whose own IFDs the TIFF
/// stripper reads itself).
///
/// # Errors
/// As [`summarize`].
pub fn summarize_sub_ifds(
    tiff: &[u8],
    big: bool,
    exif: Option<u32>,
    gps: Option<u32>,
    limits: &Limits,
) -> Result<ExifSummary, StripError> {
    let mut starts = Vec::new();
    starts.extend(exif.map(|o| (o, Context::Exif, "Exif")));
    starts.extend(gps.map(|o| (o, Context::Gps, "GPS")));
    let mut out = walk(tiff, big, starts, limits)?;
    out.gps |= gps.is_some();
    Ok(out)
}

fn walk(
    tiff: &[u8],
    big: bool,
    starts: Vec<(u32, Context, &'static str)>,
    limits: &Limits,
) -> Result<ExifSummary, StripError> {
    let mut out = ExifSummary::default();
    let mut names = BTreeSet::new();
    let mut visited = BTreeSet::new();
    let mut queue = starts;
    let mut broken = false;
    while let Some((offset, context, which)) = queue.pop() {
        if offset == 0 || !visited.insert(offset) {
            continue;
        }
        if visited.len() > limits.max_depth {
            broken = true;
            break;
        }
        let at = offset as usize;
        let Some(count) = read_u16(tiff, at, big) else {
            broken = true;
            continue;
        };
        check_limit(
            "max_ifd_entries",
            count.into(),
            limits.max_ifd_entries as u64,
        )?;
        for i in 0..usize::from(count) {
            let entry = at + 2 + i * 12;
            let (Some(tag), Some(kind), Some(value)) = (
                read_u16(tiff, entry, big),
                read_u16(tiff, entry + 2, big),
                read_u32(tiff, entry + 8, big),
            ) else {
                broken = true;
                break;
            };
            match (context, tag) {
                (Context::Tiff, EXIF_IFD) => queue.push((value, Context::Exif, "Exif")),
                (Context::Tiff, GPS_IFD) => {
                    out.gps = true;
                    queue.push((value, Context::Gps, "GPS"));
                }
                (Context::Exif, INTEROP_IFD) => queue.push((value, Context::Interop, "Interop")),
                (Context::Exif, MAKER_NOTE) => {
                    names.insert("MakerNotes".to_owned());
                }
                (Context::Tiff, ORIENTATION) if which == "IFD0" && kind == SHORT => {
                    let o = read_u16(tiff, entry + 8, big).unwrap_or(0);
                    if (1..=8).contains(&o) {
                        out.orientation = Some(o);
                    }
                }
                _ => {}
            }
            if context == Context::Gps {
                out.gps = true;
            }
            let name = if which == "IFD1" {
                "EXIF:Thumbnail".to_owned()
            } else {
                format!("EXIF:{}", Tag(context, tag))
            };
            names.insert(name);
        }
        if which == "IFD0" {
            let next = at + 2 + usize::from(count) * 12;
            if let Some(ifd1) = read_u32(tiff, next, big) {
                queue.push((ifd1, Context::Tiff, "IFD1"));
            }
        }
    }
    if broken {
        names.insert("EXIF (partly unreadable)".to_owned());
        out.gps = true;
    }
    out.names = names.into_iter().collect();
    Ok(out)
}

fn unreadable() -> ExifSummary {
    ExifSummary {
        orientation: None,
        gps: true,
        names: vec!["EXIF (unreadable)".into()],
    }
}

/// The only EXIF Asepsis writes: big-endian TIFF, IFD0 with one entry (Orientation), no next
/// IFD. 26 bytes.
pub fn minimal(orientation: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(26);
    out.extend_from_slice(b"MM\0*");
    out.extend_from_slice(&8u32.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ORIENTATION.to_be_bytes());
    out.extend_from_slice(&SHORT.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&orientation.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

/// Whether `tiff` is exactly an EXIF [`minimal`] would write (any byte order accepted on
/// read would be a second parser; we accept only our own form).
pub fn is_minimal(tiff: &[u8]) -> bool {
    tiff.len() == 26 && (1..=8).any(|o| minimal(o) == tiff)
}

/// Orientation `1` is the default and needs no EXIF at all.
pub fn needs_writing(orientation: Option<u16>) -> Option<u16> {
    orientation.filter(|&o| o != 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ifd(big: bool, entries: &[(u16, u16, u32, u32)], next: u32) -> Vec<u8> {
        let mut out = if big {
            b"MM\0*".to_vec()
        } else {
            b"II*\0".to_vec()
        };
        let w16 = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let w32 = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        out.extend_from_slice(&w32(8));
        out.extend_from_slice(&w16(entries.len() as u16));
        for &(tag, kind, count, value) in entries {
            out.extend_from_slice(&w16(tag));
            out.extend_from_slice(&w16(kind));
            out.extend_from_slice(&w32(count));
            if kind == SHORT && count == 1 {
                out.extend_from_slice(&w16(value as u16));
                out.extend_from_slice(&[0, 0]);
            } else {
                out.extend_from_slice(&w32(value));
            }
        }
        out.extend_from_slice(&w32(next));
        out
    }

    #[test]
    fn names_tags_finds_orientation_and_gps() {
        // IFD0: Make, Orientation=6, GPS pointer back to IFD0 (a cycle).
        let t = ifd(
            false,
            &[
                (0x010F, 2, 4, 0),
                (ORIENTATION, SHORT, 1, 6),
                (GPS_IFD, 4, 1, 8),
            ],
            0,
        );
        let s = summarize(&t, &Limits::default()).unwrap();
        assert_eq!(s.orientation, Some(6));
        assert!(s.gps);
        assert!(s.names.contains(&"EXIF:Make".to_owned()), "{:?}", s.names);
        assert!(s.names.contains(&"EXIF:Orientation".to_owned()));
    }

    #[test]
    fn cycles_end_and_limits_are_named() {
        let t = ifd(true, &[(0x010F, 2, 4, 0)], 8); // IFD1 points back to IFD0
        assert!(summarize(&t, &Limits::default()).is_ok());
        let limits = Limits {
            max_ifd_entries: 0,
            ..Limits::default()
        };
        let err = summarize(&t, &limits).unwrap_err();
        assert!(matches!(
            err,
            StripError::Limit {
                limit: "max_ifd_entries",
                ..
            }
        ));
        assert!(summarize(b"garbage", &Limits::default()).unwrap().gps);
    }

    #[test]
    fn minimal_exif_round_trips() {
        let m = minimal(6);
        assert!(is_minimal(&m));
        let s = summarize(&m, &Limits::default()).unwrap();
        assert_eq!((s.orientation, s.gps), (Some(6), false));
        assert_eq!(s.names, vec!["EXIF:Orientation".to_owned()]);
        assert!(!is_minimal(&ifd(
            true,
            &[(ORIENTATION, SHORT, 1, 6), (0x010F, 2, 4, 0)],
            0
        )));
    }
}
