#!/usr/bin/env bash
# Runs the LaMP comparison behind benches/lamp/first-design.md: every method and
# ablation on the four rebuilt sets with the default (small) model, the
# first 20 users of each set, seed 42, paper defaults n=3 E=3 K=4 T=0.1.
#
#   BIN=target/release/persona RAW=../shared/data OUT=/tmp/lamp-runs benches/lamp/run.sh
#
# The work is split by method into parts, each its own `bench lamp` run
# (resumable: rerun to continue), so that a part fits in one sitting of a
# 2-core machine:
#   direct   Prompt, ICL, RAG-1, RAG-4, MemBank: one model call each (3-4 min/set on 43e7ebf)
#   agents   PAG-4 (writes the semantic memory), ReAct and the three
#            ablations that need no alignment (15-20 min/set)
#   base     direct + agents in one run (LaMP-2N-style was run this way)
#   aligned  PersonaAgent and no-action, which align each user's persona
#            first (53-114 min/set, 2.5-3.5 min per user alone)
# Every call is seeded on its own and only MemBank carries state across
# users (inside its part), so a method scores the same in either part.
# Parts already reported in benches/lamp/reports/ are skipped (CHUNKS
# overrides the list). Then, per set:
#   $BIN bench merge --run OUT/<set>-direct --run OUT/<set>-agents --run OUT/<set>-aligned --out OUT/<set>
# and copy OUT/<set>-<part>/report.{md,json} and OUT/<set>/report.{md,json}
# here (never results.jsonl or the rebuilt sets: they hold the data).
set -u
BIN=${BIN:-target/release/persona}
RAW=${RAW:-../shared/data}
OUT=${OUT:-/tmp/lamp-runs}
USERS=${USERS:-20}
THREADS=${THREADS:-2}
REPORTS=${REPORTS:-$(dirname "$0")/reports}
DIRECT=prompt,icl,rag-1,rag-4,membank
AGENTS=pag-4,react,no-alignment,no-persona,no-memory
ALIGNED=persona-agent,no-action
ALL="LaMP-2N:base LaMP-1:direct LaMP-2M:direct LaMP-3:direct LaMP-1:agents LaMP-2M:agents LaMP-3:agents
     LaMP-2N:aligned LaMP-1:aligned LaMP-2M:aligned LaMP-3:aligned"
for spec in ${CHUNKS:-$ALL}; do
  T=${spec%%:*}; C=${spec##*:}
  if [ -z "${CHUNKS:-}" ] && [ -f "$REPORTS/$T-$C.json" ]; then
    echo "=== $T $C: already reported in $REPORTS"
    continue
  fi
  case "$C" in
    direct) M=$DIRECT ;;
    agents) M=$AGENTS ;;
    base) M=$DIRECT,$AGENTS ;;
    aligned) M=$ALIGNED ;;
    *) echo "unknown part '$C' (direct, agents, base, aligned)"; exit 2 ;;
  esac
  echo "=== $(date -u +%FT%TZ) $T $C users=$USERS"
  "$BIN" --threads "$THREADS" bench lamp --task "$T" --raw "$RAW" --users "$USERS" \
    --method "$M" --seed 42 --out "$OUT/$T-$C" < /dev/null || echo "FAILED $T $C"
  echo "=== $(date -u +%FT%TZ) finished $T $C"
done
echo "=== $(date -u +%FT%TZ) all done"
