//! Typed settings for every Asepsis subsystem.
//!
//! This crate owns reading configuration, and is the only code that reads the environment or
//! a configuration file: the compiled-in `defaults.toml`, then an optional file (`--config
//! FILE`), then environment variables `ASEPSIS__SECTION__KEY` (nested keys joined by `__`),
//! then the command line's flags ([`Overrides`]). Settings are validated once, at start-up,
//! with an error that names the setting. Besides those it reads only the `AWS_*` variables an
//! S3 client expects ([`aws_env`]), the import's API key ([`api_key_env`]) and the operator's
//! user name ([`os_user`]); the one other variable the binary reads is `RUST_LOG`, which
//! tracing's filter takes over `log.filter`.
//! Secrets stay [`SecretString`]s that never show in `Debug` output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The defaults every deployment starts from; also the documented list of settings.
pub const DEFAULTS_TOML: &str = include_str!("../defaults.toml");

/// A setting that could not be read or does not make sense.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The layers could not be merged into the typed settings (bad type, unknown variant…).
    #[error("configuration: {0}")]
    Parse(String),
    /// A value parsed but is out of range; names the setting.
    #[error("configuration: {setting}: {problem}")]
    Invalid {
        setting: &'static str,
        problem: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: Server,
    pub log: Log,
    pub queue: Queue,
    pub worker: Worker,
    pub store: Store,
    pub strip: Strip,
    pub faces: Faces,
    pub stats: StatsSettings,
    pub retention: Retention,
    pub rights: Rights,
    pub takedown: Takedown,
    pub import: Import,
    pub ops: Ops,
}

/// The operator's page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ops {
    /// How long a sign-in lasts.
    pub session_ttl_secs: u64,
}

impl Ops {
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_ttl_secs)
    }
}

/// `asepsis import`'s bounds on a ZIP, checked on the bytes as they are inflated (never on
/// the sizes its headers claim).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Import {
    /// Most entries one archive may hold.
    pub zip_max_entries: u64,
    /// Most bytes all entries may inflate to, together.
    pub zip_max_total_bytes: u64,
    /// Most bytes one entry may inflate to per byte stored.
    pub zip_max_ratio: u64,
}

/// DMCA take-downs: the restore delay after a counter-notice, the counter-notice window, the
/// repeat-infringer limit, the perceptual-hash match distance, and the worker's run interval.
pub use asepsis_common::takedown::Settings as Takedown;

/// How long what is no longer needed is kept (per-tenant overrides under
/// `[retention.tenants.NAME]`), and how often the worker's purge runs.
pub use asepsis_common::retention::Settings as Retention;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rights {
    /// How long a rights request holds its subject's lock before another request may take
    /// it over (the first one's process died).
    pub lock_ttl_secs: u64,
}

impl Rights {
    pub fn lock_ttl(&self) -> Duration {
        Duration::from_secs(self.lock_ttl_secs)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsSettings {
    /// Aggregate counts below this are suppressed.
    pub min_count: u64,
}

/// Bounds on what one uploaded file may make the parsers do.
pub use asepsis_common::faces::Settings as Faces;
pub use asepsis_common::media::Limits as Strip;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub request_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    pub format: LogFormat,
    pub filter: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    /// Deliveries a worker holds at once; 0: `worker.concurrency` (see [`Settings::prefetch`]).
    pub prefetch: u16,
    pub max_attempts: u32,
    pub retry_delays_ms: Vec<u64>,
    pub confirm_timeout_ms: u64,
    /// Topic exchange for asset notifications (RabbitMQ; embedded uses an in-process channel).
    pub events_exchange: String,
    pub backend: QueueBackend,
}

impl Queue {
    pub fn retry_delays(&self) -> Vec<Duration> {
        self.retry_delays_ms
            .iter()
            .copied()
            .map(Duration::from_millis)
            .collect()
    }

    pub fn confirm_timeout(&self) -> Duration {
        Duration::from_millis(self.confirm_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum QueueBackend {
    /// On-disk spool under `server.data_dir`; no server needed.
    Embedded,
    /// RabbitMQ quorum queue named `queue`, with its retry and dead-letter queues beside it.
    Rabbitmq { url: SecretString, queue: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Worker {
    pub concurrency: usize,
    /// Where a worker running apart from HTTP (`asepsis worker`) serves `/metrics` and
    /// `/healthz`; unset: nowhere (`asepsis up` serves them on `server.listen`).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Asset pipelines (decode, strip, face scan) running at once; 0: one per CPU core.
    pub cpu_permits: usize,
}

impl Worker {
    /// [`Worker::cpu_permits`], with 0 resolved to the number of CPU cores.
    pub fn cpu_permits(&self) -> usize {
        match self.cpu_permits {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

/// The settings a command line sets, layered over every other source. `None` leaves the
/// setting as the other layers made it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    pub server: ServerOverrides,
    pub log: LogOverrides,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LogOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Store {
    /// A directory; `root` defaults to `server.data_dir/store`.
    Local { root: Option<PathBuf> },
    /// An S3-compatible bucket.
    S3 {
        bucket: String,
        region: String,
        endpoint: Option<String>,
        access_key_id: Option<SecretString>,
        secret_access_key: Option<SecretString>,
        #[serde(default)]
        allow_http: bool,
    },
}

impl Settings {
    /// [`Queue::prefetch`], with 0 resolved to the worker's concurrency: a worker then holds
    /// only the jobs it works on, so one killed hands back no others (each hand-back counts as
    /// an attempt toward the dead-letter limit), and workers share the queue evenly.
    pub fn prefetch(&self) -> u16 {
        match self.queue.prefetch {
            0 => u16::try_from(self.worker.concurrency.max(1)).unwrap_or(u16::MAX),
            n => n,
        }
    }

    /// Merge defaults → `file` → environment → `overrides` (the command line), then validate.
    ///
    /// # Errors
    /// [`ConfigError`] naming the setting that is missing, mistyped or out of range.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS_TOML));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::Parse(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        Self::from_figment(
            figment
                .merge(Env::prefixed("ASEPSIS__").split("__"))
                .merge(Serialized::defaults(overrides)),
        )
    }

    /// Extract and validate settings from an already layered figment (tests use this).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, problem: &str| {
            Err(ConfigError::Invalid {
                setting,
                problem: problem.to_owned(),
            })
        };
        if self.queue.max_attempts == 0 {
            return invalid("queue.max_attempts", "must be at least 1");
        }
        if self.queue.retry_delays_ms.is_empty() {
            return invalid("queue.retry_delays_ms", "needs at least one delay");
        }
        if self.queue.confirm_timeout_ms == 0 {
            return invalid("queue.confirm_timeout_ms", "must be more than 0");
        }
        if self.strip.max_input_bytes == 0 {
            return invalid("strip.max_input_bytes", "must be more than 0");
        }
        if self.strip.max_pixels == 0 {
            return invalid("strip.max_pixels", "must be more than 0");
        }
        let f = &self.faces;
        if !(0.0..=1.0).contains(&f.low_threshold) {
            return invalid("faces.low_threshold", "must be a score in 0..=1");
        }
        if !(0.0..=1.0).contains(&f.high_threshold) {
            return invalid("faces.high_threshold", "must be a score in 0..=1");
        }
        if f.low_threshold > f.high_threshold {
            return invalid(
                "faces.low_threshold",
                "must not be above faces.high_threshold",
            );
        }
        if !(0.0..=2.0).contains(&f.redaction_margin) {
            return invalid("faces.redaction_margin", "must be in 0..=2");
        }
        if !(1..=7 * 24 * 3600).contains(&self.ops.session_ttl_secs) {
            return invalid("ops.session_ttl_secs", "must be 1 to 604800 (a week)");
        }
        if self.stats.min_count == 0 {
            return invalid("stats.min_count", "must be at least 1");
        }
        if self.retention.interval_secs == 0 {
            return invalid("retention.interval_secs", "must be more than 0");
        }
        if self.retention.batch == 0 {
            return invalid("retention.batch", "must be at least 1");
        }
        if self.rights.lock_ttl_secs == 0 {
            return invalid("rights.lock_ttl_secs", "must be more than 0");
        }
        for (setting, value) in [
            ("import.zip_max_entries", self.import.zip_max_entries),
            (
                "import.zip_max_total_bytes",
                self.import.zip_max_total_bytes,
            ),
            ("import.zip_max_ratio", self.import.zip_max_ratio),
        ] {
            if value == 0 {
                return invalid(setting, "must be at least 1");
            }
        }
        if let Err((setting, why)) = self.takedown.validate() {
            return invalid(setting, why);
        }
        if self.worker.concurrency == 0 {
            return invalid("worker.concurrency", "must be at least 1");
        }
        if self.server.request_timeout_secs == 0 {
            return invalid("server.request_timeout_secs", "must be more than 0");
        }
        if let QueueBackend::Rabbitmq { queue, .. } = &self.queue.backend
            && (queue.is_empty() || queue.len() > 200)
        {
            return invalid("queue.backend.queue", "must be 1 to 200 characters");
        }
        if let Store::S3 { bucket, .. } = &self.store
            && bucket.is_empty()
        {
            return invalid("store.bucket", "must not be empty");
        }
        Ok(())
    }

    /// Where the embedded key files live: `DATA/keys/keyring.json` and `DATA/keys/signing.pk8`.
    pub fn keys_dir(&self) -> PathBuf {
        self.server.data_dir.join("keys")
    }

    /// Where the local object store lives when `store.type = "local"`.
    pub fn local_store_root(&self) -> Option<PathBuf> {
        match &self.store {
            Store::Local { root } => Some(
                root.clone()
                    .unwrap_or_else(|| self.server.data_dir.join("store")),
            ),
            Store::S3 { .. } => None,
        }
    }
}

/// The `AWS_*` environment (credentials, region, endpoint, container or web-identity
/// credentials) for an S3 client, as `(lower-case name, value)` pairs; explicit `store.*`
/// settings win over them.
pub fn aws_env() -> Vec<(String, SecretString)> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, _)| name.starts_with("AWS_"))
        .map(|(name, value)| (name.to_ascii_lowercase(), SecretString::from(value)))
        .collect()
}

/// The API key `asepsis import` uses when no `--key-file` is given: `ASEPSIS_API_KEY` (a
/// variable, never a flag: a flag's value shows in `ps`).
pub fn api_key_env() -> Option<SecretString> {
    std::env::var("ASEPSIS_API_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .map(SecretString::from)
}

/// Who runs a host command, for the audit log: the OS user name, or `unknown`.
pub fn os_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
// figment::Jail closures return figment::Error, which is large.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;
    use secrecy::ExposeSecret;

    fn base() -> Figment {
        Figment::from(Toml::string(DEFAULTS_TOML))
    }

    #[test]
    fn face_defaults_match_the_code() -> Result<(), ConfigError> {
        let s = Settings::from_figment(base())?;
        assert_eq!(s.faces, Faces::default());
        Ok(())
    }

    #[test]
    fn prefetch_defaults_to_the_worker_concurrency() -> Result<(), ConfigError> {
        let s = Settings::from_figment(base().merge(Toml::string("[worker]\nconcurrency = 6\n")))?;
        assert_eq!(s.prefetch(), 6);
        let s = Settings::from_figment(base().merge(Toml::string("[queue]\nprefetch = 20\n")))?;
        assert_eq!(s.prefetch(), 20);
        Ok(())
    }

    #[test]
    fn defaults_are_embedded_and_local() -> Result<(), ConfigError> {
        let s = Settings::from_figment(base())?;
        assert!(matches!(s.queue.backend, QueueBackend::Embedded));
        assert!(matches!(s.store, Store::Local { root: None }));
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.log.format, LogFormat::Text);
        Ok(())
    }

    #[test]
    fn env_overrides_file_which_overrides_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "asepsis.toml",
                "[server]\nlisten = \"127.0.0.1:9000\"\n[worker]\nconcurrency = 7\n",
            )?;
            jail.set_env("ASEPSIS__WORKER__CONCURRENCY", "3");
            jail.set_env("ASEPSIS__QUEUE__BACKEND__TYPE", "rabbitmq");
            jail.set_env(
                "ASEPSIS__QUEUE__BACKEND__URL",
                "amqp://u:p@127.0.0.1:5672/%2f",
            );
            jail.set_env("ASEPSIS__QUEUE__BACKEND__QUEUE", "jobs");
            let s = Settings::load(Some(Path::new("asepsis.toml")), &Overrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(s.server.listen.port(), 9000);
            assert_eq!(s.worker.concurrency, 3);
            match &s.queue.backend {
                QueueBackend::Rabbitmq { url, queue } => {
                    assert_eq!(queue, "jobs");
                    assert!(url.expose_secret().starts_with("amqp://"));
                }
                other => panic!("expected rabbitmq, got {other:?}"),
            }
            Ok(())
        });
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        Jail::expect_with(|jail| {
            jail.set_env("ASEPSIS__QUEUE__BACKEND__TYPE", "rabbitmq");
            jail.set_env("ASEPSIS__QUEUE__BACKEND__URL", "amqp://u:hunter2@h/%2f");
            jail.set_env("ASEPSIS__QUEUE__BACKEND__QUEUE", "jobs");
            let s = Settings::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert!(!format!("{s:?}").contains("hunter2"));
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_setting() {
        let bad = base().merge(Toml::string("[queue]\nmax_attempts = 0\n"));
        let err = Settings::from_figment(bad).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("queue.max_attempts"), "{err}");

        let bad = base().merge(Toml::string("[server]\nlisten = \"nowhere\"\n"));
        let err = Settings::from_figment(bad).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");

        let bad = base().merge(Toml::string("[queue.backend]\ntype = \"kafka\"\n"));
        let err = Settings::from_figment(bad).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("kafka"), "{err}");

        let bad = base().merge(Toml::string("[server]\nlisen = \"127.0.0.1:1\"\n"));
        let err = Settings::from_figment(bad).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn each_limit_and_threshold_is_named_by_its_own_setting() {
        for (toml, setting) in [
            ("[strip]\nmax_input_bytes = 0\n", "strip.max_input_bytes:"),
            ("[strip]\nmax_pixels = 0\n", "strip.max_pixels:"),
            ("[faces]\nlow_threshold = 1.5\n", "faces.low_threshold:"),
            ("[faces]\nhigh_threshold = -0.1\n", "faces.high_threshold:"),
            (
                "[faces]\nlow_threshold = 0.9\nhigh_threshold = 0.8\n",
                "faces.low_threshold: must not be above faces.high_threshold",
            ),
            (
                "[faces]\nredaction_margin = 3.0\n",
                "faces.redaction_margin:",
            ),
            ("[worker]\nconcurrency = 0\n", "worker.concurrency:"),
            ("[stats]\nmin_count = 0\n", "stats.min_count:"),
            ("[retention]\nbatch = 0\n", "retention.batch:"),
            ("[rights]\nlock_ttl_secs = 0\n", "rights.lock_ttl_secs:"),
            (
                "[takedown]\nrestore_after_business_days = 9\n",
                "takedown.restore_after_business_days:",
            ),
            (
                "[takedown]\nmatch_distance = 32\n",
                "takedown.match_distance:",
            ),
            ("[queue]\nmax_attempts = 0\n", "queue.max_attempts:"),
            ("[queue]\nretry_delays_ms = []\n", "queue.retry_delays_ms:"),
            (
                "[queue]\nconfirm_timeout_ms = 0\n",
                "queue.confirm_timeout_ms:",
            ),
            (
                "[server]\nrequest_timeout_secs = 0\n",
                "server.request_timeout_secs:",
            ),
        ] {
            let bad = base().merge(Toml::string(toml));
            let err = Settings::from_figment(bad).map(|_| ()).unwrap_err();
            assert!(err.to_string().contains(setting), "{toml}: {err}");
        }
    }

    #[test]
    fn retention_has_per_tenant_overrides_and_refuses_a_misspelt_rule() {
        let toml = "[retention.tenants.clinic-a]\nrejected_after_days = 1\n";
        let settings = Settings::from_figment(base().merge(Toml::string(toml))).unwrap();
        let policy = settings.retention.policy_for("clinic-a");
        assert_eq!(policy.rejected_after_days, Some(1));
        assert_eq!(policy.original_after_published_days, Some(30));
        let bad = base().merge(Toml::string("[retention]\nrejected_after_dayz = 1\n"));
        let err = Settings::from_figment(bad).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("rejected_after_dayz"), "{err}");
    }

    #[test]
    fn command_line_flags_win_over_the_environment() {
        Jail::expect_with(|jail| {
            jail.set_env("ASEPSIS__SERVER__LISTEN", "127.0.0.1:9000");
            jail.set_env("ASEPSIS__LOG__FORMAT", "text");
            let flags = Overrides {
                server: ServerOverrides {
                    listen: Some("127.0.0.1:9001".parse().map_err(|_| "addr")?),
                    data_dir: None,
                },
                log: LogOverrides {
                    format: Some(LogFormat::Json),
                },
            };
            let s = Settings::load(None, &flags).map_err(|e| e.to_string())?;
            assert_eq!(s.server.listen.port(), 9001);
            assert_eq!(s.log.format, LogFormat::Json);
            let s = Settings::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(
                s.server.listen.port(),
                9000,
                "no flag: the environment stands"
            );
            Ok(())
        });
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let err = Settings::load(
            Some(Path::new("/nonexistent/asepsis.toml")),
            &Overrides::default(),
        )
        .map(|_| ())
        .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
