# The course's commands. `make demo` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JOBS ?= 2
PORT ?= 8888

export DO_NOT_TRACK := 1
export MLFLOW_DISABLE_TELEMETRY := true
export BENTOML_DO_NOT_TRACK := true
export DVC_NO_ANALYTICS := 1
export PYTHONDONTWRITEBYTECODE := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# the venv's tools (dvc, mlflow, jupyter) for every recipe and the notebooks they run, activated or not
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# pip prints one harmless warning per package for this machine's extra local indexes: hide those lines only.
PIP_QUIET := grep -v 'is ignored: it is neither a file nor a directory' || true

.PHONY: help venv sandbox images monitoring services browser graphviz lessons demo test test-fast lab labs export lock bench soak clean gpu-check canary docs bench-cohort

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version}"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt 2>&1 | $(PIP_QUIET)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | $(PIP_QUIET)
	$(PY) -c 'import mlops_kit, grader, papermill, sklearn'
	touch $@

venv: $(STAMP)  ## create .venv and install the lock and the project

sandbox:  ## install bubblewrap (the grading sandbox) where we are root on Debian/Ubuntu
	@if command -v bwrap >/dev/null; then echo "bubblewrap: $$(bwrap --version)";\
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then\
	  (apt-get install -y -qq bubblewrap || (apt-get update -qq && apt-get install -y -qq bubblewrap)) >/dev/null;\
	  echo "bubblewrap: $$(bwrap --version)";\
	else echo "Notice: bubblewrap is not installed (sudo apt-get install bubblewrap); grading will refuse to run" \
	  "others' code, and self-checks run unsandboxed.";\
	fi

monitoring:  ## week 11's Prometheus and promtool (apt, as root, where they are missing)
	@if command -v prometheus >/dev/null && command -v promtool >/dev/null; then echo "prometheus: $$(prometheus --version 2>&1 | head -1)";\
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then\
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus || (apt-get update -qq &&\
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus)) >/dev/null;\
	  echo "prometheus: $$(prometheus --version 2>&1 | head -1)";\
	else echo "Notice: prometheus is not installed (sudo apt-get install prometheus); week 11's live checks will say skipped";\
	fi

services:  ## PostgreSQL (the instructors' gradebook, capstone C) and Redis (capstone C's online store): apt, as root, where missing
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v redis-server >/dev/null; then echo "postgresql, redis: installed";\
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then\
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server || (apt-get update -qq &&\
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql redis-server)) >/dev/null;\
	  (service redis-server stop || pkill -x redis-server) >/dev/null 2>&1; echo "postgresql, redis: installed";\
	else echo "Notice: PostgreSQL or Redis is not installed (sudo apt-get install postgresql redis-server); their tests will say skipped";\
	fi

images: venv  ## week 8's podman, runc and debootstrap (apt, as root), the base image and the service's wheelhouse
	$(PY) tools/images.py

demo: venv sandbox images monitoring services graphviz  ## run every lab's reference solution through papermill and the grader; write build/report/
	$(BIN)/mlops-grade demo --report build/report

test: venv sandbox images monitoring services browser graphviz  ## the whole suite: library, notebooks (nbval), labs (reference 100 %, starter ≤ 10 %), grader
	$(BIN)/ruff check grader tests benchmarks tools
	$(BIN)/mlops-grade assign --check
	$(PY) -m pytest -q -n $(JOBS) --dist worksteal tests
	$(PY) -m pytest -q -n $(JOBS) --dist loadfile --nbval-lax -p no:cacheprovider curriculum

test-fast: venv  ## the suite without notebook-executing tests
	$(PY) -m pytest -q -m "not slow" tests

lab: venv graphviz  ## JupyterLab on 127.0.0.1; prints the URL with its token
	@token=$$($(PY) -c 'import secrets; print(secrets.token_hex(16))');\
	root=$$([ "$$(id -u)" = 0 ] && echo --allow-root || true);\
	mkdir -p .mlops/lab-settings;\
	echo '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' \
	  > .mlops/lab-settings/overrides.json;\
	echo "JupyterLab: http://127.0.0.1:$(PORT)/lab?token=$$token";\
	exec $(BIN)/jupyter lab --no-browser --ip 127.0.0.1 --port $(PORT) $$root \
	  --IdentityProvider.token=$$token --ServerApp.root_dir=$(CURDIR) \
	  --LabApp.app_settings_dir=$(CURDIR)/.mlops/lab-settings

graphviz:  ## Graphviz's dot, which draws the lessons' diagrams (apt, as root, where it is missing)
	@if command -v dot >/dev/null; then echo "graphviz: $$(dot -V 2>&1 | head -1)";\
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then\
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz || (apt-get update -qq &&\
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz)) >/dev/null; echo "graphviz: installed";\
	else echo "Notice: graphviz is not installed (sudo apt-get install graphviz); lessons show their diagrams as text";\
	fi

browser:  ## Debian's Chromium for the headless-browser test of `make lab` (apt, as root, where it is missing)
	@if command -v chromium >/dev/null; then echo "chromium: $$(chromium --version 2>/dev/null | head -1)";\
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then\
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium || (apt-get update -qq &&\
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)) >/dev/null; echo "chromium: installed";\
	else echo "Notice: chromium is not installed (sudo apt-get install chromium); the browser test will say skipped";\
	fi

labs: venv  ## regenerate labs/ from solutions/
	$(BIN)/mlops-grade assign

lessons: venv  ## write each lesson's "Common mistakes" section from its lab's wrong-answer cases
	$(PY) tools/mistakes.py

export: venv  ## regenerate mlops_kit/ from curriculum/ (nbdev_export) and clean the notebooks
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean

lock: venv  ## recompile requirements.txt from requirements.in (pip-tools)
	$(BIN)/pip-compile --quiet --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.txt requirements.in
	sed -i -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/' requirements.txt

bench: venv sandbox images monitoring  ## startup and grading benchmarks, as ratios to baselines measured in the same run
	$(PY) benchmarks/run.py

bench-cohort: venv sandbox  ## lab 03's cohort graded by mlops-grade and by nbgrader (own venv), and bare papermill: throughput ratio
	$(PY) benchmarks/bench_cohort.py -n $(or $(N),40) $(if $(COHORT_JOBS),--jobs $(COHORT_JOBS))

soak: venv sandbox  ## one cohort run of N generated lab-10 submissions (default 500): throughput, flat memory, no leaks
	$(PY) benchmarks/soak.py -n $(or $(N),500)

gpu-check: venv  ## week 13's GPU half on CUDA: training, TorchScript/ONNX parity, serving, GPU vs CPU timings (skips without a GPU)
	$(PY) tools/gpu_check.py

canary: venv sandbox images monitoring  ## resolve requirements.in without the lock (newest releases) into build/canary/venv and grade every lab there: build/canary/canary.md
	$(PY) tools/canary.py $(foreach lab,$(LABS),--lab $(lab))

docs: venv graphviz  ## the course as a website: syllabus (90-day plan → weeks → lessons → labs → roadmap), lessons, labs, guides in build/docs/
	$(PY) tools/docs.py --out build/docs

clean:  ## remove build outputs (keeps .venv)
	rm -rf build labs/outputs labs/data solutions/outputs solutions/data curriculum/outputs curriculum/data
