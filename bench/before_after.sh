#!/usr/bin/env bash
# Throughput before and after a change: bench/throughput.py at an earlier commit and at this
# checkout, one repetition each, alternated, so that both sides see the same machine.
#
#   bash bench/before_after.sh REV [PAIRS] [OUT]     # e.g. bash bench/before_after.sh a95c067 5
#
# REV is checked out in a temporary git worktree; its code runs with its own conf/ (the
# lrlab_conf package is shadowed on PYTHONPATH), in the same virtual environment. Each
# repetition writes OUT/old-K.json and OUT/new-K.json (bench/throughput.py's JSON); an
# interrupted run resumes where it stopped. Read the ratios with
# `python bench/before_after_report.py OUT`.
set -euo pipefail
rev=${1:?usage: bash bench/before_after.sh REV [PAIRS] [OUT]}
pairs=${2:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${3:-$root/bench/results/before_after}
mkdir -p "$out"
old=$(mktemp -d)
shim=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$old/tree" >/dev/null 2>&1 || true; rm -rf "$old" "$shim"' EXIT
git -C "$root" worktree add --detach "$old/tree" "$rev" >/dev/null
ln -s "$old/tree/conf" "$shim/lrlab_conf"
export TF_CPP_MIN_LOG_LEVEL=3
args=(--steps 400 --epochs 4 --variants a b --reps 1)
for k in $(seq 1 "$pairs"); do
  if [ ! -f "$out/old-$k.json" ]; then
    (cd "$old" && PYTHONPATH="$shim:$old/tree" python "$old/tree/bench/throughput.py" \
      "${args[@]}" --json "$out/old-$k.json") > "$out/old-$k.log" 2>&1
  fi
  if [ ! -f "$out/new-$k.json" ]; then
    (cd "$old" && python "$root/bench/throughput.py" "${args[@]}" --json "$out/new-$k.json") \
      > "$out/new-$k.log" 2>&1
  fi
done
python "$root/bench/before_after_report.py" "$out"
