//! `asepsis up`, `asepsis ingest`, `asepsis worker`: start tracing, run the services until
//! SIGINT or SIGTERM, drain, exit 0.

use std::process::ExitCode;

use anyhow::Context;
use asepsis::Services;
use asepsis_config::{LogFormat, Settings};
use tokio_util::sync::CancellationToken;

pub async fn run(settings: Settings, services: Services) -> anyhow::Result<ExitCode> {
    init_tracing(&settings);
    let shutdown = shutdown_on_signal()?;
    asepsis::run(settings, services, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

fn init_tracing(settings: &Settings) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match settings.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Cancelled on the first SIGINT or SIGTERM.
fn shutdown_on_signal() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        cancel.cancel();
    });
    Ok(token)
}
