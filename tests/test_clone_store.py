"""A clone in the store: a restarted gateway (or another node on the same store) picks a
moved clone up by its SPIs and goes on with it, while the old SA stays where it was."""

from __future__ import annotations

from clone_harness import SECOND_HOST, clone_on_both_sides, established
from engine_harness import RESPONDER_HOST, of_type
from test_engine_store import SnapshotStore

from ikecore.endpoint import IkeEndpoint
from ikecore.events import ChildSaEstablished, IkeSaMoved
from ikecore.states import IkeState


def test_a_moved_clone_continues_on_a_restarted_gateway() -> None:
    p = established()
    store = SnapshotStore()
    for existing in p.gateway.store.ike_sas():
        store.put_ike_sa(existing)
    p.gateway = IkeEndpoint(p.gateway.config, store, random=p.gateway.random)
    p.net.hosts[RESPONDER_HOST] = p.gateway
    # The gateway, now serving from the snapshot store, answers the clone exchange.
    clone, peer_clone = clone_on_both_sides(p, p.client_sa, 1.0)
    # Move the clone: (192.0.2.2) HDR(clone), SK {N(UPDATE_SA_ADDRESSES), ...}  -->  <--
    clone.update_addresses((SECOND_HOST, 4500), 2.0)
    p.run(2.0)
    assert of_type(p.events()[1], IkeSaMoved)
    record = store.get_ike_sa(*clone.sa.spis)
    assert record is not None and record.parent == peer_clone.sa.parent
    assert record.remote_address == (SECOND_HOST, 4500)
    # A new gateway process on the same store: nothing in memory.
    p.gateway = IkeEndpoint(p.gateway.config, store, random=p.gateway.random)
    p.net.hosts[RESPONDER_HOST] = p.gateway
    assert p.gateway.sessions == []
    # HDR(clone, #1), SK {SA, Ni, TSi, TSr}  -->  <--  (the record's keys and message IDs)
    clone.create_child_sa(3.0)
    flow = p.net.run(3.0)
    assert [str(d) for d in flow] == ["CREATE_CHILD_SA --> #1", "CREATE_CHILD_SA <-- #1"]
    assert flow[1].datagram.dst == (SECOND_HOST, 4500)
    client_events, gateway_events = p.events()
    assert of_type(client_events, ChildSaEstablished) and of_type(
        gateway_events, ChildSaEstablished
    )
    (loaded,) = p.gateway.sessions
    assert loaded.sa.spis == clone.sa.spis and loaded.state == IkeState.ESTABLISHED
    assert loaded.sa.parent == p.client_sa.sa.spis
    # The old SA, never loaded, is still in the store with its own address.
    old = store.get_ike_sa(*p.client_sa.sa.spis)
    assert old is not None and old.remote_address[0] != SECOND_HOST
