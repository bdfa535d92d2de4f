"""Property tests of the IKE message parser/builder: exact round trips of generated messages,
hostile bytes only ever raise ikecore's errors, and scapy's independent IKEv2 dissector
(``scapy.contrib.ikev2``, test-only) reads the same structure from what we build."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ikemsg_strategies import message_fields, payload_chains
from ikemsg_vectors import messages

from ikecore import MalformedMessage
from ikecore.message import (
    encode_message,
    encode_payload_chain,
    parse_message,
    parse_payload_chain,
)
from ikecore.payloads import (
    Encrypted,
    EncryptedFragment,
    Notify,
    Payload,
    SecurityAssociation,
    UnknownPayload,
    UnsupportedCriticalPayload,
)

EXAMPLES = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@EXAMPLES
@given(message_fields())
def test_generated_messages_round_trip_exactly(fields):
    data = encode_message(**fields)  # type: ignore[arg-type]
    parsed = parse_message(data)
    assert parsed.to_bytes() == data
    assert parsed.payloads == fields["payloads"]
    assert (parsed.spi_i, parsed.spi_r, parsed.exchange, parsed.message_id) == (
        fields["spi_i"], fields["spi_r"], fields["exchange"], fields["message_id"]
    )
    assert (parsed.is_initiator, parsed.is_response) == (fields["initiator"], fields["response"])
    again = encode_message(
        parsed.spi_i, parsed.spi_r, parsed.exchange, parsed.message_id, parsed.payloads,
        initiator=parsed.is_initiator, response=parsed.is_response,
    )
    assert again == data


@EXAMPLES
@given(payload_chains(inner=True))
def test_generated_inner_chains_round_trip_exactly(payloads):
    first, data = encode_payload_chain(payloads)
    chain = parse_payload_chain(first, data)
    assert chain.payloads == payloads
    assert encode_payload_chain(chain.payloads) == (first, data)


def _parse_hostile(data: bytes) -> None:
    """Parsing hostile bytes: either a fully decodable message or one of ikecore's errors."""
    try:
        parsed = parse_message(data)
    except (MalformedMessage, UnsupportedCriticalPayload):
        return
    assert parsed.to_bytes() == data
    for payload in parsed.payloads:  # decoding a validated message never fails
        if isinstance(payload, (Encrypted, EncryptedFragment)):
            try:
                parse_payload_chain(payload.first_payload, payload.data, 0)
            except (MalformedMessage, UnsupportedCriticalPayload):
                pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_ikecore_errors(data):
    _parse_hostile(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=28, max_size=200))
def test_random_bodies_behind_a_valid_header_only_raise_ikecore_errors(body):
    data = bytearray(body)
    data[0] = 1
    data[17] = 0x20
    data[24:28] = struct.pack("!I", len(data))
    _parse_hostile(bytes(data))


SEEDS = [v.data for v in messages()]


@EXAMPLES
@given(
    st.one_of(st.sampled_from(SEEDS), message_fields().map(lambda f: encode_message(**f))),  # type: ignore[arg-type]
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
    st.integers(0, 8),
)
def test_mutated_messages_only_raise_ikecore_errors(seed, flips, cut):
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    _parse_hostile(bytes(data[: len(data) - cut]))


# --- scapy as an independent reader -------------------------------------------------------------

scapy_ikev2 = pytest.importorskip("scapy.contrib.ikev2")


def _scapy_chain(data: bytes) -> list[tuple[int, int, object]]:
    """(type, length, notify type or SA shape) per payload, as scapy dissects the message."""
    packet = scapy_ikev2.IKEv2(data)
    found = []
    next_type = packet.next_payload
    layer = packet.payload
    while next_type:
        detail: object = None
        if isinstance(layer, scapy_ikev2.IKEv2_Notify):
            detail = layer.type
        elif isinstance(layer, scapy_ikev2.IKEv2_SA):
            detail = [
                (p.proposal, p.trans_nb,
                 [(t.transform_type, t.transform_id) for t in _scapy_list(p.trans)])
                for p in _scapy_list(layer.prop)
            ]
        found.append((next_type, layer.length, detail))
        if next_type in (46, 53):
            break
        next_type = layer.next_payload
        layer = layer.payload
    return found


def _scapy_list(first):  # scapy chains proposals/transforms as nested payloads
    items = []
    while first is not None and first.__class__.__name__ not in ("NoPayload", "Raw"):
        items.append(first)
        first = first.payload
    return items


def _ours(data: bytes) -> list[tuple[int, int, object]]:
    parsed = parse_message(data)
    words = memoryview(parsed._index).cast("I")
    lengths = [words[i + 2] for i in range(0, len(words), 3)]
    found = []
    for payload, length in zip(parsed.payloads, lengths, strict=True):
        detail: object = None
        if isinstance(payload, Notify):
            detail = payload.notify_type
        elif isinstance(payload, SecurityAssociation):
            detail = [
                (p.number, len(p.transforms), [(t.type, t.id) for t in p.transforms])
                for p in payload.proposals
            ]
        found.append((payload.type, length, detail))
    return found


def _scapy_readable(payload: Payload) -> Payload:
    """scapy's IKEv2_Transform knows only the Key Length attribute, and it dissects unassigned
    payload types below 54 (IKEv1's 1..32, 49..52) as something else: map those to 200."""
    if isinstance(payload, UnknownPayload) and payload.type < 54:
        return replace(payload, type=200)
    if not isinstance(payload, SecurityAssociation):
        return payload
    return replace(payload, proposals=tuple(
        replace(p, transforms=tuple(replace(t, attributes=()) for t in p.transforms))
        for p in payload.proposals
    ))


@EXAMPLES
@given(message_fields())
def test_scapy_reads_the_same_payload_chain(fields):
    fields["payloads"] = [_scapy_readable(p) for p in fields["payloads"]]
    data = encode_message(**fields)  # type: ignore[arg-type]
    assert _scapy_chain(data) == _ours(data)


@pytest.mark.parametrize("vector", messages(), ids=lambda v: v.name)
def test_scapy_reads_the_vectors_alike(vector):
    assert _scapy_chain(vector.data) == _ours(vector.data)
