"""AesGcm / ChaCha20Poly1305 behaviour beyond the vectors: engine choice, argument checks,
bad ciphertexts, buffers of every kind."""

from __future__ import annotations

import pytest
from aead_vectors import ENGINES

import ikecore
from ikecore import IntegrityError
from ikecore.aead import AesGcm, ChaCha20Poly1305, available_engines, make_aead

KEYMAT = bytes(range(1, 21))


def test_environment_forces_openssl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IKECORE_AEAD_ENGINE", "openssl")
    assert AesGcm(KEYMAT).engine == "openssl"
    assert ikecore.EspOutbound(0x1000, KEYMAT).aead.engine == "openssl"
    # an explicit argument wins over the environment
    assert AesGcm(KEYMAT, engine="auto").engine == available_engines()[0]


def test_auto_prefers_ipsec_mb_when_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IKECORE_AEAD_ENGINE", raising=False)
    assert AesGcm(KEYMAT).engine == available_engines()[0]
    assert ChaCha20Poly1305(bytes(36)).engine == "openssl"
    monkeypatch.setenv("IKECORE_AEAD_ENGINE", "ipsec-mb")
    assert ChaCha20Poly1305(bytes(36)).engine == "openssl"


def test_unknown_engine_and_base_class() -> None:
    with pytest.raises(ValueError, match="unknown AEAD engine"):
        AesGcm(KEYMAT, engine="hardware")
    with pytest.raises(TypeError, match="use AesGcm"):
        ikecore.aead.Aead()


@pytest.mark.parametrize("engine", ENGINES)
def test_arguments_checked(engine: str) -> None:
    with pytest.raises(ValueError, match="20, 28 or 36"):
        AesGcm(bytes(16), engine=engine)
    with pytest.raises(ValueError, match="icv_len"):
        AesGcm(KEYMAT, 4, engine=engine)
    aead = AesGcm(KEYMAT, engine=engine)
    with pytest.raises(ValueError, match="iv must be 8 bytes"):
        aead.seal(bytes(12), b"", b"")
    with pytest.raises(TypeError):
        aead.seal(bytes(8), "aad", b"")
    with pytest.raises(ValueError, match="out holds"):
        aead.seal_into(bytes(8), b"", bytes(10), bytearray(25))
    with pytest.raises(TypeError):
        aead.seal_into(bytes(8), b"", bytes(10), bytes(26))  # read-only out


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("icv_len", [8, 12, 16])
def test_every_truncation_and_flip_is_an_integrity_error(engine: str, icv_len: int) -> None:
    aead = AesGcm(KEYMAT, icv_len, engine=engine)
    sealed = aead.seal(bytes(8), b"header", b"twenty bytes payload")
    for length in range(len(sealed)):
        with pytest.raises(IntegrityError):
            aead.open(bytes(8), b"header", sealed[:length])
    for bit in range(len(sealed) * 8):
        bad = bytearray(sealed)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(IntegrityError):
            aead.open(bytes(8), b"header", bad)


@pytest.mark.parametrize("engine", ENGINES)
def test_any_bytes_like(engine: str) -> None:
    aead = make_aead("aes-gcm", bytearray(KEYMAT), 16, engine)
    sealed = aead.seal(memoryview(bytes(8)), bytearray(b"aad"), memoryview(b"data"))
    assert aead.open(bytearray(8), memoryview(b"aad"), bytearray(sealed)) == b"data"
    # in place: the ciphertext buffer receives the plaintext
    buffer = bytearray(sealed)
    assert aead.open_into(bytes(8), b"aad", buffer, buffer) == 4 and buffer[:4] == b"data"
