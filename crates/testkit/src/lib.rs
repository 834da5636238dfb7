//! Helpers shared by PersonaAgent's tests, each in one place: where the
//! installed models are and where the real-data folder is.
//!
//! Both fail loudly instead of letting a test skip: a test that needs a
//! model or the data and cannot find it is a broken test run, not a pass.

use std::path::PathBuf;

use persona_models::{Manifest, ModelStore};

/// Environment variable naming the real-data folder (`../shared/data`
/// beside the checkout when unset).
pub const SHARED_DATA_ENV: &str = "PERSONA_SHARED_DATA";

/// The verified primary file of an installed manifest model (`tiny`,
/// `small`, `minilm`, `wiki`, ...); panics naming the command that installs it.
pub fn model_path(name: &str) -> PathBuf {
    ModelStore::from_env()
        .require(&manifest_entry(name))
        .unwrap_or_else(|e| panic!("model `{name}` is needed by these tests: {e}. Run `persona models fetch` (or .ci/run) first."))
}

/// The folder of an installed model (an encoder's files, the encyclopedia).
pub fn model_dir(name: &str) -> PathBuf {
    let path = model_path(name);
    path.parent().map(PathBuf::from).unwrap_or_else(|| panic!("{} has no parent folder", path.display()))
}

/// The real-data folder: `$PERSONA_SHARED_DATA`, else `../shared/data`
/// beside the checkout; panics when it has no `news/` folder.
pub fn shared_data() -> PathBuf {
    let dir = std::env::var_os(SHARED_DATA_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(dir.join("news").is_dir(), "the real data folder {} is missing: set {SHARED_DATA_ENV}", dir.display());
    dir
}

/// The manifest entry of a model (its files' sizes and hashes).
pub fn manifest_entry(name: &str) -> persona_models::ModelEntry {
    let manifest = Manifest::builtin().unwrap_or_else(|e| panic!("the built-in models manifest is broken: {e}"));
    manifest.get(name).unwrap_or_else(|e| panic!("{e}")).clone()
}
