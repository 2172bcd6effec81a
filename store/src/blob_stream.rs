//! Encrypted blob streams: the envelope format (`asepsis_common::envelope`) sealed from an
//! async reader and opened from a stream of stored chunks, holding at most a segment or two
//! in memory, so a multi-gigabyte upload never sits whole in memory. Never logs plaintext.

use asepsis_common::envelope::{
    BlobRole, DataKey, EnvelopeError, Header, Layout, SegmentCipher, TAG_LEN,
};
use bytes::{Bytes, BytesMut};
use futures::{Stream, TryStreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};
use uuid::Uuid;

/// Encrypt `reader` as a stream of stored chunks (the header, then one sealed segment each),
/// holding at most two segments in memory.
pub fn encrypt_stream<R: AsyncRead + Unpin + Send + 'static>(
    cipher: SegmentCipher,
    reader: R,
) -> impl Stream<Item = Result<Bytes, EnvelopeError>> + Send {
    struct State<R> {
        cipher: SegmentCipher,
        reader: R,
        next: Option<Vec<u8>>,
        index: u64,
        started: bool,
        done: bool,
    }
    async fn fill<R: AsyncRead + Unpin>(
        reader: &mut R,
        size: usize,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let mut buf = Vec::with_capacity(size + TAG_LEN);
        (&mut *reader)
            .take(size as u64)
            .read_to_end(&mut buf)
            .await?;
        Ok(buf)
    }
    let state = State {
        cipher,
        reader,
        next: None,
        index: 0,
        started: false,
        done: false,
    };
    futures::stream::try_unfold(state, |mut s| async move {
        if s.done {
            return Ok(None);
        }
        let seg = s.cipher.segment_size();
        if !s.started {
            s.started = true;
            s.next = Some(fill(&mut s.reader, seg).await?);
            return Ok(Some((Bytes::from(s.cipher.header().encode()), s)));
        }
        let mut current = s.next.take().unwrap_or_default();
        // A segment is the last when it is short, or when nothing follows it.
        let following = if current.len() == seg {
            fill(&mut s.reader, seg).await?
        } else {
            Vec::new()
        };
        let last = following.is_empty();
        s.cipher.seal(s.index, last, &mut current)?;
        s.index += 1;
        s.done = last;
        s.next = Some(following);
        Ok(Some((Bytes::from(current), s)))
    })
}

/// Decrypt a stored blob of `blob_len` bytes arriving as `chunks` (of any sizes) into
/// plaintext chunks, one per segment, holding at most one segment and one chunk in memory.
pub fn decrypt_stream<S, E>(
    key: DataKey,
    asset_id: Uuid,
    role: BlobRole,
    blob_len: u64,
    chunks: S,
) -> impl Stream<Item = Result<Bytes, EnvelopeError>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::fmt::Display,
{
    struct State<S> {
        chunks: S,
        buf: BytesMut,
        cipher: Option<(SegmentCipher, Layout)>,
        index: u64,
        key: DataKey,
        asset_id: Uuid,
        role: BlobRole,
        blob_len: u64,
    }
    let state = State {
        chunks: chunks.map_err(|e| EnvelopeError::Source(e.to_string())),
        buf: BytesMut::new(),
        cipher: None,
        index: 0,
        key,
        asset_id,
        role,
        blob_len,
    };
    futures::stream::try_unfold(state, |mut s| async move {
        if s.cipher.is_none() {
            while s.buf.len() < Header::MAX_LEN.min(s.blob_len as usize) {
                match s.chunks.try_next().await? {
                    Some(chunk) => s.buf.extend_from_slice(&chunk),
                    None => break,
                }
            }
            let header = Header::decode(&s.buf)?;
            let layout = Layout::of(&header, s.blob_len)?;
            let _ = s.buf.split_to(header.len());
            s.cipher = Some((
                SegmentCipher::new(&s.key, header, s.asset_id, s.role),
                layout,
            ));
        }
        let Some((cipher, layout)) = s.cipher.as_ref() else {
            return Ok(None);
        };
        if s.index >= layout.segments {
            if !s.buf.is_empty() || s.chunks.try_next().await?.is_some() {
                return Err(EnvelopeError::BadLength);
            }
            return Ok(None);
        }
        let last = s.index + 1 == layout.segments;
        let want = if last {
            (layout.plaintext_len - s.index * layout.segment_size) as usize + TAG_LEN
        } else {
            layout.segment_size as usize + TAG_LEN
        };
        while s.buf.len() < want {
            match s.chunks.try_next().await? {
                Some(chunk) => s.buf.extend_from_slice(&chunk),
                None => return Err(EnvelopeError::BadLength),
            }
        }
        let mut segment = s.buf.split_to(want);
        let plain_len = cipher.open(s.index, last, &mut segment)?.len();
        segment.truncate(plain_len);
        s.index += 1;
        Ok(Some((segment.freeze(), s)))
    })
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

    async fn stream_round_trip(len: usize) {
        let asset = Uuid::new_v4();
        let (key, c) = cipher(asset, BlobRole::Original);
        let plain = data(len);
        let expected_blob = Layout::blob_len(c.header(), len as u64);
        let chunks: Vec<Bytes> = encrypt_stream(c, std::io::Cursor::new(plain.clone()))
            .try_collect()
            .await
            .unwrap();
        let blob: Vec<u8> = chunks.concat();
        assert_eq!(blob.len() as u64, expected_blob, "len {len}");
        // Re-chunk at odd sizes to exercise reassembly.
        let odd: Vec<Result<Bytes, std::io::Error>> = blob
            .chunks(333)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let out: Vec<Bytes> = decrypt_stream(
            key,
            asset,
            BlobRole::Original,
            blob.len() as u64,
            futures::stream::iter(odd),
        )
        .try_collect()
        .await
        .unwrap();
        assert_eq!(out.concat(), plain, "len {len}");
    }

    #[tokio::test]
    async fn round_trips_at_the_edges() {
        let s = SEG as usize;
        for len in [0, 1, s - 1, s, s + 1, 2 * s, 7 * s + 5] {
            stream_round_trip(len).await;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn round_trips_at_random_sizes(len in 0usize..20_000) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(stream_round_trip(len));
        }
    }

    #[tokio::test]
    async fn streamed_tampering_is_detected() {
        let asset = Uuid::new_v4();
        let (key, c) = cipher(asset, BlobRole::Original);
        let blob = c.encrypt(&data(2 * SEG as usize)).unwrap();
        let h = c.header().len();
        let truncated = blob[..h + SEG as usize + TAG_LEN].to_vec();
        for bad in [truncated] {
            let one: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::from(bad.clone()))];
            let out: Result<Vec<Bytes>, _> = decrypt_stream(
                key.clone(),
                asset,
                BlobRole::Original,
                bad.len() as u64,
                futures::stream::iter(one),
            )
            .try_collect()
            .await;
            assert!(out.is_err());
        }
    }
}
