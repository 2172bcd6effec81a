//! `asepsis up` as a user runs it: the real binary on embedded defaults, in an empty
//! directory (no config file, no model file).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(60);

/// Start `asepsis up` on a free port; return the child, its address and its stderr lines.
fn start_up(data: &std::path::Path) -> (Child, String, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_asepsis"))
        .args(["up", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .current_dir(data) // an empty directory: no model file, no config
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = rx.recv_timeout(DEADLINE).expect("`up` to log its address");
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    (child, addr, rx)
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn up_serves_health_and_metrics_and_stops_cleanly_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let (mut child, addr, logs) = start_up(data.path());

    assert_eq!(http_get(&addr, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(
        http_get(&addr, "/readyz"),
        (200, "ready\n".to_owned()),
        "the embedded face model scans with no model file on disk"
    );
    let (status, metrics) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            "asepsis_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("asepsis_queue_messages{state=\"ready\"} 0"),
        "{metrics}"
    );
    assert!(data.path().join("queue/spool.sqlite3").is_file());
    every_metric_the_alerts_and_the_dashboard_read_is_exposed(&metrics);

    let ctl = Command::new(env!("CARGO_BIN_EXE_asepsis"))
        .args(["ctl", "--data"])
        .arg(data.path())
        .args(["queues", "--json"])
        .output()
        .unwrap();
    assert!(ctl.status.success(), "ctl queues beside a running server");
    let stats: serde_json::Value = serde_json::from_slice(&ctl.stdout).unwrap();
    assert_eq!(stats["ready"], 0);

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM ends `up` with exit 0");
    let logged: Vec<String> = logs.try_iter().collect();
    assert!(
        logged.iter().any(|l| l.contains("worker stopped")),
        "{logged:?}"
    );
}

/// The metric names a text reads: every `asepsis_…` identifier in it.
fn names_read_by(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("asepsis_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// `deploy/prometheus/alerts.yml` and `deploy/grafana/asepsis.json` read only what a fresh
/// `asepsis up` exposes (a histogram's `_bucket`, `_sum` and `_count` included).
fn every_metric_the_alerts_and_the_dashboard_read_is_exposed(metrics: &str) {
    let exposed: std::collections::BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let root = env!("CARGO_MANIFEST_DIR");
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/asepsis.json",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let read = names_read_by(&text);
        assert!(read.len() >= 5, "{file} reads {read:?}");
        for name in read {
            assert!(
                exposed.contains(&name),
                "{file} reads {name}, which /metrics does not expose:\n{metrics}"
            );
        }
    }
}

#[test]
fn keys_create_prints_only_the_key_on_stdout() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_asepsis"))
        .args(["keys", "--data"])
        .arg(data.path())
        .args(["create", "--tenant", "clinic-a", "--role", "reviewer"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout.strip_suffix('\n').unwrap();
    assert!(
        key.starts_with("asp_") && !key.contains(char::is_whitespace),
        "{stdout:?}"
    );
    let bad_role = Command::new(env!("CARGO_BIN_EXE_asepsis"))
        .args(["keys", "create", "--tenant", "t", "--role", "admin"])
        .output()
        .unwrap();
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("privacy-officer"));
}

#[test]
fn a_bad_setting_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_asepsis"))
        .args(["up", "--data", "/nonexistent-never"])
        .env("ASEPSIS__QUEUE__MAX_ATTEMPTS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("queue.max_attempts"));
}
