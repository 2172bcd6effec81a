//! Face scanning: does an image show a person's face? And hiding the faces it found.
//!
//! [`YuNet`] runs the YuNet detector (OpenCV Zoo `face_detection_yunet_2023mar.onnx`, fixed
//! 1×3×640×640 input) in pure Rust with tract. The model's bytes are passed in (the binary
//! embeds them; reading an override file is the caller's business), pinned by SHA-256, checked
//! at load, and the plan is built once. A scan decodes the image under limits, turns it upright by its
//! EXIF Orientation, letterboxes the whole image into the network (so a close-up that fills
//! the frame is seen), and for large images also looks at 640×640 tiles of a 2× larger copy
//! (so small faces in a group are seen); detections are merged by non-maximum suppression.
//! An image that cannot be decoded, or a missing or wrong model, is `not_scanned` with a
//! reason, never `none`.
//!
//! [`Detector::redact`] pixelates or blurs each face box (grown by a margin) on decoded pixels and
//! re-encodes: the one place pixels change. Results carry boxes and scores, never pixels;
//! nothing here logs.

use std::io::Cursor;

use image::{DynamicImage, GenericImageView, ImageDecoder, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

/// Whether an image could identify a person by their face.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A face at or above the high threshold.
    Identifiable,
    /// Only faces between the low and the high threshold.
    Uncertain,
    /// Looked, and found no face.
    None,
    /// Could not look (no model, an image it cannot decode).
    NotScanned,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Identifiable => "identifiable",
            Verdict::Uncertain => "uncertain",
            Verdict::None => "none",
            Verdict::NotScanned => "not_scanned",
        }
    }
}

/// One face found: its box in upright image pixels and the detector's score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Face {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scan {
    pub verdict: Verdict,
    /// Faces at or above the low threshold, best first.
    pub faces: Vec<Face>,
    /// SHA-256 of the model that looked; empty when none did.
    pub model_sha256: String,
    /// Why the image was not scanned.
    pub reason: Option<String>,
}

impl Scan {
    pub fn not_scanned(reason: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::NotScanned,
            faces: Vec::new(),
            model_sha256: String::new(),
            reason: Some(reason.into()),
        }
    }
}

/// A face detector. Scanning and redacting work on an image decoded once ([`Detector::decode`]);
/// [`Detector::scan`] and [`Detector::redact`] do the decoding themselves.
pub trait Detector: Send + Sync {
    /// `Err(reason)` when every scan would be `not_scanned` (for `/readyz`).
    ///
    /// # Errors
    /// The reason the detector cannot work.
    fn ready(&self) -> Result<(), String>;

    /// Decode an image (its bytes as uploaded) upright, under the detector's limits.
    ///
    /// # Errors
    /// Why it cannot be scanned: no model, a format or file it cannot decode, a limit.
    fn decode(&self, image: &[u8]) -> Result<DynamicImage, String>;

    /// Scan a decoded, upright image.
    fn scan_decoded(&self, image: &DynamicImage) -> Scan;

    /// Hide every face found in `image` (decoded from `original`) and re-encode it in
    /// `original`'s format (see [`Redacted`]).
    ///
    /// # Errors
    /// Why it could not (no model, an image it cannot encode).
    fn redact_decoded(&self, original: &[u8], image: DynamicImage) -> Result<Redacted, String>;

    /// Scan an image's bytes (the detector reads its orientation itself).
    fn scan(&self, image: &[u8]) -> Scan {
        match self.decode(image) {
            Ok(decoded) => self.scan_decoded(&decoded),
            Err(why) => Scan::not_scanned(why),
        }
    }

    /// Hide every face found in an image's bytes and re-encode.
    ///
    /// # Errors
    /// Why it could not (no model, an image it cannot decode or encode).
    fn redact(&self, image: &[u8]) -> Result<Redacted, String> {
        let decoded = self.decode(image)?;
        self.redact_decoded(image, decoded)
    }
}

/// An image with its faces hidden.
#[derive(Debug, Clone)]
pub struct Redacted {
    pub bytes: Vec<u8>,
    /// JPEG, PNG, WebP and TIFF keep their format; HEIF and AVIF become JPEG.
    pub format: crate::media::Format,
    pub faces: Vec<Face>,
}

/// The detector when no model could be loaded: every image is `not_scanned`, with the reason.
/// It still decodes (under the default limits), so that the perceptual hash is computed.
pub struct Unavailable(pub String);

impl Detector for Unavailable {
    fn ready(&self) -> Result<(), String> {
        Err(self.0.clone())
    }

    fn decode(&self, image: &[u8]) -> Result<DynamicImage, String> {
        decode_upright(image, &Settings::default()).map_err(|e| e.to_string())
    }

    fn scan_decoded(&self, _image: &DynamicImage) -> Scan {
        Scan::not_scanned(self.0.clone())
    }

    fn redact_decoded(&self, _original: &[u8], _image: DynamicImage) -> Result<Redacted, String> {
        Err(self.0.clone())
    }
}

/// Detector settings (`[faces]` in the configuration; the defaults are those of
/// `config/defaults.toml`, which a config test keeps equal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// A model file to use instead of the one the binary embeds (read by the binary, never
    /// here); `None`: the embedded model.
    #[serde(default)]
    pub model_path: Option<std::path::PathBuf>,
    /// Its pinned SHA-256 (hex).
    pub model_sha256: String,
    /// A face scoring at least this makes the image `identifiable`.
    pub high_threshold: f32,
    /// A face scoring at least this (and below `high`) makes it `uncertain`.
    pub low_threshold: f32,
    /// Images whose longer side exceeds this are also scanned in tiles at 2× the letterbox
    /// resolution (0: never).
    pub tile_above_px: u32,
    /// Decoding limits.
    pub max_pixels: u64,
    pub max_decode_bytes: u64,
    pub redaction: Redaction,
    /// Each face box is grown by this fraction of its size on every side before redaction.
    pub redaction_margin: f32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model_path: None,
            model_sha256: "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4".into(),
            high_threshold: 0.8,
            low_threshold: 0.5,
            tile_above_px: 1280,
            max_pixels: 100_000_000,
            max_decode_bytes: 1 << 30,
            redaction: Redaction::Pixelate,
            redaction_margin: 0.25,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Redaction {
    Pixelate,
    Blur,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FaceError {
    #[error("face model: {0}")]
    Model(String),
    #[error("cannot decode the image: {0}")]
    Decode(String),
    #[error("the image is larger than the decode limit ({0})")]
    TooLarge(&'static str),
    #[error("cannot re-encode the redacted image: {0}")]
    Encode(String),
    #[error("the detector failed: {0}")]
    Inference(String),
}

const SIDE: usize = 640;
const STRIDES: [usize; 3] = [8, 16, 32];
const NMS_IOU: f32 = 0.3;
const TILE_OVERLAP: usize = 96;

type Plan = TypedRunnableModel;

/// YuNet, loaded once and shared.
pub struct YuNet {
    plan: std::sync::Arc<Plan>,
    /// For each stride: indexes of the cls, obj and bbox outputs.
    outputs: [[usize; 3]; 3],
    sha256: String,
    settings: Settings,
}

impl YuNet {
    /// Check the model's bytes against the pinned hash, and build its plan.
    ///
    /// # Errors
    /// [`FaceError::Model`] when its hash is not the pinned one, or it is not the YuNet graph
    /// expected.
    pub fn from_model(bytes: &[u8], settings: Settings) -> Result<Self, FaceError> {
        let err = FaceError::Model;
        let sha256 = crate::sha256_hex(bytes);
        if !sha256.eq_ignore_ascii_case(settings.model_sha256.trim()) {
            return Err(err(format!(
                "SHA-256 is {sha256}, not the pinned {}",
                settings.model_sha256
            )));
        }
        let plan = tract_onnx::onnx()
            .model_for_read(&mut Cursor::new(bytes))
            .and_then(|m| m.with_input_fact(0, f32::fact([1, 3, SIDE, SIDE]).into()))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| err(format!("not a loadable ONNX model: {e}")))?;
        let model = plan.model();
        let label = |i: usize| {
            model
                .outputs
                .get(i)
                .and_then(|o| model.outlet_label(*o))
                .unwrap_or_default()
                .to_owned()
        };
        let labels: Vec<String> = (0..model.outputs.len()).map(label).collect();
        let find = |name: String| {
            labels
                .iter()
                .position(|l| *l == name)
                .ok_or_else(|| err(format!("output {name} missing: not YuNet")))
        };
        let mut outputs = [[0; 3]; 3];
        for (i, stride) in STRIDES.iter().enumerate() {
            outputs[i] = [
                find(format!("cls_{stride}"))?,
                find(format!("obj_{stride}"))?,
                find(format!("bbox_{stride}"))?,
            ];
        }
        Ok(Self {
            plan,
            outputs,
            sha256,
            settings,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Run the network on one 640×640 BGR canvas; faces in canvas pixels at or above `min`.
    fn detect(&self, canvas: &RgbImage, min: f32) -> Result<Vec<Face>, FaceError> {
        let mut input = vec![0f32; 3 * SIDE * SIDE];
        for (x, y, p) in canvas.enumerate_pixels() {
            let at = y as usize * SIDE + x as usize;
            // BGR planes, raw 0-255.
            input[at] = f32::from(p[2]);
            input[SIDE * SIDE + at] = f32::from(p[1]);
            input[2 * SIDE * SIDE + at] = f32::from(p[0]);
        }
        let fail = |e: TractError| FaceError::Inference(e.to_string());
        let tensor = Tensor::from_shape(&[1, 3, SIDE, SIDE], &input).map_err(fail)?;
        let out = self.plan.run(tvec!(tensor.into())).map_err(fail)?;
        let mut faces = Vec::new();
        for (i, stride) in STRIDES.iter().enumerate() {
            let read = |k: usize| -> Result<Vec<f32>, FaceError> {
                let t = out
                    .get(self.outputs[i][k])
                    .ok_or_else(|| FaceError::Inference("output missing".into()))?;
                let view = t.try_as_plain_ram().map_err(fail)?;
                Ok(view.as_slice::<f32>().map_err(fail)?.to_vec())
            };
            let (cls, obj, bbox) = (read(0)?, read(1)?, read(2)?);
            let cols = SIDE / stride;
            let s = *stride as f32;
            for (cell, (c, o)) in cls.iter().zip(&obj).enumerate() {
                let score = (c.clamp(0.0, 1.0) * o.clamp(0.0, 1.0)).sqrt();
                if score < min {
                    continue;
                }
                let Some(b) = bbox.get(cell * 4..cell * 4 + 4) else {
                    continue;
                };
                let (col, row) = ((cell % cols) as f32, (cell / cols) as f32);
                let (cx, cy) = ((col + b[0]) * s, (row + b[1]) * s);
                let (w, h) = (b[2].exp() * s, b[3].exp() * s);
                faces.push(Face {
                    x: cx - w / 2.0,
                    y: cy - h / 2.0,
                    width: w,
                    height: h,
                    score,
                });
            }
        }
        Ok(faces)
    }

    /// Every face at or above `min` in an upright image, in its pixels. With `until_high`,
    /// stop after the whole-image pass when it already found an identifiable face (the
    /// verdict cannot change; redaction, which needs every face, passes `false`).
    pub fn faces_in(
        &self,
        image: &DynamicImage,
        min: f32,
        until_high: bool,
    ) -> Result<Vec<Face>, FaceError> {
        let (w, h) = image.dimensions();
        let longer = w.max(h).max(1);
        let mut faces = Vec::new();
        // The whole image, letterboxed.
        let scale = SIDE as f32 / longer as f32;
        let small = resized(image, scale);
        let mut canvas = RgbImage::new(SIDE as u32, SIDE as u32);
        image::imageops::replace(&mut canvas, &small, 0, 0);
        for f in self.detect(&canvas, min)? {
            faces.push(unscale(f, scale, 0.0, 0.0));
        }
        let found_high = faces
            .iter()
            .any(|f| f.score >= self.settings.high_threshold);
        // Tiles of a 2x larger copy, for small faces in large images.
        let tile_above = self.settings.tile_above_px;
        if tile_above > 0 && longer > tile_above && !(until_high && found_high) {
            let scale = (2.0 * SIDE as f32 / longer as f32).min(1.0);
            let big = resized(image, scale);
            for (tx, ty) in tiles(big.width() as usize, big.height() as usize) {
                let view = image::imageops::crop_imm(&big, tx, ty, SIDE as u32, SIDE as u32);
                let mut canvas = RgbImage::new(SIDE as u32, SIDE as u32);
                image::imageops::replace(&mut canvas, &view.to_image(), 0, 0);
                for f in self.detect(&canvas, min)? {
                    faces.push(unscale(f, scale, tx as f32, ty as f32));
                }
            }
        }
        Ok(nms(faces))
    }

    fn verdict(&self, faces: &[Face]) -> Verdict {
        let best = faces.iter().map(|f| f.score).fold(0.0, f32::max);
        if best >= self.settings.high_threshold {
            Verdict::Identifiable
        } else if best >= self.settings.low_threshold {
            Verdict::Uncertain
        } else {
            Verdict::None
        }
    }

    fn try_scan(&self, image: &DynamicImage) -> Result<Scan, FaceError> {
        let faces = self.faces_in(image, self.settings.low_threshold, true)?;
        Ok(Scan {
            verdict: self.verdict(&faces),
            faces,
            model_sha256: self.sha256.clone(),
            reason: None,
        })
    }

    /// Redact every face found at the low threshold in `image` (decoded from `original`),
    /// re-encode (see [`Redacted`]), and say what was hidden. The caller strips and re-scans
    /// the output.
    ///
    /// # Errors
    /// [`FaceError`] when the detector fails or the image cannot be re-encoded.
    pub fn redact_faces(
        &self,
        original: &[u8],
        mut image: DynamicImage,
    ) -> Result<Redacted, FaceError> {
        let faces = self.faces_in(&image, self.settings.low_threshold, false)?;
        let margin = self.settings.redaction_margin;
        for face in &faces {
            hide(&mut image, face, margin, self.settings.redaction);
        }
        let (bytes, format) = encode_like(original, &image)?;
        Ok(Redacted {
            bytes,
            format,
            faces,
        })
    }
}

impl Detector for YuNet {
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    fn decode(&self, image: &[u8]) -> Result<DynamicImage, String> {
        decode_upright(image, &self.settings).map_err(|e| e.to_string())
    }

    fn scan_decoded(&self, image: &DynamicImage) -> Scan {
        self.try_scan(image)
            .unwrap_or_else(|e| Scan::not_scanned(e.to_string()))
    }

    fn redact_decoded(&self, original: &[u8], image: DynamicImage) -> Result<Redacted, String> {
        self.redact_faces(original, image)
            .map_err(|e| e.to_string())
    }
}

fn resized(image: &DynamicImage, scale: f32) -> RgbImage {
    let (w, h) = image.dimensions();
    let nw = ((w as f32 * scale).round() as u32).max(1);
    let nh = ((h as f32 * scale).round() as u32).max(1);
    // An 8-bit RGB image (every JPEG and HEIF/AVIF decode) is read in place: a full-size
    // copy here was the largest allocation of a scan.
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => std::borrow::Cow::Borrowed(rgb),
        other => std::borrow::Cow::Owned(other.to_rgb8()),
    };
    if (nw, nh) == (w, h) {
        rgb.into_owned()
    } else if scale < 1.0 {
        image::imageops::thumbnail(rgb.as_ref(), nw, nh)
    } else {
        image::imageops::resize(rgb.as_ref(), nw, nh, image::imageops::FilterType::Triangle)
    }
}

/// Top-left corners of 640×640 tiles covering a `w`×`h` image with some overlap.
fn tiles(w: usize, h: usize) -> Vec<(u32, u32)> {
    let starts = |len: usize| -> Vec<u32> {
        if len <= SIDE {
            return vec![0];
        }
        let n = (len - TILE_OVERLAP).div_ceil(SIDE - TILE_OVERLAP);
        let last = len - SIDE;
        (0..n).map(|i| (i * last / (n - 1).max(1)) as u32).collect()
    };
    let (xs, ys) = (starts(w), starts(h));
    ys.iter()
        .flat_map(|y| xs.iter().map(move |x| (*x, *y)))
        .collect()
}

fn unscale(f: Face, scale: f32, dx: f32, dy: f32) -> Face {
    Face {
        x: (f.x + dx) / scale,
        y: (f.y + dy) / scale,
        width: f.width / scale,
        height: f.height / scale,
        score: f.score,
    }
}

fn iou(a: &Face, b: &Face) -> f32 {
    let x1 = a.x.max(b.x);
    let y1 = a.y.max(b.y);
    let x2 = (a.x + a.width).min(b.x + b.width);
    let y2 = (a.y + a.height).min(b.y + b.height);
    let inter = (x2 - x1).max(0.0) * (y2 - y1).max(0.0);
    let union = a.width * a.height + b.width * b.height - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Greedy non-maximum suppression at IoU 0.3, best first.
fn nms(mut faces: Vec<Face>) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Face> = Vec::new();
    for f in faces {
        if kept.iter().all(|k| iou(k, &f) < NMS_IOU) {
            kept.push(f);
        }
    }
    kept
}

/// Decode under the limits and turn upright by the EXIF Orientation.
///
/// # Errors
/// [`FaceError::Decode`] for formats without a decoder here (a CIELab or palette TIFF, say)
/// and broken files; [`FaceError::TooLarge`] over a limit.
pub fn decode_upright(bytes: &[u8], settings: &Settings) -> Result<DynamicImage, FaceError> {
    if matches!(
        crate::media::sniff(bytes),
        Some(crate::media::Format::Heif | crate::media::Format::Avif)
    ) {
        return decode_heif(bytes, settings);
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| FaceError::Decode(e.to_string()))?;
    if reader.format().is_none() {
        return Err(FaceError::Decode(
            "not an image format this build decodes".into(),
        ));
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(settings.max_decode_bytes);
    let side = u32::try_from(settings.max_pixels.min(u64::from(u32::MAX))).unwrap_or(u32::MAX);
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    let mut reader = reader;
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| FaceError::Decode(e.to_string()))?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > settings.max_pixels {
        return Err(FaceError::TooLarge("max_pixels"));
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(_) => FaceError::TooLarge("max_decode_bytes"),
        other => FaceError::Decode(other.to_string()),
    })?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// HEIF/HEIC and AVIF through libheif (Debian's libheif: HEVC by libde265, AV1 by libaom or
/// dav1d). libheif applies the file's rotation and mirroring (`irot`, `imir`) while decoding,
/// so the result is upright. The pixel count is checked before decoding.
fn decode_heif(bytes: &[u8], settings: &Settings) -> Result<DynamicImage, FaceError> {
    use libheif_rs::{ColorSpace, HeifContext, LibHeif, RgbChroma};
    let fail = |e: libheif_rs::HeifError| FaceError::Decode(format!("HEIF: {}", e.message));
    let context = HeifContext::read_from_bytes(bytes).map_err(fail)?;
    let handle = context.primary_image_handle().map_err(fail)?;
    if u64::from(handle.width()) * u64::from(handle.height()) > settings.max_pixels {
        return Err(FaceError::TooLarge("max_pixels"));
    }
    let image = LibHeif::new()
        .decode(&handle, ColorSpace::Rgb(RgbChroma::Rgb), None)
        .map_err(fail)?;
    let plane = image
        .planes()
        .interleaved
        .ok_or_else(|| FaceError::Decode("HEIF: no interleaved RGB plane".into()))?;
    let (w, h) = (plane.width as usize, plane.height as usize);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        let start = row * plane.stride;
        let line = plane
            .data
            .get(start..start + w * 3)
            .ok_or_else(|| FaceError::Decode("HEIF: short plane".into()))?;
        rgb.extend_from_slice(line);
    }
    RgbImage::from_raw(plane.width, plane.height, rgb)
        .map(DynamicImage::ImageRgb8)
        .ok_or_else(|| FaceError::Decode("HEIF: plane size".into()))
}

/// Hide one face: the box grown by `margin`, pixelated to 8 blocks across or blurred.
fn hide(image: &mut DynamicImage, face: &Face, margin: f32, how: Redaction) {
    let (w, h) = image.dimensions();
    let grow_x = face.width * margin;
    let grow_y = face.height * margin;
    let clamp = |v: f32, max: u32| (v.max(0.0) as u32).min(max);
    let x0 = clamp(face.x - grow_x, w);
    let y0 = clamp(face.y - grow_y, h);
    let x1 = clamp(face.x + face.width + grow_x, w);
    let y1 = clamp(face.y + face.height + grow_y, h);
    if x1 <= x0 || y1 <= y0 {
        return;
    }
    let region = image.crop_imm(x0, y0, x1 - x0, y1 - y0);
    let (rw, rh) = region.dimensions();
    let hidden = match how {
        Redaction::Pixelate => {
            let block = (rw.max(rh) / 8).max(1);
            let small = region.resize_exact(
                rw.div_ceil(block),
                rh.div_ceil(block),
                image::imageops::FilterType::Triangle,
            );
            small.resize_exact(rw, rh, image::imageops::FilterType::Nearest)
        }
        Redaction::Blur => region.blur((rw.max(rh) as f32 / 6.0).max(8.0)),
    };
    image::imageops::replace(image, &hidden, i64::from(x0), i64::from(y0));
}

/// Encode `image` like `original`: JPEG stays JPEG (quality 92), PNG stays PNG, WebP becomes
/// lossless WebP, TIFF stays TIFF; HEIF/HEIC and AVIF become JPEG (quality 92), since no
/// encoder for them is built in. Returns the bytes and their format.
fn encode_like(
    original: &[u8],
    image: &DynamicImage,
) -> Result<(Vec<u8>, crate::media::Format), FaceError> {
    use crate::media::Format;
    let mut out = Cursor::new(Vec::new());
    let fail = |e: image::ImageError| FaceError::Encode(e.to_string());
    let jpeg = |out: &mut Cursor<Vec<u8>>| {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(out, 92);
        image.to_rgb8().write_with_encoder(encoder).map_err(fail)
    };
    let format = match crate::media::sniff(original) {
        Some(Format::Jpeg | Format::Heif | Format::Avif) => {
            jpeg(&mut out)?;
            Format::Jpeg
        }
        Some(f @ Format::Png) => {
            image
                .write_to(&mut out, image::ImageFormat::Png)
                .map_err(fail)?;
            f
        }
        Some(f @ Format::Webp) => {
            image
                .write_to(&mut out, image::ImageFormat::WebP)
                .map_err(fail)?;
            f
        }
        Some(f @ Format::Tiff) => {
            image
                .write_to(&mut out, image::ImageFormat::Tiff)
                .map_err(fail)?;
            f
        }
        other => {
            return Err(FaceError::Encode(format!(
                "{other:?} is not re-encoded here"
            )));
        }
    };
    Ok((out.into_inner(), format))
}
