//! Each method's answer to each question, side by side: what a short run
//! shows on the terminal so that a reader sees which methods followed the
//! user's own answers, not only the scores. (Not part of `report.md`: the
//! answers and golds are data, and reports are meant to be shared.)

use std::collections::BTreeMap;

use crate::methods::Method;
use crate::parse::Reading;
use crate::runner::ResultRow;

/// The markdown table of every method's answer per question, in the order
/// the questions were asked, marked `✓` where it is the user's own answer;
/// `None` when the run asked more than `max_questions` questions or has no
/// rows.
pub fn answers_markdown(rows: &[ResultRow], max_questions: usize) -> Option<String> {
    let mut questions: Vec<(&str, usize, &str)> = Vec::new();
    let mut cells: BTreeMap<(Method, &str), String> = BTreeMap::new();
    for row in rows {
        if !questions.iter().any(|(id, _, _)| *id == row.id) {
            questions.push((&row.id, row.user, &row.gold));
        }
        cells.insert((row.method, &row.id), answer_cell(row));
    }
    if questions.is_empty() || questions.len() > max_questions {
        return None;
    }
    let methods: Vec<Method> = Method::ALL.iter().copied().filter(|m| cells.keys().any(|(cm, _)| cm == m)).collect();
    let mut out =
        String::from("## Answers\n\nEach method's answer to each user's question; ✓ where it is the user's own answer.\n\n| user | the user's answer |");
    for m in &methods {
        out.push_str(&format!(" {} |", m.name()));
    }
    out.push_str(&format!("\n|---|---|{}\n", "---|".repeat(methods.len())));
    for (id, user, gold) in &questions {
        out.push_str(&format!("| {user} | {} |", escape(gold)));
        for m in &methods {
            out.push_str(&format!(" {} |", cells.get(&(*m, *id)).map_or("-", String::as_str)));
        }
        out.push('\n');
    }
    Some(out)
}

fn answer_cell(row: &ResultRow) -> String {
    if row.reading == Reading::Invalid {
        return format!("(invalid: {})", escape(&persona_memory::text::clip(&row.raw, 40)));
    }
    let mark = if row.output.trim() == row.gold.trim() { " ✓" } else { "" };
    format!("{}{mark}", escape(&row.output))
}

/// A table cell's text: one line, no column bars.
fn escape(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: Method, id: &str, user: usize, output: &str, gold: &str, reading: Reading) -> ResultRow {
        ResultRow { method, id: id.into(), user, raw: output.into(), output: output.into(), reading, gold: gold.into(), ms: 1 }
    }

    #[test]
    fn one_row_per_question_marks_the_users_own_answer() {
        let rows = vec![
            row(Method::PersonaAgent, "q0", 0, "politics", "politics", Reading::Exact),
            row(Method::Prompt, "q0", 0, "travel", "politics", Reading::Exact),
            row(Method::Prompt, "q1", 1, "a | b\nc", "sports", Reading::Invalid),
            row(Method::PersonaAgent, "q1", 1, "sports", "sports", Reading::Exact),
        ];
        let md = answers_markdown(&rows, 10).unwrap();
        let lines: Vec<&str> = md.lines().collect();
        // Methods in the report's order (Prompt before PersonaAgent), whatever the rows' order.
        assert!(lines.contains(&"| user | the user's answer | prompt | persona-agent |"), "{md}");
        assert!(lines.contains(&"| 0 | politics | travel | politics ✓ |"), "{md}");
        assert!(lines.contains(&"| 1 | sports | (invalid: a \\| b c) | sports ✓ |"), "{md}");
    }

    #[test]
    fn long_runs_and_empty_runs_show_nothing() {
        let rows: Vec<ResultRow> = (0..3).map(|u| row(Method::Prompt, &format!("q{u}"), u, "4", "5", Reading::Exact)).collect();
        assert!(answers_markdown(&rows, 2).is_none());
        assert!(answers_markdown(&rows, 3).is_some());
        assert!(answers_markdown(&[], 3).is_none());
    }

    #[test]
    fn a_method_that_skipped_a_question_shows_a_dash() {
        let rows = vec![
            row(Method::Prompt, "q0", 0, "5", "5", Reading::Exact),
            row(Method::Prompt, "q1", 1, "3", "4", Reading::Exact),
            row(Method::Rag4, "q0", 0, "4", "5", Reading::Exact),
        ];
        let md = answers_markdown(&rows, 10).unwrap();
        assert!(md.contains("| 1 | 4 | 3 | - |"), "{md}");
        assert!(md.contains("| 0 | 5 | 5 ✓ | 4 |"), "{md}");
    }
}
