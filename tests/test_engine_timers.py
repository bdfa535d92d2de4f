"""The endpoint's timer over many IKE SAs: `get_timer` is always the earliest deadline of any
session, and finding it (or running `handle_timer`) does not visit every session, only those
that changed since the last look (a gateway calls both after every datagram)."""

from __future__ import annotations

import dataclasses
import random

import pytest
from engine_harness import Network, drain, pair_from, peer_configs
from hypothesis import given, settings
from hypothesis import strategies as st

from ikecore.config import PeerConfig
from ikecore.endpoint import IkeEndpoint
from ikecore.session import IkeSession
from ikecore.states import IkeState

# Every kind of deadline a session has: retransmission (lost datagrams), half-open expiry,
# liveness checks, IKE and Child SA rekeys, hard lifetimes.
MAINTENANCE = {
    "dpd_delay": 15.0,
    "ike_rekey_time": 70.0,
    "child_rekey_time": 45.0,
    "ike_lifetime": 200.0,
    "child_lifetime": 150.0,
}


def _maintained_pair() -> tuple[IkeEndpoint, IkeEndpoint, PeerConfig, Network]:
    client, gateway = (dataclasses.replace(p, **MAINTENANCE) for p in peer_configs())
    initiator, responder, network = pair_from(client, gateway)
    return initiator, responder, client, network


def _earliest(endpoint: IkeEndpoint) -> float | None:
    """What the endpoint's timer must say: a pass over every session."""
    deadlines = [t for s in endpoint.sessions if (t := s.get_timer()) is not None]
    return min(deadlines, default=None)


def _established(endpoint: IkeEndpoint) -> list[IkeSession]:
    return [s for s in endpoint.sessions if s.state is IkeState.ESTABLISHED]


STEPS = st.lists(
    st.sampled_from(
        ["initiate", "deliver", "lose", "wait", "child", "rekey", "delete", "clone", "esp"]
    ),
    min_size=5,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(steps=STEPS, seed=st.integers(0, 2**32 - 1))
def test_timer_is_the_earliest_deadline_of_any_session(steps: list[str], seed: int) -> None:
    initiator, responder, peer, network = _maintained_pair()
    choose = random.Random(seed)
    now = 0.0
    for step in steps:
        if step == "initiate":
            initiator.initiate(peer, now)
        elif step == "deliver":
            network.run(now)
        elif step == "lose":
            network.capture(now)  # everything queued is lost: retransmissions follow
        elif step == "wait":
            # Past some deadlines: retransmissions, liveness checks, rekeys, expiries.
            now += choose.choice([0.5, 3.0, 16.0, 50.0])
            for endpoint in (initiator, responder):
                endpoint.handle_timer(now)
            network.run(now)
        elif step == "esp":
            # Authentic ESP defers the receiver's liveness check (a deadline that moves later
            # without any IKE message).
            for session in _established(initiator):
                for child in session.child_sas:
                    initiator.send_esp(child.spi_in, b"ping", 59, now)
            network.run(now)
        elif sessions := _established(initiator):
            session = choose.choice(sessions)
            if step == "child":
                session.create_child_sa(now)
            elif step == "rekey":
                session.rekey(now)
            elif step == "delete":
                session.delete(now)
            elif step == "clone":
                session.request_clone(now)
        for endpoint in (initiator, responder):
            drain(endpoint)
            assert endpoint.get_timer() == _earliest(endpoint), (step, endpoint)


def test_finding_the_timer_asks_only_the_sessions_that_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    initiator, responder, peer, network = _maintained_pair()
    for n in range(300):  # one after another: each SA's deadlines are its own
        initiator.initiate(peer, n / 100)
        network.run(n / 100)
    assert len(_established(responder)) == 300
    deadline = responder.get_timer()
    assert deadline is not None

    asked: list[IkeSession] = []
    get_timer = IkeSession.get_timer

    def counted(session: IkeSession) -> float | None:
        asked.append(session)
        return get_timer(session)

    monkeypatch.setattr(IkeSession, "get_timer", counted)
    # One more SA: only it (and the session at the top of the heap, checked as it stands)
    # is asked, not the 300 others; a pass over all of them would ask 301.
    initiator.initiate(peer, 3.0)
    network.run(3.0)
    asked.clear()
    assert responder.get_timer() == deadline
    assert len(asked) <= 3
    # Nothing due: handle_timer runs nobody and asks nobody.
    asked.clear()
    responder.handle_timer(3.0)
    assert asked == []
    # At the first deadline (the first SA's liveness check) only that SA runs and is asked.
    asked.clear()
    responder.handle_timer(deadline)
    assert 1 <= len({id(s) for s in asked}) <= 2
    assert len(network.capture(deadline)) == 1  # its liveness check, an empty INFORMATIONAL


def test_superseded_deadlines_do_not_pile_up() -> None:
    # Each exchange moves an SA's deadline earlier (the request's retransmission) and back to
    # its next rekey: one more heap entry each time. The heap keeps such superseded entries
    # only until it holds twice as many as there are SAs (plus a little), then drops them.
    rekeys_only = {key: value for key, value in MAINTENANCE.items() if key != "dpd_delay"}
    client, gateway = (dataclasses.replace(p, **rekeys_only) for p in peer_configs())
    initiator, _, network = pair_from(client, gateway)
    session = initiator.initiate(client, 0.0)
    network.run(0.0)
    for n in range(1, 400):
        now = n / 100
        session.create_child_sa(now)
        assert initiator.get_timer() == _earliest(initiator)  # the retransmission
        network.run(now)
        assert initiator.get_timer() == _earliest(initiator)  # the first Child SA's rekey
    assert len(session.child_sas) == 400
    assert len(initiator._timer_heap) <= 2 * len(initiator.sessions) + 65
