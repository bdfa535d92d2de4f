"""Complete IKE_SA_INIT + IKE_AUTH handshakes (both sides, in memory) against their DH work.

Group "handshake <group>": ``ikecore`` is one whole handshake, initiator and responder, four
messages parsed, built, sealed and opened, SKEYSEED/SK_*/AUTH/KEYMAT derived, the SAs stored;
``dh-limit`` is the key exchange work alone that the handshake cannot avoid (two key pairs and
two shared secrets with `cryptography`). The ratio dh-limit / ikecore is the share of the
handshake spent in DH: the target is a handshake costing at most 1.5x its DH work (>= 0.67).
"""

from __future__ import annotations

from typing import Any

import pytest

from ikecore.config import EndpointConfig, Identity, PeerConfig
from ikecore.constants import ProtocolId
from ikecore.dh import key_exchange
from ikecore.endpoint import IkeEndpoint
from ikecore.states import IkeState
from ikecore.suites import parse_proposals

PSK = b"ikecore-bench-psk-0123456789abcdef"
CLIENT, GATEWAY = ("192.0.2.1", 500), ("198.51.100.1", 500)
GROUPS = {
    "x25519": ("aes256gcm16-prfsha256-x25519", 31),
    "ecp256": ("aes256gcm16-prfsha256-ecp256", 19),
}


def _pair(ike: str) -> tuple[IkeEndpoint, IkeEndpoint, PeerConfig]:
    proposals = parse_proposals(ike)
    esp = parse_proposals("aes256gcm16", ProtocolId.ESP)
    client = PeerConfig(
        local_id=Identity.parse("client.example"),
        remote_id=Identity.parse("gateway.example"),
        psk=PSK,
        remote_address=GATEWAY,
        local_address=CLIENT,
        ike_proposals=proposals,
        esp_proposals=esp,
    )
    gateway = PeerConfig(
        local_id=Identity.parse("gateway.example"),
        remote_id=Identity.parse("client.example"),
        psk=PSK,
        ike_proposals=proposals,
        esp_proposals=esp,
    )
    initiator = IkeEndpoint(EndpointConfig(peers=(client,)))
    responder = IkeEndpoint(EndpointConfig(peers=(gateway,), ike_proposals=proposals))
    return initiator, responder, client


def _handshake(initiator: IkeEndpoint, responder: IkeEndpoint, peer: PeerConfig) -> None:
    session = initiator.initiate(peer, 0.0)
    endpoints = {CLIENT[0]: initiator, GATEWAY[0]: responder}
    pending = initiator.datagrams_to_send(0.0)
    while pending:
        for datagram in pending:
            endpoints[datagram.dst[0]].receive_datagram(
                datagram.data, datagram.src, datagram.dst, 0.0
            )
        pending = initiator.datagrams_to_send(0.0) + responder.datagrams_to_send(0.0)
    assert session.state == IkeState.ESTABLISHED


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_handshake(benchmark: Any, name: str) -> None:
    ike, _ = GROUPS[name]
    benchmark.group = f"handshake {name}"
    benchmark.extra_info["impl"] = "ikecore"

    def setup() -> tuple[tuple[IkeEndpoint, IkeEndpoint, PeerConfig], dict[str, Any]]:
        return _pair(ike), {}

    benchmark.pedantic(_handshake, setup=setup, rounds=60, warmup_rounds=3)


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_handshake_dh_work(benchmark: Any, name: str) -> None:
    _, group = GROUPS[name]
    benchmark.group = f"handshake {name}"
    benchmark.extra_info["impl"] = "dh-limit"

    def dh_work() -> None:
        ours, theirs = key_exchange(group), key_exchange(group)
        assert ours.shared_secret(theirs.public_data) == theirs.shared_secret(ours.public_data)

    benchmark.pedantic(dh_work, rounds=60, warmup_rounds=3)
