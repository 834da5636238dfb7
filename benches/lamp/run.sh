#!/usr/bin/env bash
# Runs the LaMP comparison behind benches/lamp/README.md: every method and
# ablation on the four rebuilt sets with the default (small) model, the
# first 20 users of each set, seed 42, paper defaults n=3 E=3 K=4 T=0.1.
# Resumable: rerun to continue.
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
run() {
  echo "=== $(date -u +%FT%TZ) $1 users=$2 $3"
  "$BIN" --threads "$THREADS" bench lamp --task "$1" --raw "$RAW" --users "$2" \
    --method "$3" --seed 42 --out "$OUT/$1" < /dev/null || echo "FAILED $1 $2 $3"
}
# Cheap baselines on every user first; then every method on growing
# prefixes of the users, so a stopped run still compares all methods on the
# same users (each report covers the first N users).
for T in LaMP-2N LaMP-1 LaMP-2M LaMP-3; do
  run "$T" "$USERS" prompt,icl,rag-1,rag-4,membank
done
for N in 5 10 $USERS; do
  for T in LaMP-2N LaMP-1 LaMP-2M LaMP-3; do
    run "$T" "$N" all
  done
done
echo "=== $(date -u +%FT%TZ) all done"
