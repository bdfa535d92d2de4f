# One command each for the README: `make test` (all set-up + the whole suite) and `make demo`.
# Both work on a fresh Debian machine with Python >= 3.10; system packages need root (apt-get).

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# Debian packages the build and the suite use (installed only when missing).
DEB_PACKAGES = build-essential libssl-dev libipsec-mb-dev valgrind \
  charon-systemd strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins \
  libstrongswan-extra-plugins tshark tcpdump iproute2

.PHONY: deps venv install test lint bench bench-full demo wheel clean

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

demo: install
	$(BIN)/ikecore demo

wheel: deps venv
	$(BIN)/python -m build

clean:
	rm -rf build dist *.egg-info _fast/*.c _fast/*.so
