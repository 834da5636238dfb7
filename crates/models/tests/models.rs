//! The models cache against the real installed files: the HuggingFace
//! Hub's offline-cache path for users who are online (here, with the hub
//! unreachable, everything must come from the cache and verify).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use persona_models::{hub_file_from_cache, FileStatus, HubFetcher, Manifest, ModelStore, NoProgress};
use persona_testkit::model_path;

#[test]
fn hf_hub_offline_cache_path_installs_and_verifies_the_model() {
    let manifest = Manifest::builtin().unwrap();
    let entry = manifest.get("tiny").unwrap();
    let repo = entry.hf_repo.clone().unwrap();
    let file = entry.files[0].hf_file.clone().unwrap();
    // Lay out a HuggingFace cache folder: refs/main -> snapshots/<commit>/<file>.
    let hf = tempfile::tempdir().unwrap();
    let repo_dir = hf.path().join(format!("models--{}", repo.replace('/', "--")));
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), commit).unwrap();
    let snapshot = repo_dir.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::os::unix::fs::symlink(model_path("tiny"), snapshot.join(&file)).unwrap();
    assert_eq!(hub_file_from_cache(hf.path(), &repo, &file), Some(snapshot.join(&file)));
    // The hub itself is unreachable: everything must come from the cache.
    let fetcher = HubFetcher::new(hf.path(), "http://127.0.0.1:9").unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = ModelStore::new(root.path());
    let paths = fetcher.install(entry, &store, &NoProgress).unwrap();
    // Installed means copied and checked against the manifest's sha256 and size.
    assert!(store.is_installed(entry));
    assert_eq!(store.status(entry, &entry.files[0]), FileStatus::Verified);
    assert_eq!(std::fs::metadata(&paths[0]).unwrap().len(), entry.files[0].size);
    assert_eq!(store.require(entry).unwrap(), paths[0]);
    // A file missing from the cache fails (no network), naming the hub.
    let err = fetcher.install(manifest.get("small").unwrap(), &store, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("huggingface"), "{err}");
    assert!(!store.is_installed(manifest.get("small").unwrap()));
}
