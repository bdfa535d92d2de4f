"""Complete RFC 7791 clone round trips (both sides, in memory) against their DH work.

Group "clone <group>": ``ikecore`` is one whole clone: `request_clone` on the client, the
CREATE_CHILD_SA {N(CLONE_IKE_SA), SA, Ni, KEi} request built and sealed, opened and processed
by the gateway (proposal choice, key pair, shared secret, SKEYSEED' and the seven SK_* keys,
the clone's session and store record), the response {SA, Nr, KEr} sealed, opened and
processed by the client (shared secret, keys, session, record), and both `IkeSaCloned` events.
``dh-limit`` is the key exchange work alone that a clone cannot avoid: two key pairs and two
shared secrets (`ikecore.dh`, on OpenSSL through `cryptography`). The ratio dh-limit / ikecore
is the share of a clone spent in DH; the target is a clone costing at most 1.3x its DH work,
i.e. a ratio of at least 0.77.
"""

from __future__ import annotations

from typing import Any

import pytest

from ikecore.config import EndpointConfig, Identity, PeerConfig
from ikecore.constants import ProtocolId
from ikecore.dh import key_exchange
from ikecore.endpoint import IkeEndpoint
from ikecore.events import IkeSaCloned
from ikecore.session import IkeSession
from ikecore.states import IkeState
from ikecore.suites import parse_proposals

PSK = b"ikecore-bench-psk-0123456789abcdef"
CLIENT, GATEWAY = ("192.0.2.1", 500), ("198.51.100.1", 500)
GROUPS = {
    "x25519": ("aes256gcm16-prfsha256-x25519", 31),
    "ecp256": ("aes256gcm16-prfsha256-ecp256", 19),
}
ROUNDS = 100


def _deliver(endpoints: dict[str, IkeEndpoint]) -> None:
    pending = [d for e in endpoints.values() for d in e.datagrams_to_send(0.0)]
    while pending:
        for datagram in pending:
            endpoints[datagram.dst[0]].receive_datagram(
                datagram.data, datagram.src, datagram.dst, 0.0
            )
        pending = [d for e in endpoints.values() for d in e.datagrams_to_send(0.0)]


def _established(ike: str) -> tuple[IkeSession, dict[str, IkeEndpoint]]:
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
    endpoints = {CLIENT[0]: initiator, GATEWAY[0]: responder}
    session = initiator.initiate(client, 0.0)
    _deliver(endpoints)
    assert session.state == IkeState.ESTABLISHED and session.sa.clone_negotiated
    return session, endpoints


def _clone(session: IkeSession, endpoints: dict[str, IkeEndpoint]) -> None:
    session.request_clone(0.0)
    _deliver(endpoints)
    made = 0
    for endpoint in endpoints.values():
        while (event := endpoint.next_event()) is not None:
            made += isinstance(event, IkeSaCloned)
    assert made == 2  # one IkeSaCloned on each side


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_clone(benchmark: Any, name: str) -> None:
    ike, _ = GROUPS[name]
    benchmark.group = f"clone {name}"
    benchmark.extra_info["impl"] = "ikecore"
    # One established pair; every round clones its first IKE SA once more (window 1: the
    # rounds are sequential exchanges on it, each leaving one more clone on both sides).
    session, endpoints = _established(ike)
    benchmark.pedantic(_clone, args=(session, endpoints), rounds=ROUNDS, warmup_rounds=3)
    assert len(endpoints[GATEWAY[0]].sessions) == ROUNDS + 3 + 1


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_clone_dh_work(benchmark: Any, name: str) -> None:
    _, group = GROUPS[name]
    benchmark.group = f"clone {name}"
    benchmark.extra_info["impl"] = "dh-limit"

    def dh_work() -> None:
        ours, theirs = key_exchange(group), key_exchange(group)
        assert ours.shared_secret(theirs.public_data) == theirs.shared_secret(ours.public_data)

    benchmark.pedantic(dh_work, rounds=ROUNDS, warmup_rounds=3)
