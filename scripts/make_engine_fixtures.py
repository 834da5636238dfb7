#!/usr/bin/env python3
"""Make the engine's reference fixtures from the reference implementations.

Token ids and greedy continuations come from llama.cpp (the llama-cpp-python
package) on the same GGUF files the Rust engine loads; embeddings come from
sentence-transformers' all-MiniLM-L6-v2. Run once, commit the JSON files:

    python scripts/make_engine_fixtures.py \
        --tiny  "$(persona models path tiny)" \
        --small "$(persona models path small)" \
        --encoder "$(dirname "$(persona models path minilm)")" \
        --out crates/engine/tests/fixtures

Needs: pip install llama-cpp-python sentence-transformers
"""
import argparse
import hashlib
import json
import os

TOKENIZER_STRINGS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "1234567890 and 3.14159, plus 42nd street",
    "Café naïve résumé Ångström façade",
    "emoji: 😀🚀👍🏽 and 中文字符 日本語",
    "def add(a, b):\n    return a + b  # sum\n\n\tindent",
    "   leading spaces and trailing   ",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "don't won't it's we're I'LL you've",
    "a\n\n\nb\r\nc",
]

CHAT_PROMPTS = [
    "<|im_start|>system\nAnswer in one short sentence.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nList three primary colors.<|im_end|>\n<|im_start|>assistant\n",
]

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "Stocks fell sharply on Monday after the announcement.",
    "Ich liebe dich.",
]

GREEDY_TOKENS = 16


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def llama_fixture(path):
    from llama_cpp import Llama

    import numpy as np

    llm = Llama(model_path=path, n_ctx=512, n_threads=2, verbose=False, seed=0, logits_all=True)
    tokens = []
    for text in TOKENIZER_STRINGS:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        tokens.append({"text": text, "ids": list(ids)})
    greedy = []
    for prompt in CHAT_PROMPTS:
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        out, margins = [], []
        for _ in range(GREEDY_TOKENS):
            logits = np.asarray(llm.scores[llm.n_tokens - 1])
            top2 = np.argsort(-logits)[:2]
            tok = int(top2[0])
            if tok == llm.token_eos():
                break
            # How far the chosen token is ahead of the runner-up: a small
            # margin is a near-tie that quantization noise can flip.
            margins.append(float(logits[top2[0]] - logits[top2[1]]))
            out.append(tok)
            llm.eval([tok])
        greedy.append({"prompt": prompt, "prompt_ids": list(ids), "ids": out, "margins": margins,
                       "text": llm.detokenize(out).decode("utf-8", errors="replace")})
    import llama_cpp
    return {"model_sha256": sha256(path), "reference": f"llama-cpp-python {llama_cpp.__version__}",
            "tokenize": tokens, "greedy": greedy}


def encoder_fixture(folder):
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(folder, device="cpu")
    emb = model.encode(SENTENCES, normalize_embeddings=True)
    sims = (emb @ emb.T).tolist()
    return {
        "reference": f"sentence-transformers {sentence_transformers.__version__}",
        "weights_sha256": sha256(os.path.join(folder, "model.safetensors")),
        "sentences": SENTENCES,
        "first_dims": [row[:16].tolist() for row in emb],
        "cosine": sims,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny")
    ap.add_argument("--small")
    ap.add_argument("--encoder")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, path in (("tiny", args.tiny), ("small", args.small)):
        if path:
            with open(os.path.join(args.out, f"llama_cpp_{name}.json"), "w") as f:
                json.dump(llama_fixture(path), f, indent=1, ensure_ascii=False)
            print("wrote", name)
    if args.encoder:
        with open(os.path.join(args.out, "sentence_transformers_minilm.json"), "w") as f:
            json.dump(encoder_fixture(args.encoder), f, indent=1, ensure_ascii=False)
        print("wrote encoder")


if __name__ == "__main__":
    main()
