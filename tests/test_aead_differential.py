"""Differential property tests: ikecore's AEAD, ESP and SK payload against the tests-only
reference on pyca/cryptography (tests/aead_reference.py), both directions, every engine."""

from __future__ import annotations

import pytest
from aead_reference import (
    reference_esp_open,
    reference_esp_packet,
    reference_seal,
    reference_sk_message,
    reference_sk_open,
)
from aead_vectors import ENGINES
from hypothesis import given, settings
from hypothesis import strategies as st

from ikecore import IntegrityError, MalformedMessage
from ikecore.aead import IkeCipher, make_aead
from ikecore.esp import EspInbound, EspOutbound

EXAMPLES = settings(max_examples=60, deadline=None)


@st.composite
def suites(draw: st.DrawFn) -> tuple[str, bytes, int]:
    """(algorithm, keymat, icv_len) over AES-128/192/256-GCM with ICV 8/12/16 and ChaCha."""
    if draw(st.integers(0, 4)) == 0:
        return "chacha20-poly1305", draw(st.binary(min_size=36, max_size=36)), 16
    key_len = draw(st.sampled_from([16, 24, 32]))
    icv_len = draw(st.sampled_from([8, 12, 16]))
    return "aes-gcm", draw(st.binary(min_size=key_len + 4, max_size=key_len + 4)), icv_len


def _engine(algorithm: str, engine: str) -> str:
    return "openssl" if algorithm == "chacha20-poly1305" else engine


@pytest.mark.parametrize("engine", ENGINES)
@EXAMPLES
@given(suite=suites(), iv=st.binary(min_size=8, max_size=8), aad=st.binary(max_size=64),
       plaintext=st.binary(max_size=600))
def test_aead_matches_reference(engine: str, suite: tuple[str, bytes, int], iv: bytes,
                                aad: bytes, plaintext: bytes) -> None:
    algorithm, keymat, icv_len = suite
    aead = make_aead(algorithm, keymat, icv_len, _engine(algorithm, engine))
    expected = reference_seal(algorithm, keymat, iv, aad, plaintext, icv_len)
    assert aead.seal(iv, aad, plaintext) == expected
    assert aead.open(iv, aad, expected) == plaintext
    with pytest.raises(IntegrityError):
        aead.open(iv, aad + b"!", expected)


@pytest.mark.parametrize("engine", ENGINES)
@EXAMPLES
@given(suite=suites(), esn=st.booleans(), data=st.data(), inner=st.binary(max_size=1500),
       next_header=st.integers(0, 255), spi=st.integers(256, 2**32 - 1))
def test_esp_both_directions(engine: str, suite: tuple[str, bytes, int], esn: bool,
                             data: st.DataObject, inner: bytes, next_header: int,
                             spi: int) -> None:
    algorithm, keymat, icv_len = suite
    engine = _engine(algorithm, engine)
    seq = data.draw(st.integers(1, 2**64 - 1 if esn else 2**32 - 1), label="seq")
    # ikecore -> reference
    outbound = EspOutbound(spi, keymat, icv_len, esn, seq=seq - 1, algorithm=algorithm,
                           engine=engine)
    packet = outbound.encapsulate(inner, next_header)
    assert len(packet) == outbound.packet_len(len(inner)) and (len(packet) - icv_len) % 4 == 0
    assert reference_esp_open(algorithm, keymat, packet, seq, esn, icv_len) == (
        next_header,
        inner,
    )
    # reference -> ikecore (the receiver's T just below, so the ESN high half is inferred)
    iv = data.draw(st.binary(min_size=8, max_size=8), label="iv")
    theirs = reference_esp_packet(algorithm, keymat, spi.to_bytes(4, "big"), seq, esn, iv,
                                  inner, next_header, icv_len)
    inbound = EspInbound(spi, keymat, icv_len, esn, algorithm=algorithm, engine=engine,
                         highest_seq=seq - 1)
    assert inbound.decapsulate(theirs) == (next_header, inner)
    assert inbound.highest_seq == seq


@pytest.mark.parametrize("engine", ENGINES)
@EXAMPLES
@given(suite=suites(), header=st.binary(min_size=28, max_size=28),
       unprotected=st.binary(max_size=40), inner=st.binary(max_size=700),
       next_payload=st.integers(0, 255), pad_length=st.integers(0, 255),
       counter=st.integers(0, 2**64 - 2), fragment=st.none() | st.integers(1, 9))
def test_sk_payload_both_directions(engine: str, suite: tuple[str, bytes, int], header: bytes,
                                    unprotected: bytes, inner: bytes, next_payload: int,
                                    pad_length: int, counter: int, fragment: int | None) -> None:
    algorithm, keymat, icv_len = suite
    cipher = IkeCipher(keymat, icv_len, algorithm=algorithm,
                       engine=_engine(algorithm, engine), iv_counter=counter)
    prefix = header + unprotected
    iv = (counter + 1).to_bytes(8, "big")
    if fragment is None:
        message = cipher.seal_sk(prefix, next_payload, inner, pad_length=pad_length)
        expected = reference_sk_message(algorithm, keymat, prefix, next_payload, inner, iv,
                                        icv_len, pad_length)
        header_len = 4
    else:
        message = cipher.seal_skf(prefix, next_payload, fragment, 9, inner,
                                  pad_length=pad_length)
        expected = reference_sk_message(algorithm, keymat, prefix, next_payload, inner, iv,
                                        icv_len, pad_length, (fragment, 9))
        header_len = 8
    assert message == expected and cipher.iv_counter == counter + 1
    assert reference_sk_open(algorithm, keymat, message, len(prefix), icv_len,
                             header_len) == inner
    if fragment is None:
        assert cipher.open_sk(message, len(prefix)) == (next_payload, inner)
    else:
        assert cipher.open_skf(message, len(prefix)) == (next_payload, fragment, 9, inner)


@pytest.mark.parametrize("engine", ENGINES)
def test_sk_payload_bad_input(engine: str) -> None:
    cipher = IkeCipher(bytes(range(20)), engine=engine)
    prefix = bytes(range(28))
    message = cipher.seal_sk(prefix, 41, b"notify payload", pad_length=3)
    for length in range(len(message)):
        # a shorter datagram no longer matches the IKE header Length (or has no SK header)
        with pytest.raises(MalformedMessage):
            cipher.open_sk(message[:length], 28)
    for bit in range(len(message) * 8):
        bad = bytearray(message)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((MalformedMessage, IntegrityError)) as info:
            cipher.open_sk(bad, 28)
        if 24 * 8 <= bit < 28 * 8:
            assert isinstance(info.value, MalformedMessage) and info.value.offset == 24
        elif 30 * 8 <= bit < 32 * 8:
            assert isinstance(info.value, MalformedMessage) and info.value.offset == 30
        elif not 24 * 8 <= bit < 32 * 8:
            assert isinstance(info.value, IntegrityError)
    assert cipher.open_sk(message, 28) == (41, b"notify payload")


@pytest.mark.parametrize("engine", ENGINES)
def test_sk_pad_length_beyond_plaintext(engine: str) -> None:
    keymat = bytes(range(20))
    plaintext = b"abcd\x09"  # Pad Length 9, but only 4 bytes precede it
    total = 28 + 4 + 8 + len(plaintext) + 16
    aad = bytes(24) + total.to_bytes(4, "big") + bytes([41, 0]) + (total - 28).to_bytes(2, "big")
    message = aad + bytes(8) + reference_seal("aes-gcm", keymat, bytes(8), aad, plaintext, 16)
    with pytest.raises(MalformedMessage, match="Pad Length") as info:
        IkeCipher(keymat, engine=engine).open_sk(message, 28)
    assert info.value.offset == 28 + 4 + 8 + 4


def test_sk_arguments_checked() -> None:
    cipher = IkeCipher(bytes(20))
    with pytest.raises(ValueError, match="28-byte IKE header"):
        cipher.seal_sk(bytes(20), 41, b"")
    with pytest.raises(ValueError, match="pad_length"):
        cipher.seal_sk(bytes(28), 41, b"", pad_length=256)
    with pytest.raises(ValueError, match="65535"):
        cipher.seal_sk(bytes(28), 41, bytes(70000))
    with pytest.raises(ValueError, match="fragment_number"):
        cipher.seal_skf(bytes(28), 41, 3, 2, b"")
    with pytest.raises(ValueError, match="IKE header"):
        cipher.open_sk(bytes(64), 10)
    assert cipher.iv_counter == 0


def test_sk_iv_counter_never_wraps() -> None:
    from ikecore import SequenceExhausted

    cipher = IkeCipher(bytes(20), iv_counter=2**64 - 2)
    message = cipher.seal_sk(bytes(28), 0, b"")
    assert message[32:40] == b"\xff" * 8
    with pytest.raises(SequenceExhausted):
        cipher.seal_sk(bytes(28), 0, b"")
    assert cipher.iv_counter == 2**64 - 1


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("number", "total"), [(0, 3), (4, 3), (0, 0)])
def test_skf_fragment_numbers_checked(engine: str, number: int, total: int) -> None:
    cipher = IkeCipher(bytes(range(20)), engine=engine)
    message = bytearray(cipher.seal_skf(bytes(28), 41, 1, 3, b"first fragment"))
    assert cipher.open_skf(message, 28) == (41, 1, 3, b"first fragment")
    message[32:36] = number.to_bytes(2, "big") + total.to_bytes(2, "big")
    with pytest.raises(MalformedMessage, match="fragment number") as info:
        cipher.open_skf(message, 28)
    assert info.value.offset == 32
