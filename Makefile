# One command each for the README: `make test` (all set-up + the whole suite) and `make demo`.
# Both work on a fresh Debian machine with Python >= 3.10; system packages need root (apt-get).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# What CI hands on (benchmark JSON, junit XML, wheels, auditwheel report, phase timings).
ARTIFACTS ?= ci-artifacts
# Debian packages the build and the suite use (installed only when missing). The one place to
# name them: helpers add theirs here (e.g. redis-server, strongswan, tshark).
DEB_PACKAGES = build-essential python3-dev python3-venv libssl-dev libipsec-mb-dev valgrind \
  charon-systemd strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins \
  libstrongswan-extra-plugins tshark tcpdump iproute2 redis-server
# Same pins as [build-system] requires in pyproject.toml (the venv builds without isolation).
BUILD_REQUIRES = "setuptools>=68" wheel "Cython>=3.0.8,<4"
# Everything a rebuild of the installed package depends on.
PACKAGE_SOURCES = setup.py pyproject.toml MANIFEST.in \
	$(wildcard ikecore/*.py ikecore/py.typed _fast/*.py _fast/*.pyx _fast/*.pxd _fast/*.pyi _fast/*.h)
INSTALLED = $(VENV)/.ikecore-installed

.PHONY: deps venv install test lint bench bench-full bench-report demo wheel wheel-check clean \
	fuzz fuzz-valgrind interop-report

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python

# The suite imports the *installed* package (DESIGN.md, import rule), so install, not develop.
# Re-installs only when a source of the package changed since the last install.
$(INSTALLED): $(PACKAGE_SOURCES) | deps venv
	$(BIN)/pip install -q $(BUILD_REQUIRES)
	$(BIN)/pip install -q --no-build-isolation ".[dev]"
	touch $@

install: $(INSTALLED)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# pytest's own exit status is the result: 5 (no test collected) fails like any other.
test: install
	@mkdir -p $(ARTIFACTS)
	$(BIN)/pytest --junitxml=$(ARTIFACTS)/junit.xml

# The README's Interoperability table from the interop cases of the last `make test`
# (tests/interop/ writes $(ARTIFACTS)/interop.json); also kept as $(ARTIFACTS)/interop.md.
interop-report:
	$(BIN)/python tests/interop_report.py $(ARTIFACTS)/interop.json > $(ARTIFACTS)/interop.md
	$(BIN)/python tests/interop_report.py $(ARTIFACTS)/interop.json --readme README.md

# The benchmark suite (benches/conftest.py): `bench` is the quick pass CI runs every time (about
# a minute), `bench-full` the release run (longer rounds, more packet sizes); both fail when a
# ratio falls below its floor in benches/floors.json. `bench-report` rewrites README's
# Performance section and docs/esp-performance.png from the last full run.
bench: install
	@mkdir -p $(ARTIFACTS)
	$(BIN)/pytest benches -q --bench-mode=quick --benchmark-json=$(ARTIFACTS)/bench.json

bench-full: install
	@mkdir -p $(ARTIFACTS)
	$(BIN)/pytest benches -q --bench-mode=full --benchmark-json=$(ARTIFACTS)/bench-full.json

bench-report: install
	$(BIN)/python benches/report.py readme $(ARTIFACTS)/bench-full.json

# Parser fuzzing (tests/fuzz/): FUZZ_RUNS IKE messages (CI: 200,000, a few seconds), FUZZ_RUNS=-1
# until stopped, and FUZZ_RUNS mutated store records. fuzz-valgrind replays the IKE seeds and
# 3,000 mutants, and 3,000 mutated records, under valgrind; errors the bare interpreter already
# shows at start-up (CPython 3.11's int.from_bytes) are suppressed.
FUZZ_RUNS ?= 200000

fuzz: install
	$(BIN)/python tests/fuzz/make_corpus.py build/fuzz-corpus
	$(BIN)/python tests/fuzz/fuzz_parse.py -runs=$(FUZZ_RUNS) build/fuzz-corpus
	$(BIN)/python tests/fuzz/fuzz_record.py $(FUZZ_RUNS)

fuzz-valgrind: install
	rm -rf build/fuzz-valgrind build/fuzz-empty && mkdir -p build/fuzz-empty
	$(BIN)/python tests/fuzz/make_corpus.py build/fuzz-valgrind 3000
	PYTHONMALLOC=malloc valgrind --gen-suppressions=all --log-file=build/valgrind-baseline.log \
	  $(BIN)/python tests/fuzz/fuzz_parse.py --replay build/fuzz-empty
	grep -v '^==' build/valgrind-baseline.log > build/python-baseline.supp
	PYTHONMALLOC=malloc valgrind --suppressions=build/python-baseline.supp \
	  --suppressions=tests/fuzz/third-party.supp --error-exitcode=99 \
	  --leak-check=full --errors-for-leak-kinds=definite \
	  $(BIN)/python tests/fuzz/fuzz_parse.py --replay build/fuzz-valgrind
	# pymalloc stays on here: under PYTHONMALLOC=malloc, CPython 3.11's int("0") (ipaddress
	# parsing the fixtures' addresses) leaves an uninitialised digit that valgrind reports
	# wherever the GC next looks; the ~900-byte records themselves are malloc'd either way.
	valgrind --suppressions=tests/fuzz/third-party.supp --error-exitcode=99 \
	  $(BIN)/python tests/fuzz/fuzz_record.py 3000

# RFC 7791 end to end on loopback UDP as an ordinary user (ikecore/demo.py).
demo: install
	@test -x $(BIN)/ikecore || { echo "demo: the ikecore command is not built yet"; exit 1; }
	$(BIN)/ikecore demo

wheel: install
	rm -rf dist
	$(BIN)/python -m build --outdir dist

# Builds sdist + wheel, checks what they contain, repairs the wheel with auditwheel and runs the
# whole suite against each wheel in a fresh venv, away from the source tree.
wheel-check: install
	PYTHON=$(PYTHON) ARTIFACTS=$(ARTIFACTS) $(BIN)/python .ci/wheel_check.py

clean:
	rm -rf build dist *.egg-info _fast/*.c _fast/*.so $(ARTIFACTS)
