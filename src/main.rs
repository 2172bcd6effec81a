//! `asepsis`: the one binary. It parses the command line, loads the settings, starts tracing,
//! builds the real adapters and hands them to the services; it holds no business logic.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use asepsis_common::apikey::{self, Role};
use asepsis_common::faces;
use asepsis_common::keys::LocalKeyring;
use asepsis_common::notify::{self, Notifier};
use asepsis_common::provenance::{self, Signer, TrustedKeys};
use asepsis_common::queue::{EmbeddedQueue, Policy, Queue, RabbitQueue, Replay};
use asepsis_common::storage::Storage;
use asepsis_common::storage::now_ms;
use asepsis_config::{LogFormat, QueueBackend, Settings, Store};
use asepsis_ingest::AppState;
use asepsis_worker::jobs::AssetJobs;
use asepsis_worker::runner::{self, RunnerConfig};
use clap::{Args, Parser, Subcommand};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

mod sanitize;

/// mimalloc, because the face detector's large short-lived buffers suit glibc's malloc badly:
/// with it the server's peak resident size under load was about twice as high
/// (benches/e2e-load) and each detection slower (cargo bench --bench faces).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status of a command that is not in this build.
const NOT_BUILT: u8 = 2;

#[derive(Parser)]
#[command(name = "asepsis", version, about = "Secure media-ingest pipeline")]
struct Cli {
    /// Settings file layered over the built-in defaults (env ASEPSIS__SECTION__KEY wins).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr: text or json (overrides log.format).
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
struct Local {
    /// Data directory (spool, local store, audit log); overrides server.data_dir.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Address to serve HTTP on; overrides server.listen.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process on the configured (by default embedded) backends.
    Up(Local),
    /// The HTTP service alone (for RabbitMQ + S3 deployments).
    Ingest(Local),
    /// The worker alone (for RabbitMQ + S3 deployments).
    Worker(Local),
    /// Strip and verify files offline: exit 0 only when every file came out clean.
    Sanitize {
        /// Files and directories (walked recursively).
        #[arg(required = true, value_name = "FILE|DIR")]
        inputs: Vec<PathBuf>,
        /// Where clean files go, under the same relative names.
        #[arg(short = 'o', long = "out", value_name = "OUTDIR")]
        out: PathBuf,
        /// Write a JSON report (one entry per file) here.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// Face-scan files offline: per file the faces found (box, score) and the verdict
    /// (identifiable, uncertain, none, or not_scanned with the reason).
    Scan {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// One JSON object per file, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Batch import (not in this build).
    Import {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// API keys and key-encryption keys.
    Keys {
        /// Data directory of the embedded backends; overrides server.data_dir.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        #[command(subcommand)]
        command: Keys,
    },
    /// Operator commands.
    Ctl {
        /// Data directory of the embedded backends; overrides server.data_dir.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        #[command(subcommand)]
        command: Ctl,
    },
}

#[derive(Subcommand)]
enum Keys {
    /// Add a KEK version and re-wrap every data key under it, without touching a blob.
    /// Interrupted, it resumes where it stopped when run again.
    RotateKek,
    /// Create an API key for a tenant and role; prints the key (once) on stdout, nothing else.
    Create {
        /// Tenant id: 1 to 64 of a-z, 0-9, '-', '_'.
        #[arg(long)]
        tenant: String,
        /// uploader, reviewer, operator or privacy-officer.
        #[arg(long)]
        role: Role,
    },
}

#[derive(Subcommand)]
enum Ctl {
    /// Ready, in-flight, retrying and dead-letter counts.
    Queues {
        #[arg(long)]
        json: bool,
    },
    /// Dead letters: job id, reason, attempts (never bodies).
    DeadLetters {
        #[arg(long)]
        json: bool,
    },
    /// Move dead letters back to the queue; written to the audit log.
    Replay {
        /// The dead letter's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
    /// Print the audit log of operator actions.
    Audit,
    /// Verify an asset's provenance: sequence, hash chain and signatures; prints the first
    /// broken link.
    Verify {
        asset: uuid::Uuid,
        /// Also print the log as W3C PROV JSON.
        #[arg(long)]
        prov: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Import { .. } = cli.command {
        return not_built("import");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("asepsis: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("asepsis: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn not_built(what: &str) -> ExitCode {
    eprintln!("asepsis {what}: not in this build yet");
    ExitCode::from(NOT_BUILT)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(format) = &cli.log_format {
        settings.log.format = match format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => anyhow::bail!("--log-format: expected text or json, got {other:?}"),
        };
    }
    match cli.command {
        Command::Up(local) => {
            apply(&mut settings, &local);
            serve(settings, true, true).await
        }
        Command::Ingest(local) => {
            apply(&mut settings, &local);
            serve(settings, true, false).await
        }
        Command::Worker(local) => {
            apply(&mut settings, &local);
            serve(settings, false, true).await
        }
        Command::Ctl { data, command } => {
            if let Some(data) = data {
                settings.server.data_dir = data;
            }
            ctl(settings, command).await
        }
        Command::Keys { data, command } => {
            if let Some(data) = data {
                settings.server.data_dir = data;
            }
            match command {
                Keys::RotateKek => rotate_kek(&settings).await,
                Keys::Create { tenant, role } => create_api_key(&settings, &tenant, role).await,
            }
        }
        Command::Sanitize {
            inputs,
            out,
            report,
        } => {
            let limits = settings.strip.clone();
            let clean = tokio::task::spawn_blocking(move || {
                sanitize::run(&inputs, &out, report.as_deref(), &limits)
            })
            .await??;
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Scan { files, json } => {
            let faces = settings.faces.clone();
            tokio::task::spawn_blocking(move || scan(faces, &files, json)).await?
        }
        _ => Ok(ExitCode::from(NOT_BUILT)),
    }
}

/// `asepsis scan`: exit 0 when every file was scanned (whatever it found).
fn scan(
    settings: asepsis_config::Faces,
    files: &[PathBuf],
    json: bool,
) -> anyhow::Result<ExitCode> {
    use asepsis_common::faces::Verdict;
    let detector = faces::load_or_unavailable(settings);
    if let Err(why) = detector.ready() {
        eprintln!("asepsis scan: {why}");
    }
    let mut all_scanned = true;
    for file in files {
        let started = std::time::Instant::now();
        let result = match std::fs::read(file) {
            Ok(bytes) => detector.scan(&bytes),
            Err(e) => faces::Scan::not_scanned(format!("cannot read: {e}")),
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        all_scanned &= result.verdict != Verdict::NotScanned;
        if json {
            let line = serde_json::json!({
                "file": file, "verdict": result.verdict, "faces": result.faces,
                "reason": result.reason, "model_sha256": result.model_sha256, "ms": ms,
            });
            println!("{line}");
        } else {
            let why = result.reason.map(|r| format!(" ({r})")).unwrap_or_default();
            println!("{}: {}{why}", file.display(), result.verdict.as_str());
            for f in &result.faces {
                println!(
                    "  face x={:.0} y={:.0} w={:.0} h={:.0} score={:.3}",
                    f.x, f.y, f.width, f.height, f.score
                );
            }
        }
    }
    Ok(if all_scanned {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn apply(settings: &mut Settings, local: &Local) {
    if let Some(data) = &local.data {
        settings.server.data_dir.clone_from(data);
    }
    if let Some(listen) = local.listen {
        settings.server.listen = listen;
    }
}

fn init_tracing(settings: &Settings) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match settings.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn policy(settings: &Settings) -> Policy {
    Policy {
        max_attempts: settings.queue.max_attempts,
        retry_delays: settings.queue.retry_delays(),
    }
}

/// The configured queue and where asset notifications go; `serving` takes the embedded
/// spool's lock and reclaims its jobs.
async fn open_queue(
    settings: &Settings,
    serving: bool,
) -> anyhow::Result<(Arc<dyn Queue>, Arc<dyn Notifier>)> {
    let policy = policy(settings);
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

fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    const SECONDS: &[f64] = &[
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .context("metrics buckets")?
        .install_recorder()
        .context("metrics recorder")
}

/// Cancelled on the first SIGINT or SIGTERM.
fn shutdown_on_signal() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        cancel.cancel();
    });
    Ok(token)
}

/// Run the HTTP service, the worker, or both, until a signal; then drain and return 0.
async fn serve(settings: Settings, http: bool, worker: bool) -> anyhow::Result<ExitCode> {
    init_tracing(&settings);
    let metrics = install_metrics()?;
    let shutdown = shutdown_on_signal()?;
    std::fs::create_dir_all(&settings.server.data_dir).with_context(|| {
        format!(
            "cannot create data dir {}",
            settings.server.data_dir.display()
        )
    })?;
    let (queue, notifier) = open_queue(&settings, worker).await?;
    // Created with mode 0600 on first start.
    let keys = local_keys(&settings)?;
    let storage = open_storage(&settings, &keys)?;
    let signer = Arc::new(keys.signer);
    let detector = faces::load_or_unavailable(settings.faces.clone());
    match detector.ready() {
        Ok(()) => tracing::info!("face detector loaded"),
        Err(why) => {
            tracing::warn!(%why, "face detector unavailable: every image will be held for review")
        }
    }
    let jobs = Arc::new(AssetJobs {
        storage: storage.clone(),
        signer: signer.clone(),
        limits: settings.strip.clone(),
        detector: detector.clone(),
        notifier: notifier.clone(),
    });

    let worker_task = worker.then(|| {
        let config = RunnerConfig {
            concurrency: settings.worker.concurrency,
            prefetch: settings.queue.prefetch,
        };
        let (queue, shutdown) = (queue.clone(), shutdown.clone());
        tokio::spawn(async move { runner::run(queue, jobs, config, shutdown.clone()).await })
    });

    if http {
        let listener = tokio::net::TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
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
        };
        let app = asepsis_ingest::app(state, timeout);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .context("HTTP server")?;
    } else {
        tracing::info!("worker only; no HTTP");
    }
    shutdown.cancelled().await;
    if let Some(task) = worker_task {
        task.await.context("worker task")??;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The embedded keys, created on first use: `DATA/keys/keyring.json` (KEKs) and
/// `DATA/keys/signing.pk8` (this service's Ed25519 provenance key), both mode 0600.
struct LocalKeys {
    keyring: Arc<LocalKeyring>,
    signer: Signer,
}

fn local_keys(settings: &Settings) -> anyhow::Result<LocalKeys> {
    let dir = settings.server.data_dir.join("keys");
    let keyring = LocalKeyring::open_or_create(&dir.join("keyring.json")).context("keyring")?;
    let signer = Signer::load_or_create(&dir.join("signing.pk8")).context("signing key")?;
    Ok(LocalKeys {
        keyring: Arc::new(keyring),
        signer,
    })
}

fn open_storage(settings: &Settings, keys: &LocalKeys) -> anyhow::Result<Storage> {
    let store: Arc<dyn ObjectStore> = match &settings.store {
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
            // Create-only puts (events, keys) use If-None-Match, which S3 and moto honour.
            let mut builder = AmazonS3Builder::from_env()
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
    };
    Ok(Storage::new(store, keys.keyring.clone()))
}

async fn create_api_key(settings: &Settings, tenant: &str, role: Role) -> anyhow::Result<ExitCode> {
    let keys = local_keys(settings)?;
    let storage = open_storage(settings, &keys)?;
    let (token, record) = apikey::generate(tenant, role, now_ms()).context("--tenant")?;
    storage
        .put_api_key(&record)
        .await
        .context("storing the key")?;
    audit(
        &settings.server.data_dir,
        "keys-create",
        &[format!("{} {tenant}", record.id)],
    )?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

async fn rotate_kek(settings: &Settings) -> anyhow::Result<ExitCode> {
    let keys = local_keys(settings)?;
    let storage = open_storage(settings, &keys)?;
    let kek = keys.keyring.begin_rotation()?;
    let done = storage
        .rotate_kek()
        .await
        .context("re-wrapping data keys")?;
    keys.keyring.finish_rotation()?;
    audit(
        &settings.server.data_dir,
        "rotate-kek",
        &[format!("{}:{}", kek.id, kek.version)],
    )?;
    println!(
        "KEK {} is now version {}: {} data keys re-wrapped, {} already current",
        kek.id, kek.version, done.rewrapped, done.already_current
    );
    Ok(ExitCode::SUCCESS)
}

async fn verify(settings: &Settings, asset: uuid::Uuid, prov: bool) -> anyhow::Result<ExitCode> {
    let keys = local_keys(settings)?;
    let storage = open_storage(settings, &keys)?;
    let events = storage.events(asset).await?;
    if events.is_empty() {
        eprintln!("no provenance events for asset {asset}");
        return Ok(ExitCode::FAILURE);
    }
    let mut trusted = TrustedKeys::default();
    trusted.add(keys.signer.public_key());
    if prov {
        println!(
            "{}",
            serde_json::to_string_pretty(&provenance::to_prov(asset, &events))?
        );
    }
    match provenance::verify(asset, &events, &trusted) {
        Ok(n) => {
            let state = provenance::fold(&events)
                .and_then(|s| serde_json::to_value(s).ok())
                .unwrap_or_default();
            println!("ok: {n} events, signatures and chain intact; state {state}");
            Ok(ExitCode::SUCCESS)
        }
        Err(broken) => {
            println!("broken: {broken}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn ctl(settings: Settings, command: Ctl) -> anyhow::Result<ExitCode> {
    match command {
        Ctl::Verify { asset, prov } => return verify(&settings, asset, prov).await,
        Ctl::Audit => {
            let path = settings.server.data_dir.join("audit.jsonl");
            return match std::fs::read_to_string(&path) {
                Ok(text) => {
                    print!("{text}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ExitCode::SUCCESS),
                Err(e) => Err(e).context("reading the audit log"),
            };
        }
        _ => {}
    }
    let (queue, _) = open_queue(&settings, false).await?;
    match command {
        Ctl::Queues { json } => {
            let stats = queue.stats().await?;
            if json {
                println!("{}", serde_json::to_string(&stats)?);
            } else {
                let in_flight = stats
                    .in_flight
                    .map_or_else(|| "n/a".to_owned(), |n| n.to_string());
                println!("ready        {}", stats.ready);
                println!("in-flight    {in_flight}");
                println!("retrying     {}", stats.retrying);
                println!("dead-letter  {}", stats.dead);
            }
        }
        Ctl::DeadLetters { json } => {
            let letters = queue.dead_letters().await?;
            if json {
                println!("{}", serde_json::to_string(&letters)?);
            } else {
                println!("{:<36}  {:>8}  reason", "job id", "attempts");
                for l in &letters {
                    println!("{:<36}  {:>8}  {}", l.id, l.attempts, l.reason);
                }
                println!("{} dead letter(s)", letters.len());
            }
        }
        Ctl::Replay { id, all } => {
            let which = match (id, all) {
                (Some(id), false) => Replay::One(id),
                _ => Replay::All,
            };
            let ids = queue.replay(which.clone()).await?;
            audit(&settings.server.data_dir, "replay", &ids)?;
            println!("replayed {} dead letter(s)", ids.len());
            if let (true, Replay::One(id)) = (ids.is_empty(), which) {
                eprintln!("no dead letter with id {id}");
                return Ok(ExitCode::FAILURE);
            }
        }
        Ctl::Audit | Ctl::Verify { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Append one operator action to `DATA/audit.jsonl`: who (the OS user), when, what, which ids.
fn audit(data_dir: &Path, action: &str, ids: &[String]) -> anyhow::Result<()> {
    use std::io::Write;
    let at_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let actor = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let line = serde_json::json!({
        "at_unix": at_unix, "actor": actor, "action": action, "count": ids.len(), "ids": ids,
    });
    std::fs::create_dir_all(data_dir).context("data dir")?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("audit.jsonl"))
        .context("opening the audit log")?;
    writeln!(file, "{line}").context("writing the audit log")?;
    Ok(())
}
