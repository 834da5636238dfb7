//! Episodic records: one past interaction of a user.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A record to be stored: what the user was asked (or did) and their real
/// response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRecord {
    /// The input: a question, an article, a movie description...
    pub query: String,
    /// The user's real response (answer, label, rating...).
    pub response: String,
    /// Free-form metadata (a JSON object).
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// When it happened, in unix seconds (UTC), if known.
    pub timestamp: Option<i64>,
}

impl NewRecord {
    /// A record with no metadata and no timestamp.
    pub fn new(query: impl Into<String>, response: impl Into<String>) -> Self {
        NewRecord { query: query.into(), response: response.into(), metadata: Default::default(), timestamp: None }
    }

    /// The identity of a record's content: the same query, response,
    /// metadata and time always hash the same, so re-importing a file adds
    /// nothing twice.
    pub fn content_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [self.query.as_bytes(), self.response.as_bytes()] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        // serde_json's Map keeps keys sorted (no `preserve_order`), so the
        // serialisation is canonical.
        let meta = serde_json::Value::Object(self.metadata.clone()).to_string();
        h.update((meta.len() as u64).to_le_bytes());
        h.update(meta.as_bytes());
        match self.timestamp {
            Some(t) => {
                h.update([1]);
                h.update(t.to_le_bytes());
            }
            None => h.update([0]),
        }
        h.finalize().into()
    }
}

/// A stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The record's id in the store (unique across users, never reused).
    pub id: i64,
    /// The input.
    pub query: String,
    /// The user's real response.
    pub response: String,
    /// Free-form metadata.
    pub metadata: serde_json::Value,
    /// When it happened (unix seconds), if known.
    pub timestamp: Option<i64>,
    /// When it was stored (unix seconds).
    pub created_at: i64,
}

/// A retrieved record with its cosine similarity to the query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Cosine similarity in [-1, 1] (higher is closer).
    pub score: f32,
    /// The record.
    #[serde(flatten)]
    pub record: Record,
}

/// Encodes a vector as little-endian f32 bytes (the stored form).
pub(crate) fn vector_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Decodes a stored vector; `None` if the byte length is not a multiple of 4.
pub(crate) fn vector_from_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_every_field() {
        let a = NewRecord::new("q", "r");
        let mut b = a.clone();
        assert_eq!(a.content_hash(), b.content_hash());
        b.timestamp = Some(0);
        assert_ne!(a.content_hash(), b.content_hash());
        let mut c = a.clone();
        c.metadata.insert("k".into(), 1.into());
        assert_ne!(a.content_hash(), c.content_hash());
        // Moving text between fields changes the hash.
        assert_ne!(NewRecord::new("ab", "c").content_hash(), NewRecord::new("a", "bc").content_hash());
    }

    #[test]
    fn vectors_round_trip() {
        let v = vec![0.5f32, -1.25, 3.0e-7];
        assert_eq!(vector_from_bytes(&vector_to_bytes(&v)).unwrap(), v);
        assert!(vector_from_bytes(&[1, 2, 3]).is_none());
    }
}
