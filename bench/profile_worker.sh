#!/usr/bin/env bash
# A diagnostic, not a benchmark: where the one-worker backlog's GIL time goes.
#
#   bash bench/profile_worker.sh OUT_DIR [bench/e2e.py arguments]
#
# Runs `bench/e2e.py` (default: the 300k-event synthetic backlog, one worker, no freshness
# phase) and, once the backlog phase has begun, attaches `py-spy record --gil` (200 Hz, 35 s) to
# the worker. Writes OUT_DIR/pyspy.raw (collapsed stacks), OUT_DIR/pyspy.txt (inclusive and
# self shares of the GIL-holding samples, via bench/pyspy_summary.py), OUT_DIR/stages.txt (each
# sample in one stage of the worker: `pyspy_summary.py --stages`) and OUT_DIR/e2e.json.
# PYSPY_DELAY_S (default 12) and PYSPY_DURATION_S (default 35) place the sampling window.
# Needs the stack up (`make stack-up`) and py-spy (`.venv/bin/pip install py-spy`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
OUT=$(realpath -m "${1:?usage: bench/profile_worker.sh OUT_DIR [e2e.py arguments]}")
shift
[[ $# -eq 0 ]] && set -- --dataset synthetic --synthetic-events 300000 --workers 1 --skip-freshness
SPY=$(dirname "$PY")/py-spy
[[ -x $SPY ]] || SPY=py-spy
mkdir -p "$OUT"
"$PY" bench/e2e.py "$@" --out "$OUT/e2e.json" >"$OUT/e2e.log" 2>&1 &
e2e=$!
trap 'kill $e2e 2>/dev/null || true' EXIT
# The backlog phase starts after the bare-loop baseline; its worker is the run's child (other
# `streamrec worker` processes on the machine, a demo's or a test's, are not sampled).
until grep -q "baseline:" "$OUT/e2e.log"; do
  kill -0 $e2e 2>/dev/null || { cat "$OUT/e2e.log"; exit 1; }
  sleep 1
done
pid=""
for _ in $(seq 1 240); do
  pid=$(pgrep -P $e2e -f "stream_app.cli worker" | head -1 || true)
  [[ -n $pid ]] && break
  sleep 0.5
done
[[ -n $pid ]] || { echo "no worker process found" >&2; exit 1; }
sleep "${PYSPY_DELAY_S:-12}"  # past the worker's start and the group's join: into the backlog
"$SPY" record --gil -p "$pid" -d "${PYSPY_DURATION_S:-35}" -r 200 -f raw -o "$OUT/pyspy.raw" >/dev/null
wait $e2e
trap - EXIT
"$PY" bench/pyspy_summary.py "$OUT/pyspy.raw" >"$OUT/pyspy.txt"
"$PY" bench/pyspy_summary.py "$OUT/pyspy.raw" --stages >"$OUT/stages.txt"
grep "worker(s)" "$OUT/e2e.log"
