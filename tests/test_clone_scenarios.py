"""RFC 7791 clone scenarios between two in-memory endpoints.

Each step draws its message flow; SA states, counts and events are asserted after it. The
client is the original initiator, the gateway the original responder.
"""

from __future__ import annotations

import pytest
from clone_harness import Pair, clone_on_both_sides, cloned, established
from engine_harness import of_type

from ikecore import CloneRefused
from ikecore.events import (
    ChildSaEstablished,
    EspPacketReceived,
    IkeSaCloned,
    IkeSaDeleted,
    IkeSaRekeyed,
)
from ikecore.session import IkeSession
from ikecore.states import IkeState

PING = b"\x45" + bytes(27)  # an inner packet; its content does not matter to ESP


def keys_match(a: IkeSession, b: IkeSession) -> bool:
    return a.sa.keys == b.sa.keys and a.sa.transforms == b.sa.transforms


def assert_untouched_parent(p: Pair, next_request_id: int, next_peer_request_id: int) -> None:
    for parent in (p.client_sa, p.gateway_sa):
        assert parent.state == IkeState.ESTABLISHED and len(parent.child_sas) == 1
    assert p.client_sa.sa.next_request_id == next_request_id
    assert p.gateway_sa.sa.next_peer_request_id == next_request_id
    assert p.gateway_sa.sa.next_request_id == next_peer_request_id
    assert p.client_sa.sa.next_peer_request_id == next_peer_request_id


def test_clone_initiated_by_the_client() -> None:
    p = established()
    parent_keys = p.client_sa.sa.keys
    # HDR(old, #2), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->
    #                                  <--  HDR(old, #2), SK {SA, Nr, KEr}
    p.client_sa.request_clone(1.0)
    assert p.run(1.0) == ["CREATE_CHILD_SA --> #2", "CREATE_CHILD_SA <-- #2"]
    client_events, gateway_events = p.events()
    mine, theirs = cloned(client_events), cloned(gateway_events)
    assert mine.parent is p.client_sa and theirs.parent is p.gateway_sa
    clone, peer_clone = mine.clone, theirs.clone
    # Two parallel IKE SAs on each side; the old one untouched, its Child SA stays on it.
    assert len(p.client.sessions) == len(p.gateway.sessions) == 2
    assert_untouched_parent(p, next_request_id=3, next_peer_request_id=0)
    assert p.client_sa.sa.keys == parent_keys
    # The clone: new SPIs and keys (the same on both sides), no Child SA, message IDs 0/0,
    # window 1, the clone initiator is its original initiator, linked to its parent.
    assert clone.sa.spis == peer_clone.sa.spis and clone.sa.spis != p.client_sa.sa.spis
    assert keys_match(clone, peer_clone) and clone.sa.keys != parent_keys
    assert clone.state == peer_clone.state == IkeState.ESTABLISHED
    assert clone.child_sas == [] and peer_clone.child_sas == []
    for sa in (clone.sa, peer_clone.sa):
        assert (sa.next_request_id, sa.next_peer_request_id, sa.peer_window) == (0, 0, 1)
    assert clone.sa.initiator and not peer_clone.sa.initiator
    assert clone.sa.parent == p.client_sa.sa.spis and peer_clone.sa.parent == p.gateway_sa.sa.spis
    assert clone.sa.family == p.client_sa.sa.family
    # Both records are in each side's store.
    assert p.client.store.get_ike_sa(*clone.sa.spis) is not None
    assert p.gateway.store.get_ike_sa(*clone.sa.spis) is not None


def test_clone_initiated_by_the_gateway() -> None:
    p = established()
    # (gateway as exchange initiator) HDR(old, #0), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->
    #                                                   <--  HDR(old, #0), SK {SA, Nr, KEr}
    p.gateway_sa.request_clone(1.0)
    assert p.run(1.0) == ["CREATE_CHILD_SA --> #0", "CREATE_CHILD_SA <-- #0"]
    client_events, gateway_events = p.events()
    clone, peer_clone = cloned(client_events).clone, cloned(gateway_events).clone
    # The gateway started the clone, so it is the clone's original initiator (I flag).
    assert peer_clone.sa.initiator and not clone.sa.initiator
    assert keys_match(clone, peer_clone)
    assert_untouched_parent(p, next_request_id=2, next_peer_request_id=1)
    # A Child SA on it, asked for by the client (the clone's responder):
    # HDR(clone, #0), SK {SA, Ni, TSi, TSr}  -->  <--  HDR(clone, #0), SK {SA, Nr, TSi, TSr}
    clone.create_child_sa(2.0)
    assert p.run(2.0) == ["CREATE_CHILD_SA --> #0", "CREATE_CHILD_SA <-- #0"]
    assert len(clone.child_sas) == len(peer_clone.child_sas) == 1
    assert clone.sa.next_request_id == 1 and peer_clone.sa.next_peer_request_id == 1


def test_clone_of_a_clone() -> None:
    p = established()
    clone, peer_clone = clone_on_both_sides(p, p.client_sa, 1.0)
    # HDR(clone, #0), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->  <--  HDR(clone, #0), SK {SA, Nr, KEr}
    clone.request_clone(2.0)
    assert p.run(2.0) == ["CREATE_CHILD_SA --> #0", "CREATE_CHILD_SA <-- #0"]
    client_events, gateway_events = p.events()
    grand, peer_grand = cloned(client_events), cloned(gateway_events)
    assert grand.parent is clone and peer_grand.parent is peer_clone
    assert grand.clone.sa.parent == clone.sa.spis
    assert grand.clone.sa.family == clone.sa.family == p.client_sa.sa.family
    assert keys_match(grand.clone, peer_grand.clone)
    assert len({s.sa.spis for s in p.client.sessions}) == 3
    assert len(p.gateway.sessions) == 3
    assert clone.sa.next_request_id == 1 and grand.clone.sa.next_request_id == 0


def test_child_sa_on_a_clone_and_esp_through_both() -> None:
    p = established()
    clone, peer_clone = clone_on_both_sides(p, p.client_sa, 1.0)
    # HDR(clone, #0), SK {SA, Ni, TSi, TSr}  -->  <--  HDR(clone, #0), SK {SA, Nr, TSi, TSr}
    clone.create_child_sa(2.0)
    assert p.run(2.0) == ["CREATE_CHILD_SA --> #0", "CREATE_CHILD_SA <-- #0"]
    client_events, gateway_events = p.events()
    (made,) = of_type(client_events, ChildSaEstablished)
    assert isinstance(made, ChildSaEstablished) and made.session is clone
    (theirs,) = of_type(gateway_events, ChildSaEstablished)
    assert isinstance(theirs, ChildSaEstablished) and theirs.session is peer_clone
    assert len(clone.child_sas) == 1 and len(p.client_sa.child_sas) == 1
    # ESP through the old SA's Child SA and through the clone's, each received on its own.
    old_child = p.client_sa.child_sas[0]
    p.client.send_esp(old_child.spi_in, PING, 4, 3.0)
    p.client.send_esp(made.child.spi_in, PING, 4, 3.0)
    assert p.run(3.0) == ["ESP", "ESP"]
    received = of_type(p.events()[1], EspPacketReceived)
    assert [(e.session, e.data) for e in received] == [  # type: ignore[attr-defined]
        (p.gateway_sa, PING),
        (peer_clone, PING),
    ]


def test_rekey_and_delete_of_the_old_sa_while_the_clone_lives_on() -> None:
    p = established()
    clone, peer_clone = clone_on_both_sides(p, p.client_sa, 1.0)
    clone.create_child_sa(1.5)
    p.run(1.5)
    p.events()
    # Rekey the old SA: HDR(old), SK {SA, Ni, KEi} -->  <-- {SA, Nr, KEr};
    #                   HDR(old), SK {D(IKE)}      -->  <-- {}
    p.client_sa.rekey(2.0)
    assert p.run(2.0) == [
        "CREATE_CHILD_SA --> #3",
        "CREATE_CHILD_SA <-- #3",
        "INFORMATIONAL --> #4",
        "INFORMATIONAL <-- #4",
    ]
    client_events, _ = p.events()
    (rekeyed,) = of_type(client_events, IkeSaRekeyed)
    assert isinstance(rekeyed, IkeSaRekeyed)
    successor = rekeyed.new
    # The old SA's Child SA moved to its successor; the clone and its Child SA did not.
    assert p.client_sa.state == IkeState.DELETED and len(successor.child_sas) == 1
    assert successor.sa.family == clone.sa.family
    assert clone.state == IkeState.ESTABLISHED and len(clone.child_sas) == 1
    assert clone.sa.next_request_id == 1 and peer_clone.state == IkeState.ESTABLISHED
    # Delete the successor: HDR, SK {D(IKE)}  -->  <--  HDR, SK {}
    successor.delete(3.0)
    assert p.run(3.0) == ["INFORMATIONAL --> #0", "INFORMATIONAL <-- #0"]
    client_events, gateway_events = p.events()
    assert len(of_type(client_events, IkeSaDeleted)) == len(of_type(gateway_events, IkeSaDeleted))
    assert len(of_type(client_events, IkeSaDeleted)) == 1
    assert p.client.sessions == [clone] and p.gateway.sessions == [peer_clone]
    # The clone still works: a liveness check and a new Child SA on it.
    clone.create_child_sa(4.0)
    assert p.run(4.0) == ["CREATE_CHILD_SA --> #1", "CREATE_CHILD_SA <-- #1"]
    assert len(clone.child_sas) == 2 and len(peer_clone.child_sas) == 2


def test_rekey_and_delete_of_the_clone_while_the_old_sa_lives_on() -> None:
    p = established()
    clone, peer_clone = clone_on_both_sides(p, p.client_sa, 1.0)
    # Rekey the clone (from the gateway): a plain IKE SA rekey of the clone, no CLONE_IKE_SA.
    peer_clone.rekey(2.0)
    assert p.run(2.0) == [
        "CREATE_CHILD_SA --> #0",
        "CREATE_CHILD_SA <-- #0",
        "INFORMATIONAL --> #1",
        "INFORMATIONAL <-- #1",
    ]
    client_events, gateway_events = p.events()
    (rekeyed,) = of_type(gateway_events, IkeSaRekeyed)
    assert isinstance(rekeyed, IkeSaRekeyed) and rekeyed.old is peer_clone
    assert not of_type(client_events + gateway_events, IkeSaCloned)
    # (a family is named by each side after its own SPI of the first SA)
    assert clone.state == IkeState.DELETED and rekeyed.new.sa.family == p.gateway_sa.sa.family
    assert_untouched_parent(p, next_request_id=3, next_peer_request_id=0)
    # Delete the clone's successor; the old SA is untouched.
    rekeyed.new.delete(3.0)
    p.run(3.0)
    p.events()
    assert p.client.sessions == [p.client_sa] and p.gateway.sessions == [p.gateway_sa]
    assert_untouched_parent(p, next_request_id=3, next_peer_request_id=0)


def test_the_old_sa_can_be_deleted_first_and_the_clone_cloned_again() -> None:
    p = established()
    clone, peer_clone = clone_on_both_sides(p, p.client_sa, 1.0)
    # HDR(old), SK {D(IKE)}  -->  <--  HDR(old), SK {}
    p.gateway_sa.delete(2.0)
    assert p.run(2.0) == ["INFORMATIONAL --> #0", "INFORMATIONAL <-- #0"]
    client_events, _ = p.events()
    (deleted,) = of_type(client_events, IkeSaDeleted)
    assert isinstance(deleted, IkeSaDeleted) and deleted.session is p.client_sa
    assert deleted.reason == "deleted_by_peer" and clone.state == IkeState.ESTABLISHED
    # The clone keeps the family's clone support: it can be cloned in turn.
    grand, _ = clone_on_both_sides(p, peer_clone, 3.0)
    assert grand.sa.parent == clone.sa.spis and len(p.client.sessions) == 2


def test_clone_needs_both_announcements() -> None:
    p = established(clone=False)
    assert not p.client_sa.sa.clone_negotiated
    for side in (p.client_sa, p.gateway_sa):
        with pytest.raises(CloneRefused) as refused:
            side.request_clone(1.0)
        assert refused.value.reason == "NOT_NEGOTIATED"
    assert p.net.capture(1.0) == []  # nothing was sent


def test_what_a_clone_inherits() -> None:
    p = established()
    old = p.client_sa.sa
    # Capabilities the old SA negotiated (fragmentation is set by hand: the engine does not
    # negotiate RFC 7383 yet) and a peer window raised by SET_WINDOW_SIZE on the old SA.
    old.peer_fragmentation_supported = True
    old.peer_window = 4
    clone, _ = clone_on_both_sides(p, p.client_sa, 7.0)
    sa = clone.sa
    # Inherited: identities, peer configuration, capabilities, addresses and NAT state.
    assert (sa.local_id, sa.remote_id, sa.peer_name) == (old.local_id, old.remote_id, old.peer_name)
    assert clone.peer is p.client_sa.peer
    assert sa.clone_negotiated and sa.local_mobike_supported and sa.peer_mobike_supported
    assert sa.peer_fragmentation_supported
    assert (sa.local_address, sa.remote_address) == (old.local_address, old.remote_address)
    assert (sa.local_behind_nat, sa.remote_behind_nat) == (
        old.local_behind_nat,
        old.remote_behind_nat,
    )
    assert sa.local_window == old.local_window and sa.family == old.family
    # Its own: keys, algorithms from the clone proposal, window 1, message IDs 0, lifetime
    # from the clone time, no Child SA, no SK IV used yet.
    assert sa.keys != old.keys and sa.peer_window == 1
    assert (sa.next_request_id, sa.next_peer_request_id, sa.sk_iv) == (0, 0, 0)
    assert sa.created_at == sa.established_at == 7.0 and old.created_at == 0.0
    assert sa.child_sas == {} and sa.rekeyed_from is None and sa.parent == old.spis
