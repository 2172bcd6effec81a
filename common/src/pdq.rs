//! PDQ perceptual hashes (Meta's 256-bit image hash, ThreatExchange `pdq/`), the hashes a
//! take-down blocks, and the block list they are looked up in.
//!
//! Written from the published description (hashing.pdf, `pdq/README.md`) and checked against
//! the reference (PyPI `pdqhash`, Meta's C++) by `tests/pdq_reference.rs`: luminance
//! `0.299 R + 0.587 G + 0.114 B`, a Jarosz tent filter (two box passes per axis, window
//! `ceil(side / 128)`) sampled at 64×64 pixel centres, the 16×16 low-frequency block of a
//! 64-point DCT, one bit per coefficient above the median, and a quality from the sum of
//! quantised gradients. Like `pdqhash` (and unlike the C++ command-line tool, which first
//! squashes images to 512×512) the full-resolution image is hashed. The 8 dihedral variants
//! come from the one DCT by sign flips and transposition, as the reference computes them.
//!
//! It owns the arithmetic only: it takes decoded pixels, never bytes or files, logs nothing,
//! and keeps no global state beyond the constant DCT matrix.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use image::DynamicImage;
use image::imageops::FilterType;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Hashes at most this far apart (Hamming) are the same picture.
pub const MATCH_DISTANCE: u32 = 31;
/// Hashes of lower quality (flat or nearly flat images) are neither blocked nor matched.
pub const MIN_QUALITY: u8 = 50;

/// Images smaller than this on a side hash to zero with quality 0 (as the reference).
const MIN_HASHABLE_SIDE: usize = 5;
/// `block_hashes` crops a copy binned down to at most this on its longer side.
const BLOCK_SIDE: usize = 512;
/// The cuts of the crop grid, per side, in thousandths of that side: 0 to 12.5 % by 2.5 %.
const CROP_CUTS_PERMILLE: [usize; 6] = [0, 25, 50, 75, 100, 125];

/// A 256-bit PDQ hash. Bit `k` (the DCT coefficient at row `k / 16`, column `k % 16`) is bit
/// `k % 8` of byte `31 - k / 8`, so the bytes in order are the reference's 64-hex-digit string
/// (its 16-bit words from the last to the first).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The number of bits that differ.
    pub fn distance(&self, other: &Hash) -> u32 {
        self.0
            .iter()
            .zip(other.0.iter())
            .map(|(a, b)| (a ^ b).count_ones())
            .sum()
    }

    fn set_bit(&mut self, k: usize) {
        self.0[31 - k / 8] |= 1 << (k % 8);
    }

    /// The 16 bits of chunk `c` (0..16), chunk 0 being the first four hex digits.
    fn chunk(&self, c: usize) -> u16 {
        u16::from_be_bytes([self.0[2 * c], self.0[2 * c + 1]])
    }

    fn words(&self) -> [u64; 4] {
        let mut w = [0u64; 4];
        for (i, word) in w.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.0[8 * i..8 * i + 8]);
            *word = u64::from_be_bytes(b);
        }
        w
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashParseError {
    #[error("a PDQ hash is 64 hex digits, got {0} characters")]
    Length(usize),
    #[error("a PDQ hash is 64 hex digits: {0}")]
    Hex(String),
}

impl FromStr for Hash {
    type Err = HashParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(HashParseError::Length(s.len()));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|e| HashParseError::Hex(e.to_string()))?;
        Ok(Hash(bytes))
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A hash with its quality (0..=100; below [`MIN_QUALITY`] it is not to be trusted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pdq {
    pub hash: Hash,
    pub quality: u8,
}

/// The PDQ hash of an image, at full resolution.
pub fn hash(image: &DynamicImage) -> Pdq {
    let plane = Plane::luma(image);
    match plane.hashable() {
        true => {
            let (dct, quality) = dct_of(&plane.downsample(plane.full()));
            Pdq {
                hash: bits(&dct),
                quality,
            }
        }
        false => unhashable(),
    }
}

/// The hashes of the image's 8 dihedral variants, in the reference's order: original, rotated
/// 90° anticlockwise, 180°, 90° clockwise, flipped top to bottom, flipped left to right,
/// transposed (mirrored about the main diagonal), mirrored about the anti-diagonal.
/// `[0] == hash(image)`; all share one quality. One downsample and one DCT for all 8.
pub fn dihedral(image: &DynamicImage) -> [Pdq; 8] {
    let plane = Plane::luma(image);
    if !plane.hashable() {
        return [unhashable(); 8];
    }
    let (dct, quality) = dct_of(&plane.downsample(plane.full()));
    dihedral_of(&dct).map(|d| Pdq {
        hash: bits(&d),
        quality,
    })
}

/// Widest margin trimmed from each side by [`query_hashes`], as a share of that dimension.
const MAX_TRIM: u32 = 4;
/// How far (per channel) a margin pixel may stray from the corner's colour and still be
/// margin: JPEG ringing and noise on a flat border.
const TRIM_TOLERANCE: u8 = 24;

/// The hashes an upload is matched with: its own (`own`, [`hash`] of `image`), and when it
/// has flat margins (a border a re-uploader added, which no crop of the original
/// reproduces), the hash of what is inside them. Only hashes of quality >= [`MIN_QUALITY`].
pub fn query_hashes(image: &DynamicImage, own: Pdq) -> Vec<Pdq> {
    let mut out = vec![own];
    if let Some((x, y, w, h)) = inside_margins(image) {
        out.push(hash(&image.crop_imm(x, y, w, h)));
    }
    out.retain(|p| p.quality >= MIN_QUALITY);
    out
}

/// The rectangle inside flat margins of the corner's colour (each at most a quarter of its
/// dimension), or `None` when there is no margin of at least 2 pixels.
fn inside_margins(image: &DynamicImage) -> Option<(u32, u32, u32, u32)> {
    let rgb = image.to_rgb8();
    let (w, h) = rgb.dimensions();
    if w < 32 || h < 32 {
        return None;
    }
    let corner = *rgb.get_pixel(0, 0);
    let near = |x: u32, y: u32| {
        let p = rgb.get_pixel(x, y);
        (0..3).all(|c| p[c].abs_diff(corner[c]) <= TRIM_TOLERANCE)
    };
    let flat_row = |y: u32| (0..w).all(|x| near(x, y));
    let flat_col = |x: u32, top: u32, bottom: u32| (top..bottom).all(|y| near(x, y));
    let (mut top, mut bottom) = (0, h);
    while top < h / MAX_TRIM && flat_row(top) {
        top += 1;
    }
    while h - bottom < h / MAX_TRIM && flat_row(bottom - 1) {
        bottom -= 1;
    }
    let (mut left, mut right) = (0, w);
    while left < w / MAX_TRIM && flat_col(left, top, bottom) {
        left += 1;
    }
    while w - right < w / MAX_TRIM && flat_col(right - 1, top, bottom) {
        right -= 1;
    }
    let trimmed = top + (h - bottom) + left + (w - right);
    (trimmed >= 2).then_some((left, top, right - left, bottom - top))
}

/// What a take-down blocks for one image: the hashes of a grid of crops (each of the 4 sides
/// cut 0, 2.5, 5, 7.5, 10, 12.5 % → 6^4 = 1296 crops) plus the 8 dihedral variants of the
/// whole image, of its mirror image and of its half-size copies; only hashes of quality >=
/// [`MIN_QUALITY`]; deduplicated, the dihedral ones first.
///
/// The crops are cut from one copy binned down to at most 512 pixels on its longer side (a
/// box average, which the tent filter barely sees), and share their vertical filtering
/// (36 row ranges), so the grid costs a few DCTs' worth of arithmetic per crop.
pub fn block_hashes(image: &DynamicImage) -> Vec<Hash> {
    let full = Plane::luma(image);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut keep = |pdq: Pdq, out: &mut Vec<Hash>| {
        if pdq.quality >= MIN_QUALITY && seen.insert(pdq.hash) {
            out.push(pdq.hash);
        }
    };
    if !full.hashable() {
        return out;
    }
    let (dct, quality) = dct_of(&full.downsample(full.full()));
    for d in dihedral_of(&dct) {
        keep(
            Pdq {
                hash: bits(&d),
                quality,
            },
            &mut out,
        );
    }
    // A re-uploader's mirrored and half-size copies, hashed as such: PDQ's sampling is not
    // exactly mirror- or scale-symmetric, least on small images.
    let (w, h) = (image.width(), image.height());
    let half =
        |i: &DynamicImage| i.resize_exact(w.div_ceil(2), h.div_ceil(2), FilterType::Lanczos3);
    let mirrored = image.fliph();
    for variant in [half(image), half(&mirrored), mirrored] {
        keep(hash(&variant), &mut out);
    }
    let small = full.binned(BLOCK_SIDE);
    let cut = |side: usize, permille: usize| (side * permille + 500) / 1000;
    for &top in &CROP_CUTS_PERMILLE {
        for &bottom in &CROP_CUTS_PERMILLE {
            let y0 = cut(small.height, top);
            let y1 = small.height - cut(small.height, bottom);
            if y1 < y0 + MIN_HASHABLE_SIDE {
                continue;
            }
            let rows = small.filter_rows(y0, y1 - y0);
            for &left in &CROP_CUTS_PERMILLE {
                for &right in &CROP_CUTS_PERMILLE {
                    let x0 = cut(small.width, left);
                    let x1 = small.width - cut(small.width, right);
                    if x1 < x0 + MIN_HASHABLE_SIDE {
                        continue;
                    }
                    let (dct, quality) = dct_of(&rows.filter_cols(x0, x1 - x0));
                    keep(
                        Pdq {
                            hash: bits(&dct),
                            quality,
                        },
                        &mut out,
                    );
                }
            }
        }
    }
    out
}

fn unhashable() -> Pdq {
    Pdq {
        hash: Hash([0; 32]),
        quality: 0,
    }
}

/// A luminance plane, row-major.
struct Plane {
    width: usize,
    height: usize,
    px: Vec<f32>,
}

/// A crop's rows already tent-filtered and sampled: 64 rows of the plane's full width.
struct Rows<'a> {
    plane: &'a Plane,
    px: Vec<f32>,
}

#[derive(Clone, Copy)]
struct Rect {
    x: usize,
    y: usize,
    width: usize,
    height: usize,
}

impl Plane {
    /// Luminance as the reference computes it, from 8-bit RGB (alpha dropped).
    fn luma(image: &DynamicImage) -> Plane {
        let converted;
        let rgb = match image {
            DynamicImage::ImageRgb8(rgb) => rgb,
            other => {
                converted = other.to_rgb8();
                &converted
            }
        };
        let px = rgb
            .as_raw()
            .chunks_exact(3)
            .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
            .collect();
        Plane {
            width: rgb.width() as usize,
            height: rgb.height() as usize,
            px,
        }
    }

    fn hashable(&self) -> bool {
        self.width >= MIN_HASHABLE_SIDE && self.height >= MIN_HASHABLE_SIDE
    }

    fn full(&self) -> Rect {
        Rect {
            x: 0,
            y: 0,
            width: self.width,
            height: self.height,
        }
    }

    /// A copy averaged over `f × f` blocks (partial blocks at the edges averaged over what they
    /// hold), `f` the smallest factor that brings the longer side to at most `max_side`.
    fn binned(&self, max_side: usize) -> Plane {
        let f = self.width.max(self.height).div_ceil(max_side).max(1);
        if f == 1 {
            return Plane {
                width: self.width,
                height: self.height,
                px: self.px.clone(),
            };
        }
        let (w, h) = (self.width.div_ceil(f), self.height.div_ceil(f));
        let mut sum = vec![0f32; w * h];
        let mut count = vec![0u32; w * h];
        for (y, row) in self.px.chunks_exact(self.width).enumerate() {
            let out = (y / f) * w;
            for (x, &v) in row.iter().enumerate() {
                sum[out + x / f] += v;
                count[out + x / f] += 1;
            }
        }
        let px = sum
            .iter()
            .zip(&count)
            .map(|(&s, &n)| s / n.max(1) as f32)
            .collect();
        Plane {
            width: w,
            height: h,
            px,
        }
    }

    /// The 64×64 tent-filtered samples of a region.
    fn downsample(&self, r: Rect) -> [f32; 4096] {
        self.filter_rows(r.y, r.height).filter_cols(r.x, r.width)
    }

    /// Filters rows `y .. y + height` down to 64 (the vertical half of the tent filter).
    fn filter_rows(&self, y: usize, height: usize) -> Rows<'_> {
        let mut px = vec![0f32; 64 * self.width];
        for (s, out) in px.chunks_exact_mut(self.width).enumerate() {
            let (start, weights) = tent_kernel(height, s);
            for (k, &wt) in weights.iter().enumerate() {
                let row = (y + start + k) * self.width;
                for (o, &v) in out.iter_mut().zip(&self.px[row..row + self.width]) {
                    *o += wt * v;
                }
            }
        }
        Rows { plane: self, px }
    }
}

impl Rows<'_> {
    /// Filters columns `x .. x + width` of the 64 rows down to 64 (the horizontal half).
    fn filter_cols(&self, x: usize, width: usize) -> [f32; 4096] {
        let mut out = [0f32; 4096];
        let kernels: Vec<(usize, Vec<f32>)> = (0..64).map(|t| tent_kernel(width, t)).collect();
        for (s, row) in self.px.chunks_exact(self.plane.width).enumerate() {
            for (t, (start, weights)) in kernels.iter().enumerate() {
                let from = x + start;
                out[s * 64 + t] = weights
                    .iter()
                    .zip(&row[from..from + weights.len()])
                    .map(|(w, v)| w * v)
                    .sum();
            }
        }
        out
    }
}

/// The weights by which sample `s` (of 64) of a line of `n` pixels is made: two passes of the
/// reference's box filter (window `ceil(n / 128)`, averaged over the part inside the line),
/// then the pixel at `floor((s + 0.5) n / 64)`. Returns the first pixel and the weights.
fn tent_kernel(n: usize, s: usize) -> (usize, Vec<f32>) {
    let window = n.div_ceil(128).max(1);
    let half = (window + 2) / 2;
    // The box at i covers i - (window - half) ..= i + half - 1, clipped to the line.
    let range = |i: usize| {
        let lo = i.saturating_sub(window - half);
        let hi = (i + half - 1).min(n - 1);
        (lo, hi)
    };
    let centre = ((s as f64 + 0.5) * n as f64 / 64.0) as usize;
    let (lo, hi) = range(centre);
    let first = lo.saturating_sub(window - half);
    let last = (hi + half - 1).min(n - 1);
    let mut weights = vec![0f64; last - first + 1];
    let outer = 1.0 / (hi - lo + 1) as f64;
    for i in lo..=hi {
        let (a, b) = range(i);
        let inner = outer / (b - a + 1) as f64;
        for w in &mut weights[a - first..=b - first] {
            *w += inner;
        }
    }
    (first, weights.into_iter().map(|w| w as f32).collect())
}

/// The 16×64 DCT matrix: row `i` is frequency `i + 1` (the DC term is left out).
static DCT: LazyLock<[f32; 1024]> = LazyLock::new(|| {
    let mut d = [0f32; 1024];
    let scale = (2.0f64 / 64.0).sqrt();
    for i in 0..16 {
        for j in 0..64 {
            let angle = std::f64::consts::PI / 2.0 / 64.0 * (i + 1) as f64 * (2 * j + 1) as f64;
            d[i * 64 + j] = (scale * angle.cos()) as f32;
        }
    }
    d
});

/// The 16×16 DCT block (row-major) and the quality of a 64×64 downsample.
fn dct_of(a: &[f32; 4096]) -> ([f32; 256], u8) {
    let d = &*DCT;
    // T = D A (16×64), then B = T Dᵗ (16×16).
    let mut t = [0f32; 1024];
    for i in 0..16 {
        let out = &mut t[i * 64..i * 64 + 64];
        for k in 0..64 {
            let dk = d[i * 64 + k];
            for (o, &v) in out.iter_mut().zip(&a[k * 64..k * 64 + 64]) {
                *o += dk * v;
            }
        }
    }
    let mut b = [0f32; 256];
    for i in 0..16 {
        for j in 0..16 {
            b[i * 16 + j] = t[i * 64..i * 64 + 64]
                .iter()
                .zip(&d[j * 64..j * 64 + 64])
                .map(|(x, y)| x * y)
                .sum();
        }
    }
    (b, quality(a))
}

/// The reference's heuristic: gradients between neighbours, quantised to percent of full
/// scale, summed, divided by 90, capped at 100.
fn quality(a: &[f32; 4096]) -> u8 {
    let step = |u: f32, v: f32| (((u - v) * 100.0 / 255.0) as i32).unsigned_abs();
    let mut sum = 0u32;
    for i in 0..63 {
        for j in 0..64 {
            sum += step(a[i * 64 + j], a[(i + 1) * 64 + j]);
        }
    }
    for i in 0..64 {
        for j in 0..63 {
            sum += step(a[i * 64 + j], a[i * 64 + j + 1]);
        }
    }
    u8::try_from((sum / 90).min(100)).unwrap_or(100)
}

/// One bit per coefficient strictly above the median (the 128th smallest, as the reference's
/// Torben median).
fn bits(b: &[f32; 256]) -> Hash {
    let mut sorted = *b;
    let (_, median, _) = sorted.select_nth_unstable_by(127, f32::total_cmp);
    let median = *median;
    let mut hash = Hash([0; 32]);
    for (k, &v) in b.iter().enumerate() {
        if v > median {
            hash.set_bit(k);
        }
    }
    hash
}

/// The DCT blocks of the 8 dihedral variants. Reversing the rows of the image negates the
/// odd frequencies of the vertical axis (the even row indices, since row 0 is frequency 1),
/// reversing the columns those of the horizontal axis, and transposing the image transposes
/// the block.
fn dihedral_of(b: &[f32; 256]) -> [[f32; 256]; 8] {
    // (transpose, negate rows of even index, negate columns of even index), in the
    // reference's order: original, rot90 (anticlockwise), rot180, rot270, flip x (top to
    // bottom), flip y (left to right), flip +1 (transpose), flip -1 (anti-transpose).
    const VARIANTS: [(bool, bool, bool); 8] = [
        (false, false, false),
        (true, false, true),
        (false, true, true),
        (true, true, false),
        (false, true, false),
        (false, false, true),
        (true, false, false),
        (true, true, true),
    ];
    VARIANTS.map(|(transpose, neg_rows, neg_cols)| {
        let mut out = [0f32; 256];
        for i in 0..16 {
            for j in 0..16 {
                let negate = (neg_rows && i % 2 == 0) != (neg_cols && j % 2 == 0);
                let v = if negate {
                    -b[i * 16 + j]
                } else {
                    b[i * 16 + j]
                };
                if transpose {
                    out[j * 16 + i] = v;
                } else {
                    out[i * 16 + j] = v;
                }
            }
        }
        out
    })
}

/// A block list that stays fast at millions of hashes: a multi-index over the 256 bits.
///
/// The hash is cut into 16 chunks of 16 bits. Two hashes within [`MATCH_DISTANCE`] (31)
/// differ in at most one bit in at least one chunk (16 chunks × 2 bits would be 32), so a
/// lookup probes, for each chunk, its exact value and its 16 one-bit neighbours (272 buckets),
/// and checks the full distance of what it finds there. Removal takes entries out of their
/// buckets and leaves a hole that the next insert reuses.
pub struct Index<T> {
    /// Per entry: its hash as four words, and its value; `None` once removed.
    entries: Vec<Option<([u64; 4], T)>>,
    /// Per chunk, the entries whose chunk has that value (`65536` buckets each).
    buckets: Vec<Vec<Vec<u32>>>,
    free: Vec<u32>,
    len: usize,
}

impl<T: Clone + PartialEq> Default for Index<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + PartialEq> Index<T> {
    pub fn new() -> Self {
        Index {
            entries: Vec::new(),
            buckets: (0..16).map(|_| vec![Vec::new(); 1 << 16]).collect(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Adds `hash` under `value` (a value may hold many hashes; the same pair twice is two
    /// entries, found as one). Past `u32::MAX` entries (over 100 GiB) the insert is dropped.
    pub fn insert(&mut self, hash: Hash, value: T) {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.entries[slot as usize] = Some((hash.words(), value));
                slot
            }
            None => {
                let Ok(slot) = u32::try_from(self.entries.len()) else {
                    return;
                };
                self.entries.push(Some((hash.words(), value)));
                slot
            }
        };
        for (c, chunk) in self.buckets.iter_mut().enumerate() {
            chunk[usize::from(hash.chunk(c))].push(slot);
        }
        self.len += 1;
    }

    /// Drops every hash inserted with `value`. Linear in the number of entries.
    pub fn remove(&mut self, value: &T) {
        for slot in 0..self.entries.len() {
            let Some((words, v)) = &self.entries[slot] else {
                continue;
            };
            if v != value {
                continue;
            }
            let hash = words_to_hash(words);
            let Ok(slot32) = u32::try_from(slot) else {
                continue;
            };
            for (c, chunk) in self.buckets.iter_mut().enumerate() {
                chunk[usize::from(hash.chunk(c))].retain(|&s| s != slot32);
            }
            self.entries[slot] = None;
            self.free.push(slot32);
            self.len -= 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The closest entry within [`MATCH_DISTANCE`] (ties: any), with its distance.
    pub fn find(&self, hash: &Hash) -> Option<(&T, u32)> {
        let query = hash.words();
        let mut best: Option<(&T, u32)> = None;
        for (c, chunk) in self.buckets.iter().enumerate() {
            let v = hash.chunk(c);
            for probe in std::iter::once(v).chain((0..16).map(|b| v ^ (1 << b))) {
                for &slot in &chunk[usize::from(probe)] {
                    let Some(Some((words, value))) = self.entries.get(slot as usize) else {
                        continue;
                    };
                    let d: u32 = words
                        .iter()
                        .zip(&query)
                        .map(|(a, b)| (a ^ b).count_ones())
                        .sum();
                    if d <= MATCH_DISTANCE && best.is_none_or(|(_, bd)| d < bd) {
                        if d == 0 {
                            return Some((value, 0));
                        }
                        best = Some((value, d));
                    }
                }
            }
        }
        best
    }

    /// Approximate heap bytes held (entries and buckets), for capacity planning.
    pub fn heap_bytes(&self) -> usize {
        let entries = self.entries.capacity() * std::mem::size_of::<Option<([u64; 4], T)>>();
        let buckets: usize = self
            .buckets
            .iter()
            .flat_map(|chunk| chunk.iter())
            .map(|b| std::mem::size_of::<Vec<u32>>() + b.capacity() * 4)
            .sum();
        entries + buckets + self.free.capacity() * 4
    }
}

fn words_to_hash(words: &[u64; 4]) -> Hash {
    let mut bytes = [0u8; 32];
    for (i, w) in words.iter().enumerate() {
        bytes[8 * i..8 * i + 8].copy_from_slice(&w.to_be_bytes());
    }
    Hash(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_border_added_around_an_image_is_trimmed_for_the_query() {
        let inner = image::RgbImage::from_fn(200, 150, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x * y) % 256) as u8,
            ])
        });
        let mut framed = image::RgbImage::from_pixel(220, 170, image::Rgb([0, 0, 0]));
        image::imageops::replace(&mut framed, &inner, 10, 10);
        let (inner, framed) = (
            DynamicImage::ImageRgb8(inner),
            DynamicImage::ImageRgb8(framed),
        );
        assert_eq!(inside_margins(&framed), Some((10, 10, 200, 150)));
        let queries = query_hashes(&framed, hash(&framed));
        assert_eq!(queries.len(), 2);
        assert_eq!(queries[1].hash, hash(&inner).hash);
        assert_eq!(inside_margins(&inner), None);
    }
    use image::{Rgb, RgbImage};

    /// A deterministic photo-like test image: overlapping soft blobs of random size, place and
    /// colour over a gradient, so its DCT has energy spread over many coefficients.
    fn picture(w: u32, h: u32, seed: u32) -> DynamicImage {
        let mut state = u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32
        };
        let blobs: Vec<[f32; 6]> = (0..40)
            .map(|_| [next(), next(), 0.02 + 0.15 * next(), next(), next(), next()])
            .collect();
        DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let mut c = [60.0 * fx + 40.0, 50.0 * fy + 60.0, 80.0];
            for [bx, by, r, cr, cg, cb] in &blobs {
                let d2 = ((fx - bx).powi(2) + (fy - by).powi(2)) / (r * r);
                let a = (-d2).exp();
                c[0] += a * (cr * 255.0 - c[0]);
                c[1] += a * (cg * 255.0 - c[1]);
                c[2] += a * (cb * 255.0 - c[2]);
            }
            Rgb(c.map(|v| v.clamp(0.0, 255.0) as u8))
        }))
    }

    fn flip_bits(h: &Hash, bits: &[usize]) -> Hash {
        let mut out = *h;
        for &k in bits {
            out.0[31 - k / 8] ^= 1 << (k % 8);
        }
        out
    }

    #[test]
    fn distance_counts_differing_bits() {
        let a = Hash([0; 32]);
        assert_eq!(a.distance(&a), 0);
        assert_eq!(a.distance(&Hash([0xff; 32])), 256);
        assert_eq!(a.distance(&flip_bits(&a, &[0, 7, 100, 255])), 4);
    }

    #[test]
    fn hex_round_trips_in_reference_order() {
        let mut h = Hash([0; 32]);
        h.set_bit(255);
        h.set_bit(0);
        let s = h.to_string();
        assert_eq!(s.len(), 64);
        assert!(s.starts_with('8') && s.ends_with('1'), "{s}");
        assert_eq!(s.parse::<Hash>().unwrap(), h);
        let json = serde_json::to_string(&Pdq {
            hash: h,
            quality: 90,
        })
        .unwrap();
        assert_eq!(json, format!(r#"{{"hash":"{s}","quality":90}}"#));
        let back: Pdq = serde_json::from_str(&json).unwrap();
        assert_eq!(back.hash, h);
        assert!("abc".parse::<Hash>().is_err());
        assert!("g".repeat(64).parse::<Hash>().is_err());
        assert_eq!(s.to_uppercase().parse::<Hash>().unwrap(), h);
    }

    #[test]
    fn identical_images_hash_identically_with_half_the_bits_set() {
        let a = hash(&picture(300, 200, 1));
        let b = hash(&picture(300, 200, 1));
        assert_eq!(a.hash.distance(&b.hash), 0);
        assert_eq!(a.hash.distance(&Hash([0; 32])), 128);
        assert!(a.quality >= MIN_QUALITY, "{}", a.quality);
        let other = hash(&picture(300, 200, 4));
        assert!(a.hash.distance(&other.hash) > MATCH_DISTANCE);
    }

    #[test]
    fn dihedral_hashes_are_those_of_the_transformed_images() {
        let img = picture(1024, 768, 2);
        let d = dihedral(&img);
        assert_eq!(d[0], hash(&img));
        let transposed = {
            let rgb = img.to_rgb8();
            DynamicImage::ImageRgb8(RgbImage::from_fn(rgb.height(), rgb.width(), |x, y| {
                *rgb.get_pixel(y, x)
            }))
        };
        let expected = [
            img.clone(),
            img.rotate270(),
            img.rotate180(),
            img.rotate90(),
            img.flipv(),
            img.fliph(),
            transposed.clone(),
            transposed.rotate180(),
        ];
        // Exact on the DCT; the images differ from it by the reference's sampling, which is
        // not mirror-symmetric (box windows and pixel centres lean by a pixel or two), so a
        // few bits, and every other variant is far.
        let hashes: Vec<Hash> = expected.iter().map(|e| hash(e).hash).collect();
        for (i, got) in d.iter().enumerate() {
            for (j, want) in hashes.iter().enumerate() {
                let dist = got.hash.distance(want);
                match i == j {
                    true => assert!(dist <= 16, "variant {i}: {dist} bits off"),
                    false => assert!(dist > 64, "variant {i} near image {j}: {dist}"),
                }
            }
        }
    }

    #[test]
    fn a_flat_image_has_low_quality_and_a_tiny_one_none() {
        let flat = DynamicImage::ImageRgb8(RgbImage::from_pixel(200, 100, Rgb([90, 90, 90])));
        assert!(hash(&flat).quality < MIN_QUALITY);
        assert!(block_hashes(&flat).is_empty());
        let tiny = DynamicImage::ImageRgb8(RgbImage::from_pixel(4, 40, Rgb([9, 200, 90])));
        assert_eq!(hash(&tiny), unhashable());
    }

    #[test]
    fn tent_kernel_is_normalised_and_matches_two_box_passes() {
        for n in [5usize, 64, 100, 333, 1000] {
            for s in [0, 1, 31, 63] {
                let (start, w) = tent_kernel(n, s);
                let total: f32 = w.iter().sum();
                assert!((total - 1.0).abs() < 1e-4, "n {n} s {s}: {total}");
                // Brute force: filter a unit impulse at each pixel twice and sample.
                let window = n.div_ceil(128);
                let half = (window + 2) / 2;
                let boxed = |v: &[f64]| -> Vec<f64> {
                    (0..n)
                        .map(|i| {
                            let lo = i.saturating_sub(window - half);
                            let hi = (i + half - 1).min(n - 1);
                            v[lo..=hi].iter().sum::<f64>() / (hi - lo + 1) as f64
                        })
                        .collect()
                };
                let centre = ((s as f64 + 0.5) * n as f64 / 64.0) as usize;
                for k in 0..n {
                    let mut v = vec![0.0; n];
                    v[k] = 1.0;
                    let want = boxed(&boxed(&v))[centre];
                    let got = if k >= start && k < start + w.len() {
                        f64::from(w[k - start])
                    } else {
                        0.0
                    };
                    assert!((want - got).abs() < 1e-6, "n {n} s {s} k {k}");
                }
            }
        }
    }

    #[test]
    fn block_hashes_hold_the_image_its_flips_and_its_crops() {
        let img = picture(640, 480, 3);
        let block = block_hashes(&img);
        assert!(
            block.len() > 100 && block.len() <= 1296 + 8 + 3,
            "{}",
            block.len()
        );
        let unique: HashSet<_> = block.iter().collect();
        assert_eq!(unique.len(), block.len());
        for d in dihedral(&img) {
            assert!(block.contains(&d.hash));
        }
        let best = |h: Hash| block.iter().map(|b| b.distance(&h)).min().unwrap();
        let cropped = img.crop_imm(32, 24, 640 - 64, 480 - 48); // 5 % off each side
        assert!(
            best(hash(&cropped).hash) <= 8,
            "{}",
            best(hash(&cropped).hash)
        );
        let asymmetric = img.crop_imm(0, 48, 640 - 80, 480 - 48); // top 10 %, right 12.5 %
        assert!(best(hash(&asymmetric).hash) <= 8);
    }

    #[test]
    fn index_finds_within_31_bits_and_not_beyond() {
        let base = hash(&picture(200, 200, 5)).hash;
        let mut index = Index::new();
        assert!(index.is_empty());
        index.insert(base, "a");
        index.insert(hash(&picture(200, 200, 6)).hash, "b");
        assert_eq!(index.len(), 2);
        // Spread the flipped bits over the chunks (the worst case for the pigeonhole): the
        // first 16 touch every chunk once, the next 16 a second time.
        let flips: Vec<usize> = (0..16)
            .flat_map(|r| (0..16).map(move |c| c * 16 + r))
            .collect();
        for n in [0usize, 1, 15, 16, 17, 30, 31] {
            let q = flip_bits(&base, &flips[..n]);
            assert_eq!(index.find(&q), Some((&"a", n as u32)), "{n} bits");
        }
        for n in [32usize, 33, 40, 64] {
            let q = flip_bits(&base, &flips[..n]);
            assert_eq!(index.find(&q).map(|(v, _)| *v), None, "{n} bits");
        }
        // Every chunk but one two bits off: only the one-bit probe of the last chunk finds it.
        let two_per_chunk: Vec<usize> = (0..16)
            .flat_map(|c| [c * 16 + 3, c * 16 + 9])
            .take(31)
            .collect();
        let q = flip_bits(&base, &two_per_chunk);
        assert_eq!(index.find(&q), Some((&"a", 31)));
    }

    #[test]
    fn index_returns_the_closest_and_remove_drops_a_value() {
        let base = hash(&picture(200, 200, 7)).hash;
        let mut index = Index::new();
        index.insert(flip_bits(&base, &[1, 2, 3, 4, 5]), 1u32);
        index.insert(flip_bits(&base, &[1, 2]), 2);
        index.insert(flip_bits(&base, &[200, 201, 202]), 2);
        index.insert(flip_bits(&base, &[9, 10, 11, 12]), 3);
        assert_eq!(index.find(&base), Some((&2, 2)));
        index.remove(&2);
        assert_eq!(index.len(), 2);
        assert_eq!(index.find(&base), Some((&3, 4)));
        index.remove(&3);
        index.remove(&1);
        assert!(index.is_empty());
        assert_eq!(index.find(&base), None);
        index.insert(base, 4);
        assert_eq!(index.find(&base), Some((&4, 0)));
        assert_eq!(index.entries.len(), 4, "the holes are reused");
    }
}
