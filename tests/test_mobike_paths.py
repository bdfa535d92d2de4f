"""MOBIKE (RFC 4555) beyond the plain move: the responder's return routability check (§3.7),
NO_NATS_ALLOWED and UNEXPECTED_NAT_DETECTED (§3.9), NAT detection in UPDATE_SA_ADDRESSES
(§3.5), and ADDITIONAL_*_ADDRESS in IKE_AUTH (§3.4). Two endpoints in memory."""

from __future__ import annotations

import dataclasses

import pytest
from clone_harness import SECOND_HOST, Pair, flow_line
from engine_harness import INITIATOR_HOST, RESPONDER_HOST, describe, drain, of_type, pair

from ikecore import NotifyType, PeerConfig, ReturnRoutabilityFailed
from ikecore.endpoint import Datagram
from ikecore.events import (
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaMoved,
    IkeSaMoveFailed,
    PeerAddressesChanged,
)
from ikecore.exchanges.mobike import no_nats_data, remember_auth_addresses
from ikecore.message import parse_message
from ikecore.states import IkeState
from ikecore.wire import Notify, ike_cipher, open_message

NAT_T = 4500
PING = b"\x45" + bytes(27)
PUBLIC = "203.0.113.5"  # a NAT's public address in front of the client's second interface


def established(
    client: dict[str, object] | None = None,
    gateway: dict[str, object] | None = None,
    **endpoint_options: object,
) -> Pair:
    """IKE_SA_INIT + IKE_AUTH with these PeerConfig changes on either side; events drained.
    The client also answers on SECOND_HOST and (behind a `Nat`) on PUBLIC."""
    client_ep, gateway_ep, peer, net = pair(endpoint_options=endpoint_options or None)
    peer = dataclasses.replace(peer, **(client or {}))  # type: ignore[arg-type]
    (gateway_peer,) = gateway_ep.config.peers
    gateway_ep.config = dataclasses.replace(
        gateway_ep.config,
        peers=(dataclasses.replace(gateway_peer, **(gateway or {})),),  # type: ignore[arg-type]
    )
    session = client_ep.initiate(peer, 0.0)
    net.run(0.0)
    net.hosts[SECOND_HOST] = net.hosts[PUBLIC] = client_ep
    (gateway_session,) = gateway_ep.sessions
    drain(client_ep), drain(gateway_ep)
    return Pair(client_ep, gateway_ep, session, gateway_session, net)


class Nat:
    """Rewrites what leaves SECOND_HOST to PUBLIC:40000 and back (``budget`` packets, None
    for all of them)."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = budget

    def __call__(self, datagram: Datagram) -> list[Datagram]:
        if datagram.src[0] == SECOND_HOST and self.budget != 0:
            if self.budget is not None:
                self.budget -= 1
            return [Datagram(datagram.data, (PUBLIC, 40000), datagram.dst)]
        if datagram.dst == (PUBLIC, 40000):
            return [Datagram(datagram.data, datagram.src, (SECOND_HOST, NAT_T))]
        return [datagram]


def _opened_request(p: Pair, datagram: Datagram) -> list[Notify]:
    sa = p.gateway_sa.sa
    assert sa.keys is not None and sa.transforms is not None
    cipher = ike_cipher(sa.transforms.encr, sa.keys.sk_ei, sa.transforms.icv_length, 0)
    return [
        n for n in open_message(cipher, parse_message(datagram.data[4:])) if isinstance(n, Notify)
    ]


# -- return routability check (§3.7) -----------------------------------------------------------


def test_the_child_sas_follow_only_once_the_new_address_answered() -> None:
    p = established()
    (peer_child,) = p.gateway_sa.child_sas
    # (192.0.2.2 -> 198.51.100.1) HDR(#2), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(COOKIE2)}
    #                        <--  HDR(#2), SK {N(NAT_D_*), N(COOKIE2)}
    p.client_sa.update_addresses((SECOND_HOST, NAT_T), 1.0)
    (update,) = p.net.capture(1.0)
    p.net.deliver([update], 1.0)
    response, check = p.net.capture(1.0)
    assert str(describe(response)) == "INFORMATIONAL <-- #2"
    # The IKE SA follows at once; the check goes to the new address after the answer:
    #                        <--  HDR(#0), SK {N(COOKIE2)}        (198.51.100.1 -> 192.0.2.2)
    assert str(describe(check)) == "INFORMATIONAL --> #0" and check.dst == (SECOND_HOST, NAT_T)
    assert p.gateway_sa.sa.remote_address == (SECOND_HOST, NAT_T)
    assert p.gateway_sa.mobike.esp_path == ((RESPONDER_HOST, NAT_T), (INITIATOR_HOST, NAT_T))
    assert not of_type(drain(p.gateway), IkeSaMoved)
    # Meanwhile the Child SA still sends to the old address.
    p.gateway.send_esp(peer_child.spi_in, PING, 4, 1.0)
    (esp,) = p.net.capture(1.0)
    assert esp.dst == (INITIATOR_HOST, NAT_T)
    # HDR(#0), SK {N(COOKIE2)}  -->   the copy of our COOKIE2 proves the client is there
    p.net.deliver([response, check], 1.0)
    assert [flow_line(d) for d in p.net.run(1.0)] == ["INFORMATIONAL <-- #0"]
    (moved,) = of_type(drain(p.gateway), IkeSaMoved)
    assert isinstance(moved, IkeSaMoved) and moved.remote == (SECOND_HOST, NAT_T)
    assert p.gateway_sa.mobike.esp_path is None and p.gateway_sa.mobike.pending_check is None
    assert of_type(drain(p.client), IkeSaMoved)
    p.gateway.send_esp(peer_child.spi_in, PING, 4, 2.0)
    (esp,) = p.net.capture(2.0)
    assert esp.dst == (SECOND_HOST, NAT_T)


def test_a_check_that_is_never_answered_leaves_the_sa_on_the_old_path() -> None:
    p = established(retransmit_tries=2)
    (peer_child,) = p.gateway_sa.child_sas

    def unreachable(datagram: Datagram) -> list[Datagram]:
        # The gateway's packets never reach 192.0.2.2 (e.g. a spoofed source address).
        return [] if datagram.dst[0] == SECOND_HOST else [datagram]

    # HDR(#2), SK {N(UPDATE_SA_ADDRESSES), ...}  -->     (its answer to 192.0.2.2 is lost)
    #                 <--  HDR(#0), SK {N(COOKIE2)}  x3   (to 192.0.2.2, lost)
    p.client_sa.update_addresses((SECOND_HOST, NAT_T), 1.0)
    p.net.run(1.0, unreachable)
    now = 1.0
    for _ in range(2):  # the two retransmissions of the check (1 s, 2 s)
        timer = p.gateway.get_timer()
        assert timer is not None and timer > now
        now = timer
        p.gateway.handle_timer(now)
        assert p.net.capture(now)[0].dst == (SECOND_HOST, NAT_T)
    assert not of_type(drain(p.gateway), ReturnRoutabilityFailed)
    # Retransmissions spent: back to the old path, where the same request (message ID 0)
    # goes on and is answered:   <--  HDR(#0), SK {N(COOKIE2)}  (to 192.0.2.1)  -->
    timer = p.gateway.get_timer()
    assert timer is not None
    p.gateway.handle_timer(timer)
    (failed,) = of_type(drain(p.gateway), ReturnRoutabilityFailed)
    assert isinstance(failed, ReturnRoutabilityFailed)
    assert failed.remote == (SECOND_HOST, NAT_T) and failed.previous == (INITIATOR_HOST, NAT_T)
    flow = p.net.run(timer, unreachable)
    assert [str(d) for d in flow] == ["INFORMATIONAL --> #0", "INFORMATIONAL <-- #0"]
    assert flow[0].datagram.dst == (INITIATOR_HOST, NAT_T)
    gateway = p.gateway_sa
    assert gateway.state == IkeState.ESTABLISHED and not gateway.busy()
    assert gateway.sa.remote_address == (INITIATOR_HOST, NAT_T)
    assert gateway.mobike.esp_path is None and not of_type(drain(p.gateway), IkeSaMoved)
    p.gateway.send_esp(peer_child.spi_in, PING, 4, timer)
    (esp,) = p.net.capture(timer)
    assert esp.dst == (INITIATOR_HOST, NAT_T)


def test_without_the_check_the_child_sas_follow_at_once() -> None:
    p = established(gateway={"return_routability_check": False})
    # HDR(#2), SK {N(UPDATE_SA_ADDRESSES), ...}  -->  <--  (and nothing more)
    p.client_sa.update_addresses((SECOND_HOST, NAT_T), 1.0)
    assert p.run(1.0) == ["INFORMATIONAL --> #2", "INFORMATIONAL <-- #2"]
    assert of_type(drain(p.gateway), IkeSaMoved)
    assert p.gateway_sa.mobike.esp_path is None


def test_no_check_when_the_update_keeps_the_address() -> None:
    """An UPDATE_SA_ADDRESSES from the address the SA already uses (e.g. to refresh NAT
    detection, §3.8) needs no check and moves nothing."""
    p = established()
    p.client_sa.update_addresses((INITIATOR_HOST, NAT_T), 1.0)
    assert p.run(1.0) == ["INFORMATIONAL --> #2", "INFORMATIONAL <-- #2"]
    assert not of_type(drain(p.gateway), IkeSaMoved)


# -- NAT detection in UPDATE_SA_ADDRESSES (§3.5) --------------------------------------------


def test_a_nat_found_and_gone_with_the_move() -> None:
    p = established()
    nat = Nat()
    (peer_child,) = p.gateway_sa.child_sas
    # (192.0.2.2 --NAT 203.0.113.5:40000--> 198.51.100.1)
    # HDR(#2), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_SRC)=hash(192.0.2.2:4500), ...}  -->
    #    <--  HDR(#2), SK {N(NAT_D_SRC), N(NAT_D_DST)=hash(203.0.113.5:40000), N(COOKIE2)}
    #    <--  HDR(#0), SK {N(COOKIE2)}   (the check, to the NAT's mapping)  -->
    p.client_sa.update_addresses((SECOND_HOST, NAT_T), 1.0)
    assert p.net.run(1.0, nat)
    client, gateway = p.client_sa.sa, p.gateway_sa.sa
    client_events, gateway_events = p.events()
    assert of_type(client_events, IkeSaMoved)
    (moved,) = of_type(gateway_events, IkeSaMoved)
    assert isinstance(moved, IkeSaMoved) and moved.remote == (PUBLIC, 40000)
    assert client.local_behind_nat and not client.remote_behind_nat
    assert gateway.remote_behind_nat and not gateway.local_behind_nat
    assert gateway.remote_address == (PUBLIC, 40000)
    # ESP-in-UDP to the NAT's mapping, and through it.
    p.gateway.send_esp(peer_child.spi_in, PING, 4, 1.0)
    (esp,) = p.net.capture(1.0)
    assert esp.dst == (PUBLIC, 40000)
    # An INFORMATIONAL from elsewhere without UPDATE_SA_ADDRESSES moves nothing, NAT or not
    # (RFC 4555 §3.8: no dynamic address updates for IKE with MOBIKE). Behind a NAT the
    # client's liveness check carries NAT detection (§3.8):
    # (192.0.2.1 -> 198.51.100.1) HDR(#3), SK {N(NAT_D_SRC), N(NAT_D_DST)}  -->
    p.client_sa.sa.local_address = (INITIATOR_HOST, NAT_T)
    p.client_sa.check_liveness(1.5)
    p.net.deliver(p.net.capture(1.5), 1.5)
    assert gateway.remote_address == (PUBLIC, 40000)
    # <-- HDR(#3), SK {N(NAT_D_SRC), N(NAT_D_DST)=hash(192.0.2.1:4500)}: the gateway sees the
    # client elsewhere now, so the client sends UPDATE_SA_ADDRESSES from there (§3.8); no NAT
    # on that path: NAT traversal state goes (§3.5).
    # HDR(#4), SK {N(UPDATE_SA_ADDRESSES), ...}  -->  <--  ; the check  <--  -->
    assert len(p.net.run(1.5, nat)) == 5
    (moved,) = of_type(drain(p.gateway), IkeSaMoved)
    assert isinstance(moved, IkeSaMoved) and moved.remote == (INITIATOR_HOST, NAT_T)
    assert not client.local_behind_nat and not client.remote_behind_nat
    assert not gateway.local_behind_nat and not gateway.remote_behind_nat
    assert gateway.remote_address == (INITIATOR_HOST, NAT_T)


# -- NO_NATS_ALLOWED (§3.9) -------------------------------------------------------------------


def test_no_nats_allowed_refuses_a_move_through_a_nat() -> None:
    p = established(client={"no_nats_allowed": True}, retransmit_tries=2)
    previous = (p.client_sa.sa.local_address, p.client_sa.sa.remote_address)
    # HDR(#2), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(NO_NATS_ALLOWED), N(COOKIE2)} -NAT->
    #           <--  HDR(#2), SK {N(UNEXPECTED_NAT_DETECTED), N(COOKIE2)}
    # retried with new requests (#3, #4: as many as retransmissions, §3.9), all refused
    p.client_sa.update_addresses((SECOND_HOST, NAT_T), 1.0)
    flow = p.net.run(1.0, Nat())
    assert [str(d) for d in flow] == [
        "INFORMATIONAL --> #2",
        "INFORMATIONAL <-- #2",
        "INFORMATIONAL --> #3",
        "INFORMATIONAL <-- #3",
        "INFORMATIONAL --> #4",
        "INFORMATIONAL <-- #4",
    ]
    (failed,) = of_type(drain(p.client), IkeSaMoveFailed)
    assert isinstance(failed, IkeSaMoveFailed)
    assert failed.notify == NotifyType.UNEXPECTED_NAT_DETECTED
    # The SA is not moved, at either end.
    assert (p.client_sa.sa.local_address, p.client_sa.sa.remote_address) == previous
    assert p.gateway_sa.sa.remote_address == (INITIATOR_HOST, NAT_T)
    assert not of_type(drain(p.gateway), IkeSaMoved)
    assert p.client_sa.state == p.gateway_sa.state == IkeState.ESTABLISHED
    assert p.gateway_sa.mobike.pending_check is None


def test_no_nats_allowed_retries_past_one_altered_packet() -> None:
    p = established(client={"no_nats_allowed": True})
    # The first request is rewritten on the way (refused), the retry arrives as sent.
    p.client_sa.update_addresses((SECOND_HOST, NAT_T), 1.0)
    (request,) = p.net.capture(1.0)
    kinds = {n.notify_type: n for n in _opened_request(p, request)}
    no_nats = kinds[NotifyType.NO_NATS_ALLOWED]
    assert no_nats.data == no_nats_data((SECOND_HOST, NAT_T), (RESPONDER_HOST, NAT_T))
    assert len(no_nats.data) == 12
    p.net.deliver(Nat(budget=1)(request), 1.0)
    p.net.run(1.0)
    (moved,) = of_type(drain(p.client), IkeSaMoved)
    assert isinstance(moved, IkeSaMoved) and moved.local == (SECOND_HOST, NAT_T)
    assert p.gateway_sa.sa.remote_address == (SECOND_HOST, NAT_T)
    assert of_type(drain(p.gateway), IkeSaMoved)


def test_no_nats_allowed_in_ike_auth() -> None:
    # Without a NAT: NO_NATS_ALLOWED in IKE_AUTH matches, the SA comes up.
    p = established(client={"no_nats_allowed": True})
    assert p.client_sa.state == IkeState.ESTABLISHED

    # Through a NAT: the gateway answers IKE_AUTH with UNEXPECTED_NAT_DETECTED; no SA.
    client, gateway, peer, net = pair()
    peer = dataclasses.replace(peer, no_nats_allowed=True, local_address=(SECOND_HOST, 500))
    net.hosts[SECOND_HOST] = net.hosts[PUBLIC] = client

    def nat(datagram: Datagram) -> list[Datagram]:
        if datagram.src[0] == SECOND_HOST:
            return [Datagram(datagram.data, (PUBLIC, datagram.src[1] + 40000), datagram.dst)]
        if datagram.dst[0] == PUBLIC:
            return [Datagram(datagram.data, datagram.src, (SECOND_HOST, datagram.dst[1] - 40000))]
        return [datagram]

    # IKE_SA_INIT -->  <--  ;  IKE_AUTH {..., N(MOBIKE_SUPPORTED), N(NO_NATS_ALLOWED)} -->
    #                          <--  IKE_AUTH {N(UNEXPECTED_NAT_DETECTED)}
    session = client.initiate(peer, 0.0)
    assert [str(d) for d in net.run(0.0, nat)] == [
        "IKE_SA_INIT --> #0",
        "IKE_SA_INIT <-- #0",
        "IKE_AUTH --> #1",
        "IKE_AUTH <-- #1",
    ]
    (deleted,) = of_type(drain(client), IkeSaDeleted)
    assert isinstance(deleted, IkeSaDeleted) and deleted.reason == "unexpected_nat_detected"
    assert deleted.notify == NotifyType.UNEXPECTED_NAT_DETECTED
    assert session.state == IkeState.DELETED and client.sessions == []
    assert gateway.sessions == [] and not of_type(drain(gateway), IkeSaEstablished)


def test_no_nats_allowed_in_an_address_announcement() -> None:
    p = established(client={"no_nats_allowed": True}, retransmit_tries=2)

    def nat(datagram: Datagram) -> list[Datagram]:
        if datagram.src[0] == INITIATOR_HOST:
            return [Datagram(datagram.data, (PUBLIC, 40000), datagram.dst)]
        if datagram.dst[0] == PUBLIC:
            return [Datagram(datagram.data, datagram.src, (INITIATOR_HOST, NAT_T))]
        return [datagram]

    # HDR(#2), SK {N(ADDITIONAL_IP4_ADDRESS), N(NO_NATS_ALLOWED), N(COOKIE2)}  -NAT->
    #    <--  HDR(#2), SK {N(UNEXPECTED_NAT_DETECTED), N(COOKIE2)}     retried: #3, #4
    p.client_sa.announce_addresses([SECOND_HOST], 1.0)
    assert [str(d) for d in p.net.run(1.0, nat)] == [
        "INFORMATIONAL --> #2",
        "INFORMATIONAL <-- #2",
        "INFORMATIONAL --> #3",
        "INFORMATIONAL <-- #3",
        "INFORMATIONAL --> #4",
        "INFORMATIONAL <-- #4",
    ]
    assert not of_type(drain(p.gateway), PeerAddressesChanged)
    assert p.gateway_sa.peer_addresses == () and p.client_sa.state == IkeState.ESTABLISHED
    # Without the NAT the same announcement is taken:
    # HDR(#5), SK {N(ADDITIONAL_IP4_ADDRESS), N(NO_NATS_ALLOWED), N(COOKIE2)}  -->  <--
    p.client_sa.announce_addresses([SECOND_HOST], 2.0)
    (request,) = p.net.capture(2.0)
    kinds = [n.notify_type for n in _opened_request(p, request)]
    assert NotifyType.NO_NATS_ALLOWED in kinds
    p.net.deliver([request], 2.0)
    p.net.run(2.0)
    (changed,) = of_type(drain(p.gateway), PeerAddressesChanged)
    assert isinstance(changed, PeerAddressesChanged)
    assert changed.addresses == (INITIATOR_HOST, SECOND_HOST)


# -- ADDITIONAL_*_ADDRESS in IKE_AUTH (§3.4) ----------------------------------------------


def test_additional_addresses_announced_in_ike_auth() -> None:
    # IKE_AUTH {IDi, AUTH, N(MOBIKE_SUPPORTED), N(ADDITIONAL_IP4_ADDRESS), ...}  -->
    #   <--  IKE_AUTH {IDr, AUTH, N(MOBIKE_SUPPORTED), N(ADDITIONAL_IP4_ADDRESS),
    #                  N(ADDITIONAL_IP6_ADDRESS), ...}
    p = established(
        client={"additional_addresses": (SECOND_HOST,)},
        gateway={"additional_addresses": ("198.51.100.2", "2001:db8::7")},
    )
    assert p.client_sa.peer_addresses == (RESPONDER_HOST, "198.51.100.2", "2001:db8::7")
    assert p.gateway_sa.peer_addresses == (INITIATOR_HOST, SECOND_HOST)
    # Stored, no other action (§3.4): no event, nothing moved.
    assert p.client_sa.sa.remote_address == (RESPONDER_HOST, NAT_T)
    # A later INFORMATIONAL replaces the set (§3.6).
    #  <--  HDR, SK {N(NO_ADDITIONAL_ADDRESSES), N(COOKIE2)}  -->
    p.gateway_sa.announce_addresses([], 1.0)
    p.run(1.0)
    (changed,) = of_type(drain(p.client), PeerAddressesChanged)
    assert isinstance(changed, PeerAddressesChanged) and changed.addresses == (RESPONDER_HOST,)
    assert p.client_sa.peer_addresses == (RESPONDER_HOST,)


def test_address_notifies_next_to_unknown_status_notifies() -> None:
    """strongSwan's IKE_AUTH carries N(NO_ADDITIONAL_ADDRESSES) with N(EAP_ONLY) and
    N(MSG_ID_SYN_SUP), status types ikecore does not know (RFC 7296 §3.10.1: ignored)."""
    p = established()
    remember_auth_addresses(
        p.gateway_sa,
        [
            Notify.status(NotifyType.MOBIKE_SUPPORTED),
            Notify.status(NotifyType.NO_ADDITIONAL_ADDRESSES),
            Notify.status(16417),
            Notify.status(16420),
        ],
    )
    assert p.gateway_sa.peer_addresses == (INITIATOR_HOST,)
    # A wrong-length ADDITIONAL_IP4_ADDRESS names nothing.
    remember_auth_addresses(
        p.gateway_sa, [Notify.status(NotifyType.ADDITIONAL_IP4_ADDRESS, b"\x01\x02")]
    )
    assert p.gateway_sa.peer_addresses == (INITIATOR_HOST,)


def test_additional_addresses_need_mobike() -> None:
    p = established(
        client={"additional_addresses": (SECOND_HOST,), "mobike": False},
        gateway={"additional_addresses": ("198.51.100.2",)},
    )
    assert p.client_sa.peer_addresses == () and p.gateway_sa.peer_addresses == ()
    p = established()
    assert p.client_sa.peer_addresses == () and p.gateway_sa.peer_addresses == ()


def test_peer_config_checks_the_additional_addresses() -> None:
    (peer, _) = pair()[2], None
    with pytest.raises(ValueError, match="not an IP address"):
        dataclasses.replace(peer, additional_addresses=("gateway.example",))
    with pytest.raises(TypeError, match="tuple"):
        dataclasses.replace(peer, additional_addresses=["192.0.2.9"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a string"):
        dataclasses.replace(peer, additional_addresses=(3232235521,))  # type: ignore[arg-type]
    assert isinstance(dataclasses.replace(peer, additional_addresses=("::1",)), PeerConfig)
