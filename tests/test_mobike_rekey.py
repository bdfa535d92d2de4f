"""MOBIKE (RFC 4555) across IKE SA rekeys: the roles are those of the first IKE SA "in a series
of possibly several rekeyed IKE_SAs" (§1.3), whichever end rekeys; the peer's address set,
"logically associated with the IKE_SA" (§3.4), goes on with the new SA; the update ID restarts
with the new SA's message IDs and the NAT value of §3.8 (a hash over the SPIs) with its SPIs."""

from __future__ import annotations

import pytest
from clone_harness import SECOND_HOST, Pair, established
from engine_harness import INITIATOR_HOST, RESPONDER_HOST, of_type

from ikecore import ExchangeType, LocalProtocolError
from ikecore.events import IkeSaMoved, IkeSaRekeyed
from ikecore.exchanges.base import nat_detection_hash
from ikecore.session import IkeSession

NAT_T = 4500
GATEWAY_SECOND = "198.51.100.2"  # the gateway's second interface
# The first UPDATE_SA_ADDRESSES of a new SA and its answer, then the gateway's return
# routability check of the new address and its answer (RFC 4555 §3.5, §3.7).
FIRST_UPDATE_WITH_CHECK = [
    "INFORMATIONAL --> #0",
    "INFORMATIONAL <-- #0",
    "INFORMATIONAL --> #0",
    "INFORMATIONAL <-- #0",
]


def mobike_state_on_the_first_sa(p: Pair) -> None:
    """Both ends announce their other address (§3.6) and the client moves once (§3.5), so
    that each part of the MOBIKE state is set on the first IKE SA."""
    p.net.hosts[GATEWAY_SECOND] = p.gateway
    # HDR(#0), SK {N(ADDITIONAL_IP4_ADDRESS), N(COOKIE2)}  <--  -->
    # HDR(#2), SK {N(ADDITIONAL_IP4_ADDRESS), N(COOKIE2)}  -->  <--
    p.gateway_sa.announce_addresses([GATEWAY_SECOND], 1.0)
    p.client_sa.announce_addresses([SECOND_HOST], 1.0)
    p.run(1.0)
    # HDR(#3), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(COOKIE2)}  -->  <--  (+ the check)
    p.client_sa.update_addresses((SECOND_HOST, NAT_T), 1.5)
    p.run(1.5)
    p.events()
    assert p.client_sa.peer_addresses == (RESPONDER_HOST, GATEWAY_SECOND)
    assert p.gateway_sa.peer_addresses == (INITIATOR_HOST, SECOND_HOST)
    assert p.gateway_sa.sa.mobike_update_id == 3
    assert p.client_sa.sa.nat_seen_as == nat_detection_hash(
        *p.client_sa.sa.spis, (SECOND_HOST, NAT_T)
    )


def rekey(p: Pair, session: IkeSession, now: float) -> tuple[IkeSession, IkeSession]:
    """``session`` rekeys the IKE SA (RFC 7296 §1.3.2): (the client's, the gateway's) new SA.

    HDR(old), SK {SA(SPIi'), Ni, KEi}  -->  <--  HDR(old), SK {SA(SPIr'), Nr, KEr}
    HDR(old), SK {D(IKE)}              -->  <--  HDR(old), SK {}
    """
    session.rekey(now)
    flow = p.net.run(now)
    rekeyed = [ExchangeType.CREATE_CHILD_SA] * 2 + [ExchangeType.INFORMATIONAL] * 2
    assert [d.exchange for d in flow] == rekeyed
    client_events, gateway_events = p.events()
    (mine,) = of_type(client_events, IkeSaRekeyed)
    (theirs,) = of_type(gateway_events, IkeSaRekeyed)
    assert isinstance(mine, IkeSaRekeyed) and isinstance(theirs, IkeSaRekeyed)
    assert mine.new.sa.spis == theirs.new.sa.spis
    return mine.new, theirs.new


def assert_carried_over(p: Pair, client: IkeSession, gateway: IkeSession) -> None:
    for old, new in ((p.client_sa, client), (p.gateway_sa, gateway)):
        assert new.peer_addresses == old.peer_addresses
        assert new.sa.mobike_initiator == old.sa.mobike_initiator
        assert (new.sa.local_behind_nat, new.sa.remote_behind_nat) == (
            old.sa.local_behind_nat,
            old.sa.remote_behind_nat,
        )
        assert (new.sa.local_address, new.sa.remote_address) == (
            old.sa.local_address,
            old.sa.remote_address,
        )
        # Per SA: message IDs restart at 0, the SPIs the NAT hashes cover are new.
        assert new.sa.mobike_update_id == -1 and new.sa.nat_seen_as == b""
    assert client.sa.mobike_initiator and not gateway.sa.mobike_initiator


def test_a_rekey_by_the_client_keeps_the_mobike_state_and_the_new_sa_moves() -> None:
    p = established()
    mobike_state_on_the_first_sa(p)
    client, gateway = rekey(p, p.client_sa, 2.0)
    assert client.sa.initiator and not gateway.sa.initiator
    assert_carried_over(p, client, gateway)
    # The client moves the new SA back to its first address. Its message ID #0 is below the
    # old SA's last update (#3): only because the update ID restarted does the gateway act.
    # (192.0.2.1 -> 198.51.100.1)
    # HDR(new, #0), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(COOKIE2)}  -->
    #                                   <--  HDR(new, #0), SK {N(NAT_D_*), N(COOKIE2)}
    # the gateway's return routability check (§3.7):  <--  HDR(new, #0), SK {N(COOKIE2)}  -->
    client.update_addresses((INITIATOR_HOST, NAT_T), 3.0)
    flow = p.net.run(3.0)
    assert [str(d) for d in flow] == FIRST_UPDATE_WITH_CHECK
    assert flow[0].datagram.src == (INITIATOR_HOST, NAT_T)
    client_events, gateway_events = p.events()
    assert of_type(client_events, IkeSaMoved) and of_type(gateway_events, IkeSaMoved)
    assert gateway.sa.remote_address == (INITIATOR_HOST, NAT_T)
    assert gateway.sa.mobike_update_id == 0
    assert client.sa.nat_seen_as == nat_detection_hash(*client.sa.spis, (INITIATOR_HOST, NAT_T))
    # The address sets were not touched by the move.
    assert client.peer_addresses == (RESPONDER_HOST, GATEWAY_SECOND)


def test_a_rekey_by_the_gateway_keeps_the_client_the_mobike_initiator() -> None:
    p = established()
    mobike_state_on_the_first_sa(p)
    client, gateway = rekey(p, p.gateway_sa, 2.0)
    # RFC 7296 §2.18: the gateway is the new SA's original initiator (it sets the I flag)...
    assert gateway.sa.initiator and not client.sa.initiator
    # ...but RFC 4555 §1.3's initiator is still the client, and the address sets are kept.
    assert_carried_over(p, client, gateway)
    # The gateway does not choose the client's address (§2.1, §3.5): nothing is sent.
    with pytest.raises(LocalProtocolError, match="only the MOBIKE initiator"):
        gateway.update_addresses((RESPONDER_HOST, NAT_T), 3.0, remote=(INITIATOR_HOST, NAT_T))
    assert p.net.capture(3.0) == []
    assert gateway.sa.local_address == (RESPONDER_HOST, NAT_T)
    # The client does, with the gateway's address set it kept: it moves the new SA to the
    # gateway's second interface (§3.4: "an input to its address selection policy").
    # (192.0.2.2 -> 198.51.100.2)
    # HDR(new, #0), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(COOKIE2)}  -->
    #                                   <--  HDR(new, #0), SK {N(NAT_D_*), N(COOKIE2)}
    # the gateway's return routability check, from 198.51.100.2:
    #                                   <--  HDR(new, #0), SK {N(COOKIE2)}
    # HDR(new, #0), SK {N(COOKIE2)}  -->
    (_, gateway_second) = client.peer_addresses
    client.update_addresses((SECOND_HOST, NAT_T), 3.0, remote=(gateway_second, NAT_T))
    flow = p.net.run(3.0)
    assert [str(d) for d in flow] == FIRST_UPDATE_WITH_CHECK
    assert flow[0].datagram.dst == (GATEWAY_SECOND, NAT_T)
    assert flow[2].datagram.src == (GATEWAY_SECOND, NAT_T)
    client_events, gateway_events = p.events()
    assert of_type(client_events, IkeSaMoved) and of_type(gateway_events, IkeSaMoved)
    assert gateway.sa.local_address == (GATEWAY_SECOND, NAT_T)
    assert gateway.sa.remote_address == (SECOND_HOST, NAT_T)
    assert gateway.sa.mobike_update_id == 0


def test_the_roles_hold_across_rekeys_by_both_ends() -> None:
    p = established()
    first_client, first_gateway = p.client_sa, p.gateway_sa
    client, gateway = rekey(p, first_gateway, 1.0)
    p.client_sa, p.gateway_sa = client, gateway
    client, gateway = rekey(p, client, 2.0)
    p.client_sa, p.gateway_sa = client, gateway
    client, gateway = rekey(p, gateway, 3.0)
    assert gateway.sa.initiator and gateway.sa.rekeyed_from == p.gateway_sa.sa.spis
    assert client.sa.mobike_initiator and not gateway.sa.mobike_initiator
    assert first_client.sa.mobike_initiator and not first_gateway.sa.mobike_initiator
