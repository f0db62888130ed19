# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both run `make setup` first: a .venv with the `anpr` command, and the Kafka broker jars.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STATE_DIR ?= $(or $(ANPR_STATE_DIR),.anpr)
JARS_STAMP := $(STATE_DIR)/cache/kafka/.fetched

.PHONY: setup tools demo test lint typecheck unit integration rules bench clean help

help:
	@echo "make demo   - set up, start Kafka, run the main job"
	@echo "make test   - set up, lint, type-check, unit and integration tests"
	@echo "make rules  - promtool: check the Prometheus config and rules, run the alert tests"
	@echo "make bench  - benchmarks (prints rates and ratios)"
	@echo "make clean  - stop the local broker, remove .venv, .anpr and ./lake"

setup: $(STAMP) $(JARS_STAMP) tools

# promtool and the Prometheus server (Debian package `prometheus`) for the alert-rule checks and
# the real-scrape test. Installed only when missing, as root or with passwordless sudo. Our tests
# never use the package's own service on :9090: they start their own server on a free port.
#
# PostgreSQL 15 (Debian package `postgresql-15`) for the production-shaped tests: `anpr cluster
# start` runs initdb/pg_ctl on a folder under the state dir. The package's own "main" cluster
# and service are not wanted: createcluster.d tells it not to create one.
tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	  else echo "need promtool and prometheus: run 'apt-get install prometheus' as root"; exit 1; fi; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }
	@test -x /usr/lib/postgresql/15/bin/pg_ctl || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	  else echo "need PostgreSQL 15: run 'apt-get install postgresql-15' as root"; exit 1; fi; \
	  $$sudo mkdir -p /etc/postgresql-common/createcluster.d && \
	  echo "create_main_cluster = false" | $$sudo tee /etc/postgresql-common/createcluster.d/anpr.conf >/dev/null && \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15; }

# Reinstall only when the declared or pinned dependencies change.
$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON): install python3.11 (Debian: apt-get install python3.11 python3.11-venv)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test,demo]"
	touch $@

# `anpr kafka fetch` runs Maven only when the cached jars do not match pipeline/data/kafka/pom.xml;
# `anpr cluster fetch` adds the S3Proxy jars for the production-shaped tests.
$(JARS_STAMP): $(STAMP) pipeline/data/kafka/pom.xml pipeline/data/s3proxy/pom.xml
	ANPR_STATE_DIR=$(STATE_DIR) $(BIN)/anpr kafka fetch
	ANPR_STATE_DIR=$(STATE_DIR) $(BIN)/anpr cluster fetch
	touch $@

demo: setup
	@# Checkouts set up before the query service made these folders with the caller's umask;
	@# anpr refuses personal-data folders that other users can enter (ADR 0004).
	chmod go-rwx $(STATE_DIR) && if [ -d lake ]; then chmod -R go-rwx lake; fi
	ANPR_STATE_DIR=$(STATE_DIR) $(BIN)/anpr demo

lint: setup
	$(BIN)/ruff check pipeline tests benchmarks
	$(BIN)/ruff format --check pipeline tests benchmarks

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit -q

integration: setup
	$(BIN)/pytest tests/integration -q

rules: tools
	promtool check config deploy/prometheus/prometheus.yml
	promtool test rules deploy/prometheus/tests/*.yml

test: lint typecheck
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	-test -x $(BIN)/anpr && ANPR_STATE_DIR=$(STATE_DIR) $(BIN)/anpr kafka stop
	-test -x $(BIN)/anpr && ANPR_STATE_DIR=$(STATE_DIR) $(BIN)/anpr cluster stop
	rm -rf $(VENV) $(STATE_DIR) lake
