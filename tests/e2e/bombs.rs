//! Hostile files through the whole service: decompression bombs (a PNG, a WebP and a JPEG
//! that claim enormous canvases), a JPEG of 601 scans, a TIFF whose IFDs loop, a HEIF that
//! claims 100,000 items, and a PNG cut at every 1 KB boundary. Each is refused at the upload
//! (a 4xx naming the problem) or ends `rejected` with a reason, and a good file still
//! publishes after them.

use reqwest::StatusCode;

use crate::Ctx;
use crate::support::*;

/// CRC-32 (ISO-HDLC) as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind.as_slice(), data].concat()).to_be_bytes());
    out
}

/// A well-formed PNG whose header claims 65535 × 65535 RGB pixels (12 GiB decoded).
fn png_bomb() -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&65535u32.to_be_bytes());
    ihdr.extend_from_slice(&65535u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    // A zlib stream of a few zero bytes: the rest would inflate from nothing.
    let idat = [0x78, 0x9C, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01];
    [
        b"\x89PNG\r\n\x1a\n".to_vec(),
        png_chunk(b"IHDR", &ihdr),
        png_chunk(b"IDAT", &idat),
        png_chunk(b"IEND", &[]),
    ]
    .concat()
}

/// A WebP whose extended header claims a 16,777,216 × 16,777,216 canvas.
fn webp_bomb() -> Vec<u8> {
    let mut vp8x = b"VP8X".to_vec();
    vp8x.extend_from_slice(&10u32.to_le_bytes());
    vp8x.extend_from_slice(&[0, 0, 0, 0]);
    vp8x.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&u32::try_from(4 + vp8x.len()).unwrap().to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(&vp8x);
    out
}

/// A corpus JPEG whose frame header is patched to claim 65500 × 65500 (the frame of the image
/// itself, found by walking the segments: the EXIF thumbnail inside APP1 has one too).
fn jpeg_bomb() -> Vec<u8> {
    let mut jpeg = corpus("jpeg/ianare-DSCN0010.jpg");
    let mut at = 2;
    while !matches!(jpeg[at + 1], 0xC0 | 0xC2) {
        at += 2 + usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
    }
    // FF Cn, length (2), precision (1), height (2), width (2).
    jpeg[at + 5..at + 7].copy_from_slice(&65500u16.to_be_bytes());
    jpeg[at + 7..at + 9].copy_from_slice(&65500u16.to_be_bytes());
    jpeg
}

/// A corpus JPEG whose last scan is repeated 600 times (the chaos bench's progressive file of
/// 20,000 scans took 28 s to scan and was published: every viewer would walk it again).
fn jpeg_scans() -> Vec<u8> {
    let jpeg = corpus("jpeg/ianare-DSCN0010.jpg");
    let last = jpeg.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
    let scan = &jpeg[last..jpeg.len() - 2];
    let mut out = jpeg[..jpeg.len() - 2].to_vec();
    for _ in 0..600 {
        out.extend_from_slice(scan);
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// A little-endian TIFF whose first IFD names itself as the next one.
fn tiff_loop() -> Vec<u8> {
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    // ImageWidth, SHORT, 1, 16
    out.extend_from_slice(&[0x00, 0x01, 0x03, 0x00, 0x01, 0, 0, 0, 16, 0, 0, 0]);
    out.extend_from_slice(&8u32.to_le_bytes());
    out
}

fn heif_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(8 + body.len())
        .unwrap()
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(body);
    out
}

/// A HEIC whose item-information box claims 100,000 items (and holds none).
fn heif_items() -> Vec<u8> {
    let ftyp = heif_box(b"ftyp", b"heic\0\0\0\0mif1heic");
    let mut hdlr = vec![0u8; 4];
    hdlr.extend_from_slice(&[0; 4]);
    hdlr.extend_from_slice(b"pict");
    hdlr.extend_from_slice(&[0; 13]);
    let mut iinf = vec![1, 0, 0, 0];
    iinf.extend_from_slice(&100_000u32.to_be_bytes());
    let meta = [
        vec![0, 0, 0, 0],
        heif_box(b"hdlr", &hdlr),
        heif_box(b"iinf", &iinf),
    ]
    .concat();
    [ftyp, heif_box(b"meta", &meta)].concat()
}

pub async fn hostile_files_are_refused_or_rejected(c: &Ctx) {
    let Ctx {
        d,
        canary,
        file_name,
        uploader,
        ..
    } = c;
    let consent = d.consent(uploader, "identifiable", canary).await;
    let hopper = corpus("png/pillow-hopper.png");
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("a PNG claiming 65535 x 65535".into(), png_bomb()),
        ("a WebP claiming a 2^24 canvas".into(), webp_bomb()),
        ("a JPEG claiming 65500 x 65500".into(), jpeg_bomb()),
        ("a JPEG of 601 scans".into(), jpeg_scans()),
        ("a TIFF whose IFDs loop".into(), tiff_loop()),
        ("a HEIF claiming 100,000 items".into(), heif_items()),
    ];
    for cut in (1024..hopper.len()).step_by(1024) {
        files.push((
            format!("the hopper PNG cut at {cut}"),
            hopper[..cut].to_vec(),
        ));
    }
    let mut accepted = Vec::new();
    for (what, bytes) in files {
        let (status, body) = d.upload(uploader, bytes, file_name, &consent, None).await;
        match status {
            StatusCode::ACCEPTED => accepted.push((what, body["id"].as_str().unwrap().to_owned())),
            s if s.is_client_error() => {
                assert!(
                    body["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{what}: {body}"
                );
            }
            s => panic!("{what}: {s} {body}"),
        }
    }
    assert!(
        accepted.len() >= 5,
        "the server sniffs, the worker judges: {accepted:?}"
    );
    for (what, id) in &accepted {
        let state = d.settled(uploader, id).await;
        assert_eq!(state["state"], "rejected", "{what}: {state}");
        let reason = state["reason"].as_str().unwrap_or("");
        assert!(
            !reason.is_empty() && !reason.contains(canary.as_str()),
            "{what}: {state}"
        );
    }
    // The worker is still there: the whole file publishes.
    let good = d.upload_id(uploader, hopper, file_name, &consent).await;
    assert_eq!(d.settled(uploader, &good).await["state"], "published");
}
