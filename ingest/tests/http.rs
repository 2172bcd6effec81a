//! The HTTP edge in-process (`app(state).oneshot(req)`, no network): operational routes, the
//! OpenAPI document, and uploads refused with a reason that leave nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use asepsis_common::provenance::Signer;
use asepsis_ingest::{AppState, app};
use asepsis_queue::{EmbeddedQueue, RetryPolicy};
use asepsis_store::Storage;
use asepsis_store::keyring::LocalKeyring;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use metrics_exporter_prometheus::PrometheusBuilder;
use tower::ServiceExt;

fn state(dir: &std::path::Path) -> AppState {
    state_with_sessions(dir, Duration::from_secs(60))
}

fn state_with_sessions(dir: &std::path::Path, session_ttl: Duration) -> AppState {
    let policy = RetryPolicy {
        max_attempts: 3,
        retry_delays: vec![Duration::from_millis(10)],
    };
    let queue = EmbeddedQueue::open(&dir.join("queue"), policy).unwrap();
    let keyring = LocalKeyring::open_or_create(&dir.join("keyring.json")).unwrap();
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap();
    let queue: Arc<dyn asepsis_queue::Queue> = Arc::new(queue);
    let storage = Storage::new(Arc::new(store), Arc::new(keyring));
    let signer = Arc::new(Signer::generate().unwrap());
    let notifier: Arc<dyn asepsis_queue::notify::Notifier> =
        Arc::new(asepsis_queue::notify::InProcess::new());
    let desk = asepsis_rights::Desk {
        storage: storage.clone(),
        signer: signer.clone(),
        queue: Some(queue.clone()),
        lock_ttl: Duration::from_secs(60),
        notifier: notifier.clone(),
        takedown: Default::default(),
    };
    let blocklist = Arc::new(asepsis_store::blocklist::BlockList::new(storage.clone()));
    AppState {
        queue,
        metrics: PrometheusBuilder::new().build_recorder().handle(),
        storage,
        signer,
        notifier,
        detector: Arc::new(asepsis_common::faces::Unavailable("test".into())),
        max_upload_bytes: 1 << 20,
        idempotency_lease: Duration::from_secs(60),
        stats_min_count: 5,
        desk,
        blocklist,
        match_distance: 31,
        ops: Arc::new(asepsis_ingest::ops::Ops::new(session_ttl)),
    }
}

async fn get(app: Router, path: &str) -> (StatusCode, String, Option<String>) {
    let req = Request::builder().uri(path).body(Body::empty()).unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let id = res
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), id)
}

#[tokio::test]
async fn health_ready_and_metrics_answer() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(state(dir.path()), Duration::from_secs(5));
    let (status, body, id) = get(app.clone(), "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    assert!(id.is_some(), "every response carries a request id");
    assert_eq!(get(app.clone(), "/readyz").await.0, StatusCode::OK);
    let (status, _, _) = get(app.clone(), "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(get(app, "/nope").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(state(dir.path()), Duration::from_secs(5));
    let (status, body, _) = get(app, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    for path in [
        "/v1/consents",
        "/v1/consents/{id}",
        "/v1/consents/{id}/withdraw",
        "/v1/assets",
        "/v1/assets/{id}",
        "/v1/assets/{id}/provenance",
        "/v1/assets/{id}/review",
        "/v1/review",
        "/media/{id}",
        "/v1/audit",
        "/v1/stats",
        "/v1/subjects/{ref}/erase",
        "/v1/subjects/{ref}/restrict",
        "/v1/subjects/{ref}/unrestrict",
        "/v1/subjects/{ref}/object",
        "/v1/subjects/{ref}/export",
        "/v1/subjects/{ref}/disclosures",
        "/v1/takedowns",
        "/v1/takedowns/{id}",
        "/v1/takedowns/{id}/counter-notice",
        "/v1/takedowns/{id}/court-action",
        "/v1/batches",
        "/v1/batches/{id}",
        "/v1/ops/queues",
        "/v1/ops/dead-letters",
        "/v1/ops/dead-letters/{id}/replay",
        "/v1/ops/dead-letters/replay",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["Terms"].is_object());
    assert!(doc["components"]["schemas"]["Error"].is_object());
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let declared: Vec<&str> = operation["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            for part in path.split('/') {
                if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    assert!(
                        declared.contains(&name),
                        "{method} {path}: {{{name}}} undeclared"
                    );
                }
            }
            let responses = operation["responses"].as_object().unwrap();
            if operation["security"].is_array() {
                for status in ["401", "403"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
            }
            for (status, response) in responses {
                if status.starts_with('4') {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

const BOUNDARY: &str = "XyZboundary";

fn multipart(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, bytes) in parts {
        let file = if *name == "file" {
            "; filename=\"x.bin\""
        } else {
            ""
        };
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(app: Router, key: &str, body: Vec<u8>) -> (StatusCode, String) {
    let req = Request::builder()
        .method("POST")
        .uri("/v1/assets")
        .header("authorization", format!("Bearer {key}"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let closes = res
        .headers()
        .get("connection")
        .is_some_and(|v| v == "close");
    assert_eq!(
        closes,
        !status.is_success(),
        "a refused upload closes its connection"
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn key(state: &AppState, role: asepsis_common::apikey::Role) -> String {
    let (token, record) = asepsis_common::apikey::generate("clinic", role, 0).unwrap();
    state.storage.put_api_key(&record).await.unwrap();
    token
}

/// A consent as stored, with its expiry (if any) already past.
async fn consent(state: &AppState, expired: bool) -> uuid::Uuid {
    use asepsis_common::consent::{Consent, Method, Scope, Terms};
    let now = time::OffsetDateTime::now_utc();
    let consent = Consent::new(
        uuid::Uuid::new_v4(),
        "clinic".into(),
        now,
        Terms {
            subject_ref: "s".into(),
            obtained_by: "d".into(),
            obtained_at: now - time::Duration::days(30),
            method: Method::Electronic,
            scope: Scope::Identifiable,
            purposes: vec!["teaching".into()],
            jurisdiction: "NL".into(),
            expires_at: expired.then(|| now - time::Duration::days(1)),
            licence_version: "1".into(),
            minor: false,
            guardian: None,
        },
    );
    state.storage.index_subject_consent(&consent).await.unwrap();
    state.storage.put_consent(&consent).await.unwrap();
    consent.id
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

#[tokio::test]
async fn uploads_are_refused_with_a_reason_and_leave_nothing_behind() {
    use asepsis_common::apikey::Role;
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let app = app(state.clone(), Duration::from_secs(5));
    let uploader = key(&state, Role::Uploader).await;
    let live = consent(&state, false).await.to_string();
    let expired = consent(&state, true).await.to_string();

    let too_big = [PNG, &vec![0u8; 2 << 20]].concat();
    type Parts<'a> = Vec<(&'a str, &'a [u8])>;
    let cases: Vec<(Parts, StatusCode, &str)> = vec![
        (
            vec![("consent_id", live.as_bytes()), ("file", &too_big)],
            StatusCode::PAYLOAD_TOO_LARGE,
            "file: larger than the limit",
        ),
        (
            vec![("consent_id", expired.as_bytes()), ("file", PNG)],
            StatusCode::UNPROCESSABLE_ENTITY,
            "consent_id: the consent has expired",
        ),
        (
            vec![("file", PNG), ("consent_id", b"5")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "consent_id: not a consent id",
        ),
        (
            vec![("file", PNG)],
            StatusCode::UNPROCESSABLE_ENTITY,
            "consent_id: missing",
        ),
        (
            vec![("consent_id", live.as_bytes()), ("file", b"GIF89a....")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not a supported image",
        ),
        (
            vec![("consent_id", live.as_bytes())],
            StatusCode::UNPROCESSABLE_ENTITY,
            "file: missing",
        ),
    ];
    for (parts, status, message) in cases {
        let (got, body) = upload(app.clone(), &uploader, multipart(&parts)).await;
        assert_eq!(got, status, "{body}");
        assert!(body.contains(message), "{body}");
    }
    let blobs = std::fs::read_dir(dir.path().join("blobs"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("original").exists())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(blobs, 0, "refused uploads leave no original behind");
    assert_eq!(state.queue.stats().await.unwrap().ready, 0);

    let reviewer = key(&state, Role::Reviewer).await;
    let parts = [("consent_id", live.as_bytes()), ("file", PNG)];
    let (got, body) = upload(app.clone(), &reviewer, multipart(&parts)).await;
    assert_eq!(got, StatusCode::FORBIDDEN, "{body}");
    let (got, _) = upload(app.clone(), "asp_x", multipart(&parts)).await;
    assert_eq!(got, StatusCode::UNAUTHORIZED);
    let (got, body) = upload(app, &uploader, multipart(&parts)).await;
    assert_eq!(got, StatusCode::ACCEPTED, "{body}");
    assert_eq!(state.queue.stats().await.unwrap().ready, 1);
}

async fn get_with_key(app: Router, key: &str, path: &str) -> (StatusCode, String) {
    send(app, "GET", key, path, "").await
}

#[tokio::test]
async fn the_audit_log_shows_a_tenant_only_its_own_entries_to_operators_and_officers() {
    use asepsis_common::apikey::Role;
    use asepsis_common::audit::{AuditAction, AuditRecord};
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let app = app(state.clone(), Duration::from_secs(5));
    for tenant in ["clinic", "other-clinic", "clinic"] {
        let record = AuditRecord {
            actor: "0123456789abcdef".into(),
            tenant: Some(tenant.into()),
            action: AuditAction::Review,
            targets: vec![format!("asset-of-{tenant}")],
        };
        state
            .storage
            .append_audit(&state.signer, record)
            .await
            .unwrap();
    }
    let operator = key(&state, Role::Operator).await;
    let (status, body) = get_with_key(app.clone(), &operator, "/v1/audit").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let seqs: Vec<u64> = entries
        .iter()
        .map(|e| e["entry"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [0, 2], "only the caller's tenant");
    assert!(!body.contains("other-clinic"));
    assert_eq!(entries[0]["entry"]["record"]["action"], "review");

    let officer = key(&state, Role::PrivacyOfficer).await;
    let later = "/v1/audit?from=2999-01-01T00:00:00Z";
    let (status, body) = get_with_key(app.clone(), &officer, later).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"));
    let (status, body) = get_with_key(app.clone(), &officer, "/v1/audit?to=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("to: not an RFC 3339 time"), "{body}");
    let uploader = key(&state, Role::Uploader).await;
    let (status, _) = get_with_key(app, &uploader, "/v1/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn stats_count_the_tenant_s_assets_and_hide_small_cells() {
    use asepsis_common::apikey::Role;
    use asepsis_common::media::Format;
    use asepsis_common::provenance::EventKind;
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let app = app(state.clone(), Duration::from_secs(5));
    let consent = uuid::Uuid::new_v4();
    let arrivals = [
        ("clinic", Format::Jpeg, 6),
        ("clinic", Format::Png, 1),
        ("other", Format::Png, 9),
    ];
    for (tenant, format, n) in arrivals {
        for _ in 0..n {
            let asset = uuid::Uuid::new_v4();
            state
                .storage
                .index_asset(tenant, consent, asset)
                .await
                .unwrap();
            let what = EventKind::Received {
                tenant: tenant.into(),
                consent_id: consent,
                format,
                size_bytes: 1,
                sha256: String::new(),
                uploader: None,
                batch_id: None,
            };
            state
                .storage
                .append_event(asset, &state.signer, what)
                .await
                .unwrap();
        }
    }
    let officer = key(&state, Role::PrivacyOfficer).await;
    let (status, body) = get_with_key(app.clone(), &officer, "/v1/stats").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["min_count"], 5);
    assert_eq!(stats["by_state"]["received"], 7, "{stats}");
    assert_eq!(stats["by_verdict"]["not_scanned"], 7, "{stats}");
    // One PNG: hidden, and the JPEGs with it (else 7 - 6 would give it away).
    assert_eq!(stats["by_format"], serde_json::json!({}), "{stats}");
    assert_eq!(stats["suppressed_cells"], 2, "{stats}");
    let uploader = key(&state, Role::Uploader).await;
    let (status, _) = get_with_key(app, &uploader, "/v1/stats").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// `POST path` with the key and an Idempotency-Key: the status and the body.
async fn post_keyed(
    app: Router,
    key: &str,
    path: &str,
    idempotency_key: &str,
    content_type: &str,
    body: Body,
) -> (StatusCode, axum::body::Bytes) {
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("idempotency-key", idempotency_key)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    (status, res.into_body().collect().await.unwrap().to_bytes())
}

async fn send(
    app: Router,
    method: &str,
    key: &str,
    path: &str,
    body: &str,
) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn rights_routes_are_the_privacy_officer_s_and_name_what_is_wrong() {
    use asepsis_common::apikey::Role;
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let app = app(state.clone(), Duration::from_secs(5));
    let routes = [
        ("POST", "/v1/subjects/s/erase", ""),
        ("POST", "/v1/subjects/s/restrict", ""),
        ("POST", "/v1/subjects/s/unrestrict", ""),
        (
            "POST",
            "/v1/subjects/s/object",
            r#"{"purposes": ["teaching"]}"#,
        ),
        ("POST", "/v1/subjects/s/export", ""),
        ("GET", "/v1/subjects/s/disclosures", ""),
    ];
    for role in [Role::Uploader, Role::Reviewer, Role::Operator] {
        let other = key(&state, role).await;
        for (method, path, body) in routes {
            let (status, text) = send(app.clone(), method, &other, path, body).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {text}");
            assert!(text.contains("privacy-officer"), "{text}");
        }
    }
    let officer = key(&state, Role::PrivacyOfficer).await;
    // A subject with nothing: answered, nothing changed.
    let (status, text) = send(
        app.clone(),
        "POST",
        &officer,
        "/v1/subjects/nobody/erase",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("\"changed\":false"), "{text}");
    // Unknown purpose, malformed body, malformed reference.
    consent(&state, false).await;
    let cases = [
        (
            r#"{"purposes": ["marketing"]}"#,
            "purposes[0]: unknown purpose",
        ),
        (r#"{"purposes": []}"#, "name at least one purpose"),
        (r#"{"purpose": ["teaching"]}"#, "unknown field"),
    ];
    for (body, said) in cases {
        let (status, text) =
            send(app.clone(), "POST", &officer, "/v1/subjects/s/object", body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
        assert!(text.contains(said), "{said} in {text}");
    }
    let (status, _) = send(app.clone(), "POST", &officer, "/v1/subjects/%0A/erase", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // A request while another holds the subject: 409.
    let busy = state
        .storage
        .lock_subject("clinic", "s", uuid::Uuid::new_v4(), 60_000)
        .await
        .unwrap();
    assert!(busy);
    let (status, text) = send(app.clone(), "POST", &officer, "/v1/subjects/s/restrict", "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    state.storage.unlock_subject("clinic", "s").await.unwrap();
    let (status, text) = send(app.clone(), "POST", &officer, "/v1/subjects/s/restrict", "").await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

#[tokio::test]
async fn rectification_versions_the_consent_and_names_a_bad_field() {
    use asepsis_common::apikey::Role;
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let app = app(state.clone(), Duration::from_secs(5));
    let id = consent(&state, false).await;
    let uploader = key(&state, Role::Uploader).await;
    let path = format!("/v1/consents/{id}");
    let (status, text) = send(
        app.clone(),
        "PATCH",
        &uploader,
        &path,
        r#"{"scope": "public"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.contains("scope: unknown variant"), "{text}");
    let body = r#"{"purposes": ["teaching", "research"]}"#;
    let (status, text) = send(app.clone(), "PATCH", &uploader, &path, body).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, text) = get_with_key(app.clone(), &uploader, &path).await;
    assert_eq!(status, StatusCode::OK);
    let record: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["version"], 2);
    assert_eq!(
        record["history"][0]["terms"]["purposes"],
        serde_json::json!(["teaching"])
    );
    assert_eq!(record["history"][0]["replaced_by"], "rectification");
    let reviewer = key(&state, Role::Reviewer).await;
    let (status, _) = send(app, "PATCH", &reviewer, &path, body).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn take_down_routes_check_roles_and_elements_and_a_disabled_key_is_told_why() {
    use asepsis_common::apikey::{Disabled, Role};
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let app = app(state.clone(), Duration::from_secs(5));
    let claimant = "CLAIMANT-http-91c2";
    let notice = serde_json::json!({
        "assets": [format!("/media/{}", uuid::Uuid::new_v4())],
        "claimant": {"name": claimant, "contact": claimant},
        "work": "w",
        "statements": {"good_faith": true, "accurate_under_penalty_of_perjury": true},
        "signature": claimant,
    });
    for role in [Role::Uploader, Role::Reviewer] {
        let k = key(&state, role).await;
        let (status, _) = send(
            app.clone(),
            "POST",
            &k,
            "/v1/takedowns",
            &notice.to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let operator = key(&state, Role::Operator).await;
    // Every element checked, named with its clause; the claimant never quoted back.
    let (status, text) = send(
        app.clone(),
        "POST",
        &operator,
        "/v1/takedowns",
        &notice.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.contains("assets[0]: no such asset"), "{text}");
    for (field, want) in [
        ("work", "work: required (17 U.S.C. 512(c)(3)(A)(ii))"),
        (
            "claimant",
            "claimant.name: required (17 U.S.C. 512(c)(3)(A)(iv))",
        ),
        (
            "statements",
            "statements.good_faith: must be true (17 U.S.C. 512(c)(3)(A)(v))",
        ),
    ] {
        let mut body = notice.clone();
        body.as_object_mut().unwrap().remove(field);
        let (status, text) = send(
            app.clone(),
            "POST",
            &operator,
            "/v1/takedowns",
            &body.to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {text}");
        assert!(text.contains(want), "{field}: {text}");
        assert!(!text.contains(claimant), "{text}");
    }
    let mut body = notice.clone();
    body["statements"]["good_faith"] = serde_json::json!(claimant);
    let (status, text) = send(
        app.clone(),
        "POST",
        &operator,
        "/v1/takedowns",
        &body.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.contains("statements.good_faith"), "{text}");
    assert!(!text.contains(claimant), "{text}");
    let (status, _) = send(
        app.clone(),
        "GET",
        &operator,
        &format!("/v1/takedowns/{}", uuid::Uuid::new_v4()),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, text) = send(app.clone(), "GET", &operator, "/v1/takedowns", "").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains(r#""takedowns":[]"#), "{text}");

    // A key disabled under the repeat-infringer policy: 401, saying why.
    let uploader = key(&state, Role::Uploader).await;
    let id = uploader.split('_').nth(1).unwrap();
    let reason =
        "disabled under the repeat-infringer policy: 3 take-down notices upheld".to_owned();
    assert!(
        state
            .storage
            .disable_api_key(id, Disabled { at_ms: 1, reason })
            .await
            .unwrap()
    );
    let (status, text) = send(app.clone(), "GET", &uploader, "/v1/review", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert!(
        text.contains("this API key was disabled: disabled under the repeat-infringer policy"),
        "{text}"
    );
}

#[tokio::test]
async fn a_held_copy_of_content_taken_down_since_is_rejected_not_approved() {
    use asepsis_common::apikey::Role;
    use asepsis_common::media::Format;
    use asepsis_common::policy::Decision;
    use asepsis_common::provenance::EventKind;
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let app = app(state.clone(), Duration::from_secs(5));
    let photo = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/corpus/jpeg/ianare-DSCN0010.jpg"
    ))
    .unwrap();
    let image = asepsis_common::faces::decode_upright(&photo, &Default::default()).unwrap();
    let pdq = asepsis_common::pdq::hash(&image);
    // Held for review before any notice; then another copy is taken down.
    let consent = consent(&state, false).await;
    let asset = uuid::Uuid::new_v4();
    state
        .storage
        .index_asset("clinic", consent, asset)
        .await
        .unwrap();
    for what in [
        EventKind::Received {
            tenant: "clinic".into(),
            consent_id: consent,
            format: Format::Jpeg,
            size_bytes: 1,
            sha256: String::new(),
            uploader: None,
            batch_id: None,
        },
        EventKind::Scanned {
            verdict: asepsis_common::faces::Verdict::NotScanned,
            faces: 0,
            scores_milli: vec![],
            model_sha256: String::new(),
            pdq: Some(pdq),
        },
        EventKind::Verdict {
            decision: Decision::Hold,
            reason: "r".into(),
        },
    ] {
        state
            .storage
            .append_event(asset, &state.signer, what)
            .await
            .unwrap();
    }
    let notice = uuid::Uuid::new_v4();
    state
        .storage
        .block(notice, uuid::Uuid::new_v4(), &[pdq.hash.0])
        .await
        .unwrap();
    let reviewer = key(&state, Role::Reviewer).await;
    let path = format!("/v1/assets/{asset}/review");
    let (status, text) = send(
        app.clone(),
        "POST",
        &reviewer,
        &path,
        r#"{"decision":"approve"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert!(
        text.contains(&format!("matches content taken down under notice {notice}")),
        "{text}"
    );
    let (_, text) = get_with_key(app, &reviewer, &format!("/v1/assets/{asset}")).await;
    assert!(text.contains(r#""state":"rejected""#), "{text}");
}

#[tokio::test]
async fn a_batch_is_its_tenant_s_and_counts_the_uploads_that_name_it() {
    use asepsis_common::apikey::{Role, generate};
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let app = app(state.clone(), Duration::from_secs(5));
    let uploader = key(&state, Role::Uploader).await;
    let (other, record) = generate("other-clinic", Role::Uploader, 0).unwrap();
    state.storage.put_api_key(&record).await.unwrap();
    let live = consent(&state, false).await.to_string();

    let reviewer = key(&state, Role::Reviewer).await;
    for (key, body, refused) in [
        (
            &uploader,
            r#"{"label": "", "expected": 2}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &uploader,
            r#"{"label": "x", "expected": 0}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &reviewer,
            r#"{"label": "x", "expected": 1}"#,
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (status, text) = send(app.clone(), "POST", key, "/v1/batches", body).await;
        assert_eq!(status, refused, "{body}: {text}");
    }

    let json = "application/json";
    let open = |key: String| {
        let app = app.clone();
        async move {
            let body = Body::from(r#"{"label": "radiology", "expected": 2}"#);
            let (status, body) = post_keyed(app, &key, "/v1/batches", "import-1", json, body).await;
            assert_eq!(status, StatusCode::CREATED);
            let created: serde_json::Value = serde_json::from_slice(&body).unwrap();
            created["id"].as_str().unwrap().to_owned()
        }
    };
    let terms = r#"{"subject_ref": "s-1", "obtained_by": "d", "obtained_at": "2026-01-01T00:00:00Z",
        "method": "written", "scope": "identifiable", "purposes": ["teaching"],
        "jurisdiction": "NL", "licence_version": "1", "minor": false}"#;
    let record = || {
        let body = Body::from(terms);
        post_keyed(
            app.clone(),
            &uploader,
            "/v1/consents",
            "import-1/c",
            json,
            body,
        )
    };
    let first = record().await;
    assert_eq!(first.0, StatusCode::CREATED);
    assert_eq!(
        first,
        record().await,
        "a retried consent is the same consent"
    );

    let batch = open(uploader.clone()).await;
    assert_eq!(
        open(uploader.clone()).await,
        batch,
        "a retry answers the same batch"
    );
    let theirs = open(other.clone()).await;
    assert_ne!(theirs, batch, "keys are per tenant");

    let parts = [
        ("consent_id", live.as_bytes()),
        ("batch_id", theirs.as_bytes()),
        ("file", PNG),
    ];
    let (status, body) = upload(app.clone(), &uploader, multipart(&parts)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("batch_id: no such batch"), "{body}");
    let parts = [
        ("consent_id", live.as_bytes()),
        ("batch_id", batch.as_bytes()),
        ("file", PNG),
    ];
    let (status, body) = upload(app.clone(), &uploader, multipart(&parts)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let path = format!("/v1/batches/{batch}");
    let (status, body) = get_with_key(app.clone(), &uploader, &path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tally: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(tally["label"], "radiology");
    assert_eq!(
        (tally["expected"].as_u64(), tally["assets"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(tally["counts"]["received"], 1, "{tally}");
    assert_eq!(
        tally["done"], false,
        "one file still to come, one not settled"
    );
    let (status, _) = get_with_key(app.clone(), &other, &path).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another tenant's batch is not found"
    );
}

#[tokio::test]
async fn a_refused_upload_frees_its_idempotency_key_for_the_retry() {
    use asepsis_common::apikey::Role;
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let app = app(state.clone(), Duration::from_secs(5));
    let uploader = key(&state, Role::Uploader).await;
    let live = consent(&state, false).await.to_string();
    let form = format!("multipart/form-data; boundary={BOUNDARY}");
    let post = |body: Body| post_keyed(app.clone(), &uploader, "/v1/assets", "row-7", &form, body);
    let send_keyed = |file: &[u8]| {
        let sent = post(Body::from(multipart(&[
            ("consent_id", live.as_bytes()),
            ("file", file),
        ])));
        async move { sent.await.0 }
    };
    assert_eq!(
        send_keyed(b"GIF89a....").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    // A body that breaks off mid-file (the client's connection dropped).
    let head = multipart(&[("consent_id", live.as_bytes())]);
    let head = head[..head.len() - format!("--{BOUNDARY}--\r\n").len()].to_vec();
    let part = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n"
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(head),
        Ok(part.into_bytes()),
        Ok([PNG, &[0u8; 4096]].concat()),
        Err(std::io::Error::other("connection reset")),
    ];
    let (cut, _) = post(Body::from_stream(futures::stream::iter(chunks))).await;
    assert!(cut.is_client_error(), "{cut}");
    let originals = std::fs::read_dir(dir.path().join("blobs"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("original").exists())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(originals, 0, "a cut-off upload leaves no original");

    assert_eq!(
        send_keyed(PNG).await,
        StatusCode::ACCEPTED,
        "not 409 until the first attempt's lease ends"
    );
    assert_eq!(state.queue.stats().await.unwrap().ready, 1);
}

/// Dead-letter two messages the way the worker does: a job for `asset`, and bytes that are
/// no job at all. Returns their ids.
async fn dead_letter_two(state: &AppState, asset: uuid::Uuid) -> (String, String) {
    let job = state
        .queue
        .publish(&asepsis_common::job::Job::new(asset).to_bytes())
        .await
        .unwrap();
    let junk = state.queue.publish(b"not a job").await.unwrap();
    let mut consumer = state.queue.consumer(2).await.unwrap();
    for _ in 0..2 {
        let delivery = consumer.next().await.unwrap();
        let why = format!("malformed: test {}", delivery.body.len());
        delivery.dead_letter(&why).await.unwrap();
    }
    (job, junk)
}

fn replays(entries: &[asepsis_common::audit::SignedAuditEntry]) -> Vec<(String, Vec<String>)> {
    entries
        .iter()
        .filter(|e| e.entry.record.action == asepsis_common::audit::AuditAction::Replay)
        .map(|e| (e.entry.record.actor.clone(), e.entry.record.targets.clone()))
        .collect()
}

#[tokio::test]
async fn ops_routes_are_the_operator_s_and_each_replay_is_audited() {
    use asepsis_common::apikey::Role;
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let app = app(state.clone(), Duration::from_secs(5));
    let routes = [
        ("GET", "/v1/ops/queues"),
        ("GET", "/v1/ops/dead-letters"),
        ("POST", "/v1/ops/dead-letters/replay"),
        ("POST", "/v1/ops/dead-letters/some-id/replay"),
        ("GET", "/ops"),
        ("GET", "/ops/panel"),
    ];
    for role in [Role::Uploader, Role::Reviewer, Role::PrivacyOfficer] {
        let key = key(&state, role).await;
        for (method, path) in routes {
            let (status, body) = send(app.clone(), method, &key, path, "").await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{role:?} {method} {path}: {body}"
            );
        }
    }
    for (method, path) in &routes[..4] {
        let req = Request::builder().method(*method).uri(*path);
        let res = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }

    let operator = key(&state, Role::Operator).await;
    // Nothing dead: replay-all answers 200, moves nothing and records nothing.
    let (status, body) = send(
        app.clone(),
        "POST",
        &operator,
        "/v1/ops/dead-letters/replay",
        "",
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"replayed":[]}"#)
    );
    assert!(replays(&state.storage.audit_log().await.unwrap()).is_empty());

    let asset = uuid::Uuid::new_v4();
    let (job, junk) = dead_letter_two(&state, asset).await;
    let (status, body) = get_with_key(app.clone(), &operator, "/v1/ops/queues").await;
    assert_eq!(status, StatusCode::OK);
    let counts: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (counts["dead"].as_u64(), counts["ready"].as_u64()),
        (Some(2), Some(0)),
        "{body}"
    );
    let (status, body) = get_with_key(app.clone(), &operator, "/v1/ops/dead-letters").await;
    assert_eq!(status, StatusCode::OK);
    let letters: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(letters.len(), 2, "{body}");
    let of = |id: &str| letters.iter().find(|l| l["job_id"] == id).unwrap().clone();
    assert_eq!(of(&job)["asset_id"], asset.to_string());
    assert!(
        of(&junk)["asset_id"].is_null(),
        "bytes that are no job name no asset"
    );
    for id in [&job, &junk] {
        let l = of(id);
        assert_eq!(l["attempts"], 1);
        assert!(
            l["reason"].as_str().unwrap().starts_with("malformed: test"),
            "{l}"
        );
        assert!(l["dead_at_ms"].as_u64().is_some(), "{l}");
    }

    let path = |id: &str| format!("/v1/ops/dead-letters/{id}/replay");
    let (status, _) = send(app.clone(), "POST", &operator, &path("no-such-job"), "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = send(app.clone(), "POST", &operator, &path(&job), "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let replayed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(replayed["replayed"], serde_json::json!([job]));
    let (status, _) = send(app.clone(), "POST", &operator, &path(&job), "").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a replayed letter is not dead any more"
    );
    let (status, body) = send(
        app.clone(),
        "POST",
        &operator,
        "/v1/ops/dead-letters/replay",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, format!(r#"{{"replayed":["{junk}"]}}"#));

    let operator_id = operator.split('_').nth(1).unwrap().to_owned();
    let audited = replays(&state.storage.audit_log().await.unwrap());
    assert_eq!(
        audited,
        [
            (operator_id.clone(), vec![job.clone()]),
            (operator_id, vec![junk])
        ]
    );
    let counts = state.queue.stats().await.unwrap();
    assert_eq!((counts.ready, counts.dead), (2, 0));
}

/// A request from a browser: the cookie jar's `cookie`, and a form body for a POST.
async fn browse(
    app: Router,
    method: &str,
    path: &str,
    cookie: &str,
    form: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let (status, headers) = (res.status(), res.headers().clone());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// `name=value` of the `Set-Cookie` named `name`, with its attributes.
fn set_cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<(String, String)> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let (pair, attrs) = v.split_once(';').unwrap();
            (pair.to_owned(), attrs.to_owned())
        })
}

/// The value of the first hidden `csrf` field of a page.
fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).unwrap() + r#"name="csrf" value=""#.len();
    html[at..at + 64].to_owned()
}

/// Sign in through the form as a browser would: the session cookie's `name=value`.
async fn sign_in(app: &Router, key: &str) -> (StatusCode, Option<(String, String)>) {
    let (status, headers, html) = browse(app.clone(), "GET", "/ops", "", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"action="/ops/sign-in""#), "{html}");
    let (pre, _) = set_cookie(&headers, "asepsis_ops_signin").unwrap();
    let form = format!("csrf={}&key={key}", csrf_of(&html));
    let (status, headers, _) = browse(app.clone(), "POST", "/ops/sign-in", &pre, &form).await;
    (status, set_cookie(&headers, "asepsis_ops"))
}

#[tokio::test]
async fn the_ops_page_signs_in_operators_only_and_its_forms_need_the_session_s_token() {
    use asepsis_common::apikey::Role;
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let app = app(state.clone(), Duration::from_secs(5));
    for role in [Role::Uploader, Role::Reviewer, Role::PrivacyOfficer] {
        let (status, cookie) = sign_in(&app, &key(&state, role).await).await;
        assert_eq!((status, cookie), (StatusCode::FORBIDDEN, None), "{role:?}");
    }
    let (status, cookie) = sign_in(&app, "asp_nope_nope").await;
    assert_eq!((status, cookie), (StatusCode::UNAUTHORIZED, None));
    let operator = key(&state, Role::Operator).await;
    // A sign-in form without its doubled token (a cross-site post) is refused.
    let form = format!("csrf={}&key={operator}", "0".repeat(64));
    let (status, _, _) = browse(app.clone(), "POST", "/ops/sign-in", "", &form).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, cookie) = sign_in(&app, &operator).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (cookie, attrs) = cookie.unwrap();
    assert_eq!(attrs, " Path=/ops; HttpOnly; SameSite=Strict; Max-Age=60");
    assert!(!cookie.contains(&operator) && !cookie.contains(operator.split('_').nth(2).unwrap()));

    let asset = uuid::Uuid::new_v4();
    let (job, _) = dead_letter_two(&state, asset).await;
    let (status, _, html) = browse(app.clone(), "GET", "/ops", &cookie, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains(&job) && html.contains(&asset.to_string()),
        "{html}"
    );
    assert!(
        html.contains(r#"<span class="num" id="q-dead">2</span>"#),
        "{html}"
    );
    let csrf = csrf_of(&html);
    let (status, _, panel) = browse(app.clone(), "GET", "/ops/panel", &cookie, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        panel.contains(&job) && !panel.contains("<html"),
        "a fragment: {panel}"
    );

    let replay = format!("/ops/dead-letters/{job}/replay");
    for form in ["", "csrf=", &format!("csrf={}", "0".repeat(64))] {
        let (status, _, _) = browse(app.clone(), "POST", &replay, &cookie, form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "form {form:?}");
    }
    assert_eq!(state.queue.stats().await.unwrap().dead, 2, "nothing moved");
    let token = format!("csrf={csrf}");
    let (status, headers, _) = browse(app.clone(), "POST", &replay, &cookie, &token).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers["location"], "/ops?replayed=1");
    let (status, _, _) = browse(app.clone(), "POST", &replay, &cookie, &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let audited = replays(&state.storage.audit_log().await.unwrap());
    assert_eq!(
        audited,
        [(operator.split('_').nth(1).unwrap().to_owned(), vec![job])]
    );

    let (status, _, _) = browse(app.clone(), "POST", "/ops/sign-out", &cookie, "").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "sign-out needs the token too"
    );
    let (status, headers, _) = browse(app.clone(), "POST", "/ops/sign-out", &cookie, &token).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        set_cookie(&headers, "asepsis_ops")
            .unwrap()
            .1
            .contains("Max-Age=0")
    );
    let (status, _, _) = browse(app.clone(), "GET", "/ops/panel", &cookie, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, html) = browse(app.clone(), "GET", "/ops", &cookie, "").await;
    assert!(status == StatusCode::OK && html.contains("/ops/sign-in"));
    let all = "/ops/dead-letters/replay";
    let (status, _, _) = browse(app, "POST", all, &cookie, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_expired_ops_session_is_refused() {
    use asepsis_common::apikey::Role;
    let dir = tempfile::tempdir().unwrap();
    let state = state_with_sessions(dir.path(), Duration::ZERO);
    let app = app(state.clone(), Duration::from_secs(5));
    let (status, cookie) = sign_in(&app, &key(&state, Role::Operator).await).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (cookie, _) = cookie.unwrap();
    let (status, _, _) = browse(app.clone(), "GET", "/ops/panel", &cookie, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let form = format!("csrf={}", "0".repeat(64));
    let (status, _, _) = browse(app, "POST", "/ops/dead-letters/replay", &cookie, &form).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn disabling_a_key_ends_its_ops_sessions_at_once() {
    use asepsis_common::apikey::{Disabled, Role};
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let app = app(state.clone(), Duration::from_secs(5));
    let operator = key(&state, Role::Operator).await;
    let (_, cookie) = sign_in(&app, &operator).await;
    let (cookie, _) = cookie.unwrap();
    let (status, _, _) = browse(app.clone(), "GET", "/ops/panel", &cookie, "").await;
    assert_eq!(status, StatusCode::OK);
    let id = operator.split('_').nth(1).unwrap();
    let disabled = Disabled {
        at_ms: 1,
        reason: "test".into(),
    };
    assert!(state.storage.disable_api_key(id, disabled).await.unwrap());
    let (status, _, _) = browse(app.clone(), "GET", "/ops/panel", &cookie, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, html) = browse(app, "GET", "/ops", &cookie, "").await;
    assert!(status == StatusCode::OK && html.contains("/ops/sign-in"));
}

#[tokio::test]
async fn the_page_lists_the_oldest_200_dead_letters_and_counts_the_rest() {
    use asepsis_common::apikey::Role;
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let app = app(state.clone(), Duration::from_secs(5));
    let mut ids = Vec::new();
    for _ in 0..205 {
        ids.push(state.queue.publish(b"not a job").await.unwrap());
    }
    let mut consumer = state.queue.consumer(16).await.unwrap();
    for _ in 0..205 {
        let delivery = consumer.next().await.unwrap();
        delivery.dead_letter("malformed: test").await.unwrap();
    }
    let (_, cookie) = sign_in(&app, &key(&state, Role::Operator).await).await;
    let (cookie, _) = cookie.unwrap();
    let (status, _, html) = browse(app, "GET", "/ops/panel", &cookie, "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches("<tr data-job=").count(), 200);
    assert!(
        html.contains(&format!("data-job=\"{}\"", ids[0])),
        "oldest first"
    );
    assert!(!html.contains(&ids[204]));
    assert!(html.contains("and 5 more"), "{html}");
    assert!(html.contains(r#"<span class="count">205</span>"#));
}
