//! What every end-to-end flow uses: the real binary's processes with their captured logs, a
//! deployment (embedded, or ingest + worker on RabbitMQ and S3) and a client for its API.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use uuid::Uuid;

pub const DEADLINE: Duration = Duration::from_secs(60);
pub const POLL: Duration = Duration::from_millis(25);
pub const RETRY_DELAYS_MS: [u64; 2] = [200, 1000];

pub fn corpus(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/corpus")
            .join(path),
    )
    .unwrap()
}

/// A JPEG whose comment segment carries `canary` (a metadata value that must never be logged).
pub fn jpeg_with_comment(canary: &str) -> Vec<u8> {
    let jpeg = corpus("jpeg/ianare-DSCN0010.jpg");
    let text = format!("patient {canary}");
    let len = u16::try_from(text.len() + 2).unwrap();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// One running process and everything it wrote to stderr.
pub struct Proc {
    pub child: Child,
    pub logs: Arc<Mutex<Vec<String>>>,
    /// The same lines as they arrive, for waiting on one.
    pub lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn start(args: &[&str], env: &[(String, String)]) -> Self {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_asepsis"))
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(
                "RUST_LOG",
                "info,asepsis=debug,asepsis_ingest=debug,asepsis_worker=debug,asepsis_common=debug",
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Self { child, logs, lines }
    }

    /// Wait until a log line contains `needle`; return that line. Fails when none comes
    /// within [`DEADLINE`] or the process ends.
    pub fn wait_for_line(&self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(DEADLINE) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no log line with {needle:?} in {:#?}",
                    self.logs.lock().unwrap()
                ),
            }
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.logs.lock().unwrap();
            let tail = &logs[logs.len().saturating_sub(30)..];
            eprintln!("-- last lines of the process --\n{}", tail.join("\n"));
        }
        self.kill();
    }
}

/// Poll `check` every [`POLL`] until it gives a value; fail, naming `what`, after
/// [`DEADLINE`].
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let poll = async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::time::timeout(DEADLINE, poll)
        .await
        .unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}"))
}

/// The `addr=` a log line names (`listening addr=127.0.0.1:PORT`).
pub fn logged_addr(line: &str) -> String {
    let after = line.split("addr=").nth(1).unwrap();
    after.split_whitespace().next().unwrap().to_owned()
}

/// Which deployment a test runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Embedded,
    RabbitS3,
}

pub struct Deployment {
    pub kind: Kind,
    pub data: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    /// Stderr of the `keys` commands run.
    pub logs: Mutex<Vec<String>>,
    pub http: Proc,
    /// Processes killed and replaced (their logs are checked too).
    pub retired: Vec<Proc>,
    /// The worker process when it runs apart from HTTP.
    pub worker: Option<Proc>,
    pub base: String,
    pub client: reqwest::Client,
    pub queue: String,
    pub bucket: String,
}

/// The test's HTTP client: a fresh connection per request. An idempotent replay answers
/// before reading the upload's body, so the server closes that connection; a pooled client
/// could send its next request on it before seeing the close (hyper's IncompleteMessage).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

pub fn amqp_url() -> String {
    std::env::var("ASEPSIS_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn s3_url() -> String {
    std::env::var("ASEPSIS_TEST_S3_URL").unwrap_or_else(|_| "http://127.0.0.1:9000".into())
}

pub fn s3_store(bucket: &str) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_endpoint(s3_url())
        .with_allow_http(true)
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap()
}

impl Deployment {
    pub async fn start(kind: Kind) -> Self {
        let data = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4().simple().to_string();
        let queue = format!("asepsis.e2e.{id}");
        let bucket = format!("asepsis-e2e-{id}");
        let retry = format!("[{}, {}]", RETRY_DELAYS_MS[0], RETRY_DELAYS_MS[1]);
        // `up` runs with the face model; the separate worker without one (every image is
        // then `not_scanned`, which the policy holds for review).
        let model = match kind {
            Kind::Embedded => Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/models/face_detection_yunet_2023mar.onnx"),
            Kind::RabbitS3 => data.path().join("no-model.onnx"),
        };
        let mut env = vec![
            ("ASEPSIS__QUEUE__RETRY_DELAYS_MS".to_owned(), retry),
            (
                "ASEPSIS__FACES__MODEL_PATH".to_owned(),
                model.to_str().unwrap().to_owned(),
            ),
        ];
        if kind == Kind::RabbitS3 {
            let client = reqwest::Client::new();
            let made = client
                .put(format!("{}/{bucket}", s3_url()))
                .send()
                .await
                .expect("the S3 test server (moto) must run: scripts/test starts it");
            assert!(made.status().is_success(), "create bucket: {made:?}");
            for (k, v) in [
                ("QUEUE__BACKEND__TYPE", "rabbitmq".to_owned()),
                ("QUEUE__BACKEND__URL", amqp_url()),
                ("QUEUE__BACKEND__QUEUE", queue.clone()),
                ("QUEUE__EVENTS_EXCHANGE", format!("{queue}.events")),
                ("STORE__TYPE", "s3".into()),
                ("STORE__BUCKET", bucket.clone()),
                ("STORE__REGION", "us-east-1".into()),
                ("STORE__ENDPOINT", s3_url()),
                ("STORE__ALLOW_HTTP", "true".into()),
                ("STORE__ACCESS_KEY_ID", "test".into()),
                ("STORE__SECRET_ACCESS_KEY", "test".into()),
                // The worker apart serves its own /metrics (ingest ignores the setting).
                ("WORKER__METRICS_LISTEN", "127.0.0.1:0".into()),
            ] {
                env.push((format!("ASEPSIS__{k}"), v));
            }
        }
        let data_arg = data.path().to_str().unwrap().to_owned();
        let (http, worker) = match kind {
            Kind::Embedded => {
                let args = ["up", "--listen", "127.0.0.1:0", "--data", &data_arg];
                (Proc::start(&args, &env), None)
            }
            Kind::RabbitS3 => {
                let ingest = ["ingest", "--listen", "127.0.0.1:0", "--data", &data_arg];
                let worker = ["worker", "--data", &data_arg];
                let http = Proc::start(&ingest, &env);
                let worker = Proc::start(&worker, &env);
                worker.wait_for_line("worker consuming");
                (http, Some(worker))
            }
        };
        let base = Self::address(&http);
        Self {
            kind,
            data,
            env,
            logs: Mutex::new(Vec::new()),
            http,
            retired: Vec::new(),
            worker,
            base,
            client: client(),
            queue,
            bucket,
        }
    }

    pub fn address(http: &Proc) -> String {
        let line = http.wait_for_line("listening addr=");
        format!("http://{}", logged_addr(&line))
    }

    /// Send a signal to the process that runs the worker.
    pub fn signal_worker(&self, signal: &str) {
        let pid = self.worker.as_ref().unwrap_or(&self.http).child.id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Kill the process that runs the worker with SIGKILL and start it again.
    pub fn kill_and_restart_worker(&mut self) {
        self.stop_worker();
        self.start_worker();
    }

    /// SIGKILL the process that runs the worker (embedded: `up` itself); nothing consumes
    /// the queue until [`Deployment::start_worker`].
    pub fn stop_worker(&mut self) {
        match &mut self.worker {
            Some(worker) => worker.kill(),
            None => self.http.kill(),
        }
    }

    /// Start the worker stopped by [`Deployment::stop_worker`] again.
    pub fn start_worker(&mut self) {
        let data_arg = self.data.path().to_str().unwrap().to_owned();
        if let Some(worker) = &mut self.worker {
            let args = ["worker", "--data", &data_arg];
            let fresh = Proc::start(&args, &self.env);
            fresh.wait_for_line("worker consuming");
            self.retired.push(std::mem::replace(worker, fresh));
        } else {
            let args = ["up", "--listen", "127.0.0.1:0", "--data", &data_arg];
            let fresh = Proc::start(&args, &self.env);
            self.base = Self::address(&fresh);
            // No pooled connection to the killed process (its port may be reused).
            self.client = client();
            self.retired.push(std::mem::replace(&mut self.http, fresh));
        }
    }

    /// The deployment's job queue, opened as the worker opens it. Embedded: only while the
    /// worker is stopped (the spool has one server).
    pub async fn job_queue(&self) -> Arc<dyn asepsis_queue::Queue> {
        let policy = asepsis_queue::RetryPolicy {
            max_attempts: 5,
            retry_delays: RETRY_DELAYS_MS.map(Duration::from_millis).to_vec(),
        };
        match self.kind {
            Kind::Embedded => {
                let dir = self.data.path().join("queue");
                Arc::new(asepsis_queue::EmbeddedQueue::open(&dir, policy).unwrap())
            }
            Kind::RabbitS3 => {
                let (url, timeout) = (amqp_url(), Duration::from_secs(10));
                let rabbit =
                    asepsis_queue::RabbitQueue::connect(&url, &self.queue, policy, timeout);
                Arc::new(rabbit.await.unwrap())
            }
        }
    }

    /// Every line every process of this deployment logged.
    pub fn all_logs(&self) -> Vec<String> {
        let procs = self.retired.iter().chain([&self.http]).chain(&self.worker);
        let mut all = self.logs.lock().unwrap().clone();
        for p in procs {
            all.extend(p.logs.lock().unwrap().iter().cloned());
        }
        all
    }

    pub fn key(&self, tenant: &str, role: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_asepsis"))
            .args(["keys", "--data"])
            .arg(self.data.path())
            .args(["create", "--tenant", tenant, "--role", role])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        self.logs.lock().unwrap().extend(
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .map(str::to_owned),
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    pub async fn post_json(&self, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_json(&self, key: &str, path: &str) -> (StatusCode, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn upload(
        &self,
        key: &str,
        bytes: Vec<u8>,
        file_name: &str,
        consent: &str,
        idempotency: Option<&str>,
    ) -> (StatusCode, Value) {
        let form = Form::new()
            .text("consent_id", consent.to_owned())
            .part("file", Part::bytes(bytes).file_name(file_name.to_owned()));
        let mut req = self
            .client
            .post(format!("{}/v1/assets", self.base))
            .bearer_auth(key)
            .multipart(form);
        if let Some(k) = idempotency {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Poll the asset's status until the pipeline is done with it (published, held or
    /// rejected); fail after [`DEADLINE`].
    pub async fn settled(&self, key: &str, id: &str) -> Value {
        let path = format!("/v1/assets/{id}");
        let path = &path;
        eventually(&format!("asset {id} to settle"), || async move {
            let (status, body) = self.get_json(key, path).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let state = body["state"].as_str().unwrap_or("");
            ["published", "held", "rejected"]
                .contains(&state)
                .then_some(body)
        })
        .await
    }

    /// Record a consent of `scope` with canaries in its fields; its id.
    pub async fn consent(&self, key: &str, scope: &str, canary: &str) -> String {
        let (status, body) = self
            .post_json(key, "/v1/consents", consent_body(scope, canary))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Upload that must be accepted; the asset id.
    pub async fn upload_id(
        &self,
        key: &str,
        bytes: Vec<u8>,
        file_name: &str,
        consent: &str,
    ) -> String {
        let (status, body) = self.upload(key, bytes, file_name, consent, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn media(
        &self,
        id: &str,
        range: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let mut req = self.client.get(format!("{}/media/{id}", self.base));
        if let Some(r) = range {
            req = req.header("Range", r);
        }
        let res = req.send().await.unwrap();
        let (status, headers) = (res.status(), res.headers().clone());
        (status, headers, res.bytes().await.unwrap().to_vec())
    }

    /// Every object key the deployment's store holds, read from the store itself.
    pub async fn store_keys(&self) -> Vec<String> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let store: Box<dyn ObjectStore> = match self.kind {
            Kind::Embedded => Box::new(
                object_store::local::LocalFileSystem::new_with_prefix(
                    self.data.path().join("store"),
                )
                .unwrap(),
            ),
            Kind::RabbitS3 => Box::new(s3_store(&self.bucket)),
        };
        let all: Vec<_> = store.list(None).try_collect().await.unwrap();
        all.into_iter().map(|m| m.location.to_string()).collect()
    }

    pub async fn clean_up(self) {
        drop(self.http);
        drop(self.worker);
        if self.kind == Kind::RabbitS3 {
            let policy = asepsis_queue::RetryPolicy {
                max_attempts: 5,
                retry_delays: RETRY_DELAYS_MS.map(Duration::from_millis).to_vec(),
            };
            let queue = asepsis_queue::RabbitQueue::connect(
                &amqp_url(),
                &self.queue,
                policy,
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            queue.delete_topology().await.unwrap();
            let conn = lapin::Connection::connect(&amqp_url(), Default::default())
                .await
                .unwrap();
            let ch = conn.create_channel().await.unwrap();
            let exchange = format!("{}.events", self.queue);
            ch.exchange_delete(exchange.as_str().into(), Default::default())
                .await
                .unwrap();
            use futures::TryStreamExt;
            use object_store::{ObjectStore, ObjectStoreExt};
            let store = s3_store(&self.bucket);
            let all: Vec<_> = store.list(None).try_collect().await.unwrap();
            for meta in all {
                store.delete(&meta.location).await.unwrap();
            }
            let gone = reqwest::Client::new()
                .delete(format!("{}/{}", s3_url(), self.bucket))
                .send()
                .await
                .unwrap();
            assert!(gone.status().is_success(), "delete bucket: {gone:?}");
        }
    }
}

/// The names of removed metadata in an asset's status.
pub fn removed(status: &Value) -> Vec<&str> {
    status["removed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

pub fn consent_body(scope: &str, canary: &str) -> Value {
    json!({
        "subject_ref": format!("{canary}-subject"),
        "obtained_by": format!("{canary}-doctor"),
        "obtained_at": "2026-01-05T10:00:00Z",
        "method": "written",
        "scope": scope,
        "purposes": [format!("{canary}-purpose")],
        "jurisdiction": format!("{canary}-jurisdiction"),
        "licence_version": "2026-01",
        "minor": false,
    })
}

/// Only file-system facts, image structure and colour data may be left (exiftool's view).
pub fn assert_no_metadata(bytes: &[u8], dir: &Path) {
    let path: PathBuf = dir.join("published.jpg");
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("exiftool")
        .args(["-j", "-a", "-G0"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "exiftool: {out:?}");
    let tags: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, _) in tags[0].as_object().unwrap() {
        let group = name.split(':').next().unwrap();
        let ok = matches!(
            group,
            "SourceFile" | "ExifTool" | "File" | "System" | "Composite" | "ICC_Profile"
        ) || name == "EXIF:Orientation";
        assert!(ok, "metadata left in the published file: {name}");
    }
}

pub fn pixels(bytes: &[u8]) -> image::RgbaImage {
    image::load_from_memory(bytes).unwrap().to_rgba8()
}

/// Count `published` events in a PROV document.
pub fn published_events(prov: &Value) -> usize {
    prov["activity"]
        .as_object()
        .unwrap()
        .values()
        .filter(|a| a["prov:type"] == "asepsis:published")
        .count()
}
