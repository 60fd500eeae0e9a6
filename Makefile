# Two commands for a fresh clone: `make render` and `make test` (`make test-fast`: the unit tests
# only). All set up .venv first.
# `make stack` runs the local Prefect stack (server, work pool, gpu limit, deployments, worker)
# in the foreground; Ctrl-C stops it. `make cluster` stands in for several machines: PostgreSQL,
# an S3 server (SeaweedFS), the Prefect server on PostgreSQL and two workers; Ctrl-C stops it.
# `make gpu-check` renders the studio path at full size on a CUDA GPU with random weights (one
# line and exit 0 without one).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STORY ?= deployments/stories/alin-learns-to-code.txt
OUT ?= out
PORT ?= 4200

.PHONY: setup render test test-fast stack cluster gpu-check chromium postgres clean

setup: $(VENV)/.installed

# torch is pinned first: 2.13.0 resolves to the CPU wheel on CPU machines, and with it in
# place the project's torch range installs nothing more (no multi-GB CUDA download).
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

render: setup
	$(BIN)/faceless render $(STORY) --out $(OUT)

# Four pytest-xdist workers on any number of cores: most slow tests wait on servers, workers,
# heartbeats and leases rather than compute, so two workers a core overlap the waits. A module's
# tests stay on one worker (--dist loadscope), so each module-scoped render or stack is made once.
TEST_WORKERS ?= 4
test: setup chromium postgres
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

# The unit tests only: no render, server, stack, cluster, S3, browser or real Whisper (the
# `slow` marker, see tests/conftest.py); no chromium or PostgreSQL needed.
test-fast: setup
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

stack: setup
	$(BIN)/python deployments/stack.py --port $(PORT)

gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

CLUSTER_PORT ?= 4300
cluster: setup postgres
	$(BIN)/python deployments/cluster.py --port $(CLUSTER_PORT)

# `make cluster` (and its test) run Debian's PostgreSQL server binaries; installed only if
# missing; needs root (CI is).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
	  || { echo "make cluster needs PostgreSQL: apt-get install postgresql" >&2; exit 1; }

# The UI test drives Debian's chromium through playwright (playwright's own browser download
# needs a host that is not reachable here). Installed only if missing; needs root (CI is).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || { echo "make test needs chromium: apt-get install chromium" >&2; exit 1; }

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
