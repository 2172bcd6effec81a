//! libheif as the independent reader of HEIF/AVIF outputs: a real decoder, not our parser.

#![allow(dead_code)]

use libheif_rs::{ColorSpace, HeifContext, LibHeif, RgbChroma};

/// The primary image decoded by libheif to interleaved 8-bit RGB(A), rows packed:
/// (width, height, pixels). The same decoder and options for an original and its output.
pub fn heif_pixels(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let context = HeifContext::read_from_bytes(bytes).map_err(|e| e.message)?;
    let handle = context.primary_image_handle().map_err(|e| e.message)?;
    let (chroma, channels) = if handle.has_alpha_channel() {
        (RgbChroma::Rgba, 4)
    } else {
        (RgbChroma::Rgb, 3)
    };
    let image = LibHeif::new()
        .decode(&handle, ColorSpace::Rgb(chroma), None)
        .map_err(|e| e.message)?;
    let plane = image.planes().interleaved.ok_or("no interleaved plane")?;
    let row = plane.width as usize * channels;
    let mut pixels = Vec::with_capacity(row * plane.height as usize);
    for y in 0..plane.height as usize {
        let start = y * plane.stride;
        pixels.extend_from_slice(plane.data.get(start..start + row).ok_or("short plane")?);
    }
    Ok((plane.width, plane.height, pixels))
}

/// libheif can read the file's structure and find its primary image (no decode).
pub fn heif_parses(bytes: &[u8]) -> Result<(), String> {
    let context = HeifContext::read_from_bytes(bytes).map_err(|e| e.message)?;
    context.primary_image_handle().map_err(|e| e.message)?;
    Ok(())
}
