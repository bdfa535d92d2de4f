"""IKE_SA_INIT + IKE_AUTH (PSK) + first Child SA between two endpoints in memory."""

from __future__ import annotations

import dataclasses

import pytest
from engine_harness import RESPONDER_HOST, drain, of_type, pair

from ikecore import NotifyType, PayloadType
from ikecore.config import Identity
from ikecore.endpoint import Datagram
from ikecore.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    IkeSaDeleted,
    IkeSaEstablished,
)
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


@pytest.mark.parametrize(
    ("ike", "esp", "key_length"),
    [
        ("aes256gcm16-prfsha256-x25519", "aes256gcm16", 36),
        ("aes128gcm16-prfsha256-ecp256", "aes128gcm16-esn", 20),
        ("chacha20poly1305-prfsha256-x25519", "chacha20poly1305", 36),
        ("aes256gcm16-prfsha384-ecp384", "aes256gcm16-noesn", 36),
        ("aes256gcm16-prfsha512-ecp521", "aes128gcm16", 20),
        ("aes256gcm16-prfsha256-modp2048", "aes256gcm16-esn", 36),
        ("aes128gcm8-prfsha256-x25519", "aes128gcm8", 20),
        ("aes256gcm12-prfsha384-ecp256", "aes256gcm12-esn", 36),
        ("aes192gcm16-prfsha256-ecp384", "aes192gcm16", 28),
    ],
)
def test_setup_for_each_proposal_and_group(ike: str, esp: str, key_length: int) -> None:
    initiator, responder, peer, net = pair(ike, esp, clone=False, mobike=False)
    session = initiator.initiate(peer, 0.0)
    # IKE_SA_INIT -->  <-- IKE_SA_INIT ; IKE_AUTH -->  <-- IKE_AUTH   (all on port 500)
    flow = net.run(0.0)
    assert len(flow) == 4 and all(d.datagram.dst[1] == 500 for d in flow)
    assert session.state == IkeState.ESTABLISHED
    (peer_session,) = responder.sessions
    assert session.sa.transforms == peer_session.sa.transforms
    assert session.sa.transforms is not None
    assert session.sa.transforms.transforms() == peer.ike_proposals[0].transforms
    (child,) = session.child_sas
    assert len(child.key_out) == key_length
    assert child.transforms.esn == ("-esn" in esp)
    assert not session.sa.clone_negotiated and not session.sa.peer_mobike_supported
    assert len(of_type(drain(responder), ChildSaEstablished)) == 1


def test_wrong_psk_fails_authentication_on_both_sides() -> None:
    initiator, responder, peer, net = pair(responder_psk=b"another secret")
    session = initiator.initiate(peer, 0.0)
    # IKE_SA_INIT -->  <-- IKE_SA_INIT
    # IKE_AUTH {IDi, AUTH(wrong)} -->  <-- IKE_AUTH {N(AUTHENTICATION_FAILED)}
    net.run(0.0)
    assert session.state == IkeState.DELETED
    (deleted,) = drain(initiator)
    assert isinstance(deleted, IkeSaDeleted)
    assert deleted.reason == "authentication_failed"
    assert deleted.notify == NotifyType.AUTHENTICATION_FAILED
    # The responder keeps nothing and tells its user nothing: the peer never authenticated.
    assert responder.sessions == [] and responder.store.ike_sas() == []
    assert drain(responder) == []
    assert initiator.store.ike_sas() == []


def test_no_proposal_chosen_ends_the_attempt() -> None:
    initiator, responder, peer, net = pair(
        initiator_ike="aes128gcm16-prfsha256-x25519", responder_ike="aes256gcm16-prfsha256-x25519"
    )
    session = initiator.initiate(peer, 0.0)
    # IKE_SA_INIT -->  <-- IKE_SA_INIT {N(NO_PROPOSAL_CHOSEN)}
    flow = net.run(0.0)
    assert len(flow) == 2
    assert session.state == IkeState.DELETED
    (deleted,) = drain(initiator)
    assert isinstance(deleted, IkeSaDeleted) and deleted.notify == NotifyType.NO_PROPOSAL_CHOSEN
    assert responder.sessions == []
    # The refusal is stateless: HDR(SPIi, 0).
    assert flow[1].datagram.data[8:16] == bytes(8)


def test_child_sa_refused_but_ike_sa_stands() -> None:
    initiator, responder, peer, net = pair(initiator_esp="aes128gcm16", responder_esp="aes256gcm16")
    session = initiator.initiate(peer, 0.0)
    # IKE_AUTH {IDi, AUTH, SA, TSi, TSr} -->  <-- IKE_AUTH {IDr, AUTH, N(NO_PROPOSAL_CHOSEN)}
    net.run(0.0)
    assert session.state == IkeState.ESTABLISHED
    events = drain(initiator)
    assert [type(e) for e in events] == [IkeSaEstablished, ChildSaFailed]
    failed = events[1]
    assert isinstance(failed, ChildSaFailed) and failed.notify == NotifyType.NO_PROPOSAL_CHOSEN
    assert session.child_sas == [] and responder.sessions[0].child_sas == []


def test_invalid_ke_payload_retry_with_the_requested_group() -> None:
    initiator, responder, peer, net = pair(
        initiator_ike="aes256gcm16-prfsha256-x25519-ecp256",
        responder_ike="aes256gcm16-prfsha256-ecp256",
    )
    session = initiator.initiate(peer, 0.0)
    # IKE_SA_INIT {SA, KEi(31), Ni} -->  <-- IKE_SA_INIT {N(INVALID_KE_PAYLOAD, 19)}
    # IKE_SA_INIT {SA, KEi(19), Ni} -->  <-- IKE_SA_INIT {SA, KEr(19), Nr}
    # IKE_AUTH --> <-- IKE_AUTH
    flow = net.run(0.0)
    assert [str(d) for d in flow] == [
        "IKE_SA_INIT --> #0",
        "IKE_SA_INIT <-- #0",
        "IKE_SA_INIT --> #0",
        "IKE_SA_INIT <-- #0",
        "IKE_AUTH --> #1",
        "IKE_AUTH <-- #1",
    ]
    assert session.state == IkeState.ESTABLISHED
    assert session.sa.transforms is not None and session.sa.transforms.dh == 19
    assert len(responder.sessions) == 1  # the refused first attempt left nothing behind


def test_cookie_demanded_under_load() -> None:
    initiator, responder, peer, net = pair(endpoint_options={"cookie_threshold": 0})
    session = initiator.initiate(peer, 0.0)
    # IKE_SA_INIT {SA, KEi, Ni} -->  <-- IKE_SA_INIT {N(COOKIE)}           (responder keeps nothing)
    first = net.capture(0.0)
    net.deliver(first, 0.0)
    assert responder.sessions == [] and responder.cookies_sent == 1
    # IKE_SA_INIT {N(COOKIE), SA, KEi, Ni} -->  <-- IKE_SA_INIT {SA, KEr, Nr}
    # IKE_AUTH --> <-- IKE_AUTH
    flow = net.run(0.0)
    assert [str(d) for d in flow][:3] == [
        "IKE_SA_INIT <-- #0",
        "IKE_SA_INIT --> #0",
        "IKE_SA_INIT <-- #0",
    ]
    assert session.state == IkeState.ESTABLISHED and responder.cookies_sent == 1
    # AUTH signs the request as retried: it starts with the COOKIE notify (§2.6, §2.15).
    assert session.handshake is not None and session.handshake.request[16] == PayloadType.NOTIFY


def test_cookie_from_elsewhere_is_refused() -> None:
    initiator, responder, peer, net = pair(endpoint_options={"cookie_threshold": 0})
    initiator.initiate(peer, 0.0)
    net.deliver(net.capture(0.0), 0.0)  # first attempt: cookie issued
    for datagram in net.capture(0.0):
        if datagram.dst[0] != RESPONDER_HOST:
            net.deliver([datagram], 0.0)
    retry_with_cookie = net.capture(0.0)
    assert retry_with_cookie
    # The same request from another address carries a cookie that is not valid there.
    moved = [Datagram(d.data, ("203.0.113.9", 500), d.dst) for d in retry_with_cookie]
    responder.receive_datagram(moved[0].data, moved[0].src, moved[0].dst, 0.0)
    assert responder.sessions == [] and responder.cookies_sent == 2


def test_cookie_secret_changes_and_the_previous_one_still_counts() -> None:
    initiator, responder, peer, net = pair(
        endpoint_options={"cookie_threshold": 0, "cookie_secret_lifetime": 60.0}
    )
    initiator.initiate(peer, 0.0)
    # IKE_SA_INIT -->  <-- IKE_SA_INIT {N(COOKIE)} made with secret version 1
    net.deliver(net.capture(0.0), 0.0)
    (cookie_reply,) = net.capture(0.0)
    assert cookie_reply.data[36:40] == (1).to_bytes(4, "big")  # Version ID of Secret (§2.6)
    net.deliver([cookie_reply], 0.0)
    retry = net.capture(0.0)
    # t=61: the secret changed (version 2), yet the retry with the version-1 cookie is taken.
    net.deliver(retry, 61.0)
    assert len(responder.sessions) == 1 and responder.cookies_sent == 1
    # A newcomer now gets a version-2 cookie.
    other = Datagram(retry[0].data, ("203.0.113.9", 500), retry[0].dst)
    responder.receive_datagram(other.data, other.src, other.dst, 61.0)
    (fresh,) = [d for d in responder.datagrams_to_send(61.0) if d.dst[0] == "203.0.113.9"]
    assert fresh.data[36:40] == (2).to_bytes(4, "big")
    # The newcomer retries with its version-2 cookie only at t=183, two lifetimes after the
    # secret changed: too old, answered with a new (version 3) cookie, nothing kept.
    late_retry = retry[0].data[:36] + fresh.data[36:72] + retry[0].data[72:]
    responder.receive_datagram(late_retry, other.src, other.dst, 183.0)
    assert len(responder.sessions) == 1 and responder.cookies_sent == 3
    (refused,) = [d for d in responder.datagrams_to_send(183.0) if d.dst[0] == "203.0.113.9"]
    assert refused.data[36:40] == (3).to_bytes(4, "big")


def test_initiator_rejecting_the_responder_tells_it() -> None:
    initiator, responder, peer, net = pair()
    peer = dataclasses.replace(peer, remote_id=Identity.parse("other.example"))
    session = initiator.initiate(peer, 0.0)
    # IKE_AUTH {IDi, AUTH} -->  <-- IKE_AUTH {IDr=gateway.example, AUTH}  (not who we wanted)
    # INFORMATIONAL {N(AUTHENTICATION_FAILED)} -->  <-- INFORMATIONAL {}   (§2.21.2)
    flow = net.run(0.0)
    assert [str(d) for d in flow][2:] == [
        "IKE_AUTH --> #1",
        "IKE_AUTH <-- #1",
        "INFORMATIONAL --> #2",
        "INFORMATIONAL <-- #2",
    ]
    assert session.state == IkeState.DELETED
    (deleted,) = drain(initiator)
    assert isinstance(deleted, IkeSaDeleted) and deleted.reason == "authentication_failed"
    r_events = drain(responder)
    assert [type(e) for e in r_events] == [
        IkeSaEstablished,
        ChildSaEstablished,
        ChildSaDeleted,
        IkeSaDeleted,
    ]
    assert isinstance(r_events[-1], IkeSaDeleted)
    assert r_events[-1].notify == NotifyType.AUTHENTICATION_FAILED
    assert responder.sessions == [] and responder.store.ike_sas() == []


@pytest.mark.parametrize(
    "identity",
    ["192.0.2.1", "2001:db8::7", "client.example", "alice@example.org", "keyid:00a1b2c3"],
)
def test_identity_types(identity: str) -> None:
    initiator, responder, peer, net = pair()
    peer = dataclasses.replace(peer, local_id=Identity.parse(identity))
    responder_peer = dataclasses.replace(
        responder.config.peers[0], remote_id=Identity.parse(identity)
    )
    responder.config = dataclasses.replace(responder.config, peers=(responder_peer,))
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    assert session.state == IkeState.ESTABLISHED
    (peer_session,) = responder.sessions
    assert peer_session.sa.remote_id == Identity.parse(identity)
    assert peer_session.peer is responder_peer
