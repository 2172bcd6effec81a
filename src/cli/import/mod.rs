//! `asepsis import DIR|ZIP --manifest FILE --url URL`: a hospital's batch import.
//!
//! In order: every row of the manifest is checked offline (its consent terms by the API's own
//! rules, its file found inside the source, read whole for its SHA-256 and its format by its
//! first bytes), then the consents it names are looked up; every problem is printed as
//! `row N, column: what` and nothing is sent unless all are fine (or `--skip-invalid`). Then
//! one batch is opened, each distinct inline consent recorded once, and the files uploaded
//! `--concurrency` at a time, streamed, each under an Idempotency-Key derived from the batch,
//! the row and the file's SHA-256, with every step journaled (`journal`) so the same command
//! run again continues and never uploads a row twice. At the end a report gives every row's
//! fate. Output names rows, never a file's name or a consent's terms; the key is read from
//! a file or `ASEPSIS_API_KEY`, never a flag.

mod client;
mod journal;
mod source;

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use asepsis_common::consent::Consent;
use asepsis_common::manifest::{self, ConsentRef, Problem};
use asepsis_common::media::{SNIFF_LEN, sniff};
use asepsis_config::{Import as ImportLimits, Settings};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Method, StatusCode};
use ring::digest::{Context as Sha, SHA256};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use client::{Client, Outcome, RETRY_FOR};
use journal::{Journal, Record};
use source::{Place, Source};

/// The manifest or the source has problems: nothing was uploaded.
const INVALID: u8 = 2;
/// Finished, but not every row was uploaded (or settled, with `--wait`).
const INCOMPLETE: u8 = 1;
/// Stopped by Ctrl-C; the same command resumes.
const INTERRUPTED: u8 = 130;
/// `--wait` gives up when no file has settled for this long (a dead-lettered job, say).
const STALLED: Duration = Duration::from_secs(600);

#[derive(clap::Args)]
pub struct Args {
    /// The directory holding the files the manifest names, or a ZIP of them (read in place).
    source: PathBuf,
    /// The manifest: CSV with a header; `file`, then `consent_id` or the consent's fields.
    #[arg(long, value_name = "FILE")]
    manifest: PathBuf,
    /// The Asepsis server, e.g. https://asepsis.example.org
    #[arg(long, value_name = "URL")]
    url: String,
    /// A file holding an uploader's API key (else the variable ASEPSIS_API_KEY).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Uploads at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// The state file that makes a rerun resume [default: MANIFEST.import-state.jsonl].
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Upload the valid rows and report the others, instead of refusing the whole import.
    #[arg(long)]
    skip_invalid: bool,
    /// After uploading, follow the batch until every file has settled.
    #[arg(long)]
    wait: bool,
    /// Where to write the per-row report, CSV or (by extension) JSON
    /// [default: MANIFEST.report.csv].
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// The batch's label on the server [default: the manifest's SHA-256, shortened].
    #[arg(long)]
    label: Option<String>,
}

/// A row ready to upload.
#[derive(Clone)]
struct Upload {
    row: usize,
    file: String,
    place: Place,
    consent: ConsentRef,
    size: u64,
    sha256: String,
}

/// One row of the report.
#[derive(Serialize)]
struct Fate {
    row: usize,
    file: String,
    sha256: String,
    asset_id: Option<Uuid>,
    /// The asset's state when the import ended (published, held, rejected, received,
    /// processing, …), or: invalid, refused (a 4xx), not_uploaded (run again).
    state: String,
    reason: String,
}

/// A manifest, source or usage error: nothing was uploaded.
fn usage(e: &anyhow::Error) -> ExitCode {
    eprintln!("{e:#}");
    ExitCode::from(INVALID)
}

pub async fn run(settings: Settings, args: Args) -> anyhow::Result<ExitCode> {
    let key = match api_key(args.key_file.as_deref()) {
        Ok(key) => key,
        Err(e) => return Ok(usage(&e)),
    };
    let text = match std::fs::read(&args.manifest) {
        Ok(text) => text,
        Err(e) => {
            let e = anyhow::anyhow!("manifest {}: {e}", args.manifest.display());
            return Ok(usage(&e));
        }
    };
    let manifest_sha256 = asepsis_common::sha256_hex(&text);
    let parsed = manifest::parse(&text, time::OffsetDateTime::now_utc());
    let files_of = parsed.files.clone();
    let mut problems = parsed.problems;
    let limits = settings.import;
    let source = match Source::open(&args.source, &limits).await {
        Ok(source) => source,
        Err(refusals) => {
            for refusal in &refusals {
                eprintln!("{refusal}");
            }
            eprintln!("the source is refused; nothing was uploaded");
            return Ok(ExitCode::from(INVALID));
        }
    };
    eprintln!("checking {} rows…", parsed.rows.len());
    let checked = check_files(
        &source,
        parsed.rows,
        &limits,
        &mut problems,
        args.concurrency,
    )
    .await;
    let mut uploads = match checked {
        Ok(uploads) => uploads,
        Err(refusal) => {
            eprintln!("{refusal}\nthe source is refused; nothing was uploaded");
            return Ok(ExitCode::from(INVALID));
        }
    };
    let client = match Client::new(&args.url, key.expose_secret()) {
        Ok(client) => client,
        Err(e) => return Ok(usage(&e)),
    };
    if let Err(e) = check_consents(&client, &uploads, &mut problems).await {
        eprintln!("{e:#}");
        return Ok(ExitCode::from(INVALID));
    }
    let Some(invalid_rows) = refuse_or_skip(problems, &mut uploads, args.skip_invalid) else {
        return Ok(ExitCode::from(INVALID));
    };

    let state_path = args
        .state
        .clone()
        .unwrap_or_else(|| journal::default_path(&args.manifest));
    let (journal, progress) = match Journal::open(&state_path, &manifest_sha256, &args.url) {
        Ok(opened) => opened,
        Err(e) => return Ok(usage(&e)),
    };
    let journal = Mutex::new(journal);
    let nonce = progress.nonce.unwrap_or_default();
    let label = args
        .label
        .clone()
        .unwrap_or_else(|| format!("import {}", &manifest_sha256[..12]));
    let batch = match progress.batch {
        Some(batch) => batch,
        None => {
            let batch = open_batch(&client, nonce, &label, uploads.len() as u64).await?;
            journal
                .lock()
                .await
                .write(&Record::Batch { id: batch }, true)?;
            batch
        }
    };
    let mut refused = HashMap::new();
    record_consents(&client, &journal, nonce, &mut uploads, &progress.consents).await?;

    let mut done = progress.done.clone();
    let pending: Vec<Upload> = uploads
        .iter()
        .filter(|u| !done.contains_key(&u.row))
        .cloned()
        .collect();
    if !progress.in_flight.is_empty() {
        eprintln!(
            "resuming: {} rows were in flight when the last run stopped; each is sent again \
             under its Idempotency-Key, which makes no second asset",
            progress.in_flight.len()
        );
    }
    let total_bytes: u64 = uploads.iter().map(|u| u.size).sum();
    let done_bytes: u64 = uploads
        .iter()
        .filter(|u| done.contains_key(&u.row))
        .map(|u| u.size)
        .sum();
    let meter = Meter::new(
        uploads.len() as u64,
        done.len() as u64,
        total_bytes,
        done_bytes,
    );
    let (results, interrupted) = upload_interruptibly(UploadAll {
        client: &client,
        source: &source,
        journal: &journal,
        batch,
        pending,
        concurrency: usize::from(args.concurrency),
        meter: &meter,
    })
    .await;
    meter.finish();
    let mut gave_up = HashMap::new();
    for (row, outcome) in results {
        match outcome {
            RowOutcome::Done(asset) => {
                done.insert(row, asset);
            }
            RowOutcome::Refused(status, message) => {
                refused.insert(row, (status, message));
            }
            RowOutcome::GaveUp(why) => {
                gave_up.insert(row, why);
            }
            RowOutcome::NotStarted => {}
        }
    }
    if interrupted {
        eprintln!(
            "interrupted: {} of {} rows uploaded. Run the same command again to resume \
             (progress is kept in {}).",
            done.len(),
            uploads.len(),
            journal.lock().await.path().display()
        );
        return Ok(ExitCode::from(INTERRUPTED));
    }

    if args.wait
        && !done.is_empty()
        && let Err(e) = follow_batch(&client, batch, done.len() as u64).await
    {
        eprintln!("{e:#}; the report gives each file's state as it is now");
    }
    let settled = states(&client, &done).await;
    let outcome = Outcomes {
        done: &done,
        settled: &settled,
        refused: &refused,
        gave_up: &gave_up,
    };
    let fates = fates(&invalid_rows, &files_of, &uploads, &outcome);
    let report_path = args.report.clone().unwrap_or_else(|| {
        let mut name = args.manifest.file_name().unwrap_or_default().to_os_string();
        name.push(".report.csv");
        args.manifest.with_file_name(name)
    });
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for fate in &fates {
        *counts.entry(fate.state.clone()).or_default() += 1;
    }
    write_report(&report_path, &fates, &counts)?;
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    eprintln!(
        "batch {batch}: {} rows: {}. Report: {}",
        fates.len(),
        summary.join(", "),
        report_path.display()
    );
    // Published or held is a file's good end; received or processing is on its way (without
    // --wait); anything else (rejected, invalid, refused, not uploaded) is not.
    let fine = |state: &str| {
        matches!(state, "published" | "held")
            || (!args.wait && matches!(state, "received" | "processing"))
    };
    Ok(if fates.iter().all(|f| fine(&f.state)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(INCOMPLETE)
    })
}

/// Where each uploaded row ended, for the report.
struct Outcomes<'a> {
    done: &'a HashMap<usize, Uuid>,
    settled: &'a HashMap<Uuid, (String, String)>,
    refused: &'a HashMap<usize, (u16, String)>,
    gave_up: &'a HashMap<usize, String>,
}

/// Every manifest row's fate, in row order.
fn fates(
    invalid_rows: &BTreeMap<usize, Vec<String>>,
    files_of: &BTreeMap<usize, String>,
    uploads: &[Upload],
    outcome: &Outcomes<'_>,
) -> Vec<Fate> {
    let mut fates: Vec<Fate> = Vec::new();
    for (&row, reasons) in invalid_rows {
        fates.push(Fate {
            row,
            file: files_of.get(&row).cloned().unwrap_or_default(),
            sha256: String::new(),
            asset_id: None,
            state: "invalid".into(),
            reason: reasons.join("; "),
        });
    }
    for u in uploads {
        let (state, asset_id, reason) = if let Some(&asset) = outcome.done.get(&u.row) {
            match outcome.settled.get(&asset) {
                Some((state, reason)) => (state.clone(), Some(asset), reason.clone()),
                None => (
                    "unknown".to_owned(),
                    Some(asset),
                    "the server did not say".into(),
                ),
            }
        } else if let Some((status, message)) = outcome.refused.get(&u.row) {
            ("refused".into(), None, format!("{status}: {message}"))
        } else {
            let why = outcome.gave_up.get(&u.row).cloned().unwrap_or_default();
            (
                "not_uploaded".into(),
                None,
                format!("{why} (run again to retry)"),
            )
        };
        fates.push(Fate {
            row: u.row,
            file: u.file.clone(),
            sha256: u.sha256.clone(),
            asset_id,
            state,
            reason,
        });
    }
    fates.sort_by_key(|f| f.row);
    fates
}

/// Print every problem; `None` when the import must stop (there are problems and no
/// `--skip-invalid`, or no valid row is left), else the invalid rows with their problems
/// (taken out of `uploads`).
fn refuse_or_skip(
    mut problems: Vec<Problem>,
    uploads: &mut Vec<Upload>,
    skip_invalid: bool,
) -> Option<BTreeMap<usize, Vec<String>>> {
    problems.sort_by_key(|p| p.row);
    let invalid_rows: BTreeMap<usize, Vec<String>> =
        problems.iter().fold(BTreeMap::new(), |mut rows, p| {
            rows.entry(p.row)
                .or_default()
                .push(format!("{}: {}", p.column, p.what));
            rows
        });
    uploads.retain(|u| !invalid_rows.contains_key(&u.row));
    if !problems.is_empty() {
        for problem in &problems {
            eprintln!("{problem}");
        }
        if !skip_invalid || uploads.is_empty() {
            eprintln!(
                "{} problems in {} rows; nothing was uploaded. Fix the manifest, or pass \
                 --skip-invalid to import the valid rows only.",
                problems.len(),
                invalid_rows.len()
            );
            return None;
        }
        eprintln!("{} rows skipped as invalid", invalid_rows.len());
    }
    Some(invalid_rows)
}

fn api_key(file: Option<&Path>) -> anyhow::Result<SecretString> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("key file {}", path.display()))?;
            let key = text.trim();
            anyhow::ensure!(!key.is_empty(), "key file {} is empty", path.display());
            Ok(SecretString::from(key.to_owned()))
        }
        None => asepsis_config::api_key_env().ok_or_else(|| {
            anyhow::anyhow!("no API key: pass --key-file FILE or set ASEPSIS_API_KEY")
        }),
    }
}

/// Find, hash and sniff each row's file; two rows naming one file (by any path) is the
/// second one's problem. A ZIP inflating past its total bound refuses the whole source
/// (`Err`); a row's own problem goes to `problems`.
async fn check_files(
    source: &Source,
    rows: Vec<manifest::Row>,
    limits: &ImportLimits,
    problems: &mut Vec<Problem>,
    concurrency: u16,
) -> Result<Vec<Upload>, String> {
    // All of a ZIP's entries together; a directory's files are only what they are.
    let budget = source.is_zip().then_some(limits.zip_max_total_bytes);
    let inflated = AtomicU64::new(0);
    let checked: Vec<(manifest::Row, Result<Found, String>)> = futures::stream::iter(rows)
        .map(|row| {
            let inflated = &inflated;
            async move {
                let checked = check_file(source, &row.file, inflated, budget).await;
                (row, checked)
            }
        })
        .buffered(usize::from(concurrency))
        .collect()
        .await;
    if let Some(budget) = budget
        && inflated.load(Ordering::Relaxed) > budget
    {
        return Err(format!(
            "source: the ZIP inflates past import.zip_max_total_bytes ({budget})"
        ));
    }
    let mut first_row: HashMap<Place, usize> = HashMap::new();
    let mut uploads = Vec::new();
    for (row, checked) in checked {
        let problem = |what| Problem {
            row: row.number,
            column: "file".into(),
            what,
        };
        match checked {
            Ok(found) => match first_row.get(&found.place) {
                Some(first) => problems.push(problem(format!("the same file as row {first}"))),
                None => {
                    first_row.insert(found.place.clone(), row.number);
                    uploads.push(Upload {
                        row: row.number,
                        file: row.file,
                        place: found.place,
                        consent: row.consent,
                        size: found.size,
                        sha256: found.sha256,
                    });
                }
            },
            Err(what) => problems.push(problem(what)),
        }
    }
    Ok(uploads)
}

/// A row's file, found and read.
struct Found {
    place: Place,
    size: u64,
    sha256: String,
}

async fn check_file(
    source: &Source,
    file: &str,
    inflated: &AtomicU64,
    budget: Option<u64>,
) -> Result<Found, String> {
    let place = source.find(file).await?;
    let mut stream = source
        .stream(&place)
        .await
        .map_err(|e| format!("cannot read the file ({})", e.kind()))?;
    let mut sha = Sha::new(&SHA256);
    let mut head = Vec::with_capacity(SNIFF_LEN);
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => e.to_string(),
            kind => format!("cannot read the file ({kind})"),
        })?;
        let room = SNIFF_LEN - head.len();
        head.extend_from_slice(&chunk[..chunk.len().min(room)]);
        sha.update(&chunk);
        size += chunk.len() as u64;
        let so_far = inflated.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if budget.is_some_and(|budget| so_far > budget) {
            return Err("the ZIP inflates past import.zip_max_total_bytes".into());
        }
    }
    match sniff(&head) {
        Some(_) => Ok(Found {
            place,
            size,
            sha256: hex::encode(sha.finish()),
        }),
        None => Err(
            "not a supported image (JPEG, PNG, WebP, TIFF, HEIF/HEIC, AVIF or DICOM), by its bytes"
                .into(),
        ),
    }
}

/// Look up every consent a row names by id: one the key's tenant does not have, or one
/// withdrawn, is the row's problem.
///
/// # Errors
/// The server cannot be reached or refuses the key: nothing can be imported.
async fn check_consents(
    client: &Client,
    uploads: &[Upload],
    problems: &mut Vec<Problem>,
) -> anyhow::Result<()> {
    let mut rows_of: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
    for u in uploads {
        if let ConsentRef::Id(id) = u.consent {
            rows_of.entry(id).or_default().push(u.row);
        }
    }
    for (id, rows) in rows_of {
        let path = &format!("/v1/consents/{id}");
        let outcome = client
            .send(RETRY_FOR, || async move {
                Ok(client.request(Method::GET, path))
            })
            .await;
        let what = match outcome {
            Outcome::Ok(response) => {
                let consent: Consent = response.json().await?;
                match consent.check_for_upload(time::OffsetDateTime::now_utc()) {
                    Ok(()) => continue,
                    Err(why) => why.to_string(),
                }
            }
            Outcome::Refused(StatusCode::NOT_FOUND, _) => {
                "no such consent for this key's tenant; record it, or give its terms inline".into()
            }
            Outcome::Refused(status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN), m) => {
                anyhow::bail!(
                    "the server refused the API key ({status}: {m}); nothing was uploaded"
                )
            }
            Outcome::Refused(status, m) => anyhow::bail!("looking up a consent: {status}: {m}"),
            Outcome::GaveUp(why) => anyhow::bail!("the server did not answer: {why}"),
        };
        for row in rows {
            problems.push(Problem {
                row,
                column: "consent_id".into(),
                what: what.clone(),
            });
        }
    }
    Ok(())
}

async fn open_batch(
    client: &Client,
    nonce: Uuid,
    label: &str,
    expected: u64,
) -> anyhow::Result<Uuid> {
    let body = &serde_json::json!({ "label": label, "expected": expected });
    let key = &format!("asepsis-import/{nonce}/batch");
    let outcome = client
        .send(RETRY_FOR, || async move {
            Ok(client
                .request(Method::POST, "/v1/batches")
                .header("idempotency-key", key)
                .json(body))
        })
        .await;
    created_id(outcome, "opening the batch").await
}

async fn created_id(outcome: Outcome, what: &str) -> anyhow::Result<Uuid> {
    #[derive(serde::Deserialize)]
    struct Created {
        id: Uuid,
    }
    match outcome {
        Outcome::Ok(response) => Ok(response.json::<Created>().await?.id),
        Outcome::Refused(status, message) => anyhow::bail!("{what}: {status}: {message}"),
        Outcome::GaveUp(why) => {
            anyhow::bail!("{what}: {why}; run the same command again to resume")
        }
    }
}

/// Record each distinct inline consent once (the journal and the Idempotency-Key make a
/// rerun find the one recorded), and name it by id in each of its rows.
async fn record_consents(
    client: &Client,
    journal: &Mutex<Journal>,
    nonce: Uuid,
    uploads: &mut [Upload],
    known: &HashMap<String, Uuid>,
) -> anyhow::Result<()> {
    let mut consents = known.clone();
    for u in uploads {
        let ConsentRef::Inline(terms) = &u.consent else {
            continue;
        };
        let body = serde_json::to_vec(terms)?;
        let terms_sha256 = asepsis_common::sha256_hex(&body);
        if let Some(&id) = consents.get(&terms_sha256) {
            u.consent = ConsentRef::Id(id);
            continue;
        }
        let (key, body) = (
            &format!("asepsis-import/{nonce}/consent/{terms_sha256}"),
            &body,
        );
        let outcome = client
            .send(RETRY_FOR, || async move {
                Ok(client
                    .request(Method::POST, "/v1/consents")
                    .header("idempotency-key", key)
                    .header("content-type", "application/json")
                    .body(body.clone()))
            })
            .await;
        let id = created_id(outcome, &format!("recording the consent of row {}", u.row)).await?;
        journal.lock().await.write(
            &Record::Consent {
                terms_sha256: terms_sha256.clone(),
                id,
            },
            true,
        )?;
        consents.insert(terms_sha256, id);
        u.consent = ConsentRef::Id(id);
    }
    Ok(())
}

enum RowOutcome {
    Done(Uuid),
    Refused(u16, String),
    GaveUp(String),
    NotStarted,
}

struct UploadAll<'a> {
    client: &'a Client,
    source: &'a Source,
    journal: &'a Mutex<Journal>,
    batch: Uuid,
    pending: Vec<Upload>,
    concurrency: usize,
    meter: &'a Meter,
}

/// Upload everything pending until done or Ctrl-C: the first stops starting uploads and lets
/// those in flight finish, a second abandons them. `true` when interrupted.
async fn upload_interruptibly(work: UploadAll<'_>) -> (Vec<(usize, RowOutcome)>, bool) {
    let (cancel, abandon) = (CancellationToken::new(), CancellationToken::new());
    let (interrupt, give_up) = (cancel.clone(), abandon.clone());
    let stopping = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping: finishing the uploads in flight (Ctrl-C again to abandon them)");
            interrupt.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("abandoning the uploads in flight");
                give_up.cancel();
            }
        }
    });
    let results = tokio::select! {
        results = upload_all(work, &cancel) => results,
        () = abandon.cancelled() => Vec::new(),
    };
    stopping.abort();
    (results, cancel.is_cancelled())
}

async fn upload_all(work: UploadAll<'_>, cancel: &CancellationToken) -> Vec<(usize, RowOutcome)> {
    let UploadAll {
        client,
        source,
        journal,
        batch,
        pending,
        concurrency,
        meter,
    } = work;
    futures::stream::iter(pending)
        .map(|u| async move {
            if cancel.is_cancelled() {
                return (u.row, RowOutcome::NotStarted);
            }
            let outcome = upload_one(client, source, journal, batch, &u).await;
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) => RowOutcome::GaveUp(format!("{e:#}")),
            };
            meter.row(u.size, !matches!(outcome, RowOutcome::Done(_)));
            (u.row, outcome)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

async fn upload_one(
    client: &Client,
    source: &Source,
    journal: &Mutex<Journal>,
    batch: Uuid,
    u: &Upload,
) -> anyhow::Result<RowOutcome> {
    let ConsentRef::Id(consent) = u.consent else {
        anyhow::bail!("row {}: its inline consent was not recorded", u.row);
    };
    journal
        .lock()
        .await
        .write(&Record::Start { row: u.row }, false)?;
    let key = &format!("asepsis-import/{batch}/{}/{}", u.row, u.sha256);
    let outcome = client
        .send(RETRY_FOR, || async move {
            let stream = source.stream(&u.place).await?;
            let part = reqwest::multipart::Part::stream_with_length(
                reqwest::Body::wrap_stream(stream),
                u.size,
            )
            .mime_str("application/octet-stream")
            .map_err(std::io::Error::other)?;
            let form = reqwest::multipart::Form::new()
                .text("consent_id", consent.to_string())
                .text("batch_id", batch.to_string())
                .part("file", part);
            Ok(client
                .request(Method::POST, "/v1/assets")
                .header("idempotency-key", key)
                .multipart(form))
        })
        .await;
    let row = u.row;
    Ok(match outcome {
        Outcome::Ok(response) => {
            let asset = created_id(Outcome::Ok(response), "reading the server's answer").await?;
            journal
                .lock()
                .await
                .write(&Record::Done { row, asset }, false)?;
            RowOutcome::Done(asset)
        }
        Outcome::Refused(status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN), error) => {
            RowOutcome::GaveUp(format!(
                "the server refused the API key ({status}: {error})"
            ))
        }
        Outcome::Refused(status, error) => {
            let status = status.as_u16();
            let record = Record::Refused {
                row,
                status,
                error: error.clone(),
            };
            journal.lock().await.write(&record, false)?;
            RowOutcome::Refused(status, error)
        }
        Outcome::GaveUp(why) => RowOutcome::GaveUp(why),
    })
}

/// Follow the batch until the `uploaded` assets have all settled.
///
/// # Errors
/// Ctrl-C, no file settling for [`STALLED`], or the server failing: the files settle on
/// their own, the caller just stops waiting.
async fn follow_batch(client: &Client, batch: Uuid, uploaded: u64) -> anyhow::Result<()> {
    #[derive(serde::Deserialize)]
    struct Tally {
        assets: u64,
        settled: u64,
    }
    let bar = progress_bar(
        uploaded,
        "{spinner} settled {pos}/{len} [{elapsed_precise}]",
    );
    let path = &format!("/v1/batches/{batch}");
    let (mut last_line, mut last_change) = (0, std::time::Instant::now());
    loop {
        let outcome = client
            .send(RETRY_FOR, || async move {
                Ok(client.request(Method::GET, path))
            })
            .await;
        let tally: Tally = match outcome {
            Outcome::Ok(response) => response.json().await?,
            Outcome::Refused(status, m) => anyhow::bail!("following the batch: {status}: {m}"),
            Outcome::GaveUp(why) => anyhow::bail!("following the batch: {why}"),
        };
        bar.set_position(tally.settled);
        if tally.settled != last_line {
            if bar.is_hidden() {
                eprintln!("import: {}/{uploaded} settled", tally.settled);
            }
            (last_line, last_change) = (tally.settled, std::time::Instant::now());
        }
        if tally.assets >= uploaded && tally.settled >= tally.assets {
            bar.finish_and_clear();
            return Ok(());
        }
        anyhow::ensure!(
            last_change.elapsed() < STALLED,
            "stopped waiting: no file settled for {} minutes",
            STALLED.as_secs() / 60
        );
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => anyhow::bail!("stopped waiting (Ctrl-C)"),
        }
    }
}

/// Each uploaded asset's state and, when rejected or held, the reason.
async fn states(client: &Client, done: &HashMap<usize, Uuid>) -> HashMap<Uuid, (String, String)> {
    #[derive(serde::Deserialize)]
    struct Summary {
        state: Option<String>,
        reason: Option<String>,
    }
    futures::stream::iter(done.values().copied())
        .map(|asset| async move {
            let path = &format!("/v1/assets/{asset}");
            match client
                .send(Duration::from_secs(10), || async move {
                    Ok(client.request(Method::GET, path))
                })
                .await
            {
                Outcome::Ok(response) => {
                    let summary: Summary = response.json().await.ok()?;
                    let state = summary.state.unwrap_or_else(|| "unknown".into());
                    let reason = match state.as_str() {
                        "rejected" | "held" => summary.reason.unwrap_or_default(),
                        _ => String::new(),
                    };
                    Some((asset, (state, reason)))
                }
                _ => None,
            }
        })
        .buffer_unordered(16)
        .filter_map(|found| async move { found })
        .collect()
        .await
}

/// The report: a CSV of the rows and a last `summary` line of counts per state (`state=N`
/// joined by `;`), or (by extension) JSON `{"rows": [...], "summary": {state: N}}`.
fn write_report(
    path: &Path,
    fates: &[Fate],
    counts: &BTreeMap<String, usize>,
) -> anyhow::Result<()> {
    let json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let write = || -> anyhow::Result<()> {
        if json {
            let report = serde_json::json!({ "rows": fates, "summary": counts });
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        } else {
            let mut csv = csv::Writer::from_path(path)?;
            for fate in fates {
                csv.serialize(fate)?;
            }
            let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
            csv.write_record(["summary", "", "", "", &counts.join(";"), ""])?;
            csv.flush()?;
        }
        Ok(())
    };
    write().with_context(|| format!("report {}", path.display()))
}

fn progress_bar(len: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Progress: a bar on a terminal (bytes, rate, ETA, files and failures), else a plain line
/// every hundredth of the files.
struct Meter {
    bar: ProgressBar,
    files: u64,
    done: AtomicU64,
    failed: AtomicU64,
    step: u64,
}

impl Meter {
    fn new(files: u64, done: u64, bytes: u64, done_bytes: u64) -> Meter {
        let bar = progress_bar(
            bytes,
            "{spinner} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        );
        bar.set_position(done_bytes);
        let meter = Meter {
            bar,
            files,
            done: AtomicU64::new(done),
            failed: AtomicU64::new(0),
            step: (files / 100).max(1),
        };
        meter.show();
        meter
    }

    fn row(&self, bytes: u64, failed: bool) {
        self.bar.inc(bytes);
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if !self.bar.is_hidden() || done.is_multiple_of(self.step) || done == self.files {
            self.show();
        }
    }

    fn show(&self) {
        let line = format!(
            "files {}/{}, {} failed",
            self.done.load(Ordering::Relaxed),
            self.files,
            self.failed.load(Ordering::Relaxed)
        );
        if self.bar.is_hidden() {
            eprintln!(
                "import: {line}, {} of {} bytes",
                self.bar.position(),
                self.bar.length().unwrap_or(0)
            );
        } else {
            self.bar.set_message(line);
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
