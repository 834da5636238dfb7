//! Choosing where tensors live: CPU, a CUDA GPU or a Metal GPU.

use std::str::FromStr;

use candle_core::Device;

use crate::error::{EngineError, Result};

/// A device named on the command line (`cpu`, `cuda`, `cuda:1`, `metal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The CPU (always available).
    #[default]
    Cpu,
    /// A CUDA GPU by ordinal (needs the `cuda` cargo feature).
    Cuda(usize),
    /// A Metal GPU by ordinal (needs the `metal` cargo feature).
    Metal(usize),
}

impl FromStr for DeviceChoice {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        let (kind, ordinal) = match s.split_once(':') {
            Some((k, o)) => {
                let n = o.parse::<usize>().map_err(|_| EngineError::Device { device: s.to_string(), reason: format!("`{o}` is not a device ordinal") })?;
                (k, n)
            }
            None => (s, 0),
        };
        match kind.to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(ordinal)),
            "metal" => Ok(DeviceChoice::Metal(ordinal)),
            _ => Err(EngineError::Device { device: s.to_string(), reason: "expected cpu, cuda[:N] or metal[:N]".into() }),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceChoice::Metal(n) => write!(f, "metal:{n}"),
        }
    }
}

impl DeviceChoice {
    /// Opens the device, with a clear error when this build or machine lacks it.
    pub fn open(self) -> Result<Device> {
        let opened = match self {
            DeviceChoice::Cpu => return Ok(Device::Cpu),
            DeviceChoice::Cuda(n) => Device::new_cuda(n),
            DeviceChoice::Metal(n) => Device::new_metal(n),
        };
        opened.map_err(|e| {
            let (feature, built) = match self {
                DeviceChoice::Metal(_) => ("metal", cfg!(feature = "metal")),
                _ => ("cuda", cfg!(feature = "cuda")),
            };
            let hint = if built {
                format!("this build has {feature}: is the GPU's driver installed and the GPU visible to this process?")
            } else {
                format!("build with `--features {feature}` on a machine that has one")
            };
            EngineError::Device { device: self.to_string(), reason: format!("{e} ({hint})") }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_ordinals() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("cuda:1".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cuda(1));
        assert_eq!("metal".parse::<DeviceChoice>().unwrap(), DeviceChoice::Metal(0));
        assert!("tpu".parse::<DeviceChoice>().unwrap_err().to_string().contains("tpu"));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let err = DeviceChoice::Cuda(0).open().unwrap_err().to_string();
        assert!(err.contains("cuda"), "{err}");
    }
}
