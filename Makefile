# tabletopic — `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: the app (tabletopic and its runtime dependencies: all the quickstart needs, with the broker's
# jars it fetches itself) and the full set-up (dev tools and every service any test or benchmark starts).
APP_STAMP := $(VENV)/.installed-app
STAMP := $(VENV)/.installed
# uv installs the dependencies (several times faster than pip on a fresh machine); pinned, from PyPI,
# into the project's own virtualenv. It also runs `make lock`.
UV_VERSION := 0.13.9
UV_INSTALL := $(BIN)/uv pip install -q --python $(BIN)/python

.PHONY: help app setup quickstart test test-unit lint typecheck check bench lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(APP_STAMP): pyproject.toml
	@command -v java >/dev/null || { echo "Java 17+ is needed (the local Kafka broker): apt-get install -y openjdk-17-jdk-headless"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==$(UV_VERSION)
	$(UV_INSTALL) -e .
	touch $(APP_STAMP)

# Order-only on the app stamp: a venv made by an older Makefile (no app stamp) is completed, not rebuilt.
$(STAMP): pyproject.toml | $(APP_STAMP)
	@command -v mvn >/dev/null || { echo "Maven is needed: apt-get install -y maven"; exit 1; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	 && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; } \
	 || { echo "PostgreSQL is needed (the CDC tests): apt-get install -y postgresql"; exit 1; }
	$(UV_INSTALL) -e '.[dev]'
	@command -v go >/dev/null || { echo "Go is needed to build helm and kubeconform (chart tests): apt-get install -y golang-go"; exit 1; }
	$(BIN)/python -c 'from tabletopic.local import kafka, registry, rest_catalog, spark, trino; kafka.fetch(); kafka.fetch(version=kafka.KAFKA_3_9_VERSION); registry.fetch(); rest_catalog.fetch(); spark.fetch(); trino.fetch()'
	$(BIN)/python -c 'from tabletopic.local import k8s_tools; k8s_tools.fetch_helm(); k8s_tools.fetch_kubeconform(); k8s_tools.kubernetes_schemas()'
	$(BIN)/python -c 'from bench.peer import connect; connect.fetch()'
	$(BIN)/python -c 'from tabletopic.local import debezium; debezium.fetch()'
	$(BIN)/python -c 'from tabletopic.local import hive_metastore, nessie, postgres, s3proxy; nessie.fetch(); postgres.fetch_jdbc_driver(); s3proxy.fetch(); hive_metastore.fetch()'
	touch $(STAMP)

setup: $(STAMP) ## create .venv, install tabletopic and dev tools, fetch Kafka, registry, REST catalog, Spark and Trino (cached)

app: $(APP_STAMP) ## create .venv with tabletopic and its runtime dependencies only (what the quickstart needs)

quickstart: app ## start a local broker (fetched once, ~43 MB), produce sample events, write them to a table, print rows and the audit
	$(BIN)/tabletopic quickstart

# Two processes, a file each at a time, each with its own broker, catalogs and engines; the slowest 40 listed.
test: setup ## every test: unit, integration against a real broker, catalog and S3 server, the compatibility matrix
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=40

test-unit: setup ## unit tests only (no services)
	$(BIN)/pytest -q tests/unit

lint: setup ## ruff, and the import layers (import-linter: [tool.importlinter] in pyproject.toml)
	$(BIN)/ruff check tabletopic tests bench
	$(BIN)/lint-imports

typecheck: setup ## mypy
	$(BIN)/mypy

check: lint typecheck test ## everything CI runs

bench: setup ## throughput, CPU, RSS and freshness against the stage ceiling and Kafka Connect's Iceberg sink (bench/RESULTS.md)
	$(BIN)/python -m bench.run --peer

# uv runs from a throwaway virtualenv here: the lock does not depend on the state of .venv.
LOCK_FLAGS := --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock"

lock: ## rewrite requirements/*.lock: the image's dependencies and build backend, pinned with hashes (Python 3.11, linux x86_64)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT \
	 && $(PYTHON) -m venv "$$tmp/venv" && "$$tmp/venv/bin/pip" install -q uv==$(UV_VERSION) \
	 && "$$tmp/venv/bin/uv" pip compile pyproject.toml $(LOCK_FLAGS) -o requirements/image.lock \
	 && "$$tmp/venv/bin/uv" pip compile requirements/build.in $(LOCK_FLAGS) -o requirements/build.lock

clean: ## remove the virtualenv and local state (not the download cache)
	rm -rf $(VENV) warehouse .tabletopic
