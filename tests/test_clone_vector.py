"""The RFC 7791 clone of ikev2_clone_exchange.json reproduced from its inputs, on both sides.

The vector's SPIs, nonces, DH private keys, ESP SPIs and COOKIE2 go in through the endpoint's
deterministic hooks (``random``, ``key_exchange``). Each side must then send exactly the
vector's bytes and accept the other side's: IKE_SA_INIT, IKE_AUTH, the clone exchange on the
old SA, the Child SA on the clone and the MOBIKE UPDATE_SA_ADDRESSES on the clone.

One gap in the vector: its IKE_AUTH messages carry no MOBIKE_SUPPORTED, yet its last exchange
is a MOBIKE one. ikecore only moves SAs on which MOBIKE was negotiated (RFC 4555 §3.2), so the
test marks the SA as MOBIKE-capable on both sides after IKE_AUTH (what MOBIKE_SUPPORTED in both
messages would have done); `test_without_mobike_the_update_is_ignored` shows the default.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

from engine_harness import drain, of_type

from ikecore import ProtocolId
from ikecore.config import EndpointConfig, Identity, PeerConfig, TrafficSelector
from ikecore.dh import KeyExchange, key_exchange
from ikecore.endpoint import Datagram, IkeEndpoint
from ikecore.events import ChildSaEstablished, IkeSaCloned, IkeSaMoved
from ikecore.session import IkeSession
from ikecore.states import IkeState
from ikecore.suites import parse_proposals

VECTOR: dict[str, Any] = json.loads(
    (pathlib.Path(__file__).parent / "vectors" / "ikev2_clone_exchange.json").read_text()
)
INIT, AUTH = VECTOR["ike_sa_init"], VECTOR["ike_auth"]
CLONE, CHILD, MOBIKE = VECTOR["clone"], VECTOR["child_sa_on_clone"], VECTOR["mobike_on_clone"]
CLIENT = ("10.1.0.2", 500)
GATEWAY = ("203.0.113.9", 500)  # the responder address of the vector's MOBIKE step
MOVED_CLIENT = ("198.51.100.7", 4500)
GATEWAY_NAT_T = ("203.0.113.9", 4500)
MARKER = bytes(4)  # RFC 3948 §2.2 non-ESP marker on port 4500


def scripted(values: dict[int, list[str]]) -> Callable[[int], bytes]:
    """The endpoint's ``random``: the next scripted value of the requested length."""
    queues = {length: [bytes.fromhex(v) for v in items] for length, items in values.items()}

    def random(length: int) -> bytes:
        return queues[length].pop(0)

    return random


def scripted_keys(privates: list[str]) -> Callable[[int], KeyExchange]:
    queue = [bytes.fromhex(p) for p in privates]

    def make(group: int) -> KeyExchange:
        return key_exchange(group, queue.pop(0))

    return make


def ike_keys_of(session: IkeSession) -> dict[str, str]:
    keys = session.sa.keys
    assert keys is not None
    names = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")
    # The vector names them SK_d, SK_ai, ... (RFC 7296 §2.14).
    return {"SK_" + name[3:]: getattr(keys, name).hex() for name in names}


def mark_mobike(session: IkeSession) -> None:
    """What N(MOBIKE_SUPPORTED) in both IKE_AUTH messages would have recorded (see above)."""
    session.sa.local_mobike_supported = session.sa.peer_mobike_supported = True


def vector_responder() -> IkeEndpoint:
    peer = PeerConfig(
        local_id=Identity.parse("gateway.example"),
        remote_id=Identity.parse("client.example"),
        psk=AUTH["psk_ascii"].encode(),
        ike_proposals=parse_proposals("aes256gcm16-prfsha256-ecp256"),
        esp_proposals=parse_proposals("aes256gcm16-esn", ProtocolId.ESP),
        clone=True,
        mobike=False,
        # The vector's MOBIKE step ends with the response: no return routability check
        # (RFC 4555 §3.7) follows it there (that check is tested in test_mobike.py).
        return_routability_check=False,
    )
    random = scripted(
        {
            32: ["00" * 32, INIT["nr"], CLONE["nr"], CHILD["nr"]],  # cookie secret first
            8: [INIT["spi_r"], CLONE["new_spi_r"]],
            4: [AUTH["esp_spi_r"], CHILD["esp_spi_r"]],
        }
    )
    keys = scripted_keys([INIT["dh_private_r"], CLONE["dh_private_r"]])
    return IkeEndpoint(
        EndpointConfig(peers=(peer,), ike_proposals=peer.ike_proposals),
        random=random,
        key_exchange=keys,
    )


def vector_initiator() -> tuple[IkeEndpoint, PeerConfig]:
    peer = PeerConfig(
        local_id=Identity.parse("client.example"),
        remote_id=Identity.parse("gateway.example"),
        psk=AUTH["psk_ascii"].encode(),
        remote_address=GATEWAY,
        local_address=CLIENT,
        ike_proposals=parse_proposals("aes256gcm16-prfsha256-ecp256"),
        esp_proposals=parse_proposals("aes256gcm16-esn", ProtocolId.ESP),
        local_ts=(TrafficSelector("10.1.0.2", "10.1.0.2"),),
        clone=True,
        mobike=False,
    )
    random = scripted(
        {
            32: ["00" * 32, INIT["ni"], CLONE["ni"], CHILD["ni"]],
            16: [MOBIKE["cookie2"]],
            8: [INIT["spi_i"], CLONE["new_spi_i"]],
            4: [AUTH["esp_spi_i"], CHILD["esp_spi_i"]],
        }
    )
    keys = scripted_keys([INIT["dh_private_i"], CLONE["dh_private_i"]])
    endpoint = IkeEndpoint(
        EndpointConfig(peers=(peer,), nat_detection=False, fragmentation=False),
        random=random,
        key_exchange=keys,
    )
    return endpoint, peer


def answer(
    endpoint: IkeEndpoint, hex_message: str, src: tuple[str, int], dst: tuple[str, int]
) -> Datagram:
    """Feed one message; the one datagram sent in reply."""
    endpoint.receive_datagram(bytes.fromhex(hex_message), src, dst, 0.0)
    (reply,) = endpoint.datagrams_to_send(0.0)
    return reply


def test_responder_reproduces_the_clone_child_and_mobike_responses() -> None:
    responder = vector_responder()
    # message1 -->  <-- message2 ; message3 -->  <-- message4  (the engine vector test's part)
    assert answer(responder, INIT["message1"], CLIENT, GATEWAY).data.hex() == INIT["message2"]
    assert answer(responder, AUTH["message3"], CLIENT, GATEWAY).data.hex() == AUTH["message4"]
    (old,) = responder.sessions
    mark_mobike(old)
    drain(responder)
    # HDR(old, #2), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->
    #                                   <--  HDR(old, #2), SK {SA, Nr, KEr}
    reply = answer(responder, CLONE["request"], CLIENT, GATEWAY)
    assert reply.data.hex() == CLONE["response"]
    (cloned,) = of_type(drain(responder), IkeSaCloned)
    assert isinstance(cloned, IkeSaCloned) and cloned.parent is old
    clone = cloned.clone
    assert clone.sa.spi_i.hex() == CLONE["new_spi_i"]
    assert clone.sa.spi_r.hex() == CLONE["new_spi_r"]
    assert ike_keys_of(clone) == dict(CLONE["keys"])
    assert not clone.sa.initiator and clone.sa.parent == old.sa.spis
    # The old SA: same state, its Child SA, its next peer message ID 3 (vector note).
    assert old.state == IkeState.ESTABLISHED and len(old.child_sas) == 1
    assert old.sa.next_peer_request_id == 3 and clone.sa.next_peer_request_id == 0
    # HDR(new, #0), SK(new) {SA, Ni, TSi, TSr}  -->  <--  HDR(new, #0), SK(new) {SA, Nr, TSi, TSr}
    reply = answer(responder, CHILD["request"], CLIENT, GATEWAY)
    assert reply.data.hex() == CHILD["response"]
    (child,) = clone.child_sas
    assert child.spi_in.hex() == CHILD["esp_spi_r"] and child.spi_out.hex() == CHILD["esp_spi_i"]
    assert child.key_in.hex() == CHILD["keys_no_pfs"]["i_to_r"]
    assert child.key_out.hex() == CHILD["keys_no_pfs"]["r_to_i"]
    assert len(old.child_sas) == 1  # the old SA's Child SA did not move
    # (198.51.100.7:4500 -> 203.0.113.9:4500)
    # HDR(new, #1), SK(new) {N(UPDATE_SA_ADDRESSES), N(NAT_D_SRC), N(NAT_D_DST), N(COOKIE2)} -->
    #                       <--  HDR(new, #1), SK(new) {N(NAT_D_SRC), N(NAT_D_DST), N(COOKIE2)}
    request = MOBIKE["request_udp4500_payload"]
    assert request == MARKER.hex() + MOBIKE["request"]
    reply = answer(responder, request, MOVED_CLIENT, GATEWAY_NAT_T)
    assert reply.data == MARKER + bytes.fromhex(MOBIKE["response"])
    assert reply.dst == MOVED_CLIENT and reply.src == GATEWAY_NAT_T
    assert clone.sa.remote_address == MOVED_CLIENT and clone.sa.local_address == GATEWAY_NAT_T
    assert not clone.sa.remote_behind_nat and not clone.sa.local_behind_nat
    assert old.sa.remote_address == CLIENT  # the old SA stays where it was
    (moved,) = of_type(drain(responder), IkeSaMoved)
    assert isinstance(moved, IkeSaMoved) and moved.session is clone


def test_initiator_reproduces_the_clone_child_and_mobike_requests() -> None:
    initiator, peer = vector_initiator()
    # message1 -->
    session = initiator.initiate(peer, 0.0)
    (request,) = initiator.datagrams_to_send(0.0)
    assert request.data.hex() == INIT["message1"]
    # <-- message2 ; message3 -->
    assert answer(initiator, INIT["message2"], GATEWAY, CLIENT).data.hex() == AUTH["message3"]
    # <-- message4
    initiator.receive_datagram(bytes.fromhex(AUTH["message4"]), GATEWAY, CLIENT, 0.0)
    assert session.state == IkeState.ESTABLISHED and session.sa.clone_negotiated
    mark_mobike(session)
    drain(initiator)
    # HDR(old, #2), SK {N(CLONE_IKE_SA), SA, Ni, KEi}  -->
    session.request_clone(0.0)
    (request,) = initiator.datagrams_to_send(0.0)
    assert request.data.hex() == CLONE["request"]
    #                                   <--  HDR(old, #2), SK {SA, Nr, KEr}
    initiator.receive_datagram(bytes.fromhex(CLONE["response"]), GATEWAY, CLIENT, 0.0)
    (cloned,) = of_type(drain(initiator), IkeSaCloned)
    assert isinstance(cloned, IkeSaCloned) and cloned.parent is session
    clone = cloned.clone
    assert (clone.sa.spi_i.hex(), clone.sa.spi_r.hex()) == (
        CLONE["new_spi_i"],
        CLONE["new_spi_r"],
    )
    assert ike_keys_of(clone) == dict(CLONE["keys"])
    assert clone.sa.initiator and clone.sa.next_request_id == 0
    assert session.sa.next_request_id == 3  # the old SA's counter goes on (vector note)
    # HDR(new, #0), SK(new) {SA, Ni, TSi, TSr}  -->
    clone.create_child_sa(0.0)
    (request,) = initiator.datagrams_to_send(0.0)
    assert request.data.hex() == CHILD["request"]
    #                             <--  HDR(new, #0), SK(new) {SA, Nr, TSi, TSr}
    initiator.receive_datagram(bytes.fromhex(CHILD["response"]), GATEWAY, CLIENT, 0.0)
    (made,) = of_type(drain(initiator), ChildSaEstablished)
    assert isinstance(made, ChildSaEstablished) and made.session is clone
    assert made.child.key_out.hex() == CHILD["keys_no_pfs"]["i_to_r"]
    # (198.51.100.7:4500 -> 203.0.113.9:4500)
    # HDR(new, #1), SK(new) {N(UPDATE_SA_ADDRESSES), N(NAT_D_SRC), N(NAT_D_DST), N(COOKIE2)} -->
    clone.update_addresses(MOVED_CLIENT, 0.0)
    (request,) = initiator.datagrams_to_send(0.0)
    assert request.data.hex() == MOBIKE["request_udp4500_payload"]
    assert request.src == MOVED_CLIENT and request.dst == GATEWAY_NAT_T
    #       <--  HDR(new, #1), SK(new) {N(NAT_D_SRC), N(NAT_D_DST), N(COOKIE2)}
    response = MARKER + bytes.fromhex(MOBIKE["response"])
    initiator.receive_datagram(response, GATEWAY_NAT_T, MOVED_CLIENT, 0.0)
    (moved,) = of_type(drain(initiator), IkeSaMoved)
    assert isinstance(moved, IkeSaMoved) and moved.local == MOVED_CLIENT
    assert moved.remote == GATEWAY_NAT_T and clone.state == IkeState.ESTABLISHED
    assert session.sa.local_address == CLIENT  # the old SA did not move


def test_without_mobike_the_update_is_ignored() -> None:
    """The vector as it stands (no MOBIKE_SUPPORTED): the request is answered, but as an
    INFORMATIONAL with unknown status notifies (RFC 7296 §3.10.1): nothing moves."""
    responder = vector_responder()
    answer(responder, INIT["message1"], CLIENT, GATEWAY)
    answer(responder, AUTH["message3"], CLIENT, GATEWAY)
    answer(responder, CLONE["request"], CLIENT, GATEWAY)
    answer(responder, CHILD["request"], CLIENT, GATEWAY)
    clone = next(s for s in responder.sessions if s.sa.parent is not None)
    reply = answer(responder, MOBIKE["request_udp4500_payload"], MOVED_CLIENT, GATEWAY_NAT_T)
    assert reply.data != MARKER + bytes.fromhex(MOBIKE["response"])
    assert clone.sa.remote_address == CLIENT
    assert not of_type(drain(responder), IkeSaMoved)
