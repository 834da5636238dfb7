//! How the commands show dates and record text on a terminal line.

pub use persona_memory::text::one_line;

/// `YYYY-MM-DD` (UTC) of a unix time, or `-`.
pub fn date(ts: Option<i64>) -> String {
    ts.and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "-".into())
}
