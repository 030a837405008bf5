# mail-proxy developer entry points. Every target creates the project's own
# virtual environment (.venv) on first use, so a fresh machine needs nothing else.
#
# Two installs: `make run` needs the runtime dependencies only (plus aiosmtpd, the debugging
# SMTP server of the quick start); every other target installs the test extra, which brings
# PostgreSQL support, fsspec, the linters, mkdocs and the build frontend as well.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
NAME   ?= demo
PYTEST_ARGS ?=
BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: install run test test-lowest test-faults lint typecheck bench man docs dist image clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUN_STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e . 'aiosmtpd>=1.4.4'
	touch $(RUN_STAMP)

$(STAMP): setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(RUN_STAMP)

install: $(STAMP)

## run: start the instance $(NAME) on the default SQLite database and print where it listens
run: $(RUN_STAMP)
	$(BIN)/mail-proxy start $(NAME)

## test: the whole suite (unit, integration on SQLite and PostgreSQL, system), on
## $(TEST_WORKERS) pytest-xdist workers (TEST_WORKERS=0: in one process). Most tests wait on
## daemons, sockets and disks, so two workers on two cores roughly halve the wall time; more
## make the daemons' start-up deadlines tight on a busy machine. The API tests share one worker
## (their secrets walk sees every response), and so does the fault suite (one daemon under
## fault at a time): tests/conftest.py groups them. The long fault run, which restarts the
## PostgreSQL cluster, is make test-faults, in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

## test-lowest: the CLI tests with the lowest declared version of every runtime dependency
## (.ci/lowest-requirements.txt), in a virtual environment of their own (.venv-lowest)
LOWEST := .venv-lowest
test-lowest:
	test -x $(LOWEST)/bin/python || $(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet --upgrade pip
	$(LOWEST)/bin/python -m pip install --quiet -e '.[postgresql]' pytest pytest-trio aiosmtpd trustme
	$(LOWEST)/bin/python -m pip install --quiet -r .ci/lowest-requirements.txt
	$(LOWEST)/bin/python -m pip check
	$(LOWEST)/bin/python -m pytest tests/unit/test_cli_pure.py tests/system/test_cli_commands.py \
		tests/system/test_cli_interactive.py tests/system/test_new_user.py

## test-faults: the long fault suite (crashes, outages, two nodes, overload, hostile input);
## needs root for the tmpfs of the full-disk case and restarts the local PostgreSQL cluster once
test-faults: $(STAMP)
	$(BIN)/python -m pytest tests/system/faults --faults-long -s -p no:cacheprovider $(PYTEST_ARGS)

## lint: ruff (rules, banned imports, formatting), mypy on the package and import-linter's
## contracts (the layers of the design, setup.cfg [importlinter])
lint: $(STAMP)
	$(BIN)/ruff check mailproxyd tests bench
	$(BIN)/ruff format --check mailproxyd tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

## bench: every benchmark scenario (BENCH_ARGS="--quick", or scenario names: see bench/README.md)
bench: $(BENCH_STAMP)
	@command -v smtp-sink >/dev/null 2>&1 || test -x /usr/sbin/smtp-sink || \
		echo "bench: Postfix's smtp-sink not found, using the Python sink (for the C sink and smtp-source: apt-get install postfix && postfix stop)"
	$(BIN)/python -m bench $(BENCH_ARGS)

man: $(STAMP)
	$(MAKE) -C man

## docs: build the documentation site into build/site; warnings and broken links fail it
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir build/site

## dist: the sdist and the wheel, in dist/
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

## image: the container image mail-proxy (needs a running container engine)
image:
	docker build -t mail-proxy .

clean:
	rm -rf $(VENV) $(LOWEST) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	$(MAKE) -C man clean
