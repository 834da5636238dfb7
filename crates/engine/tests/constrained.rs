//! Real-model tests of KV-cache reuse across requests and of
//! grammar-constrained decoding (tiny model; the small model's tokenizer).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use persona_engine::{
    ByteGrammar, ChatMessage, ChatModel, Device, FinishReason, GenerationParams, GgufChatModel, GgufFile, GgufTokenizer, GrammarConstraint, SamplingParams,
};
use persona_testkit::model_path;

fn tiny() -> GgufChatModel {
    GgufChatModel::load(model_path("tiny"), &Device::Cpu).unwrap()
}

#[test]
fn a_prompt_that_extends_the_last_request_reuses_the_kv_cache() {
    let mut warm = tiny();
    let mut cold = tiny();
    let params = GenerationParams { max_tokens: 12, ignore_eos: true, ..Default::default() };
    let prompt = warm.render_chat(&[ChatMessage::user("Name three fruits.")]).unwrap();
    let first = warm.generate(&prompt, &params, &mut |_| true).unwrap();
    assert_eq!(first.cached_tokens, 0);
    // The agent's pattern: the previous prompt, what the model wrote, and more text.
    let mut next = warm.prompt_tokens(&prompt).unwrap();
    next.extend(&first.tokens);
    next.extend(warm.tokenizer().encode("\nNow name three vegetables.", false).unwrap());
    let reused = warm.generate_tokens(next.clone(), &params, None, &mut |_| true).unwrap();
    // Everything but the last generated token (sampled, never fed) was in the cache.
    assert_eq!(reused.cached_tokens, warm.prompt_tokens(&prompt).unwrap().len() + first.tokens.len() - 1);
    let fresh = cold.generate_tokens(next, &params, None, &mut |_| true).unwrap();
    assert_eq!(fresh.cached_tokens, 0);
    assert_eq!(reused.tokens, fresh.tokens, "reusing the cache changed the output: {:?} vs {:?}", reused.text, fresh.text);
    // A prompt that only shares a prefix with the cache reuses that prefix
    // (all of it but the last token, whose logits are needed) and gives the
    // same output as the first time.
    let other = warm.generate(&prompt, &params, &mut |_| true).unwrap();
    assert_eq!(other.cached_tokens, warm.prompt_tokens(&prompt).unwrap().len() - 1);
    assert_eq!(other.tokens, first.tokens);
}

#[test]
fn token_bytes_spell_out_the_text() {
    for name in ["tiny", "small"] {
        let tok = GgufTokenizer::from_gguf(&GgufFile::open(model_path(name)).unwrap()).unwrap();
        let table = tok.token_bytes();
        assert_eq!(table.len(), tok.vocab_size());
        for text in ["Hello, world!", "  leading spaces\nand \"quotes\" \\ tabs\t", "héllo wörld — 東京 🙂", "{\"tool\": \"memory_search\"}"] {
            let ids = tok.encode(text, false).unwrap();
            let bytes: Vec<u8> = ids.iter().flat_map(|&id| table.get(id).unwrap().to_vec()).collect();
            assert_eq!(String::from_utf8(bytes).unwrap(), text, "{name}");
        }
        let eos = tok.eos_id().unwrap();
        assert!(table.get(eos).is_none(), "{name}: special tokens have no bytes");
    }
}

/// `Answer: ` followed by one to three digits and a full stop.
#[derive(Clone)]
struct Number {
    pos: usize,
    digits: usize,
    done: bool,
}

const PREFIX: &[u8] = b"Answer: ";

impl ByteGrammar for Number {
    fn step(&mut self, b: u8) -> bool {
        if self.done {
            return false;
        }
        if self.pos < PREFIX.len() {
            let ok = PREFIX[self.pos] == b;
            self.pos += 1;
            return ok;
        }
        if b.is_ascii_digit() && self.digits < 3 {
            self.digits += 1;
            return true;
        }
        if b == b'.' && self.digits > 0 {
            self.done = true;
            return true;
        }
        false
    }
    fn is_complete(&self) -> bool {
        self.done
    }
    fn forced(&self) -> Vec<u8> {
        if self.pos < PREFIX.len() {
            PREFIX[self.pos..].to_vec()
        } else {
            Vec::new()
        }
    }
}

#[test]
fn constrained_decoding_follows_the_grammar() {
    let mut model = tiny();
    let prompt = model.render_chat(&[ChatMessage::user("How many legs does a spider have? Think it over and tell me about spiders.")]).unwrap();
    let tokens = model.prompt_tokens(&prompt).unwrap();
    for seed in 0..3 {
        let params = GenerationParams { max_tokens: 16, sampling: SamplingParams { temperature: 1.0, seed, ..Default::default() }, ..Default::default() };
        let mut constraint = GrammarConstraint::new(Number { pos: 0, digits: 0, done: false }, model.tokenizer().token_bytes());
        let g = model.generate_tokens(tokens.clone(), &params, Some(&mut constraint), &mut |_| true).unwrap();
        assert_eq!(g.finish_reason, FinishReason::Complete, "{g:?}");
        let text = g.text.as_str();
        let digits = text.strip_prefix("Answer: ").and_then(|r| r.strip_suffix('.')).unwrap_or_else(|| panic!("{text:?}"));
        assert!((1..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
    }
    // Unconstrained, the same request does not produce that form.
    let free = model.generate_tokens(tokens, &GenerationParams { max_tokens: 16, ..Default::default() }, None, &mut |_| true).unwrap();
    assert!(!free.text.starts_with("Answer: "), "{:?}", free.text);
}

#[test]
fn batched_constrained_decoding_matches_one_by_one() {
    // Three sequences in lock step: two under the grammar (forced text,
    // masked sampling, completion) and one free; each must get exactly the
    // tokens it gets alone (the tiny model's kernels give the same logits
    // for one row or many, so even sampled draws agree).
    let mut model = tiny();
    let questions = ["How many legs does a spider have?", "Name a colour of the rainbow and say why you like it.", "How many days are in a week?"];
    let prompts: Vec<Vec<u32>> = questions.iter().map(|q| model.prompt_tokens(&model.render_chat(&[ChatMessage::user(*q)]).unwrap()).unwrap()).collect();
    let params = GenerationParams { max_tokens: 12, sampling: SamplingParams { temperature: 0.7, seed: 3, ..Default::default() }, ..Default::default() };
    let vocab = model.tokenizer().token_bytes();
    let grammar = || GrammarConstraint::new(Number { pos: 0, digits: 0, done: false }, vocab.clone());
    let (mut a, mut c) = (grammar(), grammar());
    model.clear_caches();
    let batched = model.generate_batch_constrained(prompts.clone(), &params, vec![Some(&mut a), None, Some(&mut c)]).unwrap();
    let mut alone = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        model.clear_caches();
        let mut g = grammar();
        let constraint: Option<&mut dyn persona_engine::TokenConstraint> = if i == 1 { None } else { Some(&mut g) };
        alone.push(model.generate_tokens(p.clone(), &params, constraint, &mut |_| true).unwrap());
    }
    for (i, (b, s)) in batched.iter().zip(&alone).enumerate() {
        assert_eq!(b.tokens, s.tokens, "sequence {i}: {:?} vs {:?}", b.text, s.text);
        assert_eq!((b.text.as_str(), b.finish_reason), (s.text.as_str(), s.finish_reason), "sequence {i}");
    }
    for i in [0, 2] {
        assert_eq!(batched[i].finish_reason, FinishReason::Complete);
        assert!(batched[i].text.starts_with("Answer: ") && batched[i].text.ends_with('.'), "{:?}", batched[i].text);
    }
    assert!(!batched[1].text.starts_with("Answer: "), "the free sequence is not constrained: {:?}", batched[1].text);
    let err = model.generate_batch_constrained(prompts, &params, vec![None]).unwrap_err().to_string();
    assert!(err.contains("1 constraints for 3 prompts"), "{err}");
}

#[test]
fn continuation_scores_are_log_probabilities_by_teacher_forcing() {
    use persona_engine::ContextPolicy;
    let mut model = tiny();
    let prompt = model.prompt_tokens(&model.render_chat(&[ChatMessage::user("Is the sky blue? Answer yes or no.")]).unwrap()).unwrap();
    // The greedy first token is the most likely of any set of one-token continuations.
    let params =
        GenerationParams { max_tokens: 2, ignore_eos: true, sampling: SamplingParams { temperature: 0.0, ..Default::default() }, ..Default::default() };
    let greedy = model.generate_tokens(prompt.clone(), &params, None, &mut |_| true).unwrap().tokens;
    let others: Vec<u32> = model.tokenizer().encode(" maybe perhaps the", false).unwrap();
    let mut candidates: Vec<Vec<u32>> = others.iter().filter(|&&t| t != greedy[0]).map(|&t| vec![t]).collect();
    candidates.push(vec![greedy[0]]);
    let scores = model.score_continuations(prompt.clone(), &candidates, ContextPolicy::Error).unwrap();
    assert!(scores.iter().all(|s| s.is_finite() && *s <= 0.0), "{scores:?}");
    let best = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(*scores.last().unwrap(), best, "the greedy token must score highest: {scores:?}");
    // A two-token continuation scores the sum of its tokens' conditional
    // log-probabilities, whatever the caches held before.
    let pair = vec![greedy[0], greedy[1]];
    let joint = model.score_continuations(prompt.clone(), std::slice::from_ref(&pair), ContextPolicy::Error).unwrap()[0];
    let mut longer = prompt.clone();
    longer.push(greedy[0]);
    let second = tiny().score_continuations(longer, &[vec![greedy[1]]], ContextPolicy::Error).unwrap()[0];
    let first = tiny().score_continuations(prompt.clone(), &[vec![greedy[0]]], ContextPolicy::Error).unwrap()[0];
    assert!((joint - (first + second)).abs() < 1e-3, "{joint} vs {first} + {second}");
    // The order of the continuations does not change their scores.
    let reversed: Vec<Vec<u32>> = candidates.iter().rev().cloned().collect();
    let again = model.score_continuations(prompt.clone(), &reversed, ContextPolicy::Error).unwrap();
    for (a, b) in scores.iter().zip(again.iter().rev()) {
        assert!((a - b).abs() < 1e-3, "{scores:?} vs {again:?}");
    }
    assert!(model.score_continuations(prompt, &[vec![]], ContextPolicy::Error).is_err(), "an empty continuation is refused");
}
