//! The Asepsis HTTP service: the routes clients, operators and the website call.
//!
//! This crate owns the HTTP edge: authentication, routing, body limits, timeouts, request
//! ids, request metrics, the OpenAPI document and the operational endpoints (`/healthz`,
//! `/readyz`, `/metrics`). It must not hold business rules (those live in `asepsis-common`)
//! and must never log a request body, a client file name, a client IP or a key: spans carry
//! a request id, the route template and the status only.

mod assets;
mod auth;
mod consents;
mod error;
mod media;

use std::sync::Arc;
use std::time::{Duration, Instant};

use asepsis_common::faces::Detector;
use asepsis_common::notify::Notifier;
use asepsis_common::provenance::Signer;
use asepsis_common::queue::Queue;
use asepsis_common::storage::Storage;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub use assets::default_idempotency_lease;

#[derive(Clone)]
pub struct AppState {
    pub queue: Arc<dyn Queue>,
    pub metrics: PrometheusHandle,
    pub storage: Storage,
    pub signer: Arc<Signer>,
    pub notifier: Arc<dyn Notifier>,
    pub detector: Arc<dyn Detector>,
    /// Largest upload accepted, in bytes.
    pub max_upload_bytes: u64,
    /// How long an unfinished upload holds its Idempotency-Key.
    pub idempotency_lease: Duration,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Asepsis", description = "Secure media ingest: upload with consent, strip, review, publish."),
    paths(
        consents::create, consents::get, consents::withdraw,
        assets::upload, assets::status, assets::provenance, assets::review_queue, assets::review,
        media::get, healthz, readyz,
    ),
    modifiers(&BearerKey)
)]
struct ApiDoc;

struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("asp_<key id>_<secret>")
            .build();
        components.add_security_scheme("api_key", SecurityScheme::Http(scheme));
    }
}

/// The OpenAPI document of these routes, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi_json() -> Response {
    axum::Json(openapi()).into_response()
}

/// The whole HTTP application.
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    // Multipart framing on top of the file; the file itself is counted as it streams.
    let upload_limit = usize::try_from(state.max_upload_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(1 << 20);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/consents", post(consents::create))
        .route("/v1/consents/{id}", get(consents::get))
        .route("/v1/consents/{id}/withdraw", post(consents::withdraw))
        .route(
            "/v1/assets",
            post(assets::upload)
                .layer(DefaultBodyLimit::max(upload_limit))
                .layer(middleware::map_response(close_after_refusal)),
        )
        .route("/v1/assets/{id}", get(assets::status))
        .route("/v1/assets/{id}/provenance", get(assets::provenance))
        .route("/v1/assets/{id}/review", post(assets::review))
        .route("/v1/review", get(assets::review_queue))
        .route("/media/{id}", get(media::get))
        .with_state(state)
        .layer(middleware::from_fn(record_metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            // The route template, never the raw path (ids in paths are not for logs).
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            tracing::info_span!("request", request.id = %id, method = %req.method(), route)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The process is up and serving.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "ok")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// The process can do its work: the queue and the store answer. A missing face detector
/// does not stop the service (every image is then held for review), but is reported.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready"), (status = 503, description = "queue or store unavailable")))]
async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(e) = state.queue.stats().await {
        tracing::warn!(error = %e, "not ready: queue");
        let body = "not ready: queue unavailable\n";
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    if let Err(e) = state.storage.api_key("0").await {
        tracing::warn!(error = %e, "not ready: store");
        let body = "not ready: store unavailable\n";
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    match state.detector.ready() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::OK,
            format!("ready; face detector unavailable ({why}): images are held for review\n"),
        )
            .into_response(),
    }
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    if let Ok(stats) = state.queue.stats().await {
        let gauge = |state: &'static str, n: u64| {
            metrics::gauge!("asepsis_queue_messages", "state" => state).set(n as f64);
        };
        gauge("ready", stats.ready);
        gauge("retrying", stats.retrying);
        gauge("dead", stats.dead);
        if let Some(n) = stats.in_flight {
            gauge("in_flight", n);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// A refused upload is answered before its body is read, so the connection cannot carry
/// another request: say so, or a client reusing it races the server closing it.
async fn close_after_refusal(mut response: Response) -> Response {
    if !response.status().is_success() {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Count requests and time them, labelled by route template and status.
async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("asepsis_http_requests_total", &labels).increment(1);
    metrics::histogram!("asepsis_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use asepsis_common::keys::LocalKeyring;
    use asepsis_common::queue::{EmbeddedQueue, Policy};
    use axum::body::Body;
    use http_body_util::BodyExt;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use tower::ServiceExt;

    fn state(dir: &std::path::Path) -> AppState {
        let policy = Policy {
            max_attempts: 3,
            retry_delays: vec![Duration::from_millis(10)],
        };
        let queue = EmbeddedQueue::open(&dir.join("queue"), policy).unwrap();
        let keyring = LocalKeyring::open_or_create(&dir.join("keyring.json")).unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir).unwrap();
        AppState {
            queue: Arc::new(queue),
            metrics: PrometheusBuilder::new().build_recorder().handle(),
            storage: Storage::new(Arc::new(store), Arc::new(keyring)),
            signer: Arc::new(Signer::generate().unwrap()),
            notifier: Arc::new(asepsis_common::notify::InProcess::new()),
            detector: Arc::new(asepsis_common::faces::Unavailable("test".into())),
            max_upload_bytes: 1 << 20,
            idempotency_lease: Duration::from_secs(60),
        }
    }

    async fn get(app: Router, path: &str) -> (StatusCode, String, Option<String>) {
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        let res = app.oneshot(req).await.unwrap();
        let status = res.status();
        let id = res
            .headers()
            .get(REQUEST_ID)
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
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        assert!(doc["components"]["schemas"]["Terms"].is_object());
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
        let consent = Consent {
            id: uuid::Uuid::new_v4(),
            tenant: "clinic".into(),
            recorded_at: now,
            withdrawn_at: None,
            terms: Terms {
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
        };
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
}
