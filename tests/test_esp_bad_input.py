"""Bad ESP input raises exactly MalformedMessage, IntegrityError or ReplayError, never moves
the replay window, never counts, and leaves OpenSSL's error queue empty (conftest fixture).
Runs on every engine and both AEADs."""

from __future__ import annotations

from array import array

import pytest
from aead_reference import reference_seal
from aead_vectors import ENGINES

from ikecore import IntegrityError, MalformedMessage, ReplayError, SequenceExhausted
from ikecore.esp import (
    DECAP_INTEGRITY_FAILED,
    DECAP_MALFORMED,
    DECAP_REPLAYED,
    EspInbound,
    EspOutbound,
)

ESP_ERRORS = (MalformedMessage, IntegrityError, ReplayError)
SPI = 0x5EC0_0001
KEYMAT = bytes(range(100, 136))
SETUPS = [
    pytest.param(engine, "aes-gcm", icv, id=f"{engine}-gcm{icv}")
    for engine in [p.values[0] for p in ENGINES]
    for icv in (8, 16)
] + [pytest.param("openssl", "chacha20-poly1305", 16, id="openssl-chacha")]


def _pair(engine: str, algorithm: str, icv_len: int, esn: bool = False):  # type: ignore[no-untyped-def]
    keymat = KEYMAT if algorithm == "chacha20-poly1305" else KEYMAT[:20]
    outbound = EspOutbound(SPI, keymat, icv_len, esn, algorithm=algorithm, engine=engine)
    inbound = EspInbound(SPI, keymat, icv_len, esn, algorithm=algorithm, engine=engine)
    return outbound, inbound


def _state(inbound: EspInbound) -> tuple[int, int, int]:
    return inbound.highest_seq, inbound.packet_count, inbound.byte_count


@pytest.mark.parametrize(("engine", "algorithm", "icv_len"), SETUPS)
def test_truncated_at_every_length(engine: str, algorithm: str, icv_len: int) -> None:
    outbound, inbound = _pair(engine, algorithm, icv_len)
    packet = outbound.encapsulate(bytes(range(45)), 4)
    before = _state(inbound)
    for length in range(len(packet)):
        with pytest.raises(ESP_ERRORS) as info:
            inbound.decapsulate(packet[:length])
        if length < 16 + 2 + icv_len:
            assert isinstance(info.value, MalformedMessage) and info.value.offset == length
        else:
            assert isinstance(info.value, IntegrityError)
        assert _state(inbound) == before
    assert inbound.decapsulate(packet) == (4, bytes(range(45)))


@pytest.mark.parametrize(("engine", "algorithm", "icv_len"), SETUPS)
@pytest.mark.parametrize("esn", [False, True], ids=["seq32", "esn"])
def test_every_flipped_bit(engine: str, algorithm: str, icv_len: int, esn: bool) -> None:
    outbound, inbound = _pair(engine, algorithm, icv_len, esn)
    inner = b"flip me" * 5
    packet = outbound.encapsulate(inner, 41)
    before = _state(inbound)
    out = bytearray(len(packet))
    for bit in range(len(packet) * 8):
        bad = bytearray(packet)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ESP_ERRORS) as info:
            inbound.decapsulate(bytes(bad))
        if bit < 32:
            assert isinstance(info.value, MalformedMessage) and info.value.offset == 0
        with pytest.raises(type(info.value)):
            inbound.decapsulate_into(bad, out)
        assert _state(inbound) == before
    assert inbound.decapsulate(packet) == (41, inner)


@pytest.mark.parametrize(("engine", "algorithm", "icv_len"), SETUPS)
def test_wrong_spi(engine: str, algorithm: str, icv_len: int) -> None:
    outbound, _ = _pair(engine, algorithm, icv_len)
    keymat = KEYMAT if algorithm == "chacha20-poly1305" else KEYMAT[:20]
    other = EspInbound(SPI + 1, keymat, icv_len, algorithm=algorithm, engine=engine)
    with pytest.raises(MalformedMessage, match="another SPI") as info:
        other.decapsulate(outbound.encapsulate(b"x", 4))
    assert info.value.offset == 0 and other.highest_seq == 0


def _sealed_with_trailer(algorithm: str, icv_len: int, seq: int, plaintext: bytes) -> bytes:
    """An authentic packet whose plaintext (trailer included) is chosen by the test."""
    keymat = KEYMAT if algorithm == "chacha20-poly1305" else KEYMAT[:20]
    header = SPI.to_bytes(4, "big") + seq.to_bytes(4, "big")
    iv = seq.to_bytes(8, "big")
    return header + iv + reference_seal(algorithm, keymat, iv, header, plaintext, icv_len)


@pytest.mark.parametrize(("engine", "algorithm", "icv_len"), SETUPS)
@pytest.mark.parametrize(
    ("plaintext", "offset", "message"),
    [
        (b"abcd" + b"\x01\x03" + b"\x02\x04", 16 + 5, "not 1, 2, 3"),  # 1, 3 instead of 1, 2
        (b"ab" + b"\x01\x02\x02\x04", None, None),  # well formed: 2 bytes of padding
        (b"\x00\x00" + b"\x03\x04", 16 + 2, "longer than"),  # Pad Length 3 > 2 bytes before
        (b"\xff\x04", 16, "longer than"),
        (b"abc" + b"\x00\x00\x00" + b"\x03\x04", 16 + 3, "not 1, 2, 3"),  # zeros as padding
    ],
)
def test_padding_checked(engine: str, algorithm: str, icv_len: int, plaintext: bytes,
                         offset: int | None, message: str | None) -> None:
    keymat = KEYMAT if algorithm == "chacha20-poly1305" else KEYMAT[:20]
    inbound = EspInbound(SPI, keymat, icv_len, algorithm=algorithm, engine=engine)
    packet = _sealed_with_trailer(algorithm, icv_len, 7, plaintext)
    if offset is None:
        assert inbound.decapsulate(packet) == (4, b"ab")
        return
    with pytest.raises(MalformedMessage, match=message) as info:
        inbound.decapsulate(packet)
    assert info.value.offset == offset
    # authentic but malformed: the window did not move, the same number is still acceptable
    assert _state(inbound) == (0, 0, 0)
    good = _sealed_with_trailer(algorithm, icv_len, 7, b"ok\x01\x02\x02\x04")
    assert inbound.decapsulate(good) == (4, b"ok")


@pytest.mark.parametrize("engine", ENGINES)
def test_replayed_and_too_old(engine: str) -> None:
    outbound, inbound = _pair(engine, "aes-gcm", 16)
    packets = [outbound.encapsulate(b"p%d" % i, 4) for i in range(1, 101)]
    assert inbound.decapsulate(packets[99]) == (4, b"p100")  # T = 100, window [37, 100]
    with pytest.raises(ReplayError, match="already"):
        inbound.decapsulate(packets[99])
    with pytest.raises(ReplayError, match="left of the replay window"):
        inbound.decapsulate(packets[35])  # seq 36
    assert inbound.decapsulate(packets[36]) == (4, b"p37")  # seq 37 = B
    with pytest.raises(ReplayError):
        inbound.decapsulate(packets[36])
    assert _state(inbound) == (100, 2, 7)


@pytest.mark.parametrize("engine", ENGINES)
def test_sequence_zero_is_refused(engine: str) -> None:
    _, inbound = _pair(engine, "aes-gcm", 16)
    packet = _sealed_with_trailer("aes-gcm", 16, 0, b"ok\x01\x02\x02\x04")
    with pytest.raises(ReplayError, match="never sent"):
        inbound.decapsulate(packet)


@pytest.mark.parametrize("engine", ENGINES)
def test_failed_icv_leaves_no_plaintext_in_out(engine: str) -> None:
    outbound, inbound = _pair(engine, "aes-gcm", 16)
    packet = bytearray(outbound.encapsulate(b"secret payload!!", 4))
    packet[-1] ^= 0x80
    out = bytearray(b"\xee" * len(packet))
    with pytest.raises(IntegrityError):
        inbound.decapsulate_into(packet, out)
    assert out[: len(packet) - 32] == bytes(len(packet) - 32)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("esn", "last"), [(False, 2**32 - 1), (True, 2**64 - 1)])
def test_sequence_numbers_never_wrap(engine: str, esn: bool, last: int) -> None:
    outbound = EspOutbound(SPI, KEYMAT[:20], esn=esn, seq=last - 2, engine=engine)
    inbound = EspInbound(SPI, KEYMAT[:20], esn=esn, engine=engine, highest_seq=last - 3)
    for expected in (last - 1, last):
        packet = outbound.encapsulate(b"x", 4)
        assert outbound.seq == expected
        assert int.from_bytes(packet[8:16], "big") == expected  # IV = seq
        assert inbound.decapsulate(packet) == (4, b"x")
    for _ in range(2):
        with pytest.raises(SequenceExhausted):
            outbound.encapsulate(b"x", 4)
        with pytest.raises(SequenceExhausted):
            outbound.encapsulate_into(b"x", 4, bytearray(64))
        with pytest.raises(SequenceExhausted):
            outbound.encapsulate_batch([b"x"], 4, bytearray(64), array("q", [0]))
    assert outbound.seq == last and outbound.packet_count == 2


@pytest.mark.parametrize("engine", ENGINES)
def test_ivs_never_repeat(engine: str) -> None:
    outbound = EspOutbound(SPI, KEYMAT[:20], esn=True, engine=engine, iv_mask=0x0123456789ABCDEF)
    singles = [outbound.encapsulate(b"", 59) for _ in range(500)]
    out = bytearray(outbound.packet_len(0) * 500)
    ends = array("q", bytes(8 * 500))
    outbound.encapsulate_batch([b""] * 500, 59, out, ends)
    batched = [bytes(out[e - outbound.packet_len(0) : e]) for e in ends]
    ivs = [p[8:16] for p in singles + batched]
    assert len(set(ivs)) == 1000
    seqs = [int.from_bytes(p[4:8], "big") for p in singles + batched]
    assert seqs == list(range(1, 1001))


@pytest.mark.parametrize("engine", ENGINES)
def test_batch_decapsulate_mixed_burst(engine: str) -> None:
    outbound, inbound = _pair(engine, "aes-gcm", 16)
    good = [outbound.encapsulate(b"inner %d" % i, 4 + i % 2) for i in range(6)]
    forged = bytearray(good[4])
    forged[20] ^= 1
    burst = [good[0], good[1], good[1], bytes(forged), b"\x00" * 10, good[5],
             good[2][:5], good[3], good[4]]
    out = bytearray(sum(len(p) for p in burst))
    ends = array("q", bytes(8 * len(burst)))
    results = array("i", bytes(4 * len(burst)))
    assert inbound.decapsulate_batch(burst, out, ends, results) == 5
    assert list(results) == [4, 5, DECAP_REPLAYED, DECAP_INTEGRITY_FAILED, DECAP_MALFORMED,
                             5, DECAP_MALFORMED, 5, 4]
    inners, start = [], 0
    for end in ends:
        inners.append(bytes(out[start:end]))
        start = end
    assert inners == [b"inner 0", b"inner 1", b"", b"", b"", b"inner 5", b"", b"inner 3",
                      b"inner 4"]
    assert _state(inbound) == (6, 5, 35)


@pytest.mark.parametrize("engine", ENGINES)
def test_batch_encapsulate_equals_singles(engine: str) -> None:
    first = EspOutbound(SPI, KEYMAT[:28], engine=engine, seq=41)
    second = EspOutbound(SPI, KEYMAT[:28], engine=engine, seq=41)
    inners = [bytes(range(n)) for n in (0, 1, 2, 3, 4, 100, 255)]
    singles = b"".join(first.encapsulate(inner, 6, tfc_padding=3) for inner in inners)
    out = bytearray(len(singles) + 10)
    ends = array("q", bytes(8 * len(inners)))
    assert second.encapsulate_batch(inners, 6, out, ends, tfc_padding=3) == len(singles)
    assert bytes(out[: len(singles)]) == singles and ends[-1] == len(singles)
    assert (second.seq, second.packet_count, second.byte_count) == (48, 7, 365)


@pytest.mark.parametrize("engine", ENGINES)
def test_batch_arguments_checked_before_anything_is_sent(engine: str) -> None:
    outbound = EspOutbound(SPI, KEYMAT[:20], engine=engine)
    with pytest.raises(ValueError, match="out holds"):
        outbound.encapsulate_batch([b"a", b"b"], 4, bytearray(40), array("q", [0, 0]))
    with pytest.raises(ValueError, match="ends holds"):
        outbound.encapsulate_batch([b"a", b"b"], 4, bytearray(100), array("q", [0]))
    with pytest.raises(TypeError, match="64-bit"):
        outbound.encapsulate_batch([b"a"], 4, bytearray(100), array("i", [0]))
    with pytest.raises(TypeError, match="writable"):
        outbound.encapsulate_batch([b"a"], 4, bytearray(100), bytes(8))
    with pytest.raises(TypeError, match="32-bit"):
        EspInbound(SPI, KEYMAT[:20]).decapsulate_batch([], bytearray(0), array("q"), array("I"))
    with pytest.raises(TypeError):
        outbound.encapsulate_batch([b"a", 7], 4, bytearray(100), array("q", [0, 0]))
    shared = bytearray(200)
    with pytest.raises(ValueError, match="overlap"):
        outbound.encapsulate_batch([memoryview(shared)[150:160]], 4, shared, array("q", [0]))
    assert outbound.seq == 0 and outbound.packet_count == 0


def test_arguments_checked() -> None:
    with pytest.raises(ValueError, match="20, 28 or 36"):
        EspOutbound(SPI, bytes(16))
    with pytest.raises(ValueError, match="icv_len"):
        EspInbound(SPI, bytes(20), 4)
    with pytest.raises(ValueError, match="window"):
        EspInbound(SPI, bytes(20), window=16)
    with pytest.raises(ValueError, match="spi"):
        EspOutbound(2**32, bytes(20))
    with pytest.raises(ValueError, match="seq"):
        EspOutbound(SPI, bytes(20), seq=2**32)
    with pytest.raises(ValueError, match="next_header"):
        EspOutbound(SPI, bytes(20)).encapsulate(b"", 256)
    with pytest.raises(ValueError, match="unknown AEAD algorithm"):
        EspOutbound(SPI, bytes(20), algorithm="des")
    with pytest.raises(TypeError):
        EspOutbound(SPI, bytes(20)).encapsulate("text", 4)
    assert EspOutbound(b"\x00\x00\x10\x00", bytes(20)).spi == 0x1000


@pytest.mark.parametrize("engine", ENGINES)
def test_large_window_4096(engine: str) -> None:
    outbound = EspOutbound(SPI, KEYMAT[:20], engine=engine)
    inbound = EspInbound(SPI, KEYMAT[:20], window=4096, engine=engine)
    packets = [outbound.encapsulate(b"", 59) for _ in range(5000)]
    assert inbound.decapsulate(packets[4999]) == (59, b"")  # T = 5000: window [905, 5000]
    with pytest.raises(ReplayError):
        inbound.decapsulate(packets[903])
    for index in range(904, 4999, 7):
        assert inbound.decapsulate(packets[index])[0] == 59
    for index in range(904, 4999, 7):
        with pytest.raises(ReplayError):
            inbound.decapsulate(packets[index])
    # a jump far ahead clears the whole ring: the old numbers are now left of the window
    far = EspOutbound(SPI, KEYMAT[:20], seq=100_000, engine=engine).encapsulate(b"", 59)
    assert inbound.decapsulate(far) == (59, b"")
    with pytest.raises(ReplayError, match="left"):
        inbound.decapsulate(packets[4998])
    late = EspOutbound(SPI, KEYMAT[:20], seq=100_001 - 4096, engine=engine).encapsulate(b"", 59)
    assert inbound.decapsulate(late) == (59, b"")  # exactly B


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("window", [32, 64, 100, 4096])
def test_window_saved_and_restored(engine: str, window: int) -> None:
    outbound = EspOutbound(SPI, KEYMAT[:20], engine=engine)
    packets = [outbound.encapsulate(b"", 59) for _ in range(window + 300)]
    inbound = EspInbound(SPI, KEYMAT[:20], window=window, engine=engine)
    received = [n for n in range(1, window + 301) if n % 3 == 0 or n % 7 == 0]
    for n in reversed(received):  # out of order
        if n > window + 300 - window:
            inbound.decapsulate(packets[n - 1])
    saved = (inbound.highest_seq, inbound.replay_bitmap)
    assert saved[1] & 1 and saved[1] < 1 << window
    restored = EspInbound(SPI, KEYMAT[:20], window=window, engine=engine,
                          highest_seq=saved[0], replay_bitmap=saved[1])
    cautious = EspInbound(SPI, KEYMAT[:20], window=window, engine=engine, highest_seq=saved[0])
    assert restored.replay_bitmap == saved[1]
    assert cautious.replay_bitmap == (1 << window) - 1
    for n in range(saved[0] - window - 2, saved[0] + 1):
        for receiver, seen in ((inbound, True), (restored, True), (cautious, False)):
            try:
                receiver.decapsulate(packets[n - 1])
                accepted = True
            except ReplayError:
                accepted = False
            if seen:
                assert accepted == (n > saved[0] - window and not (saved[1] >> (saved[0] - n)) & 1)
            else:
                assert not accepted
    with pytest.raises(ValueError, match="replay_bitmap"):
        EspInbound(SPI, KEYMAT[:20], window=window, highest_seq=5, replay_bitmap=1 << window)


@pytest.mark.parametrize("engine", ENGINES)
def test_decapsulate_in_place_and_overlaps(engine: str) -> None:
    outbound, inbound = _pair(engine, "aes-gcm", 16)
    buffer = bytearray(outbound.encapsulate(b"in place payload", 4))
    assert inbound.decapsulate_into(buffer, memoryview(buffer)[16:]) == (4, 16)
    assert buffer[16:32] == b"in place payload"
    second = bytearray(outbound.encapsulate(b"shifted", 4))
    with pytest.raises(ValueError, match="overlap"):
        inbound.decapsulate_into(second, memoryview(second)[8:])
    with pytest.raises(ValueError, match="overlap"):
        inbound.decapsulate_batch([memoryview(second)], second, array("q", [0]), array("i", [0]))
    assert inbound.decapsulate(bytes(second)) == (4, b"shifted")


@pytest.mark.parametrize("engine", ENGINES)
def test_esn_resynchronisation_after_huge_loss(engine: str) -> None:
    # RFC 4303 A3: the sender moved 3 * 2^32 numbers on while everything was lost
    inbound = EspInbound(SPI, KEYMAT[:20], esn=True, engine=engine, highest_seq=1000,
                         resync_after=3, resync_limit=4)
    sender = EspOutbound(SPI, KEYMAT[:20], esn=True, seq=3 * 2**32 + 2000, engine=engine)
    packets = [sender.encapsulate(b"after the gap %d" % i, 4) for i in range(4)]
    for packet in packets[:2]:
        with pytest.raises(IntegrityError):
            inbound.decapsulate(packet)
    assert inbound.highest_seq == 1000
    assert inbound.decapsulate(packets[2]) == (4, b"after the gap 2")  # third failure: resync
    assert inbound.highest_seq == 3 * 2**32 + 2003
    assert inbound.decapsulate(packets[3]) == (4, b"after the gap 3")
    with pytest.raises(ReplayError):
        inbound.decapsulate(packets[2])
    assert inbound.decapsulate(packets[0]) == (4, b"after the gap 0")  # late, in the window


@pytest.mark.parametrize("engine", ENGINES)
def test_esn_resynchronisation_is_bounded(engine: str) -> None:
    inbound = EspInbound(SPI, KEYMAT[:20], esn=True, engine=engine, highest_seq=1000,
                         resync_after=2, resync_limit=4)
    # Seql = 11 < B: inferred Seqh = 1; the retries reach 2..5, the packet needs 9
    far = EspOutbound(SPI, KEYMAT[:20], esn=True, seq=9 * 2**32 + 10, engine=engine)
    for _ in range(6):
        with pytest.raises(IntegrityError):
            inbound.decapsulate(far.encapsulate(b"too far", 4))
    assert inbound.highest_seq == 1000
    # without ESN, or with the default, there is no retry at all
    plain = EspInbound(SPI, KEYMAT[:20], esn=True, engine=engine, highest_seq=1000)
    near = EspOutbound(SPI, KEYMAT[:20], esn=True, seq=2**32 + 2000, engine=engine)
    for _ in range(20):
        with pytest.raises(IntegrityError):
            plain.decapsulate(near.encapsulate(b"lost", 4))
