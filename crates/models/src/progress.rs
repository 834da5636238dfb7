//! Progress reporting for long downloads and checks (the CLI draws bars).

/// Receives progress events; all methods have empty defaults.
pub trait FetchProgress {
    /// A new phase with a byte total (if known) and a label.
    fn begin(&self, _label: &str, _total_bytes: Option<u64>) {}
    /// `bytes` more were processed.
    fn advance(&self, _bytes: u64) {}
    /// The phase is over.
    fn end(&self) {}
    /// A one-line message for the user.
    fn message(&self, _text: &str) {}
}

/// Ignores all progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl FetchProgress for NoProgress {}
