#!/usr/bin/env bash
# Runs the report-split parts behind benches/lamp/README.md (run by run: report-split-log.md):
# every method on the users after each set's 20 dev users, in the order
# they ran: config C (`--answer-when-done --align-model large`, n=3, E=3,
# K=4, seed 42), then config D (the note in the answer turn) and config B
# for LaMP-3 with ReAct, MemBank, the ablations and `nearest`, then the
# 1.5B writer under them (each part's options are below), in resumable
# parts that each fit a sitting of a 2-core machine:
#
#   BIN=/path/to/persona RAW=../shared/data OUT=/var/tmp/lamp-report benches/lamp/report-split.sh
#
# Each part is one `bench lamp` run into OUT/<part> (rerun to continue a
# part that was stopped: finished queries are kept); a part that finished
# leaves OUT/<part>/.done and is skipped. When a part finishes, its
# report.{md,json} is copied to benches/lamp/report-split/ (never
# results.jsonl, the users' memory or the rebuilt sets: they quote the
# data); commit it. When all parts of a set are done, `bench merge` joins
# them into OUT/<set>-merged and its report is copied as <set>-merged.*.
# PARTS chooses parts by name (default: every part, in the order below).
# Give the run the cores to itself: beside another run on the same cores
# each is several times slower, not two (README, "Performance notes").
set -u
BIN=${BIN:-target/release/persona}
RAW=${RAW:-../shared/data}
OUT=${OUT:-/var/tmp/lamp-report}
THREADS=${THREADS:-2}
DEST=${DEST:-$(cd "$(dirname "$0")" && pwd)/report-split}
SETS=$OUT/sets
BASE=prompt,icl,rag-1,rag-4,pag-4
COMMON=(--skip-users 20 --answer-when-done --align-model large --seed 42)
mkdir -p "$OUT" "$SETS" "$DEST"

# A rebuilt set with its own options (the top-100 sets as in the paper;
# LaMP-2M with a lower --min-profile for more users).
set_args() {
  local name=$1; shift
  if [ ! -f "$SETS/$name/questions.json" ]; then
    "$BIN" data build --raw "$RAW" "$@" --out "$SETS/$name" >&2 || return 1
  fi
  echo "--questions $SETS/$name/questions.json --outputs $SETS/$name/outputs.json"
}

# part NAME REPORT_NAME -- bench lamp arguments...
part() {
  local name=$1 report=$2; shift 3
  if [ -n "${PARTS:-}" ] && [[ " $PARTS " != *" $name "* ]]; then return 0; fi
  if [ -f "$OUT/$name/.done" ]; then echo "=== $name: done"; return 0; fi
  echo "=== $(date -u +%FT%TZ) $name: $*"
  if "$BIN" --threads "$THREADS" bench lamp "$@" --out "$OUT/$name" > "$OUT/$name.log" 2>&1; then
    touch "$OUT/$name/.done"
    cp "$OUT/$name/report.md" "$DEST/$report.md"
    cp "$OUT/$name/report.json" "$DEST/$report.json"
    echo "=== $(date -u +%FT%TZ) $name: finished, report in $DEST/$report.md"
  else
    echo "=== $(date -u +%FT%TZ) $name: failed or stopped (see $OUT/$name.log)"
    return 1
  fi
}

# merge SET PART... : joins finished parts into OUT/<SET>-merged (with
# METHODS=a,b,... only those methods' rows: `bench merge --method`).
merge() {
  local set=$1; shift
  local runs=() p
  for p in "$@"; do
    [ -f "$OUT/$p/.done" ] || { echo "=== $set merge: waits for $p"; return 0; }
    runs+=(--run "$OUT/$p")
  done
  if [ -f "$OUT/$set-merged/report.json" ]; then echo "=== $set merge: done"; return 0; fi
  "$BIN" bench merge ${METHODS:+--method "$METHODS"} "${runs[@]}" --out "$OUT/$set-merged" > "$OUT/$set-merged.log" 2>&1 || { echo "=== $set merge failed"; return 1; }
  cp "$OUT/$set-merged/report.md" "$DEST/$set-merged.md"
  cp "$OUT/$set-merged/report.json" "$DEST/$set-merged.json"
  echo "=== $set merge: $DEST/$set-merged.md"
}

shards() { # shards PREFIX REPORT N -- args: the PersonaAgent shards of a set
  local prefix=$1 report=$2 n=$3 i; shift 4
  for ((i = 0; i < n; i++)); do
    part "$prefix-pa-s$i" "$report-persona-agent-shard${i}of$n" -- "$@" --method persona-agent --shard "$i/$n" || return 1
  done
}

L3=$(set_args LaMP-3-top100 --task LaMP-3 --max-users 100) || exit 1
L1=$(set_args LaMP-1-top100 --task LaMP-1 --max-users 100) || exit 1
M6=$(set_args LaMP-2M-min6 --task LaMP-2M --min-profile 6) || exit 1

# LaMP-3: baselines (committed as LaMP-3-baselines), then PersonaAgent.
# shellcheck disable=SC2086
{
  part rep-3-base LaMP-3-baselines -- $L3 "${COMMON[@]}" --method $BASE &&
  shards rep-3 LaMP-3 4 -- $L3 "${COMMON[@]}" &&
  merge LaMP-3 rep-3-base rep-3-pa-s0 rep-3-pa-s1 rep-3-pa-s2 rep-3-pa-s3
} || exit 1
# shellcheck disable=SC2086
{
  part rep-1-base LaMP-1-baselines -- $L1 "${COMMON[@]}" --method $BASE &&
  shards rep-1 LaMP-1 4 -- $L1 "${COMMON[@]}" &&
  merge LaMP-1 rep-1-base rep-1-pa-s0 rep-1-pa-s1 rep-1-pa-s2 rep-1-pa-s3
} || exit 1
# LaMP-2M beyond its 53 default users: the users --min-profile 6 adds
# (the first 53 are the set run before, unchanged).
# shellcheck disable=SC2086
{
  part rep-2M-ext-base LaMP-2M-ext-baselines -- $M6 --skip-users 53 --answer-when-done --align-model large --seed 42 --method $BASE &&
  part rep-2M-ext-pa LaMP-2M-ext-persona-agent -- $M6 --skip-users 53 --answer-when-done --align-model large --seed 42 --method persona-agent
} || exit 1
# Config D (README, "Dev split, step 8"): config B with the answer turn
# naming the answer the user's nearest records support
# (`--answer-turn-closeness`), on the sets where the dev users chose it:
# LaMP-2N and LaMP-2M (the labels the nearest records vote for) and LaMP-1
# (the reference closest to the author's papers; every method in both
# orders). The baselines run again with `nearest` (no language model) so
# that every part of a set is paired; LaMP-3 keeps config B below.
D=(--skip-users 20 --answer-when-done --seed 42)
# shellcheck disable=SC2086
{
  part rep-2N-d-base LaMP-2N-D-baselines -- --task LaMP-2N --raw "$RAW" "${D[@]}" --method $BASE,nearest &&
  part rep-2N-d-pa LaMP-2N-D-persona-agent -- --task LaMP-2N --raw "$RAW" "${D[@]}" --answer-turn-closeness --method persona-agent &&
  merge LaMP-2N-D rep-2N-d-base rep-2N-d-pa
} || exit 1
# The other methods and the ablations under config D on LaMP-2N (ReAct and
# MemBank, the paper's two agent baselines; no alignment, no persona, no
# memory, no action), joined with the two parts above into one paired report.
# shellcheck disable=SC2086
{
  part rep-2N-d-abl LaMP-2N-D-ablations -- --task LaMP-2N --raw "$RAW" "${D[@]}" --answer-turn-closeness \
    --method react,membank,no-alignment,no-persona,no-memory,no-action &&
  merge LaMP-2N-D-all rep-2N-d-base rep-2N-d-pa rep-2N-d-abl
} || exit 1
# shellcheck disable=SC2086
{
  part rep-2M-d-base LaMP-2M-D-baselines -- --task LaMP-2M --raw "$RAW" "${D[@]}" --method $BASE,nearest &&
  part rep-2M-d-pa LaMP-2M-D-persona-agent -- --task LaMP-2M --raw "$RAW" "${D[@]}" --answer-turn-closeness --method persona-agent &&
  merge LaMP-2M-D rep-2M-d-base rep-2M-d-pa
} || exit 1
# LaMP-2M under config D on every user after the dev users that the
# --min-profile 6 set has (57: the 33 of the default set, the same users in
# the same order, and 24 more), so that the set has at least 50 report
# users; baselines, PersonaAgent, then ReAct, MemBank and the ablations.
# shellcheck disable=SC2086
{
  part rep-2M6-d-base LaMP-2M6-D-baselines -- $M6 "${D[@]}" --method $BASE,nearest &&
  part rep-2M6-d-pa LaMP-2M6-D-persona-agent -- $M6 "${D[@]}" --answer-turn-closeness --method persona-agent &&
  merge LaMP-2M6-D rep-2M6-d-base rep-2M6-d-pa &&
  part rep-2M6-d-abl LaMP-2M6-D-ablations -- $M6 "${D[@]}" --answer-turn-closeness \
    --method react,membank,no-alignment,no-persona,no-memory,no-action &&
  merge LaMP-2M6-D-all rep-2M6-d-base rep-2M6-d-pa rep-2M6-d-abl
} || exit 1
l1_parts=()
for i in 0 1 2 3; do
  # shellcheck disable=SC2086
  {
    part rep-1d-s$i-base LaMP-1-D-baselines-shard${i}of4 -- $L1 "${D[@]}" --both-orders --shard $i/4 --method $BASE,nearest &&
    part rep-1d-s$i-pa LaMP-1-D-persona-agent-shard${i}of4 -- $L1 "${D[@]}" --both-orders --shard $i/4 --answer-turn-closeness --method persona-agent &&
    merge LaMP-1-D-shard${i}of4 rep-1d-s$i-base rep-1d-s$i-pa
  } || exit 1
  l1_parts+=(rep-1d-s$i-base rep-1d-s$i-pa)
done
merge LaMP-1-D "${l1_parts[@]}" || exit 1
# The ablations, ReAct and MemBank under config D on LaMP-1's 80 report
# users (both orders), shard by shard, joined with the baselines and
# PersonaAgent into one paired report.
l1_all=()
for i in 0 1 2 3; do
  # shellcheck disable=SC2086
  part rep-1d-s$i-abl LaMP-1-D-ablations-shard${i}of4 -- $L1 "${D[@]}" --both-orders --shard $i/4 --answer-turn-closeness \
    --method react,membank,no-alignment,no-persona,no-memory,no-action || exit 1
  l1_all+=(rep-1d-s$i-base rep-1d-s$i-pa rep-1d-s$i-abl)
done
merge LaMP-1-D-all "${l1_all[@]}" || exit 1
# Config B (the 0.5B model writes its own feedback and rewrites; the cost
# goal) with each set's answer step chosen on the dev split (README, "Dev
# split, step 6"): LaMP-3 the answer turn with the records, the others the
# final_answer call; labels without the calls' repeat penalty (167b178).
B=(--skip-users 20 --answer-when-done --seed 42)
# Each shard's baselines and PersonaAgent run one after the other, so a
# shard's paired comparison is ready as soon as its two parts are.
b_parts=()
for i in 0 1 2 3; do
  # shellcheck disable=SC2086
  {
    part rep-3b-s$i-base LaMP-3-B-baselines-shard${i}of4 -- $L3 "${B[@]}" --shard $i/4 --method $BASE &&
    part rep-3b-s$i-pa LaMP-3-B-persona-agent-shard${i}of4 -- $L3 "${B[@]}" --shard $i/4 --answer-turn-records --method persona-agent &&
    merge LaMP-3-B-shard${i}of4 rep-3b-s$i-base rep-3b-s$i-pa
  } || exit 1
  b_parts+=(rep-3b-s$i-base rep-3b-s$i-pa)
done
merge LaMP-3-B "${b_parts[@]}" || exit 1
# ReAct, MemBank and the ablations on LaMP-3 (config B, the answer turn
# with the records), and `nearest` (no language model; the baseline parts
# above ran without it), shard by shard, joined with the parts above.
b_all=()
for i in 0 1 2 3; do
  # shellcheck disable=SC2086
  part rep-3b-s$i-abl LaMP-3-B-ablations-shard${i}of4 -- $L3 "${B[@]}" --shard $i/4 --answer-turn-records \
    --method react,membank,no-alignment,no-persona,no-memory,no-action,nearest || exit 1
  b_all+=(rep-3b-s$i-base rep-3b-s$i-pa rep-3b-s$i-abl)
done
merge LaMP-3-B-all "${b_all[@]}" || exit 1
# PersonaAgent under config D with the 1.5B writer for feedback and
# rewrites (`--align-model large`); compared with the 0.5B writer's part of
# the same set by `bench compare` (one report cannot hold PersonaAgent
# twice), and merged with the baselines below.
# shellcheck disable=SC2086
{
  part rep-2N-d-large LaMP-2N-D-large-persona-agent -- --task LaMP-2N --raw "$RAW" "${D[@]}" --answer-turn-closeness \
    --align-model large --method persona-agent &&
  part rep-2M6-d-large LaMP-2M6-D-large-persona-agent -- $M6 "${D[@]}" --answer-turn-closeness \
    --align-model large --method persona-agent
} || exit 1
# The same for LaMP-1 (config D, both orders) and LaMP-3 (config B, the
# answer turn with the records), in shards of 20 users.
for i in 0 1 2 3; do
  # shellcheck disable=SC2086
  {
    part rep-1d-s$i-large LaMP-1-D-large-persona-agent-shard${i}of4 -- $L1 "${D[@]}" --both-orders --shard $i/4 \
      --answer-turn-closeness --align-model large --method persona-agent &&
    part rep-3b-s$i-large LaMP-3-B-large-persona-agent-shard${i}of4 -- $L3 "${B[@]}" --shard $i/4 \
      --answer-turn-records --align-model large --method persona-agent
  } || exit 1
done
# The 1.5B writer's PersonaAgent beside the baselines, paired: ReAct and
# MemBank come from the ablations' parts, whose no-action aligned with the
# 0.5B writer (so those parts merge without the ablations).
ONE=prompt,icl,rag-1,rag-4,pag-4,react,membank,nearest,persona-agent
METHODS=$ONE merge LaMP-2N-D-large rep-2N-d-base rep-2N-d-abl rep-2N-d-large || exit 1
METHODS=$ONE merge LaMP-2M6-D-large rep-2M6-d-base rep-2M6-d-abl rep-2M6-d-large || exit 1
l1_large=() b_large=()
for i in 0 1 2 3; do
  l1_large+=(rep-1d-s$i-base rep-1d-s$i-abl rep-1d-s$i-large)
  b_large+=(rep-3b-s$i-base rep-3b-s$i-abl rep-3b-s$i-large)
done
METHODS=$ONE merge LaMP-1-D-large "${l1_large[@]}" || exit 1
METHODS=$ONE merge LaMP-3-B-large "${b_large[@]}" || exit 1
echo "=== $(date -u +%FT%TZ) all parts done"
