//! Where an import's files come from: a directory, or a ZIP read in place (entries inflated as
//! they stream, never unpacked to disk). Every path a manifest names is checked to stay
//! inside the source; a ZIP's entries are checked for traversal, absolute paths, symlinks and
//! duplicate names before anything is read, and each entry is bounded while it inflates
//! (the bytes counted, never the sizes its headers claim). Errors name the entry by its
//! index or the manifest's row, never by a file name.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use asepsis_common::manifest::relative_path;
use asepsis_config::Import;
use async_zip::base::read1::ZipOptions;
use async_zip::base::read1::seek::{ZipArchiveInner, ZipArchiveReader};
use async_zip::spec::constructs::CDR;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{AsyncReadExt, StreamExt};
use tokio::io::BufReader;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

/// Chunk size of a streamed file.
const CHUNK: usize = 64 * 1024;
/// An entry may always inflate to this much, whatever it stores (a tiny file is not a bomb).
const RATIO_FLOOR: u64 = 1 << 20;

type Archive = ZipArchiveReader<Compat<BufReader<tokio::fs::File>>>;

/// One file of the source, once found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Place {
    /// A directory's file, by its resolved path (inside the root).
    File(PathBuf),
    /// A ZIP's entry, by index.
    Entry(usize),
}

pub enum Source {
    Dir(PathBuf),
    Zip(Zip),
}

/// A ZIP read with async_zip's validating reader (`ZipOptions::untrusted`: sizes and CRC
/// checked against what is read, local headers against the central directory), its central
/// directory read once and shared by every entry's reader.
pub struct Zip {
    path: PathBuf,
    inner: Arc<ZipArchiveInner>,
    by_name: HashMap<String, usize>,
    /// Bytes one entry may inflate to per byte stored, and all of them together.
    max_ratio: u64,
    max_total_bytes: u64,
}

impl Source {
    /// Open a directory or a ZIP (by its first bytes). A ZIP whose entries are unsafe is
    /// refused whole, with every problem found.
    ///
    /// # Errors
    /// The source cannot be read; the ZIP's problems, one line each.
    pub async fn open(path: &Path, limits: &Import) -> Result<Source, Vec<String>> {
        let fail = |what: String| vec![what];
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| fail(format!("source: cannot read it ({})", e.kind())))?;
        if meta.is_dir() {
            let root = tokio::fs::canonicalize(path)
                .await
                .map_err(|e| fail(format!("source: cannot resolve it ({})", e.kind())))?;
            return Ok(Source::Dir(root));
        }
        Zip::open(path, limits).await.map(Source::Zip)
    }

    pub fn is_zip(&self) -> bool {
        matches!(self, Source::Zip(_))
    }

    /// Find a manifest's file in the source.
    ///
    /// # Errors
    /// What is wrong, for the manifest's `file` column.
    pub async fn find(&self, file: &str) -> Result<Place, String> {
        relative_path(file).map_err(str::to_owned)?;
        match self {
            Source::Dir(root) => {
                let resolved =
                    tokio::fs::canonicalize(root.join(file))
                        .await
                        .map_err(|e| match e.kind() {
                            io::ErrorKind::NotFound => "no such file in the source".to_owned(),
                            kind => format!("cannot resolve the file ({kind})"),
                        })?;
                if !resolved.starts_with(root) {
                    return Err("a symlink leads out of the source directory".into());
                }
                let meta = tokio::fs::metadata(&resolved)
                    .await
                    .map_err(|e| format!("cannot read the file ({})", e.kind()))?;
                if !meta.is_file() {
                    return Err("not a regular file".into());
                }
                Ok(Place::File(resolved))
            }
            Source::Zip(zip) => zip
                .by_name
                .get(file)
                .map(|&i| Place::Entry(i))
                .ok_or_else(|| "no such entry in the ZIP".to_owned()),
        }
    }

    /// The file's bytes as a stream; a ZIP entry fails with `InvalidData` once it inflates
    /// past its bounds or past the size its header claimed.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub async fn stream(&self, place: &Place) -> io::Result<BoxStream<'static, io::Result<Bytes>>> {
        match (self, place) {
            (Source::Dir(_), Place::File(path)) => {
                let file = tokio::fs::File::open(path).await?;
                Ok(tokio_util::io::ReaderStream::with_capacity(file, CHUNK).boxed())
            }
            (Source::Zip(zip), &Place::Entry(index)) => zip.stream(index).await,
            _ => Err(io::Error::other("a place of another source")),
        }
    }
}

impl Zip {
    async fn open(path: &Path, limits: &Import) -> Result<Zip, Vec<String>> {
        let fail = |what: String| vec![what];
        let mut options = ZipOptions::untrusted();
        options.max_cd_num_files = limits.zip_max_entries;
        options.max_cd_num_files_load = limits.zip_max_entries;
        // A central directory record is 46 bytes, a name of at most 1 KiB (`relative_path`),
        // and extra fields and a comment.
        options.max_cd_size_in_bytes = limits.zip_max_entries.saturating_mul(8 * 1024);
        options.max_uncompressed_size_per_file = limits.zip_max_total_bytes;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| fail(format!("source: cannot read it ({})", e.kind())))?;
        let archive = Archive::open_with_options(BufReader::new(file).compat(), options)
            .await
            .map_err(|e| fail(format!("source: not a directory or a readable ZIP ({e})")))?;
        let mut problems = Vec::new();
        let mut by_name = HashMap::new();
        for (index, cdr) in archive.cdrs().iter().enumerate() {
            match entry_name(cdr) {
                Ok(None) => {}
                Ok(Some(name)) => {
                    if let Some(first) = by_name.insert(name, index) {
                        problems.push(format!("zip entry {index}: the same name as entry {first}"));
                    }
                }
                Err(what) => problems.push(format!("zip entry {index}: {what}")),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Zip {
            path: path.to_owned(),
            inner: Arc::clone(archive.inner()),
            by_name,
            max_ratio: limits.zip_max_ratio,
            max_total_bytes: limits.zip_max_total_bytes,
        })
    }

    /// Inflate entry `index` chunk by chunk, bounded: past `import.zip_max_ratio` times its
    /// stored size, or past the size its header claims, it fails.
    async fn stream(&self, index: usize) -> io::Result<BoxStream<'static, io::Result<Bytes>>> {
        let cdr = self
            .inner
            .cdrs()
            .get(index)
            .ok_or_else(|| io::Error::other("no such entry"))?;
        let corrupt = |e: async_zip::error::ZipError| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the ZIP entry is unreadable ({e})"),
            )
        };
        let declared = cdr.uncompressed_size().map_err(corrupt)?;
        let stored = cdr.compressed_size().map_err(corrupt)?;
        let limit = stored
            .saturating_mul(self.max_ratio)
            .max(RATIO_FLOOR)
            .min(self.max_total_bytes);
        let file = tokio::fs::File::open(&self.path).await?;
        let archive =
            Archive::new_with_inner(BufReader::new(file).compat(), Arc::clone(&self.inner));
        let entry = archive.file_oneshot(index).await.map_err(corrupt)?;
        let chunks =
            futures::stream::try_unfold((entry, 0u64), move |(mut entry, total)| async move {
                let mut chunk = vec![0; CHUNK];
                let n = entry.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                let total = total + n as u64;
                let past = |what: &str| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the ZIP entry inflates past {what}"),
                    )
                };
                if total > limit {
                    return Err(past(
                        "import.zip_max_ratio times its stored size (a ZIP bomb?)",
                    ));
                }
                if total > declared {
                    return Err(past("the size its header claims"));
                }
                chunk.truncate(n);
                Ok(Some((Bytes::from(chunk), (entry, total))))
            });
        Ok(chunks.boxed())
    }
}

/// An entry's name, checked; `None` for a directory.
fn entry_name(cdr: &CDR) -> Result<Option<String>, &'static str> {
    let name = cdr
        .insecure_file_name
        .as_str()
        .ok_or("a name that is not UTF-8")?;
    let made_on_unix = cdr.cdrh.v_made_by >> 8 == 3;
    if made_on_unix && (cdr.cdrh.exter_attr >> 16) & 0o170_000 == 0o120_000 {
        return Err("a symlink");
    }
    if let Some(dir) = name.strip_suffix('/') {
        relative_path(dir)?;
        return Ok(None);
    }
    relative_path(name)?;
    Ok(Some(name.to_owned()))
}
