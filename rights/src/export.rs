//! The export bundle: everything held about a subject, as one ZIP a person and a program can
//! read, streamed entry by entry (never whole in memory, never on disk).
//!
//! ```text
//! README.txt                      what each file is
//! consents/{id}.json              each consent record: current version and history
//! assets/{id}/original.{ext}      the file as uploaded (absent once erased or purged)
//! assets/{id}/published.{ext}     the published derivative (only while published)
//! assets/{id}/provenance.json     the signed events and their W3C PROV rendering
//! disclosures.json                the accounting of disclosures, this export included
//! manifest.json                   subject, tenant, time, receipt, every asset and every
//!                                 file above with its SHA-256 and size (written last)
//! ```
//!
//! Entries are stored, not deflated (images are compressed already), with data descriptors,
//! so each is hashed as it streams and the manifest can list them all at the end. The export
//! is recorded in the audit log before the first byte goes out: it is a disclosure to the
//! subject, and the accounting counts it.

use asepsis_common::audit::AuditAction;
use asepsis_common::consent::Consent;
use asepsis_common::envelope::BlobRole;
use asepsis_common::provenance::{self, AssetState, EventKind};
use asepsis_store::StorageError;
use asepsis_store::asset::AssetLog;
use async_zip::base::write::ZipFileWriter;
use async_zip::{Compression, ZipEntryBuilder};
use futures::io::AsyncWriteExt as _;
use futures::{AsyncWrite, StreamExt};
use ring::digest::{Context, SHA256};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Actor, Desk, RightsError};

const README: &str = "\
This bundle holds everything Asepsis keeps about one subject of one tenant.

manifest.json               the subject reference, the tenant, when this was made, its receipt,
                            every asset (state, format, SHA-256 of the original as uploaded)
                            and every file in this bundle with its SHA-256 and size
consents/{id}.json          each consent record: the current version and every earlier one
assets/{id}/original.*      the file exactly as it was uploaded (absent once erased or purged)
assets/{id}/published.*     the version published on the website, metadata removed (only
                            while it is published)
assets/{id}/provenance.json the asset's signed event log (each event hash-chained and signed
                            with Ed25519) and the same as W3C PROV-JSON
disclosures.json            every disclosure: each period an asset was on the website, and
                            each export (this one included)
";

/// A file of the bundle as the manifest lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
struct AssetEntry {
    id: Uuid,
    consent_id: Uuid,
    state: Option<AssetState>,
    format: Option<&'static str>,
    /// SHA-256 of the original as uploaded (from its `received` event).
    original_sha256: Option<String>,
    files: Vec<String>,
}

#[derive(Serialize)]
struct Manifest<'a> {
    subject_ref: &'a str,
    tenant: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    generated_at: OffsetDateTime,
    receipt: Uuid,
    assets: Vec<AssetEntry>,
    files: Vec<FileEntry>,
}

/// An export checked and recorded, ready to stream: see [`Desk::prepare_export`].
pub struct Export {
    desk: Desk,
    actor: Actor,
    subject_ref: String,
    consents: Vec<Consent>,
    assets: Vec<(Uuid, Uuid)>,
    pub receipt: Uuid,
}

impl Desk {
    /// Check the request, find the subject's consents and assets, and record the export (a
    /// disclosure to the subject) in the audit log; then [`Export::write`] streams it.
    ///
    /// # Errors
    /// A malformed reference; store failures.
    pub async fn prepare_export(
        &self,
        actor: &Actor,
        subject_ref: &str,
    ) -> Result<Export, RightsError> {
        let consents = self.consents(&actor.tenant, subject_ref).await?;
        let mut assets = Vec::new();
        let mut targets = Vec::new();
        for consent in &consents {
            targets.push(consent.id.to_string());
            for asset in self.storage.consent_assets(consent.id).await? {
                assets.push((consent.id, asset));
                targets.push(asset.to_string());
            }
        }
        let receipt = Uuid::new_v4();
        self.audit(actor, AuditAction::SubjectExport, receipt, targets)
            .await?;
        Ok(Export {
            desk: self.clone(),
            actor: actor.clone(),
            subject_ref: subject_ref.to_owned(),
            consents,
            assets,
            receipt,
        })
    }
}

/// The ZIP being written, with the manifest's list of what went in.
struct Bundle<W: AsyncWrite + Unpin> {
    zip: ZipFileWriter<W>,
    files: Vec<FileEntry>,
}

fn zip_error(e: async_zip::error::ZipError) -> RightsError {
    RightsError::Export(e.to_string())
}

impl<W: AsyncWrite + Unpin> Bundle<W> {
    async fn whole(&mut self, path: String, bytes: &[u8]) -> Result<(), RightsError> {
        let entry = ZipEntryBuilder::new(path.clone().into(), Compression::Stored);
        self.zip
            .write_entry_whole(entry, bytes)
            .await
            .map_err(zip_error)?;
        self.files.push(FileEntry {
            path,
            sha256: asepsis_common::sha256_hex(bytes),
            size_bytes: bytes.len() as u64,
        });
        Ok(())
    }

    async fn json(&mut self, path: String, value: &impl Serialize) -> Result<(), RightsError> {
        let bytes =
            serde_json::to_vec_pretty(value).map_err(|e| RightsError::Export(e.to_string()))?;
        self.whole(path, &bytes).await
    }

    /// Stream a decrypted blob into the bundle; `false` when it no longer exists (erased,
    /// purged).
    async fn blob(
        &mut self,
        desk: &Desk,
        path: String,
        asset: Uuid,
        role: BlobRole,
    ) -> Result<bool, RightsError> {
        let mut chunks = match desk.storage.get_blob(asset, role).await {
            Ok((_, chunks)) => chunks,
            Err(StorageError::Erased(_) | StorageError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let entry = ZipEntryBuilder::new(path.clone().into(), Compression::Stored);
        let mut writer = self
            .zip
            .write_entry_stream(entry)
            .await
            .map_err(zip_error)?;
        let (mut hash, mut size) = (Context::new(&SHA256), 0u64);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            hash.update(&chunk);
            size += chunk.len() as u64;
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| RightsError::Export(e.to_string()))?;
        }
        writer.close().await.map_err(zip_error)?;
        self.files.push(FileEntry {
            path,
            sha256: hex::encode(hash.finish()),
            size_bytes: size,
        });
        Ok(true)
    }
}

impl Export {
    /// Stream the bundle into `out`.
    ///
    /// # Errors
    /// Store failures, or `out` failing; the bundle is then incomplete (its central
    /// directory missing), which every ZIP reader reports.
    pub async fn write<W: AsyncWrite + Unpin>(self, out: W) -> Result<(), RightsError> {
        let desk = &self.desk;
        let mut bundle = Bundle {
            zip: ZipFileWriter::new(out),
            files: Vec::new(),
        };
        bundle.whole("README.txt".into(), README.as_bytes()).await?;
        for consent in &self.consents {
            bundle
                .json(format!("consents/{}.json", consent.id), consent)
                .await?;
        }
        let mut entries = Vec::new();
        for &(consent_id, asset) in &self.assets {
            let log = AssetLog::load(&desk.storage, asset).await?;
            let arrival = log.arrival();
            let state = log.state();
            let format = arrival.as_ref().map(|a| a.format);
            let mut files = Vec::new();
            if let Some(format) = format {
                let path = format!("assets/{asset}/original.{}", format.extension());
                if bundle
                    .blob(desk, path.clone(), asset, BlobRole::Original)
                    .await?
                {
                    files.push(path);
                }
            }
            if state == Some(AssetState::Published) {
                let published = log.events.iter().rev().find_map(|e| match &e.event.what {
                    EventKind::Redacted { format, .. } => Some(*format),
                    _ => None,
                });
                if let Some(format) = published.or(format) {
                    let path = format!("assets/{asset}/published.{}", format.extension());
                    if bundle
                        .blob(desk, path.clone(), asset, BlobRole::Derivative)
                        .await?
                    {
                        files.push(path);
                    }
                }
            }
            let path = format!("assets/{asset}/provenance.json");
            let provenance = serde_json::json!({
                "asset_id": asset,
                "events": log.events,
                "prov": provenance::to_prov(asset, &log.events),
            });
            bundle.json(path.clone(), &provenance).await?;
            files.push(path);
            let original_sha256 = log.events.iter().find_map(|e| match &e.event.what {
                EventKind::Received { sha256, .. } => Some(sha256.clone()),
                _ => None,
            });
            entries.push(AssetEntry {
                id: asset,
                consent_id,
                state,
                format: format.map(|f| f.name()),
                original_sha256,
                files,
            });
        }
        let disclosures = desk
            .disclosures(&self.actor.tenant, &self.subject_ref, 0, u64::MAX)
            .await?;
        bundle.json("disclosures.json".into(), &disclosures).await?;
        let manifest = Manifest {
            subject_ref: &self.subject_ref,
            tenant: &self.actor.tenant,
            generated_at: OffsetDateTime::now_utc(),
            receipt: self.receipt,
            assets: entries,
            files: bundle.files.clone(),
        };
        let bytes =
            serde_json::to_vec_pretty(&manifest).map_err(|e| RightsError::Export(e.to_string()))?;
        let entry = ZipEntryBuilder::new("manifest.json".to_owned().into(), Compression::Stored);
        bundle
            .zip
            .write_entry_whole(entry, &bytes)
            .await
            .map_err(zip_error)?;
        let mut out = bundle.zip.close().await.map_err(zip_error)?;
        out.close()
            .await
            .map_err(|e| RightsError::Export(e.to_string()))?;
        tracing::info!(receipt = %self.receipt, assets = self.assets.len(), "export written");
        Ok(())
    }
}
