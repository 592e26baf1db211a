#!/usr/bin/env bash
# The live demo: events replayed through Kafka, a Faust worker turning them into recommendations
# in Redis, a console view of throughput, lag and live recommendations, then one cycle of the
# session-model trainer on the replayed events and the worker swapping the new version in.
#
#   bash scripts/demo.sh [movielens100k|synthetic|FILE]   (what `make demo DATA=...` runs)
#   bash scripts/demo.sh stop                             stop the demo's worker and API
#   bash scripts/demo.sh status                           is the demo's worker running?
#
# Needs the stack (`make stack-up`). Leaves the stack, the worker and the read API (with the live
# dashboard at http://127.0.0.1:$DEMO_API_PORT/) running afterwards, so the recommendations stay
# readable; `stop` ends the worker and the API.
#
# Environment (optional): DEMO_SECONDS (60) how long the replay should last; DEMO_API_PORT (8080);
# DEMO_TRAIN_FLAGS (train-session flags of the one training run after the replay);
# PY (.venv/bin/python); STREAMREC_* settings (the Makefile exports the stack's addresses).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
[[ -x $PY ]] || PY=python3
STATE=${STREAMREC_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/streamrec}
RUN=$STATE/worker
PIDFILE=$RUN/worker.pid
LOG=$RUN/worker.log
DEMO_SECONDS=${DEMO_SECONDS:-60}
DEMO_API_PORT=${DEMO_API_PORT:-8080}
# A short schedule so the demo stays quick; the periodic trainer uses the dataset's preset.
DEMO_TRAIN_FLAGS=${DEMO_TRAIN_FLAGS:---epochs 6 --max-train-seconds 40}
API_PIDFILE=$RUN/api.pid
API_LOG=$RUN/api.log

say() { printf 'demo: %s\n' "$*"; }

# The PID file names our worker only if that PID still runs `stream_app.cli worker`: a recycled
# PID must never be signalled.
worker_pid() {
  [[ -f $PIDFILE ]] || return 1
  local pid
  pid=$(<"$PIDFILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "stream_app.cli worker" || return 1
  echo "$pid"
}

stop_worker() {
  local pid
  if ! pid=$(worker_pid); then
    say "no demo worker running"
    rm -f "$PIDFILE"
    return 0
  fi
  say "stopping worker (pid $pid, SIGTERM)"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; say "worker stopped"; return 0; }
    sleep 0.5
  done
  say "worker $pid did not stop within 30 s; it is still running (log: $LOG)"
  return 1
}

start_worker() {
  local pid
  if pid=$(worker_pid); then
    say "reusing the running worker (pid $pid, log $LOG)"
    return 0
  fi
  mkdir -p "$RUN"
  local from=0
  [[ -f $LOG ]] && from=$(wc -l <"$LOG")
  # setsid + nohup: the worker outlives this script and the terminal.
  setsid nohup "$PY" -m stream_app.cli worker >>"$LOG" 2>&1 </dev/null &
  local started=$!
  echo "$started" >"$PIDFILE"
  say "worker starting (pid $started, log $LOG)"
  for _ in $(seq 1 120); do
    if tail -n +"$((from + 1))" "$LOG" 2>/dev/null | grep -q "Worker\]: Ready"; then
      say "worker ready"
      return 0
    fi
    # Alive is enough here: on a loaded machine the child may not have exec'd python yet, so
    # its command line (what worker_pid checks) can still be the shell's.
    if ! kill -0 "$started" 2>/dev/null; then
      say "the worker exited during start-up; last lines of $LOG:"
      tail -n 20 "$LOG" >&2
      return 1
    fi
    sleep 0.5
  done
  say "worker not ready after 60 s; see $LOG"
  return 1
}

# The read API and its dashboard: started once, left running like the worker.
api_pid() {
  [[ -f $API_PIDFILE ]] || return 1
  local pid
  pid=$(<"$API_PIDFILE")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "stream_app.cli api" || return 1
  echo "$pid"
}

start_api() {
  local pid
  if pid=$(api_pid); then
    say "reusing the running API (pid $pid): dashboard at http://127.0.0.1:$DEMO_API_PORT/"
    return 0
  fi
  mkdir -p "$RUN"
  setsid nohup "$PY" -m stream_app.cli api --port "$DEMO_API_PORT" >>"$API_LOG" 2>&1 </dev/null &
  echo $! >"$API_PIDFILE"
  for _ in $(seq 1 40); do
    # Any HTTP answer will do: /health says 503 "degraded" until the worker first reports.
    if "$PY" -c "import urllib.request as u, urllib.error as e
try: u.urlopen('http://127.0.0.1:$DEMO_API_PORT/health', timeout=1)
except e.HTTPError: pass" 2>/dev/null; then
      say "live dashboard: http://127.0.0.1:$DEMO_API_PORT/ (read API log $API_LOG)"
      return 0
    fi
    sleep 0.25
  done
  say "the read API did not answer on port $DEMO_API_PORT (see $API_LOG); the demo goes on without it"
}

stop_api() {
  local pid
  if pid=$(api_pid); then
    kill -TERM "$pid" && say "read API stopped (pid $pid)"
  fi
  rm -f "$API_PIDFILE"
}

case ${1:-movielens100k} in
  stop) stop_api; stop_worker; exit $? ;;
  status)
    if pid=$(worker_pid); then say "worker running (pid $pid, log $LOG)"; else say "no worker"; fi
    exit 0 ;;
esac

DATA=${1:-movielens100k}
case $DATA in
  movielens100k | synthetic) EVENTS=100000 ;;
  *)
    [[ -f $DATA ]] || { say "DATA must be movielens100k, synthetic or an event file: $DATA"; exit 2; }
    EVENTS=$(grep -c . "$DATA") ;;
esac
RATE=$(( (EVENTS + DEMO_SECONDS - 1) / DEMO_SECONDS ))

say "creating topics"
"$PY" -m stream_app.cli topics
start_worker
start_api

if [[ $DATA == movielens100k || $DATA == synthetic ]]; then
  say "publishing $DATA's item catalog (titles, categories) to the compacted items topic"
  "$PY" -m stream_app.cli produce --items --dataset "$DATA" --no-progress
fi
say "replaying $DATA: $EVENTS events at $RATE events/s (~${DEMO_SECONDS} s), timestamps moved to now"
say "every 3 s: events/s processed, consumer lag, dead letters, and three users' live recommendations"
"$PY" -m stream_app.cli watch --interval 3 --duration $((DEMO_SECONDS + 15)) &
WATCH=$!
trap 'kill "$WATCH" 2>/dev/null || true' EXIT
"$PY" -m stream_app.cli produce --dataset "$DATA" --rate "$RATE" --retime --invalid 20 --no-progress
wait "$WATCH" || true
trap - EXIT

# The periodic trainer's cycle, once: the GRU trained on the replayed events (a short schedule,
# DEMO_TRAIN_FLAGS), saved in the model store and announced; the worker gates and swaps it in.
TRAIN_LOG=$RUN/train.log
TRAIN_OUT=$RUN/demo_session.json
FROM=$(stat -c %s "$LOG")
say "training the session model once on the replayed events ($DEMO_TRAIN_FLAGS; log $TRAIN_LOG)"
TRAIN_START=$(date +%s)
# shellcheck disable=SC2086
if "$PY" -m stream_app.cli train-session --dataset kafka --publish always --no-progress \
    --out "$TRAIN_OUT" $DEMO_TRAIN_FLAGS >>"$TRAIN_LOG" 2>&1; then
  say "trained in $(( $(date +%s) - TRAIN_START )) s: $(grep -o 'gru .*Recall@20 [0-9.]*  MRR@20 [0-9.]*' "$TRAIN_LOG" | tail -1)"
  "$PY" scripts/demo_swap.py "$TRAIN_OUT" "$LOG" --since "$FROM" || true
else
  say "training failed; last lines of $TRAIN_LOG:"
  tail -n 5 "$TRAIN_LOG" >&2
fi

cat <<EOF_HELP

demo: done. Kafka, Redis and the worker are still running:
  - live dashboard:   http://127.0.0.1:$DEMO_API_PORT/   (the read API: /recommendations/<user_id>, /metrics)
  - recommendations:  $PY -m stream_app.cli watch --user <user_id>   (Redis key streamrec:v1:recs:<user_id>)
  - dead letters:     topic events.dlq (20 malformed events were mixed in on purpose)
  - worker log:       $LOG
  - stop the worker and the API:  bash scripts/demo.sh stop
  - stop the stack:   make stack-down
EOF_HELP
