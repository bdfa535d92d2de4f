"""MOBIKE (RFC 4555) on a clone: the clone moves to the client's second address with its Child
SAs, the old SA stays where it was; address lists; COOKIE2; NAT detection with the clone's SPIs."""

from __future__ import annotations

import pytest
from clone_harness import SECOND_HOST, clone_on_both_sides, established
from engine_harness import INITIATOR_HOST, RESPONDER_HOST, of_type

from ikecore import ExchangeType, LocalProtocolError, NotifyType
from ikecore.events import (
    ChildSaEstablished,
    EspPacketReceived,
    IkeSaDeleted,
    IkeSaMoved,
    IkeSaMoveFailed,
    PeerAddressesChanged,
)
from ikecore.exchanges.base import nat_detection_hash
from ikecore.message import parse_message
from ikecore.states import IkeState
from ikecore.wire import Notify, build_message, ike_cipher, open_message

NAT_T = 4500
PING = b"\x45" + bytes(27)


def test_move_a_clone_with_its_child_sa_while_the_old_sa_stays() -> None:
    p = established()
    clone, peer_clone = clone_on_both_sides(p, p.client_sa, 1.0)
    clone.create_child_sa(1.5)
    p.run(1.5)
    (child,) = clone.child_sas
    p.events()
    # (192.0.2.2:4500 -> 198.51.100.1:4500)
    # HDR(clone, #1), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_SRC), N(NAT_D_DST), N(COOKIE2)} -->
    #             <--  HDR(clone, #1), SK {N(NAT_D_SRC), N(NAT_D_DST), N(COOKIE2)}
    # (the gateway's return routability check of 192.0.2.2, RFC 4555 §3.7)
    #             <--  HDR(clone, #0), SK {N(COOKIE2)}
    # HDR(clone, #0), SK {N(COOKIE2)}  -->
    clone.update_addresses((SECOND_HOST, NAT_T), 2.0)
    flow = p.net.run(2.0)
    assert [str(d) for d in flow] == [
        "INFORMATIONAL --> #1",
        "INFORMATIONAL <-- #1",
        "INFORMATIONAL --> #0",
        "INFORMATIONAL <-- #0",
    ]
    assert flow[0].datagram.src == (SECOND_HOST, NAT_T)
    assert flow[1].datagram.dst == (SECOND_HOST, NAT_T)
    assert flow[2].datagram.dst == (SECOND_HOST, NAT_T)
    client_events, gateway_events = p.events()
    (moved,) = of_type(client_events, IkeSaMoved)
    (peer_moved,) = of_type(gateway_events, IkeSaMoved)
    assert isinstance(moved, IkeSaMoved) and moved.session is clone
    assert moved.local == (SECOND_HOST, NAT_T) and moved.remote == (RESPONDER_HOST, NAT_T)
    assert isinstance(peer_moved, IkeSaMoved) and peer_moved.session is peer_clone
    assert peer_clone.sa.remote_address == (SECOND_HOST, NAT_T)
    # NAT detection used the clone's SPIs: had it not, the gateway would see a NAT.
    for sa in (clone.sa, peer_clone.sa):
        assert not sa.local_behind_nat and not sa.remote_behind_nat
    # The old SA keeps its address on both sides.
    assert p.client_sa.sa.local_address == (INITIATOR_HOST, NAT_T)
    assert p.gateway_sa.sa.remote_address == (INITIATOR_HOST, NAT_T)
    # ESP follows each IKE SA: the clone's Child SA to the new address, the old one's not.
    (peer_child,) = peer_clone.child_sas
    old_peer_child = p.gateway_sa.child_sas[0]
    p.gateway.send_esp(peer_child.spi_in, PING, 4, 3.0)
    p.gateway.send_esp(old_peer_child.spi_in, PING, 4, 3.0)
    flow = p.net.run(3.0)
    assert [d.datagram.dst for d in flow] == [(SECOND_HOST, NAT_T), (INITIATOR_HOST, NAT_T)]
    received = of_type(p.events()[0], EspPacketReceived)
    assert [e.child.spi_in for e in received] == [  # type: ignore[attr-defined]
        child.spi_in,
        p.client_sa.child_sas[0].spi_in,
    ]
    # The moved clone goes on working: a new Child SA on it, from the new address.
    clone.create_child_sa(4.0)
    flow = p.net.run(4.0)
    assert flow[0].datagram.src == (SECOND_HOST, NAT_T)
    assert of_type(p.events()[0], ChildSaEstablished)


def test_the_nat_detection_hashes_are_the_clones() -> None:
    p = established()
    clone, _ = clone_on_both_sides(p, p.client_sa, 1.0)
    clone.update_addresses((SECOND_HOST, NAT_T), 2.0)
    (request,) = p.net.capture(2.0)
    # Open the request with the clone's SK_ei (an independent cipher object).
    sa = clone.sa
    assert sa.keys is not None and sa.transforms is not None
    cipher = ike_cipher(sa.transforms.encr, sa.keys.sk_ei, sa.transforms.icv_length, 0)
    inner = open_message(cipher, parse_message(request.data[4:]))
    kinds = [n.notify_type for n in inner if isinstance(n, Notify)]
    assert kinds == [
        NotifyType.UPDATE_SA_ADDRESSES,
        NotifyType.NAT_DETECTION_SOURCE_IP,
        NotifyType.NAT_DETECTION_DESTINATION_IP,
        NotifyType.COOKIE2,
    ]
    source, destination, cookie2 = inner[1:]
    assert isinstance(source, Notify) and isinstance(destination, Notify)
    assert isinstance(cookie2, Notify) and 8 <= len(cookie2.data) <= 64
    # RFC 4555 §3.8: SHA-1(SPIi | SPIr | IP | port) with the clone's SPIs, not the old SA's.
    assert source.data == nat_detection_hash(*sa.spis, (SECOND_HOST, NAT_T))
    assert destination.data == nat_detection_hash(*sa.spis, (RESPONDER_HOST, NAT_T))
    assert source.data != nat_detection_hash(*p.client_sa.sa.spis, (SECOND_HOST, NAT_T))


def test_a_newer_update_supersedes_one_in_flight() -> None:
    p = established()
    clone, peer_clone = clone_on_both_sides(p, p.client_sa, 1.0)
    # Two moves in a row (window 1): the first request is in flight, the second waits.
    # HDR(clone, #0), SK {N(UPDATE_SA_ADDRESSES), ...} from 192.0.2.2  -->  <--
    #   (its response gets no MOBIKE processing: a newer change happened, §3.5)
    #   the gateway checks 192.0.2.2:      <--  HDR(clone, #0), SK {N(COOKIE2)}
    # HDR(clone, #1), SK {N(UPDATE_SA_ADDRESSES), ...} from 192.0.2.1  -->
    #   back on the path the gateway's Child SAs never left: the check is moot
    # HDR(clone, #0), SK {N(COOKIE2)}  -->  <--  HDR(clone, #1), SK {...}
    clone.update_addresses((SECOND_HOST, NAT_T), 2.0)
    clone.update_addresses((INITIATOR_HOST, NAT_T), 2.0)
    flow = p.net.run(2.0)
    assert [str(d) for d in flow] == [
        "INFORMATIONAL --> #0",
        "INFORMATIONAL <-- #0",
        "INFORMATIONAL --> #0",
        "INFORMATIONAL --> #1",
        "INFORMATIONAL <-- #0",
        "INFORMATIONAL <-- #1",
    ]
    assert flow[0].datagram.src == (SECOND_HOST, NAT_T)
    assert flow[2].datagram.dst == (SECOND_HOST, NAT_T)  # the gateway's check
    assert flow[3].datagram.src == (INITIATOR_HOST, NAT_T)
    client_events, gateway_events = p.events()
    (moved,) = of_type(client_events, IkeSaMoved)
    assert isinstance(moved, IkeSaMoved) and moved.local == (INITIATOR_HOST, NAT_T)
    # The gateway's Child SAs never moved: its check was overtaken before it was answered.
    assert not of_type(gateway_events, IkeSaMoved)
    assert peer_clone.sa.remote_address == (INITIATOR_HOST, NAT_T)
    assert peer_clone.mobike.pending_check is None and peer_clone.mobike.esp_path is None
    assert clone.mobike.pending_update is None


def test_address_lists_from_the_gateway() -> None:
    p = established()
    _, peer_clone = clone_on_both_sides(p, p.client_sa, 1.0)
    # HDR(clone), SK {N(ADDITIONAL_IP4_ADDRESS), N(ADDITIONAL_IP6_ADDRESS), N(COOKIE2)} -->
    #                                                        <--  HDR(clone), SK {N(COOKIE2)}
    peer_clone.announce_addresses(["198.51.100.2", "2001:db8::1"], 2.0)
    assert p.run(2.0) == ["INFORMATIONAL --> #0", "INFORMATIONAL <-- #0"]
    (announced,) = of_type(p.events()[0], PeerAddressesChanged)
    assert isinstance(announced, PeerAddressesChanged)
    assert announced.addresses == (RESPONDER_HOST, "198.51.100.2", "2001:db8::1")
    # HDR(clone), SK {N(NO_ADDITIONAL_ADDRESSES), N(COOKIE2)}  -->  <--  HDR, SK {N(COOKIE2)}
    peer_clone.announce_addresses([], 3.0)
    p.run(3.0)
    (announced,) = of_type(p.events()[0], PeerAddressesChanged)
    assert isinstance(announced, PeerAddressesChanged)
    assert announced.addresses == (RESPONDER_HOST,)
    assert peer_clone.state == IkeState.ESTABLISHED
    with pytest.raises(ValueError, match="not an IP address"):
        peer_clone.announce_addresses(["gateway.example"], 4.0)


def test_an_older_address_list_arriving_last_is_answered_but_not_taken() -> None:
    p = established(endpoint_options={"window_size": 2})
    assert p.client_sa.sa.peer_window == 2
    # With a window of two both announcements fly at once; the newer one arrives first:
    # (the gateway's requests: its first two on this SA)
    # HDR(#1), SK {N(ADDITIONAL_IP4_ADDRESS 198.51.100.3), N(COOKIE2)}  -->  <--  HDR(#1)
    # HDR(#0), SK {N(ADDITIONAL_IP4_ADDRESS 198.51.100.2), N(COOKIE2)}  -->  <--  HDR(#0)
    #   (answered, but the address set stays the newer request's: RFC 4555 §3.6)
    p.gateway_sa.announce_addresses(["198.51.100.2"], 2.0)
    p.gateway_sa.announce_addresses(["198.51.100.3"], 2.0)
    older, newer = p.net.capture(2.0)
    p.net.deliver([newer, older], 2.0)
    assert [str(d) for d in p.net.run(2.0)] == ["INFORMATIONAL <-- #1", "INFORMATIONAL <-- #0"]
    announced = of_type(p.events()[0], PeerAddressesChanged)
    assert [a.addresses for a in announced] == [(RESPONDER_HOST, "198.51.100.3")]  # type: ignore[attr-defined]
    assert p.client_sa.peer_addresses == (RESPONDER_HOST, "198.51.100.3")
    assert p.gateway_sa.state == IkeState.ESTABLISHED


def test_mobike_needs_both_announcements() -> None:
    p = established(mobike=False)
    clone, peer_clone = clone_on_both_sides(p, p.client_sa, 1.0)
    assert not clone.sa.local_mobike_supported  # the clone inherits the old SA's capabilities
    with pytest.raises(LocalProtocolError, match="MOBIKE"):
        clone.update_addresses((SECOND_HOST, NAT_T), 2.0)
    with pytest.raises(LocalProtocolError, match="MOBIKE"):
        peer_clone.announce_addresses([], 2.0)
    assert p.net.capture(2.0) == []


def test_an_update_the_peer_ignores_fails_the_cookie2_check_and_closes_the_sa() -> None:
    """A peer without MOBIKE answers UPDATE_SA_ADDRESSES with an empty INFORMATIONAL (unknown
    status notifies are ignored, RFC 7296 §3.10.1): no COOKIE2 comes back, and §3.7 says the
    IKE SA MUST then be closed."""
    p = established()
    p.gateway_sa.sa.local_mobike_supported = False  # the gateway forgets MOBIKE on this SA
    # HDR, SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(COOKIE2)}  -->  <--  HDR, SK {}
    # HDR, SK {D(IKE)}  -->  <--  HDR, SK {}
    p.client_sa.update_addresses((SECOND_HOST, NAT_T), 1.0)
    assert p.run(1.0) == [
        "INFORMATIONAL --> #2",
        "INFORMATIONAL <-- #2",
        "INFORMATIONAL --> #3",
        "INFORMATIONAL <-- #3",
    ]
    client_events, gateway_events = p.events()
    (deleted,) = of_type(client_events, IkeSaDeleted)
    assert isinstance(deleted, IkeSaDeleted) and deleted.reason == "cookie2_mismatch"
    assert not of_type(gateway_events, IkeSaMoved)
    assert p.client.sessions == [] and p.gateway.sessions == []


def test_unacceptable_addresses_keep_the_previous_ones() -> None:
    """§3.5: a refusal of the update leaves the initiator on its previous addresses. ikecore's
    responder accepts any address pair, so the gateway's answer is made by hand here."""
    p = established()
    previous = (p.client_sa.sa.local_address, p.client_sa.sa.remote_address)
    # HDR, SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(COOKIE2)}  -->
    p.client_sa.update_addresses((SECOND_HOST, NAT_T), 1.0)
    (request,) = p.net.capture(1.0)
    sa = p.gateway_sa.sa
    assert sa.keys is not None and sa.transforms is not None
    opened = open_message(
        ike_cipher(sa.transforms.encr, sa.keys.sk_ei, sa.transforms.icv_length, 0),
        parse_message(request.data[4:]),
    )
    cookie2 = next(n for n in opened if isinstance(n, Notify) and n.notify_type == 16401)
    #   <--  HDR, SK {N(UNACCEPTABLE_ADDRESSES), N(COOKIE2)}
    answer = build_message(
        sa.spi_i,
        sa.spi_r,
        ExchangeType.INFORMATIONAL,
        initiator=False,
        response=True,
        message_id=parse_message(request.data[4:]).message_id,
        payloads=[Notify.status(NotifyType.UNACCEPTABLE_ADDRESSES), cookie2],
        cipher=ike_cipher(sa.transforms.encr, sa.keys.sk_er, sa.transforms.icv_length, 10**6),
    )
    p.client.receive_datagram(bytes(4) + answer, request.dst, request.src, 1.0)
    (failed,) = of_type(p.events()[0], IkeSaMoveFailed)
    assert isinstance(failed, IkeSaMoveFailed)
    assert failed.notify == NotifyType.UNACCEPTABLE_ADDRESSES
    assert (p.client_sa.sa.local_address, p.client_sa.sa.remote_address) == previous
    assert p.client_sa.mobike.pending_update is None
    assert p.client_sa.state == IkeState.ESTABLISHED


def test_update_addresses_checks_its_arguments() -> None:
    p = established()
    session = p.client_sa
    with pytest.raises(TypeError, match="local must be a"):
        session.update_addresses(SECOND_HOST, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not an IP address"):
        session.update_addresses(("client.example", 4500), 1.0)
    with pytest.raises(ValueError, match="port 0"):
        session.update_addresses((SECOND_HOST, 0), 1.0)
    with pytest.raises(TypeError, match="remote must be"):
        session.update_addresses((SECOND_HOST, 4500), 1.0, remote=(RESPONDER_HOST, "4500"))  # type: ignore[arg-type]
    # Nothing changed, nothing was sent.
    assert session.sa.local_address == (INITIATOR_HOST, NAT_T) and p.net.capture(1.0) == []


def test_the_gateway_may_move_a_clone_it_made() -> None:
    """The documented choice for RFC 7791 §1's gateway-side move (docs/CLONE.md): either end
    of a MOBIKE-capable SA may send UPDATE_SA_ADDRESSES."""
    p = established()
    p.net.hosts["198.51.100.2"] = p.gateway  # the gateway's second interface (or node)
    # (gateway) HDR(old, #0), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->  <--  {SA, Nr, KEr}
    clone, peer_clone = clone_on_both_sides(p, p.gateway_sa, 1.0)
    # (198.51.100.2 -> 192.0.2.1) HDR(clone, #0), SK {N(UPDATE_SA_ADDRESSES), ...}  -->  <--
    # the client's return routability check:   <--  HDR(clone, #0), SK {N(COOKIE2)}  -->
    peer_clone.update_addresses(("198.51.100.2", NAT_T), 2.0)
    flow = p.net.run(2.0)
    assert [str(d) for d in flow] == [
        "INFORMATIONAL --> #0",
        "INFORMATIONAL <-- #0",
        "INFORMATIONAL --> #0",
        "INFORMATIONAL <-- #0",
    ]
    assert flow[0].datagram.src == ("198.51.100.2", NAT_T)
    assert flow[2].datagram.dst == ("198.51.100.2", NAT_T)
    client_events, gateway_events = p.events()
    assert of_type(client_events, IkeSaMoved) and of_type(gateway_events, IkeSaMoved)
    assert clone.sa.remote_address == ("198.51.100.2", NAT_T)
    assert p.client_sa.sa.remote_address == (RESPONDER_HOST, NAT_T)


def test_an_update_superseded_before_it_was_sent_is_never_sent() -> None:
    p = established()
    clone, peer_clone = clone_on_both_sides(p, p.client_sa, 1.0)
    # HDR(clone, #0) CREATE_CHILD_SA in flight; two moves wait behind it: only the newer
    # one goes out. CREATE_CHILD_SA --> <-- ; INFORMATIONAL {N(UPDATE_SA_ADDRESSES), ...} --> <--
    # then the gateway's check of port 4501:  <--  INFORMATIONAL {N(COOKIE2)}  -->
    clone.create_child_sa(2.0)
    clone.update_addresses((SECOND_HOST, NAT_T), 2.0)
    clone.update_addresses((INITIATOR_HOST, 4501), 2.0)
    flow = p.net.run(2.0)
    assert [str(d) for d in flow] == [
        "CREATE_CHILD_SA --> #0",
        "CREATE_CHILD_SA <-- #0",
        "INFORMATIONAL --> #1",
        "INFORMATIONAL <-- #1",
        "INFORMATIONAL --> #0",
        "INFORMATIONAL <-- #0",
    ]
    assert flow[2].datagram.src == (INITIATOR_HOST, 4501)
    (moved,) = of_type(p.events()[0], IkeSaMoved)
    assert isinstance(moved, IkeSaMoved) and moved.local == (INITIATOR_HOST, 4501)
    assert peer_clone.sa.remote_address == (INITIATOR_HOST, 4501)


def test_a_clone_keeps_the_address_sets_and_roles_but_not_the_update_id_or_nat_value() -> None:
    """docs/CLONE.md: a clone is made "as if" by an IKE SA rekey (RFC 7791 §4, §5.2), so it
    starts with what a rekeyed SA keeps (tests/test_mobike_rekey.py): the peer's address set
    (RFC 4555 §3.4) and the MOBIKE roles of the first SA (§1.3), whoever made the clone; not
    the last update acted on (the clone's message IDs start at 0) nor the NAT value of §3.8
    (a hash over the parent's SPIs)."""
    p = established()
    p.net.hosts["198.51.100.2"] = p.gateway
    # On the old SA: the gateway announces its addresses (§3.6), the client moves (§3.5).
    # HDR(#0), SK {N(ADDITIONAL_IP4_ADDRESS), N(COOKIE2)}  <--  -->
    # HDR(#2), SK {N(UPDATE_SA_ADDRESSES), N(NAT_D_*), N(COOKIE2)}  -->  <--  (+ the check)
    p.gateway_sa.announce_addresses(["198.51.100.2"], 1.0)
    p.run(1.0)
    p.client_sa.update_addresses((SECOND_HOST, NAT_T), 1.5)
    p.run(1.5)
    p.events()
    assert p.client_sa.peer_addresses == (RESPONDER_HOST, "198.51.100.2")
    assert p.client_sa.sa.nat_seen_as == nat_detection_hash(
        *p.client_sa.sa.spis, (SECOND_HOST, NAT_T)
    )
    assert p.gateway_sa.sa.mobike_update_id == 2
    # One clone made by each end: HDR(old), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->  <--
    for maker in (p.client_sa, p.gateway_sa):
        clone, peer_clone = clone_on_both_sides(p, maker, 2.0)
        assert clone.sa.initiator == (maker is p.client_sa)  # the I flag: the clone's maker
        assert clone.sa.mobike_initiator and not peer_clone.sa.mobike_initiator
        assert clone.peer_addresses == (RESPONDER_HOST, "198.51.100.2")
        assert peer_clone.peer_addresses == p.gateway_sa.peer_addresses
        for fresh in (clone, peer_clone):
            assert fresh.sa.mobike_update_id == -1 and fresh.sa.nat_seen_as == b""
    # The gateway's clone: the gateway may move its own end (RFC 7791 §1), not choose the
    # client's address (RFC 4555 §2.1).
    with pytest.raises(LocalProtocolError, match="only the MOBIKE initiator"):
        peer_clone.update_addresses((RESPONDER_HOST, NAT_T), 3.0, remote=(SECOND_HOST, 4501))
    assert p.net.capture(3.0) == []
    # The client moves it to the gateway's other address, which the clone knows.
    # (192.0.2.2 -> 198.51.100.2) HDR(clone, #0), SK {N(UPDATE_SA_ADDRESSES), ...}  -->  <--
    # and the gateway's check of the new path:   <--  HDR(clone, #0), SK {N(COOKIE2)}  -->
    clone.update_addresses((SECOND_HOST, NAT_T), 3.0, remote=(clone.peer_addresses[1], NAT_T))
    assert p.run(3.0) == ["INFORMATIONAL --> #0", "INFORMATIONAL <-- #0"] * 2
    assert peer_clone.sa.local_address == ("198.51.100.2", NAT_T)
    assert peer_clone.sa.mobike_update_id == 0
