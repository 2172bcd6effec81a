//! An 8-bit picture of a DICOM image's first frame, for the face scan: uncompressed 8- and
//! 16-bit greyscale (rescaled, then windowed as the header says, or over the frame's range)
//! and 8-bit RGB. Other pixel encodings are said to be not previewed, with the reason.

use image::{DynamicImage, GrayImage, RgbImage};

use super::parse::{Element, PIXEL_DATA, Syntax, Value, bytes_of, text_of};
use crate::media::{Limits, check_dimensions};

fn first_number(set: &[Element<'_>], tag: u32) -> Option<f64> {
    text_of(set, tag)?.split('\\').next()?.trim().parse().ok()
}

/// The first frame of `set` as an 8-bit image, or why there is none.
pub(crate) fn preview(
    set: &[Element<'_>],
    syntax: Syntax,
    transfer_syntax: &str,
    limits: &Limits,
) -> Result<DynamicImage, String> {
    let us = |tag| {
        bytes_of(set, tag)
            .and_then(|b| crate::media::read_u16(b, 0, syntax.big()))
            .ok_or_else(|| format!("no {}", super::parse::tag_name(tag)))
    };
    let pixels = match set
        .binary_search_by_key(&PIXEL_DATA, |e| e.tag)
        .map(|i| &set[i].value)
    {
        Ok(Value::Bytes(bytes)) => bytes,
        Ok(Value::Encapsulated(_)) => {
            return Err(format!(
                "compressed DICOM pixel data (transfer syntax {transfer_syntax}) is not previewed"
            ));
        }
        _ => return Err("no pixel data to preview".into()),
    };
    let (rows, columns) = (us(0x0028_0010)?, us(0x0028_0011)?);
    let (samples, bits) = (us(0x0028_0002)?, us(0x0028_0100)?);
    let stored = us(0x0028_0101).unwrap_or(bits);
    let signed = us(0x0028_0103).unwrap_or(0) == 1;
    let photometric = text_of(set, 0x0028_0004).unwrap_or("");
    check_dimensions(columns.into(), rows.into(), limits).map_err(|e| e.to_string())?;
    let count = usize::from(rows) * usize::from(columns);
    let frame = count * usize::from(samples) * usize::from(bits / 8);
    if count == 0 || pixels.len() < frame {
        return Err("pixel data shorter than its first frame".into());
    }
    let (w, h) = (u32::from(columns), u32::from(rows));
    match (samples, bits, photometric) {
        (1, 8 | 16, "MONOCHROME1" | "MONOCHROME2") => {
            let values: Vec<f64> = (0..count)
                .map(|i| sample(pixels, i, bits, stored, signed, syntax.big()))
                .collect();
            let slope = first_number(set, 0x0028_1053).unwrap_or(1.0);
            let intercept = first_number(set, 0x0028_1052).unwrap_or(0.0);
            let values: Vec<f64> = values.iter().map(|v| v * slope + intercept).collect();
            let (center, width) = match (
                first_number(set, 0x0028_1050),
                first_number(set, 0x0028_1051),
            ) {
                (Some(c), Some(w)) if w > 1.0 => (c, w),
                _ => {
                    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    ((lo + hi) / 2.0 + 0.5, (hi - lo + 1.0).max(2.0))
                }
            };
            let invert = photometric == "MONOCHROME1";
            let grey: Vec<u8> = values
                .iter()
                .map(|v| {
                    let y = ((v - (center - 0.5)) / (width - 1.0) + 0.5).clamp(0.0, 1.0);
                    let y = (y * 255.0).round() as u8;
                    if invert { 255 - y } else { y }
                })
                .collect();
            GrayImage::from_raw(w, h, grey)
                .map(DynamicImage::ImageLuma8)
                .ok_or_else(|| "pixel buffer does not fit its size".into())
        }
        (3, 8, "RGB") => {
            let planar = us(0x0028_0006).unwrap_or(0) == 1;
            let rgb: Vec<u8> = if planar {
                (0..count)
                    .flat_map(|i| [pixels[i], pixels[count + i], pixels[2 * count + i]])
                    .collect()
            } else {
                pixels[..frame].to_vec()
            };
            RgbImage::from_raw(w, h, rgb)
                .map(DynamicImage::ImageRgb8)
                .ok_or_else(|| "pixel buffer does not fit its size".into())
        }
        _ => {
            // Named only when it is one of the standard's terms: the value is the file's.
            let known = [
                "MONOCHROME1",
                "MONOCHROME2",
                "PALETTE COLOR",
                "RGB",
                "YBR_FULL",
                "YBR_FULL_422",
                "YBR_PARTIAL_420",
                "YBR_ICT",
                "YBR_RCT",
            ];
            let photometric = if known.contains(&photometric) {
                photometric
            } else {
                "an unrecognised photometric interpretation"
            };
            Err(format!(
                "DICOM pixels of {samples} sample(s), {bits} bits, {photometric} are not previewed"
            ))
        }
    }
}

/// Sample `i` of a greyscale frame, its stored bits only, sign-extended when signed.
fn sample(pixels: &[u8], i: usize, bits: u16, stored: u16, signed: bool, big: bool) -> f64 {
    let raw = if bits == 8 {
        u32::from(pixels[i])
    } else {
        u32::from(crate::media::read_u16(pixels, 2 * i, big).unwrap_or(0))
    };
    let stored = u32::from(stored.clamp(1, bits));
    let value = raw & ((1u32 << stored) - 1);
    if signed && value >> (stored - 1) == 1 {
        f64::from(value as i32 - (1i32 << stored))
    } else {
        f64::from(value)
    }
}
