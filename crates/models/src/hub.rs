//! The HuggingFace Hub path for online users. Files are resolved through the
//! standard HF cache (`~/.cache/huggingface/hub`, or `HF_HOME`), so a file
//! already in that cache is used without touching the network; anything
//! taken from the hub is verified against the manifest before it is
//! installed.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::{Cache, Repo};

use crate::error::{ModelsError, Result};
use crate::manifest::ModelEntry;
use crate::progress::FetchProgress;
use crate::store::{FileStatus, ModelStore};

/// Looks a file up in an HF cache folder without any network access.
pub fn hub_file_from_cache(cache_dir: &Path, repo_id: &str, file: &str) -> Option<PathBuf> {
    Cache::new(cache_dir.to_path_buf()).repo(Repo::model(repo_id.to_string())).get(file)
}

/// Fetches manifest entries from the HuggingFace Hub.
#[derive(Debug)]
pub struct HubFetcher {
    api: Api,
}

impl HubFetcher {
    /// Uses the environment (`HF_HOME`, `HF_ENDPOINT`, token file).
    pub fn from_env() -> Result<Self> {
        let api = ApiBuilder::from_env().with_progress(false).build().map_err(|e| ModelsError::Hub(e.to_string()))?;
        Ok(HubFetcher { api })
    }

    /// Uses `cache_dir` as the HF cache and `endpoint` as the hub URL.
    pub fn new(cache_dir: &Path, endpoint: &str) -> Result<Self> {
        let api = ApiBuilder::from_cache(Cache::new(cache_dir.to_path_buf()))
            .with_endpoint(endpoint.to_string())
            .with_progress(false)
            .with_retries(0)
            .build()
            .map_err(|e| ModelsError::Hub(e.to_string()))?;
        Ok(HubFetcher { api })
    }

    /// Gets each file of `entry` (from the HF cache when present, else the
    /// hub), copies it into `store` and verifies it.
    pub fn install(&self, entry: &ModelEntry, store: &ModelStore, progress: &dyn FetchProgress) -> Result<Vec<PathBuf>> {
        let repo = entry.hf_repo.as_ref().ok_or_else(|| ModelsError::Hub(format!("model `{}` has no HuggingFace repo in the manifest", entry.name)))?;
        let dir = store.model_dir(entry);
        std::fs::create_dir_all(&dir).map_err(|e| ModelsError::io(&dir, e))?;
        let mut paths = Vec::new();
        for file in &entry.files {
            let dest = store.file_path(entry, file);
            paths.push(dest.clone());
            if store.status(entry, file) == FileStatus::Verified {
                continue;
            }
            let remote = file.hf_file.as_deref().unwrap_or(&file.name);
            progress.message(&format!("getting {repo}/{remote} from the HuggingFace cache or hub"));
            let source = self.api.model(repo.clone()).get(remote).map_err(|e| ModelsError::Hub(format!("{repo}/{remote}: {e}")))?;
            let partial = crate::store::partial_path(&dest);
            std::fs::copy(&source, &partial).map_err(|e| ModelsError::io(&partial, e))?;
            std::fs::rename(&partial, &dest).map_err(|e| ModelsError::io(&dest, e))?;
            store.verify(&dest, file, progress)?;
        }
        Ok(paths)
    }
}
