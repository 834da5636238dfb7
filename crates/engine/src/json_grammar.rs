//! A byte grammar of one JSON object (RFC 8259), for "JSON mode": with it
//! as a [`crate::GrammarConstraint`] a model can only write a well-formed
//! object, and generation ends when the object closes.
//!
//! The automaton is a pushdown one whose stack (object or array per level)
//! lives in the bits of one integer, so the state is `Copy` and cloning it
//! for every vocabulary entry costs nothing. Runs of whitespace between
//! tokens are bounded so that a model cannot pad forever.

use crate::constraint::ByteGrammar;

/// Deepest nesting of objects and arrays.
pub const MAX_DEPTH: u8 = 64;

/// Longest run of whitespace between two tokens.
const MAX_WHITESPACE: u8 = 16;

/// Where the automaton is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the top-level object (whitespace or `{`).
    Start,
    /// A value must come (after `:`, `[` or `,` in an array).
    Value,
    /// After `{`: a key or `}`.
    FirstKey,
    /// After `,` in an object: a key.
    Key,
    /// Inside a string; `key` when it is an object key.
    Str { key: bool, escape: Escape },
    /// After a key: `:`.
    Colon,
    /// After `[`: a value or `]`.
    FirstValue,
    /// After a value: `,` or the closing bracket of the current level.
    AfterValue,
    /// Inside a number.
    Number(Num),
    /// Inside `true`, `false` or `null`: the rest of the word.
    Word { word: &'static [u8], at: u8 },
    /// The top-level object closed.
    Done,
}

/// Escapes inside a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escape {
    /// Plain text.
    None,
    /// After `\`.
    Backslash,
    /// After `\u`: hex digits still to come.
    Hex(u8),
}

/// The parts of a number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Num {
    /// After `-`.
    Minus,
    /// After a leading `0`.
    Zero,
    /// In the integer digits.
    Int,
    /// After `.`.
    Dot,
    /// In the fraction digits.
    Frac,
    /// After `e`.
    Exp,
    /// After the exponent's sign.
    ExpSign,
    /// In the exponent digits.
    ExpDigits,
}

impl Num {
    /// Whether the number may end here.
    pub(crate) fn complete(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }

    /// Where a number starting with `b` is, if `b` can start one.
    pub(crate) fn start(b: u8) -> Option<Num> {
        match b {
            b'-' => Some(Num::Minus),
            b'0' => Some(Num::Zero),
            b'1'..=b'9' => Some(Num::Int),
            _ => None,
        }
    }

    /// The part after byte `b`, if `b` continues the number (an integer
    /// has no fraction and no exponent).
    pub(crate) fn next(self, b: u8, integer: bool) -> Option<Num> {
        match (self, b) {
            (Num::Minus, b'0') => Some(Num::Zero),
            (Num::Minus, b'1'..=b'9') | (Num::Int, b'0'..=b'9') => Some(Num::Int),
            (Num::Zero | Num::Int, b'.') if !integer => Some(Num::Dot),
            (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') if !integer => Some(Num::Exp),
            (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
            (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Some(Num::ExpDigits),
            _ => None,
        }
    }
}

/// What a byte inside a JSON string does.
pub(crate) enum InString {
    /// The closing quote.
    End,
    /// Still in the string, in this escape state.
    Go(Escape),
    /// Not allowed.
    Reject,
}

impl Escape {
    /// The effect of byte `b` inside a string in this escape state.
    pub(crate) fn step(self, b: u8) -> InString {
        match (self, b) {
            (Escape::None, b'"') => InString::End,
            (Escape::None, b'\\') => InString::Go(Escape::Backslash),
            (Escape::None, 0x00..=0x1f) => InString::Reject,
            (Escape::None, _) => InString::Go(Escape::None),
            (Escape::Backslash, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => InString::Go(Escape::None),
            (Escape::Backslash, b'u') => InString::Go(Escape::Hex(4)),
            (Escape::Hex(n), b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => InString::Go(if n == 1 { Escape::None } else { Escape::Hex(n - 1) }),
            _ => InString::Reject,
        }
    }
}

/// One JSON object (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonGrammar {
    at: At,
    /// Bit `i` set: level `i` is an array, else an object.
    stack: u64,
    depth: u8,
    whitespace: u8,
    /// Any JSON value at the top level, not only an object.
    any_value: bool,
}

impl Default for JsonGrammar {
    fn default() -> Self {
        Self::object()
    }
}

impl JsonGrammar {
    /// A grammar of one JSON object.
    pub fn object() -> Self {
        JsonGrammar { at: At::Start, stack: 0, depth: 0, whitespace: 0, any_value: false }
    }

    /// A grammar of one JSON value of any kind. A top-level number is
    /// complete once it could end ([`JsonGrammar::is_complete`]) but may
    /// still go on ([`JsonGrammar::may_continue`]); the byte after it ends it.
    pub fn value() -> Self {
        JsonGrammar { any_value: true, ..Self::object() }
    }

    /// Whether more bytes may extend a complete value (a number's digits).
    pub fn may_continue(&self) -> bool {
        matches!(self.at, At::Number(_))
    }

    /// Where the automaton goes after a value: the next separator, or the
    /// end at the top level.
    fn after_scalar(&self) -> At {
        if self.depth == 0 {
            At::Done
        } else {
            At::AfterValue
        }
    }

    fn in_array(&self) -> bool {
        self.depth > 0 && self.stack & (1 << (self.depth - 1)) != 0
    }

    fn open(&mut self, array: bool) -> bool {
        if self.depth >= MAX_DEPTH {
            return false;
        }
        if array {
            self.stack |= 1 << self.depth;
        } else {
            self.stack &= !(1 << self.depth);
        }
        self.depth += 1;
        self.at = if array { At::FirstValue } else { At::FirstKey };
        true
    }

    fn close(&mut self, array: bool) -> bool {
        if self.depth == 0 || self.in_array() != array {
            return false;
        }
        self.depth -= 1;
        self.at = if self.depth == 0 { At::Done } else { At::AfterValue };
        true
    }

    /// The start of a value.
    fn value_start(&mut self, b: u8) -> bool {
        match b {
            b'{' => self.open(false),
            b'[' => self.open(true),
            b'"' => {
                self.at = At::Str { key: false, escape: Escape::None };
                true
            }
            b'-' | b'0'..=b'9' => {
                self.at = At::Number(Num::start(b).unwrap_or(Num::Int));
                true
            }
            b't' | b'f' | b'n' => {
                let word: &'static [u8] = match b {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                self.at = At::Word { word, at: 1 };
                true
            }
            _ => false,
        }
    }

    /// After a value: `,` or a closing bracket.
    fn after_value(&mut self, b: u8) -> bool {
        match b {
            b',' => {
                self.at = if self.in_array() { At::Value } else { At::Key };
                true
            }
            b'}' => self.close(false),
            b']' => self.close(true),
            _ => false,
        }
    }

    fn number(&mut self, n: Num, b: u8) -> bool {
        let Some(next) = n.next(b, false) else {
            // The number ends at the first byte that cannot continue it
            // (at the top level nothing may follow it).
            if !n.complete() || self.depth == 0 {
                return false;
            }
            self.at = At::AfterValue;
            return self.step(b);
        };
        self.at = At::Number(next);
        true
    }
}

impl ByteGrammar for JsonGrammar {
    fn step(&mut self, b: u8) -> bool {
        let whitespace = matches!(b, b' ' | b'\n' | b'\t' | b'\r');
        let between = !matches!(self.at, At::Str { .. } | At::Word { .. } | At::Number(_) | At::Done);
        if whitespace && between {
            self.whitespace += 1;
            return self.whitespace <= MAX_WHITESPACE;
        }
        if !matches!(self.at, At::Str { .. }) {
            self.whitespace = 0;
        }
        match self.at {
            At::Start if self.any_value => self.value_start(b),
            At::Start => b == b'{' && self.open(false),
            At::Value => self.value_start(b),
            At::FirstValue => b == b']' && self.close(true) || b != b']' && self.value_start(b),
            At::FirstKey | At::Key => {
                if b == b'"' {
                    self.at = At::Str { key: true, escape: Escape::None };
                    true
                } else {
                    self.at == At::FirstKey && b == b'}' && self.close(false)
                }
            }
            At::Colon => {
                if b == b':' {
                    self.at = At::Value;
                }
                b == b':'
            }
            At::AfterValue => self.after_value(b),
            At::Number(n) => self.number(n, b),
            At::Word { word, at } => {
                if word.get(at as usize) != Some(&b) {
                    return false;
                }
                self.at = if at as usize + 1 == word.len() { self.after_scalar() } else { At::Word { word, at: at + 1 } };
                true
            }
            At::Str { key, escape } => match escape.step(b) {
                InString::End => {
                    self.at = if key { At::Colon } else { self.after_scalar() };
                    true
                }
                InString::Go(escape) => {
                    self.at = At::Str { key, escape };
                    true
                }
                InString::Reject => false,
            },
            At::Done => false,
        }
    }

    fn is_complete(&self) -> bool {
        self.at == At::Done || self.depth == 0 && matches!(self.at, At::Number(n) if n.complete())
    }

    fn forced(&self) -> Vec<u8> {
        match self.at {
            At::Start if !self.any_value => b"{".to_vec(),
            At::Colon => b":".to_vec(),
            At::Word { word, at } => word[at as usize..].to_vec(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(text: &str) -> bool {
        let mut g = JsonGrammar::object();
        text.bytes().all(|b| g.step(b)) && g.is_complete()
    }

    #[test]
    fn well_formed_objects_are_accepted_and_nothing_else() {
        for ok in [
            "{}",
            r#"{"a": 1}"#,
            "{\n  \"name\": \"Ada\",\n  \"age\": 36,\n  \"tags\": [\"x\", {\"y\": null}, [], -0.5e+3, true, false]\n}",
            r#"{"s": "quote \" backslash \\ unicode \u00e9 é"}"#,
            r#"{"n": 0, "m": 10.25, "e": 1E9}"#,
        ] {
            assert!(accepts(ok), "{ok}");
            let parsed: serde_json::Value = serde_json::from_str(ok).unwrap();
            assert!(parsed.is_object());
        }
        for bad in [
            "[]",
            "\"text\"",
            r#"{"a" 1}"#,
            r#"{"a": 01}"#,
            r#"{"a": 1,}"#,
            r#"{"a": tru}"#,
            r#"{a: 1}"#,
            r#"{"a": [1, 2}"#,
            r#"{"a": "bad \x escape"}"#,
            "{\"a\": \"line\nbreak\"}",
            r#"{"a": 1} {}"#,
            r#"{"a": -}"#,
            r#"{"a": 1.}"#,
        ] {
            assert!(!accepts(bad), "{bad}");
        }
        assert!(!accepts(r#"{"a": 1"#), "an open object is not complete");
    }

    #[test]
    fn padding_and_nesting_are_bounded() {
        let mut g = JsonGrammar::object();
        assert!(g.step(b'{'));
        assert!((0..MAX_WHITESPACE).all(|_| g.step(b' ')));
        assert!(!g.step(b' '), "whitespace runs are bounded");
        let deep = format!("{{\"a\": {}", "[".repeat(MAX_DEPTH as usize));
        let mut g = JsonGrammar::object();
        assert!(!deep.bytes().all(|b| g.step(b)), "nesting is bounded");
        assert_eq!(JsonGrammar::object().forced(), b"{");
    }

    #[test]
    fn any_value_at_the_top_level() {
        let accepts_value = |text: &str| {
            let mut g = JsonGrammar::value();
            text.bytes().all(|b| g.step(b)) && g.is_complete()
        };
        for ok in ["1", "-0.5", "\"s\"", "true", "null", "[1,{}]", "{\"a\":[]}"] {
            assert!(accepts_value(ok), "{ok}");
        }
        for bad in ["", "-", "tru", "1 2", "\"s\" x", "[1,"] {
            assert!(!accepts_value(bad), "{bad}");
        }
        let mut g = JsonGrammar::value();
        assert!(g.step(b'4') && g.is_complete() && g.may_continue());
        assert!(!g.step(b','), "nothing follows a top-level value");
    }
}
