"""Both HMAC-SHA-256 paths of ikecore._fast.prf: the SHA-NI kernel (where the CPU has it) and the
SHA256_Transform one. Importing ``hmac_sha256_path`` into a test module runs each of its tests on
each path the machine has."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ikecore._fast import prf as _prf

PATHS = ["sha-ni", "transform"] if _prf._sha_ni_present() else ["transform"]


@pytest.fixture(autouse=True, params=PATHS)
def hmac_sha256_path(request: pytest.FixtureRequest) -> Iterator[str]:
    previous = _prf._set_sha_ni(request.param == "sha-ni")
    try:
        yield str(request.param)
    finally:
        _prf._set_sha_ni(previous)
