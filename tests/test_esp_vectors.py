"""ESP vectors on every engine: draft-mcgrew-gcm-test-01 packets (RFC 4106), the RFC 7634
ChaCha20-Poly1305 example, and every step of the anti-replay / ESN scenarios (RFC 4303 App. A)."""

from __future__ import annotations

import pytest
from aead_vectors import ENGINES, EspVector, esp_chacha_vector, esp_gcm_vectors, replay_scenarios

from ikecore import IntegrityError, ReplayError
from ikecore.esp import EspInbound, EspOutbound

ALL_ESP = [*esp_gcm_vectors(), esp_chacha_vector()]


def _engine_for(vector: EspVector, engine: str) -> str:
    return "openssl" if vector.algorithm == "chacha20-poly1305" else engine


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("vector", ALL_ESP, ids=lambda v: v.id)
def test_packet_decapsulates(vector: EspVector, engine: str) -> None:
    # T = seq - 1: the receiver infers the untransmitted high half of an ESN from it.
    inbound = EspInbound(vector.spi, vector.keymat, vector.icv_len, vector.esn,
                         algorithm=vector.algorithm, engine=_engine_for(vector, engine),
                         highest_seq=vector.seq - 1)
    assert inbound.decapsulate(vector.packet) == (vector.next_header, vector.payload)
    assert inbound.highest_seq == vector.seq
    assert (inbound.packet_count, inbound.byte_count) == (1, len(vector.payload))
    with pytest.raises(ReplayError):
        inbound.decapsulate(vector.packet)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("vector", ALL_ESP, ids=lambda v: v.id)
def test_packet_decapsulates_into(vector: EspVector, engine: str) -> None:
    inbound = EspInbound(vector.spi, vector.keymat, vector.icv_len, vector.esn,
                         algorithm=vector.algorithm, engine=_engine_for(vector, engine),
                         highest_seq=vector.seq - 1)
    out = bytearray(len(vector.packet))
    next_header, length = inbound.decapsulate_into(vector.packet, out)
    assert (next_header, bytes(out[:length])) == (vector.next_header, vector.payload)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("vector", ALL_ESP, ids=lambda v: v.id)
def test_reencapsulation_gives_the_same_bytes(vector: EspVector, engine: str) -> None:
    # The vectors' IVs are not the sequence number: iv_mask = IV XOR seq reproduces them.
    outbound = EspOutbound(vector.spi, vector.keymat, vector.icv_len, vector.esn,
                           seq=vector.seq - 1, algorithm=vector.algorithm,
                           engine=_engine_for(vector, engine),
                           iv_mask=int.from_bytes(vector.iv, "big") ^ vector.seq)
    assert outbound.encapsulate(vector.payload, vector.next_header) == vector.packet
    assert outbound.seq == vector.seq
    again = EspOutbound(vector.spi, vector.keymat, vector.icv_len, vector.esn,
                        seq=vector.seq - 1, algorithm=vector.algorithm,
                        engine=_engine_for(vector, engine),
                        iv_mask=int.from_bytes(vector.iv, "big") ^ vector.seq)
    out = bytearray(len(vector.packet))
    assert again.encapsulate_into(vector.payload, vector.next_header, out) == len(out)
    assert out == vector.packet


def test_vectors_cover_esn_and_key_sizes() -> None:
    vectors = esp_gcm_vectors()
    assert {v.esn for v in vectors} == {True, False}
    assert {len(v.keymat) for v in vectors} == {20, 28, 36}


SCENARIOS = replay_scenarios()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.title[:40])
def test_replay_and_esn_scenario(scenario, engine: str) -> None:  # type: ignore[no-untyped-def]
    keymat = bytes(range(20))
    spi = 0x1234ABCD
    # the scenarios start from a receiver that has seen T and nothing else in its window
    inbound = EspInbound(spi, keymat, esn=True, window=scenario.window, engine=engine,
                         highest_seq=scenario.initial_highest, replay_bitmap=1)
    for number, step in enumerate(scenario.steps):
        sender = EspOutbound(spi, keymat, esn=True, seq=step.sent_seq - 1, engine=engine)
        packet = sender.encapsulate(b"step %d" % number, 4)
        assert int.from_bytes(packet[4:8], "big") == step.wire_seq
        if step.result == "accept":
            assert inbound.decapsulate(packet) == (4, b"step %d" % number)
        elif step.result == "replay":
            with pytest.raises(ReplayError):
                inbound.decapsulate(packet)
        else:
            assert step.result == "integrity_fail"
            with pytest.raises(IntegrityError):
                inbound.decapsulate(packet)
        assert inbound.highest_seq == step.highest_after, f"step {number}"
