"""Fixtures shared by the whole suite.

Every test runs against the installed ikecore (DESIGN.md, import rule) and must leave the
OpenSSL error queue empty (STYLE.md §2): a native call that fails must drain what it caused.

Hypothesis profiles: by default every run explores new random examples (and a failure prints
the example to reproduce it). CI sets ``IKECORE_HYPOTHESIS_PROFILE=ci``: the same examples on
every run, so that a verdict on a commit is reproducible; exploration happens in development
runs, and each bug it finds gets an explicit ``@example`` regression.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from ikecore._fast import _openssl

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("IKECORE_HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def openssl_error_queue_left_empty() -> Iterator[None]:
    _openssl.clear_error_queue()
    yield
    assert _openssl.error_queue_is_empty(), "a native call left an error on OpenSSL's queue"
