//! `/ops`: the operator's page, server-rendered (minijinja templates under `templates/`,
//! escaped as HTML), with a small script that refreshes the figures from `/ops/panel` every
//! few seconds. Sign-in takes an operator's API key once and keeps only a session
//! ([`super::session`]); every form that changes state carries the session's CSRF token.
//! Shows counts, rates, latencies, ids and reasons: never a file name, a consent field, a
//! subject reference, a batch label or a metadata value.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, Mutex};

use asepsis_common::apikey::Role;
use asepsis_queue::Replay;
use asepsis_store::now_ms;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::{Environment, context};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::pulse::{self, HISTORY, Percentiles, Sample};
use super::session::{self, COOKIE, SIGN_IN_COOKIE, Session};
use super::{Actor, DeadLetterView};
use crate::AppState;
use crate::auth::authenticate;
use crate::error::ApiError;

/// How often the page asks for fresh figures.
const REFRESH_SECS: u64 = 5;
/// How long the batches of a tenant are reused before they are tallied again.
const BATCHES_FRESH_MS: u64 = 15_000;
/// Batches created this long ago or later are shown while not done.
const BATCHES_SINCE_MS: u64 = 7 * 24 * 3600 * 1000;
/// At most this many dead letters are listed on the page (the API and `ctl` list all).
const DEAD_LETTERS_SHOWN: usize = 200;
/// At most this many batches are tallied for the page.
const BATCHES_SHOWN: usize = 10;

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        ("base.html", include_str!("../../templates/base.html")),
        ("ops.html", include_str!("../../templates/ops.html")),
        ("panel.html", include_str!("../../templates/panel.html")),
        ("sign_in.html", include_str!("../../templates/sign_in.html")),
        ("message.html", include_str!("../../templates/message.html")),
    ] {
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "ops template does not parse");
        }
    }
    env
});

/// The page's own assets: no build step, no third-party script.
pub async fn asset(Path(name): Path<String>) -> Response {
    let (kind, body) = match name.as_str() {
        "ops.css" => (
            "text/css; charset=utf-8",
            include_str!("../../static/ops.css"),
        ),
        "ops.js" => (
            "text/javascript; charset=utf-8",
            include_str!("../../static/ops.js"),
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let cache = "private, max-age=300";
    (
        [(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, cache)],
        body,
    )
        .into_response()
}

/// What this process keeps for the page: sessions, the last hour of samples, and the
/// tenants' batch tallies (reused for [`BATCHES_FRESH_MS`]).
pub struct Ops {
    pub sessions: session::Sessions,
    pub pulse: pulse::Pulse,
    batches: Mutex<HashMap<String, (u64, Vec<BatchRow>)>>,
    /// Batches seen done: not tallied again.
    done_batches: Mutex<HashSet<Uuid>>,
    /// The last listing of the dead letters, reused for [`REFRESH_SECS`] (on RabbitMQ a
    /// listing takes every dead letter and hands it back), dropped by a replay.
    dead_letters: Mutex<Option<(u64, Vec<DeadLetterView>)>>,
}

impl Ops {
    pub fn new(session_ttl: std::time::Duration) -> Self {
        Ops {
            sessions: session::Sessions::new(session_ttl),
            pulse: pulse::Pulse::default(),
            batches: Mutex::new(HashMap::new()),
            done_batches: Mutex::new(HashSet::new()),
            dead_letters: Mutex::new(None),
        }
    }
}

/// A page: HTML with the headers every page of this service carries.
fn html(status: StatusCode, body: String) -> Response {
    let csp = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
               img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

fn render(status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
    match TEMPLATES.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(template = name, error = %e, "ops page did not render");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error\n".to_owned(),
            )
        }
    }
}

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    render(status, "message.html", context! { title, text })
}

fn unavailable() -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "The queue or the store did not answer; nothing was lost. Try again.",
    )
}

fn forbidden(text: &str) -> Response {
    message(StatusCode::FORBIDDEN, "Not allowed", text)
}

const OPERATORS_ONLY: &str = "The operations page is for operator API keys only.";

/// A key sent as `Authorization: Bearer` to a page route: 403 unless it is an operator's
/// (the page itself works with a session; the header is checked so no role is let in by it).
async fn bearer_refused(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    match authenticate(state, token).await {
        Ok(caller) if caller.role == Role::Operator => None,
        Ok(_) => Some(forbidden(OPERATORS_ONLY)),
        Err(e) => Some(e.into_response()),
    }
}

#[derive(Deserialize)]
pub struct Flash {
    replayed: Option<usize>,
}

/// `GET /ops`: the page for a signed-in operator, else the sign-in form.
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(flash): Query<Flash>,
) -> Response {
    if let Some(refused) = bearer_refused(&state, &headers).await {
        return refused;
    }
    let Ok(session) = live_session(&state, &headers).await else {
        return sign_in_form(&headers, None, StatusCode::OK);
    };
    let overview = overview(&state, &session).await;
    let flash = flash.replayed.map(|n| match n {
        0 => "No dead letter was replayed: there was none.".to_owned(),
        1 => "1 dead letter queued again.".to_owned(),
        n => format!("{n} dead letters queued again."),
    });
    render(
        StatusCode::OK,
        "ops.html",
        context! { o => overview, csrf => session.csrf, key_id => session.key_id,
        tenant => session.tenant, flash, refresh_secs => REFRESH_SECS },
    )
}

/// `GET /ops/panel`: the figures alone, for the page's refresh. 401 when signed out.
pub async fn panel(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(refused) = bearer_refused(&state, &headers).await {
        return refused;
    }
    let session = match live_session(&state, &headers).await {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let overview = overview(&state, &session).await;
    render(
        StatusCode::OK,
        "panel.html",
        context! { o => overview, csrf => session.csrf },
    )
}

/// The sign-in form, with a fresh CSRF token doubled in a cookie.
fn sign_in_form(headers: &HeaderMap, error: Option<&str>, status: StatusCode) -> Response {
    let Some(token) = session::random_hex() else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, "Error", "No randomness.");
    };
    let mut response = render(status, "sign_in.html", context! { csrf => token, error });
    if let Some(cookie) = session::set_cookie(headers, SIGN_IN_COOKIE, &token, 600) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
pub struct SignIn {
    key: Option<String>,
    csrf: Option<String>,
}

/// `POST /ops/sign-in`: an operator's key for a session cookie. Other roles: 403.
pub async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    let doubled = session::cookie(&headers, SIGN_IN_COOKIE);
    let csrf_ok =
        matches!((&form.csrf, &doubled), (Some(a), Some(b)) if asepsis_common::same_secret(a, b));
    if !csrf_ok {
        return forbidden("The sign-in form expired or did not come from this page: reload it.");
    }
    let key = form.key.unwrap_or_default();
    let caller = match authenticate(&state, &key).await {
        Ok(caller) => caller,
        Err(ApiError::Unavailable(_)) => return unavailable(),
        Err(_) => {
            let why = "That API key is not recognised, or was disabled.";
            return sign_in_form(&headers, Some(why), StatusCode::UNAUTHORIZED);
        }
    };
    if caller.role != Role::Operator {
        return forbidden(OPERATORS_ONLY);
    }
    let Some((token, _)) = state.ops.sessions.open(&caller) else {
        return message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error",
            "Could not open a session.",
        );
    };
    tracing::info!(key.id = %caller.key_id, "operator signed in to /ops");
    let mut response = Redirect::to("/ops").into_response();
    let ttl = state.ops.sessions.ttl_secs();
    for cookie in [
        session::set_cookie(&headers, COOKIE, &token, ttl),
        session::set_cookie(&headers, SIGN_IN_COOKIE, "", 0),
    ]
    .into_iter()
    .flatten()
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

/// Why a state-changing form was refused.
enum Refused {
    /// 401: no live session.
    SignedOut,
    /// 403: the form did not carry the session's CSRF token.
    NoToken,
    /// 503: the store did not answer.
    Unavailable,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::SignedOut => message(
                StatusCode::UNAUTHORIZED,
                "Signed out",
                "Your session ended: sign in again.",
            ),
            Refused::NoToken => forbidden(
                "This form did not carry the page's token: reload the page and try again.",
            ),
            Refused::Unavailable => unavailable(),
        }
    }
}

/// The request's session, while its key is still an operator's and not disabled (checked on
/// every use, so disabling a key ends its sessions at once).
async fn live_session(state: &AppState, headers: &HeaderMap) -> Result<Session, Refused> {
    let session = state.ops.sessions.find(headers).ok_or(Refused::SignedOut)?;
    match state.storage.api_key(&session.key_id).await {
        Ok(Some(key)) if key.disabled.is_none() && key.role == Role::Operator => Ok(session),
        Ok(_) => {
            state.ops.sessions.close(headers);
            Err(Refused::SignedOut)
        }
        Err(_) => Err(Refused::Unavailable),
    }
}

/// The session of a state-changing form.
async fn form_session(
    state: &AppState,
    headers: &HeaderMap,
    form: &CsrfForm,
) -> Result<Session, Refused> {
    let session = live_session(state, headers).await?;
    match &form.csrf {
        Some(token) if asepsis_common::same_secret(token, &session.csrf) => Ok(session),
        _ => Err(Refused::NoToken),
    }
}

/// `POST /ops/sign-out`.
pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = form_session(&state, &headers, &form).await {
        return refused.into_response();
    }
    state.ops.sessions.close(&headers);
    let mut response = Redirect::to("/ops").into_response();
    if let Some(cookie) = session::set_cookie(&headers, COOKIE, "", 0) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /ops/dead-letters/{id}/replay` from the page's button; audited.
pub async fn replay_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    replay(&state, &headers, &form, Replay::One(id)).await
}

/// `POST /ops/dead-letters/replay` from the page's Replay-all button; audited.
pub async fn replay_all(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    replay(&state, &headers, &form, Replay::All).await
}

async fn replay(state: &AppState, headers: &HeaderMap, form: &CsrfForm, which: Replay) -> Response {
    let session = match form_session(state, headers, form).await {
        Ok(session) => session,
        Err(refused) => return refused.into_response(),
    };
    let one = matches!(which, Replay::One(_));
    let actor = Actor::key(&session.key_id, &session.tenant);
    let replayed = super::replay(&*state.queue, &state.storage, &state.signer, actor, which).await;
    if let Ok(mut listing) = state.ops.dead_letters.lock() {
        *listing = None;
    }
    match replayed {
        Ok(ids) if one && ids.is_empty() => message(
            StatusCode::NOT_FOUND,
            "Not found",
            "No dead letter has that id (it may have been replayed already).",
        ),
        Ok(ids) => Redirect::to(&format!("/ops?replayed={}", ids.len())).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "replay from /ops failed");
            unavailable()
        }
    }
}

/// Everything the page shows, as the templates read it.
#[derive(Serialize)]
struct Overview {
    queue: Option<super::QueueCounts>,
    trend: Trend,
    /// Seconds the rates and percentiles span (`None`: no earlier sample yet).
    window_secs: Option<u64>,
    uploads_per_sec: String,
    settled_per_sec: Vec<(String, String)>,
    latency: Vec<LatencyRow>,
    held: Vec<(String, u64)>,
    rejected: Vec<(String, u64)>,
    /// The oldest [`DEAD_LETTERS_SHOWN`].
    dead_letters: Vec<DeadLetterRow>,
    /// How many more there are.
    dead_letters_more: usize,
    dead_letters_error: bool,
    batches: Vec<BatchRow>,
    /// Why the face detector is unavailable; `None` when it is loaded.
    detector_unavailable: Option<String>,
    kek: String,
    updated: String,
}

#[derive(Serialize)]
struct LatencyRow {
    name: &'static str,
    p50: String,
    p90: String,
    p99: String,
    count: u64,
}

impl LatencyRow {
    fn new(name: &'static str, p: Percentiles) -> Self {
        let show = |s: Option<f64>| match s {
            None => "—".to_owned(),
            Some(s) if s < 1.0 => format!("{:.0} ms", s * 1000.0),
            Some(s) => format!("{s:.2} s"),
        };
        LatencyRow {
            name,
            p50: show(p.p50),
            p90: show(p.p90),
            p99: show(p.p99),
            count: p.count,
        }
    }
}

fn per_sec(rate: Option<f64>) -> String {
    rate.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}/s"))
}

#[derive(Serialize)]
struct DeadLetterRow {
    #[serde(flatten)]
    letter: DeadLetterView,
    when: String,
}

#[derive(Debug, Clone, Serialize)]
struct BatchRow {
    id: String,
    expected: u64,
    assets: u64,
    settled: u64,
    counts: Vec<(String, u64)>,
}

/// The queue's trend as SVG polylines on a `WIDTH`×`HEIGHT` box (x: the last hour).
#[derive(Serialize, Default)]
struct Trend {
    waiting: String,
    dead: String,
    max: u64,
    samples: usize,
}

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 80.0;

fn trend(history: &[Sample], now_ms: u64) -> Trend {
    let points: Vec<(u64, u64, u64)> = history
        .iter()
        .filter_map(|s| {
            let q = s.queue.as_ref()?;
            Some((
                s.at_ms,
                q.ready + q.retrying + q.in_flight.unwrap_or(0),
                q.dead,
            ))
        })
        .collect();
    let max = points
        .iter()
        .map(|p| p.1.max(p.2))
        .max()
        .unwrap_or(0)
        .max(1);
    let span = HISTORY.as_millis() as f64;
    let line = |value: fn(&(u64, u64, u64)) -> u64| {
        points
            .iter()
            .map(|p| {
                let age = now_ms.saturating_sub(p.0) as f64;
                let x = WIDTH - (age / span * WIDTH).min(WIDTH);
                let y = HEIGHT - value(p) as f64 / max as f64 * (HEIGHT - 4.0) - 2.0;
                format!("{x:.1},{y:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    Trend {
        waiting: line(|p| p.1),
        dead: line(|p| p.2),
        max,
        samples: points.len(),
    }
}

fn when(ms: Option<u64>) -> String {
    ms.and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.replace_millisecond(0).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .map_or_else(|| "—".to_owned(), |t| t.replace('T', " ").replace('Z', ""))
}

/// Labels a series must carry.
type Labels = &'static [(&'static str, &'static str)];

/// An upload accepted.
const ACCEPTED: Labels = &[
    ("route", "/v1/assets"),
    ("method", "POST"),
    ("status", "202"),
];

/// The pipeline's stages, as the worker labels `asepsis_stage_duration_seconds`.
const STAGES: [&str; 7] = [
    "decrypt", "strip", "verify", "scan", "redact", "encrypt", "publish",
];

/// A sample now: the queue's counts and this process's metrics, its gauges read first.
pub async fn sample(state: &AppState) -> Sample {
    let queue = crate::telemetry::observe(state).await;
    Sample::new(queue, &state.metrics.render())
}

/// The dead letters, listed at most once per [`REFRESH_SECS`] however many pages are open,
/// and not at all while the queue counts none.
async fn dead_letters(state: &AppState, dead: u64) -> Result<Vec<DeadLetterView>, ()> {
    if dead == 0 {
        return Ok(Vec::new());
    }
    let now = now_ms();
    if let Ok(listing) = state.ops.dead_letters.lock()
        && let Some((at, letters)) = listing.as_ref()
        && now.saturating_sub(*at) < REFRESH_SECS * 1000
    {
        return Ok(letters.clone());
    }
    let letters = super::dead_letters(&*state.queue).await.map_err(|_| ())?;
    if let Ok(mut listing) = state.ops.dead_letters.lock() {
        *listing = Some((now, letters.clone()));
    }
    Ok(letters)
}

async fn overview(state: &AppState, session: &Session) -> Overview {
    let now = sample(state).await;
    let history = state.ops.pulse.history();
    let start = state.ops.pulse.window_start(now.at_ms);
    let hour_ago = history.first().filter(|s| s.at_ms < now.at_ms);
    let settled = "asepsis_assets_settled_total";
    let rate = |name: &str, want: &[(&str, &str)]| {
        start
            .as_ref()
            .and_then(|old| pulse::rate(old, &now, name, want))
    };
    let counted = |outcome: &str| -> Vec<(String, u64)> {
        let want = [("outcome", outcome)];
        let before = hour_ago
            .map(|s| s.by(settled, &want, "class"))
            .unwrap_or_default();
        now.by(settled, &want, "class")
            .into_iter()
            .map(|(class, n)| {
                let was = before
                    .iter()
                    .find(|(c, _)| *c == class)
                    .map_or(0.0, |b| b.1);
                (class, (n - was).max(0.0) as u64)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    };
    let dead = now.queue.as_ref().map_or(1, |q| q.dead);
    let (dead_letters, dead_letters_error) = match dead_letters(state, dead).await {
        Ok(letters) => (letters, false),
        Err(()) => (Vec::new(), true),
    };
    let mut all = history.clone();
    all.push(now.clone());
    let kek = state.storage.current_kek();
    Overview {
        queue: now.queue.clone().map(Into::into),
        trend: trend(&all, now.at_ms),
        window_secs: start.as_ref().map(|s| (now.at_ms - s.at_ms) / 1000),
        uploads_per_sec: per_sec(rate("asepsis_http_requests_total", ACCEPTED)),
        settled_per_sec: ["published", "held", "rejected"]
            .into_iter()
            .map(|o| (o.to_owned(), per_sec(rate(settled, &[("outcome", o)]))))
            .collect(),
        latency: {
            let row = |name, metric, want: &[(&str, &str)]| {
                LatencyRow::new(name, pulse::percentiles(start.as_ref(), &now, metric, want))
            };
            let stage = "asepsis_stage_duration_seconds";
            [
                row(
                    "upload accepted (202)",
                    "asepsis_http_request_duration_seconds",
                    ACCEPTED,
                ),
                row("upload → settled", "asepsis_upload_to_settled_seconds", &[]),
            ]
            .into_iter()
            .chain(STAGES.map(|name| row(name, stage, &[("stage", name)])))
            .collect()
        },
        held: counted("held"),
        rejected: counted("rejected"),
        dead_letters_more: dead_letters.len().saturating_sub(DEAD_LETTERS_SHOWN),
        dead_letters: dead_letters
            .into_iter()
            .take(DEAD_LETTERS_SHOWN)
            .map(|letter| DeadLetterRow {
                when: when(letter.dead_at_ms),
                letter,
            })
            .collect(),
        dead_letters_error,
        batches: batches(state, &session.tenant).await,
        detector_unavailable: state.detector.ready().err(),
        kek: format!("{} v{}", kek.id, kek.version),
        updated: when(Some(now.at_ms)),
    }
}

/// The tenant's batches of the last week that are not done, tallied (at most
/// [`BATCHES_SHOWN`], newest first), reused for [`BATCHES_FRESH_MS`].
async fn batches(state: &AppState, tenant: &str) -> Vec<BatchRow> {
    let now = now_ms();
    if let Ok(cache) = state.ops.batches.lock()
        && let Some((at, rows)) = cache.get(tenant)
        && now.saturating_sub(*at) < BATCHES_FRESH_MS
    {
        return rows.clone();
    }
    let mut rows = Vec::new();
    let ids = state
        .storage
        .batches_since(tenant, now.saturating_sub(BATCHES_SINCE_MS))
        .await
        .unwrap_or_default();
    let done = |id: &Uuid| state.ops.done_batches.lock().is_ok_and(|d| d.contains(id));
    for id in ids.into_iter().rev().filter(|id| !done(id)) {
        if rows.len() == BATCHES_SHOWN {
            break;
        }
        let Ok(Some(batch)) = state.storage.batch(id).await else {
            continue;
        };
        let Ok(tally) = crate::batches::tally(state, &batch).await else {
            continue;
        };
        if tally.done {
            // Done is final: every expected file uploaded and past the pipeline.
            if let Ok(mut done) = state.ops.done_batches.lock() {
                done.insert(id);
            }
            continue;
        }
        rows.push(BatchRow {
            id: batch.id.to_string(),
            expected: tally.expected,
            assets: tally.assets,
            settled: tally.settled,
            counts: tally.counts.into_iter().collect(),
        });
    }
    if let Ok(mut cache) = state.ops.batches.lock() {
        cache.insert(tenant.to_owned(), (now, rows.clone()));
    }
    rows
}

/// Sample every [`pulse::SAMPLE_EVERY`] into the page's last hour, until `stop` resolves.
pub async fn run_sampler(state: AppState, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        let sample = sample(&state).await;
        state.ops.pulse.record(sample);
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(pulse::SAMPLE_EVERY) => {}
        }
    }
}
