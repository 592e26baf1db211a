#!/usr/bin/env bash
# A local Redis Cluster from Debian's redis-server: 3 masters and 3 replicas on 127.0.0.1,
# started detached from a state directory and stopped again by PID file, as infra/stack.sh does.
#
#   bash infra/redis_cluster.sh up | down | status | url
#
# Environment (all optional):
#   REDIS_CLUSTER_PORT (7100): the first node's port; the six nodes use it and the next five,
#   REDIS_CLUSTER_NODE_TIMEOUT_MS (2000): how long a master may be silent before its replica is
#     promoted (Redis' default is 15000; loopback needs no more than this),
#   STREAMREC_STATE_DIR (${XDG_STATE_HOME:-~/.local/state}/streamrec): node dirs under
#     redis-cluster-<first port>/ (configs, nodes.conf, PIDs, logs), READY_TIMEOUT_S (60).
# Why this shape:
# - `up` is idempotent: it starts only the nodes that are not running (a node killed in a test
#   comes back and rejoins as a replica of the master that replaced it, from its nodes.conf) and
#   runs `redis-cli --cluster create` only when no slot is assigned yet.
# - No persistence: the cluster is a cache the worker rebuilds from Kafka, like the single Redis.
# - `down` stops only the PIDs in its own PID files whose command line names their node's port.
set -euo pipefail

say() { printf 'redis-cluster: %s\n' "$*"; }
die() {
  printf 'redis-cluster: error: %s\n' "$*" >&2
  exit 1
}

FIRST=${REDIS_CLUSTER_PORT:-7100}
[[ $FIRST =~ ^[1-9][0-9]{0,4}$ ]] && ((FIRST + 5 <= 65535)) ||
  die "REDIS_CLUSTER_PORT=$FIRST: a TCP port with five more above it"
NODE_TIMEOUT_MS=${REDIS_CLUSTER_NODE_TIMEOUT_MS:-2000}
[[ $NODE_TIMEOUT_MS =~ ^[1-9][0-9]*$ ]] || die "REDIS_CLUSTER_NODE_TIMEOUT_MS=$NODE_TIMEOUT_MS: milliseconds"
READY_TIMEOUT_S=${READY_TIMEOUT_S:-60}
STATE=${STREAMREC_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/streamrec}
CDIR=$STATE/redis-cluster-$FIRST
PORTS=()
for i in 0 1 2 3 4 5; do PORTS+=($((FIRST + i))); done

cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }

# The PID of the node on port $1 if its PID file names a live redis-server on that port.
node_pid() {
  local pidfile=$CDIR/$1/redis.pid pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "redis-server 127.0.0.1:$1" || return 1
  echo "$pid"
}

info_field() { cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"; }

start_node() {
  local port=$1 dir=$CDIR/$1
  if node_pid "$port" >/dev/null; then return 0; fi
  (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null &&
    die "port $port is taken by a process not started from $CDIR; stop it or set REDIS_CLUSTER_PORT"
  mkdir -p "$dir"
  say "starting node 127.0.0.1:$port"
  redis-server --bind 127.0.0.1 --port "$port" --daemonize yes --dir "$dir" \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" --appendonly no \
    --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" \
    --cluster-node-timeout "$NODE_TIMEOUT_MS" >/dev/null ||
    die "redis-server did not start on $port (log: $dir/redis.log)"
}

wait_until() {
  local what=$1 deadline=$((SECONDS + READY_TIMEOUT_S))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || die "timed out after ${READY_TIMEOUT_S}s waiting for $what"
    sleep 0.2
  done
}

all_ping() {
  local port
  for port in "${PORTS[@]}"; do [[ $(cli "$port" ping 2>/dev/null) == PONG ]] || return 1; done
}

# Every node sees the cluster whole: all slots served, all six nodes known.
all_ok() {
  local port
  for port in "${PORTS[@]}"; do
    [[ $(info_field "$port" cluster_state) == ok && $(info_field "$port" cluster_known_nodes) == 6 ]] ||
      return 1
  done
}

up() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    die "redis-server and redis-cli not found (Debian/Ubuntu: sudo apt-get install redis-server)"
  local port
  for port in "${PORTS[@]}"; do start_node "$port"; done
  wait_until "PING on ports ${PORTS[*]}" all_ping
  if [[ $(info_field "$FIRST" cluster_slots_assigned) == 0 ]]; then
    say "creating the cluster (3 masters, 3 replicas)"
    local nodes=()
    for port in "${PORTS[@]}"; do nodes+=("127.0.0.1:$port"); done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$CDIR/create.log" ||
      die "redis-cli --cluster create failed (log: $CDIR/create.log)"
  fi
  wait_until "cluster_state:ok on every node" all_ok
  say "up: redis+cluster://127.0.0.1:$FIRST (nodes ${PORTS[0]}-${PORTS[5]}, state $CDIR)"
}

down() {
  local port pid
  for port in "${PORTS[@]}"; do
    pid=$(node_pid "$port") || continue
    kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while node_pid "$port" >/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    node_pid "$port" >/dev/null && kill -KILL "$pid"
    say "stopped node $port (pid $pid)"
  done
  rm -f "$CDIR"/*/redis.pid
}

status() {
  local port pid rc=0
  for port in "${PORTS[@]}"; do
    if pid=$(node_pid "$port"); then
      printf '  %-6s pid %-8s %s\n' "$port" "$pid" "$(cli "$port" role 2>/dev/null | head -n1)"
    else
      printf '  %-6s down\n' "$port"
      rc=3
    fi
  done
  printf '  cluster_state: %s\n' "$(info_field "$FIRST" cluster_state || true)"
  return $rc
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
url) echo "redis+cluster://127.0.0.1:$FIRST" ;;
*) die "usage: bash infra/redis_cluster.sh up | down | status | url" ;;
esac
