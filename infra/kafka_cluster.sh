#!/usr/bin/env bash
# A replicated Kafka on loopback: three KRaft nodes, each broker *and* controller, from the same
# cached jars as the single-node stack, with a state dir of their own; stopped by PID file.
#
#   bash infra/kafka_cluster.sh up | down | status | bootstrap | config [NODE] | pid NODE
#   (also: bash infra/stack.sh kafka-cluster ..., make kafka-cluster-up / -down / -status)
#
# Environment (all optional):
#   KAFKA_CLUSTER_PORT (19092): node i (1-3) listens for clients on KAFKA_CLUSTER_PORT+i-1,
#   KAFKA_CLUSTER_CONTROLLER_PORT (KAFKA_CLUSTER_PORT+3): node i's controller on that +i-1,
#   KAFKA_CLUSTER_STATE_DIR (STREAMREC_STATE_DIR/kafka-cluster): node-1..3 (data, config, PID, logs),
#   KAFKA_CLUSTER_HEAP_OPTS (-Xms128m -Xmx512m), and stack.sh's PY, READY_TIMEOUT_S, STOP_TIMEOUT_S,
#   JAVA_HOME, MVN.
# Clients: STREAMREC_KAFKA_BOOTSTRAP=127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094 with
# STREAMREC_REPLICATION_FACTOR=3 (topics get min.insync.replicas=2; producers use acks=all).
#
# Why three combined nodes and not three brokers beside one controller: a single controller is a
# single point of failure (with it gone no partition leader can be elected), and three voters
# keep a quorum when any one node dies, which is the fault this cluster exists to show. Kafka
# advises separate controllers for big clusters; on one machine a fourth JVM only costs memory.
# `up` starts only the nodes that are down, so a killed node comes back with `up`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=infra/stack.sh
source "$here/stack.sh"
say() { printf 'kafka-cluster: %s\n' "$*"; }
die() {
  printf 'kafka-cluster: error: %s\n' "$*" >&2
  exit 1
}

NODES=3
CLUSTER_PORT=${KAFKA_CLUSTER_PORT:-19092}
check_port_var KAFKA_CLUSTER_PORT "$CLUSTER_PORT"
CLUSTER_CONTROLLER_PORT=${KAFKA_CLUSTER_CONTROLLER_PORT:-$((CLUSTER_PORT + NODES))}
check_port_var KAFKA_CLUSTER_CONTROLLER_PORT "$CLUSTER_CONTROLLER_PORT"
((CLUSTER_PORT + NODES - 1 <= 65535 && CLUSTER_CONTROLLER_PORT + NODES - 1 <= 65535)) ||
  die "KAFKA_CLUSTER_PORT/KAFKA_CLUSTER_CONTROLLER_PORT leave no room for $NODES nodes below 65536"
CSTATE=${KAFKA_CLUSTER_STATE_DIR:-$STATE/kafka-cluster}
KAFKA_HEAP_OPTS=${KAFKA_CLUSTER_HEAP_OPTS:--Xms128m -Xmx512m}

node_port() { echo $((CLUSTER_PORT + $1 - 1)); }
node_controller_port() { echo $((CLUSTER_CONTROLLER_PORT + $1 - 1)); }
node_dir() { echo "$CSTATE/node-$1"; }
node_pid() { live_pid "$(node_dir "$1")/kafka.pid" "$(node_dir "$1")/server.properties"; }
cluster_bootstrap() {
  local i out=""
  for ((i = 1; i <= NODES; i++)); do out+="${out:+,}127.0.0.1:$(node_port "$i")"; done
  echo "$out"
}

# One node's server.properties. Replication 3 and min.insync.replicas 2 are also the broker
# defaults, so a topic a client creates without saying (Faust's leader topic) is replicated too.
# A fenced node leaves every ISR after broker.session.timeout.ms (9 s), so acks=all writes wait
# that long at most after a SIGKILL.
cluster_config() {
  local id=$1 voters="" i
  for ((i = 1; i <= NODES; i++)); do
    voters+="${voters:+,}$i@127.0.0.1:$(node_controller_port "$i")"
  done
  echo "# Written by infra/kafka_cluster.sh; edits are overwritten at the next start."
  kraft_properties "$id" "$voters" "PLAINTEXT://127.0.0.1:$(node_port "$id")" \
    "$(node_controller_port "$id")" "" "$(node_dir "$id")/data" 3 2
  cat <<EOF
unclean.leader.election.enable=false
num.io.threads=2
num.replica.fetchers=1
EOF
}

# Start node $1 unless it runs; the caller waits for readiness (all nodes start before any can
# answer: a node needs a quorum of controllers to register).
node_start() {
  local id=$1 pid port ctl
  KDIR=$(node_dir "$id")
  port=$(node_port "$id")
  ctl=$(node_controller_port "$id")
  if pid=$(node_pid "$id"); then
    say "node $id already running (pid $pid, 127.0.0.1:$port)"
    return 0
  fi
  rm -f "$KDIR/kafka.pid"
  port_open "$port" && die "port $port (node $id) is taken by $(port_owner "$port"); stop it or set KAFKA_CLUSTER_PORT"
  port_open "$ctl" && die "controller port $ctl (node $id) is taken by $(port_owner "$ctl"); stop it or set KAFKA_CLUSTER_CONTROLLER_PORT"
  mkdir -p "$KDIR/data" "$KDIR/logs"
  cluster_config "$id" >"$KDIR/server.properties"
  kafka_log4j >"$KDIR/log4j2.properties"
  if [[ ! -f $KDIR/data/meta.properties ]]; then
    kafka_format_storage "node $id" "$CSTATE/cluster.id"
  fi
  say "starting node $id on 127.0.0.1:$port (controller 127.0.0.1:$ctl)"
  local -a cmd
  kafka_cmd kafka.Kafka "$KDIR/server.properties"
  # As stack.sh: out of our session, and without the lock descriptor.
  setsid nohup "${cmd[@]}" >>"$KDIR/kafka.out" 2>&1 </dev/null 9>&- &
  echo "$!" >"$KDIR/kafka.pid"
}

cluster_up() {
  require_py
  check_java
  ensure_jars
  mkdir -p "$CSTATE"
  if [[ ! -s $CSTATE/cluster.id ]]; then
    local cid
    cid=$(kafka_java kafka.tools.StorageTool random-uuid 2>&1 | tail -n 20) || true
    [[ $cid =~ ^[A-Za-z0-9_-]{22}$ ]] || die "Kafka's StorageTool could not make a cluster id: $cid"
    echo "$cid" >"$CSTATE/cluster.id"
  fi
  local i t0=$SECONDS
  for ((i = 1; i <= NODES; i++)); do node_start "$i"; done
  # Ready: every node answers and lists all the brokers (each is asked on its own port).
  for ((i = 1; i <= NODES; i++)); do
    KDIR=$(node_dir "$i")
    if ! "$PY" "$here/wait_ready.py" --kafka "127.0.0.1:$(node_port "$i")" --brokers "$NODES" \
      --timeout "$READY_TIMEOUT_S" --pid "$(<"$KDIR/kafka.pid")"; then
      kafka_show_log
      die "node $i did not become ready (logs: $KDIR/logs/server.log, $KDIR/kafka.out)"
    fi
  done
  say "kafka cluster up: $NODES nodes, bootstrap $(cluster_bootstrap) ($((SECONDS - t0)) s, state: $CSTATE)"
}

# All nodes are told at once: stopped one after the other, the last ones lose their controller
# quorum and wait out STOP_TIMEOUT_S in a controlled shutdown that cannot finish.
cluster_down() {
  local i pid
  local -a pids=()
  for ((i = 1; i <= NODES; i++)); do
    if pid=$(node_pid "$i"); then
      say "stopping node $i (pid $pid)"
      pids+=("$i:$pid")
      kill -TERM "$pid" 2>/dev/null || true
    else
      say "node $i: nothing of ours to stop"
    fi
  done
  for pid in "${pids[@]}"; do stop_pid "node ${pid%%:*}" "${pid#*:}"; done
  for ((i = 1; i <= NODES; i++)); do rm -f "$(node_dir "$i")/kafka.pid"; done
}

cluster_status() {
  require_py
  local i pid rc=0
  for ((i = 1; i <= NODES; i++)); do
    if pid=$(node_pid "$i") && "$PY" "$here/wait_ready.py" --kafka "127.0.0.1:$(node_port "$i")" \
      --timeout 0 --quiet; then
      say "node $i: up (pid $pid, 127.0.0.1:$(node_port "$i"))"
    else
      say "node $i: down (127.0.0.1:$(node_port "$i"))"
      rc=3
    fi
  done
  say "bootstrap: $(cluster_bootstrap)"
  return $rc
}

cluster_main() {
  mkdir -p "$CSTATE"
  exec 9>"$CSTATE/cluster.flock"
  case ${1:-} in
  up | down) flock -w 600 9 || die "another kafka_cluster.sh holds $CSTATE/cluster.flock" ;;
  esac
  case ${1:-} in
  up) cluster_up ;;
  down) cluster_down ;;
  status) cluster_status ;;
  config) cluster_config "${2:-1}" ;;
  bootstrap) cluster_bootstrap ;;
  pid) node_pid "${2:?pid NODE}" ;; # for fault injection: the PID to SIGKILL (exit 1: not running)
  *)
    echo "usage: bash infra/kafka_cluster.sh up|down|status|bootstrap|config [NODE]|pid NODE" >&2
    return 2
    ;;
  esac
}

cluster_main "$@"
