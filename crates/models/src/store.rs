//! The local models cache: where verified files live, and how a file is
//! known to be verified.
//!
//! Each file sits at `<root>/<model>/<file>`. After its sha256 has been
//! checked, a marker `<file>.verified` records the hash, size and
//! modification time; a file whose marker disagrees with the manifest or
//! with the file on disk is not trusted.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::error::{ModelsError, Result};
use crate::manifest::{ModelEntry, ModelFile};
use crate::progress::FetchProgress;

/// Environment variable that overrides the models cache folder.
pub const MODELS_DIR_ENV: &str = "PERSONA_MODELS_DIR";

/// The state of one model file in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    /// Present and verified against the manifest.
    Verified,
    /// Present but not (or no longer) verified.
    Unverified,
    /// Not present.
    Missing,
}

/// The models cache folder.
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
}

impl ModelStore {
    /// A store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ModelStore { root: root.into() }
    }

    /// The default store: `$PERSONA_MODELS_DIR`, else the user's cache dir
    /// (`~/.cache/persona-agent/models` on Linux).
    pub fn from_env() -> Self {
        if let Some(dir) = std::env::var_os(MODELS_DIR_ENV).filter(|v| !v.is_empty()) {
            return ModelStore::new(PathBuf::from(dir));
        }
        let base = dirs::cache_dir().unwrap_or_else(|| PathBuf::from(".cache"));
        ModelStore::new(base.join("persona-agent").join("models"))
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of a model.
    pub fn model_dir(&self, entry: &ModelEntry) -> PathBuf {
        self.root.join(&entry.name)
    }

    /// Where a file of a model is installed.
    pub fn file_path(&self, entry: &ModelEntry, file: &ModelFile) -> PathBuf {
        self.model_dir(entry).join(&file.name)
    }

    fn marker_path(path: &Path) -> PathBuf {
        let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".verified");
        path.with_file_name(name)
    }

    /// The cheap check: file present, marker matches manifest, size and mtime.
    pub fn status(&self, entry: &ModelEntry, file: &ModelFile) -> FileStatus {
        let path = self.file_path(entry, file);
        let Ok(meta) = std::fs::metadata(&path) else { return FileStatus::Missing };
        let Ok(marker) = std::fs::read_to_string(Self::marker_path(&path)) else { return FileStatus::Unverified };
        if marker.trim() == marker_text(&file.sha256, meta.len(), mtime(&meta)) && meta.len() == file.size {
            FileStatus::Verified
        } else {
            FileStatus::Unverified
        }
    }

    /// Whether every file of the model is verified.
    pub fn is_installed(&self, entry: &ModelEntry) -> bool {
        entry.files.iter().all(|f| self.status(entry, f) == FileStatus::Verified)
    }

    /// The path of the model's primary file, or an error saying how to install it.
    pub fn require(&self, entry: &ModelEntry) -> Result<PathBuf> {
        for f in &entry.files {
            if self.status(entry, f) != FileStatus::Verified {
                return Err(ModelsError::NotInstalled { name: entry.name.clone(), path: self.file_path(entry, f) });
            }
        }
        let primary = entry.primary_file().ok_or_else(|| ModelsError::Manifest(format!("model `{}` lists no files", entry.name)))?;
        Ok(self.file_path(entry, primary))
    }

    /// Re-hashes `path` against `file`; on a match writes the marker, on a
    /// mismatch removes the file (and its marker) and returns
    /// [`ModelsError::ChecksumMismatch`].
    pub fn verify(&self, path: &Path, file: &ModelFile, progress: &dyn FetchProgress) -> Result<()> {
        let meta = std::fs::metadata(path).map_err(|e| ModelsError::io(path, e))?;
        let remove = || {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(Self::marker_path(path));
        };
        if meta.len() != file.size {
            remove();
            return Err(ModelsError::ChecksumMismatch {
                path: path.to_path_buf(),
                expected: format!("{} bytes", file.size),
                actual: format!("{} bytes", meta.len()),
            });
        }
        progress.begin(&format!("verifying {}", file.name), Some(meta.len()));
        let digest = sha256_file(path, progress)?;
        progress.end();
        if digest != file.sha256.to_ascii_lowercase() {
            remove();
            return Err(ModelsError::ChecksumMismatch { path: path.to_path_buf(), expected: file.sha256.clone(), actual: digest });
        }
        self.mark_verified(path, &file.sha256)
    }

    /// Writes the verified marker for a file whose hash was just checked.
    pub(crate) fn mark_verified(&self, path: &Path, sha256: &str) -> Result<()> {
        let meta = std::fs::metadata(path).map_err(|e| ModelsError::io(path, e))?;
        let marker = Self::marker_path(path);
        std::fs::write(&marker, marker_text(sha256, meta.len(), mtime(&meta))).map_err(|e| ModelsError::io(&marker, e))
    }
}

/// A temporary name beside `path`, unique to this process and call, so two
/// processes writing the same file never share a half-written one; the
/// writer renames it into place when done (rename is atomic).
#[cfg(feature = "fetch")]
pub(crate) fn partial_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}-{n}.partial", std::process::id()));
    path.with_file_name(name)
}

fn marker_text(sha256: &str, size: u64, mtime: u64) -> String {
    format!("sha256={} size={} mtime={}", sha256.to_ascii_lowercase(), size, mtime)
}

fn mtime(meta: &std::fs::Metadata) -> u64 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs()).unwrap_or(0)
}

/// The lowercase hex sha256 of a file, reporting bytes to `progress`.
pub fn sha256_file(path: &Path, progress: &dyn FetchProgress) -> Result<String> {
    let mut f = File::open(path).map_err(|e| ModelsError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| ModelsError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress.advance(n as u64);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Manifest, NoProgress};

    fn entry_for(content: &[u8]) -> ModelEntry {
        let sha = hex::encode(Sha256::digest(content));
        let text = format!(
            "[[models]]\nname='x'\nrole='chat'\narchitecture='llama'\ndescription='d'\n[[models.files]]\nname='f.bin'\nsize={}\nsha256='{sha}'\nparts=[{{package='p',version='1',member='m'}}]\n",
            content.len()
        );
        Manifest::parse(&text).unwrap().models.remove(0)
    }

    #[test]
    fn verify_marks_good_files_and_removes_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path());
        let entry = entry_for(b"hello");
        let file = &entry.files[0];
        let path = store.file_path(&entry, file);
        assert_eq!(store.status(&entry, file), FileStatus::Missing);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(store.status(&entry, file), FileStatus::Unverified);
        assert!(store.require(&entry).is_err());
        store.verify(&path, file, &NoProgress).unwrap();
        assert_eq!(store.status(&entry, file), FileStatus::Verified);
        assert_eq!(store.require(&entry).unwrap(), path);

        std::fs::write(&path, b"jello").unwrap();
        let err = store.verify(&path, file, &NoProgress).unwrap_err();
        assert!(matches!(err, ModelsError::ChecksumMismatch { .. }), "{err}");
        assert!(err.to_string().contains("removed"));
        assert!(!path.exists(), "a bad file must be removed");
        assert_eq!(store.status(&entry, file), FileStatus::Missing);
    }
}
