//! Face scanning: does an image show a person's face? And hiding the faces it found.
//!
//! [`YuNet`] runs the YuNet detector (OpenCV Zoo `face_detection_yunet_2023mar.onnx`) in pure
//! Rust with tract. The model's bytes are passed in (the binary embeds them; reading an override
//! file is the caller's business), pinned by SHA-256 and checked at load. Its graph takes any
//! H×W in multiples of 32 (its reshapes are -1 and its upsampling is by scale), so each pass
//! runs at the image's own aspect rather than a padded square: a plan per input size, built on
//! first use and kept. Only the outputs read are computed (not the landmarks).
//!
//! A scan decodes the image under limits, turns it upright by its EXIF Orientation, and runs
//! the whole image at 320 px on its longer side (an identifiable close-up, decided in a
//! quarter of the time), then at 640 px, then for large images at 1280 px in overlapping tiles
//! (small faces in a group), stopping once a pass found an identifiable face; detections are
//! merged by non-maximum suppression ([`YuNet::faces_in`]). Redaction runs the 640 and 1280
//! passes in full. A JPEG is decoded by libjpeg-turbo at the smallest DCT scale that still
//! holds every pixel those passes look at ([`Upright`]). An image that cannot be decoded, or a
//! missing or wrong model, is `not_scanned` with a reason, never `none`.
//!
//! [`Detector::redact`] decodes at full size, pixelates or blurs each face box (grown by a
//! margin) and re-encodes: the one place pixels change. Results carry boxes and scores, never pixels;
//! nothing here logs.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex, PoisonError};

use image::{DynamicImage, GenericImageView, ImageDecoder, ImageReader, Rgb, RgbImage};
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

/// An image decoded upright for scanning, perhaps smaller than the file: a JPEG is decoded at
/// the smallest DCT scale that still holds every pixel the scan looks at. Faces are reported
/// in the full image's upright pixels.
#[derive(Debug, Clone)]
pub struct Upright {
    pub image: DynamicImage,
    /// The full image's upright width and height.
    pub full: (u32, u32),
}

impl From<DynamicImage> for Upright {
    fn from(image: DynamicImage) -> Self {
        let full = image.dimensions();
        Self { image, full }
    }
}

/// A face detector. Scanning works on an image decoded once ([`Detector::decode`]);
/// [`Detector::scan`] does the decoding itself.
pub trait Detector: Send + Sync {
    /// `Err(reason)` when every scan would be `not_scanned` (for `/readyz`).
    ///
    /// # Errors
    /// The reason the detector cannot work.
    fn ready(&self) -> Result<(), String>;

    /// Decode an image (its bytes as uploaded) upright for the scan, under the detector's
    /// limits (see [`Upright`]).
    ///
    /// # Errors
    /// Why it cannot be scanned: no model, a format or file it cannot decode, a limit.
    fn decode(&self, image: &[u8]) -> Result<Upright, String>;

    /// Scan a decoded, upright image.
    fn scan_decoded(&self, image: &Upright) -> Scan;

    /// Decode an image at full size, hide every face found and re-encode it in its own format
    /// (see [`Redacted`]).
    ///
    /// # Errors
    /// Why it could not (no model, an image it cannot decode or encode).
    fn redact(&self, image: &[u8]) -> Result<Redacted, String>;

    /// Scan an image's bytes (the detector reads its orientation itself).
    fn scan(&self, image: &[u8]) -> Scan {
        match self.decode(image) {
            Ok(decoded) => self.scan_decoded(&decoded),
            Err(why) => Scan::not_scanned(why),
        }
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

    fn decode(&self, image: &[u8]) -> Result<Upright, String> {
        decode_for_scan(image, &Settings::default()).map_err(|e| e.to_string())
    }

    fn scan_decoded(&self, _image: &Upright) -> Scan {
        Scan::not_scanned(self.0.clone())
    }

    fn redact(&self, _image: &[u8]) -> Result<Redacted, String> {
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
    /// Images whose longer side exceeds this are also scanned at twice the 640 pass's
    /// resolution, in tiles, for small faces (0: never).
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

/// The first pass's longer side, in network pixels; the second pass doubles it.
const SIDE: usize = 640;
/// The network's input sides are padded to multiples of this, its coarsest stride. (Padding
/// to 64, for fewer plans, measured a third slower: tract's kernels fit some sizes better.)
const ALIGN: usize = 32;
const STRIDES: [usize; 3] = [8, 16, 32];
/// The outputs read, in this order for each stride; the landmark outputs are never computed.
const OUTPUTS: [&str; 9] = [
    "cls_8", "obj_8", "bbox_8", "cls_16", "obj_16", "bbox_16", "cls_32", "obj_32", "bbox_32",
];
const NMS_IOU: f32 = 0.3;
/// Plans kept at once (odd aspect ratios cannot grow the cache past this).
const MAX_PLANS: usize = 48;
/// Neighbouring tiles share this many pixels. A face wider than this at twice the 640 pass's
/// scale is 32 px or more at that pass's, where the network finds it; a smaller one lies whole
/// inside some tile.
const TILE_OVERLAP: usize = 64;

type Plan = TypedRunnableModel;

/// Plans by input size (height, width), each with the clock of its last use.
#[derive(Default)]
struct Plans {
    by_size: HashMap<(usize, usize), (Arc<Plan>, u64)>,
    clock: u64,
}

/// YuNet, loaded once and shared.
pub struct YuNet {
    /// The graph as read, narrowed to [`OUTPUTS`], with no input size yet.
    model: InferenceModel,
    /// A plan per input size, built on first use (about 50 ms each). The sizes come from the
    /// passes alone, each side a multiple of 32 up to 672, and a handful cover most photos; at
    /// most [`MAX_PLANS`] are kept, the least recently used dropped first.
    plans: Mutex<Plans>,
    sha256: String,
    settings: Settings,
}

impl YuNet {
    /// Check the model's bytes against the pinned hash, and build its plan for a square input.
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
        let model = tract_onnx::onnx()
            // Shapes the file records for its 640×640 export; each plan infers its own.
            .with_ignore_output_shapes(true)
            .with_ignore_value_info(true)
            .model_for_read(&mut Cursor::new(bytes))
            .map_err(|e| err(format!("not a loadable ONNX model: {e}")))?
            .with_outputs_by_name(OUTPUTS)
            .map_err(|e| err(format!("not YuNet: {e}")))?;
        let yunet = Self {
            model,
            plans: Mutex::default(),
            sha256,
            settings,
        };
        yunet.plan(SIDE, SIDE)?;
        Ok(yunet)
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The plan for an input of `h`×`w`, built once.
    fn plan(&self, h: usize, w: usize) -> Result<Arc<Plan>, FaceError> {
        // A panic while building leaves at worst a plan missing: the map stays usable.
        let mut cache = self.plans.lock().unwrap_or_else(PoisonError::into_inner);
        cache.clock += 1;
        let now = cache.clock;
        let plans = &mut cache.by_size;
        if let Some((plan, used)) = plans.get_mut(&(h, w)) {
            *used = now;
            return Ok(plan.clone());
        }
        let plan = self
            .model
            .clone()
            .with_input_fact(0, f32::fact([1, 3, h, w]).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| FaceError::Model(format!("cannot plan the network at {w}×{h}: {e}")))?;
        if plans.len() >= MAX_PLANS {
            let oldest = plans
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                plans.remove(&oldest);
            }
        }
        plans.insert((h, w), (plan.clone(), now));
        Ok(plan)
    }

    /// Run the network on `image` (placed top-left on a canvas padded to multiples of 32);
    /// faces in its pixels at or above `min`.
    fn detect(
        &self,
        image: &impl GenericImageView<Pixel = Rgb<u8>>,
        min: f32,
    ) -> Result<Vec<Face>, FaceError> {
        let (w, h) = (image.width() as usize, image.height() as usize);
        let (cw, ch) = (w.div_ceil(ALIGN) * ALIGN, h.div_ceil(ALIGN) * ALIGN);
        let fail = |e: TractError| FaceError::Inference(e.to_string());
        let mut input = Tensor::zero::<f32>(&[1, 3, ch, cw]).map_err(fail)?;
        {
            let mut view = input.try_as_plain_ram_mut().map_err(fail)?;
            let planes = view.as_slice_mut::<f32>().map_err(fail)?;
            let (blue, rest) = planes.split_at_mut(ch * cw);
            let (green, red) = rest.split_at_mut(ch * cw);
            // BGR planes, raw 0-255.
            for (x, y, p) in image.pixels() {
                let at = y as usize * cw + x as usize;
                blue[at] = f32::from(p[2]);
                green[at] = f32::from(p[1]);
                red[at] = f32::from(p[0]);
            }
        }
        let out = self.plan(ch, cw)?.run(tvec!(input.into())).map_err(fail)?;
        let mut faces = Vec::new();
        for (i, stride) in STRIDES.iter().enumerate() {
            let read = |k: usize| -> Result<&[f32], FaceError> {
                out.get(i * 3 + k)
                    .ok_or_else(|| FaceError::Inference("output missing".into()))?
                    .try_as_plain_ram()
                    .and_then(|view| view.as_slice::<f32>())
                    .map_err(fail)
            };
            let (cls, obj, bbox) = (read(0)?, read(1)?, read(2)?);
            let cols = cw / stride;
            let s = *stride as f32;
            for (cell, (c, o)) in cls.iter().zip(obj).enumerate() {
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

    /// One pass over the whole image scaled to `side` on its longer side, in overlapping
    /// tiles of at most about 640 px a side when larger (smaller inputs keep the network's
    /// working set in cache: one 1280×960 run measured 140–183 ms, one 640×480 run 23–25 ms,
    /// a quarter of the pixels at a sixth of the time); faces in the image's pixels.
    fn pass(&self, image: &DynamicImage, side: usize, min: f32) -> Result<Vec<Face>, FaceError> {
        let longer = image.width().max(image.height()).max(1);
        let scale = side as f32 / longer as f32;
        let scaled = resized(image, scale)?;
        let mut faces = Vec::new();
        for (x, y, w, h) in tiles(scaled.width(), scaled.height()) {
            let tile = image::imageops::crop_imm(&scaled, x, y, w, h);
            for f in self.detect(&*tile, min)? {
                let f = Face {
                    x: f.x + x as f32,
                    y: f.y + y as f32,
                    ..f
                };
                faces.push(unscale(f, scale));
            }
        }
        Ok(faces)
    }

    /// Every face at or above `min` in an upright image, in its pixels. The passes, each over
    /// the whole image: 640 px on its longer side, then for images over `tile_above_px` 1280
    /// px (small faces in a group). With `until_high`, first a quick look at 320 px, in a
    /// quarter of the time, which decides an identifiable close-up (its faces are kept only
    /// then, so it adds no uncertain face the 640 pass would not find), and stop after the
    /// first pass that found an identifiable face: the verdict cannot change. Redaction, which
    /// needs every face and boxes as tight as the 640 pass draws them, passes `false`.
    ///
    /// # Errors
    /// [`FaceError`] when the network cannot be planned or run.
    pub fn faces_in(
        &self,
        image: &DynamicImage,
        min: f32,
        until_high: bool,
    ) -> Result<Vec<Face>, FaceError> {
        self.detections(image, min, until_high).map(nms)
    }

    /// [`YuNet::faces_in`] before non-maximum suppression: every box any pass drew.
    fn detections(
        &self,
        image: &DynamicImage,
        min: f32,
        until_high: bool,
    ) -> Result<Vec<Face>, FaceError> {
        let high = self.settings.high_threshold;
        if until_high {
            let quick = self.pass(image, SIDE / 2, min)?;
            if quick.iter().any(|f| f.score >= high) {
                return Ok(quick);
            }
        }
        let longer = image.width().max(image.height()) as usize;
        let mut faces = Vec::new();
        for side in pass_sides(&self.settings, longer) {
            faces.extend(self.pass(image, side, min)?);
            if until_high && faces.iter().any(|f| f.score >= high) {
                break;
            }
        }
        Ok(faces)
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

    fn try_scan(&self, upright: &Upright) -> Result<Scan, FaceError> {
        let image = &upright.image;
        let ratio = upright.full.0 as f32 / image.width().max(1) as f32;
        let faces = self
            .faces_in(image, self.settings.low_threshold, true)?
            .into_iter()
            .map(|f| unscale(f, 1.0 / ratio))
            .collect::<Vec<_>>();
        Ok(Scan {
            verdict: self.verdict(&faces),
            faces,
            model_sha256: self.sha256.clone(),
            reason: None,
        })
    }

    /// Redact every face found at the low threshold in `image` (decoded from `original` at
    /// full size), re-encode (see [`Redacted`]), and say what was hidden. The caller strips
    /// and re-scans the output.
    ///
    /// # Errors
    /// [`FaceError`] when the detector fails or the image cannot be re-encoded.
    pub fn redact_faces(
        &self,
        original: &[u8],
        mut image: DynamicImage,
    ) -> Result<Redacted, FaceError> {
        // Every box any pass drew is hidden, not only those suppression keeps: a kept box
        // may cover less of the face than one it suppressed.
        let boxes = self.detections(&image, self.settings.low_threshold, false)?;
        let margin = self.settings.redaction_margin;
        for face in &boxes {
            hide(&mut image, face, margin, self.settings.redaction);
        }
        let faces = nms(boxes);
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

    fn decode(&self, image: &[u8]) -> Result<Upright, String> {
        decode_for_scan(image, &self.settings).map_err(|e| e.to_string())
    }

    fn scan_decoded(&self, image: &Upright) -> Scan {
        self.try_scan(image)
            .unwrap_or_else(|e| Scan::not_scanned(e.to_string()))
    }

    fn redact(&self, image: &[u8]) -> Result<Redacted, String> {
        decode_upright(image, &self.settings)
            .and_then(|decoded| self.redact_faces(image, decoded))
            .map_err(|e| e.to_string())
    }
}

/// `image` scaled by `scale` (SIMD), as 8-bit RGB.
fn resized(image: &DynamicImage, scale: f32) -> Result<RgbImage, FaceError> {
    use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer, images};
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
        return Ok(rgb.into_owned());
    }
    let fail = |e: &dyn std::fmt::Display| FaceError::Decode(format!("resize: {e}"));
    let src = images::ImageRef::new(w, h, rgb.as_raw(), PixelType::U8x3).map_err(|e| fail(&e))?;
    let mut dst = images::Image::new(nw, nh, PixelType::U8x3);
    // Down: the mean of each output pixel's area (as `image`'s thumbnail, which the detector's
    // thresholds and the redaction tests were tuned on); up: bilinear.
    let filter = if scale < 1.0 {
        FilterType::Box
    } else {
        FilterType::Bilinear
    };
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| fail(&e))?;
    RgbImage::from_raw(nw, nh, dst.into_vec()).ok_or_else(|| fail(&"buffer size"))
}

/// The longer sides of the passes after the quick look, coarse to fine: 640, and for an image
/// whose longer side (`longer`) exceeds `tile_above_px`, 1280 (at most its own). The one rule
/// for what the scan runs, and so for the scale a JPEG is decoded at.
fn pass_sides(settings: &Settings, longer: usize) -> Vec<usize> {
    let tile_above = settings.tile_above_px as usize;
    if tile_above > 0 && longer > tile_above {
        vec![SIDE, (2 * SIDE).min(longer)]
    } else {
        vec![SIDE]
    }
}

/// Tiles of at most about 640 px a side covering a `w`×`h` image, neighbours overlapping by
/// [`TILE_OVERLAP`], as (x, y, width, height); one tile when it fits.
fn tiles(w: u32, h: u32) -> Vec<(u32, u32, u32, u32)> {
    let spans = |len: u32| -> Vec<(u32, u32)> {
        let len = len as usize;
        let n = len.div_ceil(SIDE).max(1);
        if n == 1 {
            return vec![(0, len as u32)];
        }
        let size = (len + (n - 1) * TILE_OVERLAP).div_ceil(n).min(len);
        (0..n)
            .map(|i| ((i * (len - size) / (n - 1)) as u32, size as u32))
            .collect()
    };
    let (xs, ys) = (spans(w), spans(h));
    ys.iter()
        .flat_map(|&(y, th)| xs.iter().map(move |&(x, tw)| (x, y, tw, th)))
        .collect()
}

fn unscale(f: Face, scale: f32) -> Face {
    Face {
        x: f.x / scale,
        y: f.y / scale,
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

/// Decode for the scan (see [`Upright`]). A JPEG goes through libjpeg-turbo at the smallest
/// DCT scale (a multiple of 1/8) that keeps the longer side at least as long as the passes
/// look at, which skips most of the decoding of a camera photo; any other format, and a JPEG
/// libjpeg-turbo does not take (CMYK, a warning such as data cut short), through
/// [`decode_upright`].
///
/// # Errors
/// As [`decode_upright`].
pub fn decode_for_scan(bytes: &[u8], settings: &Settings) -> Result<Upright, FaceError> {
    if crate::media::sniff(bytes) == Some(crate::media::Format::Jpeg) {
        match decode_jpeg_scaled(bytes, settings) {
            Err(FaceError::Decode(_)) => {}
            done => return done,
        }
    }
    decode_upright(bytes, settings).map(Upright::from)
}

fn decode_jpeg_scaled(bytes: &[u8], settings: &Settings) -> Result<Upright, FaceError> {
    use turbojpeg::{Decompressor, Image, PixelFormat, ScalingFactor};
    let fail = |e: turbojpeg::Error| FaceError::Decode(format!("JPEG: {e}"));
    let mut decompressor = Decompressor::new().map_err(fail)?;
    let header = decompressor.read_header(bytes).map_err(fail)?;
    let (w, h) = (header.width, header.height);
    let pixels = w as u64 * h as u64;
    if pixels > settings.max_pixels {
        return Err(FaceError::TooLarge("max_pixels"));
    }
    // A progressive file holds every coefficient (2 bytes each, 3 components at most) while
    // it decodes.
    if header.is_progressive && pixels * 6 > settings.max_decode_bytes {
        return Err(FaceError::TooLarge("max_decode_bytes"));
    }
    let longer = w.max(h);
    let finest = pass_sides(settings, longer)
        .into_iter()
        .max()
        .unwrap_or(SIDE);
    let needed = finest.min(longer);
    let factor = Decompressor::supported_scaling_factors()
        .into_iter()
        .filter(|f| f.num() <= f.denom() && f.scale(longer) >= needed)
        .min_by_key(|f| f.scale(longer))
        .unwrap_or(ScalingFactor::ONE);
    decompressor.set_scaling_factor(factor).map_err(fail)?;
    decompressor
        .set_scan_limit(crate::media::MAX_JPEG_SCANS)
        .map_err(fail)?;
    let (sw, sh) = (factor.scale(w), factor.scale(h));
    let mut rgb = vec![0u8; sw * sh * 3];
    let output = Image {
        pixels: rgb.as_mut_slice(),
        width: sw,
        pitch: sw * 3,
        height: sh,
        format: PixelFormat::RGB,
    };
    decompressor.decompress(bytes, output).map_err(fail)?;
    let rgb = RgbImage::from_raw(sw as u32, sh as u32, rgb)
        .ok_or_else(|| FaceError::Decode("JPEG: plane size".into()))?;
    let mut image = DynamicImage::ImageRgb8(rgb);
    let orientation = image::codecs::jpeg::JpegDecoder::new(Cursor::new(bytes))
        .and_then(|mut d| d.orientation())
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    image.apply_orientation(orientation);
    let turned = image.width() as usize != sw;
    let full = if turned { (h, w) } else { (w, h) };
    Ok(Upright {
        image,
        full: (full.0 as u32, full.1 as u32),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_image_overlapping_so_a_small_face_lies_whole_in_one() {
        assert_eq!(tiles(640, 480), vec![(0, 0, 640, 480)]);
        for (w, h) in [
            (1280, 960),
            (1280, 720),
            (960, 1280),
            (1280, 1280),
            (700, 641),
        ] {
            let all = tiles(w, h);
            // Every face box of up to TILE_OVERLAP pixels a side, anywhere, fits in a tile.
            let side = TILE_OVERLAP as u32;
            for y in (0..=h - side).step_by(7) {
                for x in (0..=w - side).step_by(7) {
                    assert!(
                        all.iter().any(|&(tx, ty, tw, th)| tx <= x
                            && x + side <= tx + tw
                            && ty <= y
                            && y + side <= ty + th),
                        "{w}×{h}: no tile holds ({x}, {y})"
                    );
                }
            }
            for &(x, y, tw, th) in &all {
                assert!(x + tw <= w && y + th <= h && tw as usize <= SIDE + TILE_OVERLAP);
                assert!(th as usize <= SIDE + TILE_OVERLAP, "{w}×{h}: {all:?}");
            }
        }
        assert_eq!(tiles(1280, 960).len(), 4);
    }
}
