"""IKE_SA_INIT + IKE_AUTH (PSK) + first Child SA between two endpoints in memory."""

from __future__ import annotations

import pytest
from engine_harness import drain, of_type, pair

from ikecore import ExchangeType
from ikecore.events import ChildSaEstablished, IkeSaEstablished
from ikecore.states import IkeState


def test_full_setup_default_proposal() -> None:
    initiator, responder, peer, net = pair()
    session = initiator.initiate(peer, now=0.0)
    # IKE_SA_INIT {SA, KEi, Ni, N(NAT_D_SRC), N(NAT_D_DST)}  -->
    #                        <--  IKE_SA_INIT {SA, KEr, Nr, N(NAT_D_SRC), N(NAT_D_DST)}
    # IKE_AUTH {IDi, AUTH, N(CLONE_IKE_SA_SUPPORTED), N(MOBIKE_SUPPORTED), SA, TSi, TSr}  -->
    #     <--  IKE_AUTH {IDr, AUTH, N(CLONE_IKE_SA_SUPPORTED), N(MOBIKE_SUPPORTED), SA, TSi, TSr}
    flow = net.run(0.0)
    assert [str(d) for d in flow] == [
        "IKE_SA_INIT --> #0",
        "IKE_SA_INIT <-- #0",
        "IKE_AUTH --> #1",
        "IKE_AUTH <-- #1",
    ]
    assert session.state == IkeState.ESTABLISHED
    (peer_session,) = responder.sessions
    assert peer_session.state == IkeState.ESTABLISHED
    i_events, r_events = drain(initiator), drain(responder)
    assert [type(e) for e in i_events] == [IkeSaEstablished, ChildSaEstablished]
    assert [type(e) for e in r_events] == [IkeSaEstablished, ChildSaEstablished]
    (i_child,) = session.child_sas
    (r_child,) = peer_session.child_sas
    assert i_child.spi_out == r_child.spi_in and r_child.spi_out == i_child.spi_in
    assert i_child.key_out == r_child.key_in and i_child.key_in == r_child.key_out
    assert i_child.key_in != i_child.key_out and len(i_child.key_in) == 36
    assert session.sa.keys == peer_session.sa.keys
    assert session.sa.clone_negotiated and peer_session.sa.clone_negotiated
    assert session.sa.peer_mobike_supported and peer_session.sa.peer_mobike_supported
    # MOBIKE peers move to port 4500 for IKE_AUTH (RFC 4555 §3.3).
    assert flow[2].datagram.dst[1] == 4500 and flow[2].datagram.data[:4] == bytes(4)
    assert session.sa.remote_address == ("198.51.100.1", 4500)
    assert peer_session.sa.remote_address == ("192.0.2.1", 4500)
    # Both stores now hold the established SA; nothing half open is left.
    assert initiator.store.get_ike_sa(*session.sa.spis) is session.sa
    assert responder.store.find_by_esp_spi(r_child.spi_in) is peer_session.sa
    assert session.sa.next_request_id == 2 and peer_session.sa.next_peer_request_id == 2
    assert initiator.get_timer() is None and responder.get_timer() is None
