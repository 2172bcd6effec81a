//! `asepsis sanitize`: strip and verify files offline, in parallel, into an output directory;
//! DICOM files are de-identified (PS3.15 Basic Profile) under a UID key, as the worker does.
//!
//! Outputs keep their names relative to the input directory given (a file given alone keeps
//! its file name); a name that would leave OUTDIR, a symbolic link, or a second input with the
//! same output name is refused. The report names removed metadata, never its values.

use std::io::IsTerminal;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use asepsis_common::dicom::{self, BurnedIn, DeidReport, UidKey};
use asepsis_common::media::{Format, Limits, Report, sniff, strip};
use asepsis_config::Settings;
use rayon::prelude::*;
use serde::Serialize;

#[derive(clap::Args)]
pub struct Args {
    /// Files and directories (walked recursively).
    #[arg(required = true, value_name = "FILE|DIR")]
    inputs: Vec<PathBuf>,
    /// Where clean files go, under the same relative names.
    #[arg(short = 'o', long = "out", value_name = "OUTDIR")]
    out: PathBuf,
    /// Write a JSON report (one entry per file) here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// DICOM UIDs are remapped under this 32-byte secret (the server's is
    /// DATA/keys/dicom-uid.key); without it, under a random one for this run only.
    #[arg(long, value_name = "FILE")]
    uid_secret: Option<PathBuf>,
    /// The tenant whose UID key remaps DICOM UIDs (with --uid-secret, as the server would).
    #[arg(long, default_value = "sanitize")]
    tenant: String,
}

/// Exit 0 only when every file came out clean.
pub async fn run(settings: Settings, args: Args) -> anyhow::Result<ExitCode> {
    let limits = settings.strip;
    let secret = match &args.uid_secret {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} is not a 32-byte secret", path.display()))?,
        None => {
            let mut secret = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
                .map_err(|_| anyhow::anyhow!("random number generator failed"))?;
            secret
        }
    };
    let key = UidKey::for_tenant(&secret.into(), &args.tenant);
    let clean = tokio::task::spawn_blocking(move || {
        sanitize(
            &args.inputs,
            &args.out,
            args.report.as_deref(),
            &limits,
            &key,
        )
    })
    .await??;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Debug, Serialize)]
pub struct FileReport {
    pub file: String,
    pub format: Option<&'static str>,
    pub status: &'static str,
    pub reason: Option<String>,
    pub removed: Vec<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub gps_in_original: bool,
    /// What DICOM de-identification did (attributes by tag and name, never values).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dicom: Option<DeidReport>,
}

impl FileReport {
    fn rejected(file: &Path, bytes_in: u64, reason: String) -> Self {
        Self {
            file: file.display().to_string(),
            format: None,
            status: "rejected",
            reason: Some(reason),
            removed: Vec::new(),
            bytes_in,
            bytes_out: 0,
            gps_in_original: false,
            dicom: None,
        }
    }

    fn clean(file: &Path, report: Report) -> Self {
        Self {
            file: file.display().to_string(),
            format: Some(report.format.name()),
            status: "clean",
            reason: None,
            removed: report.removed,
            bytes_in: report.bytes_in,
            bytes_out: report.bytes_out,
            gps_in_original: report.gps_in_original,
            dicom: None,
        }
    }

    /// A de-identified DICOM file: clean, or to review when burned-in text is not ruled out.
    fn deidentified(file: &Path, bytes_in: u64, bytes_out: u64, report: DeidReport) -> Self {
        let (status, reason) = match &report.burned_in {
            BurnedIn::RuledOut => ("clean", None),
            BurnedIn::Declared => ("review", Some("Burned In Annotation is YES".to_owned())),
            BurnedIn::Likely(why) => ("review", Some(why.clone())),
        };
        Self {
            file: file.display().to_string(),
            format: Some(Format::Dicom.name()),
            status,
            reason,
            removed: report.names(),
            bytes_in,
            bytes_out,
            gps_in_original: false,
            dicom: Some(report),
        }
    }
}

/// (source, name relative to OUTDIR) for every file under the inputs; problems as reports.
fn collect(inputs: &[PathBuf]) -> (Vec<(PathBuf, PathBuf)>, Vec<FileReport>) {
    let (mut files, mut refused) = (Vec::new(), Vec::new());
    for input in inputs {
        match std::fs::symlink_metadata(input) {
            Ok(meta) if meta.is_dir() => walk(input, input, &mut files, &mut refused),
            Ok(meta) if meta.is_file() => match input.file_name() {
                Some(name) => files.push((input.clone(), PathBuf::from(name))),
                None => refused.push(FileReport::rejected(input, 0, "no file name".into())),
            },
            Ok(_) => refused.push(FileReport::rejected(input, 0, "not a regular file".into())),
            Err(e) => refused.push(FileReport::rejected(input, 0, format!("cannot read: {e}"))),
        }
    }
    files.sort();
    (files, refused)
}

fn walk(
    root: &Path,
    dir: &Path,
    files: &mut Vec<(PathBuf, PathBuf)>,
    refused: &mut Vec<FileReport>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return refused.push(FileReport::rejected(dir, 0, format!("cannot read: {e}"))),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(root, &path, files, refused),
            Ok(t) if t.is_file() => {
                let rel = path
                    .strip_prefix(root)
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                files.push((path, rel));
            }
            Ok(_) => refused.push(FileReport::rejected(
                &path,
                0,
                "symbolic link or special file".into(),
            )),
            Err(e) => refused.push(FileReport::rejected(&path, 0, format!("cannot read: {e}"))),
        }
    }
}

/// Only plain names below OUTDIR: no `..`, no root, no prefix.
fn stays_inside(rel: &Path) -> bool {
    rel.components().count() > 0 && rel.components().all(|c| matches!(c, Component::Normal(_)))
}

fn sanitize_one(
    source: &Path,
    rel: &Path,
    out_dir: &Path,
    limits: &Limits,
    key: &UidKey,
) -> FileReport {
    let size = std::fs::metadata(source).map(|m| m.len()).unwrap_or(0);
    if !stays_inside(rel) {
        return FileReport::rejected(rel, size, "output name would escape OUTDIR".into());
    }
    if size > limits.max_input_bytes {
        let reason = format!(
            "limit max_input_bytes exceeded: {size} > {}",
            limits.max_input_bytes
        );
        return FileReport::rejected(rel, size, reason);
    }
    let bytes = match std::fs::read(source) {
        Ok(bytes) => bytes,
        Err(e) => return FileReport::rejected(rel, size, format!("cannot read: {e}")),
    };
    let done = if sniff(&bytes) == Some(Format::Dicom) {
        dicom::deidentify(&bytes, key, limits).map(|d| {
            let out = d.bytes.len() as u64;
            (d.bytes, FileReport::deidentified(rel, size, out, d.report))
        })
    } else {
        strip(&bytes, limits).map(|s| (s.bytes, FileReport::clean(rel, s.report)))
    };
    let (clean, report) = match done {
        Ok(done) => done,
        Err(e) => return FileReport::rejected(rel, size, e.to_string()),
    };
    let target = out_dir.join(rel);
    let written = target
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            let tmp = target.with_extension("asepsis-tmp");
            std::fs::write(&tmp, &clean)?;
            std::fs::rename(&tmp, &target)
        });
    match written {
        Ok(()) => report,
        Err(e) => FileReport::rejected(rel, size, format!("cannot write output: {e}")),
    }
}

/// Strip every file; returns whether every one came out clean.
fn sanitize(
    inputs: &[PathBuf],
    out_dir: &Path,
    report: Option<&Path>,
    limits: &Limits,
    key: &UidKey,
) -> anyhow::Result<bool> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let (files, mut reports) = collect(inputs);
    let mut seen = std::collections::HashSet::new();
    let (unique, duplicates): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|(_, rel)| seen.insert(rel.clone()));
    for (_, rel) in duplicates {
        reports.push(FileReport::rejected(
            &rel,
            0,
            "another input has the same output name".into(),
        ));
    }
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(unique.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let done: Vec<FileReport> = unique
        .par_iter()
        .map(|(source, rel)| {
            let r = sanitize_one(source, rel, out_dir, limits, key);
            bar.inc(1);
            r
        })
        .collect();
    bar.finish_and_clear();
    reports.extend(done);
    let rejected: Vec<&FileReport> = reports.iter().filter(|r| r.status != "clean").collect();
    for r in &rejected {
        let why = r.reason.as_deref().unwrap_or("");
        eprintln!("{} {}: {why}", r.status, r.file);
    }
    let review = rejected.iter().filter(|r| r.status == "review").count();
    eprintln!(
        "{} clean, {} to review (written; burned-in text not ruled out), {} rejected",
        reports.len() - rejected.len(),
        review,
        rejected.len() - review
    );
    let all_clean = rejected.is_empty();
    if let Some(path) = report {
        let json = serde_json::to_vec_pretty(&serde_json::json!({ "files": reports }))?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(all_clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_stay_inside_outdir() {
        assert!(stays_inside(Path::new("a/b.jpg")));
        assert!(!stays_inside(Path::new("../b.jpg")));
        assert!(!stays_inside(Path::new("/etc/passwd")));
        assert!(!stays_inside(Path::new("a/../../b")));
        assert!(!stays_inside(Path::new("")));
    }
}
