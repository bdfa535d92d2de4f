"""ESP per packet, by size: ikecore (ipsec-mb and OpenSSL engines, single and batch) against a
pure-Python ESP on pyca/cryptography ("peer", what a Python user would write), cryptography's
bare AESGCM call ("peer-bare-aead", no ESP work at all) and a C loop over the ipsec-mb call
("c-limit", compiled here with `cc`).

Groups ``esp encapsulate <size>B`` time one packet per call. Decapsulation needs a fresh
sequence number per packet, and batches are many packets per call, so the ``... x256`` groups
time a burst of 256 packets per call for every implementation in them (per packet: median
/ 256). All SAs are AES-256-GCM, 16-byte ICV, no ESN.
"""

from __future__ import annotations

import ctypes
from array import array
from collections.abc import Callable
from typing import Any

import c_loops
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ikecore.aead import AesGcm, available_engines
from ikecore.esp import EspInbound, EspOutbound

# the sizes between are measured in the full (release) run only, for the plot of the README
SIZES = [64, *(pytest.param(s, marks=pytest.mark.full) for s in (128, 256)), 512,
         pytest.param(1024, marks=pytest.mark.full), 1400,
         pytest.param(4096, marks=pytest.mark.full), 9000]
BURST = 256
KEYMAT = bytes(range(36))  # AES-256 key | salt
SPI = 0x0000C0DE
# The engine ikecore picks by default comes first and is "ikecore": IKECORE_AEAD_ENGINE=openssl
# makes OpenSSL the measured default (what the ratio gates then judge), ipsec-mb the variant.
DEFAULT_ENGINE = AesGcm(KEYMAT).engine
ENGINES = (DEFAULT_ENGINE, *(e for e in available_engines() if e != DEFAULT_ENGINE))
RING_BYTES = 1 << 20  # pre-made inbound packets per size, cycled through

# A round of at least 50 us after a warm-up: a first cold call must not fix the calibration
# at one call per round, where the timer's own cost would swamp a 100 ns operation.
pytestmark = pytest.mark.benchmark(min_time=50e-6, warmup=True, warmup_iterations=2000)


def _impl(engine: str, kind: str = "") -> str:
    """"ikecore" for the default engine, "ikecore openssl" etc. for the other."""
    parts = ["ikecore", kind, "" if engine == ENGINES[0] else engine]
    return " ".join(p for p in parts if p)


def _esp_plaintext_len(size: int) -> int:
    return size + 2 + (-(size + 2) % 4)


# --- the peer: ESP as a Python user would write it on cryptography --------------------------


class PyEspOutbound:
    def __init__(self, spi: int, keymat: bytes) -> None:
        self._aead = AESGCM(keymat[:-4])
        self._salt = keymat[-4:]
        self._spi = spi.to_bytes(4, "big")
        self.seq = 0

    def encapsulate(self, inner: bytes, next_header: int) -> bytes:
        if self.seq == 0xFFFFFFFF:
            raise OverflowError("sequence number exhausted")
        self.seq += 1
        pad_len = -(len(inner) + 2) % 4
        header = self._spi + self.seq.to_bytes(4, "big")
        iv = self.seq.to_bytes(8, "big")
        plaintext = inner + bytes(range(1, pad_len + 1)) + bytes((pad_len, next_header))
        return header + iv + self._aead.encrypt(self._salt + iv, plaintext, header)


class PyEspInbound:
    def __init__(self, spi: int, keymat: bytes, window: int = 64) -> None:
        self._aead = AESGCM(keymat[:-4])
        self._salt = keymat[-4:]
        self._spi = spi.to_bytes(4, "big")
        self._window = window
        self._mask = (1 << window) - 1
        self.top = 0
        self.bitmap = 0

    def decapsulate(self, packet: bytes) -> tuple[int, bytes]:
        if len(packet) < 34 or packet[:4] != self._spi:
            raise ValueError("malformed")
        seq = int.from_bytes(packet[4:8], "big")
        if seq == 0 or (
            seq <= self.top
            and (self.top - seq >= self._window or (self.bitmap >> (self.top - seq)) & 1)
        ):
            raise ValueError("replay")
        plaintext = self._aead.decrypt(self._salt + packet[8:16], packet[16:], packet[:8])
        pad_len, next_header = plaintext[-2], plaintext[-1]
        inner_len = len(plaintext) - 2 - pad_len
        if inner_len < 0 or plaintext[inner_len:-2] != bytes(range(1, pad_len + 1)):
            raise ValueError("bad padding")
        if seq > self.top:
            self.bitmap = ((self.bitmap << (seq - self.top)) | 1) & self._mask
            self.top = seq
        else:
            self.bitmap |= 1 << (self.top - seq)
        return next_header, plaintext[:inner_len]


# --- the C limit ------------------------------------------------------------------------------


class CLoop:
    def __init__(self, library: ctypes.CDLL) -> None:
        library.c_loop_new.restype = ctypes.c_void_p
        library.c_loop_new.argtypes = [ctypes.c_int]
        library.c_loop_run.restype = ctypes.c_long
        library.c_loop_run.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_long,
            ctypes.c_int,
        ]
        library.c_loop_free.argtypes = [ctypes.c_void_p]
        self._library = library
        self._state = library.c_loop_new(32)
        if not self._state:
            raise RuntimeError("no AES-NI")

    def run(self, length: int, packets: int, open_: int) -> int:
        return int(self._library.c_loop_run(self._state, length, packets, open_))

    def close(self) -> None:
        self._library.c_loop_free(self._state)


@pytest.fixture(scope="module")
def c_loop(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if "ipsec-mb" not in available_engines():
        pytest.skip("c-limit needs intel-ipsec-mb with AES-NI")
    loop = CLoop(c_loops.build("gcm_c_loop.c", "IPSec_MB", tmp_path_factory.mktemp("c_loop")))
    yield loop
    loop.close()


def _inner(size: int) -> bytes:
    return bytes(i & 0xFF for i in range(size))


# --- encapsulate, one packet per call -----------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("engine", ENGINES)
def test_encapsulate_ikecore(benchmark: Any, size: int, engine: str) -> None:
    benchmark.group = f"esp encapsulate {size}B"
    benchmark.extra_info["impl"] = _impl(engine)
    outbound = EspOutbound(SPI, KEYMAT, engine=engine)
    packet = benchmark(outbound.encapsulate, _inner(size), 4)
    assert len(packet) == 16 + _esp_plaintext_len(size) + 16


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("engine", ENGINES)
def test_encapsulate_into_ikecore(benchmark: Any, size: int, engine: str) -> None:
    benchmark.group = f"esp encapsulate {size}B"
    benchmark.extra_info["impl"] = _impl(engine, "into")
    outbound = EspOutbound(SPI, KEYMAT, engine=engine)
    out = bytearray(outbound.packet_len(size))
    assert benchmark(outbound.encapsulate_into, _inner(size), 4, out) == len(out)


@pytest.mark.parametrize("size", SIZES)
def test_encapsulate_peer(benchmark: Any, size: int) -> None:
    benchmark.group = f"esp encapsulate {size}B"
    benchmark.extra_info["impl"] = "peer"
    outbound = PyEspOutbound(SPI, KEYMAT)
    packet = benchmark(outbound.encapsulate, _inner(size), 4)
    seq = int.from_bytes(packet[4:8], "big")  # the gates may replay the call: not outbound.seq
    assert EspInbound(SPI, KEYMAT, highest_seq=seq - 1).decapsulate(packet)[0] == 4


@pytest.mark.parametrize("size", SIZES)
def test_encapsulate_peer_bare_aead(benchmark: Any, size: int) -> None:
    benchmark.group = f"esp encapsulate {size}B"
    benchmark.extra_info["impl"] = "peer-bare-aead"
    aead = AESGCM(KEYMAT[:-4])
    plaintext = _inner(_esp_plaintext_len(size))
    benchmark(aead.encrypt, KEYMAT[-4:] + bytes(8), plaintext, bytes(8))


# --- encapsulate, bursts of 256 -----------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("engine", ENGINES)
def test_encapsulate_batch_ikecore(benchmark: Any, size: int, engine: str) -> None:
    benchmark.group = f"esp encapsulate {size}B x{BURST}"
    benchmark.extra_info["impl"] = _impl(engine, "batch")
    outbound = EspOutbound(SPI, KEYMAT, engine=engine)
    inners = [_inner(size)] * BURST
    out = bytearray(outbound.packet_len(size) * BURST)
    ends = array("q", bytes(8 * BURST))
    assert benchmark(outbound.encapsulate_batch, inners, 4, out, ends) == len(out)


@pytest.mark.parametrize("size", SIZES)
def test_encapsulate_burst_peer(benchmark: Any, size: int) -> None:
    benchmark.group = f"esp encapsulate {size}B x{BURST}"
    benchmark.extra_info["impl"] = "peer"
    encapsulate = PyEspOutbound(SPI, KEYMAT).encapsulate
    inners = [_inner(size)] * BURST

    def burst() -> None:
        for inner in inners:
            encapsulate(inner, 4)

    benchmark(burst)


@pytest.mark.parametrize("size", SIZES)
def test_encapsulate_burst_c_limit(benchmark: Any, size: int, c_loop: CLoop) -> None:
    benchmark.group = f"esp encapsulate {size}B x{BURST}"
    benchmark.extra_info["impl"] = "c-limit"
    benchmark(c_loop.run, _esp_plaintext_len(size), BURST, 0)


# --- decapsulate, bursts of 256 -----------------------------------------------------------------


class Bursts:
    """Cycles through pre-made bursts of distinct packets; when they are used up the receiver
    is replaced (once per ~1 MiB of packets), since replay protection refuses a second pass."""

    def __init__(self, size: int, make_receiver: Callable[[], Any]) -> None:
        sender = EspOutbound(SPI, KEYMAT)
        count = max(2, RING_BYTES // (size * BURST))
        self.bursts = [
            [sender.encapsulate(_inner(size), 4) for _ in range(BURST)] for _ in range(count)
        ]
        self._make_receiver = make_receiver
        self._index = len(self.bursts)
        self.receiver: Any = None

    def next(self) -> list[bytes]:
        if self._index == len(self.bursts):
            self.receiver = self._make_receiver()
            self._index = 0
        self._index += 1
        return self.bursts[self._index - 1]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("engine", ENGINES)
def test_decapsulate_ikecore(benchmark: Any, size: int, engine: str) -> None:
    benchmark.group = f"esp decapsulate {size}B x{BURST}"
    benchmark.extra_info["impl"] = _impl(engine)
    bursts = Bursts(size, lambda: EspInbound(SPI, KEYMAT, engine=engine))

    def burst() -> None:
        packets = bursts.next()
        decapsulate = bursts.receiver.decapsulate
        for packet in packets:
            decapsulate(packet)

    benchmark(burst)
    assert bursts.receiver.packet_count % BURST == 0 and bursts.receiver.packet_count > 0


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("engine", ENGINES)
def test_decapsulate_into_ikecore(benchmark: Any, size: int, engine: str) -> None:
    benchmark.group = f"esp decapsulate {size}B x{BURST}"
    benchmark.extra_info["impl"] = _impl(engine, "into")
    bursts = Bursts(size, lambda: EspInbound(SPI, KEYMAT, engine=engine))
    out = bytearray(_esp_plaintext_len(size))

    def burst() -> None:
        packets = bursts.next()
        decapsulate_into = bursts.receiver.decapsulate_into
        for packet in packets:
            decapsulate_into(packet, out)

    benchmark(burst)
    assert bytes(out[:size]) == _inner(size)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("engine", ENGINES)
def test_decapsulate_batch_ikecore(benchmark: Any, size: int, engine: str) -> None:
    benchmark.group = f"esp decapsulate {size}B x{BURST}"
    benchmark.extra_info["impl"] = _impl(engine, "batch")
    bursts = Bursts(size, lambda: EspInbound(SPI, KEYMAT, engine=engine))
    out = bytearray(_esp_plaintext_len(size) * BURST)
    ends = array("q", bytes(8 * BURST))
    results = array("i", bytes(4 * BURST))

    def decapsulate_burst() -> int:
        packets = bursts.next()
        return int(bursts.receiver.decapsulate_batch(packets, out, ends, results))

    assert benchmark(decapsulate_burst) == BURST
    assert set(results) == {4} and ends[-1] == size * BURST


@pytest.mark.parametrize("size", SIZES)
def test_decapsulate_peer(benchmark: Any, size: int) -> None:
    benchmark.group = f"esp decapsulate {size}B x{BURST}"
    benchmark.extra_info["impl"] = "peer"
    bursts = Bursts(size, lambda: PyEspInbound(SPI, KEYMAT))

    def burst() -> None:
        packets = bursts.next()
        decapsulate = bursts.receiver.decapsulate
        for packet in packets:
            decapsulate(packet)

    benchmark(burst)


@pytest.mark.parametrize("size", SIZES)
def test_decapsulate_peer_bare_aead(benchmark: Any, size: int) -> None:
    benchmark.group = f"esp decapsulate {size}B x{BURST}"
    benchmark.extra_info["impl"] = "peer-bare-aead"
    aead = AESGCM(KEYMAT[:-4])
    salt = KEYMAT[-4:]
    packets = Bursts(size, lambda: None).bursts[0]

    def burst() -> None:
        decrypt = aead.decrypt
        for packet in packets:
            decrypt(salt + packet[8:16], packet[16:], packet[:8])

    benchmark(burst)


@pytest.mark.parametrize("size", SIZES)
def test_decapsulate_burst_c_limit(benchmark: Any, size: int, c_loop: CLoop) -> None:
    benchmark.group = f"esp decapsulate {size}B x{BURST}"
    benchmark.extra_info["impl"] = "c-limit"
    # random data: every tag mismatches, which costs the comparison like a real packet
    assert benchmark(c_loop.run, _esp_plaintext_len(size), BURST, 1) == BURST
