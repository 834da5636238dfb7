//! Answers drawn from a fixed set of labels, for constrained decoding.
//!
//! A task with a label list (`[1]`/`[2]`, 15 categories, ratings `1`-`5`)
//! has exactly one kind of valid answer: one of its labels, whole. A
//! [`Choices`] set is that list; [`ChoiceGrammar`] is the byte automaton
//! that admits exactly one label and nothing else, so a model decoding
//! under it cannot write a synonym, a title or a sentence. The same set can
//! be the value of a tool-call parameter (see
//! [`ParamKind::Choice`](crate::ParamKind::Choice)), which is how the agent's
//! `final_answer` is bound to the labels.
//!
//! Labels may share a prefix (`sci-fi` / `social commentary`) or one may be
//! a prefix of another (`comedy` / `comedy drama`): the automaton keeps
//! every label still possible; where a whole label could also go on, a
//! newline ends it.

use std::sync::Arc;

use persona_engine::ByteGrammar;

use crate::error::{AgentError, Result};

/// Most labels in one set (the automaton keeps one bit per label).
pub const MAX_CHOICES: usize = 64;

/// A non-empty set of distinct, non-empty labels (at most
/// [`MAX_CHOICES`]), in the order given. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices {
    labels: Arc<[String]>,
}

impl Choices {
    /// Checks and keeps `labels` (surrounding spaces are trimmed).
    pub fn new<S: AsRef<str>>(labels: &[S]) -> Result<Choices> {
        let bad = |reason: String| AgentError::Config { name: "choices", reason };
        if labels.is_empty() || labels.len() > MAX_CHOICES {
            return Err(bad(format!("{} labels given (need 1 to {MAX_CHOICES})", labels.len())));
        }
        let mut kept: Vec<String> = Vec::with_capacity(labels.len());
        for label in labels {
            let label = label.as_ref().trim();
            if label.is_empty() {
                return Err(bad("a label is empty".into()));
            }
            if label.contains(['\n', '\r']) {
                return Err(bad(format!("label {label:?} spans lines")));
            }
            if kept.iter().any(|k| k == label) {
                return Err(bad(format!("label {label:?} is given twice")));
            }
            kept.push(label.to_string());
        }
        Ok(Choices { labels: kept.into() })
    }

    /// Parses a comma-separated list (`a,b,c`).
    pub fn parse_list(list: &str) -> Result<Choices> {
        let labels: Vec<&str> = list.split(',').collect();
        Choices::new(&labels)
    }

    /// The labels.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The label equal to `text` (after trimming), if any.
    pub fn find(&self, text: &str) -> Option<&str> {
        let text = text.trim();
        self.labels.iter().find(|l| *l == text).map(String::as_str)
    }

    /// The labels as one line for a prompt: `a, b, c`.
    pub fn joined(&self) -> String {
        self.labels.join(", ")
    }
}

/// The live labels of a choice and how far into them the text is: the
/// part shared by [`ChoiceGrammar`] and the tool-call grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChoiceState {
    /// Bit i set: option i still matches the bytes so far.
    pub live: u64,
    /// Bytes consumed.
    pub pos: u32,
}

impl ChoiceState {
    /// Every option live, nothing consumed.
    pub fn start(options: usize) -> ChoiceState {
        let live = if options >= 64 { u64::MAX } else { (1u64 << options) - 1 };
        ChoiceState { live, pos: 0 }
    }

    fn live<'o>(&self, options: &'o [Vec<u8>]) -> impl Iterator<Item = &'o [u8]> + 'o {
        let live = self.live;
        options.iter().enumerate().filter(move |(i, _)| live & (1 << i) != 0).map(|(_, o)| o.as_slice())
    }

    /// Consumes `byte` inside an option; `false` when no live option goes on
    /// with it (the state is then unchanged).
    pub fn advance(&mut self, options: &[Vec<u8>], byte: u8) -> bool {
        let pos = self.pos as usize;
        let live = options.iter().enumerate().filter(|(i, o)| self.live & (1 << i) != 0 && o.get(pos) == Some(&byte)).fold(0u64, |m, (i, _)| m | 1 << i);
        if live == 0 {
            return false;
        }
        self.live = live;
        self.pos += 1;
        true
    }

    /// Whether a live option ends here.
    pub fn at_end(&self, options: &[Vec<u8>]) -> bool {
        let pos = self.pos as usize;
        self.live(options).any(|o| o.len() == pos)
    }

    /// Whether some live option goes on past here.
    pub fn can_continue(&self, options: &[Vec<u8>]) -> bool {
        let pos = self.pos as usize;
        self.live(options).any(|o| o.len() > pos)
    }

    /// The bytes every live option has next (empty where they differ or
    /// one of them ends here).
    pub fn common_rest(&self, options: &[Vec<u8>]) -> Vec<u8> {
        let pos = self.pos as usize;
        let mut rests = self.live(options).map(|o| &o[pos.min(o.len())..]);
        let Some(first) = rests.next() else { return Vec::new() };
        let mut common = first.len();
        for other in rests {
            common = common.min(first.iter().zip(other).take_while(|(a, b)| a == b).count());
        }
        first[..common].to_vec()
    }
}

/// The automaton that admits exactly one label of a [`Choices`] set, as
/// plain text. Where a whole label is also the start of a longer one, a
/// newline after it ends the answer; the text is otherwise complete as
/// soon as it is a label that nothing else extends.
#[derive(Debug, Clone)]
pub struct ChoiceGrammar {
    options: Arc<Vec<Vec<u8>>>,
    state: ChoiceState,
    done: bool,
    /// A space must come first (see [`ChoiceGrammar::after_space`]).
    space: bool,
}

impl ChoiceGrammar {
    /// The grammar of one label of `choices`.
    pub fn new(choices: &Choices) -> ChoiceGrammar {
        let options: Vec<Vec<u8>> = choices.labels().iter().map(|l| l.as_bytes().to_vec()).collect();
        let state = ChoiceState::start(options.len());
        ChoiceGrammar { options: Arc::new(options), state, done: false, space: false }
    }

    /// One label after one space, for an answer that follows `...:` on
    /// the same line. The space is never forced on its own, so the model
    /// can write it as part of the label's first token (` sports`, the
    /// way its tokenizer spells a word after a space) instead of a lone
    /// space token followed by an unusual spelling of the label.
    pub fn after_space(choices: &Choices) -> ChoiceGrammar {
        ChoiceGrammar { space: true, ..ChoiceGrammar::new(choices) }
    }

    /// The labels it admits.
    pub fn labels(&self) -> Vec<String> {
        self.options.iter().map(|o| String::from_utf8_lossy(o).into_owned()).collect()
    }

    /// Checks a whole text (true when it is one label, optionally followed
    /// by the ending newline where that is needed).
    pub fn accepts(&self, text: &str) -> bool {
        let mut g = self.clone();
        text.bytes().all(|b| g.step(b)) && g.is_complete()
    }
}

impl ByteGrammar for ChoiceGrammar {
    fn step(&mut self, byte: u8) -> bool {
        if self.done {
            return false;
        }
        if self.space {
            self.space = false;
            return byte == b' ';
        }
        if self.state.advance(&self.options, byte) {
            // A label that no other label extends ends the answer.
            self.done = self.state.at_end(&self.options) && !self.state.can_continue(&self.options);
            return true;
        }
        if byte == b'\n' && self.state.at_end(&self.options) {
            self.done = true;
            return true;
        }
        false
    }

    fn is_complete(&self) -> bool {
        self.done
    }

    fn forced(&self) -> Vec<u8> {
        if self.done || self.space || self.state.at_end(&self.options) {
            return Vec::new();
        }
        self.state.common_rest(&self.options)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn grammar(labels: &[&str]) -> ChoiceGrammar {
        ChoiceGrammar::new(&Choices::new(labels).unwrap())
    }

    #[test]
    fn admits_exactly_the_labels() {
        let news = ["food & drink", "sports", "style & beauty", "science & technology", "politics"];
        let g = grammar(&news);
        for label in news {
            assert!(g.accepts(label), "{label}");
        }
        for text in ["", "sport", "sports ", "Sports", "politics.", "politic", "style", "style & beauty\n", "science fiction", "sports\n"] {
            assert!(!g.accepts(text), "{text:?} must be refused");
        }
    }

    #[test]
    fn labels_sharing_a_prefix_stay_apart() {
        let tags = ["sci-fi", "social commentary", "comedy", "dark comedy"];
        let g = grammar(&tags);
        assert!(g.accepts("sci-fi") && g.accepts("social commentary") && g.accepts("dark comedy") && g.accepts("comedy"));
        assert!(!g.accepts("s") && !g.accepts("so") && !g.accepts("sci") && !g.accepts("dark"));
        assert!(!g.accepts("sci-fi commentary") && !g.accepts("social"));
        // After "s" both go on: nothing is forced; after "so" the rest is.
        let mut s = g.clone();
        assert!(s.step(b's'));
        assert!(s.forced().is_empty());
        assert!(s.step(b'o'));
        assert_eq!(String::from_utf8(s.forced()).unwrap(), "cial commentary");
        // "style & beauty" / "sports": after "s", "t" or "p".
        let g = grammar(&["style & beauty", "sports"]);
        let mut s = g.clone();
        assert!(s.step(b's') && !s.clone().step(b'c'));
        assert!(g.accepts("sports") && g.accepts("style & beauty") && !g.accepts("sty"));
    }

    #[test]
    fn a_label_inside_a_longer_one_ends_with_a_newline() {
        let g = grammar(&["comedy", "comedy drama"]);
        assert!(g.accepts("comedy\n"));
        assert!(g.accepts("comedy drama"));
        assert!(!g.accepts("comedy"), "could still go on");
        assert!(!g.accepts("comedy dram"));
        assert!(!g.accepts("comedy drama\n"), "nothing follows a label that ends the answer");
    }

    #[test]
    fn ratings_and_bracketed_choices() {
        let g = grammar(&["1", "2", "3", "4", "5"]);
        assert!((1..=5).all(|v| g.accepts(&v.to_string())));
        assert!(!g.accepts("0") && !g.accepts("6") && !g.accepts("45") && !g.accepts("4.0"));
        let g = grammar(&["[1]", "[2]"]);
        assert_eq!(String::from_utf8(g.forced()).unwrap(), "[");
        assert!(g.accepts("[1]") && g.accepts("[2]") && !g.accepts("[3]") && !g.accepts("1"));
    }

    #[test]
    fn after_a_space_the_space_is_required_but_never_forced_alone() {
        let c = Choices::new(&["sports", "style & beauty", "[1]", "[2]"]).unwrap();
        let g = ChoiceGrammar::after_space(&c);
        assert!(g.accepts(" sports") && g.accepts(" style & beauty") && g.accepts(" [2]"));
        assert!(!g.accepts("sports") && !g.accepts("  sports") && !g.accepts(" sport") && !g.accepts(" "));
        assert!(g.forced().is_empty(), "the space comes with the first token the model picks");
        let mut s = g.clone();
        assert!(s.step(b' ') && s.step(b'['));
        assert!(s.forced().is_empty() && !s.clone().step(b'3'));
    }

    #[test]
    fn bad_sets_are_refused() {
        assert!(Choices::new::<&str>(&[]).is_err());
        assert!(Choices::new(&["a", " a "]).is_err(), "repeated after trimming");
        assert!(Choices::new(&["a", ""]).is_err());
        assert!(Choices::new(&["a\nb"]).is_err());
        let many: Vec<String> = (0..65).map(|i| i.to_string()).collect();
        assert!(Choices::new(&many).is_err());
        assert!(Choices::new(&many[..64]).is_ok());
        let c = Choices::parse_list("sci-fi, comedy ,romance").unwrap();
        assert_eq!(c.labels(), ["sci-fi", "comedy", "romance"]);
        assert_eq!(c.find(" comedy "), Some("comedy"));
        assert_eq!(c.find("horror"), None);
    }
}
