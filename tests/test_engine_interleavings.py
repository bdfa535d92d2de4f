"""Random interleavings of API calls on both ends with a reordering (and, in the second
test, lossy and duplicating) network, under hypothesis.

Whatever the order of creates, rekeys, deletes and liveness checks on either side, and
whatever order the datagrams arrive in, no exception other than the caller's own
LocalProtocolError escapes, and once everything is delivered the two ends agree on every
IKE SA they both still hold (same keys, same Child SA SPIs), and nothing is left half done
(every Child SA installed, no collision or request pending, the store holds exactly the live
SAs).
"""

from __future__ import annotations

import pytest
from engine_harness import pair
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ikecore import LocalProtocolError
from ikecore.endpoint import Datagram, IkeEndpoint
from ikecore.session import IkeSession
from ikecore.states import ChildState, IkeState

OPERATIONS = ["child", "rekey", "rekey_child", "delete_child", "delete", "liveness"]

actions = st.lists(
    st.one_of(
        st.tuples(
            st.just("call"), st.integers(0, 1), st.sampled_from(OPERATIONS), st.integers(0, 3)
        ),
        st.tuples(st.just("deliver"), st.integers(0, 1), st.just(""), st.integers(0, 7)),
    ),
    max_size=25,
)


def _call(session: IkeSession, operation: str, pick: int, now: float) -> None:
    children = session.child_sas
    child = children[pick % len(children)] if children else None
    try:
        if operation == "child":
            session.create_child_sa(now)
        elif operation == "rekey":
            session.rekey(now)
        elif operation == "rekey_child" and child is not None:
            session.rekey_child_sa(child.spi_in, now)
        elif operation == "delete_child" and child is not None:
            session.delete_child_sa(child.spi_in, now)
        elif operation == "delete":
            session.delete(now)
        elif operation == "liveness":
            session.check_liveness(now)
    except LocalProtocolError:
        pass  # not allowed in the SA's current state: the caller's error, nothing sent


def _live(endpoint: IkeEndpoint) -> list[IkeSession]:
    return [s for s in endpoint.sessions if s.state == IkeState.ESTABLISHED and s.visible]


def _assert_settled(endpoint: IkeEndpoint) -> None:
    """Once quiet, no rekey or delete is left half done (e.g. an old Child SA waiting for a
    Delete that never comes, which would refuse every later rekey of it)."""
    assert _live(endpoint) == endpoint.sessions
    for session in endpoint.sessions:
        assert not session.busy()
        assert session.rekey_collision is None and not session.child_collisions
        assert [c.state for c in session.child_sas] == [ChildState.INSTALLED] * len(
            session.child_sas
        )
    stored = sorted(sa.spis for sa in endpoint.store.ike_sas())
    assert stored == sorted(s.sa.spis for s in endpoint.sessions)


# SET_WINDOW_SIZE 3 too: several requests of each end in flight at once (RFC 7296 §2.3).
@pytest.mark.parametrize("window", [1, 3])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=actions)
# A Child SA rekey in flight when both ends rekey the IKE SA at once (found in CI).
@example(
    script=[
        ("call", 0, "rekey_child", 0),
        ("deliver", 0, "", 0),
        ("call", 0, "rekey", 0),
        ("call", 1, "rekey", 0),
        ("deliver", 0, "", 0),
        ("deliver", 0, "", 1),
        ("deliver", 0, "", 1),
    ]
)
# The peer deletes the new Child SA of our rekey before our rekey's response arrives.
@example(
    script=[
        ("call", 0, "rekey_child", 0),
        ("deliver", 0, "", 0),
        ("call", 1, "delete_child", 1),
        ("deliver", 0, "", 1),
    ]
)
# Both rekey the IKE SA and both notice; the winner's Delete of the old SA overtakes its
# answer to the loser's request, so the loser never learns of its redundant new SA.
@example(
    script=[
        ("call", 1, "rekey", 0),
        ("call", 0, "rekey", 0),
        ("deliver", 0, "", 1),
        ("deliver", 0, "", 0),
        ("deliver", 0, "", 1),
        ("deliver", 0, "", 1),
    ]
)
# Both rekey the Child SA; one end deletes the peer's replacement while the collision is open.
@example(
    script=[
        ("call", 1, "rekey_child", 0),
        ("call", 0, "rekey_child", 0),
        ("deliver", 0, "", 1),
        ("deliver", 0, "", 0),
        ("call", 0, "delete_child", 1),
        ("deliver", 0, "", 0),
        ("deliver", 0, "", 1),
    ]
)
def test_random_interleavings_keep_both_ends_consistent(
    script: list[tuple[str, int, str, int]], window: int
) -> None:
    initiator, responder, peer, net = pair(endpoint_options={"window_size": window})
    initiator.initiate(peer, 0.0)
    net.run(0.0)
    endpoints = (initiator, responder)
    pending: list[Datagram] = []
    now = 1.0
    for kind, side, operation, pick in script:
        now += 0.01
        if kind == "call":
            sessions = _live(endpoints[side])
            if sessions:
                _call(sessions[pick % len(sessions)], operation, pick, now)
        elif pending:
            datagram = pending.pop(pick % len(pending))  # any order: reordering
            net.hosts[datagram.dst[0]].receive_datagram(
                datagram.data, datagram.src, datagram.dst, now
            )
        pending += net.capture(now)
    # Heal: deliver everything, run timers until quiet.
    net.deliver(pending, now)
    for _ in range(50):
        net.run(now)
        timers = [t for t in (initiator.get_timer(), responder.get_timer()) if t is not None]
        if not timers:
            break
        now = max(now, min(timers))
        initiator.handle_timer(now)
        responder.handle_timer(now)
    _assert_settled(initiator)
    _assert_settled(responder)
    assert sorted(s.sa.spis for s in _live(initiator)) == sorted(
        s.sa.spis for s in _live(responder)
    )
    for session in _live(initiator):
        (peer_session,) = [s for s in responder.sessions if s.sa.spis == session.sa.spis]
        assert peer_session.sa.keys == session.sa.keys
        ours = sorted((c.spi_in, c.spi_out) for c in session.child_sas)
        theirs = sorted((c.spi_out, c.spi_in) for c in peer_session.child_sas)
        assert ours == theirs


faulty_actions = st.lists(
    st.one_of(
        st.tuples(
            st.just("call"), st.integers(0, 1), st.sampled_from(OPERATIONS), st.integers(0, 3)
        ),
        st.tuples(
            st.sampled_from(["deliver", "drop", "duplicate"]),
            st.integers(0, 1),
            st.just(""),
            st.integers(0, 7),
        ),
        st.tuples(st.just("timer"), st.integers(0, 1), st.just(""), st.integers(0, 3)),
    ),
    max_size=30,
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@pytest.mark.parametrize("window", [1, 3])
@given(script=faulty_actions)
def test_random_interleavings_with_loss_duplication_and_timers(
    script: list[tuple[str, int, str, int]], window: int
) -> None:
    initiator, responder, peer, net = pair(endpoint_options={"window_size": window})
    initiator.initiate(peer, 0.0)
    net.run(0.0)
    endpoints = (initiator, responder)
    pending: list[Datagram] = []
    now = 1.0
    for kind, side, operation, pick in script:
        now += 0.01
        if kind == "call":
            sessions = _live(endpoints[side])
            if sessions:
                _call(sessions[pick % len(sessions)], operation, pick, now)
        elif kind == "timer":
            now += 1.0 + pick  # retransmissions fire; never long enough to give an SA up
            for endpoint in endpoints:
                endpoint.handle_timer(now)
        elif pending:
            datagram = pending.pop(pick % len(pending))
            copies = {"deliver": 1, "drop": 0, "duplicate": 2}[kind]
            for _ in range(copies):
                net.hosts[datagram.dst[0]].receive_datagram(
                    datagram.data, datagram.src, datagram.dst, now
                )
        pending += net.capture(now)
    net.deliver(pending, now)
    for _ in range(80):
        net.run(now)
        timers = [t for t in (initiator.get_timer(), responder.get_timer()) if t is not None]
        if not timers:
            break
        now = max(now, min(timers))
        initiator.handle_timer(now)
        responder.handle_timer(now)
    _assert_settled(initiator)
    _assert_settled(responder)
    assert sorted(s.sa.spis for s in _live(initiator)) == sorted(
        s.sa.spis for s in _live(responder)
    )
    for session in _live(initiator):
        (peer_session,) = [s for s in responder.sessions if s.sa.spis == session.sa.spis]
        assert peer_session.sa.keys == session.sa.keys
        ours = sorted((c.spi_in, c.spi_out) for c in session.child_sas)
        assert ours == sorted((c.spi_out, c.spi_in) for c in peer_session.child_sas)
