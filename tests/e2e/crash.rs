//! A malformed file ends rejected with a reason and the worker keeps going; a worker killed
//! with SIGKILL mid-batch loses nothing and publishes each asset exactly once.

use reqwest::StatusCode;

use crate::Ctx;
use crate::support::*;

pub async fn bad_files_and_a_killed_worker_lose_nothing(c: &mut Ctx) {
    let Ctx {
        d,
        canary,
        file_name,
        uploader,
        ..
    } = c;
    let kind = d.kind;
    // A malformed file ends rejected with a reason; the next upload goes through.
    let live = d.consent(uploader, "identifiable", canary).await;
    let broken = d
        .upload_id(
            uploader,
            corpus("malformed/pillow-broken.png"),
            file_name,
            &live,
        )
        .await;
    let state = d.settled(uploader, &broken).await;
    assert_eq!(state["state"], "rejected", "{state}");
    assert!(state["reason"].as_str().unwrap().contains("png"), "{state}");
    let next = d
        .upload_id(uploader, corpus("png/pillow-hopper.png"), file_name, &live)
        .await;
    assert_eq!(d.settled(uploader, &next).await["state"], "published");

    // The worker killed with SIGKILL while jobs are in hand: every asset still ends published,
    // with exactly one `published` event. A separate worker is stopped first, so the broker
    // hands it deliveries it cannot finish; it is let go and killed at once.
    if kind == Kind::RabbitS3 {
        d.signal_worker("-STOP");
    }
    let mut batch = Vec::new();
    for i in 0..8 {
        let file = if i % 2 == 0 {
            "jpeg/ianare-DSCN0010.jpg"
        } else {
            "png/pillow-hopper.png"
        };
        let (status, body) = d
            .upload(uploader, corpus(file), file_name, &live, None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        batch.push(body["id"].as_str().unwrap().to_owned());
    }
    if kind == Kind::RabbitS3 {
        d.signal_worker("-CONT");
    }
    d.kill_and_restart_worker();
    for id in &batch {
        let state = d.settled(uploader, id).await;
        assert_eq!(state["state"], "published", "{state}");
        let (_, prov) = d
            .get_json(uploader, &format!("/v1/assets/{id}/provenance"))
            .await;
        assert_eq!(published_events(&prov), 1, "{prov}");
    }
}
