//! The service end to end, as a clinic, a reviewer, a privacy officer and the website use it:
//! the real binary, once as `asepsis up` on its embedded defaults and once as separate
//! `asepsis ingest` + `asepsis worker` processes on RabbitMQ and S3 (moto), with corpus files.
//! Each flow has its file; one deployment per kind runs them in order (later flows use what
//! earlier ones made). Every process's log is captured and must hold none of the canary
//! strings planted in metadata values, client file names, consent fields and keys.
//! `import` (the batch import, with killed importers and a killed server) starts an `asepsis up`
//! of its own per test, and so does `hostile` (raw TCP a client library would tidy). `ops_page` drives the operator's page in Chromium.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bombs;
mod crash;
mod dicom;
mod hostile;
mod import;
mod ops_page;
mod publish;
mod refusals;
mod review;
mod rights;
mod support;
mod takedowns;
mod withdrawal;

use reqwest::StatusCode;
use support::{Deployment, Kind};
use uuid::Uuid;

/// What every flow shares: the deployment, its keys, and the canary planted everywhere.
pub struct Ctx {
    pub d: Deployment,
    pub canary: String,
    /// A client file name holding the canary.
    pub file_name: String,
    pub uploader: String,
    pub reviewer: String,
    pub officer: String,
    /// An uploader of another tenant.
    pub stranger: String,
}

async fn whole_service(kind: Kind) {
    let d = Deployment::start(kind).await;
    let canary = format!("CANARY{}", Uuid::new_v4().simple());
    let ready = d
        .client
        .get(format!("{}/readyz", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready = ready.text().await.unwrap();
    assert_eq!(
        ready.contains("face detector unavailable"),
        kind == Kind::RabbitS3,
        "{ready}"
    );
    let mut c = Ctx {
        uploader: d.key("clinic-a", "uploader"),
        reviewer: d.key("clinic-a", "reviewer"),
        officer: d.key("clinic-a", "privacy-officer"),
        stranger: d.key("clinic-b", "uploader"),
        file_name: format!("{canary}-face.jpg"),
        canary,
        d,
    };

    let (identifiable, gps_photo) = publish::gps_photo_is_published_clean(&c).await;
    let (deidentified, held) = review::held_images_are_reviewed_and_faces_redacted(&c).await;
    withdrawal::withdrawal_unpublishes_at_once(&c, &identifiable, &gps_photo).await;
    refusals::refusals_name_the_problem(&c, &deidentified, &held).await;
    crash::bad_files_and_a_killed_worker_lose_nothing(&mut c).await;
    bombs::hostile_files_are_refused_or_rejected(&c).await;
    dicom::scans_are_deidentified_by_the_basic_profile(&c).await;
    rights::a_subjects_rights_work_end_to_end(&c).await;
    takedowns::a_take_down_runs_its_course(&c).await;
    ops_page::an_operator_replays_a_dead_letter_in_the_browser(&mut c).await;

    // Every privileged action is in the signed audit log, with ids only.
    let (status, audit) = c.d.get_json(&c.officer, "/v1/audit").await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["entry"]["record"]["action"].as_str())
        .collect();
    for action in [
        "keys-create",
        "review",
        "consent-withdraw",
        "subject-restrict",
        "subject-unrestrict",
        "consent-rectify",
        "subject-export",
        "subject-erase",
        "takedown-receive",
        "takedown-counter-notice",
        "takedown-court-action",
        "replay",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    assert!(!audit.to_string().contains(&c.canary), "{audit}");

    // Aggregate figures identify no one: nothing below the threshold, no canary.
    let (status, stats) = c.d.get_json(&c.officer, "/v1/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let min = stats["min_count"].as_u64().unwrap();
    for dimension in ["by_state", "by_format", "by_verdict", "by_day"] {
        let cells = stats[dimension].as_object().unwrap();
        assert!(
            cells.values().all(|n| n.as_u64().unwrap() >= min),
            "{stats}"
        );
    }
    assert!(!stats.to_string().contains(&c.canary));

    // No canary reached any log: not metadata, file names, consent fields, nor keys.
    let logs = c.d.all_logs();
    assert!(logs.len() > 10, "logs were captured");
    for secret in [&c.canary, &c.uploader, &c.reviewer, &c.officer] {
        let leaked: Vec<&String> = logs
            .iter()
            .filter(|l| l.contains(secret.as_str()))
            .collect();
        assert!(leaked.is_empty(), "PHI or a key in the logs: {leaked:?}");
    }
    c.d.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_defaults_end_to_end() {
    whole_service(Kind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_worker_on_rabbitmq_and_s3_end_to_end() {
    whole_service(Kind::RabbitS3).await;
}
