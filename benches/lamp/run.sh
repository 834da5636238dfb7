#!/usr/bin/env bash
# Runs the LaMP comparison behind benches/lamp/README.md: every method and
# ablation on the four rebuilt sets with the default (small) model, the
# first 20 users of each set, seed 42, paper defaults n=3 E=3 K=4 T=0.1.
#
#   BIN=target/release/persona RAW=../shared/data OUT=/tmp/lamp-runs benches/lamp/run.sh
#
# The work is split by method into two parts per set, each its own
# `bench lamp` run (resumable: rerun to continue), so that a part fits in
# one sitting of a 2-core machine:
#   base     the seven baselines and the three cheap ablations (~80 min/set)
#   aligned  PersonaAgent and no-action, which align each user's persona
#            first (~5.5 min per user, ~2 h/set)
# Every call is seeded on its own and only MemBank carries state across
# users (inside its part), so a method scores the same in either part.
# Parts already reported in benches/lamp/reports/ are skipped (CHUNKS
# overrides the list). Then, per set:
#   $BIN bench merge --run OUT/<set>-base --run OUT/<set>-aligned --out OUT/<set>
# and copy OUT/<set>-<part>/report.{md,json} and OUT/<set>/report.{md,json}
# here (never results.jsonl or the rebuilt sets: they hold the data).
set -u
BIN=${BIN:-target/release/persona}
RAW=${RAW:-../shared/data}
OUT=${OUT:-/tmp/lamp-runs}
USERS=${USERS:-20}
THREADS=${THREADS:-2}
REPORTS=${REPORTS:-$(dirname "$0")/reports}
BASE=prompt,icl,rag-1,rag-4,pag-4,react,membank,no-alignment,no-persona,no-memory
ALIGNED=persona-agent,no-action
ALL="LaMP-2N:base LaMP-1:base LaMP-2M:base LaMP-3:base LaMP-2N:aligned LaMP-1:aligned LaMP-2M:aligned LaMP-3:aligned"
for spec in ${CHUNKS:-$ALL}; do
  T=${spec%%:*}; C=${spec##*:}
  if [ -z "${CHUNKS:-}" ] && [ -f "$REPORTS/$T-$C.json" ]; then
    echo "=== $T $C: already reported in $REPORTS"
    continue
  fi
  if [ "$C" = base ]; then M=$BASE; else M=$ALIGNED; fi
  echo "=== $(date -u +%FT%TZ) $T $C users=$USERS"
  "$BIN" --threads "$THREADS" bench lamp --task "$T" --raw "$RAW" --users "$USERS" \
    --method "$M" --seed 42 --out "$OUT/$T-$C" < /dev/null || echo "FAILED $T $C"
  echo "=== $(date -u +%FT%TZ) finished $T $C"
done
echo "=== $(date -u +%FT%TZ) all done"
