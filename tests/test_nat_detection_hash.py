"""The native NAT_DETECTION_*_IP hash, SHA-1(SPIi | SPIr | IP | Port) (RFC 7296 §2.23): the
vector's MOBIKE hashes, a differential test against hashlib, bad arguments."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikecore._fast.prf import nat_detection_hash as native_hash
from ikecore.exchanges.base import nat_detection_hash

VECTOR = json.loads((Path(__file__).parent / "vectors" / "ikev2_clone_exchange.json").read_text())


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def test_vector_mobike_hashes_use_the_clone_spis() -> None:
    # RFC 4555 §3.8 / RFC 7791 App. A.4: UPDATE_SA_ADDRESSES from the new address of the clone
    clone, mobike = VECTOR["clone"], VECTOR["mobike_on_clone"]
    spi_i, spi_r = bytes.fromhex(clone["new_spi_i"]), bytes.fromhex(clone["new_spi_r"])
    source = nat_detection_hash(spi_i, spi_r, _address(mobike["initiator_new_address"]))
    destination = nat_detection_hash(spi_i, spi_r, _address(mobike["responder_address"]))
    assert source.hex() == mobike["nat_detection_source_ip_in_request"]
    assert destination.hex() == mobike["nat_detection_destination_ip_in_request"]


@settings(max_examples=60, deadline=None)
@given(
    spi_i=st.binary(min_size=8, max_size=8),
    spi_r=st.binary(min_size=8, max_size=8),
    ip=st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=16, max_size=16)),
    port=st.integers(0, 65535),
)
def test_matches_hashlib_sha1(spi_i: bytes, spi_r: bytes, ip: bytes, port: int) -> None:
    packed = ip + port.to_bytes(2, "big")
    expected = hashlib.sha1(spi_i + spi_r + packed).digest()
    assert native_hash(spi_i, spi_r, packed) == expected
    family = socket.AF_INET if len(ip) == 4 else socket.AF_INET6
    host = socket.inet_ntop(family, ip)
    assert nat_detection_hash(spi_i, spi_r, (host, port)) == expected


@pytest.mark.parametrize(
    ("spi_i", "spi_r", "packed", "names"),
    [
        (bytes(7), bytes(8), bytes(6), "spi_i and spi_r"),
        (bytes(8), bytes(9), bytes(6), "spi_i and spi_r"),
        (bytes(8), bytes(8), bytes(5), "packed_address"),
        (bytes(8), bytes(8), bytes(17), "packed_address"),
    ],
)
def test_bad_lengths_raise_value_error(
    spi_i: bytes, spi_r: bytes, packed: bytes, names: str
) -> None:
    with pytest.raises(ValueError, match=names):
        native_hash(spi_i, spi_r, packed)


@pytest.mark.parametrize("bad", [None, bytearray(8), "12345678"])
def test_non_bytes_raise_type_error(bad: object) -> None:
    with pytest.raises(TypeError):
        native_hash(bad, bytes(8), bytes(6))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        native_hash(bytes(8), bytes(8), bad)  # type: ignore[arg-type]
