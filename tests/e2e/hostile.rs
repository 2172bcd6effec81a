//! Hostile HTTP against a real `asepsis up`, over raw TCP (no client library to tidy the
//! bytes): broken multipart, a body that never ends, a Content-Length of 10 GB over a short
//! body, a header flood, headers that never finish (slowloris), ids that are no UUIDs,
//! malformed ranges, JSON nested too deep and strings too long. Each gets a 4xx or a clean
//! close, and the server answers `/healthz` after every one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use crate::support::{DEADLINE, Proc, logged_addr};

/// The server's request timeout in this test: what a body that never ends waits for.
const REQUEST_TIMEOUT_SECS: &str = "2";

fn key(data: &Path, role: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_asepsis"))
        .args(["keys", "--data"])
        .arg(data)
        .args(["create", "--tenant", "clinic", "--role", role])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Send `request` as it is, then read until the server closes (or [`DEADLINE`]): the status
/// (`None` when it closed without an answer) and the whole answer.
fn exchange(what: &str, addr: &str, request: &[u8]) -> (Option<u16>, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    // The server may answer and close before reading all of it: that is allowed.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    if let Err(e) = read {
        // A reset after an early answer is a clean close too; a timeout is not.
        assert!(
            e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut,
            "{what}: the server held the connection open past {DEADLINE:?}"
        );
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|s| s.parse().ok());
    (status, text)
}

fn healthy(addr: &str) {
    let (status, _) = exchange(
        "healthz",
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, Some(200), "the server still answers");
}

const BOUNDARY: &str = "hostileboundary";

fn upload(key: &str, body: &[u8], content_length: Option<u64>) -> Vec<u8> {
    let length = content_length.unwrap_or(body.len() as u64);
    let mut request = format!(
        "POST /v1/assets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn part(name: &str, file_name: Option<&str>, bytes: &[u8]) -> Vec<u8> {
    let file = file_name.map_or_else(String::new, |f| format!("; filename=\"{f}\""));
    let mut out =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n")
            .into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

fn end() -> Vec<u8> {
    format!("--{BOUNDARY}--\r\n").into_bytes()
}

#[test]
fn hostile_requests_get_a_4xx_or_a_clean_close_and_the_server_stays_up() {
    let data = tempfile::tempdir().unwrap();
    let timeout = (
        "ASEPSIS__SERVER__REQUEST_TIMEOUT_SECS".to_owned(),
        REQUEST_TIMEOUT_SECS.to_owned(),
    );
    let data_arg = data.path().to_str().unwrap();
    let server = Proc::start(
        &["up", "--listen", "127.0.0.1:0", "--data", data_arg],
        &[timeout],
    );
    let addr = logged_addr(&server.wait_for_line("listening addr="));
    let uploader = key(data.path(), "uploader");
    let consent = uuid::Uuid::new_v4().to_string();
    let jpeg = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/corpus/jpeg/ianare-DSCN0010.jpg"
    ))
    .unwrap();

    let multipart = |parts: &[Vec<u8>]| [parts.concat(), end()].concat();
    let consent_part = part("consent_id", None, consent.as_bytes());
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "multipart with no file",
            upload(&uploader, &multipart(std::slice::from_ref(&consent_part)), None),
            &[422],
        ),
        (
            "two files",
            upload(
                &uploader,
                &multipart(&[
                    part("file", Some("a.jpg"), &jpeg),
                    part("file", Some("b.jpg"), &jpeg),
                    consent_part.clone(),
                ]),
                None,
            ),
            &[422],
        ),
        (
            "a file part of 0 bytes",
            upload(
                &uploader,
                &multipart(&[part("file", Some("a.jpg"), b""), consent_part.clone()]),
                None,
            ),
            &[415, 422],
        ),
        (
            "a 10 GB Content-Length over a short body",
            upload(
                &uploader,
                &part("file", Some("a.jpg"), &jpeg[..1000]),
                Some(10 << 30),
            ),
            &[413],
        ),
        (
            "a header flood",
            {
                let mut r = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
                for i in 0..5000 {
                    r.extend_from_slice(format!("X-Flood-{i}: {}\r\n", "v".repeat(64)).as_bytes());
                }
                r.extend_from_slice(b"\r\n");
                r
            },
            &[431, 400],
        ),
        (
            "an id that is no UUID",
            format!(
                "GET /v1/assets/..%2f..%2fetc HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {uploader}\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
            &[400, 404],
        ),
        (
            "a media id that is no UUID, with a malformed range",
            b"GET /media/nope HTTP/1.1\r\nHost: x\r\nRange: bytes=9-2,0-,-0,x\r\nConnection: close\r\n\r\n"
                .to_vec(),
            &[400, 404],
        ),
        (
            "JSON nested 100,000 deep",
            {
                let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
                format!(
                    "POST /v1/consents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {uploader}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            },
            &[400, 422],
        ),
        (
            "a JSON string of 8 MB",
            {
                let body = format!("{{\"subject_ref\": \"{}\"}}", "x".repeat(8 << 20));
                format!(
                    "POST /v1/consents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {uploader}\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            },
            &[413],
        ),
    ];
    for (what, request, allowed) in cases {
        let (status, answer) = exchange(what, &addr, &request);
        let status = status.unwrap_or_else(|| panic!("{what}: closed without an answer"));
        assert!(allowed.contains(&status), "{what}: {answer}");
        healthy(&addr);
    }

    // A body that never ends: the request timeout answers it (or closes the connection).
    let body = part("file", Some("a.jpg"), &jpeg[..4000]);
    let request = upload(&uploader, &body, Some(body.len() as u64 + 10_000));
    let (status, answer) = exchange("a body that never ends", &addr, &request);
    assert!(
        status.is_none_or(|s| s == 408 || s == 400),
        "a body that never ends: {answer}"
    );
    healthy(&addr);

    // Slowloris: headers that never finish are dropped, never held forever.
    let slow = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let (status, answer) = exchange("slowloris", &addr, slow);
    assert!(
        status.is_none_or(|s| (400..500).contains(&s)),
        "slowloris: {answer}"
    );
    healthy(&addr);

    // No original was kept (the local store leaves a refused upload's empty folder).
    let originals = std::fs::read_dir(data.path().join("store/blobs"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("original").exists())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(originals, 0);
    let logs = server.logs.lock().unwrap().join("\n");
    assert!(!logs.contains("panicked"), "{logs}");
}
