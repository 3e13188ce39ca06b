# cs336_lm — `make demo` runs the whole journey, `make test` runs the tests. Both install what they need.
PYTHON ?= python3
# The CPU build of torch is taken where one is installed or offered locally; an already installed torch
# (CPU or CUDA) is never replaced. Extra pip arguments for the torch install go in TORCH_PIP_ARGS.
TORCH_VERSION ?= 2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: install install-demo browser test test-fast lint typecheck check format bench clean

# Two installs: `install` (for tests, lint and benchmarks) takes the dev extra: pytest, ruff, the HF and tiktoken
# references, Triton, matplotlib, TensorBoard and wandb. `install-demo` (for `make demo`) takes only the package and
# the plot extra: what the demo imports on a CPU (docs/bench/demo.md measures both).
INSTALL_TORCH = $(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)

install: .install.stamp

install-demo: .install-demo.stamp

.install.stamp: pyproject.toml
	@$(INSTALL_TORCH)
	$(PYTHON) -m pip install -q -e ".[dev]"
	@touch $@

.install-demo.stamp: pyproject.toml
	@$(INSTALL_TORCH)
	$(PYTHON) -m pip install -q -e ".[plot]"
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

# A run that collects no test exits 5 and fails like any other failure: a broken test path must not pass.
test: install browser
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-fast: install browser
	$(PYTHON) -m pytest -m "not slow" -q $(PYTEST_ARGS)

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

clean:
	rm -rf .install.stamp .install-demo.stamp .pytest_cache .ruff_cache .hypothesis bench-results

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
