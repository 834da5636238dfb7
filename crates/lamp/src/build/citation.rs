//! The LaMP-1-style set, rebuilt from the ACL Anthology Network (Radev et
//! al.): users are authors; the query is an author's latest paper that cites
//! a paper of the corpus; the question asks which of two papers it cites:
//! one real reference and one paper none of the author's papers cites. The
//! profile is the author's earlier papers (AAN has titles, no abstracts).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::{assemble, BuildOptions, Built, Collected, RawRecord};
use crate::error::{LampError, Result};
use crate::task::Task;

/// The task instruction, as LaMP words it.
pub fn instruction(title: &str, first: &str, second: &str) -> String {
    format!("For an author who has written the paper with the title \"{title}\", which reference is related? Just answer with [1] or [2] without explanation. [1]: \"{first}\" [2]: \"{second}\"")
}

/// One paper of the metadata file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paper {
    pub id: String,
    pub authors: Vec<String>,
    pub title: String,
    pub year: i64,
}

/// Reads `key = {value}` blocks separated by blank lines.
pub(crate) fn parse_metadata(text: &str) -> Vec<Paper> {
    let mut papers = Vec::new();
    for block in text.split("\n\n") {
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for line in block.lines() {
            if let Some((k, v)) = line.split_once(" = ") {
                fields.insert(k.trim(), v.trim().trim_start_matches('{').trim_end_matches('}').trim());
            }
        }
        let (Some(id), Some(title)) = (fields.get("id"), fields.get("title")) else {
            continue;
        };
        let Some(year) = fields.get("year").and_then(|y| y.parse::<i64>().ok()) else {
            continue;
        };
        let authors = fields.get("author").map(|a| a.split(';').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        if !id.is_empty() && !title.is_empty() {
            papers.push(Paper { id: id.to_string(), authors, title: title.to_string(), year });
        }
    }
    papers
}

fn seed_of(s: &str) -> u64 {
    // FNV-1a: a stable seed per author.
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Builds the set from the `aan/` folder.
pub fn build(dir: &Path, options: &BuildOptions) -> Result<Built> {
    let meta_path = dir.join("acl-metadata.txt");
    let raw = std::fs::read(&meta_path).map_err(|source| LampError::Io { path: meta_path.clone(), source })?;
    let papers = parse_metadata(&String::from_utf8_lossy(&raw).replace("\r\n", "\n"));
    let cites_path = dir.join("acl.txt");
    let raw = std::fs::read(&cites_path).map_err(|source| LampError::Io { path: cites_path.clone(), source })?;
    let by_id: HashMap<&str, &Paper> = papers.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut refs: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for line in String::from_utf8_lossy(&raw).lines() {
        let Some((citing, cited)) = line.split_once(',') else {
            continue;
        };
        let (citing, cited) = (citing.trim(), cited.trim());
        if let (Some(a), Some(b)) = (by_id.get(citing), by_id.get(cited)) {
            if a.id != b.id {
                refs.entry(a.id.as_str()).or_default().insert(b.id.as_str());
            }
        }
    }
    let mut by_year: Vec<&Paper> = papers.iter().collect();
    by_year.sort_by(|a, b| a.year.cmp(&b.year).then(a.id.cmp(&b.id)));
    let mut by_author: BTreeMap<&str, Vec<&Paper>> = BTreeMap::new();
    for p in &papers {
        for a in &p.authors {
            by_author.entry(a.as_str()).or_default().push(p);
        }
    }
    let mut records = Vec::new();
    let mut incomplete = 0usize;
    for (author, mut own) in by_author {
        own.sort_by(|a, b| a.year.cmp(&b.year).then(a.id.cmp(&b.id)));
        // The latest paper with a reference in the corpus is the query; later ones are unused.
        let Some(q) = own.iter().rposition(|p| refs.get(p.id.as_str()).is_some_and(|r| !r.is_empty())) else {
            incomplete += 1;
            continue;
        };
        own.truncate(q + 1);
        let cited_by_author: HashSet<&str> = own.iter().flat_map(|p| refs.get(p.id.as_str()).into_iter().flatten().copied()).collect();
        let own_ids: HashSet<&str> = own.iter().map(|p| p.id.as_str()).collect();
        let query = own[q];
        let mut rng = StdRng::seed_from_u64(seed_of(author));
        let references: Vec<&str> = refs[query.id.as_str()].iter().copied().collect();
        let positive = references[rng.random_range(0..references.len())];
        // A paper from no later than the query that none of the author's
        // papers cites and the author did not write (drawn by rejection).
        let eligible = by_year.partition_point(|p| p.year <= query.year);
        let negative = (0..10_000).find_map(|_| {
            let p = by_year[rng.random_range(0..eligible.max(1))];
            (p.year <= query.year && !cited_by_author.contains(p.id.as_str()) && !own_ids.contains(p.id.as_str())).then_some(p)
        });
        let Some(negative) = negative else {
            incomplete += 1;
            continue;
        };
        let positive_first = rng.random_bool(0.5);
        let (first, second) =
            if positive_first { (by_id[positive].title.as_str(), negative.title.as_str()) } else { (negative.title.as_str(), by_id[positive].title.as_str()) };
        let gold = if positive_first { "[1]" } else { "[2]" };
        for (i, p) in own.iter().enumerate() {
            let Value::Object(item) = json!({"id": p.id, "title": p.title, "abstract": "", "year": p.year}) else {
                continue;
            };
            let is_query = i == q;
            records.push(RawRecord {
                user: author.to_string(),
                // Position in the author's order keeps the query last.
                time: i as i64,
                id: format!("{:06}-{}", i, p.id),
                input: if is_query { instruction(&p.title, first, second) } else { String::new() },
                gold: gold.to_string(),
                item,
            });
        }
    }
    Ok(assemble(
        Collected {
            name: "LaMP-1-style, rebuilt from the ACL Anthology Network (Radev et al.)".into(),
            task: Task::Citation,
            source: format!("{} and {}", meta_path.display(), cites_path.display()),
            split: "users are authors; papers sorted by year (ties by id); the query is the latest paper citing a paper of the corpus, the profile the papers before it; the real reference is drawn from its references, the other choice from papers up to its year that none of the author's papers cites and the author did not write; the order of the two is random; all draws seeded by the author's name".into(),
            records_read: papers.len(),
            dropped_labels: BTreeMap::new(),
            dropped_incomplete: incomplete,
            label_mapping: BTreeMap::new(),
            records,
        },
        options,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::check_invariants;

    #[test]
    fn builds_a_two_choice_question_per_author() {
        let dir = tempfile::tempdir().unwrap();
        let mut meta = String::new();
        let papers = [
            ("P1", "Ann; Bob", "Parsing one", 2001),
            ("P2", "Ann", "Parsing two", 2002),
            ("P3", "Ann", "Parsing three", 2003),
            ("P4", "Ann", "Parsing four", 2004),
            ("X1", "Zed", "Old tagging", 1999),
            ("X2", "Zed", "Old chunking", 1998),
            ("F1", "Ann", "Future", 2010),
        ];
        for (id, authors, title, year) in papers {
            meta.push_str(&format!("id = {{{id}}}\nauthor = {{{authors}}}\ntitle = {{{title}}}\nvenue = {{ACL}}\nyear = {{{year}}}\n\n"));
        }
        std::fs::write(dir.path().join("acl-metadata.txt"), meta).unwrap();
        std::fs::write(dir.path().join("acl.txt"), "P4 , X1\nP2 , P1\n").unwrap();
        let built = build(dir.path(), &BuildOptions { min_profile: 2, ..BuildOptions::default() }).unwrap();
        check_invariants(&built, "year", "title");
        assert_eq!(built.examples.len(), 1, "only Ann has a cited paper and enough history");
        let e = &built.examples[0];
        assert!(e.question.input.contains("\"Parsing four\""));
        // The real reference is X1; the other choice is X2 (never cited by Ann).
        let (one, two) = (e.question.input.find("[1]: \"").unwrap(), e.question.input.find("[2]: \"").unwrap());
        let x1_first = e.question.input[one..two].contains("Old tagging");
        assert_eq!(e.gold, if x1_first { "[1]" } else { "[2]" });
        assert!(e.question.input.contains("Old chunking"));
        let titles: Vec<&str> = e.question.profile.iter().map(|p| p["title"].as_str().unwrap()).collect();
        assert_eq!(titles, ["Parsing one", "Parsing two", "Parsing three"], "the later paper is not used");
        let again = build(dir.path(), &BuildOptions { min_profile: 2, ..BuildOptions::default() }).unwrap();
        assert_eq!(again.examples, built.examples, "deterministic");
    }

    #[test]
    fn the_two_references_swap_places() {
        let asked = instruction("Deep nets", "On \"quoted\" graphs", "Sparse [2]: codes");
        assert_eq!(crate::task::swap_options(&asked).unwrap(), instruction("Deep nets", "Sparse [2]: codes", "On \"quoted\" graphs"));
        assert_eq!(crate::task::swap_options(&crate::task::swap_options(&asked).unwrap()).unwrap(), asked);
        assert_eq!(crate::task::swap_options("Which is related? [1]: \"A\""), None);
        assert_eq!(crate::task::swap_options("no options here"), None);
    }

    #[test]
    fn the_labels_stand_for_the_two_titles() {
        let asked = instruction("Deep nets", "On \"quoted\" graphs", "Sparse [2]: codes");
        assert_eq!(Task::Citation.options(&asked).unwrap(), ["On \"quoted\" graphs", "Sparse [2]: codes"]);
        assert_eq!(Task::Citation.options("no options here"), None);
        assert_eq!(Task::NewsCategorization.options(&asked), None);
    }
}
