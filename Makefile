# Two commands do everything on a fresh machine:
#   make run    set up, then run the pipeline on the embedded default and print status
#   make test   set up, then lint and run the test suite (what CI runs)
# and one checks a change quickly while working on it:
#   make test-fast  set up, then the unit, security and DataFrame transform tests (no e2e)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TRAIN_STAMP := $(VENV)/.installed-train

.PHONY: run test test-fast test-spark4.0 setup lint jars jars40 bench clean sysdeps sysdeps-run

# Packages are installed by uv (pip-installed into the venv first): the same pinned set as
# pip resolves, about 3x faster (the train extra's torch with its CUDA wheels: 42 s against
# pip's 136 s on a fresh machine). A private index: UV_DEFAULT_INDEX (uv does not read pip.conf).
# `pyright --version` fails set-up, not a job, if pyright or node is unusable.
# --compile-bytecode: pip writes .pyc files at install, uv does not; where
# PYTHONDONTWRITEBYTECODE is set (CI machines and this workplace set it) every process
# then compiles what it imports from source, each time: pyspark, pandas and pyarrow cost
# 2.0 s per process instead of 0.5, torch with transformers 8.9 s instead of 4.0. The suite
# starts hundreds (Spark's Python workers, CLI runs, training ranks): test_train went from
# 159 s to 98 s; compiling costs about 35 s of set-up, once.
UV_INSTALL = $(1)/uv pip install --quiet --compile-bytecode --python $(1)/python
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt uv
	$(call UV_INSTALL,$(BIN)) -c constraints.txt -e ".[spark,test,report,fast-typecheck]"
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

# The train extra for the training tests, and the gpu extra (the pinned vLLM, on the train
# extra's torch) for the vLLM conformance test: torch from PyPI brings its CUDA libraries
# (~6 GB here). `make run` needs neither.
$(TRAIN_STAMP): $(STAMP)
	$(call UV_INSTALL,$(BIN)) -c constraints.txt -e ".[spark,test,report,fast-typecheck,train,gpu]"
	touch $(TRAIN_STAMP)

sysdeps-run:
	$(call ensure_packages,bwrap:bubblewrap)

sysdeps: sysdeps-run
	$(call ensure_packages,chromium:chromium)

setup: $(STAMP) sysdeps

run: $(STAMP) sysdeps-run
	$(BIN)/selfalign run $(ARGS)

# Spark 4.0 with its Delta 4.0 (Databricks 17.x LTS, EMR 8) lives in a venv of its own;
# its Delta jars share ./.ivy under their own coordinate. The main suite runs the seed
# stages on it in local mode and compares the tables with local mode's on the main
# venv's Spark, the same local run a standalone cluster on that Spark is compared with
# (tests/e2e/test_cluster.py, through SELFALIGN_SPARK40_PYTHON); test-spark4.0 runs the
# Delta table layer's tests (MERGE, schema evolution, quoting) and extract's input checks
# (Spark's error conditions) on it.
VENV40 := .venv-spark4.0
SPARK40_TESTS := tests/jobs/test_lake.py \
	tests/jobs/test_extract_stage.py::test_every_bad_input_kind_is_a_reject_with_its_reason \
	tests/jobs/test_extract_stage.py::test_unusable_inputs_are_one_line_before_any_work

# Set-up runs side by side (make -j: the two venvs' installs wait on the network, lint and
# the jar resolutions on the CPU), then the suite on two workers (pytest-xdist, a file per
# worker at a time, the longest modules first: tests/conftest.py) and, beside it, the Spark
# 4.0 tier: it fills the cores the suite leaves idle (its last modules, its waits on
# subprocesses). The tier writes to a log printed after the suite, in a pytest temp folder
# of its own. SELFALIGN_REQUIRE_SANDBOX=1: a sandbox test whose precondition is missing
# (bubblewrap, user namespaces, a cgroup of its own; sysdeps installs bubblewrap as root)
# fails instead of skipping (tests/conftest.py).
PYTEST_WORKERS ?= -n 2 --dist loadfile --no-loadscope-reorder
test:
	$(MAKE) --no-print-directory -j4 --output-sync=target lint jars jars40 sysdeps
	@tier=$$(mktemp -d); \
	$(VENV40)/bin/python -m pytest --basetemp=$$tier/tmp $(SPARK40_TESTS) >$$tier/log 2>&1 & pid=$$!; \
	SELFALIGN_REQUIRE_SANDBOX=1 SELFALIGN_SPARK40_PYTHON=$(CURDIR)/$(VENV40)/bin/python \
	  $(BIN)/python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS); \
	suite=$$?; wait $$pid; spark40=$$?; \
	echo "--- the Spark 4.0 tier ($(VENV40)), run beside the suite:"; cat $$tier/log; rm -rf $$tier; \
	[ $$suite = 0 ] && [ $$spark40 = 0 ]

# The quick check while working on a change: the unit and security tests and the
# DataFrame transform tests (chispa), no e2e or stage tests, no lint, no Spark 4.0 venv
# (850 tests, ~170 s on two cores shared with other jobs); the same set-up as `test` less
# that venv, and its two workers (one was slower). The transform tests first: the longest
# module, it would otherwise start last and run alone. A sandbox test whose precondition
# is missing skips here; `make test` fails it.
FAST_TESTS := tests/jobs/test_transforms.py tests/unit tests/security
test-fast: $(TRAIN_STAMP) jars sysdeps
	$(BIN)/python -m pytest $(PYTEST_WORKERS) $(FAST_TESTS) $(PYTEST_ARGS)

# Resolve the Delta jars with S3A's (for the object-storage tests' local S3 server) into
# ./.ivy now (Maven Central), so no test downloads them; the same set serves runs that
# need only Delta (jobs.core.session.cached_jars). One resolution at a time: the two venvs
# share the Ivy cache.
jars: $(STAMP)
	$(BIN)/python -m jobs.core.session spark.s3a_jars=true

jars40: $(VENV40)/.installed jars
	$(VENV40)/bin/python -m jobs.core.session spark.s3a_jars=true

$(VENV40)/.installed: pyproject.toml constraints-spark4.0.txt
	$(PYTHON) -m venv $(VENV40)
	$(VENV40)/bin/pip install --quiet -c constraints.txt uv
	$(call UV_INSTALL,$(VENV40)/bin) -c constraints-spark4.0.txt -e ".[spark,test,fast-typecheck]"
	touch $@

test-spark4.0: jars40
	$(VENV40)/bin/python -m pytest $(SPARK40_TESTS)

lint: $(STAMP) $(TRAIN_STAMP)
	$(BIN)/ruff check .
	PYRIGHT_PYTHON_IGNORE_WARNINGS=1 $(BIN)/pyright

clean:
	rm -rf lake reports export spark-warehouse
