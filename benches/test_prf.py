"""PRF, prf+ and the IKE SA key schedule: ikecore against what a Python user would write instead.

Peers, measured in the same run on the same inputs (and checked to give the same bytes):
  "peer"       the standard library: one keyed ``hmac`` object, copied for every prf+ block
               (faster here than ``hmac.digest`` per block, which re-fetches the digest)
  "peer-best"  the fastest pure-Python approach found: pyca/cryptography HMAC objects, keyed
               once and copied for every block
  "c-limit"    the same derivation as a C loop over the SHA-256 code the Cython core runs (its
               SHA-NI HMAC kernel where the CPU has SHA-NI, else OpenSSL's SHA256_Transform;
               benches/prf_c_loop.c): the practical limit on this machine for a plain
               sequential loop. It keys each HMAC with two single-lane compressions one after
               the other; ikecore runs those two interleaved (SHA256RNDS2 is latency-bound), so
               its ratio to the c-limit can reach 1 although the Python call and the seven
               ``bytes`` of the result (~0.07 of the call) are on its side only.
The key schedule is the whole initial IKE SA derivation of RFC 7296 §2.14: SKEYSEED and the seven
SK_* keys, for the two suites most deployments propose first. Its groups time a burst of
``SCHEDULES`` derivations per call for every implementation (per schedule: median / SCHEDULES), so
that the C loop's single ctypes call per burst costs next to nothing.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import c_loops
import pytest
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.hmac import HMAC

from ikecore import EncrId, IkeSuite, IntegId, PrfId, ike_keys_initial, prf, prf_plus

# At least 50 µs per timed round: a single 2 µs call would be measured with the timer's own cost.
pytestmark = pytest.mark.benchmark(min_time=0.00005)

NI = bytes(range(32))
NR = bytes(range(32, 64))
G_IR = bytes(range(64, 96))  # ECP group 19 / Curve25519: a 32-byte g^ir
SPI_I = bytes.fromhex("a1b2c3d4e5f60718")
SPI_R = bytes.fromhex("8192a3b4c5d6e7f8")

SUITES = {
    # 32 + 0 + 0 + 36 + 36 + 32 + 32 = 168 bytes, 6 prf+ blocks
    "aes256gcm16-prfsha256": IkeSuite(EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_256),
    # 32 + 32 + 32 + 32 + 32 + 32 + 32 = 224 bytes, 7 prf+ blocks
    "aes256-sha256-prfsha256": IkeSuite(
        EncrId.AES_CBC, 256, PrfId.HMAC_SHA2_256, IntegId.HMAC_SHA2_256_128
    ),
}


def _split(keymat: bytes, lengths: tuple[int, ...]) -> tuple[bytes, ...]:
    keys, offset = [], 0
    for length in lengths:
        keys.append(keymat[offset : offset + length])
        offset += length
    return tuple(keys)


def _lengths(suite: IkeSuite) -> tuple[int, ...]:
    p, a, e = suite.prf_key_len, suite.integ_key_len, suite.encr_key_len
    return (p, a, a, e, e, p, p)


def stdlib_schedule(
    ni: bytes, nr: bytes, g_ir: bytes, spi_i: bytes, spi_r: bytes, lengths: tuple[int, ...]
) -> tuple[bytes, ...]:
    seed_key = hmac.new(ni + nr, g_ir, hashlib.sha256).digest()
    keyed = hmac.new(seed_key, digestmod=hashlib.sha256)
    seed = ni + nr + spi_i + spi_r
    total = sum(lengths)
    keymat, t, n = b"", b"", 1
    while len(keymat) < total:
        block = keyed.copy()
        block.update(t + seed + bytes((n,)))
        t = block.digest()
        keymat += t
        n += 1
    return _split(keymat, lengths)


def cryptography_schedule(
    ni: bytes, nr: bytes, g_ir: bytes, spi_i: bytes, spi_r: bytes, lengths: tuple[int, ...]
) -> tuple[bytes, ...]:
    first = HMAC(ni + nr, SHA256())
    first.update(g_ir)
    keyed = HMAC(first.finalize(), SHA256())
    seed = ni + nr + spi_i + spi_r
    total = sum(lengths)
    keymat, t, n = b"", b"", 1
    while len(keymat) < total:
        block = keyed.copy()
        block.update(t + seed + bytes((n,)))
        t = block.finalize()
        keymat += t
        n += 1
    return _split(keymat, lengths)


SCHEDULES = 64


def _as_tuple(keys: Any) -> tuple[bytes, ...]:
    return (keys.sk_d, keys.sk_ai, keys.sk_ar, keys.sk_ei, keys.sk_er, keys.sk_pi, keys.sk_pr)


class PrfCLoop:
    def __init__(self, library: ctypes.CDLL) -> None:
        self._run = library.prf_c_loop_run
        self._run.restype = ctypes.c_int
        # ni, nr, g_ir, spi_i, spi_r, keymat (written), keymat_len, count
        self._run.argtypes = [ctypes.c_char_p] * 6 + [ctypes.c_size_t, ctypes.c_long]

    def schedules(self, lengths: tuple[int, ...], count: int) -> tuple[bytes, ...]:
        keymat = ctypes.create_string_buffer(sum(lengths))
        if self._run(NI, NR, G_IR, SPI_I, SPI_R, keymat, len(keymat), count) != 0:
            raise ValueError("keymat too long for prf+")
        return _split(keymat.raw, lengths)


@pytest.fixture(scope="module")
def prf_c_loop(tmp_path_factory: pytest.TempPathFactory) -> PrfCLoop:
    return PrfCLoop(c_loops.build("prf_c_loop.c", "crypto", tmp_path_factory.mktemp("prf_c_loop")))


@pytest.mark.parametrize("suite_name", list(SUITES))
@pytest.mark.parametrize("impl", ["ikecore", "peer", "peer-best", "c-limit"])
def test_ike_sa_key_schedule(
    benchmark: Any, request: pytest.FixtureRequest, suite_name: str, impl: str
) -> None:
    suite = SUITES[suite_name]
    lengths = _lengths(suite)
    expected = _as_tuple(ike_keys_initial(suite, NI, NR, G_IR, SPI_I, SPI_R))
    run: Callable[[], tuple[bytes, ...]]
    if impl == "c-limit":
        c_loop: PrfCLoop = request.getfixturevalue("prf_c_loop")

        def run() -> tuple[bytes, ...]:
            return c_loop.schedules(lengths, SCHEDULES)
    elif impl == "ikecore":

        def run() -> tuple[bytes, ...]:
            for _ in range(SCHEDULES - 1):
                ike_keys_initial(suite, NI, NR, G_IR, SPI_I, SPI_R)
            return _as_tuple(ike_keys_initial(suite, NI, NR, G_IR, SPI_I, SPI_R))
    else:
        schedule = stdlib_schedule if impl == "peer" else cryptography_schedule

        def run() -> tuple[bytes, ...]:
            for _ in range(SCHEDULES - 1):
                schedule(NI, NR, G_IR, SPI_I, SPI_R, lengths)
            return schedule(NI, NR, G_IR, SPI_I, SPI_R, lengths)

    benchmark.group = f"ike sa keys {suite_name} {sum(lengths)}B x{SCHEDULES}"
    benchmark.extra_info["impl"] = impl
    assert benchmark(run) == expected


KEY = bytes(range(32))
DATA = bytes(range(100, 164))  # 64 bytes: SKEYSEED over a 32-byte g^ir and a prf+ block are close


@pytest.mark.parametrize("impl", ["ikecore", "peer", "peer-best"])
def test_prf_single(benchmark: Any, impl: str) -> None:
    expected = hmac.digest(KEY, DATA, "sha256")
    if impl == "ikecore":

        def run() -> bytes:
            return prf(PrfId.HMAC_SHA2_256, KEY, DATA)
    elif impl == "peer":

        def run() -> bytes:
            return hmac.digest(KEY, DATA, "sha256")
    else:

        def run() -> bytes:
            mac = HMAC(KEY, SHA256())
            mac.update(DATA)
            return mac.finalize()

    benchmark.group = "prf hmac-sha256 64B"
    benchmark.extra_info["impl"] = impl
    assert benchmark(run) == expected


@pytest.mark.parametrize("length", [168, 1024])
@pytest.mark.parametrize("impl", ["ikecore", "peer", "peer-best"])
def test_prf_plus(benchmark: Any, impl: str, length: int) -> None:
    seed = NI + NR + SPI_I + SPI_R
    expected = prf_plus(PrfId.HMAC_SHA2_256, KEY, seed, length)
    if impl == "ikecore":

        def run() -> bytes:
            return prf_plus(PrfId.HMAC_SHA2_256, KEY, seed, length)
    else:
        new_block: Callable[[], Any]
        if impl == "peer":
            keyed = hmac.new(KEY, digestmod=hashlib.sha256)

            def finish(block: Any) -> bytes:
                return bytes(block.digest())
        else:
            keyed = HMAC(KEY, SHA256())

            def finish(block: Any) -> bytes:
                return bytes(block.finalize())

        new_block = keyed.copy

        def run() -> bytes:
            out, t, n = b"", b"", 1
            while len(out) < length:
                block = new_block()
                block.update(t + seed + bytes((n,)))
                t = finish(block)
                out += t
                n += 1
            return out[:length]

    benchmark.group = f"prf+ hmac-sha256 {length}B"
    benchmark.extra_info["impl"] = impl
    assert benchmark(run) == expected
