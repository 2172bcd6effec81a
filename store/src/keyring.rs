//! The embedded KEK store: a keyring file (`DATA/keys/keyring.json`) created with mode 0600,
//! rewritten atomically on rotation, and the create-once file write the signing key shares.
//! Never logs key material.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use asepsis_common::envelope::DataKey;
use asepsis_common::keys::{KekRef, Keks, KeyError, WrappedKey, unwrap_with, wrap_with};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Serialize, Deserialize)]
struct KeyringFile {
    id: String,
    current: u32,
    /// version → hex key
    versions: BTreeMap<u32, String>,
    /// A rotation added the current version and has not re-wrapped every key yet.
    #[serde(default)]
    rotating: bool,
}

/// The embedded KEK store: a keyring file with mode 0600 beside the data.
pub struct LocalKeyring {
    path: PathBuf,
    state: RwLock<KeyringFile>,
}

impl LocalKeyring {
    /// Open the keyring at `path`, creating it (mode 0600, one fresh KEK version) if missing.
    ///
    /// # Errors
    /// [`KeyError::Keyring`] when it cannot be read, parsed or created.
    pub fn open_or_create(path: &Path) -> Result<Self, KeyError> {
        let state = if path.exists() {
            Self::read(path)?
        } else {
            let file = KeyringFile {
                id: "local".into(),
                current: 1,
                versions: BTreeMap::from([(1, hex::encode(random_key()?))]),
                rotating: false,
            };
            let json = serde_json::to_vec_pretty(&file).map_err(|e| KeyError::Keyring {
                path: path.display().to_string(),
                problem: e.to_string(),
            })?;
            // Two processes starting on a new data dir: one keyring wins, both use it.
            match create_once(path, &json) {
                Ok(true) => file,
                Ok(false) => Self::read(path)?,
                Err(e) => {
                    return Err(KeyError::Keyring {
                        path: path.display().to_string(),
                        problem: e.to_string(),
                    });
                }
            }
        };
        Ok(Self {
            path: path.to_owned(),
            state: RwLock::new(state),
        })
    }

    fn read(path: &Path) -> Result<KeyringFile, KeyError> {
        let err = |problem: String| KeyError::Keyring {
            path: path.display().to_string(),
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: KeyringFile =
            serde_json::from_str(&text).map_err(|e| err(format!("not a keyring: {e}")))?;
        if !file.versions.contains_key(&file.current) {
            return Err(err("current version missing".into()));
        }
        Ok(file)
    }

    /// Re-read the file (another process may have rotated).
    ///
    /// # Errors
    /// As [`LocalKeyring::open_or_create`].
    pub fn reload(&self) -> Result<(), KeyError> {
        let file = Self::read(&self.path)?;
        if let Ok(mut state) = self.state.write() {
            *state = file;
        }
        Ok(())
    }

    /// Start a rotation: add a new KEK version and make it current, unless an interrupted
    /// rotation is still pending, which is resumed instead. Returns the version to re-wrap to.
    ///
    /// # Errors
    /// [`KeyError::Keyring`] when the file cannot be rewritten.
    pub fn begin_rotation(&self) -> Result<KekRef, KeyError> {
        self.reload()?;
        if self.snapshot().rotating {
            return Ok(self.current());
        }
        self.add_version_marked(true)
    }

    /// Mark the rotation done: every data key is under the current version.
    ///
    /// # Errors
    /// [`KeyError::Keyring`] when the file cannot be rewritten.
    pub fn finish_rotation(&self) -> Result<(), KeyError> {
        self.reload()?;
        let mut file = self.snapshot();
        file.rotating = false;
        write_atomically(&self.path, &file)?;
        if let Ok(mut state) = self.state.write() {
            *state = file;
        }
        Ok(())
    }

    /// Add a new KEK version and make it current; returns it.
    ///
    /// # Errors
    /// [`KeyError::Keyring`] when the file cannot be rewritten.
    pub fn add_version(&self) -> Result<KekRef, KeyError> {
        self.add_version_marked(false)
    }

    fn add_version_marked(&self, rotating: bool) -> Result<KekRef, KeyError> {
        self.reload()?;
        let mut file = self.snapshot();
        let version = file.versions.keys().max().copied().unwrap_or(0) + 1;
        file.versions.insert(version, hex::encode(random_key()?));
        file.current = version;
        file.rotating = rotating;
        write_atomically(&self.path, &file)?;
        let kek = KekRef {
            id: file.id.clone(),
            version,
        };
        if let Ok(mut state) = self.state.write() {
            *state = file;
        }
        Ok(kek)
    }

    /// Drop a version that no data key uses any more. The current version cannot be retired.
    ///
    /// # Errors
    /// [`KeyError::Keyring`] when it is current or the file cannot be rewritten.
    pub fn retire(&self, version: u32) -> Result<(), KeyError> {
        self.reload()?;
        let mut file = self.snapshot();
        if file.current == version {
            return Err(KeyError::Keyring {
                path: self.path.display().to_string(),
                problem: format!("version {version} is current"),
            });
        }
        file.versions.remove(&version);
        write_atomically(&self.path, &file)?;
        if let Ok(mut state) = self.state.write() {
            *state = file;
        }
        Ok(())
    }

    pub fn versions(&self) -> Vec<u32> {
        self.snapshot().versions.keys().copied().collect()
    }

    fn snapshot(&self) -> KeyringFile {
        match self.state.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn key(&self, version: u32) -> Option<[u8; 32]> {
        let file = self.snapshot();
        let hex_key = file.versions.get(&version)?;
        hex::decode(hex_key).ok()?.try_into().ok()
    }
}

impl Keks for LocalKeyring {
    fn current(&self) -> KekRef {
        let file = self.snapshot();
        KekRef {
            id: file.id,
            version: file.current,
        }
    }

    fn wrap(&self, asset_id: Uuid, key: &DataKey) -> Result<WrappedKey, KeyError> {
        let kek = self.current();
        let secret = self.key(kek.version).ok_or_else(|| KeyError::UnknownKek {
            id: kek.id.clone(),
            version: kek.version,
        })?;
        wrap_with(&secret, &kek, asset_id, key)
    }

    fn unwrap(&self, asset_id: Uuid, wrapped: &WrappedKey) -> Result<DataKey, KeyError> {
        let unknown = || KeyError::UnknownKek {
            id: wrapped.kek_id.clone(),
            version: wrapped.kek_version,
        };
        if wrapped.kek_id != self.current().id {
            return Err(unknown());
        }
        let secret = match self.key(wrapped.kek_version) {
            Some(k) => k,
            None => {
                self.reload()?;
                self.key(wrapped.kek_version).ok_or_else(unknown)?
            }
        };
        unwrap_with(&secret, asset_id, wrapped)
    }
}

fn random_key() -> Result<[u8; 32], KeyError> {
    let mut key = [0u8; 32];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| KeyError::Random)?;
    Ok(key)
}

/// Write `file` to `path` via a 0600 temp file and a rename, so a crash never leaves half a
/// keyring and the key is never readable by others.
/// Create `path` (mode 0600) holding `bytes`, complete or not at all, unless it exists:
/// `Ok(false)` then, and the file is left as it is. Safe when processes race to create it.
///
/// # Errors
/// I/O failures.
pub fn create_once(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", uuid::Uuid::new_v4().simple()));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    let linked = std::fs::hard_link(&tmp, path);
    std::fs::remove_file(&tmp)?;
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

fn write_atomically(path: &Path, file: &KeyringFile) -> Result<(), KeyError> {
    let err = |e: std::io::Error| KeyError::Keyring {
        path: path.display().to_string(),
        problem: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", uuid::Uuid::new_v4().simple()));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    let json = serde_json::to_vec_pretty(file).map_err(|e| err(std::io::Error::other(e)))?;
    out.write_all(&json).map_err(err)?;
    out.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use asepsis_common::envelope::{BlobRole, Header, SegmentCipher};
    use std::os::unix::fs::PermissionsExt;

    /// Two data keys are the same when what one seals the other opens.
    fn same_key(a: &DataKey, b: &DataKey) -> bool {
        let asset = Uuid::nil();
        let header = Header::new(1024, "local", 1).unwrap();
        let sealed = SegmentCipher::new(a, header.clone(), asset, BlobRole::Original)
            .encrypt(b"pixels")
            .unwrap();
        SegmentCipher::new(b, header, asset, BlobRole::Original)
            .decrypt(&sealed)
            .is_ok_and(|plain| plain == b"pixels")
    }

    #[test]
    fn processes_racing_to_create_a_keyring_all_use_the_same_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/keyring.json");
        let rings: Vec<LocalKeyring> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| LocalKeyring::open_or_create(&path).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let asset = Uuid::new_v4();
        let wrapped = rings[0].wrap(asset, &DataKey::generate().unwrap()).unwrap();
        for ring in &rings {
            ring.unwrap(asset, &wrapped).unwrap();
        }
        let left: Vec<_> = std::fs::read_dir(dir.path().join("keys"))
            .unwrap()
            .collect();
        assert_eq!(left.len(), 1, "no temp files left behind");
    }

    #[test]
    fn keyring_is_private_and_wraps_per_asset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        let ring = LocalKeyring::open_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let asset = Uuid::new_v4();
        let key = DataKey::generate().unwrap();
        let wrapped = ring.wrap(asset, &key).unwrap();
        assert!(same_key(&ring.unwrap(asset, &wrapped).unwrap(), &key));
        // Bound to its asset.
        assert!(matches!(
            ring.unwrap(Uuid::new_v4(), &wrapped),
            Err(KeyError::Unwrap { .. })
        ));
        // A wrong KEK version does not open it.
        let v2 = ring.add_version().unwrap();
        let mut wrong = wrapped.clone();
        wrong.kek_version = v2.version;
        assert!(matches!(
            ring.unwrap(asset, &wrong),
            Err(KeyError::Unwrap { .. })
        ));
        let mut missing = wrapped.clone();
        missing.kek_version = 99;
        assert!(matches!(
            ring.unwrap(asset, &missing),
            Err(KeyError::UnknownKek { .. })
        ));
        // Reopening reads the same keys.
        let again = LocalKeyring::open_or_create(&path).unwrap();
        assert!(same_key(&again.unwrap(asset, &wrapped).unwrap(), &key));
        assert_eq!(again.current().version, 2);
        assert!(
            again.retire(2).is_err(),
            "current version cannot be retired"
        );
    }

    #[test]
    fn an_interrupted_rotation_resumes_instead_of_adding_versions() {
        let dir = tempfile::tempdir().unwrap();
        let ring = LocalKeyring::open_or_create(&dir.path().join("k.json")).unwrap();
        let first = ring.begin_rotation().unwrap();
        // Interrupted here; the next run resumes the same version.
        let resumed = LocalKeyring::open_or_create(&dir.path().join("k.json")).unwrap();
        assert_eq!(resumed.begin_rotation().unwrap(), first);
        resumed.finish_rotation().unwrap();
        assert_eq!(resumed.begin_rotation().unwrap().version, first.version + 1);
    }
}
