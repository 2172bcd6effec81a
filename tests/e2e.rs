//! The service end to end, as a clinic, a reviewer, a privacy officer and the website use it:
//! the real binary, once as `asepsis up` on its embedded defaults and once as separate
//! `asepsis ingest` + `asepsis worker` processes on RabbitMQ and S3 (moto), with corpus files.
//! Every process's log is captured and must hold none of the canary strings planted in
//! metadata values, client file names, consent fields and keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(25);
const RETRY_DELAYS_MS: [u64; 2] = [200, 1000];

fn corpus(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/corpus")
            .join(path),
    )
    .unwrap()
}

/// A JPEG whose comment segment carries `canary` (a metadata value that must never be logged).
fn jpeg_with_comment(canary: &str) -> Vec<u8> {
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
struct Proc {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    /// The same lines as they arrive, for waiting on one.
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn start(args: &[&str], env: &[(String, String)]) -> Self {
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
    fn wait_for_line(&self, needle: &str) -> String {
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

    fn kill(&mut self) {
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

/// Which deployment a test runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Embedded,
    RabbitS3,
}

struct Deployment {
    kind: Kind,
    data: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// Stderr of the `keys` commands run.
    logs: Mutex<Vec<String>>,
    http: Proc,
    /// Processes killed and replaced (their logs are checked too).
    retired: Vec<Proc>,
    /// The worker process when it runs apart from HTTP.
    worker: Option<Proc>,
    base: String,
    client: reqwest::Client,
    queue: String,
    bucket: String,
}

fn amqp_url() -> String {
    std::env::var("ASEPSIS_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn s3_url() -> String {
    std::env::var("ASEPSIS_TEST_S3_URL").unwrap_or_else(|_| "http://127.0.0.1:9000".into())
}

fn s3_store(bucket: &str) -> object_store::aws::AmazonS3 {
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
    async fn start(kind: Kind) -> Self {
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
            client: reqwest::Client::new(),
            queue,
            bucket,
        }
    }

    fn address(http: &Proc) -> String {
        let line = http.wait_for_line("listening addr=");
        let addr = line
            .split("addr=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        format!("http://{addr}")
    }

    /// Send a signal to the process that runs the worker.
    fn signal_worker(&self, signal: &str) {
        let pid = self.worker.as_ref().unwrap_or(&self.http).child.id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Kill the process that runs the worker with SIGKILL and start it again.
    fn kill_and_restart_worker(&mut self) {
        let data_arg = self.data.path().to_str().unwrap().to_owned();
        if let Some(worker) = &mut self.worker {
            worker.kill();
            let args = ["worker", "--data", &data_arg];
            let fresh = Proc::start(&args, &self.env);
            fresh.wait_for_line("worker consuming");
            self.retired.push(std::mem::replace(worker, fresh));
        } else {
            self.http.kill();
            let args = ["up", "--listen", "127.0.0.1:0", "--data", &data_arg];
            let fresh = Proc::start(&args, &self.env);
            self.base = Self::address(&fresh);
            // No pooled connection to the killed process (its port may be reused).
            self.client = reqwest::Client::new();
            self.retired.push(std::mem::replace(&mut self.http, fresh));
        }
    }

    /// Every line every process of this deployment logged.
    fn all_logs(&self) -> Vec<String> {
        let procs = self.retired.iter().chain([&self.http]).chain(&self.worker);
        let mut all = self.logs.lock().unwrap().clone();
        for p in procs {
            all.extend(p.logs.lock().unwrap().iter().cloned());
        }
        all
    }

    fn key(&self, tenant: &str, role: &str) -> String {
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

    async fn post_json(&self, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
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

    async fn get_json(&self, key: &str, path: &str) -> (StatusCode, Value) {
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

    async fn upload(
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
    async fn settled(&self, key: &str, id: &str) -> Value {
        let poll = async {
            loop {
                let (status, body) = self.get_json(key, &format!("/v1/assets/{id}")).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                if ["published", "held", "rejected"].contains(&body["state"].as_str().unwrap_or(""))
                {
                    return body;
                }
                tokio::time::sleep(POLL).await;
            }
        };
        tokio::time::timeout(DEADLINE, poll)
            .await
            .unwrap_or_else(|_| panic!("asset {id} did not settle"))
    }

    /// Record a consent of `scope` with canaries in its fields; its id.
    async fn consent(&self, key: &str, scope: &str, canary: &str) -> String {
        let (status, body) = self
            .post_json(key, "/v1/consents", consent_body(scope, canary))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// Upload that must be accepted; the asset id.
    async fn upload_id(&self, key: &str, bytes: Vec<u8>, file_name: &str, consent: &str) -> String {
        let (status, body) = self.upload(key, bytes, file_name, consent, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn media(
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

    async fn clean_up(self) {
        drop(self.http);
        drop(self.worker);
        if self.kind == Kind::RabbitS3 {
            let policy = asepsis_common::queue::Policy {
                max_attempts: 5,
                retry_delays: RETRY_DELAYS_MS.map(Duration::from_millis).to_vec(),
            };
            let queue = asepsis_common::queue::RabbitQueue::connect(
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

fn consent_body(scope: &str, canary: &str) -> Value {
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
fn assert_no_metadata(bytes: &[u8], dir: &Path) {
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

fn pixels(bytes: &[u8]) -> image::RgbaImage {
    image::load_from_memory(bytes).unwrap().to_rgba8()
}

/// Count `published` events in a PROV document.
fn published_events(prov: &Value) -> usize {
    prov["activity"]
        .as_object()
        .unwrap()
        .values()
        .filter(|a| a["prov:type"] == "asepsis:published")
        .count()
}

async fn whole_service(kind: Kind) {
    let d = Deployment::start(kind).await;
    let canary = format!("CANARY{}", Uuid::new_v4().simple());
    let ready = d
        .client
        .get(format!("{}/readyz", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let ready = ready.text().await.unwrap();
    assert_eq!(
        ready.contains("face detector unavailable"),
        kind == Kind::RabbitS3,
        "{ready}"
    );
    let uploader = d.key("clinic-a", "uploader");
    let reviewer = d.key("clinic-a", "reviewer");
    let officer = d.key("clinic-a", "privacy-officer");
    let stranger = d.key("clinic-b", "uploader");

    // The website's listener on RabbitMQ: a queue bound to the events exchange.
    let listener = if kind == Kind::RabbitS3 {
        let conn = lapin::Connection::connect(&amqp_url(), Default::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let exchange = format!("{}.events", d.queue);
        let durable = lapin::options::ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            durable,
            Default::default(),
        )
        .await
        .unwrap();
        let exclusive = lapin::options::QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let q = ch
            .queue_declare("".into(), exclusive, Default::default())
            .await
            .unwrap();
        ch.queue_bind(
            q.name().as_str().into(),
            exchange.as_str().into(),
            "asset.published".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
        Some((conn, ch, q.name().as_str().to_owned()))
    } else {
        None
    };

    // A GPS-tagged photo under an identifiable consent is published, clean, pixels intact.
    let (status, body) = d
        .post_json(
            &uploader,
            "/v1/consents",
            consent_body("identifiable", &canary),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let identifiable = body["id"].as_str().unwrap().to_owned();
    let original = jpeg_with_comment(&canary);
    let file_name = format!("{canary}-face.jpg");
    let (status, body) = d
        .upload(
            &uploader,
            original.clone(),
            &file_name,
            &identifiable,
            Some(&canary),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let gps_photo = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["status_url"], format!("/v1/assets/{gps_photo}"));
    // The same Idempotency-Key again: the same asset, not a second one.
    let (status, again) = d
        .upload(
            &uploader,
            original.clone(),
            &file_name,
            &identifiable,
            Some(&canary),
        )
        .await;
    assert_eq!(
        (status, again["id"].as_str()),
        (StatusCode::ACCEPTED, Some(gps_photo.as_str()))
    );
    let done = d.settled(&uploader, &gps_photo).await;
    assert_eq!(done["state"], "published", "{done}");
    assert_eq!(done["gps_in_original"], true);
    let removed: Vec<&str> = done["removed"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        removed.contains(&"EXIF:GPSLatitude") && removed.contains(&"Comment"),
        "{removed:?}"
    );
    let (status, headers, media) = d.media(&gps_photo, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/jpeg");
    assert!(headers.contains_key("etag"));
    assert_no_metadata(&media, d.data.path());
    assert!(!media.windows(canary.len()).any(|w| w == canary.as_bytes()));
    assert_eq!(
        pixels(&media),
        pixels(&original),
        "stripping changed pixels"
    );
    let (status, headers, part) = d.media(&gps_photo, Some("bytes=100-199")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part, media[100..200]);
    assert_eq!(
        headers["content-range"],
        format!("bytes 100-199/{}", media.len())
    );
    if let Some((_, ch, q)) = &listener {
        let mut consumer = ch
            .basic_consume(
                q.as_str().into(),
                "e2e".into(),
                lapin::options::BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        let note = tokio::time::timeout(DEADLINE, futures::StreamExt::next(&mut consumer))
            .await
            .expect("an asset.published notification")
            .unwrap()
            .unwrap();
        let note: Value = serde_json::from_slice(&note.data).unwrap();
        assert_eq!(
            (note["asset_id"].as_str(), note["event"].as_str()),
            (Some(gps_photo.as_str()), Some("published"))
        );
    }

    // De-identified consent and an image that cannot be face-scanned (a CIELab TIFF has no
    // decoder here; without a model, nothing is scanned): held; the reviewer approves.
    let deidentified = d.consent(&uploader, "deidentified", &canary).await;
    let held = d
        .upload_id(
            &uploader,
            corpus("tiff/pillow-hopper.Lab.tif"),
            &file_name,
            &deidentified,
        )
        .await;
    let state = d.settled(&uploader, &held).await;
    assert_eq!(
        (state["state"].as_str(), state["face_scan"].as_str()),
        (Some("held"), Some("not_scanned")),
        "{state}"
    );
    assert_eq!(d.media(&held, None).await.0, StatusCode::NOT_FOUND);
    let (status, queue) = d.get_json(&reviewer, "/v1/review").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        queue
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == held.as_str()),
        "{queue}"
    );
    let (status, body) = d
        .post_json(
            &reviewer,
            &format!("/v1/assets/{held}/review"),
            json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("published")),
        "{body}"
    );
    assert_eq!(d.media(&held, None).await.0, StatusCode::OK);

    // With the face model (`up`): a face under a de-identified consent is redacted, re-scanned
    // and published; without it (the separate worker), the same photo is held.
    let face = d
        .upload_id(
            &uploader,
            corpus("png/pillow-hopper.png"),
            &file_name,
            &deidentified,
        )
        .await;
    let state = d.settled(&uploader, &face).await;
    if kind == Kind::Embedded {
        assert_eq!(state["state"], "published", "{state}");
        assert!(state["redacted_faces"].as_u64().unwrap() >= 1, "{state}");
        assert_eq!(state["face_scan"], "none", "the re-scan after redaction");
        let (status, headers, media) = d.media(&face, None).await;
        assert_eq!(
            (status, &headers["content-type"]),
            (StatusCode::OK, &"image/png".parse().unwrap())
        );
        assert_ne!(pixels(&media), pixels(&corpus("png/pillow-hopper.png")));
    } else {
        assert_eq!(state["state"], "held", "{state}");
    }

    // Withdrawal: /media answers 404 at once.
    let (status, body) = d
        .post_json(
            &officer,
            &format!("/v1/consents/{identifiable}/withdraw"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["assets_withdrawn"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{body}"
    );
    assert_eq!(d.media(&gps_photo, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        d.get_json(&uploader, &format!("/v1/assets/{gps_photo}"))
            .await
            .1["state"],
        "withdrawn"
    );
    let (status, body) = d
        .upload(
            &uploader,
            corpus("png/pillow-hopper.png"),
            "x.png",
            &identifiable,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("withdrawn"),
        "{body}"
    );

    // Refusals a person can act on.
    let mut minor = consent_body("identifiable", &canary);
    minor["minor"] = true.into();
    let (status, body) = d.post_json(&uploader, "/v1/consents", minor).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"].as_str().unwrap().starts_with("guardian"),
        "{body}"
    );
    assert_eq!(
        d.get_json(&stranger, &format!("/v1/assets/{held}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        d.get_json(&stranger, &format!("/v1/consents/{deidentified}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = d
        .upload(
            &reviewer,
            corpus("png/pillow-hopper.png"),
            "x.png",
            &deidentified,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        d.get_json("asp_nope", "/v1/review").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = d
        .upload(
            &uploader,
            b"%PDF-1.7 not an image".to_vec(),
            "x.pdf",
            &deidentified,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");

    // A malformed file ends rejected with a reason; the next upload goes through.
    let live = d.consent(&uploader, "identifiable", &canary).await;
    let broken = d
        .upload_id(
            &uploader,
            corpus("malformed/pillow-broken.png"),
            &file_name,
            &live,
        )
        .await;
    let state = d.settled(&uploader, &broken).await;
    assert_eq!(state["state"], "rejected", "{state}");
    assert!(state["reason"].as_str().unwrap().contains("png"), "{state}");
    let next = d
        .upload_id(
            &uploader,
            corpus("png/pillow-hopper.png"),
            &file_name,
            &live,
        )
        .await;
    assert_eq!(d.settled(&uploader, &next).await["state"], "published");

    // The worker killed with SIGKILL while jobs are in hand: every asset still ends published,
    // with exactly one `published` event. A separate worker is stopped first, so the broker
    // hands it deliveries it cannot finish; it is let go and killed at once.
    if kind == Kind::RabbitS3 {
        d.signal_worker("-STOP");
    }
    let mut batch = Vec::new();
    for i in 0..8 {
        let file = if i % 2 == 0 {
            "jpeg/ianare-DSCN0010.jpg"
        } else {
            "png/pillow-hopper.png"
        };
        let (status, body) = d
            .upload(&uploader, corpus(file), &file_name, &live, None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        batch.push(body["id"].as_str().unwrap().to_owned());
    }
    let mut d = d;
    if kind == Kind::RabbitS3 {
        d.signal_worker("-CONT");
    }
    d.kill_and_restart_worker();
    for id in &batch {
        let state = d.settled(&uploader, id).await;
        assert_eq!(state["state"], "published", "{state}");
        let (_, prov) = d
            .get_json(&uploader, &format!("/v1/assets/{id}/provenance"))
            .await;
        assert_eq!(published_events(&prov), 1, "{prov}");
    }

    // No canary reached any log: not metadata, file names, consent fields, nor keys.
    let logs = d.all_logs();
    assert!(logs.len() > 10, "logs were captured");
    for secret in [canary.as_str(), &uploader, &reviewer, &officer] {
        let leaked: Vec<&String> = logs.iter().filter(|l| l.contains(secret)).collect();
        assert!(leaked.is_empty(), "PHI or a key in the logs: {leaked:?}");
    }
    if let Some((conn, _, _)) = listener {
        let _ = conn.close(200, "done".into()).await;
    }
    d.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_defaults_end_to_end() {
    whole_service(Kind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_worker_on_rabbitmq_and_s3_end_to_end() {
    whole_service(Kind::RabbitS3).await;
}
