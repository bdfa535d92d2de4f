"""Complete RFC 7791 clone round trips (both sides, in memory) against their DH work.

Group "clone <group>": ``ikecore`` is one whole clone: `request_clone` on the client, the
CREATE_CHILD_SA {N(CLONE_IKE_SA), SA, Ni, KEi} request built and sealed, opened and processed
by the gateway (proposal choice, key pair, shared secret, SKEYSEED' and the seven SK_* keys,
the clone's session and store record), the response {SA, Nr, KEr} sealed, opened and
processed by the client (shared secret, keys, session, record), and both `IkeSaCloned` events.
The clone's own SK cipher contexts are made when it first carries a message (as the ESP objects
of a Child SA are), so they are not in this time: a clone handed to another node never needs
them where it was made.
``dh-limit`` is the key exchange work alone that a clone cannot avoid: two key pairs, two
public values serialized and parsed with the RFC 6989 checks, two shared secrets, on
`cryptography` directly (``engine_pair.dh_work``). The ratio dh-limit / ikecore is the share of
a clone spent in DH; the target is a clone costing at most 1.3x its DH work, i.e. a ratio of
at least 0.77.
"""

from __future__ import annotations

from typing import Any

import pytest
from engine_pair import GROUPS, count_events, deliver, dh_work, endpoint_pair

from ikecore.endpoint import IkeEndpoint
from ikecore.events import IkeSaCloned
from ikecore.session import IkeSession
from ikecore.states import IkeState

ROUNDS = 100


def _established(ike: str) -> tuple[IkeSession, IkeEndpoint, IkeEndpoint]:
    initiator, responder, client = endpoint_pair(ike)
    session = initiator.initiate(client, 0.0)
    deliver(initiator, responder)
    assert session.state == IkeState.ESTABLISHED and session.sa.clone_negotiated
    return session, initiator, responder


def _clone(session: IkeSession, initiator: IkeEndpoint, responder: IkeEndpoint) -> None:
    session.request_clone(0.0)
    deliver(initiator, responder)
    # one IkeSaCloned on each side
    assert count_events(IkeSaCloned, initiator, responder) == 2


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_clone(benchmark: Any, name: str) -> None:
    ike, _ = GROUPS[name]
    benchmark.group = f"clone {name}"
    benchmark.extra_info["impl"] = "ikecore"
    # One established pair; every round clones its first IKE SA once more (window 1: the
    # rounds are sequential exchanges on it, each leaving one more clone on both sides).
    session, initiator, responder = _established(ike)
    benchmark.pedantic(
        _clone, args=(session, initiator, responder), rounds=ROUNDS, warmup_rounds=3
    )
    assert len(responder.sessions) >= ROUNDS + 3 + 1


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_clone_dh_work(benchmark: Any, name: str) -> None:
    _, group = GROUPS[name]
    benchmark.group = f"clone {name}"
    benchmark.extra_info["impl"] = "dh-limit"
    benchmark.pedantic(dh_work(group), rounds=ROUNDS, warmup_rounds=3)
