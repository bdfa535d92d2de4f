"""The package imports from its installed location and exposes API.md's basic names."""

from __future__ import annotations

import pathlib

import pytest

import ikecore
from ikecore import CloneRefused, MalformedMessage, NotifyType, RemoteProtocolError
from ikecore._fast import _openssl


def test_imports_the_installed_compiled_core() -> None:
    compiled = pathlib.Path(_openssl.__file__)
    assert compiled.suffix in {".so", ".pyd"}
    assert _openssl.openssl_version_number() >= 0x30000000


def test_constants_match_iana() -> None:
    assert NotifyType.CLONE_IKE_SA_SUPPORTED == 16432
    assert NotifyType.CLONE_IKE_SA == 16433
    assert ikecore.EncrId.AES_GCM_16 == 20
    assert ikecore.PrfId.HMAC_SHA2_256 == 5
    assert ikecore.DhGroup.CURVE25519 == 31
    assert NotifyType.NO_ADDITIONAL_SAS.is_error
    assert not NotifyType.COOKIE2.is_error


def test_errors_carry_their_meaning() -> None:
    err = MalformedMessage("payload length below 4", offset=32)
    assert err.offset == 32 and "32" in str(err)
    assert isinstance(err, ikecore.IkeError)
    remote = RemoteProtocolError("critical payload 99", NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD)
    assert remote.notify_type == 1
    assert CloneRefused("NO_ADDITIONAL_SAS").reason == "NO_ADDITIONAL_SAS"
    with pytest.raises(ValueError, match="unknown clone refusal"):
        CloneRefused("BECAUSE")
