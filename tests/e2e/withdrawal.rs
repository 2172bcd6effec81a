//! Withdrawal: the asset is unpublished at once (`/media` 404), its state says so, and the
//! consent can no longer cover an upload.

use reqwest::StatusCode;
use serde_json::json;

use crate::Ctx;
use crate::support::*;

pub async fn withdrawal_unpublishes_at_once(c: &Ctx, identifiable: &str, gps_photo: &str) {
    let Ctx {
        d,
        uploader,
        officer,
        ..
    } = c;
    // Withdrawal: /media answers 404 at once.
    let (status, body) = d
        .post_json(
            officer,
            &format!("/v1/consents/{identifiable}/withdraw"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["assets_withdrawn"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    assert_eq!(d.media(gps_photo, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        d.get_json(uploader, &format!("/v1/assets/{gps_photo}"))
            .await
            .1["state"],
        "withdrawn"
    );
    let (status, body) = d
        .upload(
            uploader,
            corpus("png/pillow-hopper.png"),
            "x.png",
            identifiable,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("withdrawn"),
        "{body}"
    );
}
