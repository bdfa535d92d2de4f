"""Random interleavings of clones, Child SAs, MOBIKE moves, rekeys and deletes on both ends,
with requests crossing on the wire and datagrams lost: once retransmission has settled
everything, both ends agree on every IKE SA and Child SA, and on the clones announced."""

from __future__ import annotations

from clone_harness import SECOND_HOST, Pair, established
from engine_harness import INITIATOR_HOST, drain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ikecore import CloneRefused, LocalProtocolError
from ikecore.events import IkeSaCloned
from ikecore.session import IkeSession
from ikecore.states import IkeState

OPERATIONS = ("clone", "child", "move", "rekey", "delete", "deliver", "drop")
operations = st.lists(
    st.tuples(st.sampled_from(OPERATIONS), st.booleans(), st.integers(0, 7)), max_size=10
)


def _apply(p: Pair, operation: str, on_client: bool, pick: int, now: float) -> None:
    endpoint = p.client if on_client else p.gateway
    live = [s for s in endpoint.sessions if s.state == IkeState.ESTABLISHED]
    if operation == "deliver":
        p.net.run(now)
        return
    if operation == "drop":
        p.net.capture(now)  # every datagram in flight is lost; retransmission recovers
        return
    if not live:
        return
    session: IkeSession = live[pick % len(live)]
    try:
        if operation == "clone":
            session.request_clone(now)
        elif operation == "child":
            session.create_child_sa(now)
        elif operation == "move":
            host = SECOND_HOST if pick % 2 else INITIATOR_HOST
            if on_client:
                session.update_addresses((host, 4500), now)
        elif operation == "rekey":
            session.rekey(now)
        elif operation == "delete":
            session.delete(now)
    except (CloneRefused, LocalProtocolError):
        pass


def _live(p: Pair, client: bool) -> dict[tuple[bytes, bytes], IkeSession]:
    endpoint = p.client if client else p.gateway
    return {s.sa.spis: s for s in endpoint.sessions if s.state != IkeState.DELETED}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=operations)
def test_both_ends_agree_after_any_interleaving(steps: list[tuple[str, bool, int]]) -> None:
    p = established()
    clones_reported: dict[bool, list[IkeSession]] = {True: [], False: []}
    now = 1.0
    for operation, on_client, pick in steps:
        _apply(p, operation, on_client, pick, now)
        _note_clones(p, clones_reported)
        now += 0.01
    # Quiet the network: deliver, then let the retransmission timers fire until no request
    # is left unanswered.
    p.net.run(now)
    for _ in range(50):
        timers = [t for t in (p.client.get_timer(), p.gateway.get_timer()) if t is not None]
        if not timers:
            break
        now = max(now, min(timers))
        p.client.handle_timer(now)
        p.gateway.handle_timer(now)
        p.net.run(now)
    _note_clones(p, clones_reported)
    client, gateway = _live(p, True), _live(p, False)
    assert client.keys() == gateway.keys()
    for spis, ours in client.items():
        theirs = gateway[spis]
        assert ours.sa.keys == theirs.sa.keys
        assert ours.state == theirs.state == IkeState.ESTABLISHED
        assert ours.sa.next_request_id == theirs.sa.next_peer_request_id
        assert theirs.sa.next_request_id == ours.sa.next_peer_request_id
        pairs = {(c.spi_in, c.spi_out, c.key_in, c.key_out) for c in ours.child_sas}
        mirrored = {(c.spi_out, c.spi_in, c.key_out, c.key_in) for c in theirs.child_sas}
        assert pairs == mirrored
    # Every clone was announced on both ends, exactly once, and is either served by its
    # endpoint or over (deleted, rekeyed away).
    assert len(clones_reported[True]) == len(clones_reported[False])
    for side, live in ((True, client), (False, gateway)):
        for clone in clones_reported[side]:
            assert clone.sa.spis in live or clone.state == IkeState.DELETED


def _note_clones(p: Pair, reported: dict[bool, list[IkeSession]]) -> None:
    for side, endpoint in ((True, p.client), (False, p.gateway)):
        reported[side] += [e.clone for e in drain(endpoint) if isinstance(e, IkeSaCloned)]
