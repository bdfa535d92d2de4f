"""AesGcm / ChaCha20Poly1305 seal and open per call, by size, on each engine, against
pyca/cryptography's AESGCM / ChaCha20Poly1305 ("peer", the call a Python user would make),
plus the IKE SK payload against the same done in Python on cryptography."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305 as PeerChaCha

from ikecore.aead import AesGcm, ChaCha20Poly1305, IkeCipher, available_engines

SIZES = [64, 512, 1400, 9000]
KEYMAT = bytes(range(36))
# The default engine (IKECORE_AEAD_ENGINE honoured) is "ikecore", the other "ikecore <engine>".
DEFAULT_ENGINE = AesGcm(KEYMAT).engine
ENGINES = (DEFAULT_ENGINE, *(e for e in available_engines() if e != DEFAULT_ENGINE))
IV = bytes(range(8))
AAD = bytes(8)

pytestmark = pytest.mark.benchmark(min_time=50e-6, warmup=True, warmup_iterations=2000)


def _impl(engine: str, kind: str = "") -> str:
    parts = ["ikecore", kind, "" if engine == ENGINES[0] else engine]
    return " ".join(p for p in parts if p)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("engine", ENGINES)
def test_seal_ikecore(benchmark: Any, size: int, engine: str) -> None:
    benchmark.group = f"aes-gcm seal {size}B"
    benchmark.extra_info["impl"] = _impl(engine)
    aead = AesGcm(KEYMAT, engine=engine)
    assert len(benchmark(aead.seal, IV, AAD, bytes(size))) == size + 16


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("engine", ENGINES)
def test_seal_into_ikecore(benchmark: Any, size: int, engine: str) -> None:
    benchmark.group = f"aes-gcm seal {size}B"
    benchmark.extra_info["impl"] = _impl(engine, "into")
    aead = AesGcm(KEYMAT, engine=engine)
    out = bytearray(size + 16)
    assert benchmark(aead.seal_into, IV, AAD, bytes(size), out) == size + 16


@pytest.mark.parametrize("size", SIZES)
def test_seal_peer(benchmark: Any, size: int) -> None:
    benchmark.group = f"aes-gcm seal {size}B"
    benchmark.extra_info["impl"] = "peer"
    aead = AESGCM(KEYMAT[:-4])
    assert benchmark(aead.encrypt, KEYMAT[-4:] + IV, bytes(size), AAD) == AesGcm(KEYMAT).seal(
        IV, AAD, bytes(size)
    )


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("engine", ENGINES)
def test_open_ikecore(benchmark: Any, size: int, engine: str) -> None:
    benchmark.group = f"aes-gcm open {size}B"
    benchmark.extra_info["impl"] = _impl(engine)
    aead = AesGcm(KEYMAT, engine=engine)
    sealed = aead.seal(IV, AAD, bytes(size))
    assert benchmark(aead.open, IV, AAD, sealed) == bytes(size)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("engine", ENGINES)
def test_open_into_ikecore(benchmark: Any, size: int, engine: str) -> None:
    benchmark.group = f"aes-gcm open {size}B"
    benchmark.extra_info["impl"] = _impl(engine, "into")
    aead = AesGcm(KEYMAT, engine=engine)
    sealed = aead.seal(IV, AAD, bytes(size))
    out = bytearray(size)
    assert benchmark(aead.open_into, IV, AAD, sealed, out) == size


@pytest.mark.parametrize("size", SIZES)
def test_open_peer(benchmark: Any, size: int) -> None:
    benchmark.group = f"aes-gcm open {size}B"
    benchmark.extra_info["impl"] = "peer"
    aead = AESGCM(KEYMAT[:-4])
    sealed = aead.encrypt(KEYMAT[-4:] + IV, bytes(size), AAD)
    assert benchmark(aead.decrypt, KEYMAT[-4:] + IV, sealed, AAD) == bytes(size)


@pytest.mark.parametrize("size", [64, 1400])
def test_chacha_seal_ikecore(benchmark: Any, size: int) -> None:
    benchmark.group = f"chacha20-poly1305 seal {size}B"
    benchmark.extra_info["impl"] = "ikecore"
    aead = ChaCha20Poly1305(KEYMAT)
    assert len(benchmark(aead.seal, IV, AAD, bytes(size))) == size + 16


@pytest.mark.parametrize("size", [64, 1400])
def test_chacha_seal_peer(benchmark: Any, size: int) -> None:
    benchmark.group = f"chacha20-poly1305 seal {size}B"
    benchmark.extra_info["impl"] = "peer"
    aead = PeerChaCha(KEYMAT[:-4])
    benchmark(aead.encrypt, KEYMAT[-4:] + IV, bytes(size), AAD)


# --- IKE SK payload: a typical 300-byte IKE_AUTH body -----------------------------------------

IKE_HEADER = bytes(range(16)) + bytes([46, 0x20, 35, 0x08]) + bytes(8)
INNER = bytes(300)


def _peer_seal_sk(aead: AESGCM, salt: bytes, counter: list[int], inner: bytes) -> bytes:
    counter[0] += 1
    iv = counter[0].to_bytes(8, "big")
    plaintext = inner + b"\x00"
    payload_len = 4 + 8 + len(plaintext) + 16
    aad = (
        IKE_HEADER[:24]
        + (28 + payload_len).to_bytes(4, "big")
        + bytes([41, 0])
        + payload_len.to_bytes(2, "big")
    )
    return aad + iv + aead.encrypt(salt + iv, plaintext, aad)


def _peer_open_sk(aead: AESGCM, salt: bytes, message: bytes) -> bytes:
    if int.from_bytes(message[24:28], "big") != len(message):
        raise ValueError("length")
    plaintext = aead.decrypt(salt + message[32:40], message[40:], message[:32])
    return plaintext[: len(plaintext) - 1 - plaintext[-1]]


@pytest.mark.parametrize("engine", ENGINES)
def test_sk_seal_ikecore(benchmark: Any, engine: str) -> None:
    benchmark.group = "ike sk seal 300B"
    benchmark.extra_info["impl"] = _impl(engine)
    cipher = IkeCipher(KEYMAT, engine=engine)
    assert len(benchmark(cipher.seal_sk, IKE_HEADER, 41, INNER)) == 28 + 4 + 8 + 301 + 16


def test_sk_seal_peer(benchmark: Any) -> None:
    benchmark.group = "ike sk seal 300B"
    benchmark.extra_info["impl"] = "peer"
    aead = AESGCM(KEYMAT[:-4])
    message = benchmark(_peer_seal_sk, aead, KEYMAT[-4:], [0], INNER)
    assert IkeCipher(KEYMAT).open_sk(message, 28) == (41, INNER)


@pytest.mark.parametrize("engine", ENGINES)
def test_sk_open_ikecore(benchmark: Any, engine: str) -> None:
    benchmark.group = "ike sk open 300B"
    benchmark.extra_info["impl"] = _impl(engine)
    cipher = IkeCipher(KEYMAT, engine=engine)
    message = cipher.seal_sk(IKE_HEADER, 41, INNER)
    assert benchmark(cipher.open_sk, message, 28) == (41, INNER)


def test_sk_open_peer(benchmark: Any) -> None:
    benchmark.group = "ike sk open 300B"
    benchmark.extra_info["impl"] = "peer"
    message = IkeCipher(KEYMAT).seal_sk(IKE_HEADER, 41, INNER)
    assert benchmark(_peer_open_sk, AESGCM(KEYMAT[:-4]), KEYMAT[-4:], message) == INNER
