//! De-identified consents: an image that cannot be face-scanned is held and a reviewer
//! approves it; with the face model a face is redacted, re-scanned and published, without it
//! the photo is held.

use reqwest::StatusCode;
use serde_json::json;

use crate::Ctx;
use crate::support::*;

/// Returns the de-identified consent and the asset the reviewer approved.
pub async fn held_images_are_reviewed_and_faces_redacted(c: &Ctx) -> (String, String) {
    let Ctx {
        d,
        canary,
        file_name,
        uploader,
        reviewer,
        ..
    } = c;
    let kind = d.kind;
    // De-identified consent and an image that cannot be face-scanned (a CIELab TIFF has no
    // decoder here; without a model, nothing is scanned): held; the reviewer approves.
    let deidentified = d.consent(uploader, "deidentified", canary).await;
    let held = d
        .upload_id(
            uploader,
            corpus("tiff/pillow-hopper.Lab.tif"),
            file_name,
            &deidentified,
        )
        .await;
    let state = d.settled(uploader, &held).await;
    assert_eq!(
        (state["state"].as_str(), state["face_scan"].as_str()),
        (Some("held"), Some("not_scanned")),
        "{state}"
    );
    assert_eq!(d.media(&held, None).await.0, StatusCode::NOT_FOUND);
    let (status, queue) = d.get_json(reviewer, "/v1/review").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        queue
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == held.as_str()),
        "{queue}"
    );
    let (status, body) = d
        .post_json(
            reviewer,
            &format!("/v1/assets/{held}/review"),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("published")),
        "{body}"
    );
    assert_eq!(d.media(&held, None).await.0, StatusCode::OK);

    // With the face model (`up`): a face under a de-identified consent is redacted, re-scanned
    // and published; without it (the separate worker), the same photo is held.
    let face = d
        .upload_id(
            uploader,
            corpus("png/pillow-hopper.png"),
            file_name,
            &deidentified,
        )
        .await;
    let state = d.settled(uploader, &face).await;
    if kind == Kind::Embedded {
        assert_eq!(state["state"], "published", "{state}");
        assert!(state["redacted_faces"].as_u64().unwrap() >= 1, "{state}");
        assert_eq!(state["face_scan"], "none", "the re-scan after redaction");
        let (status, headers, media) = d.media(&face, None).await;
        assert_eq!(
            (status, &headers["content-type"]),
            (StatusCode::OK, &"image/png".parse().unwrap())
        );
        assert_ne!(pixels(&media), pixels(&corpus("png/pillow-hopper.png")));
    } else {
        assert_eq!(state["state"], "held", "{state}");
    }
    (deidentified, held)
}
