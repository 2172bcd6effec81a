//! A GPS-tagged photo under an identifiable consent: accepted once per Idempotency-Key,
//! published clean with its pixels intact, served with ranges, and announced to the website
//! on `asepsis.events` (RabbitMQ).

use reqwest::StatusCode;
use serde_json::Value;

use crate::Ctx;
use crate::support::*;

/// Returns the identifiable consent and the published asset.
pub async fn gps_photo_is_published_clean(c: &Ctx) -> (String, String) {
    let Ctx {
        d,
        canary,
        file_name,
        uploader,
        ..
    } = c;
    let kind = d.kind;
    // The website's listener on RabbitMQ: a queue bound to the events exchange.
    let listener = if kind == Kind::RabbitS3 {
        let conn = lapin::Connection::connect(&amqp_url(), Default::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let exchange = format!("{}.events", d.queue);
        let durable = lapin::options::ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            durable,
            Default::default(),
        )
        .await
        .unwrap();
        let exclusive = lapin::options::QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let q = ch
            .queue_declare("".into(), exclusive, Default::default())
            .await
            .unwrap();
        ch.queue_bind(
            q.name().as_str().into(),
            exchange.as_str().into(),
            "asset.published".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
        Some((conn, ch, q.name().as_str().to_owned()))
    } else {
        None
    };

    // A GPS-tagged photo under an identifiable consent is published, clean, pixels intact.
    let (status, body) = d
        .post_json(
            uploader,
            "/v1/consents",
            consent_body("identifiable", canary),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let identifiable = body["id"].as_str().unwrap().to_owned();
    let original = jpeg_with_comment(canary);
    let (status, body) = d
        .upload(
            uploader,
            original.clone(),
            file_name,
            &identifiable,
            Some(canary.as_str()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let gps_photo = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["status_url"], format!("/v1/assets/{gps_photo}"));
    // The same Idempotency-Key again: the same asset, not a second one.
    let (status, again) = d
        .upload(
            uploader,
            original.clone(),
            file_name,
            &identifiable,
            Some(canary.as_str()),
        )
        .await;
    assert_eq!(
        (status, again["id"].as_str()),
        (StatusCode::ACCEPTED, Some(gps_photo.as_str()))
    );
    let done = d.settled(uploader, &gps_photo).await;
    assert_eq!(done["state"], "published", "{done}");
    assert_eq!(done["gps_in_original"], true);
    let removed = removed(&done);
    assert!(
        removed.contains(&"EXIF:GPSLatitude") && removed.contains(&"Comment"),
        "{removed:?}"
    );
    let (status, headers, media) = d.media(&gps_photo, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/jpeg");
    assert!(headers.contains_key("etag"));
    assert_no_metadata(&media, d.data.path());
    assert!(!media.windows(canary.len()).any(|w| w == canary.as_bytes()));
    assert_eq!(
        pixels(&media),
        pixels(&original),
        "stripping changed pixels"
    );
    let (status, headers, part) = d.media(&gps_photo, Some("bytes=100-199")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part, media[100..200]);
    assert_eq!(
        headers["content-range"],
        format!("bytes 100-199/{}", media.len())
    );
    // Hostile ranges: several, overlapping, reversed, malformed or too large for a u64 get the
    // whole body (RFC 9110 allows ignoring them); past the end is 416 with the length.
    let len = media.len();
    for range in [
        "bytes=0-9,20-29",
        "bytes=0-50,25-75",
        "bytes=9-2",
        "bytes=abc",
        "items=0-1",
        "bytes=0-99999999999999999999999",
    ] {
        let (status, _, body) = d.media(&gps_photo, Some(range)).await;
        assert_eq!((status, body.len()), (StatusCode::OK, len), "{range}");
    }
    for range in [format!("bytes={len}-"), "bytes=-0".to_owned()] {
        let (status, headers, _) = d.media(&gps_photo, Some(&range)).await;
        assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(headers["content-range"], format!("bytes */{len}"));
    }
    let (status, _, tail) = d.media(&gps_photo, Some("bytes=-999999999")).await;
    assert_eq!((status, tail.len()), (StatusCode::PARTIAL_CONTENT, len));
    if let Some((_, ch, q)) = &listener {
        let mut consumer = ch
            .basic_consume(
                q.as_str().into(),
                "e2e".into(),
                lapin::options::BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        let note = tokio::time::timeout(DEADLINE, futures::StreamExt::next(&mut consumer))
            .await
            .expect("an asset.published notification")
            .unwrap()
            .unwrap();
        let note: Value = serde_json::from_slice(&note.data).unwrap();
        assert_eq!(
            (note["asset_id"].as_str(), note["event"].as_str()),
            (Some(gps_photo.as_str()), Some("published"))
        );
    }
    if let Some((conn, _, _)) = listener {
        let _ = conn.close(200, "done".into()).await;
    }
    (identifiable, gps_photo)
}
