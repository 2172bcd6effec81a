//! `asepsis rights`: a privacy officer's requests on the host, against the configured store
//! directly — the same [`asepsis_rights::Desk`] the `/v1/subjects` routes use, audited as
//! `host:<user>` — and the retention purge (`purge --dry-run` lists what would go).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use asepsis_config::Settings;
use asepsis_rights::{Actor, Desk};
use asepsis_worker::retention::Retention;
use tokio_util::compat::TokioAsyncWriteCompatExt;

#[derive(clap::Subcommand)]
pub enum Rights {
    /// Erase a subject: every asset unpublished, deleted and shredded; consents scrubbed.
    Erase(Subject),
    /// Restrict a subject: its assets frozen (not served, not processed, nothing deleted).
    Restrict(Subject),
    /// Lift a restriction; what was waiting to be processed is queued again.
    Unrestrict(Subject),
    /// Object to purposes: removed from the subject's consents.
    Object {
        #[command(flatten)]
        subject: Subject,
        /// A purpose to object to (repeat for more).
        #[arg(long = "purpose", required = true)]
        purposes: Vec<String>,
    },
    /// Correct fields of a consent with a JSON merge patch of its terms.
    Rectify {
        #[arg(long)]
        tenant: String,
        consent: uuid::Uuid,
        /// The patch, e.g. '{"scope": "internal"}'.
        #[arg(long)]
        patch: String,
    },
    /// Write a subject's export bundle (ZIP) to a file.
    Export {
        #[command(flatten)]
        subject: Subject,
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
    /// The accounting of disclosures of a subject, as JSON.
    Disclosures(Subject),
    /// Run the retention purge once now (one batch).
    Purge {
        /// Print what would be purged; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: as if it were this time (RFC 3339).
        #[arg(long, requires = "dry_run", value_name = "TIME")]
        as_of: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct Subject {
    #[arg(long)]
    tenant: String,
    /// The subject_ref of the tenant's consents.
    subject_ref: String,
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(settings: Settings, command: Rights) -> anyhow::Result<ExitCode> {
    let (storage, keys) = asepsis::open_storage(&settings)?;
    let signer = Arc::new(keys.signer);
    if let Rights::Purge { dry_run, as_of } = command {
        let at = match as_of {
            Some(t) => {
                let at =
                    time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                        .context("--as-of: not an RFC 3339 time")?;
                u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
            }
            None => asepsis_store::now_ms(),
        };
        let retention = Retention {
            storage,
            signer,
            settings: settings.retention.clone(),
        };
        for purge in retention.run_once(at, dry_run).await? {
            println!("{}", serde_json::to_string(&purge)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Only lifting a restriction needs the queue (to queue released work again).
    let queue = match asepsis::open_queue(&settings, false).await {
        Ok((queue, _)) => Some(queue),
        Err(e) if matches!(command, Rights::Unrestrict(_)) => return Err(e),
        Err(_) => None,
    };
    let desk = Desk {
        storage,
        signer,
        queue,
        lock_ttl: settings.rights.lock_ttl(),
        notifier: std::sync::Arc::new(asepsis_queue::notify::InProcess::new()),
        takedown: Default::default(),
    };
    let host = |tenant: String| Actor {
        id: format!("host:{}", asepsis_config::os_user()),
        tenant,
    };
    match command {
        Rights::Erase(s) => print_json(&desk.erase(&host(s.tenant), &s.subject_ref).await?)?,
        Rights::Restrict(s) => {
            print_json(&desk.restrict(&host(s.tenant), &s.subject_ref, true).await?)?;
        }
        Rights::Unrestrict(s) => {
            print_json(
                &desk
                    .restrict(&host(s.tenant), &s.subject_ref, false)
                    .await?,
            )?;
        }
        Rights::Object { subject, purposes } => {
            let actor = host(subject.tenant);
            print_json(&desk.object(&actor, &subject.subject_ref, &purposes).await?)?;
        }
        Rights::Rectify {
            tenant,
            consent,
            patch,
        } => {
            let patch: serde_json::Value =
                serde_json::from_str(&patch).context("--patch: not JSON")?;
            let (consent, outcome) = desk.rectify(&host(tenant), consent, &patch).await?;
            print_json(&serde_json::json!({"consent": consent, "outcome": outcome}))?;
        }
        Rights::Export { subject, output } => {
            let export = desk
                .prepare_export(&host(subject.tenant), &subject.subject_ref)
                .await?;
            let receipt = export.receipt;
            let file = tokio::fs::File::create(&output)
                .await
                .with_context(|| format!("cannot create {}", output.display()))?;
            export.write(file.compat_write()).await?;
            eprintln!("export {receipt} written to {}", output.display());
        }
        Rights::Disclosures(s) => {
            print_json(
                &desk
                    .disclosures(&s.tenant, &s.subject_ref, 0, u64::MAX)
                    .await?,
            )?;
        }
        Rights::Purge { .. } => {}
    }
    Ok(ExitCode::SUCCESS)
}
