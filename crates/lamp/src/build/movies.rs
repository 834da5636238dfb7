//! The LaMP-2M-style set, rebuilt from MovieLens 10M tags (GroupLens):
//! users are taggers; a record is a movie the user tagged with one of the 15
//! LaMP-2M tags (or a clear synonym), described by its TMDB overview (via
//! the MovieLens links) or, failing that, the IMDB top-1000 overview.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::{json, Value};

use super::{assemble, BuildOptions, Built, Collected, RawRecord};
use crate::error::{LampError, Result};
use crate::task::{Task, MOVIE_TAGS};

/// Raw tags (lowercased) -> LaMP-2M tags: the tag itself and clear synonyms.
pub const TAG_MAP: [(&str, &str); 31] = [
    ("sci-fi", "sci-fi"),
    ("scifi", "sci-fi"),
    ("sci fi", "sci-fi"),
    ("science fiction", "sci-fi"),
    ("based on a book", "based on a book"),
    ("based on book", "based on a book"),
    ("based on a novel", "based on a book"),
    ("based on novel", "based on a book"),
    ("comedy", "comedy"),
    ("action", "action"),
    ("twist ending", "twist ending"),
    ("plot twist", "twist ending"),
    ("surprise ending", "twist ending"),
    ("dystopia", "dystopia"),
    ("dystopian", "dystopia"),
    ("dark comedy", "dark comedy"),
    ("black comedy", "dark comedy"),
    ("classic", "classic"),
    ("psychology", "psychology"),
    ("psychological", "psychology"),
    ("fantasy", "fantasy"),
    ("romance", "romance"),
    ("thought-provoking", "thought-provoking"),
    ("thought provoking", "thought-provoking"),
    ("social commentary", "social commentary"),
    ("violence", "violence"),
    ("violent", "violence"),
    ("true story", "true story"),
    ("based on a true story", "true story"),
    ("based on true story", "true story"),
    ("romantic", "romance"),
];

/// The task instruction, as LaMP words it.
pub fn instruction(description: &str) -> String {
    format!(
        "Which tag does this movie relate to among the following tags? Just answer with the tag name without further explanation. tags: [{}] description: {description}",
        MOVIE_TAGS.join(", ")
    )
}

fn io(path: &Path, source: std::io::Error) -> LampError {
    LampError::Io { path: path.to_path_buf(), source }
}

fn fmt(path: &Path, message: String) -> LampError {
    LampError::Format { path: path.to_path_buf(), message }
}

/// "Matrix, The (1999)" -> ("the matrix", "1999").
fn title_year(title: &str) -> Option<(String, String)> {
    let (name, rest) = title.trim().rsplit_once(" (")?;
    let year = rest.strip_suffix(')')?.to_string();
    let name = name.trim();
    let name = match name.rsplit_once(", ") {
        Some((head, article)) if ["The", "A", "An"].contains(&article) => {
            format!("{article} {head}")
        }
        _ => name.to_string(),
    };
    Some((name.to_lowercase(), year))
}

/// Movie id -> description.
fn descriptions(dir: &Path) -> Result<(HashMap<String, String>, usize, usize)> {
    let movies_path = dir.join("ml-10m/movies.dat");
    let movies_text = std::fs::read(&movies_path).map_err(|e| io(&movies_path, e))?;
    let movies_text = String::from_utf8_lossy(&movies_text);
    let links_path = dir.join("ml-25m-links.csv");
    let mut links: HashMap<String, String> = HashMap::new();
    let mut reader = csv::Reader::from_path(&links_path).map_err(|e| fmt(&links_path, e.to_string()))?;
    for row in reader.records() {
        let row = row.map_err(|e| fmt(&links_path, e.to_string()))?;
        if let (Some(m), Some(t)) = (row.get(0), row.get(2)) {
            if !t.is_empty() {
                links.insert(m.to_string(), t.to_string());
            }
        }
    }
    let tmdb_path = dir.join("tmdb_5000_movies.csv");
    let mut tmdb: HashMap<String, String> = HashMap::new();
    let mut reader = csv::Reader::from_path(&tmdb_path).map_err(|e| fmt(&tmdb_path, e.to_string()))?;
    let headers = reader.headers().map_err(|e| fmt(&tmdb_path, e.to_string()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name).ok_or_else(|| fmt(&tmdb_path, format!("no column '{name}'")));
    let (id_col, overview_col) = (col("id")?, col("overview")?);
    for row in reader.records() {
        let row = row.map_err(|e| fmt(&tmdb_path, e.to_string()))?;
        let overview = row.get(overview_col).unwrap_or_default().trim();
        if !overview.is_empty() {
            tmdb.insert(row.get(id_col).unwrap_or_default().to_string(), overview.to_string());
        }
    }
    let imdb_path = dir.join("imdb_top_1000.csv");
    let mut imdb: HashMap<(String, String), String> = HashMap::new();
    let mut reader = csv::Reader::from_path(&imdb_path).map_err(|e| fmt(&imdb_path, e.to_string()))?;
    let headers = reader.headers().map_err(|e| fmt(&imdb_path, e.to_string()))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name).ok_or_else(|| fmt(&imdb_path, format!("no column '{name}'")));
    let (title_col, year_col, overview_col) = (col("Series_Title")?, col("Released_Year")?, col("Overview")?);
    for row in reader.records() {
        let row = row.map_err(|e| fmt(&imdb_path, e.to_string()))?;
        let key = (row.get(title_col).unwrap_or_default().trim().to_lowercase(), row.get(year_col).unwrap_or_default().trim().to_string());
        imdb.insert(key, row.get(overview_col).unwrap_or_default().trim().to_string());
    }
    let (mut from_tmdb, mut from_imdb) = (0, 0);
    let mut out = HashMap::new();
    for line in movies_text.lines() {
        let mut parts = line.splitn(3, ';');
        let (Some(id), Some(title)) = (parts.next(), parts.next()) else {
            continue;
        };
        let description = links
            .get(id)
            .and_then(|t| tmdb.get(t))
            .cloned()
            .inspect(|_| from_tmdb += 1)
            .or_else(|| title_year(title).and_then(|k| imdb.get(&k)).filter(|d| !d.is_empty()).cloned().inspect(|_| from_imdb += 1));
        if let Some(d) = description {
            out.insert(id.to_string(), d);
        }
    }
    Ok((out, from_tmdb, from_imdb))
}

/// Builds the set from the `movielens/` folder.
pub fn build(dir: &Path, options: &BuildOptions) -> Result<Built> {
    let (descriptions, from_tmdb, from_imdb) = descriptions(dir)?;
    let tags_path = dir.join("ml-10m/tags.dat");
    let raw = std::fs::read(&tags_path).map_err(|e| io(&tags_path, e))?;
    let text = String::from_utf8_lossy(&raw);
    let map: BTreeMap<&str, &str> = TAG_MAP.iter().copied().collect();
    let (mut read, mut incomplete) = (0usize, 0usize);
    let mut dropped_labels: BTreeMap<String, usize> = BTreeMap::new();
    // One record per (user, movie): the earliest mapped tag.
    let mut first: BTreeMap<(String, String), (i64, String, usize)> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        read += 1;
        let fields: Vec<&str> = line.split(';').collect();
        if fields.len() < 4 {
            incomplete += 1;
            continue;
        }
        let (user, movie, time) = (fields[0], fields[1], fields[fields.len() - 1]);
        let tag = fields[2..fields.len() - 1].join(";").trim().to_lowercase();
        let Ok(time) = time.trim().parse::<i64>() else {
            incomplete += 1;
            continue;
        };
        let Some(label) = map.get(tag.as_str()) else {
            // Only the 20 most frequent dropped tags are worth listing.
            *dropped_labels.entry(tag).or_insert(0) += 1;
            continue;
        };
        if !descriptions.contains_key(movie) {
            incomplete += 1;
            continue;
        }
        let key = (user.to_string(), movie.to_string());
        let candidate = (time, label.to_string(), i);
        match first.get(&key) {
            Some(existing) if existing <= &candidate => {}
            _ => {
                first.insert(key, candidate);
            }
        }
    }
    let records: Vec<RawRecord> = first
        .into_iter()
        .filter_map(|((user, movie), (time, label, line))| {
            let description = descriptions.get(&movie)?.clone();
            let id = format!("m{movie}");
            let Value::Object(item) = json!({"id": id, "description": description, "tag": label, "time": time}) else {
                return None;
            };
            Some(RawRecord { user: format!("u{user}"), time, id: format!("{id}-l{}", line + 1), input: instruction(&description), gold: label, item })
        })
        .collect();
    let mut top: Vec<(String, usize)> = dropped_labels.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let others: usize = top.iter().skip(20).map(|(_, n)| n).sum();
    let mut dropped_labels: BTreeMap<String, usize> = top.into_iter().take(20).collect();
    dropped_labels.insert("(all other tags)".into(), others);
    Ok(assemble(
        Collected {
            name: "LaMP-2M-style, rebuilt from MovieLens 10M tags with TMDB/IMDB overviews".into(),
            task: Task::MovieTagging,
            source: format!("{} (descriptions: {from_tmdb} movies from TMDB 5000 via ml-25m links, {from_imdb} from IMDB top 1000)", tags_path.display()),
            split: "users are MovieLens taggers; one record per (user, movie): the earliest of the user's tags on it that maps onto the 15 tags; records sorted by tag time (ties by line); the latest is the query, the earlier ones the profile (so the query's movie is never in its profile)".into(),
            records_read: read,
            dropped_labels,
            dropped_incomplete: incomplete,
            label_mapping: TAG_MAP.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            records,
        },
        options,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_match_across_catalogues() {
        assert_eq!(title_year("Matrix, The (1999)"), Some(("the matrix".into(), "1999".into())));
        assert_eq!(title_year("Toy Story (1995)"), Some(("toy story".into(), "1995".into())));
        assert_eq!(title_year("No year"), None);
    }
}
