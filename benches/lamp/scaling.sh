#!/usr/bin/env bash
# Runs the test-time scaling sweeps (E, K, then n) behind benches/lamp/first-design.md
# ("Scaling"): LaMP-2N-style, first 20 users, small model, seed 42, paper
# defaults for everything not swept, on build 43e7ebf like the comparison.
#
#   BIN=../lamp-src/target/release/persona OUT=/tmp/lamp-runs benches/lamp/scaling.sh
#
# OUT is the comparison's output folder (run.sh): the default value of
# each sweep is that comparison's own run of the method (E=3 from the
# aligned part, K=4 from the base part), so its rows are copied into the
# sweep's folder and not run twice (same build, set, seed and settings).
# Resumable like `bench lamp`: rerun to continue. Then copy
# OUT/scaling-LaMP-2N-<P>/scaling{.md,.json,-<P>.svg,-<P>.png} and each
# <P>-<v>/report.{md,json} into benches/lamp/scaling/<P>/ (never
# results.jsonl or the rebuilt set: they hold the data).
set -eu
BIN=${BIN:-target/release/persona}
RAW=${RAW:-../shared/data}
OUT=${OUT:-/tmp/lamp-runs}
THREADS=${THREADS:-2}

# seed <sweep folder> <value folder> <method> <comparison part>
seed() {
  local dir="$OUT/$1/$2"
  if [ ! -s "$dir/results.jsonl" ] && [ -s "$OUT/$4/results.jsonl" ]; then
    mkdir -p "$dir"
    grep "\"method\":\"$3\"" "$OUT/$4/results.jsonl" > "$dir/results.jsonl"
  fi
}

# E: PersonaAgent's alignment iterations (paper Fig. 3, middle).
seed scaling-LaMP-2N-E E-3 persona-agent LaMP-2N-aligned
"$BIN" --threads "$THREADS" bench scaling --task LaMP-2N --raw "$RAW" --users 20 \
  --method persona-agent --seed 42 --param E --values 1,2,3 --out "$OUT/scaling-LaMP-2N-E" < /dev/null

# K: records per memory search, for the agent with the initial persona
# (no-alignment: the alignment's cost would make each value an hour).
seed scaling-LaMP-2N-K K-4 no-alignment LaMP-2N-base
"$BIN" --threads "$THREADS" bench scaling --task LaMP-2N --raw "$RAW" --users 20 \
  --method no-alignment --seed 42 --param K --values 1,2,4,8 --out "$OUT/scaling-LaMP-2N-K" < /dev/null

# n: interactions replayed per alignment iteration (PersonaAgent).
seed scaling-LaMP-2N-n n-3 persona-agent LaMP-2N-aligned
"$BIN" --threads "$THREADS" bench scaling --task LaMP-2N --raw "$RAW" --users 20 \
  --method persona-agent --seed 42 --param n --values 1,2,3 --out "$OUT/scaling-LaMP-2N-n" < /dev/null
