"""Key exchange groups: published vectors, agreement, and RFC 6989 rejection of bad values."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikecore import DhGroup, NotifyType, RemoteProtocolError
from ikecore.dh import SUPPORTED_GROUPS, ke_data_length, key_exchange

VECTORS = json.loads((pathlib.Path(__file__).parent / "vectors" / "dh_groups.json").read_text())[
    "vectors"
]


def _vectors(groups: set[int]) -> list[dict[str, Any]]:
    return [v for v in VECTORS if int(v["group"]) in groups]


@pytest.mark.parametrize("vector", _vectors({19, 20, 21}), ids=lambda v: v["id"])
def test_ecp_vectors_rfc5903(vector: dict[str, Any]) -> None:
    group = int(vector["group"])
    initiator = key_exchange(group, bytes.fromhex(vector["private_i"]))
    responder = key_exchange(group, bytes.fromhex(vector["private_r"]))
    assert initiator.public_data.hex() == vector["ke_i_data"]
    assert responder.public_data.hex() == vector["ke_r_data"]
    g_ir = vector["shared_secret_g_ir"]
    assert initiator.shared_secret(responder.public_data).hex() == g_ir
    assert responder.shared_secret(initiator.public_data).hex() == g_ir
    assert len(initiator.public_data) == ke_data_length(group)


@pytest.mark.parametrize("vector", _vectors({31}), ids=lambda v: v["id"])
def test_x25519_vector_rfc8031(vector: dict[str, Any]) -> None:
    initiator = key_exchange(31, bytes.fromhex(vector["random_i"]))
    responder = key_exchange(31, bytes.fromhex(vector["random_r"]))
    assert initiator.public_data.hex() == vector["ke_i_data"]
    assert responder.public_data.hex() == vector["ke_r_data"]
    assert initiator.shared_secret(responder.public_data).hex() == vector["shared_secret_g_ir"]
    assert responder.shared_secret(initiator.public_data).hex() == vector["shared_secret_g_ir"]


def _group14_prime() -> int:
    (vector,) = _vectors({14})
    return int(vector["prime"], 16)


def test_modp_2048_against_modular_exponentiation() -> None:
    # Independent oracle: Python's pow() with the RFC 3526 prime from the vector file.
    p = _group14_prime()
    x_i, x_r = 0x1234567 << 200 | 0xABCDEF, 0x7654321 << 190 | 0x13579
    initiator = key_exchange(14, x_i.to_bytes(32, "big"))
    responder = key_exchange(14, x_r.to_bytes(32, "big"))
    assert initiator.public_data == pow(2, x_i, p).to_bytes(256, "big")
    expected = pow(pow(2, x_r, p), x_i, p).to_bytes(256, "big")
    assert initiator.shared_secret(responder.public_data) == expected
    assert responder.shared_secret(initiator.public_data) == expected


def test_modp_shared_secret_keeps_leading_zeros() -> None:
    # g^ir is padded to 256 bytes (RFC 7296 §2.14); pick a peer value with a small result.
    p = _group14_prime()
    x = 5
    ours = key_exchange(14, x.to_bytes(1, "big"))
    peer_y = 2  # (2^5) mod p = 32: a one-byte value, padded on the left
    assert ours.shared_secret(peer_y.to_bytes(256, "big")) == pow(2, x, p).to_bytes(256, "big")


@settings(max_examples=10, deadline=None)
@given(group=st.sampled_from(sorted(SUPPORTED_GROUPS)))
def test_fresh_pairs_agree(group: int) -> None:
    a, b = key_exchange(group), key_exchange(group)
    assert a.group == b.group == group
    assert len(a.public_data) == ke_data_length(group)
    assert a.shared_secret(b.public_data) == b.shared_secret(a.public_data)
    assert a.public_data != b.public_data


def _assert_invalid(group: int, data: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        key_exchange(group).shared_secret(data)
    assert caught.value.notify_type == NotifyType.INVALID_SYNTAX


@pytest.mark.parametrize("y", [0, 1, "p-1", "p", "p+1", "2^2048-1"], ids=lambda y: f"y={y}")
def test_modp_rejects_values_outside_the_group(y: int | str) -> None:
    p = _group14_prime()
    value = {"p-1": p - 1, "p": p, "p+1": p + 1, "2^2048-1": 2**2048 - 1}.get(str(y), y)
    assert isinstance(value, int)
    _assert_invalid(14, value.to_bytes(256, "big"))


@pytest.mark.parametrize("group", sorted(SUPPORTED_GROUPS))
def test_wrong_length_is_invalid_syntax(group: int) -> None:
    good = key_exchange(group).public_data
    _assert_invalid(group, good[:-1])
    _assert_invalid(group, good + b"\x00")
    _assert_invalid(group, b"")


@pytest.mark.parametrize("group", [19, 20, 21])
def test_ecp_rejects_points_off_the_curve(group: int) -> None:
    # RFC 6989 §2.3: a point that does not satisfy the curve equation must be refused.
    good = bytearray(key_exchange(group).public_data)
    good[-1] ^= 0x01
    _assert_invalid(group, bytes(good))
    _assert_invalid(group, bytes(len(good)))  # (0, 0) is not on any of these curves


def test_x25519_small_order_point_refused_non_canonical_accepted() -> None:
    # The all-zero u-coordinate gives an all-zero shared secret (RFC 7748 §6.1 MAY abort).
    _assert_invalid(DhGroup.CURVE25519, bytes(32))
    # RFC 8031 §3.2: the top bit is masked, so a value with it set equals the masked one.
    ours = key_exchange(31)
    peer = bytearray(key_exchange(31).public_data)
    masked = ours.shared_secret(bytes(peer))
    peer[31] |= 0x80
    assert ours.shared_secret(bytes(peer)) == masked


def test_unsupported_group_and_bad_private_are_value_errors() -> None:
    with pytest.raises(ValueError, match="unsupported key exchange group 15"):
        key_exchange(15)
    with pytest.raises(ValueError, match="unsupported"):
        ke_data_length(2)
    with pytest.raises(ValueError, match="32 bytes"):
        key_exchange(31, b"\x01" * 31)
    with pytest.raises(ValueError, match=r"\(1, p-1\)"):
        key_exchange(14, b"\x01")
