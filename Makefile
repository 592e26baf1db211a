# StreamRec: `make demo` and `make test` set up everything they need on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

# Ports of the local stack; the settings read the STREAMREC_* variables derived from them.
KAFKA_PORT ?= 9092
REDIS_PORT ?= 6379
export KAFKA_PORT REDIS_PORT
# First of the six loopback ports of the local Redis Cluster (infra/redis_cluster.sh).
REDIS_CLUSTER_PORT ?= 7100
export REDIS_CLUSTER_PORT
export STREAMREC_KAFKA_BOOTSTRAP ?= 127.0.0.1:$(KAFKA_PORT)
export STREAMREC_REDIS_URL ?= redis://127.0.0.1:$(REDIS_PORT)/0
export PYTHONUNBUFFERED := 1

DATA ?= movielens100k

.PHONY: help venv browser stack-up stack-down stack-status redis-cluster-up redis-cluster-down \
        redis-cluster-status kafka-cluster-up kafka-cluster-down kafka-cluster-status demo demo-stop \
        bench-stream test unit integration lint fmt evaluate train-session bench bench-scale chaos \
        bench-online bench-session bench-dashboard bench-api clean readme

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -U pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed ## create .venv and install the package with its dev tools

# Debian's Chromium for the dashboard's browser test (Playwright drives it; Playwright's own
# browser download cannot run here). Installed once; apt needs root, or sudo without a password.
CHROMIUM ?= /usr/bin/chromium
browser: ## install Debian's headless Chromium for the browser tests (once)
	@test -x $(CHROMIUM) || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo -n ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium; }
	@test -x $(CHROMIUM) || { echo "make browser: $(CHROMIUM) missing after apt-get" >&2; exit 1; }

stack-up: venv ## start Kafka (KRaft) and Redis on 127.0.0.1 (idempotent)
	@bash infra/stack.sh up

stack-down: ## stop what stack-up started
	@bash infra/stack.sh down

stack-status: ## show whether Kafka and Redis are up
	@bash infra/stack.sh status

redis-cluster-up: ## start a local Redis Cluster, 3 masters + 3 replicas on 127.0.0.1:7100-7105 (idempotent)
	@bash infra/redis_cluster.sh up

redis-cluster-down: ## stop what redis-cluster-up started
	@bash infra/redis_cluster.sh down

redis-cluster-status: ## show each node of the local Redis Cluster and the cluster's state
	@bash infra/redis_cluster.sh status

# The replicated Kafka (3 KRaft nodes on 127.0.0.1:19092-19094): point the worker at it with
# STREAMREC_KAFKA_BOOTSTRAP=$$(bash infra/kafka_cluster.sh bootstrap) STREAMREC_REPLICATION_FACTOR=3.
kafka-cluster-up: venv ## start a 3-broker Kafka cluster on 127.0.0.1:19092-19094 (idempotent)
	@bash infra/kafka_cluster.sh up

kafka-cluster-down: ## stop what kafka-cluster-up started
	@bash infra/kafka_cluster.sh down

kafka-cluster-status: ## show whether each node of the Kafka cluster is up
	@bash infra/kafka_cluster.sh status

demo: stack-up ## stack up, worker started, DATA=movielens100k|synthetic replayed, live recs shown, a session model trained and swapped in
	@bash scripts/demo.sh $(DATA)

demo-stop: ## stop the demo's worker (the stack stays up)
	@bash scripts/demo.sh stop

bench-stream: venv ## stream worker throughput on MovieLens-100K (bench/results/stream_worker_movielens100k.json)
	$(PY) bench/stream_worker.py --repeats 3

lint: venv ## ruff lint and format check, and the architecture rules (import contracts)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

fmt: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

unit: venv ## tests that need no services (and the doctests)
	$(PY) -m pytest -m "not integration" tests models stream_app

integration: stack-up browser ## tests against the real Kafka and Redis (and a real browser)
	$(PY) -m pytest -m integration tests

test: lint stack-up browser ## everything: lint, unit tests, doctests, integration tests on the real stack
	$(PY) -m pytest tests models stream_app

evaluate: venv ## prequential evaluation of the online models on DATA
	$(PY) -m stream_app.cli evaluate --dataset $(DATA) --out bench/results/online_$(DATA).json

train-session: venv ## train and evaluate the GRU session model on DATA
	$(PY) -m stream_app.cli train-session --dataset $(DATA) --out bench/results/session_$(DATA).json

bench-dashboard: stack-up browser ## first load of the dashboard with 100k events processed (bench/results/dashboard.json)
	$(PY) bench/dashboard.py --screenshot docs/img/dashboard.png

bench-api: stack-up ## 1,000 concurrent clients on the read API for 30 s, twice (bench/results/api_load.json; ~3 min)
	$(PY) bench/api_load.py

bench: stack-up ## end-to-end benchmark against the real stack (bench/results/e2e.json; ~35 min)
	bash bench/e2e.sh

bench-scale: venv ## 1, 2, 4 workers over 8 partitions on the 3-broker Kafka (bench/results/scale.json; SCALE_ARGS=--redis-cluster: on the Redis Cluster)
	$(PY) bench/scale.py $(SCALE_ARGS)

chaos: venv ## fault injection on a private Kafka and Redis of its own (bench/results/chaos.json)
	$(PY) bench/chaos.py $(CHAOS_ARGS)

bench-online: venv ## online-model quality and speed benchmarks (writes bench/results/)
	bash bench/online.sh

bench-session: venv ## session-model quality, training time and inference latency
	bash bench/session.sh

clean: ## remove the virtualenv and caches (not the stack's state)
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

readme: venv ## regenerate the README's configuration table from the settings
	$(PY) scripts/readme_settings.py README.md
