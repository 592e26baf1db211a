#!/usr/bin/env bash
# The local stack without Docker: one Kafka node (KRaft, broker+controller) and one Redis, both on
# 127.0.0.1, started detached from a state directory and stopped again by PID file.
#
#   bash infra/stack.sh up | down | status | config
#   bash infra/stack.sh kafka-cluster up | down | status | config   (infra/kafka_cluster.sh)
#
# Environment (all optional):
#   KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1), REDIS_PORT (6379),
#   STREAMREC_STATE_DIR (${XDG_STATE_HOME:-~/.local/state}/streamrec): data, configs, PIDs, logs,
#   PY (.venv/bin/python, relative to the repo root): runs infra/wait_ready.py,
#   KAFKA_HEAP_OPTS (-Xms256m -Xmx1g), READY_TIMEOUT_S (120), STOP_TIMEOUT_S (60),
#   REUSE_PROBE_S (5: how long a foreign listener on our port gets to prove it is Kafka/Redis),
#   REDIS_APPENDONLY (no; yes: an append-only file in the state dir, so a killed Redis restarts
#   with its data), JAVA_HOME, MVN (mvn).
#   KAFKA_SASL_SSL_PORT (unset: off): also listen with SASL_SSL (SCRAM-SHA-256/512) on this loopback
#     port, with a CA and broker certificate made by openssl under STATE/kafka/tls (clients trust
#     tls/ca.pem); KAFKA_SASL_USER (streamrec) is created there with KAFKA_SASL_PASSWORD (unset: one
#     generated once into STATE/kafka/sasl.password, mode 600). The plaintext listener stays.
# A second, private stack (bench/chaos.py kills and restarts its broker and Redis) is the same
# script with other ports and another STREAMREC_STATE_DIR; the jars are shared.
#
# Why this shape:
# - Kafka comes from Maven Central (infra/kafka/pom.xml), not a tarball: Maven is on the machines
#   we use and it checks what it downloads. The jars are cached outside the repo, per version,
#   with a stamp written last so that an interrupted download is redone rather than trusted.
# - One stack per machine (the state dir is not inside the checkout): a second clone, or a Kafka
#   and Redis someone started with Docker, is found answering on the port and reused as it is.
# - `up` is idempotent and serialised by flock, so parallel `make test` runs do not race.
# - `down` only stops what this state dir started, identified by PID file *and* command line, so
#   a recycled PID or a foreign service is never signalled.
set -euo pipefail

KAFKA_VERSION=4.1.1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

say() { printf 'stack: %s\n' "$*"; }
die() {
  printf 'stack: error: %s\n' "$*" >&2
  exit 1
}
check_port_var() {
  local name=$1 value=$2
  if ! [[ $value =~ ^[1-9][0-9]{0,4}$ ]] || ((value > 65535)); then
    die "$name=$value is not a TCP port (1-65535)"
  fi
}

KAFKA_PORT=${KAFKA_PORT:-9092}
check_port_var KAFKA_PORT "$KAFKA_PORT"
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
REDIS_PORT=${REDIS_PORT:-6379}
check_port_var KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
check_port_var REDIS_PORT "$REDIS_PORT"
STATE=${STREAMREC_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/streamrec}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/streamrec
LIBS=$CACHE/kafka-$KAFKA_VERSION/libs
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-120}
STOP_TIMEOUT_S=${STOP_TIMEOUT_S:-60}
REUSE_PROBE_S=${REUSE_PROBE_S:-5}
REDIS_APPENDONLY=${REDIS_APPENDONLY:-no}
[[ $REDIS_APPENDONLY == yes || $REDIS_APPENDONLY == no ]] ||
  die "REDIS_APPENDONLY=$REDIS_APPENDONLY: yes or no"
MVN=${MVN:-mvn}
PY=${PY:-.venv/bin/python}
case $PY in /*) ;; *) [[ -x $PY ]] || PY=$repo/$PY ;; esac
if [[ -n ${JAVA_HOME:-} ]]; then JAVA=$JAVA_HOME/bin/java; else JAVA=java; fi

KDIR=$STATE/kafka
RDIR=$STATE/redis
KAFKA_PID=$KDIR/kafka.pid
REDIS_PID=$RDIR/redis.pid
BOOTSTRAP=127.0.0.1:$KAFKA_PORT
REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
KAFKA_SASL_SSL_PORT=${KAFKA_SASL_SSL_PORT:-}
[[ -z $KAFKA_SASL_SSL_PORT ]] || check_port_var KAFKA_SASL_SSL_PORT "$KAFKA_SASL_SSL_PORT"
KAFKA_SASL_USER=${KAFKA_SASL_USER:-streamrec}
[[ $KAFKA_SASL_USER =~ ^[A-Za-z0-9._-]+$ ]] || die "KAFKA_SASL_USER=$KAFKA_SASL_USER: use letters, digits, '.', '_', '-'"
TLS=$KDIR/tls

# ---------------------------------------------------------------- processes and ports

# Prints the PID from $1 if that process is alive and its command line contains $2.
live_pid() {
  local pidfile=$1 pattern=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern" || return 1
  echo "$pid"
}
kafka_pid() { live_pid "$KAFKA_PID" "$KDIR/server.properties"; }
redis_pid() { live_pid "$REDIS_PID" "redis-server"; }

# Alive and not a zombie (a broker that died while `up` waits is our unreaped child).
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

port_open() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Who listens on a port, for the error message: "python3 (pid 123)" when ss may show it.
port_owner() {
  local who
  who=$(ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' |
    head -n1)
  echo "${who:-another process}"
}

require_py() {
  [[ -x $PY ]] || die "no Python at $PY to probe the services; run 'make venv' or set PY=/path/to/python"
}
probe_kafka() { "$PY" "$here/wait_ready.py" --kafka "$BOOTSTRAP" --timeout "$1" "${@:2}"; }
probe_redis() { "$PY" "$here/wait_ready.py" --redis "$REDIS_URL" --timeout "$1" "${@:2}"; }

# ---------------------------------------------------------------- Kafka

check_java() {
  command -v "$JAVA" >/dev/null 2>&1 ||
    die "java not found: Kafka $KAFKA_VERSION needs Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)"
  local version major
  version=$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
  major=${version%%[.+-]*}
  [[ $major == 1 ]] && major=$(echo "$version" | cut -d. -f2)
  [[ $major =~ ^[0-9]+$ ]] || die "cannot read the Java version from '$JAVA -version'"
  ((major >= 17)) || die "java $version is too old: Kafka $KAFKA_VERSION needs Java 17 or newer"
}

# Resolve the broker's jars once into the cache; the stamp carries the pom's hash, so editing the
# pom (another version, another dependency) resolves again. The cache is shared by every state
# dir, so resolving takes its own lock (in a subshell: the lock must not reach the broker).
jars_ready() { [[ -f $LIBS/.complete && $(<"$LIBS/.complete") == "$1" ]]; }
ensure_jars() {
  local pom=$here/kafka/pom.xml want
  want=$(sha256sum "$pom" | cut -d' ' -f1)
  jars_ready "$want" && return 0
  command -v "$MVN" >/dev/null 2>&1 ||
    die "mvn not found: it fetches Kafka's jars from Maven Central once (Debian: apt-get install maven)"
  mkdir -p "$(dirname "$LIBS")"
  (
    flock -w 600 8 || die "another stack.sh has been resolving Kafka's jars for 600 s"
    jars_ready "$want" && exit 0
    say "resolving Kafka $KAFKA_VERSION jars from Maven Central into $LIBS (once)"
    tmp=$(mktemp -d "$(dirname "$LIBS")/libs.tmp.XXXXXX")
    if ! "$MVN" -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
      tail -n 30 "$tmp.log" >&2
      rm -rf "$tmp" "$tmp.log"
      die "Maven could not resolve Kafka's jars (see above)"
    fi
    rm -f "$tmp.log"
    [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || die "Maven gave no kafka_2.13-$KAFKA_VERSION.jar"
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    echo "$want" >"$LIBS/.complete"
  ) 8>"$(dirname "$LIBS")/.resolve.lock" || exit 1
}

# server.properties for a single combined node. Internal topics get replication factor 1 (there
# is one broker) and consumer groups start without the 3 s rebalance delay meant for big groups.
kafka_config() {
  local sasl_listener="" sasl_map=""
  if [[ -n $KAFKA_SASL_SSL_PORT ]]; then
    sasl_listener=",SASL_SSL://127.0.0.1:$KAFKA_SASL_SSL_PORT"
    sasl_map=",SASL_SSL:SASL_SSL"
  fi
  echo "# Written by infra/stack.sh; edits are overwritten at the next start."
  kraft_properties 1 "1@127.0.0.1:$KAFKA_CONTROLLER_PORT" \
    "PLAINTEXT://127.0.0.1:$KAFKA_PORT$sasl_listener" "$KAFKA_CONTROLLER_PORT" "$sasl_map" \
    "$KDIR/data" 1 1
  echo "num.io.threads=4"
  [[ -z $KAFKA_SASL_SSL_PORT ]] || kafka_sasl_config
}

# Format the KRaft storage of the node in $KDIR (its server.properties and data dir) with the
# cluster id in file $2, shared by this stack's node and infra/kafka_cluster.sh's; $1 names the
# node in the messages.
kafka_format_storage() {
  say "formatting $1 storage in $KDIR/data (cluster id $(<"$2"))"
  kafka_java kafka.tools.StorageTool format --ignore-formatted \
    -t "$(<"$2")" -c "$KDIR/server.properties" >>"$KDIR/kafka.out" 2>&1 || {
    kafka_show_log
    die "formatting $1 storage failed"
  }
}

# The server.properties of one combined KRaft node (broker and controller), shared by this
# stack's single node and infra/kafka_cluster.sh's three: $1 node id, $2 controller voters,
# $3 client listeners (also advertised), $4 controller port, $5 extra security-protocol map
# entries, $6 log dir, $7 replication factor of topics and internal topics, $8 their min ISR.
kraft_properties() {
  cat <<EOF
process.roles=broker,controller
node.id=$1
controller.quorum.voters=$2
listeners=$3,CONTROLLER://127.0.0.1:$4
advertised.listeners=$3
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT$5
log.dirs=$6
num.partitions=1
default.replication.factor=$7
min.insync.replicas=$8
offsets.topic.replication.factor=$7
transaction.state.log.replication.factor=$7
transaction.state.log.min.isr=$8
share.coordinator.state.topic.replication.factor=$7
share.coordinator.state.topic.min.isr=$8
group.initial.rebalance.delay.ms=0
num.network.threads=2
log.retention.hours=168
log.segment.bytes=104857600
EOF
}

# The SASL_SSL listener: SCRAM users live in the cluster metadata (no passwords in this file),
# and the broker's certificate in a PKCS12 keystore whose password is a generated file's.
kafka_sasl_config() {
  local pass="(made by 'up')"
  [[ -s $TLS/keystore.pass ]] && pass=$(<"$TLS/keystore.pass")
  cat <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS/broker.p12
ssl.keystore.password=$pass
EOF
}

# A private CA and a broker certificate for 127.0.0.1/localhost, made once with openssl (the CA
# key stays here: delete the tls dir to start over). keytool, where there is one, adds a PKCS12
# truststore for Java clients; Python clients take ca.pem.
ensure_tls() {
  [[ -s $TLS/broker.p12 && -s $TLS/ca.pem && -s $TLS/keystore.pass ]] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl not found: KAFKA_SASL_SSL_PORT needs it for the certificates"
  say "making a CA and a broker certificate in $TLS"
  mkdir -p "$TLS"
  chmod 700 "$TLS"
  (
    cd "$TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=StreamRec local CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      -keyout ca.key -out ca.pem
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout broker.key -out broker.csr
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
      "extendedKeyUsage=serverAuth" >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
      -extfile broker.ext -out broker.pem
    openssl rand -hex 16 >keystore.pass
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
      -passout file:keystore.pass -out broker.p12
    if command -v keytool >/dev/null 2>&1; then
      keytool -importcert -noprompt -alias streamrec-ca -file ca.pem -keystore truststore.p12 \
        -storetype PKCS12 -storepass "$(<keystore.pass)"
    fi
  ) >"$TLS/openssl.log" 2>&1 || {
    tail -n 20 "$TLS/openssl.log" >&2
    die "making the certificates in $TLS failed (see above)"
  }
  chmod 755 "$TLS"
  chmod 600 "$TLS"/*.key "$TLS/keystore.pass"
}

# The SCRAM user, created (or its password updated) over the plaintext listener once the broker
# answers; the password goes through the environment, never a command line.
ensure_scram_user() {
  local password=${KAFKA_SASL_PASSWORD:-}
  if [[ -z $password ]]; then
    if [[ ! -s $KDIR/sasl.password ]]; then
      (umask 077 && openssl rand -hex 16 >"$KDIR/sasl.password")
    fi
    password=$(<"$KDIR/sasl.password")
  fi
  KAFKA_SASL_PASSWORD=$password "$PY" "$here/scram_user.py" --kafka "$BOOTSTRAP" \
    --user "$KAFKA_SASL_USER" || die "could not create the SCRAM user $KAFKA_SASL_USER"
  say "kafka SASL_SSL on 127.0.0.1:$KAFKA_SASL_SSL_PORT (SCRAM user $KAFKA_SASL_USER, CA $TLS/ca.pem)"
}

# Broker logs roll in the state dir (10 MB x 3); the chatty request/state-change loggers are
# turned down to WARN.
kafka_log4j() {
  cat <<EOF
# Written by infra/stack.sh.
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = $KDIR/logs/server.log
appender.file.filePattern = $KDIR/logs/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.clients.name = org.apache.kafka.clients
logger.clients.level = WARN
logger.perf.name = org.apache.kafka.controller.EventPerformanceMonitor
logger.perf.level = WARN
logger.periodic.name = org.apache.kafka.controller.PeriodicTaskControlManager
logger.periodic.level = WARN
EOF
}

# The JVM command line for a Kafka main class; KAFKA_HEAP_OPTS holds several options on purpose.
kafka_cmd() {
  local -a heap
  read -r -a heap <<<"$KAFKA_HEAP_OPTS"
  cmd=("$JAVA" "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    -Dlog4j2.shutdownHookEnabled=false
    -Dlog4j2.configurationFile="$KDIR/log4j2.properties" -cp "$LIBS/*" "$@")
}
kafka_java() {
  local -a cmd
  kafka_cmd "$@"
  "${cmd[@]}"
}

kafka_show_log() {
  local f
  for f in "$KDIR/logs/server.log" "$KDIR/kafka.out"; do
    [[ -s $f ]] || continue
    printf -- '--- last lines of %s ---\n' "$f" >&2
    tail -n 25 "$f" >&2
  done
}

kafka_up() {
  local pid
  if pid=$(kafka_pid); then
    local port
    port=$(cat "$KDIR/kafka.port" 2>/dev/null || echo "?")
    [[ $port == "$KAFKA_PORT" ]] ||
      die "Kafka from $STATE runs on port $port, not $KAFKA_PORT; run 'bash infra/stack.sh down' first or use another STREAMREC_STATE_DIR"
    probe_kafka "$READY_TIMEOUT_S" || {
      kafka_show_log
      die "Kafka (pid $pid) runs but does not answer on $BOOTSTRAP"
    }
    local sasl_port
    sasl_port=$(cat "$KDIR/kafka.sasl_port" 2>/dev/null || true)
    [[ $sasl_port == "$KAFKA_SASL_SSL_PORT" ]] ||
      die "Kafka from $STATE runs with KAFKA_SASL_SSL_PORT='$sasl_port', not '$KAFKA_SASL_SSL_PORT'; run 'bash infra/stack.sh down' first"
    say "kafka already up (pid $pid, $BOOTSTRAP)"
    [[ -z $KAFKA_SASL_SSL_PORT ]] || ensure_scram_user
    return 0
  fi
  rm -f "$KAFKA_PID"
  if port_open "$KAFKA_PORT"; then
    if probe_kafka "$REUSE_PROBE_S" --quiet; then
      say "kafka already up: reusing the broker answering on $BOOTSTRAP (not started from $STATE)"
      return 0
    fi
    die "port $KAFKA_PORT is taken by $(port_owner "$KAFKA_PORT"), which is not a Kafka broker; stop it or set KAFKA_PORT"
  fi
  if port_open "$KAFKA_CONTROLLER_PORT"; then
    die "controller port $KAFKA_CONTROLLER_PORT is taken by $(port_owner "$KAFKA_CONTROLLER_PORT"); stop it or set KAFKA_CONTROLLER_PORT"
  fi
  if [[ -n $KAFKA_SASL_SSL_PORT ]] && port_open "$KAFKA_SASL_SSL_PORT"; then
    die "SASL_SSL port $KAFKA_SASL_SSL_PORT is taken by $(port_owner "$KAFKA_SASL_SSL_PORT"); stop it or set KAFKA_SASL_SSL_PORT"
  fi
  check_java
  ensure_jars
  mkdir -p "$KDIR/data" "$KDIR/logs"
  [[ -z $KAFKA_SASL_SSL_PORT ]] || ensure_tls
  kafka_config >"$KDIR/server.properties"
  kafka_log4j >"$KDIR/log4j2.properties"
  if [[ ! -f $KDIR/data/meta.properties ]]; then
    if [[ ! -s $KDIR/cluster.id ]]; then
      local cid
      cid=$(kafka_java kafka.tools.StorageTool random-uuid 2>&1 | tail -n 20) || true
      if ! [[ $cid =~ ^[A-Za-z0-9_-]{22}$ ]]; then
        printf '%s\n' "$cid" >&2
        die "Kafka's StorageTool could not make a cluster id (see above)"
      fi
      echo "$cid" >"$KDIR/cluster.id"
    fi
    kafka_format_storage "Kafka" "$KDIR/cluster.id"
  fi
  say "starting Kafka $KAFKA_VERSION on $BOOTSTRAP (controller 127.0.0.1:$KAFKA_CONTROLLER_PORT)"
  local -a cmd
  kafka_cmd kafka.Kafka "$KDIR/server.properties"
  # setsid: the broker leaves our session, so Ctrl-C in the shell that ran `up`, or the end of a
  # CI step, does not take it down with it; `down` stops it by PID.
  # 9>&-: the daemon must not inherit the lock, or it would hold it for its whole life.
  setsid nohup "${cmd[@]}" >>"$KDIR/kafka.out" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$KAFKA_PID"
  echo "$KAFKA_PORT" >"$KDIR/kafka.port"
  echo "$KAFKA_SASL_SSL_PORT" >"$KDIR/kafka.sasl_port"
  if ! probe_kafka "$READY_TIMEOUT_S" --pid "$pid"; then
    kafka_show_log
    stop_pid kafka "$pid"
    rm -f "$KAFKA_PID"
    die "Kafka did not become ready on $BOOTSTRAP (logs: $KDIR/logs/server.log, $KDIR/kafka.out)"
  fi
  say "kafka up (pid $pid, $BOOTSTRAP)"
  [[ -z $KAFKA_SASL_SSL_PORT ]] || ensure_scram_user
}

# ---------------------------------------------------------------- Redis

# Debian's redis-server, installed on demand when we may. The package would start its own
# service on 6379 from /etc/redis; we keep it from starting (policy-rc.d, the Debian mechanism
# for exactly this) and disable it, because the instance we use is the one started below.
ensure_redis() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if [[ $(id -u) != 0 ]]; then
    die "redis-server not found; install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) and run again"
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "redis-server not found and no apt-get here; install Redis 6 or newer and run again"
  say "installing redis-server with apt-get (we are root)"
  local made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  local rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    -o DPkg::Lock::Timeout=120 redis-server >/dev/null; } 9>&- || rc=$?
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || die "apt-get install redis-server failed (exit $rc)"
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now redis-server >/dev/null 2>&1 || true
  elif command -v update-rc.d >/dev/null 2>&1; then
    update-rc.d redis-server disable >/dev/null 2>&1 || true
  fi
  local svc
  if svc=$(live_pid /run/redis/redis-server.pid redis-server); then
    say "stopping the redis-server service the package started (pid $svc)"
    stop_pid redis "$svc"
  fi
}

redis_up() {
  local pid
  if pid=$(redis_pid); then
    local port
    port=$(cat "$RDIR/redis.port" 2>/dev/null || echo "?")
    [[ $port == "$REDIS_PORT" ]] ||
      die "Redis from $STATE runs on port $port, not $REDIS_PORT; run 'bash infra/stack.sh down' first or use another STREAMREC_STATE_DIR"
    probe_redis 10 || die "Redis (pid $pid) runs but does not answer PING on $REDIS_URL"
    say "redis already up (pid $pid, 127.0.0.1:$REDIS_PORT)"
    return 0
  fi
  rm -f "$REDIS_PID"
  if port_open "$REDIS_PORT"; then
    if probe_redis "$REUSE_PROBE_S" --quiet; then
      say "redis already up: reusing the Redis answering on 127.0.0.1:$REDIS_PORT (not started from $STATE)"
      return 0
    fi
    die "port $REDIS_PORT is taken by $(port_owner "$REDIS_PORT"), which does not answer Redis PING; stop it or set REDIS_PORT"
  fi
  ensure_redis
  mkdir -p "$RDIR"
  say "starting Redis on 127.0.0.1:$REDIS_PORT"
  # No persistence by default: everything in Redis is a cache the worker rebuilds from Kafka.
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
    --pidfile "$REDIS_PID" --logfile "$RDIR/redis.log" --dir "$RDIR" \
    --save "" --appendonly "$REDIS_APPENDONLY" >/dev/null 9>&- ||
    die "redis-server did not start (log: $RDIR/redis.log)"
  echo "$REDIS_PORT" >"$RDIR/redis.port"
  if ! probe_redis 30; then
    tail -n 20 "$RDIR/redis.log" >&2 || true
    die "Redis did not answer PING on $REDIS_URL"
  fi
  # --daemonize writes the PID file once the server forked; wait for it briefly.
  local i
  for i in $(seq 50); do
    pid=$(redis_pid) && break
    sleep 0.1
  done
  say "redis up (pid ${pid:-?}, 127.0.0.1:$REDIS_PORT)"
}

# ---------------------------------------------------------------- stop, status

# SIGTERM, then SIGKILL after STOP_TIMEOUT_S. Kafka's SIGTERM handler flushes and closes its logs,
# which is what makes the next start fast (no log recovery).
stop_pid() {
  local name=$1 pid=$2 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  say "$name (pid $pid) did not stop within $STOP_TIMEOUT_S s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
}

stop_service() {
  local name=$1 pidfile=$2 pid
  if pid=$("${name}_pid"); then
    say "stopping $name (pid $pid)"
    stop_pid "$name" "$pid"
  else
    say "$name: nothing of ours to stop"
  fi
  rm -f "$pidfile"
}

status_line() {
  local name=$1 port=$2 pid up=down
  if "probe_$name" 0 --quiet; then up=up; fi
  if pid=$("${name}_pid"); then
    say "$name: $up (pid $pid, port $port, started from $STATE)"
  elif [[ $up == up ]]; then
    say "$name: up (pid -, port $port, not started from $STATE)"
  else
    say "$name: down (port $port)"
  fi
  [[ $up == up ]]
}

# ---------------------------------------------------------------- main

lock() {
  mkdir -p "$STATE"
  exec 9>"$STATE/stack.flock"
  flock -w 600 9 || die "another 'stack.sh' holds $STATE/stack.flock for more than 600 s"
}

main() {
  case ${1:-} in
  up)
    require_py
    lock
    local t0=$SECONDS
    kafka_up
    redis_up
    say "ready in $((SECONDS - t0)) s (state: $STATE)"
    ;;
  down)
    lock
    stop_service kafka "$KAFKA_PID"
    stop_service redis "$REDIS_PID"
    ;;
  status)
    require_py
    local rc=0
    status_line kafka "$KAFKA_PORT" || rc=3
    status_line redis "$REDIS_PORT" || rc=3
    return $rc
    ;;
  config)
    # The generated server.properties, for inspection and for the unit tests.
    kafka_config
    ;;
  kafka-cluster)
    # The three-broker cluster lives in its own script, state dir and ports.
    shift
    exec bash "$here/kafka_cluster.sh" "$@"
    ;;
  *)
    echo "usage: bash infra/stack.sh up|down|status|config|kafka-cluster up|down|status|config" >&2
    return 2
    ;;
  esac
}

# infra/kafka_cluster.sh sources this file for its helpers (jars, JVM command line, stop by PID).
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
