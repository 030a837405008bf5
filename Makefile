# mail-proxy developer entry points. Every target creates the project's own
# virtual environment (.venv) on first use, so a fresh machine needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NAME   ?= demo
PYTEST_ARGS ?=
BENCH_ARGS ?=
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: install run test lint typecheck bench man dist clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## run: start the instance $(NAME) on the default SQLite database and print where it listens
run: $(STAMP)
	$(BIN)/mail-proxy start $(NAME)

## test: the whole suite (unit, integration on SQLite and PostgreSQL, system)
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: ruff (rules, banned imports, formatting) and mypy on the package
lint: $(STAMP)
	$(BIN)/ruff check mailproxyd tests bench
	$(BIN)/ruff format --check mailproxyd tests bench
	$(BIN)/mypy

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

dist: $(STAMP)
	$(BIN)/python -m pip wheel --no-deps -w dist .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	$(MAKE) -C man clean
