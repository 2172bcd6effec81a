//! Lossless, allowlist-based metadata stripping, verified.
//!
//! [`strip`] takes an upload's bytes, picks the container by its magic bytes alone
//! ([`sniff`]: never a file name or a client's content type), and rewrites it keeping only
//! what rendering needs: the coded pixels (never re-encoded), dimensions, the ICC profile with
//! its text blanked, and the orientation, written back as a fresh EXIF holding only
//! Orientation. Everything else is removed and named in the [`Report`] (by kind and tag name,
//! never by value). The output is then re-read by an independent walk ([`verify`]) and
//! refused if anything outside the allowlist is still there: the stage fails closed.
//!
//! Every parser here reads hostile bytes: lengths are checked before they are used, sizes
//! against [`Limits`] before anything large is allocated, and loops are bounded. Pure code:
//! bytes in, typed results out, no I/O, no logging.

mod exif;
mod heif;
mod icc;
mod jpeg;
pub(crate) use jpeg::MAX_SCANS as MAX_JPEG_SCANS;
mod png;
mod tiff;
mod webp;

use serde::{Deserialize, Serialize};

/// A container this module recognises by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Tiff,
    Heif,
    Avif,
    Dicom,
}

impl Format {
    pub const ALL: [Format; 7] = [
        Format::Jpeg,
        Format::Png,
        Format::Webp,
        Format::Tiff,
        Format::Heif,
        Format::Avif,
        Format::Dicom,
    ];

    /// The format [`Format::name`] names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Tiff => "tiff",
            Format::Heif => "heif",
            Format::Avif => "avif",
            Format::Dicom => "dicom",
        }
    }

    /// The usual file-name extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Tiff => "tif",
            Format::Heif => "heic",
            Format::Avif => "avif",
            Format::Dicom => "dcm",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Tiff => "image/tiff",
            Format::Heif => "image/heif",
            Format::Avif => "image/avif",
            Format::Dicom => "application/dicom",
        }
    }
}

/// Pick the container from the first bytes (at most [`SNIFF_LEN`] are looked at).
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    let at = |offset: usize, magic: &[u8]| bytes.get(offset..offset + magic.len()) == Some(magic);
    // DICOM first: its 128-byte preamble may itself look like a TIFF header.
    if at(128, b"DICM") || bare_dicom(bytes) {
        Some(Format::Dicom)
    } else if at(0, &[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if at(0, b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Some(Format::Webp)
    } else if at(0, b"II*\0") || at(0, b"MM\0*") || at(0, b"II+\0") || at(0, b"MM\0+") {
        Some(Format::Tiff)
    } else if at(4, b"ftyp") {
        let brand = bytes.get(8..12)?;
        match brand {
            b"avif" | b"avis" => Some(Format::Avif),
            b"heic" | b"heix" | b"hevc" | b"heim" | b"heis" | b"mif1" | b"msf1" => {
                Some(Format::Heif)
            }
            _ => None,
        }
    } else {
        None
    }
}

/// A DICOM data set without the Part 10 preamble: it starts with an element of group 0002
/// (file meta) or 0008, explicit (a VR follows the tag) or implicit (a short length does).
fn bare_dicom(bytes: &[u8]) -> bool {
    let group = matches!(bytes.get(0..2), Some([0x02 | 0x08, 0x00]));
    let element_low = bytes.get(3) == Some(&0);
    let explicit = bytes
        .get(4..6)
        .is_some_and(|vr| vr.iter().all(u8::is_ascii_uppercase));
    let implicit = read_u32(bytes, 4, false).is_some_and(|len| len < 1024);
    group && element_low && (explicit || implicit)
}

/// How many leading bytes [`sniff`] needs.
pub const SNIFF_LEN: usize = 132;

/// Bounds on what one file may make the parsers do; checked before allocating.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_input_bytes: u64,
    pub max_width: u32,
    pub max_height: u32,
    pub max_pixels: u64,
    /// Largest metadata payload kept or rebuilt (an assembled ICC profile, say).
    pub max_metadata_bytes: usize,
    /// Segments, chunks or boxes in one file.
    pub max_segments: usize,
    pub max_ifd_entries: usize,
    /// IFDs, nested boxes or sub-chunks followed from one another.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: 256 * 1024 * 1024,
            max_width: 65_535,
            max_height: 65_535,
            max_pixels: 200_000_000,
            max_metadata_bytes: 16 * 1024 * 1024,
            max_segments: 100_000,
            max_ifd_entries: 4096,
            max_depth: 16,
        }
    }
}

/// What stripping did, with names and counts only: never a metadata value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub format: Format,
    /// Each removed item by kind and name, e.g. `EXIF:GPSLatitude`, `XMP`, `PNG:tEXt:Author`.
    pub removed: Vec<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The original carried GPS data (or EXIF too broken to rule it out).
    pub gps_in_original: bool,
    /// EXIF Orientation (1–8) carried over, if any.
    pub orientation: Option<u16>,
}

/// A stripped file and what was removed.
#[derive(Debug, Clone)]
pub struct Stripped {
    pub bytes: Vec<u8>,
    pub report: Report,
    /// How long the re-read of the output took (the rest of `strip` is the rewrite), for the
    /// worker's stage metrics.
    pub verify_time: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StripError {
    #[error("unknown format: not a JPEG, PNG, WebP, TIFF, HEIF, AVIF or DICOM file")]
    UnknownFormat,
    #[error("{0} files are not accepted yet")]
    Unsupported(&'static str),
    #[error("{0} are not accepted: only still images are")]
    NotStill(&'static str),
    #[error("limit {limit} exceeded: {actual} > {max}")]
    Limit {
        limit: &'static str,
        actual: u64,
        max: u64,
    },
    #[error("malformed {format}: {problem}")]
    Malformed {
        format: &'static str,
        problem: String,
    },
    #[error("verification failed: {0}")]
    Verify(String),
}

impl StripError {
    /// The kind of failure, for metrics: `format`, `limit`, `malformed` or `verify`.
    pub fn class(&self) -> &'static str {
        match self {
            StripError::UnknownFormat | StripError::Unsupported(_) | StripError::NotStill(_) => {
                "format"
            }
            StripError::Limit { .. } => "limit",
            StripError::Malformed { .. } => "malformed",
            StripError::Verify(_) => "verify",
        }
    }

    /// Any failure to re-read a stripped output is a verification failure (fail closed).
    pub(crate) fn into_verify(self) -> Self {
        match self {
            e @ StripError::Verify(_) => e,
            e => StripError::Verify(e.to_string()),
        }
    }

    pub(crate) fn malformed(format: Format, problem: impl Into<String>) -> Self {
        Self::Malformed {
            format: format.name(),
            problem: problem.into(),
        }
    }
}

pub(crate) fn check_limit(limit: &'static str, actual: u64, max: u64) -> Result<(), StripError> {
    if actual > max {
        return Err(StripError::Limit { limit, actual, max });
    }
    Ok(())
}

pub(crate) fn check_dimensions(width: u32, height: u32, limits: &Limits) -> Result<(), StripError> {
    check_limit("max_width", width.into(), limits.max_width.into())?;
    check_limit("max_height", height.into(), limits.max_height.into())?;
    check_limit(
        "max_pixels",
        u64::from(width) * u64::from(height),
        limits.max_pixels,
    )
}

/// Strip `bytes`, then verify the result.
///
/// # Errors
/// [`StripError`] naming why the file is refused: unknown or unsupported format, a limit
/// hit, a container that does not parse, or output that failed verification.
pub fn strip(bytes: &[u8], limits: &Limits) -> Result<Stripped, StripError> {
    check_limit(
        "max_input_bytes",
        bytes.len() as u64,
        limits.max_input_bytes,
    )?;
    let format = sniff(bytes).ok_or(StripError::UnknownFormat)?;
    strip_as(format, bytes, limits)
}

/// [`strip`] for a container already identified (fuzzing drives each parser this way).
///
/// # Errors
/// As [`strip`].
pub fn strip_as(format: Format, bytes: &[u8], limits: &Limits) -> Result<Stripped, StripError> {
    check_limit(
        "max_input_bytes",
        bytes.len() as u64,
        limits.max_input_bytes,
    )?;
    let (out, mut removed, exif) = match format {
        Format::Jpeg => jpeg::strip(bytes, limits)?,
        Format::Png => png::strip(bytes, limits)?,
        Format::Webp => webp::strip(bytes, limits)?,
        Format::Tiff => tiff::strip(bytes, limits)?,
        Format::Heif | Format::Avif => heif::strip(bytes, format, limits)?,
        Format::Dicom => return Err(StripError::Unsupported("DICOM")),
    };
    // Every container's report: what it dropped, and the EXIF tags that went with it.
    removed.extend(exif.names.iter().cloned());
    removed.sort();
    removed.dedup();
    let verifying = std::time::Instant::now();
    verify(&out, limits)?;
    Ok(Stripped {
        verify_time: verifying.elapsed(),
        report: Report {
            format,
            removed,
            bytes_in: bytes.len() as u64,
            bytes_out: out.len() as u64,
            gps_in_original: exif.gps,
            orientation: exif.orientation,
        },
        bytes: out,
    })
}

/// Re-read `bytes` independently of the stripper and fail unless only allowlisted structure
/// is left.
///
/// # Errors
/// [`StripError::Verify`] naming the first thing that should not be there.
pub fn verify(bytes: &[u8], limits: &Limits) -> Result<(), StripError> {
    match sniff(bytes) {
        Some(Format::Jpeg) => jpeg::verify(bytes, limits),
        Some(Format::Png) => png::verify(bytes, limits),
        Some(Format::Webp) => webp::verify(bytes, limits),
        Some(Format::Tiff) => tiff::verify(bytes, limits),
        Some(f @ (Format::Heif | Format::Avif)) => heif::verify(bytes, f, limits),
        other => Err(StripError::Verify(format!("cannot verify {other:?}"))),
    }
}

/// The coded bytes of each item of a HEIF/AVIF file, by item id (to compare an original with
/// its stripped form: the pixels' coded data must not change).
///
/// # Errors
/// [`StripError::Malformed`] when the file does not parse.
pub fn heif_item_bytes(
    bytes: &[u8],
    limits: &Limits,
) -> Result<std::collections::BTreeMap<u32, Vec<u8>>, StripError> {
    let format = sniff(bytes)
        .filter(|f| matches!(f, Format::Heif | Format::Avif))
        .ok_or(StripError::UnknownFormat)?;
    heif::item_bytes(bytes, format, limits)
}

/// Read a big-endian or little-endian integer at `at`, if in bounds.
pub(crate) fn read_u16(bytes: &[u8], at: usize, big: bool) -> Option<u16> {
    let b: [u8; 2] = bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if big {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    })
}

pub(crate) fn read_u32(bytes: &[u8], at: usize, big: bool) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_magic_only() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest"), Some(Format::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some(Format::Png));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::Webp));
        assert_eq!(sniff(b"II*\0\x08\0\0\0"), Some(Format::Tiff));
        assert_eq!(sniff(b"\0\0\0\x18ftypheic"), Some(Format::Heif));
        assert_eq!(sniff(b"\0\0\0\x18ftypavif"), Some(Format::Avif));
        assert_eq!(
            sniff(b"\x08\0\x05\0CS\x0a\0ISO_IR 100"),
            Some(Format::Dicom)
        );
        assert_eq!(sniff(b"\x08\0\x16\0\x1a\0\0\0"), Some(Format::Dicom));
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b""), None);
        assert!(matches!(
            strip(b"%PDF-1.7", &Limits::default()),
            Err(StripError::UnknownFormat)
        ));
    }

    #[test]
    fn input_size_is_limited_before_parsing() {
        let limits = Limits {
            max_input_bytes: 4,
            ..Limits::default()
        };
        let err = strip(b"\xFF\xD8\xFF\xE0\0", &limits).unwrap_err();
        assert!(
            matches!(
                err,
                StripError::Limit {
                    limit: "max_input_bytes",
                    ..
                }
            ),
            "{err}"
        );
    }
}
