//! The command line: its grammar (clap) and the dispatch to one module per command. Flags
//! that change settings become the last layer of the configuration (`Overrides`), never a
//! patch applied after loading.

mod ctl;
mod import;
mod keys;
mod rights;
mod sanitize;
mod scan;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use asepsis_config::{LogFormat, Overrides, Settings};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "asepsis", version, about = "Secure media-ingest pipeline")]
pub struct Cli {
    /// Settings file layered over the built-in defaults (env ASEPSIS__SECTION__KEY wins).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr (overrides log.format).
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
struct Local {
    /// Data directory (spool, local store, audit log); overrides server.data_dir.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Address to serve HTTP on; overrides server.listen.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum Command {
    /// Everything in one process on the configured (by default embedded) backends.
    Up(Local),
    /// The HTTP service alone (for RabbitMQ + S3 deployments).
    Ingest(Local),
    /// The worker alone (for RabbitMQ + S3 deployments).
    Worker(Local),
    /// Strip and verify files offline: exit 0 only when every file came out clean.
    Sanitize(sanitize::Args),
    /// Face-scan files offline: per file the faces found (box, score) and the verdict
    /// (identifiable, uncertain, none, or not_scanned with the reason).
    Scan(scan::Args),
    /// A hospital's batch import: a directory or ZIP of files and a CSV manifest of their
    /// consents, checked first, then uploaded to a server; resumable (run it again).
    Import(import::Args),
    /// API keys and key-encryption keys.
    Keys {
        /// Data directory of the embedded backends; overrides server.data_dir.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        #[command(subcommand)]
        command: keys::Keys,
    },
    /// A privacy officer's requests on the host: erase, restrict, object, rectify, export,
    /// disclosures; and the retention purge.
    Rights {
        /// Data directory of the embedded backends; overrides server.data_dir.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        #[command(subcommand)]
        command: rights::Rights,
    },
    /// Operator commands.
    Ctl {
        /// Data directory of the embedded backends; overrides server.data_dir.
        #[arg(long, value_name = "DIR")]
        data: Option<PathBuf>,
        #[command(subcommand)]
        command: ctl::Ctl,
    },
}

/// Load the settings with the command line's flags as the last layer, and run the command.
///
/// # Errors
/// A bad setting (named), or the command's own failure.
pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut flags = Overrides::default();
    flags.log.format = cli.log_format;
    let (data, listen) = match &cli.command {
        Command::Up(local) | Command::Ingest(local) | Command::Worker(local) => {
            (local.data.clone(), local.listen)
        }
        Command::Keys { data, .. } | Command::Ctl { data, .. } | Command::Rights { data, .. } => {
            (data.clone(), None)
        }
        Command::Sanitize(_) | Command::Scan(_) | Command::Import(_) => (None, None),
    };
    flags.server.data_dir = data;
    flags.server.listen = listen;
    let settings = Settings::load(cli.config.as_deref(), &flags)?;
    match cli.command {
        Command::Up(_) => serve::run(settings, asepsis::Services::All).await,
        Command::Ingest(_) => serve::run(settings, asepsis::Services::Ingest).await,
        Command::Worker(_) => serve::run(settings, asepsis::Services::Worker).await,
        Command::Sanitize(args) => sanitize::run(settings, args).await,
        Command::Scan(args) => scan::run(settings, args).await,
        Command::Keys { command, .. } => keys::run(settings, command).await,
        Command::Ctl { command, .. } => ctl::run(settings, command).await,
        Command::Rights { command, .. } => rights::run(settings, command).await,
        Command::Import(args) => import::run(settings, args).await,
    }
}
