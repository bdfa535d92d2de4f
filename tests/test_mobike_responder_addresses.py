"""The MOBIKE responder's own addresses change (RFC 4555 §3.5's exception, §3.6's last
paragraphs): the path in use is gone, so the gateway moves its end of the IPsec SAs to another
of its addresses and announces its new address set from there, to the client's current
address or, failing that, to the other addresses the client announced; the client then
chooses the new path (§3.5)."""

from __future__ import annotations

import pytest
from clone_harness import SECOND_HOST, established
from engine_harness import INITIATOR_HOST, RESPONDER_HOST, of_type

from ikecore import LocalProtocolError
from ikecore.events import EspPacketReceived, IkeSaMoved, PeerAddressesChanged
from ikecore.states import IkeState

NAT_T = 4500
GATEWAY_SECOND = "198.51.100.2"  # the gateway's other interface
PING = b"\x45" + bytes(27)


def test_the_gateway_announces_from_its_remaining_address_and_the_client_moves_there() -> None:
    p = established()
    p.net.hosts[GATEWAY_SECOND] = p.gateway
    del p.net.hosts[RESPONDER_HOST]  # the gateway's address in use is gone
    (child,) = p.client_sa.child_sas
    (peer_child,) = p.gateway_sa.child_sas
    # (198.51.100.2 -> 192.0.2.1)      <--  HDR(#0), SK {N(NO_ADDITIONAL_ADDRESSES), N(COOKIE2)}
    # (192.0.2.1 -> 198.51.100.2)  HDR(#0), SK {N(COOKIE2)}  -->
    p.gateway_sa.announce_addresses([], 1.0, local=(GATEWAY_SECOND, NAT_T))
    flow = p.net.run(1.0)
    assert [str(d) for d in flow] == ["INFORMATIONAL --> #0", "INFORMATIONAL <-- #0"]
    assert (flow[0].datagram.src, flow[0].datagram.dst) == (
        (GATEWAY_SECOND, NAT_T),
        (INITIATOR_HOST, NAT_T),
    )
    assert flow[1].datagram.dst == (GATEWAY_SECOND, NAT_T)
    client_events, _ = p.events()
    (announced,) = of_type(client_events, PeerAddressesChanged)
    assert isinstance(announced, PeerAddressesChanged)
    assert announced.addresses == (GATEWAY_SECOND,) == p.client_sa.peer_addresses
    # §3.5: the gateway's IPsec SAs leave from its new address at once; the client's stay
    # where they were (no dynamic update with MOBIKE, §3.8) until the client decides.
    assert p.gateway_sa.sa.local_address == (GATEWAY_SECOND, NAT_T)
    assert p.gateway_sa.sa.remote_address == (INITIATOR_HOST, NAT_T)
    assert p.client_sa.sa.remote_address == (RESPONDER_HOST, NAT_T)
    p.gateway.send_esp(peer_child.spi_in, PING, 4, 1.5)
    (esp,) = p.net.run(1.5)
    assert esp.datagram.src == (GATEWAY_SECOND, NAT_T)
    assert of_type(p.events()[0], EspPacketReceived)
    # The client's policy: the address in use is not in the new set (a §3.5 trigger), so it
    # moves to the one that is. The gateway already uses that path: no return routability
    # check.
    # (192.0.2.1 -> 198.51.100.2)
    # HDR(#2), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(COOKIE2)}  -->
    #                                          <--  HDR(#2), SK {N(NAT_D_*), N(COOKIE2)}
    assert p.client_sa.sa.remote_address[0] not in announced.addresses
    p.client_sa.update_addresses((INITIATOR_HOST, NAT_T), 2.0, remote=(GATEWAY_SECOND, NAT_T))
    assert p.run(2.0) == ["INFORMATIONAL --> #2", "INFORMATIONAL <-- #2"]
    client_events, gateway_events = p.events()
    (moved,) = of_type(client_events, IkeSaMoved)
    assert isinstance(moved, IkeSaMoved) and moved.remote == (GATEWAY_SECOND, NAT_T)
    assert of_type(gateway_events, IkeSaMoved) == []  # its path did not change
    assert p.gateway_sa.sa.mobike_update_id == 2
    # ESP the other way now reaches the gateway's new address.
    p.client.send_esp(child.spi_in, PING, 4, 3.0)
    (esp,) = p.net.run(3.0)
    assert esp.datagram.dst == (GATEWAY_SECOND, NAT_T)
    assert of_type(p.events()[1], EspPacketReceived)


def test_the_announcement_tries_the_clients_other_addresses() -> None:
    """§3.6: "the responder uses the additional address list received from the initiator"
    when the client's current address does not answer either."""
    p = established()
    p.net.hosts[GATEWAY_SECOND] = p.gateway
    # HDR(#2), SK {N(ADDITIONAL_IP4_ADDRESS), N(COOKIE2)}  -->  <--
    p.client_sa.announce_addresses([SECOND_HOST], 0.5)
    p.run(0.5)
    p.events()
    assert p.gateway_sa.peer_addresses == (INITIATOR_HOST, SECOND_HOST)
    # Both addresses in use are gone.
    del p.net.hosts[RESPONDER_HOST], p.net.hosts[INITIATOR_HOST]
    # (198.51.100.2 -> 192.0.2.1)  <--  HDR(#0), SK {N(NO_ADDITIONAL_ADDRESSES), N(COOKIE2)}
    #                                   (and its retransmissions: lost)
    # (198.51.100.2 -> 192.0.2.2)  <--  HDR(#0), the same request
    # (192.0.2.2 -> 198.51.100.2)  HDR(#0), SK {N(COOKIE2)}  -->
    p.gateway_sa.announce_addresses([], 1.0, local=(GATEWAY_SECOND, NAT_T))
    sent = p.net.run(1.0)
    now = 1.0
    for _ in range(20):
        if len(sent) > 1:
            break
        timer = p.gateway.get_timer()
        assert timer is not None
        now = timer
        p.gateway.handle_timer(now)
        sent = p.net.run(now)
    request, answer = sent
    assert (request.datagram.src, request.datagram.dst) == (
        (GATEWAY_SECOND, NAT_T),
        (SECOND_HOST, NAT_T),
    )
    assert str(answer) == "INFORMATIONAL <-- #0" and answer.datagram.dst == (GATEWAY_SECOND, NAT_T)
    assert p.gateway_sa.state == IkeState.ESTABLISHED
    # The client's address in the SA is still the one the client chose (§2.1).
    assert p.gateway_sa.sa.remote_address == (INITIATOR_HOST, NAT_T)
    (announced,) = of_type(p.events()[0], PeerAddressesChanged)
    assert isinstance(announced, PeerAddressesChanged)
    assert announced.addresses == (GATEWAY_SECOND,)
    # The client moves the SA to a path that works; the gateway checks the client's new
    # address (§3.7) before its Child SAs follow.
    # (192.0.2.2 -> 198.51.100.2) HDR(#3), SK {N(UPDATE_SA_ADDRESSES), ...}  -->  <--
    #                             <--  HDR(#1), SK {N(COOKIE2)}  -->
    p.client_sa.update_addresses((SECOND_HOST, NAT_T), now, remote=(GATEWAY_SECOND, NAT_T))
    assert p.run(now) == [
        "INFORMATIONAL --> #3",
        "INFORMATIONAL <-- #3",
        "INFORMATIONAL --> #1",
        "INFORMATIONAL <-- #1",
    ]
    assert p.gateway_sa.sa.remote_address == (SECOND_HOST, NAT_T)
    assert of_type(p.events()[1], IkeSaMoved)


def test_an_announcement_from_another_address_is_the_responders() -> None:
    p = established()
    with pytest.raises(LocalProtocolError, match="update_addresses"):
        p.client_sa.announce_addresses([], 1.0, local=(SECOND_HOST, NAT_T))
    with pytest.raises(TypeError, match="local must be a"):
        p.gateway_sa.announce_addresses([], 1.0, local=GATEWAY_SECOND)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an IP address"):
        p.gateway_sa.announce_addresses([], 1.0, local=("gateway.example", NAT_T))
    # Nothing changed, nothing was sent.
    assert p.client_sa.sa.local_address == (INITIATOR_HOST, NAT_T)
    assert p.gateway_sa.sa.local_address == (RESPONDER_HOST, NAT_T)
    assert p.net.capture(1.0) == []


def test_the_child_sas_leave_from_the_new_address_during_a_return_routability_check() -> None:
    """The client's move is being checked (§3.7: the gateway's Child SAs stay on the verified
    path) when the gateway's address goes away: they keep the client's verified address and
    leave from the gateway's new one (§3.5)."""
    p = established()
    p.net.hosts[GATEWAY_SECOND] = p.gateway
    (peer_child,) = p.gateway_sa.child_sas
    # (192.0.2.2 -> 198.51.100.1)  HDR(#2), SK {N(UPDATE_SA_ADDRESSES), ...}  -->  <--
    # the gateway's check of 192.0.2.2:  <--  HDR(#0), SK {N(COOKIE2)}   (not delivered yet)
    p.client_sa.update_addresses((SECOND_HOST, NAT_T), 1.0)
    (update,) = p.net.capture(1.0)
    p.net.deliver([update], 1.0)
    answer, check = p.net.capture(1.0)
    p.net.deliver([answer], 1.0)
    assert check.dst == (SECOND_HOST, NAT_T)
    assert p.gateway_sa.mobike.esp_path == ((RESPONDER_HOST, NAT_T), (INITIATOR_HOST, NAT_T))
    del p.net.hosts[RESPONDER_HOST]
    p.gateway_sa.announce_addresses([], 2.0, local=(GATEWAY_SECOND, NAT_T))
    assert p.gateway_sa.mobike.esp_path == ((GATEWAY_SECOND, NAT_T), (INITIATOR_HOST, NAT_T))
    p.net.capture(2.0)  # the announcement waits behind the check (window 1)
    p.gateway.send_esp(peer_child.spi_in, PING, 4, 2.0)
    (esp,) = p.net.capture(2.0)
    assert (esp.src, esp.dst) == ((GATEWAY_SECOND, NAT_T), (INITIATOR_HOST, NAT_T))
