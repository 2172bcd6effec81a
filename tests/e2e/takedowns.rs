//! A DMCA take-down over HTTP: a notice missing an element refused naming it, a complete one
//! taking the photo off `/media` before the answer, the re-upload of the same file in another
//! tenant rejected naming the notice, the uploader's counter-notice scheduling the restore,
//! the claimant's court action cancelling it, and the repeat-infringer counts. The claimant's
//! name is the canary: the logs are checked for it with the rest. Runs last: it blocks its
//! photo from then on.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::Ctx;
use crate::support::*;

fn notice(asset: &str, canary: &str) -> Value {
    json!({
        "assets": [format!("/media/{asset}")],
        "claimant": {"name": format!("{canary} claimant"), "contact": format!("{canary}@example.org")},
        "work": "a photograph of ours",
        "statements": {"good_faith": true, "accurate_under_penalty_of_perjury": true},
        "signature": format!("/{canary}/"),
    })
}

pub async fn a_take_down_runs_its_course(c: &Ctx) {
    let Ctx {
        d,
        uploader,
        reviewer,
        officer,
        stranger,
        canary,
        ..
    } = c;
    let photo = corpus("jpeg/ianare-sanyo-vpcsx550.jpg");
    let consent = d.consent(uploader, "identifiable", canary).await;
    let asset = d
        .upload_id(uploader, photo.clone(), "x.jpg", &consent)
        .await;
    if d.settled(uploader, &asset).await["state"] == "held" {
        let path = format!("/v1/assets/{asset}/review");
        let (status, body) = d
            .post_json(reviewer, &path, json!({"decision": "approve"}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(d.media(&asset, None).await.0, StatusCode::OK);

    // Only the desk enters notices; one missing an element is refused, naming it.
    let (status, _) = d
        .post_json(uploader, "/v1/takedowns", notice(&asset, canary))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut incomplete = notice(&asset, canary);
    incomplete.as_object_mut().unwrap().remove("signature");
    let (status, body) = d.post_json(officer, "/v1/takedowns", incomplete).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["error"],
        "signature: required (17 U.S.C. 512(c)(3)(A)(i))"
    );
    let mut typed = notice(&asset, canary);
    typed["claimant"] = json!(format!("{canary} as a string"));
    let (status, body) = d.post_json(officer, "/v1/takedowns", typed).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(!body.to_string().contains(canary.as_str()), "{body}");

    // The notice: off the website before the answer. Sent twice with one Idempotency-Key (a
    // lost answer, retried): one take-down (the listing below holds one).
    let key = format!("notice-{asset}");
    let mut answers = Vec::new();
    for _ in 0..2 {
        let res = d
            .client
            .post(format!("{}/v1/takedowns", d.base))
            .bearer_auth(officer)
            .header("Idempotency-Key", &key)
            .json(&notice(&asset, canary))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        answers.push(res.json::<Value>().await.unwrap());
    }
    let entered = answers.remove(0);
    assert_eq!(answers[0]["id"], entered["id"], "{answers:?}");
    assert!(
        entered["blocked_hashes"].as_u64().unwrap() > 1000,
        "{entered}"
    );
    let id = entered["id"].as_str().unwrap().to_owned();
    assert_eq!(d.media(&asset, None).await.0, StatusCode::NOT_FOUND);
    let (_, status_now) = d.get_json(uploader, &format!("/v1/assets/{asset}")).await;
    assert_eq!(status_now["state"], "taken_down", "{status_now}");
    let (status, view) = d.get_json(uploader, &format!("/v1/takedowns/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["status"], "taken_down");
    assert_eq!(view["timeline"][1]["step"], "notified", "{view}");
    assert!(!view.to_string().contains(canary.as_str()), "{view}");
    let (status, _) = d.get_json(stranger, &format!("/v1/takedowns/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The same file uploaded again, by another tenant: rejected, naming the notice.
    let theirs = d.consent(stranger, "identifiable", canary).await;
    let copy = d.upload_id(stranger, photo, "y.jpg", &theirs).await;
    let settled = d.settled(stranger, &copy).await;
    assert_eq!(settled["state"], "rejected", "{settled}");
    assert_eq!(
        settled["reason"],
        format!("matches content taken down under notice {id}")
    );

    // The uploader counters: the restore is scheduled; the claimant's court action cancels it.
    let counter = json!({
        "statements": {"good_faith_mistake": true, "consent_to_jurisdiction": true},
        "signature": "/clinic counsel/",
    });
    let path = format!("/v1/takedowns/{id}/counter-notice");
    let (status, _) = d.post_json(stranger, &path, counter.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, countered) = d.post_json(uploader, &path, counter).await;
    assert_eq!(status, StatusCode::OK, "{countered}");
    assert!(countered["restore_due"].is_string(), "{countered}");
    let path = format!("/v1/takedowns/{id}/court-action");
    let (status, upheld) = d.post_json(officer, &path, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{upheld}");
    assert_eq!(upheld["status"], "upheld");
    let steps: Vec<&str> = upheld["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "received",
            "notified",
            "counter_noticed",
            "court_action",
            "upheld"
        ]
    );
    assert_eq!(d.media(&asset, None).await.0, StatusCode::NOT_FOUND);

    // Repeat infringers: the notices upheld against the uploader's key.
    let key_id = uploader.split('_').nth(1).unwrap();
    let (status, listing) = d
        .get_json(officer, &format!("/v1/takedowns?uploader={key_id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    assert_eq!(
        listing["takedowns"].as_array().unwrap().len(),
        1,
        "{listing}"
    );
    assert_eq!(listing["upheld"]["by_uploader"][key_id], 1, "{listing}");
    assert_eq!(listing["upheld"]["by_tenant"]["clinic-a"], 1, "{listing}");
}
