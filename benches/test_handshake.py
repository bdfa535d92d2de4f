"""Complete IKE_SA_INIT + IKE_AUTH handshakes (both sides, in memory) against their DH work.

Group "handshake <group>": ``ikecore`` is one whole handshake, initiator and responder, four
messages parsed, built, sealed and opened, SKEYSEED/SK_*/AUTH/KEYMAT derived, the SAs stored
and the events taken out; every round is one more handshake between the same two endpoints.
``dh-limit`` is the key exchange work alone that the handshake cannot avoid: two key pairs,
two public values serialized and parsed with the RFC 6989 checks, two shared secrets, on
`cryptography` directly (``engine_pair.dh_work``). The ratio dh-limit / ikecore is the share
of the handshake spent in DH: the target is a handshake costing at most 1.5x its DH work
(>= 0.67).
"""

from __future__ import annotations

from typing import Any

import pytest
from engine_pair import GROUPS, count_events, deliver, dh_work, endpoint_pair

from ikecore.config import PeerConfig
from ikecore.endpoint import IkeEndpoint
from ikecore.events import IkeSaEstablished
from ikecore.states import IkeState

ROUNDS = 60


def _handshake(initiator: IkeEndpoint, responder: IkeEndpoint, peer: PeerConfig) -> None:
    session = initiator.initiate(peer, 0.0)
    deliver(initiator, responder)
    assert session.state == IkeState.ESTABLISHED
    # one IkeSaEstablished on each side
    assert count_events(IkeSaEstablished, initiator, responder) == 2


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_handshake(benchmark: Any, name: str) -> None:
    ike, _ = GROUPS[name]
    benchmark.group = f"handshake {name}"
    benchmark.extra_info["impl"] = "ikecore"
    initiator, responder, peer = endpoint_pair(ike)
    benchmark.pedantic(
        _handshake, args=(initiator, responder, peer), rounds=ROUNDS, warmup_rounds=3
    )
    assert len(responder.sessions) >= ROUNDS + 3


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_handshake_dh_work(benchmark: Any, name: str) -> None:
    _, group = GROUPS[name]
    benchmark.group = f"handshake {name}"
    benchmark.extra_info["impl"] = "dh-limit"
    benchmark.pedantic(dh_work(group), rounds=ROUNDS, warmup_rounds=3)
