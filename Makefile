# cs336_lm — `make demo` runs the whole journey, `make test` runs the tests. Both install what they need into the
# project's virtual environment, .venv/, created with `$(BASE_PYTHON) -m venv` when it is missing (`rm -rf .venv`
# starts afresh). `make test PYTHON=/path/to/python` installs into that interpreter instead and runs everything with
# it; a PYTHON variable in the environment (other tools set one) is not taken for that.
BASE_PYTHON ?= python3
VENV ?= .venv
ifneq ($(origin PYTHON),command line)
PYTHON = $(VENV)/bin/python
endif
# torch==TORCH_VERSION is installed where the interpreter has no torch (its CPU build where one is offered locally);
# an installed torch, CPU or CUDA, is never replaced. Extra pip arguments for that install go in TORCH_PIP_ARGS.
TORCH_VERSION ?= 2.13.0
TORCH_PIP_ARGS ?=
# The lock: the exact versions the test suite last passed with (`make lock` rewrites it). CONSTRAINTS= installs
# the newest releases instead.
CONSTRAINTS ?= constraints.txt
# `make test-latest` and `make lock`: a throwaway venv with the newest releases.
LATEST_VENV ?= .venv-latest
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install install-demo browser postgres test test-fast test-latest lock lint typecheck check format bench clean

# The install stamps live beside the interpreter they describe: in the venv (a new venv installs anew), or in the
# checkout for PYTHON=…. Each depends on the lock too, so a changed lock reinstalls.
ifeq ($(PYTHON),$(VENV)/bin/python)
STAMPS := $(VENV)
VENV_PYTHON := $(VENV)/bin/python
$(VENV_PYTHON):
	$(BASE_PYTHON) -m venv $(VENV)
else
STAMPS := .
VENV_PYTHON :=
endif

# Two installs: `install` (for tests, lint and benchmarks) takes the dev extra: pytest, ruff, the HF and tiktoken
# references, Triton, matplotlib, TensorBoard and wandb. `install-demo` (for `make demo`) takes only the package and
# the plot extra: what the demo imports on a CPU (docs/bench/demo.md measures both).
INSTALL_TORCH = $(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)

# The lock as pip is given it: torch pinned to the installed build, so that pip never swaps it for another, and
# without the lock's line for a package that this torch pins itself (a CUDA build's triton: torch 2.13.0+cu…
# requires triton==3.7.1, where the CPU suite's lock has the newest).
define LOCK_FOR_THIS_TORCH
import importlib.metadata as md, re, sys
name = lambda line: re.sub(r"[-_.]+", "-", re.match(r"\s*([\w.-]*)", line)[1]).lower()
own = {name(r) for r in md.requires("torch") or [] if "==" in r.split(";")[0]}
print(f"torch=={md.version('torch')}")
sys.stdout.writelines(line for line in (open(sys.argv[1]) if sys.argv[1:] else []) if name(line) not in own)
endef
export LOCK_FOR_THIS_TORCH
PIP_INSTALL = $(PYTHON) -c "$$LOCK_FOR_THIS_TORCH" $(CONSTRAINTS) > $(STAMPS)/.install-constraints.txt \
	&& $(PYTHON) -m pip install -q -c $(STAMPS)/.install-constraints.txt -e

install: $(STAMPS)/.install.stamp

install-demo: $(STAMPS)/.install-demo.stamp

$(STAMPS)/.install.stamp: pyproject.toml $(CONSTRAINTS) | $(VENV_PYTHON)
	@$(INSTALL_TORCH)
	$(PIP_INSTALL) ".[dev]"
	@touch $@

$(STAMPS)/.install-demo.stamp: pyproject.toml $(CONSTRAINTS) | $(VENV_PYTHON)
	@$(INSTALL_TORCH)
	$(PIP_INSTALL) ".[plot]"
	@touch $@

# The browser test of lm-serve's page (tests/serve/test_page.py) drives Debian's chromium through Playwright.
# As root with apt-get (CI) it is installed when missing; elsewhere the test is skipped with a note.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser test (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "note: no chromium and no root apt-get: the browser test will be skipped (apt-get install chromium)"; \
	  fi; }

# lm-sweep's shared-study test (tests/sweep/test_shared.py) starts a throwaway PostgreSQL cluster with Debian's
# initdb/pg_ctl. As root with apt-get (CI) PostgreSQL is installed when missing; elsewhere the test is skipped.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing postgresql for the shared-study test (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else \
	    echo "note: no PostgreSQL and no root apt-get: the lm-sweep PostgreSQL test will be skipped (apt-get install postgresql)"; \
	  fi; }

# A run that collects no test exits 5 and fails like any other failure: a broken test path must not pass.
test: install browser postgres
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-fast: install browser postgres
	$(PYTHON) -m pytest -m "not slow" -q $(PYTEST_ARGS)

# Does a new release of a dependency break us? A fresh $(LATEST_VENV) with the newest releases (torch still
# torch==$(TORCH_VERSION)), no lock, then the tests.
test-latest:
	rm -rf $(LATEST_VENV)
	$(MAKE) test VENV=$(LATEST_VENV) PYTHON=$(LATEST_VENV)/bin/python CONSTRAINTS=

# Refresh the lock: `make test-latest`, and when the tests pass, the versions they passed with become constraints.txt
# (torch left out, as it is pinned above; pip's own version is the venv's business).
lock: test-latest
	{ printf '%s\n' \
	  "# The exact versions the test suite last passed with, written by \`make lock\` on $$(date -u +%F) ($$($(LATEST_VENV)/bin/python -V))." \
	  "# \`make install\`, \`make test\` and \`make demo\` install under them (pip install -c). torch is not here:" \
	  "# the Makefile installs torch==TORCH_VERSION where none is installed and keeps an installed one, CPU or CUDA, and a" \
	  "# package that the installed torch pins itself (a CUDA build's triton) keeps that pin rather than this file's." \
	  "# Do not edit by hand: \`make lock\` rewrites it."; \
	  $(LATEST_VENV)/bin/python -m pip freeze --all --exclude-editable \
	    | grep -v -i -E '^(pip|torch|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)=='; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

# mypy over cs336_lm/ ([tool.mypy] in pyproject.toml)
typecheck: install
	$(PYTHON) -m mypy

# what CI runs: style, types, then every test
check: lint typecheck test

format: install
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

# CPU benchmarks; each prints ours beside its reference and the ratio. JSON goes to bench-results/.
bench: install
	@mkdir -p bench-results
	@for s in scripts/bench_*.py; do \
	  case $$s in *bench_kernels.py|*bench_gpu_train.py) continue;; esac; \
	  echo "== $$s"; $(PYTHON) $$s --json bench-results/$$(basename $$s .py).json $(BENCH_ARGS) || exit 1; \
	done

# The venv stays (rm -rf .venv removes it); its install stamps go, so the next make checks the install again.
clean:
	rm -rf $(STAMPS)/.install.stamp $(STAMPS)/.install-demo.stamp $(STAMPS)/.install-constraints.txt $(LATEST_VENV) \
	  .pytest_cache .ruff_cache .hypothesis bench-results

# The whole journey on the embedded story corpus (scripts/demo.py; docs/demo.md), and the real-dataset
# recipes (scripts/datasets.py; docs/datasets.md). Extra lm-train overrides go in ARGS, e.g. ARGS="train.max_steps=100".
ARGS ?=
.PHONY: demo tinystories owt

demo: install-demo
	$(PYTHON) scripts/demo.py $(ARGS)

tinystories: install-demo
	$(PYTHON) scripts/datasets.py tinystories $(ARGS)

owt: install-demo
	$(PYTHON) scripts/datasets.py owt $(ARGS)
