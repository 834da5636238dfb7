#!/usr/bin/env python3
"""Reference side of `persona bench engine`: the same measurements as the Rust
worker, on llama.cpp (llama-cpp-python) or sentence-transformers.

Prints one JSON object. Called by `persona bench engine`; can be run alone:

    python scripts/bench_reference.py llama --model M.gguf --prompt-file P.txt \
        --gen-tokens 128 --threads 2 --runs 3
    python scripts/bench_reference.py encoder --model DIR --sentences-file S.txt --threads 2
"""
import argparse
import json
import resource
import statistics
import sys
import time


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def llama_simd(llama_cpp):
    """The x86/ARM SIMD features this llama.cpp build uses, from its system info."""
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    names = []
    for part in info.replace("|", "\n").splitlines():
        name, _, value = part.partition("=")
        name = name.split(":")[-1].strip()
        if value.strip() == "1" and any(k in name for k in ("AVX", "FMA", "F16C", "NEON", "DOTPROD", "MATMUL_INT8", "SVE")):
            names.append(name)
    return " ".join(names) if names else "no SIMD features reported"


def bench_llama(args):
    import llama_cpp
    import numpy as np
    from llama_cpp import Llama

    prompt = open(args.prompt_file, encoding="utf-8").read()
    t0 = time.perf_counter()
    llm = Llama(model_path=args.model, n_ctx=2048, n_threads=args.threads, n_threads_batch=args.threads,
                n_batch=512, verbose=False, seed=0)
    load_ms = (time.perf_counter() - t0) * 1000
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    n_vocab = llm.n_vocab()

    def last_logits():
        # The last position's logits straight from llama.cpp (no copy).
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))

    prefill, ttft, decode = [], [], []
    # One warm-up pass, then the measured runs.
    for run in range(args.runs + 1):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        tok = int(np.argmax(last_logits()))
        t1 = time.perf_counter()
        for _ in range(args.gen_tokens - 1):
            llm.eval([tok])
            tok = int(np.argmax(last_logits()))
        t2 = time.perf_counter()
        if run == 0:
            continue
        prefill.append(len(tokens) / (t1 - t0))
        ttft.append((t1 - t0) * 1000)
        decode.append((args.gen_tokens - 1) / (t2 - t1))
    return {
        "engine": f"llama.cpp (llama-cpp-python {llama_cpp.__version__}; {llama_simd(llama_cpp)})",
        "load_ms": load_ms,
        "prompt_tokens": len(tokens),
        "prefill_tok_s": statistics.median(prefill),
        "ttft_ms": statistics.median(ttft),
        "decode_tokens": args.gen_tokens,
        "decode_tok_s": statistics.median(decode),
        "peak_rss_mb": peak_rss_mb(),
    }


def bench_encoder(args):
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    sentences = [l.rstrip("\n") for l in open(args.sentences_file, encoding="utf-8") if l.strip()]
    t0 = time.perf_counter()
    model = SentenceTransformer(args.model, device="cpu")
    load_ms = (time.perf_counter() - t0) * 1000
    model.encode(sentences[:32], batch_size=32, normalize_embeddings=True)
    rates = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        model.encode(sentences, batch_size=32, normalize_embeddings=True)
        rates.append(len(sentences) / (time.perf_counter() - t0))
    return {
        "engine": f"sentence-transformers {sentence_transformers.__version__} (torch {torch.__version__})",
        "load_ms": load_ms,
        "sentences": len(sentences),
        "sentences_per_s": statistics.median(rates),
        "peak_rss_mb": peak_rss_mb(),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["llama", "encoder"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-file")
    ap.add_argument("--sentences-file")
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    result = bench_llama(args) if args.kind == "llama" else bench_encoder(args)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
