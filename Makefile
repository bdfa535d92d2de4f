# One command each for the README: `make test` (all set-up + the whole suite) and `make demo`.
# Both work on a fresh Debian machine with Python >= 3.10; system packages need root (apt-get).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# Debian packages the build and the suite use (installed only when missing).
DEB_PACKAGES = build-essential libssl-dev libipsec-mb-dev valgrind

.PHONY: deps venv install test lint bench bench-full demo wheel clean fuzz fuzz-valgrind

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python

# The suite imports the *installed* package (DESIGN.md, import rule), so install, not develop.
install: deps venv
	$(BIN)/pip install -q "Cython>=3.0.8,<4" "setuptools>=68" wheel
	$(BIN)/pip install -q --no-build-isolation ".[dev]"

lint: install
	$(BIN)/ruff check ikecore tests benches
	$(BIN)/mypy

test: install
	$(BIN)/pytest

bench: install
	$(BIN)/pytest benches -q --benchmark-disable-gc --benchmark-min-rounds=5 --benchmark-max-time=0.2

# IKE parser fuzzing (tests/fuzz/): FUZZ_RUNS inputs (CI: 200,000, a few seconds), FUZZ_RUNS=-1
# until stopped. fuzz-valgrind replays the seeds and 3,000 mutants under valgrind; errors the
# bare interpreter already shows at start-up (CPython 3.11's int.from_bytes) are suppressed.
FUZZ_RUNS ?= 200000

fuzz: install
	$(BIN)/python tests/fuzz/make_corpus.py build/fuzz-corpus
	$(BIN)/python tests/fuzz/fuzz_parse.py -runs=$(FUZZ_RUNS) build/fuzz-corpus

fuzz-valgrind: install
	rm -rf build/fuzz-valgrind build/fuzz-empty && mkdir -p build/fuzz-empty
	$(BIN)/python tests/fuzz/make_corpus.py build/fuzz-valgrind 3000
	PYTHONMALLOC=malloc valgrind --gen-suppressions=all --log-file=build/valgrind-baseline.log \
	  $(BIN)/python tests/fuzz/fuzz_parse.py --replay build/fuzz-empty
	grep -v '^==' build/valgrind-baseline.log > build/python-baseline.supp
	PYTHONMALLOC=malloc valgrind --suppressions=build/python-baseline.supp --error-exitcode=99 \
	  --leak-check=full --errors-for-leak-kinds=definite \
	  $(BIN)/python tests/fuzz/fuzz_parse.py --replay build/fuzz-valgrind

demo: install
	$(BIN)/ikecore demo

wheel: deps venv
	$(BIN)/python -m build

clean:
	rm -rf build dist *.egg-info _fast/*.c _fast/*.so
