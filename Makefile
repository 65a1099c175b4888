# Two commands do everything on a fresh machine:
#   make run    set up, then run the pipeline on the embedded default and print status
#   make test   set up, then lint and run the test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,report]"
	# The PyPI pyright wrapper fetches its npm package on first use; do it now, not mid-job.
	$(BIN)/pyright --version
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/selfalign run $(ARGS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf lake reports spark-warehouse
