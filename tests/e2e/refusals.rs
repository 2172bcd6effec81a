//! Refusals a person can act on: a minor without a guardian, another tenant's ids, a role
//! that may not upload, no key, a file that is not an image.

use reqwest::StatusCode;

use crate::Ctx;
use crate::support::*;

pub async fn refusals_name_the_problem(c: &Ctx, deidentified: &str, held: &str) {
    let Ctx {
        d,
        canary,
        uploader,
        reviewer,
        stranger,
        ..
    } = c;
    // Refusals a person can act on.
    let mut minor = consent_body("identifiable", canary);
    minor["minor"] = true.into();
    let (status, body) = d.post_json(uploader, "/v1/consents", minor).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"].as_str().unwrap().starts_with("guardian"),
        "{body}"
    );
    assert_eq!(
        d.get_json(stranger, &format!("/v1/assets/{held}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        d.get_json(stranger, &format!("/v1/consents/{deidentified}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = d
        .upload(
            reviewer,
            corpus("png/pillow-hopper.png"),
            "x.png",
            deidentified,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        d.get_json("asp_nope", "/v1/review").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = d
        .upload(
            uploader,
            b"%PDF-1.7 not an image".to_vec(),
            "x.pdf",
            deidentified,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
}
