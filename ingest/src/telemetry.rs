//! The HTTP service's metrics, named by Prometheus conventions (`asepsis_` prefix, unit
//! suffixes) and labelled only from small fixed sets: the route template, the method and the
//! status, a queue state; never an id. Gauges of what other parts hold (the queue's counts,
//! the key-encryption key) are read when `/metrics` is scraped, and by the page's sampler.

use asepsis_queue::QueueStats;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge};

use crate::AppState;

/// Describe the service's metrics and create the series that have no request behind them.
pub fn register() {
    describe_counter!(
        "asepsis_http_requests_total",
        "HTTP requests answered, by route template, method and status."
    );
    describe_histogram!(
        "asepsis_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by route template, method and status."
    );
    describe_counter!(
        "asepsis_received_bytes_total",
        metrics::Unit::Bytes,
        "Bytes of uploads accepted (202)."
    );
    describe_counter!(
        "asepsis_served_bytes_total",
        metrics::Unit::Bytes,
        "Bytes of published media sent (the Content-Length of each answer)."
    );
    describe_gauge!(
        "asepsis_queue_messages",
        "Messages in the job queue by state: ready, in_flight, retrying (waiting out a retry delay), dead."
    );
    describe_gauge!(
        "asepsis_queue_up",
        "1 when the queue (the broker or the spool) answered the last scrape, else 0."
    );
    describe_gauge!(
        "asepsis_face_detector_up",
        "1 when the face detector is loaded; 0 holds every image for review."
    );
    describe_gauge!(
        "asepsis_kek_version",
        "Version of the key-encryption key new data keys are wrapped under."
    );
    describe_gauge!(
        "asepsis_build_info",
        "Always 1; the version label names the running build."
    );
    counter!("asepsis_received_bytes_total").absolute(0);
    counter!("asepsis_served_bytes_total").absolute(0);
    gauge!("asepsis_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Read the gauges of what the service depends on; the queue's counts, when it answered.
pub async fn observe(state: &AppState) -> Option<QueueStats> {
    let stats = state.queue.stats().await.ok();
    match &stats {
        Some(stats) => {
            let set = |s: &'static str, n: u64| {
                gauge!("asepsis_queue_messages", "state" => s).set(n as f64);
            };
            set("ready", stats.ready);
            set("retrying", stats.retrying);
            set("dead", stats.dead);
            if let Some(n) = stats.in_flight {
                set("in_flight", n);
            }
            gauge!("asepsis_queue_up").set(1.0);
        }
        None => gauge!("asepsis_queue_up").set(0.0),
    }
    gauge!("asepsis_kek_version").set(f64::from(state.storage.current_kek().version));
    stats
}

/// Whether the face detector is loaded: set once at start by every process (it does not
/// change while one runs).
pub fn face_detector_up(up: bool) {
    gauge!("asepsis_face_detector_up").set(if up { 1.0 } else { 0.0 });
}

/// An upload of `bytes` was accepted.
pub fn received(bytes: u64) {
    counter!("asepsis_received_bytes_total").increment(bytes);
}

/// `bytes` of published media are being sent.
pub fn served(bytes: u64) {
    counter!("asepsis_served_bytes_total").increment(bytes);
}
