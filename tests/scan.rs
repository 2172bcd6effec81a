//! `asepsis scan` as a user runs it, with the model of ../shared/models.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn shared(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(path)
}

fn scan(model: &Path, files: &[&str]) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_asepsis"))
        .args(["scan", "--json"])
        .args(files.iter().map(|f| shared(f)))
        .env("ASEPSIS__FACES__MODEL_PATH", model)
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), lines, stderr)
}

#[test]
fn scan_prints_faces_and_verdicts_per_file() {
    let model = shared("models/face_detection_yunet_2023mar.onnx");
    let (code, lines, _) = scan(&model, &["faces/fr-obama2.jpg", "faces/ski-rocket.jpg"]);
    assert_eq!(code, Some(0));
    assert_eq!(lines[0]["verdict"], "identifiable");
    let face = &lines[0]["faces"][0];
    assert!(face["score"].as_f64().unwrap() > 0.8 && face["width"].as_f64().unwrap() > 50.0);
    assert_eq!(lines[1]["verdict"], "none");
    assert!(lines[1]["faces"].as_array().unwrap().is_empty());
}

#[test]
fn without_the_model_every_file_is_not_scanned_with_the_reason() {
    let (code, lines, stderr) = scan(
        Path::new("/nonexistent/yunet.onnx"),
        &["faces/fr-obama2.jpg"],
    );
    assert_eq!(code, Some(1));
    assert_eq!(lines[0]["verdict"], "not_scanned");
    assert!(lines[0]["reason"].as_str().unwrap().contains("face model"));
    assert!(stderr.contains("/nonexistent/yunet.onnx"), "{stderr}");
}
