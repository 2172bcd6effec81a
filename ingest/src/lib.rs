//! The Asepsis HTTP service: the routes clients, operators and the website call.
//!
//! This crate owns the HTTP edge: authentication, routing, body limits, timeouts, request
//! ids, request metrics, the OpenAPI document and the operational endpoints (`/healthz`,
//! `/readyz`, `/metrics`). It must not hold business rules (those live in `asepsis-common`)
//! and must never log a request body, a client file name, a client IP or a key: spans carry
//! a request id, the route template and the status only.

mod assets;
mod audit;
mod auth;
mod batches;
mod consents;
mod doc;
mod error;
mod media;
pub mod ops;
mod stats;
mod subjects;
mod summary;
mod takedowns;
pub mod telemetry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use asepsis_common::faces::Detector;
use asepsis_common::provenance::Signer;
use asepsis_queue::Queue;
use asepsis_queue::notify::Notifier;
use asepsis_store::Storage;
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

use crate::doc::Conventions;

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
    /// `GET /v1/stats` shows no count below this.
    pub stats_min_count: u64,
    /// A privacy officer's requests on subjects.
    pub desk: asepsis_rights::Desk,
    /// Content taken down under a DMCA notice: a reviewer's approval of a copy is refused.
    pub blocklist: Arc<asepsis_store::blocklist::BlockList>,
    /// `takedown.match_distance`.
    pub match_distance: u32,
    /// The operator's page: sessions and the last hour of figures.
    pub ops: Arc<ops::Ops>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Asepsis", description = "Secure media ingest: upload with consent, strip, review, publish."),
    paths(
        consents::create, consents::get, consents::withdraw,
        assets::upload, assets::status, assets::provenance, assets::review_queue, assets::review,
        media::get, audit::list, stats::get, healthz, readyz,
        subjects::erase, subjects::restrict, subjects::unrestrict, subjects::object,
        subjects::export, subjects::disclosures, subjects::rectify,
        takedowns::create, takedowns::get, takedowns::list, takedowns::counter_notice,
        takedowns::court_action, batches::create, batches::get,
        ops::queues, ops::list_dead_letters, ops::replay_one, ops::replay_all,
    ),
    modifiers(&BearerKey, &Conventions)
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
    let upload_limit = usize::try_from(
        state
            .max_upload_bytes
            .saturating_add(assets::MULTIPART_FRAMING),
    )
    .unwrap_or(usize::MAX);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .route("/v1/consents", post(consents::create))
        .route(
            "/v1/consents/{id}",
            get(consents::get).patch(subjects::rectify),
        )
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
        .route("/v1/batches", post(batches::create))
        .route("/v1/batches/{id}", get(batches::get))
        .route("/media/{id}", get(media::get))
        .route("/v1/audit", get(audit::list))
        .route("/v1/stats", get(stats::get))
        .route(
            "/v1/takedowns",
            post(takedowns::create).get(takedowns::list),
        )
        .route("/v1/takedowns/{id}", get(takedowns::get))
        .route(
            "/v1/takedowns/{id}/counter-notice",
            post(takedowns::counter_notice),
        )
        .route(
            "/v1/takedowns/{id}/court-action",
            post(takedowns::court_action),
        )
        .route("/v1/subjects/{ref}/erase", post(subjects::erase))
        .route("/v1/subjects/{ref}/restrict", post(subjects::restrict))
        .route("/v1/subjects/{ref}/unrestrict", post(subjects::unrestrict))
        .route("/v1/subjects/{ref}/object", post(subjects::object))
        .route("/v1/subjects/{ref}/export", post(subjects::export))
        .route("/v1/subjects/{ref}/disclosures", get(subjects::disclosures))
        .route("/v1/ops/queues", get(ops::queues))
        .route("/v1/ops/dead-letters", get(ops::list_dead_letters))
        .route("/v1/ops/dead-letters/replay", post(ops::replay_all))
        .route("/v1/ops/dead-letters/{id}/replay", post(ops::replay_one))
        .route("/ops", get(ops::page::page))
        .route("/ops/panel", get(ops::page::panel))
        .route("/ops/sign-in", post(ops::page::sign_in))
        .route("/ops/sign-out", post(ops::page::sign_out))
        .route("/ops/dead-letters/replay", post(ops::page::replay_all))
        .route("/ops/dead-letters/{id}/replay", post(ops::page::replay_one))
        .route("/ops/static/{name}", get(ops::page::asset))
        .with_state(state)
        .layer(middleware::map_response(error::log_failures))
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
    crate::telemetry::observe(&state).await;
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
