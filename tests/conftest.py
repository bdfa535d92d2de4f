"""Fixtures shared by the whole suite.

Every test runs against the installed ikecore (DESIGN.md, import rule) and must leave the
OpenSSL error queue empty (STYLE.md §2): a native call that fails must drain what it caused.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ikecore._fast import _openssl


@pytest.fixture(autouse=True)
def openssl_error_queue_left_empty() -> Iterator[None]:
    _openssl.clear_error_queue()
    yield
    assert _openssl.error_queue_is_empty(), "a native call left an error on OpenSSL's queue"
