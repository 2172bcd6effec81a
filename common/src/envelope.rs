//! The encrypted blob format: AES-256-GCM (ring) in fixed-size segments, so blobs stream in
//! and out and a byte range is served by opening only the segments it covers.
//!
//! This module owns the byte layout and the per-segment sealing; it knows nothing of where
//! blobs or keys are stored, and never logs plaintext or keys.
//!
//! # Byte layout (format version 1)
//!
//! ```text
//! offset  size  field
//! 0       4     magic "ASPE"
//! 4       1     format version = 1
//! 5       1     L = length of the KEK id (1..=64)
//! 6       4     segment size S in bytes, u32 big-endian (1 KiB ..= 16 MiB)
//! 10      4     KEK version that wrapped the data key at encryption, u32 big-endian
//! 14      7     nonce prefix, random per blob
//! 21      L     KEK id, UTF-8
//! 21+L    ...   segments
//! ```
//!
//! Segment `i` (from 0) is the AES-256-GCM sealing of plaintext bytes `[i*S, (i+1)*S)`: every
//! segment holds exactly `S` plaintext bytes except the last, which holds 1..=S (or 0 when the
//! whole plaintext is empty: then there is exactly one, empty, segment). Each is followed by
//! its 16-byte tag, so a stored segment is `S + 16` bytes and the last one 16..=S+16.
//!
//! - nonce (12 bytes) = nonce prefix (7) ‖ i as u32 big-endian (4) ‖ last flag (1: 0x01 on
//!   the last segment, 0x00 otherwise);
//! - AAD = the whole header ‖ asset id (16 bytes) ‖ role (1 byte: 1 original, 2 derivative,
//!   3 export) ‖ i as u64 big-endian.
//!
//! So a flipped bit anywhere, a dropped, duplicated or reordered segment, a truncation at or
//! between segment boundaries, appended data, an edited header, and a segment moved from
//! another asset or role all fail authentication: the counter and the last flag are in the
//! nonce, and the header, asset and role are in the AAD. The data key (fresh and random per
//! asset) never encrypts more than 2^32 segments under one prefix.

use std::ops::Range;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;

pub const MAGIC: [u8; 4] = *b"ASPE";
pub const FORMAT_VERSION: u8 = 1;
pub const TAG_LEN: usize = 16;
pub const DEFAULT_SEGMENT_SIZE: u32 = 64 * 1024;
const MIN_SEGMENT: u32 = 1024;
const MAX_SEGMENT: u32 = 16 * 1024 * 1024;
const PREFIX_LEN: usize = 7;
const FIXED_HEADER: usize = 21;
const MAX_KEK_ID: usize = 64;

/// A 256-bit data key. It never leaves memory unwrapped and is not `Debug`.
#[derive(Clone)]
pub struct DataKey(pub(crate) [u8; 32]);

impl DataKey {
    /// # Errors
    /// [`EnvelopeError::Random`] when the system RNG fails.
    pub fn generate() -> Result<Self, EnvelopeError> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| EnvelopeError::Random)?;
        Ok(Self(key))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// What a blob is to its asset; bound into every segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobRole {
    Original = 1,
    Derivative = 2,
    Export = 3,
    /// A take-down notice's personal data (the claimant's), sealed under the take-down's key.
    Notice = 4,
    /// The counter-notices' personal data.
    CounterNotice = 5,
}

impl BlobRole {
    pub fn as_str(self) -> &'static str {
        match self {
            BlobRole::Original => "original",
            BlobRole::Derivative => "derivative",
            BlobRole::Export => "export",
            BlobRole::Notice => "notice",
            BlobRole::CounterNotice => "counter-notice",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    #[error("not an Asepsis blob (bad magic)")]
    BadMagic,
    #[error("unsupported blob format version {0}")]
    UnsupportedVersion(u8),
    #[error("malformed blob header: {0}")]
    BadHeader(&'static str),
    #[error("blob is truncated or has trailing bytes")]
    BadLength,
    #[error(
        "segment {segment} failed authentication (tampered, reordered, truncated, or another asset's or role's)"
    )]
    Tampered { segment: u64 },
    #[error("range {start}..{end} is outside the {len}-byte plaintext")]
    RangeOutOfBounds { start: u64, end: u64, len: u64 },
    #[error("random number generator failed")]
    Random,
    #[error("reading the plaintext: {0}")]
    Io(#[from] std::io::Error),
    #[error("reading the blob: {0}")]
    Source(String),
}

/// The parsed header of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub segment_size: u32,
    pub kek_id: String,
    pub kek_version: u32,
    pub nonce_prefix: [u8; PREFIX_LEN],
}

impl Header {
    /// A header with a fresh random nonce prefix.
    ///
    /// # Errors
    /// [`EnvelopeError::BadHeader`] for a segment size or KEK id out of range;
    /// [`EnvelopeError::Random`] when the RNG fails.
    pub fn new(segment_size: u32, kek_id: &str, kek_version: u32) -> Result<Self, EnvelopeError> {
        let mut nonce_prefix = [0u8; PREFIX_LEN];
        SystemRandom::new()
            .fill(&mut nonce_prefix)
            .map_err(|_| EnvelopeError::Random)?;
        let header = Self {
            segment_size,
            kek_id: kek_id.to_owned(),
            kek_version,
            nonce_prefix,
        };
        header.check()?;
        Ok(header)
    }

    fn check(&self) -> Result<(), EnvelopeError> {
        if !(MIN_SEGMENT..=MAX_SEGMENT).contains(&self.segment_size) {
            return Err(EnvelopeError::BadHeader("segment size out of range"));
        }
        if self.kek_id.is_empty() || self.kek_id.len() > MAX_KEK_ID {
            return Err(EnvelopeError::BadHeader("KEK id length out of range"));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        FIXED_HEADER + self.kek_id.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(u8::try_from(self.kek_id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&self.segment_size.to_be_bytes());
        out.extend_from_slice(&self.kek_version.to_be_bytes());
        out.extend_from_slice(&self.nonce_prefix);
        out.extend_from_slice(self.kek_id.as_bytes());
        out
    }

    /// Parse a header from the start of `bytes`; needs at most [`Header::MAX_LEN`] bytes.
    ///
    /// # Errors
    /// [`EnvelopeError`] naming what is wrong with the header.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let fixed = bytes.get(..FIXED_HEADER).ok_or(EnvelopeError::BadLength)?;
        if fixed[..4] != MAGIC {
            return Err(EnvelopeError::BadMagic);
        }
        if fixed[4] != FORMAT_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(fixed[4]));
        }
        let id_len = usize::from(fixed[5]);
        let be32 = |r: Range<usize>| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&fixed[r]);
            u32::from_be_bytes(b)
        };
        let mut nonce_prefix = [0u8; PREFIX_LEN];
        nonce_prefix.copy_from_slice(&fixed[14..21]);
        let id = bytes
            .get(FIXED_HEADER..FIXED_HEADER + id_len)
            .ok_or(EnvelopeError::BadLength)?;
        let kek_id = std::str::from_utf8(id)
            .map_err(|_| EnvelopeError::BadHeader("KEK id is not UTF-8"))?
            .to_owned();
        let header = Self {
            segment_size: be32(6..10),
            kek_version: be32(10..14),
            nonce_prefix,
            kek_id,
        };
        header.check()?;
        Ok(header)
    }

    /// The longest a header can be.
    pub const MAX_LEN: usize = FIXED_HEADER + MAX_KEK_ID;
}

/// Where the segments of a blob of a given stored length are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub header_len: u64,
    pub segment_size: u64,
    pub segments: u64,
    pub plaintext_len: u64,
}

impl Layout {
    /// # Errors
    /// [`EnvelopeError::BadLength`] when no plaintext length gives a blob of `blob_len` bytes.
    pub fn of(header: &Header, blob_len: u64) -> Result<Self, EnvelopeError> {
        let header_len = header.len() as u64;
        let seg = u64::from(header.segment_size);
        let body = blob_len
            .checked_sub(header_len)
            .ok_or(EnvelopeError::BadLength)?;
        let stored = seg + TAG_LEN as u64;
        let segments = body.div_ceil(stored).max(1);
        let last = body
            .checked_sub((segments - 1) * stored)
            .ok_or(EnvelopeError::BadLength)?;
        // The last segment holds 1..=S bytes, or 0 only when it is the only one.
        if last < TAG_LEN as u64 || (segments > 1 && last == TAG_LEN as u64) {
            return Err(EnvelopeError::BadLength);
        }
        Ok(Self {
            header_len,
            segment_size: seg,
            segments,
            plaintext_len: body - segments * TAG_LEN as u64,
        })
    }

    /// Stored length of the blob holding `plaintext_len` bytes.
    pub fn blob_len(header: &Header, plaintext_len: u64) -> u64 {
        let segments = plaintext_len
            .div_ceil(u64::from(header.segment_size))
            .max(1);
        header.len() as u64 + plaintext_len + segments * TAG_LEN as u64
    }

    /// The segments covering plaintext `range`, and the stored bytes that hold them.
    ///
    /// # Errors
    /// [`EnvelopeError::RangeOutOfBounds`] when `range` is not inside the plaintext.
    pub fn segments_for(
        &self,
        range: &Range<u64>,
    ) -> Result<(Range<u64>, Range<u64>), EnvelopeError> {
        if range.start > range.end || range.end > self.plaintext_len {
            return Err(EnvelopeError::RangeOutOfBounds {
                start: range.start,
                end: range.end,
                len: self.plaintext_len,
            });
        }
        let first = range.start / self.segment_size;
        let end = if range.end == range.start {
            first + 1
        } else {
            range.end.div_ceil(self.segment_size)
        }
        .min(self.segments);
        let stored = self.segment_size + TAG_LEN as u64;
        let blob_start = self.header_len + first * stored;
        let blob_end = (self.header_len + end * stored)
            .min(self.header_len + self.plaintext_len + self.segments * TAG_LEN as u64);
        Ok((first..end, blob_start..blob_end))
    }
}

/// Seals and opens the segments of one blob.
pub struct SegmentCipher {
    key: LessSafeKey,
    header: Header,
    aad_prefix: Vec<u8>,
}

impl SegmentCipher {
    pub fn new(key: &DataKey, header: Header, asset_id: Uuid, role: BlobRole) -> Self {
        // AES-256 takes any 32-byte key.
        let unbound = UnboundKey::new(&AES_256_GCM, &key.0).unwrap_or_else(|_| unreachable!());
        let mut aad_prefix = header.encode();
        aad_prefix.extend_from_slice(asset_id.as_bytes());
        aad_prefix.push(role as u8);
        Self {
            key: LessSafeKey::new(unbound),
            header,
            aad_prefix,
        }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn segment_size(&self) -> usize {
        self.header.segment_size as usize
    }

    fn nonce_aad(&self, index: u64, last: bool) -> Result<(Nonce, Vec<u8>), EnvelopeError> {
        let counter = u32::try_from(index).map_err(|_| EnvelopeError::BadLength)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..PREFIX_LEN].copy_from_slice(&self.header.nonce_prefix);
        nonce[PREFIX_LEN..11].copy_from_slice(&counter.to_be_bytes());
        nonce[11] = u8::from(last);
        let mut aad = Vec::with_capacity(self.aad_prefix.len() + 8);
        aad.extend_from_slice(&self.aad_prefix);
        aad.extend_from_slice(&index.to_be_bytes());
        Ok((Nonce::assume_unique_for_key(nonce), aad))
    }

    /// Seal plaintext segment `index` in place, appending its tag.
    ///
    /// # Errors
    /// [`EnvelopeError::BadLength`] past 2^32 segments.
    pub fn seal(&self, index: u64, last: bool, buf: &mut Vec<u8>) -> Result<(), EnvelopeError> {
        let tag = self.seal_in_place(index, last, buf)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Seal plaintext segment `index` in place and return its tag (stored right after it).
    ///
    /// # Errors
    /// [`EnvelopeError::BadLength`] past 2^32 segments.
    pub fn seal_in_place(
        &self,
        index: u64,
        last: bool,
        segment: &mut [u8],
    ) -> Result<[u8; TAG_LEN], EnvelopeError> {
        let (nonce, aad) = self.nonce_aad(index, last)?;
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), segment)
            .map_err(|_| EnvelopeError::BadLength)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Open stored segment `index` in place; returns the plaintext part of `buf`.
    ///
    /// # Errors
    /// [`EnvelopeError::Tampered`] when it does not authenticate as that segment of this blob.
    pub fn open<'a>(
        &self,
        index: u64,
        last: bool,
        buf: &'a mut [u8],
    ) -> Result<&'a mut [u8], EnvelopeError> {
        let (nonce, aad) = self.nonce_aad(index, last)?;
        self.key
            .open_in_place(nonce, Aad::from(aad), buf)
            .map_err(|_| EnvelopeError::Tampered { segment: index })
    }

    /// Encrypt a whole plaintext held in memory (small blobs and tests).
    ///
    /// # Errors
    /// As [`SegmentCipher::seal`].
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let seg = self.segment_size();
        let header = self.header.encode();
        let mut out =
            Vec::with_capacity(Layout::blob_len(&self.header, plaintext.len() as u64) as usize);
        out.extend_from_slice(&header);
        let count = plaintext.len().div_ceil(seg).max(1);
        let mut buf = Vec::with_capacity(seg + TAG_LEN);
        for (i, chunk) in plaintext
            .chunks(seg)
            .chain(plaintext.is_empty().then_some(&[][..]))
            .enumerate()
        {
            buf.clear();
            buf.extend_from_slice(chunk);
            self.seal(i as u64, i + 1 == count, &mut buf)?;
            out.extend_from_slice(&buf);
        }
        Ok(out)
    }

    /// Decrypt a whole blob held in memory.
    ///
    /// # Errors
    /// [`EnvelopeError`] when the blob is not exactly this blob, untouched.
    pub fn decrypt(&self, blob: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        self.check_header(blob)?;
        let layout = Layout::of(&self.header, blob.len() as u64)?;
        let mut out = Vec::with_capacity(layout.plaintext_len as usize);
        let body = &blob[layout.header_len as usize..];
        for (i, stored) in body.chunks(self.segment_size() + TAG_LEN).enumerate() {
            let mut buf = stored.to_vec();
            let last = i as u64 + 1 == layout.segments;
            out.extend_from_slice(self.open(i as u64, last, &mut buf)?);
        }
        Ok(out)
    }

    /// The blob must start with exactly this cipher's header.
    fn check_header(&self, blob: &[u8]) -> Result<(), EnvelopeError> {
        let header = self.header.encode();
        if blob.get(..header.len()) != Some(&header[..]) {
            return Err(EnvelopeError::Tampered { segment: 0 });
        }
        Ok(())
    }

    /// Decrypt the stored bytes `stored` (segments `segments` of a blob laid out as
    /// `layout`) and return exactly plaintext `range`.
    ///
    /// # Errors
    /// [`EnvelopeError::Tampered`] when a segment does not authenticate.
    pub fn decrypt_range(
        &self,
        layout: &Layout,
        segments: Range<u64>,
        stored: &[u8],
        range: Range<u64>,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let mut plain = Vec::with_capacity(stored.len());
        for (k, chunk) in stored.chunks(self.segment_size() + TAG_LEN).enumerate() {
            let index = segments.start + k as u64;
            let mut buf = chunk.to_vec();
            plain.extend_from_slice(self.open(index, index + 1 == layout.segments, &mut buf)?);
        }
        let offset = segments.start * layout.segment_size;
        let from = (range.start - offset) as usize;
        let to = (range.end - offset) as usize;
        plain
            .get(from..to)
            .map(<[u8]>::to_vec)
            .ok_or(EnvelopeError::BadLength)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEG: u32 = 1024;

    fn cipher(asset: Uuid, role: BlobRole) -> (DataKey, SegmentCipher) {
        let key = DataKey::generate().unwrap();
        let header = Header::new(SEG, "local", 1).unwrap();
        let c = SegmentCipher::new(&key, header, asset, role);
        (key, c)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn whole_blobs_round_trip_at_the_edges() {
        let s = SEG as usize;
        for len in [0, 1, s - 1, s, s + 1, 2 * s, 7 * s + 5] {
            let (_, c) = cipher(Uuid::new_v4(), BlobRole::Derivative);
            assert_eq!(
                c.decrypt(&c.encrypt(&data(len)).unwrap()).unwrap(),
                data(len)
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn ranges_return_exactly_the_bytes_asked(len in 1usize..6000, a in 0usize..6000, b in 0usize..6000) {
            let (_, c) = cipher(Uuid::new_v4(), BlobRole::Original);
            let plain = data(len);
            let blob = c.encrypt(&plain).unwrap();
            let layout = Layout::of(c.header(), blob.len() as u64).unwrap();
            let (start, end) = ((a.min(b) % (len + 1)) as u64, (a.max(b) % (len + 1)) as u64);
            let (start, end) = (start.min(end), start.max(end));
            let (segs, stored) = layout.segments_for(&(start..end)).unwrap();
            let got = c.decrypt_range(&layout, segs, &blob[stored.start as usize..stored.end as usize], start..end).unwrap();
            prop_assert_eq!(&got[..], &plain[start as usize..end as usize]);
        }
    }

    #[test]
    fn every_tamper_is_detected() {
        let asset = Uuid::new_v4();
        let (key, c) = cipher(asset, BlobRole::Original);
        let plain = data(3 * SEG as usize + 100);
        let blob = c.encrypt(&plain).unwrap();
        let stored = SEG as usize + TAG_LEN;
        let h = c.header().len();
        let seg = |i: usize| blob[h + i * stored..(h + (i + 1) * stored).min(blob.len())].to_vec();
        let join = |parts: &[Vec<u8>]| [blob[..h].to_vec(), parts.concat()].concat();

        // A flipped bit anywhere.
        for pos in (0..blob.len())
            .step_by(97)
            .chain([0, 5, h - 1, blob.len() - 1])
        {
            let mut bad = blob.clone();
            bad[pos] ^= 0x10;
            assert!(c.decrypt(&bad).is_err(), "bit flip at {pos}");
        }
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("dropped", join(&[seg(0), seg(2), seg(3)])),
            (
                "duplicated",
                join(&[seg(0), seg(0), seg(1), seg(2), seg(3)]),
            ),
            ("reordered", join(&[seg(1), seg(0), seg(2), seg(3)])),
            ("truncated at a boundary", join(&[seg(0), seg(1)])),
            ("truncated inside", blob[..blob.len() - 7].to_vec()),
            ("appended", [blob.clone(), seg(1)].concat()),
        ];
        for (what, bad) in cases {
            assert!(c.decrypt(&bad).is_err(), "{what}");
        }
        // Another asset's or role's AAD.
        let header = c.header().clone();
        let other_asset =
            SegmentCipher::new(&key, header.clone(), Uuid::new_v4(), BlobRole::Original);
        assert!(matches!(
            other_asset.decrypt(&blob),
            Err(EnvelopeError::Tampered { segment: 0 })
        ));
        let other_role = SegmentCipher::new(&key, header, asset, BlobRole::Derivative);
        assert!(matches!(
            other_role.decrypt(&blob),
            Err(EnvelopeError::Tampered { .. })
        ));
        // Another key.
        let other_key = SegmentCipher::new(
            &DataKey::generate().unwrap(),
            c.header().clone(),
            asset,
            BlobRole::Original,
        );
        assert!(matches!(
            other_key.decrypt(&blob),
            Err(EnvelopeError::Tampered { .. })
        ));
    }

    #[test]
    fn header_round_trips_and_rejects_garbage() {
        let h = Header::new(DEFAULT_SEGMENT_SIZE, "local-kek", 7).unwrap();
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        assert!(matches!(
            Header::decode(b"JUNKJUNKJUNKJUNKJUNKJUNK"),
            Err(EnvelopeError::BadMagic)
        ));
        let mut v2 = h.encode();
        v2[4] = 2;
        assert!(matches!(
            Header::decode(&v2),
            Err(EnvelopeError::UnsupportedVersion(2))
        ));
        assert!(Header::decode(&h.encode()[..10]).is_err());
    }
}
