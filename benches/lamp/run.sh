#!/usr/bin/env bash
# Runs the LaMP comparison behind benches/lamp/README.md: every method and
# ablation on the four rebuilt sets with the default (small) model, the
# first 20 users of each set, seed 42, paper defaults n=3 E=3 K=4 T=0.1.
# Cheap methods run on every task first, the agents after, alignment last,
# so partial runs give whole columns. Resumable: rerun to continue.
#
#   BIN=target/release/persona RAW=../shared/data OUT=/tmp/lamp-runs benches/lamp/run.sh
#
# Then copy OUT/<task>/report.{md,json} here (never results.jsonl or the
# rebuilt sets: they hold the data) and run
#   $BIN bench compare --run LaMP-1=OUT/LaMP-1 ... --out benches/lamp
set -u
BIN=${BIN:-target/release/persona}
RAW=${RAW:-../shared/data}
OUT=${OUT:-/tmp/lamp-runs}
USERS=${USERS:-20}
THREADS=${THREADS:-2}
for phase in "prompt,icl,rag-1,rag-4,membank" "react,no-memory,pag-4,no-alignment,no-persona" "persona-agent,no-action"; do
  for T in LaMP-2N LaMP-1 LaMP-2M LaMP-3; do
    echo "=== $(date -u +%FT%TZ) $T $phase"
    "$BIN" --threads "$THREADS" bench lamp --task "$T" --raw "$RAW" --users "$USERS" \
      --method "$phase" --seed 42 --out "$OUT/$T" < /dev/null || echo "FAILED $T $phase"
  done
done
echo "=== $(date -u +%FT%TZ) all done"
