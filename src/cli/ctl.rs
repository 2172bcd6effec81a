//! `asepsis ctl`: the operator's host commands: queue counts, dead letters (ids, reasons and
//! attempts, never bodies), replay (audited), the signed audit log and its check, and an
//! asset's provenance check.

use std::process::ExitCode;

use asepsis_common::audit;
use asepsis_common::provenance::{self, BrokenLink, TrustedKeys};
use asepsis_config::Settings;
use asepsis_ingest::ops;
use asepsis_queue::Replay;
use asepsis_store::StorageError;

#[derive(clap::Subcommand)]
pub enum Ctl {
    /// Ready, in-flight, retrying and dead-letter counts.
    Queues {
        #[arg(long)]
        json: bool,
    },
    /// Dead letters: job id, reason, attempts (never bodies).
    DeadLetters {
        #[arg(long)]
        json: bool,
    },
    /// Move dead letters back to the queue; written to the audit log.
    Replay {
        /// The dead letter's id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
    },
    /// Print the signed audit log of privileged actions, one JSON entry a line.
    Audit,
    /// Verify the audit log: sequence, hash chain and signatures; prints the first broken
    /// link.
    VerifyAudit,
    /// Verify an asset's provenance: sequence, hash chain and signatures; prints the first
    /// broken link.
    Verify {
        asset: uuid::Uuid,
        /// Also print the log as W3C PROV JSON.
        #[arg(long)]
        prov: bool,
    },
}

pub async fn run(settings: Settings, command: Ctl) -> anyhow::Result<ExitCode> {
    match command {
        Ctl::Queues { json } => queues(&settings, json).await,
        Ctl::DeadLetters { json } => dead_letters(&settings, json).await,
        Ctl::Replay { id, all } => replay(&settings, id.filter(|_| !all)).await,
        Ctl::Audit => audit_log(&settings).await,
        Ctl::VerifyAudit => verify_audit(&settings).await,
        Ctl::Verify { asset, prov } => verify(&settings, asset, prov).await,
    }
}

async fn queues(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let (queue, _) = asepsis::open_queue(settings, false).await?;
    let stats = queue.stats().await?;
    if json {
        println!("{}", serde_json::to_string(&stats)?);
    } else {
        let in_flight = stats
            .in_flight
            .map_or_else(|| "n/a".to_owned(), |n| n.to_string());
        println!("ready        {}", stats.ready);
        println!("in-flight    {in_flight}");
        println!("retrying     {}", stats.retrying);
        println!("dead-letter  {}", stats.dead);
    }
    Ok(ExitCode::SUCCESS)
}

async fn dead_letters(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let (queue, _) = asepsis::open_queue(settings, false).await?;
    let letters = ops::dead_letters(queue.as_ref()).await?;
    if json {
        println!("{}", serde_json::to_string(&letters)?);
    } else {
        println!(
            "{:<36}  {:<36}  {:>8}  reason",
            "job id", "asset id", "attempts"
        );
        for l in &letters {
            let asset = l.asset_id.map_or_else(|| "-".to_owned(), |a| a.to_string());
            println!(
                "{:<36}  {asset:<36}  {:>8}  {}",
                l.job_id, l.attempts, l.reason
            );
        }
        println!("{} dead letter(s)", letters.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// Replay one dead letter (`Some(id)`) or all of them; audited when any moved.
async fn replay(settings: &Settings, id: Option<String>) -> anyhow::Result<ExitCode> {
    let (queue, _) = asepsis::open_queue(settings, false).await?;
    let (storage, keys) = asepsis::open_storage(settings)?;
    let actor = ops::Actor {
        id: asepsis::host_actor(),
        tenant: None,
    };
    let which = id.clone().map_or(Replay::All, Replay::One);
    let ids = ops::replay(queue.as_ref(), &storage, &keys.signer, actor, which).await?;
    println!("replayed {} dead letter(s)", ids.len());
    if let (true, Some(id)) = (ids.is_empty(), id) {
        eprintln!("no dead letter with id {id}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit_log(settings: &Settings) -> anyhow::Result<ExitCode> {
    let (storage, _) = asepsis::open_storage(settings)?;
    for entry in storage.audit_log().await? {
        println!("{}", serde_json::to_string(&entry)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// A stored log, or `Err(exit)` once the first broken link is printed: a record edited into
/// something that no longer parses is a broken link too.
fn parsed<T>(read: Result<Vec<T>, StorageError>) -> anyhow::Result<Result<Vec<T>, ExitCode>> {
    match read {
        Ok(records) => Ok(Ok(records)),
        Err(StorageError::Corrupt(path)) => {
            let seq = path.rsplit('/').next().and_then(|s| s.parse::<u64>().ok());
            let seq = seq.map_or_else(String::new, |s| format!(" (seq {s})"));
            println!("broken: stored record{seq} does not parse: edited or corrupt");
            Ok(Err(ExitCode::FAILURE))
        }
        Err(e) => Err(e.into()),
    }
}

/// Print a chain check's outcome: `ok: …` (exit 0) or the first broken link (exit 1).
fn report(checked: Result<usize, BrokenLink>, ok: impl FnOnce(usize) -> String) -> ExitCode {
    match checked {
        Ok(n) => {
            println!("ok: {}", ok(n));
            ExitCode::SUCCESS
        }
        Err(broken) => {
            println!("broken: {broken}");
            ExitCode::FAILURE
        }
    }
}

async fn verify_audit(settings: &Settings) -> anyhow::Result<ExitCode> {
    let (storage, keys) = asepsis::open_storage(settings)?;
    let entries = match parsed(storage.audit_log().await)? {
        Ok(entries) => entries,
        Err(exit) => return Ok(exit),
    };
    let mut trusted = TrustedKeys::default();
    trusted.add(keys.signer.public_key());
    let checked = audit::verify(&entries, &trusted);
    Ok(report(checked, |n| {
        format!("{n} entries, signatures and chain intact")
    }))
}

async fn verify(settings: &Settings, asset: uuid::Uuid, prov: bool) -> anyhow::Result<ExitCode> {
    let (storage, keys) = asepsis::open_storage(settings)?;
    let events = match parsed(storage.events(asset).await)? {
        Ok(events) => events,
        Err(exit) => return Ok(exit),
    };
    if events.is_empty() {
        eprintln!("no provenance events for asset {asset}");
        return Ok(ExitCode::FAILURE);
    }
    let mut trusted = TrustedKeys::default();
    trusted.add(keys.signer.public_key());
    if prov {
        let prov = provenance::to_prov(asset, &events);
        println!("{}", serde_json::to_string_pretty(&prov)?);
    }
    let checked = provenance::verify(asset, &events, &trusted);
    Ok(report(checked, |n| {
        let state = provenance::fold(&events)
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or_default();
        format!("{n} events, signatures and chain intact; state {state}")
    }))
}
