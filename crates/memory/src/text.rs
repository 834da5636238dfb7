//! Cutting record text down for prompts and terminal lines: one home for
//! the character-boundary logic, with the three cuts the crates use.
//!
//! All count characters (not bytes) and mark a cut with `...`.

/// The first `max` characters of `s`, or `None` when `s` is not longer.
fn cut(s: &str, max: usize) -> Option<&str> {
    s.char_indices().nth(max).map(|(i, _)| &s[..i])
}

/// `s` on one line (every run of whitespace one space), cut to `max`
/// characters: for terminal listings and prompt lines built from records.
pub fn one_line(s: &str, max: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match cut(&flat, max) {
        Some(head) => format!("{head}..."),
        None => flat,
    }
}

/// `s` trimmed and cut to `max` characters, the kept part trimmed at its
/// end before the mark (`"a b..."`, never `"a ..."`); line breaks kept.
pub fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    match cut(s, max) {
        Some(head) => format!("{}...", head.trim_end()),
        None => s.to_string(),
    }
}

/// `s` trimmed and cut to exactly `max` characters before the mark, a
/// space before it kept: the cut of semantic-memory prompts, which
/// existing summaries and benchmark reports were made with.
pub fn clip_exact(s: &str, max: usize) -> String {
    let s = s.trim();
    match cut(s, max) {
        Some(head) => format!("{head}..."),
        None => s.to_string(),
    }
}

/// Replaces every `{{name}}` placeholder of a prompt template with its
/// value, in the order given (a value is inserted as it is; a placeholder
/// with no value stays). Prompts are plain text with placeholders, not
/// templates with logic, so no template engine is involved.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_count_characters_and_mark_the_cut() {
        assert_eq!(one_line("  a\n\tb   c ", 10), "a b c");
        assert_eq!(one_line("héllo wörld", 5), "héllo...");
        assert_eq!(one_line("a  b  c", 3), "a b...");
        assert_eq!(clip("  abc de  ", 4), "abc...");
        assert_eq!(clip_exact("  abc de  ", 4), "abc ...");
        assert_eq!(clip("line\nbreak", 20), "line\nbreak");
        assert_eq!(clip_exact("ééé", 3), "ééé");
        assert_eq!(clip_exact("éééé", 3), "ééé...");
    }

    #[test]
    fn fill_replaces_every_placeholder() {
        assert_eq!(fill("a {{x}} b {{x}} {{y}}", &[("x", "1")]), "a 1 b 1 {{y}}");
        assert_eq!(fill("{{a}}{{b}}", &[("a", "x"), ("b", "y")]), "xy");
    }
}
