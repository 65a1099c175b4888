# Two commands do everything on a fresh machine:
#   make run    set up, then run the pipeline on the embedded default and print status
#   make test   set up, then lint and run the test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup lint bench clean sysdeps sysdeps-run

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[spark,test,report]"
	# Fail here, not mid-job, if pyright or node is unusable.
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(BIN)/pyright --version
	touch $(STAMP)

# System packages: bubblewrap isolates generated code (sandbox), chromium renders the
# report in its test. Installed with apt when missing and we are root (CI, containers);
# otherwise the sandbox refuses to run unisolated and the browser test is skipped.
define ensure_packages
	@missing=""; for pair in $(1); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: missing system packages:$$missing"; fi; \
	fi
endef

sysdeps-run:
	$(call ensure_packages,bwrap:bubblewrap)

sysdeps: sysdeps-run
	$(call ensure_packages,chromium:chromium)

setup: $(STAMP) sysdeps

run: $(STAMP) sysdeps-run
	$(BIN)/selfalign run $(ARGS)

test: $(STAMP) sysdeps
	$(BIN)/ruff check .
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(BIN)/pyright
	# Resolve the Delta jars into ./.ivy now (Maven Central), so no test downloads them.
	$(BIN)/python -m jobs.core.session
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(BIN)/pyright

clean:
	rm -rf lake reports export spark-warehouse
