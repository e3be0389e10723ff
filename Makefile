# Two entry points for a fresh machine: `make run` (the default pipeline,
# offline) and `make test`. Both create .venv here if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIPELINE_ARGS ?=
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
	$(BIN)/python -m pytest -q

clean:
	rm -rf outputs .dvc/cache
