"""NAT-T framing (RFC 3948): port-4500 demultiplexing, non-ESP marker, UDP encapsulation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ikecore import MalformedMessage
from ikecore.esp import EspInbound, EspOutbound
from ikecore.natt import (
    NAT_KEEPALIVE,
    NON_ESP_MARKER,
    DatagramKind,
    add_non_esp_marker,
    classify_natt_payload,
    udp_decapsulate,
    udp_encapsulate,
    udp_header,
)


def test_esp_through_udp_4500() -> None:
    keymat = bytes(20)
    packet = EspOutbound(0xC001, keymat).encapsulate(b"inner", 4)
    datagram = udp_encapsulate(packet, 4500, 4500)
    length = (8 + len(packet)).to_bytes(2, "big")
    assert datagram[:8] == bytes.fromhex("11941194") + length + b"\0\0"  # checksum 0
    source, destination, payload = udp_decapsulate(datagram)
    assert (source, destination) == (4500, 4500)
    kind, esp = classify_natt_payload(payload)
    assert kind is DatagramKind.ESP
    assert EspInbound(0xC001, keymat).decapsulate(esp) == (4, b"inner")


def test_ike_with_marker_and_keepalive() -> None:
    ike = bytes(range(28))
    payload = add_non_esp_marker(ike)
    assert payload == NON_ESP_MARKER + ike
    assert classify_natt_payload(payload) == (DatagramKind.IKE, ike)
    assert NAT_KEEPALIVE == b"\xff"
    assert classify_natt_payload(b"\xff") == (DatagramKind.KEEPALIVE, b"")


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\xfe", b"\xff\xff", b"\x00" * 4,
                                     b"\x00" * 7, b"\x01\x02\x03"])
def test_unclassifiable_payloads(payload: bytes) -> None:
    with pytest.raises(MalformedMessage) as info:
        classify_natt_payload(payload)
    assert info.value.offset == len(payload)


def test_udp_length_checked() -> None:
    datagram = bytearray(udp_encapsulate(b"abcdefgh"))
    with pytest.raises(MalformedMessage):
        udp_decapsulate(datagram[:7])
    datagram[5] += 1  # Length one past the datagram
    with pytest.raises(MalformedMessage) as info:
        udp_decapsulate(datagram)
    assert info.value.offset == 4
    with pytest.raises(ValueError):
        udp_header(70000, 4500, 0)
    with pytest.raises(ValueError):
        udp_header(4500, 4500, 0xFFF8)


@given(st.binary(max_size=64), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_udp_round_trip(payload: bytes, source: int, destination: int) -> None:
    assert udp_decapsulate(udp_encapsulate(payload, source, destination)) == (
        source,
        destination,
        payload,
    )
    # extra bytes after the UDP Length (e.g. link padding) are not payload
    assert udp_decapsulate(udp_encapsulate(payload, source, destination) + b"pad")[2] == payload
