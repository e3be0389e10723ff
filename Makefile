# Two entry points for a fresh machine: `make run` (the default pipeline,
# offline) and `make test`. Both create .venv here if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIPELINE_ARGS ?=
# The suite on two pytest-xdist workers (TEST_WORKERS=0: one process); tests/conftest.py
# schedules them (which tests share a worker, the longest first).
TEST_WORKERS ?= 2
STAMP := $(VENV)/.installed

.PHONY: run test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/ncsn pipeline $(PIPELINE_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

clean:
	rm -rf outputs .dvc/cache
