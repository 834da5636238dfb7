//! The engine's measurement code (`persona bench engine`) on the tiny
//! model and the real encoder: the counts it reports are the run's, the
//! prefix measurement serves the shared system prompt from the cache, and
//! each batch size asked for is measured.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use persona_engine::bench::{self, ChatBench};
use persona_engine::{BertEncoder, Device, GgufChatModel};

#[test]
fn measures_a_chat_model_and_the_encoder() {
    let mut model = GgufChatModel::load(persona_testkit::model_path("tiny"), &Device::Cpu).unwrap();
    let prompt = bench::filler_text(64);
    let want_prompt_tokens = persona_engine::ChatModel::encode_prompt(&model, &prompt).unwrap().len();
    let run = ChatBench { prompt, gen_tokens: 4, runs: 1, prefix_tokens: 96, batches: vec![1, 2] };
    let m = bench::measure_chat(&mut model, 12.5, &run).unwrap();
    assert_eq!((m.load_ms, m.prompt_tokens, m.decode_tokens), (12.5, want_prompt_tokens, 4));
    assert!(m.prefill_tok_s > 0.0 && m.decode_tok_s > 0.0 && m.ttft_ms > 0.0 && m.peak_rss_mb > 0.0, "{m:?}");
    let p = m.prefix.expect("prefix reuse measured");
    assert!(p.shared_tokens > 96 && p.shared_tokens < p.prompt_tokens, "{p:?}");
    // Everything shared is served from the cache except the last shared
    // token, which is prefilled again to get the logits.
    assert!(p.cached_tokens + 1 >= p.shared_tokens && p.cached_tokens <= p.shared_tokens, "{p:?}");
    assert_eq!(m.batches.iter().map(|b| b.batch).collect::<Vec<_>>(), [1, 2]);
    assert!(m.batches.iter().all(|b| b.tok_s > 0.0), "{:?}", m.batches);

    let dir = persona_testkit::model_dir("minilm");
    let encoder = BertEncoder::load(&dir, "minilm", &Device::Cpu).unwrap();
    let text = bench::bench_sentences();
    let sentences: Vec<&str> = text.lines().take(40).collect();
    let e = bench::measure_encoder(&encoder, 1.0, &sentences, 1).unwrap();
    assert_eq!(e.sentences, 40);
    assert!(e.sentences_per_s > 0.0, "{e:?}");
}
