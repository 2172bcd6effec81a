//! The operator on call, in a real browser: Debian's Chromium driven through its
//! ChromeDriver (fantoccini, WebDriver; nothing downloaded). Sign in with an operator's key,
//! see the queue counts the API gives, find two dead letters with their reasons (a message
//! the worker cannot read, and a job handed to an operator), replay the job with its button,
//! see it leave the list and the audit log record it, sign out. The page must hold none of
//! the canaries planted in consents, file names, metadata and a batch label; a screenshot is
//! kept as the test's artifact.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use asepsis_common::job::Job;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::Ctx;
use crate::support::{DEADLINE, eventually, jpeg_with_comment, logged_addr};

/// ChromeDriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/test installs it)");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let started = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("started successfully"));
        assert!(started, "chromedriver did not start");
        std::thread::spawn(move || lines.for_each(drop));
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        let options = json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1440,1200"],
        });
        caps.insert("goog:chromeOptions".into(), options);
        let plain_http = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(plain_http)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn text(b: &Client, css: &str) -> String {
    b.wait()
        .at_most(DEADLINE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Poll the dead letters until `done` says they are as wanted.
async fn dead_letters_until(c: &Ctx, key: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let (d, done) = (&c.d, &done);
    eventually("the dead letters the test wants", || async move {
        let (status, body) = d.get_json(key, "/v1/ops/dead-letters").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let letters = body.as_array().unwrap().clone();
        done(&letters).then_some(letters)
    })
    .await
}

pub async fn an_operator_replays_a_dead_letter_in_the_browser(c: &mut Ctx) {
    let operator = c.d.key("clinic-a", "operator");
    // A batch whose label is a canary, with one of its two files uploaded: in progress.
    let (status, batch) =
        c.d.post_json(
            &c.uploader,
            "/v1/batches",
            json!({"label": format!("{} radiology", c.canary), "expected": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{batch}");
    let batch = batch["id"].as_str().unwrap().to_owned();
    let consent = c.d.consent(&c.uploader, "identifiable", &c.canary).await;
    let form = reqwest::multipart::Form::new()
        .text("consent_id", consent)
        .text("batch_id", batch.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(jpeg_with_comment(&c.canary))
                .file_name(c.file_name.clone()),
        );
    let uploaded =
        c.d.client
            .post(format!("{}/v1/assets", c.d.base))
            .bearer_auth(&c.uploader)
            .multipart(form)
            .send()
            .await
            .unwrap();
    assert_eq!(uploaded.status(), StatusCode::ACCEPTED);
    let uploaded: Value = uploaded.json().await.unwrap();
    let settled = uploaded["id"].as_str().unwrap().to_owned();
    c.d.settled(&c.uploader, &settled).await;

    // With the worker stopped, hand a good job (for the settled asset: a redelivery is done at
    // once) to the dead letters as an operator's case, and
    // queue bytes that are no job (the worker dead-letters those itself once it is back).
    let (_, before) = c.d.get_json(&operator, "/v1/ops/dead-letters").await;
    let before = before.as_array().unwrap().len();
    c.d.stop_worker();
    let queue = c.d.job_queue().await;
    let asset: uuid::Uuid = settled.parse().unwrap();
    let job = queue.publish(&Job::new(asset).to_bytes()).await.unwrap();
    let mut consumer = queue.consumer(1).await.unwrap();
    let delivery = tokio::time::timeout(DEADLINE, consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery.id, job, "the queue was idle");
    delivery
        .dead_letter("handed to an operator by the test")
        .await
        .unwrap();
    let junk = queue.publish(b"not a job").await.unwrap();
    drop(consumer);
    drop(queue);
    c.d.start_worker();
    let letters = dead_letters_until(c, &operator, |l| l.len() == before + 2).await;
    let of = |id: &str| letters.iter().find(|l| l["job_id"] == id).unwrap().clone();
    assert_eq!(of(&job)["asset_id"], settled);
    assert!(
        of(&junk)["reason"]
            .as_str()
            .unwrap()
            .starts_with("malformed")
    );

    let driver = Driver::start();
    let b = driver.browser().await;
    b.goto(&format!("{}/ops", c.d.base)).await.unwrap();
    b.wait()
        .at_most(DEADLINE)
        .for_element(Locator::Css("#key"))
        .await
        .unwrap()
        .send_keys(&operator)
        .await
        .unwrap();
    b.find(Locator::Css("#sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The tiles say what the API says (the queue is idle now).
    let dead = text(&b, "#q-dead").await;
    let (_, counts) = c.d.get_json(&operator, "/v1/ops/queues").await;
    assert_eq!(dead, counts["dead"].to_string(), "{counts}");
    assert_eq!(text(&b, "#q-ready").await, counts["ready"].to_string());
    assert_eq!(
        text(&b, "#q-retrying").await,
        counts["retrying"].to_string()
    );
    let row = |id: &str| format!("#dead-letters tr[data-job=\"{id}\"]");
    let job_row = text(&b, &row(&job)).await;
    assert!(
        job_row.contains(&settled) && job_row.contains("handed to an operator by the test"),
        "{job_row}"
    );
    assert!(text(&b, &row(&junk)).await.contains("malformed"));
    assert!(text(&b, "#batches").await.contains(&batch));

    let html = b.source().await.unwrap();
    for secret in [c.canary.as_str(), c.file_name.as_str(), operator.as_str()] {
        assert!(!html.contains(secret), "the page shows {secret}");
    }
    let shot = b.screenshot().await.unwrap();
    let artifact = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ops-page-{}.png", c.d.queue.replace('.', "-")));
    std::fs::write(&artifact, &shot).unwrap();
    eprintln!("screenshot of /ops: {}", artifact.display());

    let button = format!("{} button.replay", row(&job));
    b.find(Locator::Css(&button))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        text(&b, "#flash")
            .await
            .contains("1 dead letter queued again")
    );
    let left = b.find_all(Locator::Css(&row(&job))).await.unwrap();
    assert!(left.is_empty(), "the replayed job left the list");
    assert!(text(&b, &row(&junk)).await.contains("malformed"));
    let letters = dead_letters_until(c, &operator, |l| l.len() == before + 1).await;
    assert!(letters.iter().all(|l| l["job_id"] != job.as_str()));

    let (status, audit) = c.d.get_json(&operator, "/v1/audit").await;
    assert_eq!(status, StatusCode::OK);
    let replays: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["entry"]["record"]["action"] == "replay")
        .collect();
    assert_eq!(replays.len(), 1, "{audit}");
    assert_eq!(replays[0]["entry"]["record"]["targets"], json!([job]));

    b.find(Locator::Css("#sign-out"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait()
        .at_most(DEADLINE)
        .for_element(Locator::Css("#key"))
        .await
        .unwrap();
    b.close().await.unwrap();

    // A worker apart serves its own /metrics: the one started above dead-letters the bytes
    // that are no job, and handles the replayed job (wait for that).
    if let Some(worker) = &c.d.worker {
        let line = worker
            .logs
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("metrics listening"))
            .cloned()
            .unwrap();
        let url = format!("http://{}/metrics", logged_addr(&line));
        let count = |text: &str, series: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(series));
            let value = line.and_then(|l| l.rsplit(' ').next());
            value
                .unwrap_or_else(|| panic!("{series} in {text}"))
                .parse()
                .unwrap()
        };
        let (client, url, count) = (&c.d.client, &url, &count);
        let text = eventually("the replayed job handled", || async move {
            let res = client.get(url).send().await.unwrap();
            let text = res.text().await.unwrap();
            (count(&text, "asepsis_jobs_total{outcome=\"done\"}") >= 1.0).then_some(text)
        })
        .await;
        assert_eq!(
            count(&text, "asepsis_jobs_total{outcome=\"malformed\"}"),
            1.0
        );
        assert!(text.contains("asepsis_stage_duration_seconds_bucket{stage=\"scan\""));
    }
    // The replayed job is handled for good: once the queue is empty, it is not back among
    // the dead letters.
    let (d, operator) = (&c.d, &operator);
    let q = eventually("the queue to drain", || async move {
        let (_, q) = d.get_json(operator, "/v1/ops/queues").await;
        let busy = ["ready", "retrying", "in_flight"]
            .iter()
            .any(|k| q[k].as_u64().unwrap_or(0) > 0);
        (!busy).then_some(q)
    })
    .await;
    assert_eq!(q["dead"].as_u64(), Some(before as u64 + 1), "{q}");
}
