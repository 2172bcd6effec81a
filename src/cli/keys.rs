//! `asepsis keys create | rotate-kek`: API keys (printed once, stored hashed) and the KEK
//! rotation that re-wraps data keys without touching a blob. Both go to the signed audit log.

use std::process::ExitCode;

use anyhow::Context;
use asepsis_common::apikey::{self, Role};
use asepsis_common::audit::AuditAction;
use asepsis_config::Settings;

#[derive(clap::Subcommand)]
pub enum Keys {
    /// Add a KEK version and re-wrap every data key under it, without touching a blob.
    /// Interrupted, it resumes where it stopped when run again.
    RotateKek,
    /// Create an API key for a tenant and role; prints the key (once) on stdout, nothing else.
    Create {
        /// Tenant id: 1 to 64 of a-z, 0-9, '-', '_'.
        #[arg(long)]
        tenant: String,
        /// uploader, reviewer, operator or privacy-officer.
        #[arg(long)]
        role: Role,
    },
}

pub async fn run(settings: Settings, command: Keys) -> anyhow::Result<ExitCode> {
    match command {
        Keys::RotateKek => rotate_kek(&settings).await,
        Keys::Create { tenant, role } => create(&settings, &tenant, role).await,
    }
}

async fn create(settings: &Settings, tenant: &str, role: Role) -> anyhow::Result<ExitCode> {
    let (storage, keys) = asepsis::open_storage(settings)?;
    let (token, record) =
        apikey::generate(tenant, role, asepsis_store::now_ms()).context("--tenant")?;
    storage
        .put_api_key(&record)
        .await
        .context("storing the key")?;
    let (tenant, id) = (Some(record.tenant.clone()), vec![record.id.clone()]);
    asepsis::audit_host_action(&storage, &keys.signer, tenant, AuditAction::KeysCreate, id).await?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

async fn rotate_kek(settings: &Settings) -> anyhow::Result<ExitCode> {
    let (storage, keys) = asepsis::open_storage(settings)?;
    let kek = keys.keyring.begin_rotation()?;
    let done = storage
        .rotate_kek()
        .await
        .context("re-wrapping data keys")?;
    keys.keyring.finish_rotation()?;
    let target = vec![format!("{}:{}", kek.id, kek.version)];
    asepsis::audit_host_action(&storage, &keys.signer, None, AuditAction::RotateKek, target)
        .await?;
    println!(
        "KEK {} is now version {}: {} data keys re-wrapped, {} already current",
        kek.id, kek.version, done.rewrapped, done.already_current
    );
    Ok(ExitCode::SUCCESS)
}
