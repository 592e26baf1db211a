#!/usr/bin/env bash
# Same-machine A/B of the worker: one bench/e2e.py phase, alternating an older commit (a git
# worktree) and this working tree, so that both sides see the same machine minutes apart.
# Rates on this shared VM swing by +-40% between runs of the same code: read the pairs, not
# one run against a number from another day.
#
#   bash bench/compare.sh BASE_REV [ROUNDS] [-- e2e.py arguments]
#
# Default phase: the one-worker MovieLens-100K backlog (`--dataset movielens100k --workers 1
# --skip-freshness --quality`). Results: bench/results/compare/{base,head}_<round>.json and a
# summary table in bench/results/compare/summary.json (COMPARE_OUT=DIR to write elsewhere).
#
# COMPARE_MODE=concurrent runs the two sides of a round at the same time instead (each
# bench/e2e.py run has its own topics, consumer groups and Redis database): both then see the
# very same machine, which on this VM moves by more than the changes being judged within
# minutes. The machine is fuller (two workers, the broker and Redis on two cores), so read the
# pairs' ratios and CPU per event, not their rates against a run made alone.
#
# BASE_ENV / HEAD_ENV ("NAME=value ...") set environment variables for one side's run (its
# workers inherit them): with BASE_REV = HEAD the same code is compared under two settings, e.g.
#   BASE_ENV="STREAMREC_BATCH_MAX_EVENTS=500" HEAD_ENV="STREAMREC_BATCH_MAX_EVENTS=1000" \
#   COMPARE_MODE=concurrent bash bench/compare.sh HEAD 2 -- --dataset synthetic ...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
BASE=${1:?usage: bench/compare.sh BASE_REV [ROUNDS] [-- e2e.py arguments]}
ROUNDS=${2:-2}
shift $(($# < 2 ? $# : 2))
[[ ${1:-} == "--" ]] && shift
ARGS=("$@")
[[ ${#ARGS[@]} -eq 0 ]] && ARGS=(--dataset movielens100k --workers 1 --skip-freshness --quality)
OUT=$(realpath -m "${COMPARE_OUT:-$ROOT/bench/results/compare}")  # absolute: base runs cd away
mkdir -p "$OUT"
TREE=$(mktemp -d)/base
git worktree add --detach -q "$TREE" "$BASE"
trap 'git worktree remove --force "$TREE"' EXIT
run_side() {  # run_side TREE NAME ENV: one bench/e2e.py run of TREE, results in $OUT/NAME.json
  # shellcheck disable=SC2086  # ENV is a list of NAME=value words
  (cd "$1" && env $3 "$PY" bench/e2e.py "${ARGS[@]}" --out "$OUT/$2.json")
}
for round in $(seq 1 "$ROUNDS"); do
  pids=()
  for side in base head; do
    dir=$ROOT side_env=${HEAD_ENV:-}
    [[ $side == base ]] && dir=$TREE side_env=${BASE_ENV:-}
    echo "[compare] round $round: $side ($(git -C "$dir" rev-parse --short HEAD)) $side_env" >&2
    if [[ ${COMPARE_MODE:-alternate} == concurrent ]]; then
      run_side "$dir" "${side}_${round}" "$side_env" >"$OUT/${side}_${round}.log" 2>&1 &
      pids+=($!)
    else
      run_side "$dir" "${side}_${round}" "$side_env"
    fi
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
done
"$PY" - "$OUT" "$BASE" "$(git rev-parse --short HEAD)" "${ARGS[*]}" "${BASE_ENV:-}" "${HEAD_ENV:-}" <<'EOF'
import json, pathlib, sys

out, base, head, args = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
base_env, head_env = sys.argv[5], sys.argv[6]
keys = ["events_per_s", "events_per_s_with_item_side", "worker_cpu_ms_per_event",
        "worker_cpu_ms_per_event_with_item_side", "freshness_p50_ms", "freshness_p99_ms",
        "baseline_events_per_s"]
rows = []
for path in sorted(out.glob("*_[0-9]*.json")):
    data = json.loads(path.read_text())
    flat = {**data, **data.get("worker_1", {})}
    rows.append({"run": path.stem, **{k: flat.get(k) for k in keys}})
summary = {"base": base, "head": head, "e2e_args": args, "base_env": base_env,
           "head_env": head_env, "runs": rows}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
for row in rows:
    print(row["run"], {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items() if k != "run"})
EOF
