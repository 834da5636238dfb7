//! A small Okapi BM25 index (k1 = 1.2, b = 0.75) over word tokens, with a
//! compact serialised form.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

const K1: f32 = 1.2;
const B: f32 = 0.75;

/// Words too common to help a search.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "he", "her", "his", "in", "is", "it", "its", "of", "on", "or", "she",
    "that", "the", "their", "they", "this", "to", "was", "were", "which", "who", "will", "with", "what", "when", "where", "how", "does", "did", "do", "about",
    "into", "than", "then", "there", "these", "those", "been", "being", "but", "not", "no", "can", "i", "you", "we", "my", "your", "our", "me",
];

/// Lowercased word tokens without stopwords; a plural `s` is dropped so
/// "films" finds "film".
pub(crate) fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .map(|w| if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") { w[..w.len() - 1].to_string() } else { w })
        .collect()
}

/// An inverted index with BM25 scoring.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Bm25 {
    terms: HashMap<String, u32>,
    /// Per term: (document, term frequency).
    postings: Vec<Vec<(u32, u16)>>,
    doc_len: Vec<u32>,
    avg_len: f32,
}

impl Bm25 {
    /// Indexes documents (each a list of texts with a weight: a title can
    /// count twice).
    pub(crate) fn build<'a>(docs: impl Iterator<Item = Vec<(&'a str, u16)>>) -> Bm25 {
        let mut terms: HashMap<String, u32> = HashMap::new();
        let mut postings: Vec<Vec<(u32, u16)>> = Vec::new();
        let mut doc_len = Vec::new();
        for (doc, fields) in docs.enumerate() {
            let mut counts: HashMap<u32, u16> = HashMap::new();
            let mut len = 0u32;
            for (text, weight) in fields {
                for word in tokenize(text) {
                    let next = terms.len() as u32;
                    let id = *terms.entry(word).or_insert(next);
                    if id as usize == postings.len() {
                        postings.push(Vec::new());
                    }
                    let c = counts.entry(id).or_insert(0);
                    *c = c.saturating_add(weight);
                    len += u32::from(weight);
                }
            }
            let mut counts: Vec<(u32, u16)> = counts.into_iter().collect();
            counts.sort_unstable();
            for (term, tf) in counts {
                postings[term as usize].push((doc as u32, tf));
            }
            doc_len.push(len);
        }
        let avg_len = if doc_len.is_empty() { 0.0 } else { doc_len.iter().map(|&l| l as f32).sum::<f32>() / doc_len.len() as f32 };
        Bm25 { terms, postings, doc_len, avg_len }
    }

    /// Number of documents.
    pub(crate) fn len(&self) -> usize {
        self.doc_len.len()
    }

    /// The `k` best documents for `query`, best first, with their scores
    /// (only documents sharing a word with the query).
    pub(crate) fn search(&self, query: &str, k: usize) -> Vec<(usize, f32)> {
        let n = self.doc_len.len() as f32;
        let mut scores: HashMap<u32, f32> = HashMap::new();
        let mut words = tokenize(query);
        words.sort();
        words.dedup();
        for word in words {
            let Some(&term) = self.terms.get(&word) else { continue };
            let list = &self.postings[term as usize];
            let df = list.len() as f32;
            let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
            for &(doc, tf) in list {
                let tf = f32::from(tf);
                let len = self.doc_len[doc as usize] as f32;
                let norm = tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / self.avg_len.max(1.0)));
                *scores.entry(doc).or_insert(0.0) += idf * norm;
            }
        }
        let mut ranked: Vec<(usize, f32)> = scores.into_iter().map(|(d, s)| (d as usize, s)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        ranked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_the_matching_document_first() {
        let docs = [
            vec![("Paris", 2), ("Paris is the capital of France.", 1)],
            vec![("Berlin", 2), ("Berlin is the capital of Germany.", 1)],
            vec![("Cat", 2), ("The cat is a small domesticated carnivorous mammal.", 1)],
        ];
        let index = Bm25::build(docs.iter().cloned());
        assert_eq!(index.len(), 3);
        let hits = index.search("What is the capital of Germany?", 3);
        assert_eq!(hits[0].0, 1);
        assert_eq!(hits.len(), 2, "the cat shares no word");
        assert_eq!(index.search("cats", 1)[0].0, 2, "plural finds singular");
        assert!(index.search("the of and", 3).is_empty());
        let json = serde_json::to_string(&index).unwrap();
        assert_eq!(serde_json::from_str::<Bm25>(&json).unwrap(), index);
    }
}
