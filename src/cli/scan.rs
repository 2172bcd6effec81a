//! `asepsis scan FILE... [--json]`: face-scan files offline; per file the faces found (box,
//! score) and the verdict. Exit 0 when every file was scanned, whatever it found.

use std::path::PathBuf;
use std::process::ExitCode;

use asepsis_common::faces::{Scan, Verdict};
use asepsis_config::Settings;

#[derive(clap::Args)]
pub struct Args {
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// One JSON object per file, one per line.
    #[arg(long)]
    json: bool,
}

pub async fn run(settings: Settings, args: Args) -> anyhow::Result<ExitCode> {
    Ok(tokio::task::spawn_blocking(move || scan(&settings, &args)).await?)
}

fn scan(settings: &Settings, args: &Args) -> ExitCode {
    let detector = asepsis::face_detector(&settings.faces);
    if let Err(why) = detector.ready() {
        eprintln!("asepsis scan: {why}");
    }
    let mut all_scanned = true;
    for file in &args.files {
        let started = std::time::Instant::now();
        let result = match std::fs::read(file) {
            Ok(bytes) => detector.scan(&bytes),
            Err(e) => Scan::not_scanned(format!("cannot read: {e}")),
        };
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        all_scanned &= result.verdict != Verdict::NotScanned;
        if args.json {
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
    if all_scanned {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
