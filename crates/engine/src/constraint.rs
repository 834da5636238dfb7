//! Constrained decoding: restricting which tokens may come next so that the
//! generated text always matches a grammar (used for tool calls).
//!
//! A [`TokenConstraint`] is consulted by the generation loop before every
//! sampled token. [`GrammarConstraint`] implements it for any byte-level
//! automaton ([`ByteGrammar`]): a token is allowed when the automaton accepts
//! every byte of its text. Text that is the only valid continuation (the
//! fixed parts of a JSON object, say) is fed to the model in one forward
//! pass instead of being sampled token by token ("jump-forward").

use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::tokenizer::TokenBytes;

/// Restricts the tokens a generation may produce.
pub trait TokenConstraint {
    /// Sets the logits of every token that may not come next to `-inf`.
    /// Fails when no token at all is allowed.
    fn mask_logits(&mut self, logits: &mut [f32]) -> Result<()>;
    /// Records a sampled token (one that `mask_logits` allowed).
    fn accept_token(&mut self, token: u32) -> Result<()>;
    /// Text that is the only valid continuation, if any; the engine feeds
    /// it without sampling and then calls [`TokenConstraint::accept_text`].
    fn forced_text(&self) -> Option<String> {
        None
    }
    /// Records text the engine fed on its own (see `forced_text`).
    fn accept_text(&mut self, text: &str) -> Result<()>;
    /// Whether the constrained text is complete; generation then ends.
    fn is_complete(&self) -> bool;
}

/// A borrowed constraint constrains like the constraint itself (so callers
/// can lend one to a [`crate::Batch`] for a call).
impl<T: TokenConstraint + ?Sized> TokenConstraint for &mut T {
    fn mask_logits(&mut self, logits: &mut [f32]) -> Result<()> {
        (**self).mask_logits(logits)
    }
    fn accept_token(&mut self, token: u32) -> Result<()> {
        (**self).accept_token(token)
    }
    fn forced_text(&self) -> Option<String> {
        (**self).forced_text()
    }
    fn accept_text(&mut self, text: &str) -> Result<()> {
        (**self).accept_text(text)
    }
    fn is_complete(&self) -> bool {
        (**self).is_complete()
    }
}

/// A deterministic automaton over bytes. Cloning must be cheap: the masking
/// loop clones the state once per vocabulary entry.
pub trait ByteGrammar: Clone {
    /// Consumes one byte; returns `false` (and may leave the state
    /// unspecified) when the byte is not allowed here.
    fn step(&mut self, byte: u8) -> bool;
    /// Whether the text so far is a complete sentence of the grammar (no
    /// byte may follow).
    fn is_complete(&self) -> bool;
    /// Bytes that must come next whatever the model chooses (may be empty).
    fn forced(&self) -> Vec<u8> {
        Vec::new()
    }
}

/// A [`TokenConstraint`] driven by a [`ByteGrammar`].
#[derive(Debug, Clone)]
pub struct GrammarConstraint<G> {
    grammar: G,
    vocab: Arc<TokenBytes>,
    /// The text accepted so far.
    text: Vec<u8>,
}

impl<G: ByteGrammar> GrammarConstraint<G> {
    /// Starts the grammar at its initial state.
    pub fn new(grammar: G, vocab: Arc<TokenBytes>) -> Self {
        GrammarConstraint { grammar, vocab, text: Vec::new() }
    }

    /// The grammar's current state.
    pub fn grammar(&self) -> &G {
        &self.grammar
    }

    /// The bytes accepted so far.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Whether `bytes` may come next.
    pub fn allows(&self, bytes: &[u8]) -> bool {
        let mut g = self.grammar.clone();
        bytes.iter().all(|&b| g.step(b))
    }

    /// Advances over `bytes`, or leaves the state unchanged and fails.
    fn feed(&mut self, bytes: &[u8], what: &str) -> Result<()> {
        let mut next = self.grammar.clone();
        if !bytes.iter().all(|&b| next.step(b)) {
            return Err(EngineError::Constraint(format!(
                "{what} {:?} breaks the grammar after {:?}",
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(&self.text)
            )));
        }
        self.grammar = next;
        self.text.extend_from_slice(bytes);
        Ok(())
    }
}

impl<G: ByteGrammar> TokenConstraint for GrammarConstraint<G> {
    fn mask_logits(&mut self, logits: &mut [f32]) -> Result<()> {
        let mut any = false;
        for (id, logit) in logits.iter_mut().enumerate() {
            let ok = match self.vocab.get(id as u32) {
                Some(bytes) => {
                    let mut g = self.grammar.clone();
                    bytes.iter().all(|&b| g.step(b))
                }
                None => false,
            };
            if ok {
                any |= *logit > f32::NEG_INFINITY;
            } else {
                *logit = f32::NEG_INFINITY;
            }
        }
        if any {
            Ok(())
        } else {
            Err(EngineError::Constraint(format!("no token of the vocabulary may follow {:?}", String::from_utf8_lossy(&self.text))))
        }
    }

    fn accept_token(&mut self, token: u32) -> Result<()> {
        let vocab = Arc::clone(&self.vocab);
        let bytes = vocab.get(token).ok_or_else(|| EngineError::Constraint(format!("token {token} has no text")))?;
        self.feed(bytes, "token")
    }

    fn forced_text(&self) -> Option<String> {
        let forced = self.grammar.forced();
        if forced.is_empty() {
            return None;
        }
        // Only whole UTF-8 characters can be tokenized on their own.
        match String::from_utf8(forced) {
            Ok(s) => Some(s),
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let bytes = e.into_bytes();
                (valid > 0).then(|| String::from_utf8_lossy(&bytes[..valid]).into_owned())
            }
        }
    }

    fn accept_text(&mut self, text: &str) -> Result<()> {
        self.feed(text.as_bytes(), "forced text")
    }

    fn is_complete(&self) -> bool {
        self.grammar.is_complete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts exactly "ab" or "ac".
    #[derive(Clone)]
    struct AbOrAc(u8);
    impl ByteGrammar for AbOrAc {
        fn step(&mut self, b: u8) -> bool {
            let ok = match self.0 {
                0 => b == b'a',
                1 => b == b'b' || b == b'c',
                _ => false,
            };
            self.0 += 1;
            ok
        }
        fn is_complete(&self) -> bool {
            self.0 == 2
        }
        fn forced(&self) -> Vec<u8> {
            if self.0 == 0 {
                b"a".to_vec()
            } else {
                Vec::new()
            }
        }
    }

    #[test]
    fn masks_tokens_that_break_the_grammar() {
        let vocab = Arc::new(TokenBytes::from_vec(vec![Some(b"a".to_vec()), Some(b"ab".to_vec()), Some(b"b".to_vec()), None, Some(b"x".to_vec())]));
        let mut c = GrammarConstraint::new(AbOrAc(0), vocab);
        assert_eq!(c.forced_text().as_deref(), Some("a"));
        let mut logits = vec![1.0; 5];
        c.mask_logits(&mut logits).unwrap();
        assert_eq!(logits[0], 1.0);
        assert_eq!(logits[1], 1.0);
        assert!(logits[2..].iter().all(|l| *l == f32::NEG_INFINITY));
        c.accept_token(0).unwrap();
        let mut logits = vec![1.0; 5];
        c.mask_logits(&mut logits).unwrap();
        assert_eq!(logits[2], 1.0);
        assert!(c.accept_token(4).is_err());
        c.accept_token(2).unwrap();
        assert!(c.is_complete());
        let mut logits = vec![1.0; 5];
        assert!(c.mask_logits(&mut logits).is_err(), "nothing may follow a complete sentence");
    }
}
