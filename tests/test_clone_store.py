"""A clone in the store: a restarted gateway (or another node on the same store) picks a
moved clone up by its SPIs and goes on with it, while the old SA stays where it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from clone_harness import SECOND_HOST, clone_on_both_sides, established
from engine_harness import RESPONDER_HOST, of_type
from test_engine_store import SnapshotStore

from ikecore.endpoint import IkeEndpoint
from ikecore.events import ChildSaEstablished, IkeSaMoved
from ikecore.states import IkeState
from ikecore.store import SaStore, SqliteStore


@pytest.mark.parametrize("kind", ["snapshot", "sqlite"])
def test_a_moved_clone_continues_on_a_restarted_gateway(kind: str, tmp_path: Path) -> None:
    p = established()
    store: SaStore = (
        SnapshotStore() if kind == "snapshot" else SqliteStore(tmp_path / "sas.db", bytes(32))
    )
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


def test_the_clone_limit_counts_the_family_in_a_shared_store(tmp_path: Path) -> None:
    """`max_clones` counts the family's records in the store, so a clone made through another
    node sharing the store (here: put there directly) counts too (RFC 7791 §8)."""
    p = established(gateway_max_clones=1)
    store = SqliteStore(tmp_path / "sas.db", bytes(32))
    for existing in p.gateway.store.ike_sas():
        store.put_ike_sa(existing)
    p.gateway.store = store
    clone, peer_clone = clone_on_both_sides(p, p.client_sa, 1.0)
    assert store.get_ike_sa(*peer_clone.sa.spis) is not None
    # HDR(clone), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->  <--  HDR, SK {N(NO_ADDITIONAL_SAS)}
    clone.request_clone(2.0)
    p.run(2.0)
    client_events, gateway_events = p.events()
    assert [type(e).__name__ for e in client_events] == ["CloneFailed"]
    assert [type(e).__name__ for e in gateway_events] == ["CloneRequestRefused"]
    assert p.gateway_sa.state == IkeState.ESTABLISHED and len(p.gateway.sessions) == 2
