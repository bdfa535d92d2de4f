"""Clones crossing other exchanges (RFC 7791 leaves these open; docs/CLONE.md has the choices)
and lost or duplicated clone messages (RFC 7296 §2.1-2.3)."""

from __future__ import annotations

import pytest
from clone_harness import clone_on_both_sides, established
from engine_harness import of_type

from ikecore import CloneRefused
from ikecore.endpoint import Datagram
from ikecore.events import CloneFailed, IkeSaCloned, IkeSaDeleted, IkeSaRekeyed, IkeSaRekeyFailed
from ikecore.exchanges.clone_ike import CloneIkeInitiator
from ikecore.session import IkeSession
from ikecore.states import IkeState


def clone_nonce(session: IkeSession) -> bytes:
    (task,) = [t for t in session.outstanding_tasks() if isinstance(t, CloneIkeInitiator)]
    return task.ni


def test_simultaneous_clones_from_both_ends_make_two_clones() -> None:
    p = established()
    # HDR(old, #2), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->
    #                   <--  HDR(old, #0), SK {N(CLONE_IKE_SA), SA, Ni, KEi}
    # HDR(old, #0), SK {SA, Nr, KEr}  -->  <--  HDR(old, #2), SK {SA, Nr, KEr}
    p.client_sa.request_clone(1.0)
    p.gateway_sa.request_clone(1.0)
    assert sorted(p.run(1.0)) == [
        "CREATE_CHILD_SA --> #0",
        "CREATE_CHILD_SA --> #2",
        "CREATE_CHILD_SA <-- #0",
        "CREATE_CHILD_SA <-- #2",
    ]
    client_events, gateway_events = p.events()
    client_clones = [e.clone for e in of_type(client_events, IkeSaCloned)]  # type: ignore[attr-defined]
    gateway_clones = [e.clone for e in of_type(gateway_events, IkeSaCloned)]  # type: ignore[attr-defined]
    # Both are legitimate clones (unlike a rekey collision, RFC 7296 §2.8.2, nothing is
    # redundant): one made by each end, each its own original initiator.
    assert len(client_clones) == len(gateway_clones) == 2
    assert {c.sa.spis for c in client_clones} == {c.sa.spis for c in gateway_clones}
    assert sorted(c.sa.initiator for c in client_clones) == [False, True]
    assert len(p.client.sessions) == len(p.gateway.sessions) == 3
    assert p.client_sa.state == p.gateway_sa.state == IkeState.ESTABLISHED


def test_simultaneous_clones_with_room_for_one_make_exactly_one() -> None:
    p = established(client_max_clones=1, gateway_max_clones=1)
    p.client_sa.request_clone(1.0)
    p.gateway_sa.request_clone(1.0)
    client_nonce, gateway_nonce = clone_nonce(p.client_sa), clone_nonce(p.gateway_sa)
    # Both requests cross; each end lets the one with the higher nonce through and refuses
    # the other with NO_ADDITIONAL_SAS, so the limit holds and exactly one clone is made.
    p.run(1.0)
    client_events, gateway_events = p.events()
    (clone,) = of_type(client_events, IkeSaCloned)
    (peer_clone,) = of_type(gateway_events, IkeSaCloned)
    assert isinstance(clone, IkeSaCloned) and isinstance(peer_clone, IkeSaCloned)
    assert clone.clone.sa.spis == peer_clone.clone.sa.spis
    client_won = client_nonce > gateway_nonce
    assert clone.clone.sa.initiator is client_won
    loser_events = gateway_events if client_won else client_events
    (refusal,) = of_type(loser_events, CloneFailed)
    assert isinstance(refusal, CloneFailed) and refusal.reason == "NO_ADDITIONAL_SAS"
    assert len(p.client.sessions) == len(p.gateway.sessions) == 2


def test_clone_crossing_a_rekey_of_the_same_sa() -> None:
    p = established()
    # HDR(old, #2), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->
    #                                 <--  HDR(old, #0), SK {SA, Ni, KEi}   (rekey)
    # HDR(old, #0), SK {N(TEMPORARY_FAILURE)}  -->  <--  HDR(old, #2), SK {N(TEMPORARY_FAILURE)}
    p.client_sa.request_clone(1.0)
    p.gateway_sa.rekey(1.0)
    p.run(1.0)
    client_events, gateway_events = p.events()
    (clone_failed,) = of_type(client_events, CloneFailed)
    assert isinstance(clone_failed, CloneFailed) and clone_failed.reason == "TEMPORARY_FAILURE"
    (rekey_failed,) = of_type(gateway_events, IkeSaRekeyFailed)
    assert isinstance(rekey_failed, IkeSaRekeyFailed)
    assert p.client_sa.state == p.gateway_sa.state == IkeState.ESTABLISHED
    assert len(p.client.sessions) == len(p.gateway.sessions) == 1
    # The rekey goes through later; the surviving SA may be cloned at once (the retry delay
    # holds for the SA that refused, not for its successor).
    p.gateway_sa.rekey(2.0)
    p.run(2.0)
    (rekeyed,) = of_type(p.events()[0], IkeSaRekeyed)
    assert isinstance(rekeyed, IkeSaRekeyed)
    clone, _ = clone_on_both_sides(p, rekeyed.new, 2.5)
    assert clone.sa.parent == rekeyed.new.sa.spis


def test_clone_crossing_a_delete_of_the_same_sa() -> None:
    p = established()
    # HDR(old, #2), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->
    #                                           <--  HDR(old, #0), SK {D(IKE)}
    # HDR(old, #0), SK {}  -->  <--  HDR(old, #2), SK {N(TEMPORARY_FAILURE)}  (SA already gone)
    p.client_sa.request_clone(1.0)
    p.gateway_sa.delete(1.0)
    p.run(1.0)
    client_events, gateway_events = p.events()
    (clone_failed,) = of_type(client_events, CloneFailed)
    assert isinstance(clone_failed, CloneFailed) and clone_failed.reason == "deleted_by_peer"
    assert of_type(client_events, IkeSaDeleted) and of_type(gateway_events, IkeSaDeleted)
    assert not of_type(client_events + gateway_events, IkeSaCloned)
    assert p.client.sessions == [] and p.gateway.sessions == []


def test_our_delete_waits_for_our_clone_which_outlives_its_parent() -> None:
    p = established()
    # HDR(old, #2), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->  <--  HDR(old, #2), SK {SA, Nr, KEr}
    # HDR(old, #3), SK {D(IKE)}  -->  <--  HDR(old, #3), SK {}
    p.client_sa.request_clone(1.0)
    p.client_sa.delete(1.0)
    assert p.run(1.0) == [
        "CREATE_CHILD_SA --> #2",
        "CREATE_CHILD_SA <-- #2",
        "INFORMATIONAL --> #3",
        "INFORMATIONAL <-- #3",
    ]
    client_events, gateway_events = p.events()
    (made,) = of_type(client_events, IkeSaCloned)
    assert isinstance(made, IkeSaCloned)
    assert p.client.sessions == [made.clone] and len(p.gateway.sessions) == 1
    assert made.clone.state == IkeState.ESTABLISHED and of_type(gateway_events, IkeSaDeleted)


def test_no_clone_while_our_own_rekey_or_delete_runs() -> None:
    p = established()
    p.client_sa.rekey(1.0)
    with pytest.raises(CloneRefused) as refused:
        p.client_sa.request_clone(1.0)
    assert refused.value.reason == "TEMPORARY_FAILURE"
    p.run(1.0)
    (rekeyed,) = of_type(p.events()[0], IkeSaRekeyed)
    assert isinstance(rekeyed, IkeSaRekeyed)
    rekeyed.new.delete(2.0)
    with pytest.raises(CloneRefused):
        rekeyed.new.request_clone(2.0)


# -- lost and duplicated messages ----------------------------------------------------------


def _is_clone_exchange(datagram: Datagram, response: bool) -> bool:
    data = datagram.data[4:] if datagram.data[:4] == bytes(4) else datagram.data
    return len(data) > 28 and data[18] == 36 and bool(data[19] & 0x20) is response


def test_lost_clone_request_is_retransmitted() -> None:
    p = established()
    dropped: list[Datagram] = []

    def drop_first_request(d: Datagram) -> list[Datagram]:
        if not dropped and _is_clone_exchange(d, response=False):
            dropped.append(d)
            return []
        return [d]

    # HDR(old, #2), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  --X
    p.client_sa.request_clone(1.0)
    p.net.run(1.0, drop_first_request)
    assert dropped and p.events() == ([], [])
    # (retransmission, the same bytes)  -->  <--  HDR(old, #2), SK {SA, Nr, KEr}
    p.client.handle_timer(2.0)
    assert p.run(2.0) == ["CREATE_CHILD_SA --> #2", "CREATE_CHILD_SA <-- #2"]
    client_events, gateway_events = p.events()
    assert (
        len(of_type(client_events, IkeSaCloned)) == len(of_type(gateway_events, IkeSaCloned)) == 1
    )
    assert p.client_sa.retransmissions == 1 and len(p.gateway.sessions) == 2


def test_lost_clone_response_is_answered_from_the_cache_without_a_second_clone() -> None:
    p = established()
    dropped: list[Datagram] = []

    def drop_first_response(d: Datagram) -> list[Datagram]:
        if not dropped and _is_clone_exchange(d, response=True):
            dropped.append(d)
            return []
        return [d]

    # HDR(old, #2), SK {N(CLONE_IKE_SA), ...}  -->  X--  HDR(old, #2), SK {SA, Nr, KEr}
    p.client_sa.request_clone(1.0)
    p.net.run(1.0, drop_first_response)
    _, gateway_events = p.events()
    assert len(of_type(gateway_events, IkeSaCloned)) == 1 and len(p.gateway.sessions) == 2
    # (retransmission)  -->  <--  (the cached response, same bytes)
    p.client.handle_timer(2.0)
    flow = p.net.run(2.0)
    assert flow[1].datagram.data == dropped[0].data
    client_events, gateway_events = p.events()
    assert len(of_type(client_events, IkeSaCloned)) == 1 and gateway_events == []
    assert p.gateway_sa.cached_answers == 1 and len(p.gateway.sessions) == 2
    assert len(p.client.sessions) == 2


def test_duplicated_clone_request_makes_one_clone() -> None:
    p = established()

    def duplicate_requests(d: Datagram) -> list[Datagram]:
        return [d, d] if _is_clone_exchange(d, response=False) else [d]

    # HDR(old, #2), SK {N(CLONE_IKE_SA), ...}  -->  (twice)
    #            <--  HDR(old, #2), SK {SA, Nr, KEr}  (twice: the second from the cache)
    p.client_sa.request_clone(1.0)
    p.net.run(1.0, duplicate_requests)
    client_events, gateway_events = p.events()
    assert len(of_type(client_events, IkeSaCloned)) == 1
    assert len(of_type(gateway_events, IkeSaCloned)) == 1
    assert p.gateway_sa.cached_answers == 1
    assert len(p.client.sessions) == len(p.gateway.sessions) == 2


def test_unanswered_clone_request_ends_the_sa() -> None:
    p = established()

    def black_hole(d: Datagram) -> list[Datagram]:
        return []

    p.client_sa.request_clone(1.0)
    p.net.run(1.0, black_hole)
    now = 1.0
    while p.client.get_timer() is not None:
        now = max(now, p.client.get_timer() or now)
        p.client.handle_timer(now)
        p.net.run(now, black_hole)
    client_events, _ = p.events()
    (clone_failed,) = of_type(client_events, CloneFailed)
    assert isinstance(clone_failed, CloneFailed) and clone_failed.reason == "timeout"
    (deleted,) = of_type(client_events, IkeSaDeleted)
    assert isinstance(deleted, IkeSaDeleted) and deleted.reason == "timeout"
    assert p.client.sessions == []
