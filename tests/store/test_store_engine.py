"""The engine on the persistent stores: a responder restarted on the same SQLite file or Redis
server (a new process: a new store object, nothing in memory) continues its SAs."""

from __future__ import annotations

import pytest
from engine_harness import INITIATOR_HOST, RESPONDER_HOST, counter_random, drain, of_type, pair
from store_fixtures import SHARED_KINDS, StoreFactory
from test_engine_nat import PUBLIC, Nat

from ikecore.endpoint import IkeEndpoint
from ikecore.events import (
    ChildSaEstablished,
    EspPacketReceived,
    IkeSaDeleted,
    IkeSaRekeyed,
    LivenessChecked,
)
from ikecore.states import IkeState


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_restarted_responder_continues_from_the_store(open_store: StoreFactory) -> None:
    initiator, responder, peer, net = pair()
    store = open_store("gw")
    responder = IkeEndpoint(responder.config, store, random=responder.random)
    net.hosts[RESPONDER_HOST] = responder
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    session.create_child_sa(1.0)
    net.run(1.0)
    drain(initiator)
    (child, _) = session.child_sas
    (stored,) = store.ike_sas()
    assert stored.state == IkeState.ESTABLISHED and len(stored.child_sas) == 2
    assert store.owner(*stored.spis) == "gw"
    # The responder process restarts: a new store object on the same file or server.
    restarted = IkeEndpoint(responder.config, open_store("gw"))
    net.hosts[RESPONDER_HOST] = restarted
    session.check_liveness(2.0)
    flow = net.run(2.0)
    assert [str(d) for d in flow] == ["INFORMATIONAL --> #3", "INFORMATIONAL <-- #3"]
    assert of_type(drain(initiator), LivenessChecked)
    (loaded,) = restarted.sessions
    assert loaded.sa.next_peer_request_id == 4 and loaded.sa.sk_iv == 3
    initiator.send_esp(child.spi_in, b"\x45" + bytes(19), 4, 3.0)
    net.run(3.0)
    (packet,) = of_type(drain(restarted), EspPacketReceived)
    assert isinstance(packet, EspPacketReceived) and packet.session is loaded
    session.create_child_sa(4.0)
    net.run(4.0)
    assert of_type(drain(restarted), ChildSaEstablished)
    session.delete(5.0)
    net.run(5.0)
    assert of_type(drain(restarted), IkeSaDeleted)
    assert store.ike_sas() == [] and loaded.state == IkeState.DELETED


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_ike_rekey_on_the_store_then_restart(open_store: StoreFactory) -> None:
    initiator, responder, peer, net = pair()
    store = open_store("gw")
    responder = IkeEndpoint(responder.config, store, random=responder.random)
    net.hosts[RESPONDER_HOST] = responder
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    (child,) = session.child_sas
    # RFC 7296 §2.8: the Child SA moves to the new IKE SA, the old IKE SA is deleted.
    session.rekey(1.0)
    net.run(1.0)
    (rekeyed,) = of_type(drain(initiator), IkeSaRekeyed)
    assert isinstance(rekeyed, IkeSaRekeyed)
    new_spis = rekeyed.new.sa.spis
    assert [sa.spis for sa in store.ike_sas()] == [new_spis]
    found = store.find_by_esp_spi(child.spi_out)
    assert found is not None and found.spis == new_spis
    # A restarted responder serves the new IKE SA (loaded by its SPIs: the engine loads on
    # IKE messages, not yet on ESP) and its moved Child SA.
    restarted = IkeEndpoint(responder.config, open_store("gw"))
    net.hosts[RESPONDER_HOST] = restarted
    rekeyed.new.check_liveness(2.0)
    flow = net.run(2.0)
    assert [str(d) for d in flow] == ["INFORMATIONAL --> #0", "INFORMATIONAL <-- #0"]
    initiator.send_esp(child.spi_in, b"\x45" + bytes(19), 4, 3.0)
    net.run(3.0)
    (packet,) = of_type(drain(restarted), EspPacketReceived)
    assert isinstance(packet, EspPacketReceived) and packet.session.sa.spis == new_spis


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_a_restarted_client_behind_a_nat_compares_with_the_stored_nat_value(
    open_store: StoreFactory,
) -> None:
    """RFC 4555 §3.8 across a restart: the NAT_DETECTION_DESTINATION_IP of the gateway's last
    answer to our UPDATE_SA_ADDRESSES is in the record, so the restarted client's liveness
    check finds the NAT mapping unchanged and sends no update."""
    initiator, _, peer, net = pair()  # MOBIKE negotiated
    initiator = IkeEndpoint(initiator.config, open_store("client"), random=initiator.random)
    net.hosts[INITIATOR_HOST] = net.hosts[PUBLIC] = initiator
    nat = Nat()
    session = initiator.initiate(peer, 0.0)
    net.run(0.0, nat)
    assert session.sa.local_behind_nat
    # The first check has nothing to compare with: one UPDATE_SA_ADDRESSES follows.
    # HDR(#2), SK {N(NAT_D_SRC), N(NAT_D_DST)}  -->  <--
    # HDR(#3), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(COOKIE2)}  -->  <--
    session.check_liveness(1.0)
    assert len(net.run(1.0, nat)) == 4
    seen_as = session.sa.nat_seen_as
    assert len(seen_as) == 20  # SHA-1 (RFC 7296 §2.23)
    # The client process restarts (a new store object, nothing in memory) and loads its SA.
    restarted = IkeEndpoint(initiator.config, open_store("client"), random=counter_random(9))
    net.hosts[INITIATOR_HOST] = net.hosts[PUBLIC] = restarted
    loaded = restarted.take_over(session.sa.spis)
    assert loaded.sa.nat_seen_as == seen_as
    # Same mapping, same value: HDR(#4), SK {N(NAT_D_SRC), N(NAT_D_DST)}  -->  <--  and no more.
    loaded.check_liveness(2.0)
    flow = net.run(2.0, nat)
    assert [str(d) for d in flow] == ["INFORMATIONAL --> #4", "INFORMATIONAL <-- #4"]
    assert loaded.state == IkeState.ESTABLISHED
