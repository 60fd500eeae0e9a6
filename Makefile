# Two commands for a fresh clone: `make render` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STORY ?= deployments/stories/alin-learns-to-code.txt
OUT ?= out

.PHONY: setup render test clean

setup: $(VENV)/.installed

# torch is pinned first: 2.13.0 resolves to the CPU wheel on CPU machines, and with it in
# place the project's torch range installs nothing more (no multi-GB CUDA download).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

render: setup
	$(BIN)/faceless render $(STORY) --out $(OUT)

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
