//! The composition root: build the real adapters from typed settings and run the services.
//!
//! [`run`] starts the HTTP service, the worker, or both ([`Services`]) until `shutdown` is
//! cancelled, then drains; tests call it in-process. The command line (`src/cli/`) and the
//! binary (`src/main.rs`) only parse, load settings and call in here. This crate holds no
//! business rule and reads no environment or file beyond what the settings name: the key
//! files, the data directory and an overriding face model.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use asepsis_common::audit::{AuditAction, AuditRecord};
use asepsis_common::faces::{self, Detector, Unavailable, YuNet};
use asepsis_common::provenance::Signer;
use asepsis_config::{QueueBackend, Settings, Store};
use asepsis_ingest::AppState;
use asepsis_queue::notify::{self, Notifier};
use asepsis_queue::{EmbeddedQueue, Queue, RabbitQueue, RetryPolicy};
use asepsis_store::keyring::LocalKeyring;
use asepsis_store::{Storage, signing_key};
use asepsis_worker::jobs::AssetJobs;
use asepsis_worker::runner::{self, RunnerConfig};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The face model the binary embeds (`models/`, MIT, with its licence and hash), so a first
/// run scans faces with no file on disk. Checked against `faces.model_sha256` at start.
pub const FACE_MODEL: &[u8] = include_bytes!("../models/face_detection_yunet_2023mar.onnx");

/// Which services one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Services {
    /// HTTP and a worker (`asepsis up`).
    All,
    /// The HTTP service alone.
    Ingest,
    /// A worker alone.
    Worker,
}

impl Services {
    fn http(self) -> bool {
        matches!(self, Services::All | Services::Ingest)
    }

    fn worker(self) -> bool {
        matches!(self, Services::All | Services::Worker)
    }
}

/// Run `services` until `shutdown` is cancelled, then finish in-flight work and return.
/// HTTP listens on `server.listen`.
///
/// # Errors
/// A queue, store, key file or listener that cannot be opened; a server that fails.
pub async fn run(
    settings: Settings,
    services: Services,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve(settings, services, None, shutdown).await
}

/// [`run`] with HTTP on a listener already bound (tests bind port 0 and read it back).
///
/// # Errors
/// As [`run`].
pub async fn run_on(
    listener: TcpListener,
    settings: Settings,
    services: Services,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve(settings, services, Some(listener), shutdown).await
}

/// Serve on `listener`, or, for HTTP, bind `server.listen` once the queue, the store and the
/// keys are open (so the port answers only when the service can work).
async fn serve(
    settings: Settings,
    services: Services,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let metrics = install_metrics()?;
    let data_dir = &settings.server.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let (queue, notifier) = open_queue(&settings, services.worker()).await?;
    let (storage, keys) = open_storage(&settings)?;
    let signer = Arc::new(keys.signer);
    let detector = face_detector(&settings.faces);
    asepsis_ingest::telemetry::face_detector_up(detector.ready().is_ok());
    match detector.ready() {
        Ok(()) => tracing::info!("face detector loaded"),
        Err(why) => {
            tracing::warn!(%why, "face detector unavailable: every image will be held for review")
        }
    }
    let desk = asepsis_rights::Desk {
        storage: storage.clone(),
        signer: signer.clone(),
        queue: Some(queue.clone()),
        lock_ttl: settings.rights.lock_ttl(),
        notifier: notifier.clone(),
        takedown: settings.takedown.clone(),
    };
    let blocklist = Arc::new(asepsis_store::blocklist::BlockList::new(storage.clone()));
    let takedown_task = services.worker().then(|| {
        let instance = uuid::Uuid::new_v4();
        let interval = settings.takedown.interval_secs;
        tokio::spawn(asepsis_worker::takedowns::schedule(
            desk.clone(),
            interval,
            instance,
            shutdown.clone(),
        ))
    });
    let retention_task = services.worker().then(|| {
        let retention = Arc::new(asepsis_worker::retention::Retention {
            storage: storage.clone(),
            signer: signer.clone(),
            settings: settings.retention.clone(),
        });
        let instance = uuid::Uuid::new_v4();
        tokio::spawn(retention.schedule(instance, shutdown.clone()))
    });
    let worker_task = services.worker().then(|| {
        let jobs = Arc::new(AssetJobs {
            storage: storage.clone(),
            signer: signer.clone(),
            limits: settings.strip.clone(),
            detector: detector.clone(),
            notifier: notifier.clone(),
            cpu: Arc::new(tokio::sync::Semaphore::new(settings.worker.cpu_permits())),
            blocklist: blocklist.clone(),
            match_distance: settings.takedown.match_distance,
            dicom_uid_secret: keys.dicom_uid_secret.clone(),
        });
        let config = RunnerConfig {
            concurrency: settings.worker.concurrency,
            prefetch: settings.prefetch(),
        };
        let (queue, shutdown) = (queue.clone(), shutdown.clone());
        tokio::spawn(async move { runner::run(queue, jobs, config, shutdown).await })
    });
    let worker_metrics = match (services.http(), settings.worker.metrics_listen) {
        (false, Some(addr)) => {
            let listener = bind(addr).await?;
            tracing::info!(addr = %listener.local_addr().context("bound address")?, "metrics listening");
            let app = metrics_app(metrics.clone());
            let stop = shutdown.clone().cancelled_owned();
            Some(tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
            }))
        }
        _ => None,
    };
    let listener = match (listener, services.http()) {
        (Some(listener), true) => Some(listener),
        (None, true) => Some(bind(settings.server.listen).await?),
        (_, false) => None,
    };
    if let Some(listener) = listener {
        let addr = listener.local_addr().context("bound address")?;
        tracing::info!(%addr, "listening");
        let timeout = Duration::from_secs(settings.server.request_timeout_secs);
        let state = AppState {
            queue: queue.clone(),
            metrics,
            storage,
            signer,
            notifier,
            detector,
            max_upload_bytes: settings.strip.max_input_bytes,
            idempotency_lease: asepsis_ingest::default_idempotency_lease(timeout),
            stats_min_count: settings.stats.min_count,
            desk,
            blocklist,
            match_distance: settings.takedown.match_distance,
            ops: Arc::new(asepsis_ingest::ops::Ops::new(settings.ops.session_ttl())),
        };
        let sampler = tokio::spawn(asepsis_ingest::ops::run_sampler(
            state.clone(),
            shutdown.clone().cancelled_owned(),
        ));
        serve_http(
            listener,
            asepsis_ingest::app(state, timeout),
            timeout,
            &shutdown,
        )
        .await;
        sampler.await.context("ops sampler")?;
    } else {
        tracing::info!("worker only; no HTTP");
    }
    shutdown.cancelled().await;
    if let Some(task) = worker_task {
        task.await.context("worker task")??;
    }
    if let Some(task) = retention_task {
        task.await.context("retention task")?;
    }
    if let Some(task) = takedown_task {
        task.await.context("take-down task")?;
    }
    if let Some(task) = worker_metrics {
        task.await
            .context("metrics task")?
            .context("metrics server")?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Serve `app` on `listener` until `shutdown`, then let open requests finish (for at most
/// `timeout`). A connection whose request headers have not all arrived within `timeout` is
/// closed (hyper's header-read timeout): a client that never finishes them holds nothing.
async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    timeout: Duration,
    shutdown: &CancellationToken,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after the request timeout; stopping anyway");
    }
}

/// `/metrics` and `/healthz` alone, for a worker that serves no API.
fn metrics_app(handle: PrometheusHandle) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let text = handle.render();
                async move { ([("content-type", "text/plain; version=0.0.4")], text) }
            }),
        )
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// The queue's retry policy from the settings.
pub fn retry_policy(settings: &Settings) -> RetryPolicy {
    RetryPolicy {
        max_attempts: settings.queue.max_attempts,
        retry_delays: settings.queue.retry_delays(),
    }
}

/// The configured queue and where asset notifications go; `serving` takes the embedded
/// spool's lock and reclaims its jobs (operator commands open it beside a server instead).
///
/// # Errors
/// The spool cannot be opened, or the broker cannot be reached.
pub async fn open_queue(
    settings: &Settings,
    serving: bool,
) -> anyhow::Result<(Arc<dyn Queue>, Arc<dyn Notifier>)> {
    let policy = retry_policy(settings);
    Ok(match &settings.queue.backend {
        QueueBackend::Embedded => {
            let dir = settings.server.data_dir.join("queue");
            let queue = if serving {
                EmbeddedQueue::open(&dir, policy)
            } else {
                EmbeddedQueue::open_admin(&dir, policy)
            };
            let queue = Arc::new(queue.context("embedded queue")?);
            (queue, Arc::new(notify::InProcess::new()))
        }
        QueueBackend::Rabbitmq { url, queue } => {
            let timeout = settings.queue.confirm_timeout();
            let rabbit = RabbitQueue::connect(url.expose_secret(), queue, policy, timeout)
                .await
                .context("RabbitMQ queue")?;
            let notifier = notify::Exchange {
                queue: rabbit.clone(),
                exchange: settings.queue.events_exchange.clone(),
            };
            (Arc::new(rabbit), Arc::new(notifier))
        }
    })
}

/// The embedded key files, created together (mode 0600) on first use: `DATA/keys/keyring.json`
/// (the KEKs), `DATA/keys/signing.pk8` (this service's Ed25519 provenance key) and
/// `DATA/keys/dicom-uid.key` (the secret of the tenants' DICOM UID keys).
pub struct Keys {
    pub keyring: Arc<LocalKeyring>,
    pub signer: Signer,
    pub dicom_uid_secret: Arc<asepsis_common::dicom::UidSecret>,
}

fn open_keys(settings: &Settings) -> anyhow::Result<Keys> {
    let dir = settings.keys_dir();
    let keyring = LocalKeyring::open_or_create(&dir.join("keyring.json")).context("keyring")?;
    let signer = signing_key::load_or_create(&dir.join("signing.pk8")).context("signing key")?;
    let dicom_uid_secret = signing_key::load_or_create_secret(&dir.join("dicom-uid.key"))
        .context("DICOM UID secret")?;
    let dicom_uid_secret = Arc::new(dicom_uid_secret.into());
    Ok(Keys {
        keyring: Arc::new(keyring),
        signer,
        dicom_uid_secret,
    })
}

/// The configured object store (a local directory or S3) with the embedded keyring, and the
/// key files (created on first use).
///
/// # Errors
/// A key file cannot be read, parsed or created; the directory cannot be created, or the S3
/// settings do not make a client.
pub fn open_storage(settings: &Settings) -> anyhow::Result<(Storage, Keys)> {
    let keys = open_keys(settings)?;
    let storage = Storage::new(object_store(settings)?, keys.keyring.clone());
    Ok((storage, keys))
}

fn object_store(settings: &Settings) -> anyhow::Result<Arc<dyn ObjectStore>> {
    Ok(match &settings.store {
        Store::Local { .. } => {
            let root = settings.local_store_root().context("local store root")?;
            std::fs::create_dir_all(&root)
                .with_context(|| format!("cannot create store dir {}", root.display()))?;
            Arc::new(LocalFileSystem::new_with_prefix(&root).context("local store")?)
        }
        Store::S3 {
            bucket,
            region,
            endpoint,
            access_key_id,
            secret_access_key,
            allow_http,
        } => {
            let mut builder = AmazonS3Builder::new();
            for (name, value) in asepsis_config::aws_env() {
                if let Ok(key) = name.parse::<AmazonS3ConfigKey>() {
                    builder = builder.with_config(key, value.expose_secret());
                }
            }
            // Create-only puts (events, keys) use If-None-Match, which S3 and moto honour.
            builder = builder
                .with_bucket_name(bucket)
                .with_region(region)
                .with_allow_http(*allow_http)
                .with_conditional_put(S3ConditionalPut::ETagMatch);
            if let Some(endpoint) = endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let (Some(id), Some(secret)) = (access_key_id, secret_access_key) {
                builder = builder
                    .with_access_key_id(id.expose_secret())
                    .with_secret_access_key(secret.expose_secret());
            }
            Arc::new(builder.build().context("S3 store (store.*)")?)
        }
    })
}

/// The face detector: the embedded model, or the file `faces.model_path` names; when it is
/// missing or not the pinned model, [`Unavailable`] with the reason (every image is then
/// `not_scanned` and held for review).
pub fn face_detector(settings: &faces::Settings) -> Arc<dyn Detector> {
    let loaded = match &settings.model_path {
        None => YuNet::from_model(FACE_MODEL, settings.clone()).map_err(|e| e.to_string()),
        Some(path) => read_model(path)
            .and_then(|bytes| {
                YuNet::from_model(&bytes, settings.clone()).map_err(|e| e.to_string())
            })
            .map_err(|e| format!("{} ({})", e, path.display())),
    };
    match loaded {
        Ok(yunet) => Arc::new(yunet),
        Err(why) => Arc::new(Unavailable(why)),
    }
}

fn read_model(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("face model: {e}"))
}

fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    const SECONDS: &[f64] = &[
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .context("metrics buckets")?
        .install_recorder()
        .context("metrics recorder")?;
    asepsis_ingest::telemetry::register();
    asepsis_worker::metrics::register();
    asepsis_store::register_metrics();
    Ok(handle)
}

/// Who acts from the host's command line, in the audit log: `host:<user>`.
pub fn host_actor() -> String {
    format!("host:{}", asepsis_config::os_user())
}

/// Record an action taken on the host (`asepsis keys`, `asepsis ctl replay`) in the signed
/// audit log, as `host:<user>`.
///
/// # Errors
/// The store fails.
pub async fn audit_host_action(
    storage: &Storage,
    signer: &Signer,
    tenant: Option<String>,
    action: AuditAction,
    targets: Vec<String>,
) -> anyhow::Result<()> {
    let record = AuditRecord {
        actor: host_actor(),
        tenant,
        action,
        targets,
    };
    storage
        .append_audit(signer, record)
        .await
        .context("writing the audit log")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_model_is_the_pinned_one() {
        let detector = face_detector(&faces::Settings::default());
        assert_eq!(detector.ready(), Ok(()));
    }

    #[test]
    fn a_missing_model_file_leaves_the_detector_unavailable_with_the_reason() {
        let settings = faces::Settings {
            model_path: Some("/nonexistent/model.onnx".into()),
            ..faces::Settings::default()
        };
        let detector = face_detector(&settings);
        let why = detector.ready().unwrap_err();
        assert!(
            why.contains("face model") && why.contains("/nonexistent/model.onnx"),
            "{why}"
        );
        let scan = detector.scan(b"\xFF\xD8\xFF");
        assert_eq!(scan.verdict, faces::Verdict::NotScanned);
    }
}
