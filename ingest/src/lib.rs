//! The Asepsis HTTP service: the routes clients, operators and the website call.
//!
//! This crate owns the HTTP edge: routing, timeouts, request ids, request metrics and the
//! operational endpoints (`/healthz`, `/readyz`, `/metrics`). It must not hold business
//! rules (those live in `asepsis-common`) and must never log a request body, a client file
//! name, a client IP or a key: spans carry a request id, the route and the status only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use asepsis_common::queue::Queue;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Clone)]
pub struct AppState {
    pub queue: Arc<dyn Queue>,
    pub metrics: PrometheusHandle,
}

/// The whole HTTP application.
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
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
async fn healthz() -> &'static str {
    "ok\n"
}

/// The process can do its work: the queue answers.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.queue.stats().await {
        Ok(_) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: queue");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: queue unavailable\n",
            )
                .into_response()
        }
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
        let queue = EmbeddedQueue::open(dir, policy).unwrap();
        AppState {
            queue: Arc::new(queue),
            metrics: PrometheusBuilder::new().build_recorder().handle(),
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
}
