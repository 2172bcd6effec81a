//! The import's HTTP client: the API key as a sensitive header (never logged, never in a
//! URL, never sent in clear text beyond loopback), and the retry rule. Connection errors,
//! 408, 409 (the same key is in progress), 429 and 5xx are retried with exponential backoff
//! and full jitter, honouring `Retry-After`, for up to [`RETRY_FOR`] (longer than the
//! server's hold on an interrupted upload's key); any other 4xx is final for the request.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

/// How long a request is usually retried before giving up (the row stays for a rerun).
pub const RETRY_FOR: Duration = Duration::from_secs(300);
const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(30);

/// How a request ended.
pub enum Outcome {
    /// A 2xx.
    Ok(Response),
    /// A 4xx that retrying will not change: the status and the server's message.
    Refused(StatusCode, String),
    /// Still failing after every attempt, or interrupted: the last failure, in words.
    GaveUp(String),
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// # Errors
    /// The URL is not http(s), or is plain http to another host than this one; the key is
    /// not a valid header value.
    pub fn new(base: &str, key: &str) -> anyhow::Result<Client> {
        let url = reqwest::Url::parse(base).map_err(|e| anyhow::anyhow!("--url: {e}"))?;
        let host = url.host_str().unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            "http" => {
                anyhow::bail!("--url: plain http would send the API key in clear text; use https")
            }
            _ => anyhow::bail!("--url: not an http(s) URL"),
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| anyhow::anyhow!("the API key has characters a header cannot carry"))?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .tcp_keepalive(Duration::from_secs(30))
            .build()?;
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// Send what `build` makes (called afresh for each attempt: a streamed body is reopened),
    /// retrying as the module says for up to `budget`.
    pub async fn send<F, Fut>(&self, budget: Duration, mut build: F) -> Outcome
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::io::Result<RequestBuilder>>,
    {
        let mut last = String::new();
        let started = Instant::now();
        for attempt in 0.. {
            if attempt > 0 {
                if started.elapsed() > budget {
                    break;
                }
                tokio::time::sleep(backoff(attempt)).await;
            }
            let request = match build().await {
                Ok(request) => request,
                Err(e) => return Outcome::GaveUp(format!("cannot read the file: {e}")),
            };
            match request.send().await {
                Err(e) => last = describe(&e),
                Ok(response) => {
                    let status = response.status();
                    if status.is_success() {
                        return Outcome::Ok(response);
                    }
                    let retry_after = retry_after(&response);
                    let message = error_message(response).await;
                    if !retryable(status) {
                        return Outcome::Refused(status, message);
                    }
                    last = format!("{status}: {message}");
                    if let Some(wait) = retry_after {
                        tokio::time::sleep(wait.min(MAX_DELAY)).await;
                    }
                }
            }
        }
        Outcome::GaveUp(last)
    }
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || matches!(
            status,
            StatusCode::REQUEST_TIMEOUT | StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS
        )
}

/// Full jitter: a random wait up to `FIRST_DELAY * 2^attempt`, capped.
fn backoff(attempt: u32) -> Duration {
    let ceiling = FIRST_DELAY
        .saturating_mul(1 << attempt.min(16))
        .min(MAX_DELAY);
    let random = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0;
    ceiling.mul_f64(random.max(0.1))
}

fn retry_after(response: &Response) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// The server's `{"error": ...}`, or the status's reason.
async fn error_message(response: Response) -> String {
    let status = response.status();
    let fallback = status.canonical_reason().unwrap_or("error").to_owned();
    match response.json::<serde_json::Value>().await {
        Ok(body) => body
            .get("error")
            .and_then(|e| e.as_str())
            .map_or(fallback, str::to_owned),
        Err(_) => fallback,
    }
}

/// A transport failure in words, without the URL (it may carry ids the user did not ask
/// to see in a log).
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "cannot connect to the server"
    } else if e.is_timeout() {
        "the request timed out"
    } else if e.is_body() || e.is_request() {
        "the connection failed mid-request"
    } else {
        "the request failed"
    };
    what.to_owned()
}
