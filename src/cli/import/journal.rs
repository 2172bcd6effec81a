//! The import's state file: an append-only JSON-lines journal, one record per line, written
//! before and after each step, so that the same command run again (after Ctrl-C, SIGKILL, a
//! dropped connection or a server restart) continues where it stopped. Idempotency-Keys make
//! a replayed step harmless; what must never be lost is the import's nonce and its batch,
//! so those records are synced to disk. A torn last line (a kill mid-write) is ignored.

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// The first line: which manifest and server this journal is for, and the nonce its keys
    /// derive from.
    Import {
        manifest_sha256: String,
        url: String,
        nonce: Uuid,
    },
    Batch {
        id: Uuid,
    },
    /// An inline consent recorded, by the SHA-256 of its terms.
    Consent {
        terms_sha256: String,
        id: Uuid,
    },
    /// An upload is about to start.
    Start {
        row: usize,
    },
    /// The server accepted the row's file as this asset.
    Done {
        row: usize,
        asset: Uuid,
    },
    /// The server refused the row (a 4xx other than 401, 403, 408, 409, 429).
    Refused {
        row: usize,
        status: u16,
        error: String,
    },
}

/// What the journal says so far.
#[derive(Debug, Default)]
pub struct Progress {
    pub nonce: Option<Uuid>,
    pub batch: Option<Uuid>,
    pub consents: HashMap<String, Uuid>,
    pub done: HashMap<usize, Uuid>,
    /// Rows started and never finished (re-checked by uploading again under their key).
    pub in_flight: Vec<usize>,
}

pub struct Journal {
    path: PathBuf,
    file: std::fs::File,
}

/// The default state file of a manifest: `NAME.import-state.jsonl` beside it.
pub fn default_path(manifest: &Path) -> PathBuf {
    let mut name = manifest.file_name().unwrap_or_default().to_os_string();
    name.push(".import-state.jsonl");
    manifest.with_file_name(name)
}

impl Journal {
    /// Open (or start) the journal of the manifest whose SHA-256 is `manifest_sha256`, sent
    /// to `url`.
    ///
    /// # Errors
    /// It cannot be read or written, or it belongs to another manifest or server.
    pub fn open(
        path: &Path,
        manifest_sha256: &str,
        url: &str,
    ) -> anyhow::Result<(Journal, Progress)> {
        let mut progress = Progress::default();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => anyhow::bail!("state file {}: {e}", path.display()),
        };
        let mut started = Vec::new();
        for line in text.lines() {
            // A line that does not parse is the torn end of a killed run.
            let Ok(record) = serde_json::from_str::<Record>(line) else {
                continue;
            };
            match record {
                Record::Import {
                    manifest_sha256: sha,
                    url: was,
                    nonce,
                } => {
                    if sha != manifest_sha256 {
                        anyhow::bail!(
                            "state file {} belongs to another manifest (or this one changed): \
                             name another with --state to start a new import (put only the rows \
                             not yet imported in its manifest, or they are uploaded again)",
                            path.display()
                        );
                    }
                    if was != url {
                        anyhow::bail!(
                            "state file {} is of an import to {was}: run it with that --url, or \
                             name another state file with --state",
                            path.display()
                        );
                    }
                    progress.nonce = Some(nonce);
                }
                Record::Batch { id } => progress.batch = Some(id),
                Record::Consent { terms_sha256, id } => {
                    progress.consents.insert(terms_sha256, id);
                }
                Record::Start { row } => started.push(row),
                Record::Done { row, asset } => {
                    progress.done.insert(row, asset);
                }
                // Sent again by a rerun: the server freed its key when it refused it.
                Record::Refused { row, .. } => started.retain(|r| *r != row),
            }
        }
        started.sort_unstable();
        started.dedup();
        progress.in_flight = started
            .into_iter()
            .filter(|r| !progress.done.contains_key(r))
            .collect();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("state file {}: {e}", path.display()))?;
        let mut journal = Journal {
            path: path.to_owned(),
            file,
        };
        if !text.is_empty() && !text.ends_with('\n') {
            journal.write_raw(b"\n", false)?; // end the torn line
        }
        if progress.nonce.is_none() {
            let nonce = Uuid::new_v4();
            journal.write(
                &Record::Import {
                    manifest_sha256: manifest_sha256.to_owned(),
                    url: url.to_owned(),
                    nonce,
                },
                true,
            )?;
            progress.nonce = Some(nonce);
        }
        Ok((journal, progress))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record as one line; `sync` waits until it is on disk.
    ///
    /// # Errors
    /// The state file cannot be written.
    pub fn write(&mut self, record: &Record, sync: bool) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.write_raw(&line, sync)
    }

    fn write_raw(&mut self, bytes: &[u8], sync: bool) -> anyhow::Result<()> {
        let written = self
            .file
            .write_all(bytes)
            .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        written.map_err(|e| anyhow::anyhow!("state file {}: {e}", self.path.display()))
    }
}
