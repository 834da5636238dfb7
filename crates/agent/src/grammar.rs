//! The grammar of a tool call, for constrained decoding.
//!
//! A call is one JSON object, `{"tool": "NAME", "arguments": {...}}`, where
//! NAME is one of the tools allowed at this step and the arguments are
//! exactly that tool's parameters, in order: strings (with JSON escapes,
//! bounded length) or non-negative integers. The grammar is a byte
//! automaton: each allowed tool is a sequence of segments (fixed text,
//! string value, integer value); while several tools are still possible the
//! automaton is inside their shared opening text. Fixed text that is the
//! only way on is reported by [`ByteGrammar::forced`], so the engine feeds it
//! without sampling.

use std::sync::Arc;

use persona_engine::ByteGrammar;

use crate::choice::{ChoiceGrammar, ChoiceState, Choices};

/// The type of a tool parameter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum ParamKind {
    /// A JSON string of at most `max_len` bytes.
    String {
        /// Longest value, in bytes.
        max_len: u32,
    },
    /// A non-negative integer of at most `max_digits` digits.
    Integer {
        /// Most digits.
        max_digits: u8,
    },
    /// A JSON string that is exactly one of a fixed set of labels.
    Choice {
        /// The labels.
        #[serde(serialize_with = "serialize_choices")]
        choices: Choices,
    },
}

fn serialize_choices<S: serde::Serializer>(choices: &Choices, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(choices.labels())
}

/// One part of a tool call's text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Text that must appear as it is.
    Literal(Vec<u8>),
    /// The content of a JSON string (the quotes belong to the literals).
    Str { max_len: u32 },
    /// Digits.
    Int { max_digits: u8 },
    /// The content of a JSON string that is one of these (escaped) labels.
    Choice(Arc<Vec<Vec<u8>>>),
}

/// Where the automaton is inside a string value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrMode {
    Normal,
    Escape,
    Hex(u8),
}

/// The automaton's state (small and `Copy`: it is cloned per vocabulary
/// entry when masking logits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    /// Bit i set: alternative i is still possible.
    live: u64,
    /// Current segment (the same for every live alternative).
    seg: usize,
    /// Bytes consumed in the current segment.
    pos: u32,
    mode: StrMode,
    /// Inside a choice segment: the labels still possible.
    choice: ChoiceState,
    done: bool,
}

/// The grammar of one tool call among a set of allowed tools.
#[derive(Debug, Clone)]
pub struct ToolCallGrammar {
    alternatives: Arc<Vec<Vec<Segment>>>,
    names: Arc<Vec<String>>,
    state: State,
}

/// Escapes a string for a JSON literal.
fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

impl ToolCallGrammar {
    /// A grammar allowing a call to any of `tools` (name and parameters in
    /// order). Tool names must be distinct, non-empty and at most 64 are
    /// allowed.
    pub fn new(tools: &[(String, Vec<(String, ParamKind)>)]) -> crate::Result<Self> {
        if tools.is_empty() || tools.len() > 64 {
            return Err(crate::AgentError::Config { name: "tools", reason: format!("{} tools allowed at a step (need 1 to 64)", tools.len()) });
        }
        let mut alternatives = Vec::with_capacity(tools.len());
        let mut names = Vec::with_capacity(tools.len());
        for (name, params) in tools {
            if name.is_empty() || names.contains(name) {
                return Err(crate::AgentError::Config { name: "tools", reason: format!("tool name {name:?} is empty or repeated") });
            }
            names.push(name.clone());
            let mut segments = Vec::new();
            let mut lit = format!("{{\"tool\": {}, \"arguments\": {{", json_string(name));
            for (i, (pname, kind)) in params.iter().enumerate() {
                if i > 0 {
                    lit.push_str(", ");
                }
                lit.push_str(&json_string(pname));
                lit.push_str(": ");
                match kind {
                    ParamKind::String { max_len } => {
                        let max_len = *max_len;
                        lit.push('"');
                        segments.push(Segment::Literal(std::mem::take(&mut lit).into_bytes()));
                        segments.push(Segment::Str { max_len: max_len.max(1) });
                        lit.push('"');
                    }
                    ParamKind::Integer { max_digits } => {
                        segments.push(Segment::Literal(std::mem::take(&mut lit).into_bytes()));
                        segments.push(Segment::Int { max_digits: (*max_digits).clamp(1, 18) });
                    }
                    ParamKind::Choice { choices } => {
                        lit.push('"');
                        segments.push(Segment::Literal(std::mem::take(&mut lit).into_bytes()));
                        // Each label as it appears between the quotes.
                        let escaped = choices.labels().iter().map(|l| json_string(l)).map(|q| q.as_bytes()[1..q.len() - 1].to_vec()).collect();
                        segments.push(Segment::Choice(Arc::new(escaped)));
                        lit.push('"');
                    }
                }
            }
            lit.push_str("}}");
            segments.push(Segment::Literal(lit.into_bytes()));
            alternatives.push(segments);
        }
        let live = if tools.len() == 64 { u64::MAX } else { (1u64 << tools.len()) - 1 };
        Ok(ToolCallGrammar {
            alternatives: Arc::new(alternatives),
            names: Arc::new(names),
            state: State { live, seg: 0, pos: 0, mode: StrMode::Normal, choice: ChoiceState::start(0), done: false },
        })
    }

    /// The tools this grammar allows.
    pub fn tool_names(&self) -> &[String] {
        &self.names
    }

    /// Checks a whole text against the grammar (true when it is a complete
    /// call).
    pub fn accepts(&self, text: &str) -> bool {
        let mut g = self.clone();
        text.bytes().all(|b| g.step(b)) && g.is_complete()
    }

    fn live_alternatives(&self) -> impl Iterator<Item = usize> + '_ {
        let live = self.state.live;
        (0..self.alternatives.len()).filter(move |i| live & (1 << i) != 0)
    }

    /// The single live alternative, once the tool is decided.
    fn single(&self) -> Option<usize> {
        (self.state.live.count_ones() == 1).then(|| self.state.live.trailing_zeros() as usize)
    }

    /// Moves to the next segment of alternative `alt`.
    fn next_segment(&mut self, alt: usize) {
        self.state.seg += 1;
        self.state.pos = 0;
        self.state.mode = StrMode::Normal;
        match self.alternatives[alt].get(self.state.seg) {
            None => self.state.done = true,
            Some(Segment::Choice(options)) => self.state.choice = ChoiceState::start(options.len()),
            Some(_) => {}
        }
    }
}

impl ByteGrammar for ToolCallGrammar {
    fn step(&mut self, byte: u8) -> bool {
        if self.state.done {
            return false;
        }
        let seg = self.state.seg;
        let pos = self.state.pos as usize;
        // Inside the opening literal several alternatives may be live.
        if let Some(alt) = self.single() {
            let alternatives = Arc::clone(&self.alternatives);
            match &alternatives[alt][seg] {
                Segment::Literal(lit) => {
                    if lit.get(pos) != Some(&byte) {
                        return false;
                    }
                    self.state.pos += 1;
                    if self.state.pos as usize == lit.len() {
                        self.next_segment(alt);
                    }
                    true
                }
                Segment::Str { max_len } => match self.state.mode {
                    StrMode::Normal => match byte {
                        b'"' => {
                            // The closing quote is the first byte of the next literal.
                            self.next_segment(alt);
                            self.step(byte)
                        }
                        b'\\' => {
                            if self.state.pos + 2 > *max_len {
                                return false;
                            }
                            self.state.pos += 1;
                            self.state.mode = StrMode::Escape;
                            true
                        }
                        0..=0x1f => false,
                        _ => {
                            if self.state.pos >= *max_len {
                                return false;
                            }
                            self.state.pos += 1;
                            true
                        }
                    },
                    StrMode::Escape => {
                        self.state.pos += 1;
                        match byte {
                            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                                self.state.mode = StrMode::Normal;
                                true
                            }
                            b'u' => {
                                self.state.mode = StrMode::Hex(4);
                                true
                            }
                            _ => false,
                        }
                    }
                    StrMode::Hex(left) => {
                        if !byte.is_ascii_hexdigit() {
                            return false;
                        }
                        self.state.pos += 1;
                        self.state.mode = if left == 1 { StrMode::Normal } else { StrMode::Hex(left - 1) };
                        true
                    }
                },
                Segment::Choice(options) => {
                    if self.state.choice.advance(options, byte) {
                        return true;
                    }
                    // A whole label closes with the quote that starts the next literal.
                    if byte == b'"' && self.state.choice.at_end(options) {
                        self.next_segment(alt);
                        return self.step(byte);
                    }
                    false
                }
                Segment::Int { max_digits } => {
                    if byte.is_ascii_digit() {
                        // No leading zeros: "0" is a whole number.
                        let leading_zero = self.state.pos == 1 && self.state.mode == StrMode::Hex(0);
                        if self.state.pos >= u32::from(*max_digits) || leading_zero {
                            return false;
                        }
                        self.state.mode = if self.state.pos == 0 && byte == b'0' { StrMode::Hex(0) } else { StrMode::Normal };
                        self.state.pos += 1;
                        true
                    } else if self.state.pos > 0 {
                        self.next_segment(alt);
                        self.step(byte)
                    } else {
                        false
                    }
                }
            }
        } else {
            // Several tools possible: all are in their first literal.
            let mut live = 0u64;
            for alt in self.live_alternatives() {
                if let Segment::Literal(lit) = &self.alternatives[alt][seg] {
                    if lit.get(pos) == Some(&byte) {
                        live |= 1 << alt;
                    }
                }
            }
            if live == 0 {
                return false;
            }
            self.state.live = live;
            self.state.pos += 1;
            if let Some(alt) = self.single() {
                if let Segment::Literal(lit) = &self.alternatives[alt][seg] {
                    if self.state.pos as usize == lit.len() {
                        self.next_segment(alt);
                    }
                }
            }
            true
        }
    }

    fn is_complete(&self) -> bool {
        self.state.done
    }

    fn forced(&self) -> Vec<u8> {
        if self.state.done {
            return Vec::new();
        }
        let seg = self.state.seg;
        let pos = self.state.pos as usize;
        let rest = |alt: usize| match &self.alternatives[alt][seg] {
            Segment::Literal(lit) => Some(&lit[pos..]),
            _ => None,
        };
        match self.single() {
            Some(alt) => match &self.alternatives[alt][seg] {
                Segment::Literal(lit) => lit[pos..].to_vec(),
                // A full string must close.
                Segment::Str { max_len } if self.state.mode == StrMode::Normal && self.state.pos >= *max_len => match self.alternatives[alt].get(seg + 1) {
                    Some(Segment::Literal(lit)) => lit.clone(),
                    _ => Vec::new(),
                },
                Segment::Choice(options) => {
                    let choice = self.state.choice;
                    match (choice.at_end(options), choice.can_continue(options)) {
                        // Only the closing text can follow.
                        (true, false) => match self.alternatives[alt].get(seg + 1) {
                            Some(Segment::Literal(lit)) => lit.clone(),
                            _ => Vec::new(),
                        },
                        (false, _) => choice.common_rest(options),
                        (true, true) => Vec::new(),
                    }
                }
                _ => Vec::new(),
            },
            None => {
                // The common prefix of the live alternatives' remaining text.
                let mut alts = self.live_alternatives();
                let Some(first) = alts.next().and_then(rest) else { return Vec::new() };
                let mut common = first.len();
                for alt in alts {
                    let Some(other) = rest(alt) else { return Vec::new() };
                    common = common.min(first.iter().zip(other).take_while(|(a, b)| a == b).count());
                }
                first[..common].to_vec()
            }
        }
    }
}

/// What one constrained continuation of the agent's transcript may be: a
/// tool call ([`ToolCallGrammar`]) or, in the answer turn, a bare label
/// ([`ChoiceGrammar`]).
#[derive(Debug, Clone)]
pub enum StepGrammar {
    /// One call of the allowed tools.
    Call(ToolCallGrammar),
    /// One label, as plain text.
    Label(ChoiceGrammar),
}

impl StepGrammar {
    /// What the grammar allows: the tool names of a call, the labels of an answer.
    pub fn allowed(&self) -> Vec<String> {
        match self {
            StepGrammar::Call(g) => g.tool_names().to_vec(),
            StepGrammar::Label(g) => g.labels(),
        }
    }

    /// Checks a whole text against the grammar.
    pub fn accepts(&self, text: &str) -> bool {
        match self {
            StepGrammar::Call(g) => g.accepts(text),
            StepGrammar::Label(g) => g.accepts(text),
        }
    }
}

impl From<ToolCallGrammar> for StepGrammar {
    fn from(g: ToolCallGrammar) -> Self {
        StepGrammar::Call(g)
    }
}

impl From<ChoiceGrammar> for StepGrammar {
    fn from(g: ChoiceGrammar) -> Self {
        StepGrammar::Label(g)
    }
}

impl ByteGrammar for StepGrammar {
    fn step(&mut self, byte: u8) -> bool {
        match self {
            StepGrammar::Call(g) => g.step(byte),
            StepGrammar::Label(g) => g.step(byte),
        }
    }

    fn is_complete(&self) -> bool {
        match self {
            StepGrammar::Call(g) => g.is_complete(),
            StepGrammar::Label(g) => g.is_complete(),
        }
    }

    fn forced(&self) -> Vec<u8> {
        match self {
            StepGrammar::Call(g) => g.forced(),
            StepGrammar::Label(g) => g.forced(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grammar() -> ToolCallGrammar {
        let s = |n: u32| ParamKind::String { max_len: n };
        ToolCallGrammar::new(&[
            ("memory_search".into(), vec![("query".into(), s(20))]),
            ("encyclopedia_search".into(), vec![("query".into(), s(20))]),
            ("final_answer".into(), vec![("answer".into(), s(20))]),
            ("count".into(), vec![("label".into(), s(5)), ("n".into(), ParamKind::Integer { max_digits: 3 })]),
        ])
        .unwrap()
    }

    #[test]
    fn accepts_exactly_the_allowed_calls() {
        let g = grammar();
        assert!(g.accepts(r#"{"tool": "memory_search", "arguments": {"query": "sci-fi movies"}}"#));
        assert!(g.accepts(r#"{"tool": "final_answer", "arguments": {"answer": "say \"hi\"\n\u00e9"}}"#));
        assert!(g.accepts(r#"{"tool": "count", "arguments": {"label": "x", "n": 120}}"#));
        assert!(g.accepts(r#"{"tool": "count", "arguments": {"label": "x", "n": 0}}"#));
        assert!(!g.accepts(r#"{"tool": "count", "arguments": {"label": "x", "n": 012}}"#), "leading zero");
        assert!(!g.accepts(r#"{"tool": "count", "arguments": {"label": "x", "n": 1234}}"#), "too many digits");
        assert!(!g.accepts(r#"{"tool": "web_search", "arguments": {"query": "x"}}"#), "unknown tool");
        assert!(!g.accepts(r#"{"tool": "memory_search", "arguments": {"q": "x"}}"#), "wrong parameter");
        assert!(!g.accepts(r#"{"tool": "memory_search", "arguments": {"query": "x"}"#), "incomplete");
        assert!(!g.accepts(r#"{"tool": "memory_search", "arguments": {"query": "a string that is far too long"}}"#));
        assert!(!g.accepts("{\"tool\": \"final_answer\", \"arguments\": {\"answer\": \"raw\nnewline\"}}"));
        assert!(!g.accepts(r#"{"tool": "final_answer", "arguments": {"answer": "bad \q escape"}}"#));
    }

    #[test]
    fn every_accepted_call_parses_as_json() {
        let g = grammar();
        for text in [r#"{"tool": "final_answer", "arguments": {"answer": "a\\b \"c\" \u0041"}}"#, r#"{"tool": "count", "arguments": {"label": "", "n": 7}}"#] {
            assert!(g.accepts(text), "{text}");
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            assert!(v["arguments"].is_object());
        }
    }

    #[test]
    fn forced_text_is_the_shared_prefix_then_the_rest_of_the_literal() {
        let mut g = grammar();
        assert_eq!(String::from_utf8(g.forced()).unwrap(), "{\"tool\": \"");
        for b in b"{\"tool\": \"" {
            assert!(g.step(*b));
        }
        assert!(g.forced().is_empty(), "the tool is the model's choice");
        assert!(g.step(b'e'));
        assert_eq!(String::from_utf8(g.forced()).unwrap(), "ncyclopedia_search\", \"arguments\": {\"query\": \"");
        // After a full string only the closing text may follow.
        let mut g = grammar();
        for b in br#"{"tool": "count", "arguments": {"label": "abcde"#.iter() {
            assert!(g.step(*b));
        }
        assert_eq!(String::from_utf8(g.forced()).unwrap(), "\", \"n\": ");
    }

    #[test]
    fn a_choice_parameter_admits_exactly_its_labels() {
        let choices = crate::choice::Choices::new(&["sci-fi", "social commentary", "say \"hi\"", "comedy", "comedy drama"]).unwrap();
        let g = ToolCallGrammar::new(&[
            ("memory_search".into(), vec![("query".into(), ParamKind::String { max_len: 20 })]),
            ("final_answer".into(), vec![("answer".into(), ParamKind::Choice { choices })]),
        ])
        .unwrap();
        let call = |a: &str| format!(r#"{{"tool": "final_answer", "arguments": {{"answer": "{a}"}}}}"#);
        for a in ["sci-fi", "social commentary", r#"say \"hi\""#, "comedy", "comedy drama"] {
            assert!(g.accepts(&call(a)), "{a}");
            let v: serde_json::Value = serde_json::from_str(&call(a)).unwrap();
            assert!(v["arguments"]["answer"].is_string());
        }
        for a in ["science fiction", "sci", "social", "comedy dram", "Comedy", "sci-fi ", ""] {
            assert!(!g.accepts(&call(a)), "{a:?} must be refused");
        }
        assert!(g.accepts(r#"{"tool": "memory_search", "arguments": {"query": "anything"}}"#));
        // Jump-forward: "so" decides the label; a whole label closes the call.
        let mut s = g.clone();
        for b in br#"{"tool": "final_answer", "arguments": {"answer": "so"#.iter() {
            assert!(s.step(*b));
        }
        assert_eq!(String::from_utf8(s.forced()).unwrap(), "cial commentary");
        for b in b"cial commentary" {
            assert!(s.step(*b));
        }
        assert_eq!(String::from_utf8(s.forced()).unwrap(), "\"}}");
        // "comedy" may close or go on: nothing forced.
        let mut s = g.clone();
        for b in br#"{"tool": "final_answer", "arguments": {"answer": "comedy"#.iter() {
            assert!(s.step(*b));
        }
        assert!(s.forced().is_empty());
    }

    #[test]
    fn one_tool_and_bad_sets() {
        let g = ToolCallGrammar::new(&[("final_answer".into(), vec![("answer".into(), ParamKind::String { max_len: 10 })])]).unwrap();
        assert!(g.accepts(r#"{"tool": "final_answer", "arguments": {"answer": "B"}}"#));
        assert!(!g.accepts(r#"{"tool": "memory_search", "arguments": {"query": "B"}}"#));
        assert!(ToolCallGrammar::new(&[]).is_err());
        assert!(ToolCallGrammar::new(&[("a".into(), vec![]), ("a".into(), vec![])]).is_err());
        let no_args = ToolCallGrammar::new(&[("now".into(), vec![])]).unwrap();
        assert!(no_args.accepts(r#"{"tool": "now", "arguments": {}}"#));
    }
}
