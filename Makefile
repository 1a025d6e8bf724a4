# The two commands a new user runs: `make demo` and `make test`. Everything else is optional.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
KEY    := data/.pseudonym_key

export DAGSTER_HOME       ?= $(CURDIR)/data/dagster_home
export ML_ASSETS_DATA_DIR ?= $(CURDIR)/data

.PHONY: install demo test test-cluster fuzz dev lint format bench clean-data

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,cluster,mlflow]'
	touch $(STAMP)

# A random key per checkout, kept out of git and readable by its owner only: pseudonyms are
# stable across runs on this machine.
# In production, set ML_ASSETS_PSEUDONYM_KEY from your secret store instead.
$(KEY):
	umask 077 && mkdir -p $(dir $(KEY)) && $(PY) -c "import secrets; print(secrets.token_hex(32))" > $(KEY)

demo: install $(KEY)
	chmod 700 data  # git checks the folder out world-readable; it will hold personal data
	ML_ASSETS_PSEUDONYM_KEY=$${ML_ASSETS_PSEUDONYM_KEY:-$$(cat $(KEY))} $(PY) -m ml_assets.demo

# two workers: the daemon and fault tests mostly wait on `dagster dev`, the rest share the other core
test: install
	$(PY) -m pytest -n 2 --dist loadgroup -m "not cluster"

# new draws of the landing fuzz suite, many more than `make test` runs (its cases are fixed)
fuzz: install
	HYPOTHESIS_PROFILE=explore ML_ASSETS_FUZZ_EXAMPLES=$${ML_ASSETS_FUZZ_EXAMPLES:-2000} \
		$(PY) -m pytest -p no:xdist ml_assets_tests/assets/test_landing_fuzz.py -k read_whole

# the cluster profile: its storage on an S3 emulator (moto) in process, then its services
# (Postgres, Redis, moto, two Celery workers) started on 127.0.0.1 by the test and stopped by
# PID; skips, saying what is missing, without them. Alone, one test at a time: the emulator's
# loopback traffic slowed the tests beside it tenfold
test-cluster: install
	$(PY) -m pytest -m cluster -p no:xdist -rs ml_assets_tests/cluster

# dagster dev through a wrapper that stops it and everything it started on SIGTERM or Ctrl-C
dev: install $(KEY)
	chmod 700 data
	ML_ASSETS_PSEUDONYM_KEY=$${ML_ASSETS_PSEUDONYM_KEY:-$$(cat $(KEY))} exec $(PY) -m ml_assets.devserver --host 127.0.0.1 --port 3000

lint: install
	$(VENV)/bin/ruff check ml_assets ml_assets_tests bench
	$(VENV)/bin/ruff format --check ml_assets ml_assets_tests bench

format: install
	$(VENV)/bin/ruff check --fix ml_assets ml_assets_tests bench
	$(VENV)/bin/ruff format ml_assets ml_assets_tests bench

bench: install
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_event_log.py
	$(PY) bench/bench_training.py
	$(PY) bench/bench_drift.py
	$(PY) bench/bench_daemon.py
	$(PY) bench/bench_governance.py
	$(PY) bench/bench_governance.py --days 8 --rows-per-day 1000000
	$(PY) bench/bench_cluster.py

# Forget every materialization and table (keeps the landing files, completed annotations included).
clean-data:
	rm -rf data/warehouse.duckdb data/models data/reports data/quarantine data/archive data/annotation/batches
	find data/dagster_home -mindepth 1 ! -name dagster.yaml -exec rm -rf {} +
