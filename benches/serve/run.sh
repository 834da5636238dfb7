#!/usr/bin/env bash
# The server load benchmark: `persona serve` and llama.cpp's server
# (llama-cpp-python's `llama_cpp.server`) on the same GGUF and thread count,
# one after the other on this machine, each under N concurrent streaming
# clients (benches/serve/load.py) for SECONDS. Prints one JSON line per run
# (server, clients, requests, errors, TTFT p50/p95, tokens/s, RSS before and
# after) after a header line naming the machine.
#
# usage: benches/serve/run.sh LLAMA_PYTHON CLIENT_PYTHON [SECONDS] [CLIENTS...]
#   LLAMA_PYTHON: a Python with llama-cpp-python[server]
#   CLIENT_PYTHON: a Python with httpx
#   defaults: 120 seconds, clients 8 and 32; model small, 2 threads
#   (MODEL=..., THREADS=... to change; SERVERS="persona llama" picks which run;
#   USERS=N makes every request name one of N users, RSS_EVERY=S samples the
#   server's RSS every S seconds: see load.py).
# llama_cpp.server runs with --interrupt_requests False: by default a new
# request cancels the one it is streaming, which empties every stream of a
# concurrent load.
set -euo pipefail
cd "$(dirname "$0")/../.."
llama_py="$1"; client_py="$2"; seconds="${3:-120}"
if [ $# -gt 3 ]; then clients=("${@:4}"); else clients=(8 32); fi
model="${MODEL:-small}"; threads="${THREADS:-2}"
persona=target/release/persona
gguf="$($persona models path "$model")"
llama_simd="$("$llama_py" -c 'import llama_cpp; i = llama_cpp.llama_print_system_info().decode(); print(" ".join(p.split(" = ")[0].strip() for p in i.split("|") if p.strip().endswith("= 1")))' 2>/dev/null || echo unknown)"
printf '{"machine": "%s", "cores": %s, "cpu_flags": "%s", "git": "%s", "model": "%s", "gguf": "%s", "threads": %s, "llama_cpp_simd": "%s"}\n' \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(nproc)" "$(grep -o -w 'avx512_vnni\|avx_vnni\|avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ' | xargs)" \
    "$($persona --version | sed -n 's/.*(git \(.*\))/\1/p')" "$model" "$gguf" "$threads" "$llama_simd"
port=18181
wait_ready() {
    for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$port$1" >/dev/null 2>&1 && return 0; sleep 0.5; done
    echo "server on $port did not get ready" >&2; return 1
}
run_load() {
    local name="$1" pid="$2" model_name="$3"
    for c in "${clients[@]}"; do
        out="$("$client_py" benches/serve/load.py --url "http://127.0.0.1:$port" --model "$model_name" --clients "$c" --seconds "$seconds" --pid "$pid" --users "${USERS:-0}" --rss-every "${RSS_EVERY:-0}")"
        echo "{\"server\": \"$name\", ${out#\{}"
    done
}
data="$(mktemp -d)"
# KEEP_LOGS=DIR keeps the servers' logs there.
trap 'kill $(jobs -p) 2>/dev/null || true; if [ -n "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp "$data"/*.out "$data"/*.err "$KEEP_LOGS"/ 2>/dev/null || true; fi; rm -rf "$data"' EXIT
servers="${SERVERS:-persona llama}"
if [[ " $servers " == *" persona "* ]]; then
$persona --threads "$threads" --data-dir "$data" serve -m "$model" --port $port --no-encyclopedia > "$data/persona.out" 2> "$data/persona.err" &
pid=$!
wait_ready /health
run_load "persona serve" $pid "$model"
kill $pid; wait $pid 2>/dev/null || true
fi
if [[ " $servers " == *" llama "* ]]; then
"$llama_py" -m llama_cpp.server --model "$gguf" --n_threads "$threads" --n_ctx 4096 --interrupt_requests False --host 127.0.0.1 --port $port > "$data/llama.out" 2>&1 &
pid=$!
wait_ready /v1/models
run_load "llama_cpp.server" $pid "$gguf"
fi
