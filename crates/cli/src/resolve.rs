//! Shared wiring: the models cache, the device, and turning a `--model`
//! argument (manifest name or path) into a file, installing it if needed.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use persona_engine::{BertEncoder, Device, DeviceChoice, GgufChatModel, LoadOptions};
use persona_memory::Memory;
use persona_models::{FetchOptions, Fetcher, ModelEntry, PypiIndex};
use persona_models::{Manifest, ModelStore};

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
    /// Where the user store and indexes live.
    pub data_dir: PathBuf,
}

/// The default data folder: the platform's data dir + `persona-agent`.
fn default_data_dir() -> PathBuf {
    dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("persona-agent")
}

impl Context {
    pub fn new(models_dir: Option<PathBuf>, data_dir: Option<PathBuf>, device: &str, repack: bool) -> Result<Self> {
        let manifest = Manifest::builtin()?;
        let store = match models_dir {
            Some(dir) => ModelStore::new(dir),
            None => ModelStore::from_env(),
        };
        let device_choice: DeviceChoice = device.parse()?;
        let data_dir = data_dir.unwrap_or_else(default_data_dir);
        Ok(Context { manifest, store, device_choice, repack, data_dir })
    }

    /// How chat models are loaded (repacked copies live in the models cache).
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions { repack: self.repack, repack_dir: Some(self.store.root().join(".repacked")), native_kernels: true, device_ops: false }
    }

    /// Loads a chat model from a path.
    pub fn load_chat_model(&self, path: &Path) -> Result<GgufChatModel> {
        GgufChatModel::load_with(path, &self.device()?, &self.load_options()).with_context(|| format!("loading chat model {}", path.display()))
    }

    /// Opens the user store and indexes in the data folder.
    pub fn memory(&self) -> Result<Memory> {
        Memory::open(&self.data_dir).with_context(|| format!("opening the data folder {}", self.data_dir.display()))
    }

    /// Loads a sentence encoder: a manifest name or a folder.
    pub fn load_encoder(&self, model: &str, no_fetch: bool) -> Result<BertEncoder> {
        let path = self.model_path(model, no_fetch)?;
        let dir = if path.is_dir() { path.clone() } else { path.parent().map(Path::to_path_buf).unwrap_or_default() };
        BertEncoder::load(&dir, model, &self.device()?).with_context(|| format!("loading encoder {}", dir.display()))
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
            self.fetcher(FetchOptions::default()).install(entry, &Bars::new()).with_context(|| format!("installing model `{}`", entry.name))?;
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
