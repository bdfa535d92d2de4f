"""ikecore replays the IKE_SA_INIT / IKE_AUTH of ikev2_clone_exchange.json on both sides.

The vector's inputs (SPIs, nonces, DH private keys, ESP SPIs) go in through the endpoint's
deterministic hooks; the responder must answer with the vector's exact bytes (message2,
message4) and the initiator must send them (message1, message3), so keys, AUTH values, SK
IVs and payload order are the vector's.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

from engine_harness import drain

from ikecore import ProtocolId
from ikecore.config import EndpointConfig, Identity, PeerConfig, TrafficSelector
from ikecore.dh import KeyExchange, key_exchange
from ikecore.endpoint import IkeEndpoint
from ikecore.events import ChildSaEstablished, IkeSaEstablished
from ikecore.states import IkeState
from ikecore.suites import parse_proposals

VECTOR: dict[str, Any] = json.loads(
    (pathlib.Path(__file__).parent / "vectors" / "ikev2_clone_exchange.json").read_text()
)
CLIENT = ("10.1.0.2", 500)
GATEWAY = ("192.0.2.100", 500)


def scripted_random(values: dict[int, list[bytes]]) -> Callable[[int], bytes]:
    """Returns the scripted values for each requested length, in order."""

    def random(length: int) -> bytes:
        return values[length].pop(0)

    return random


def vector_responder() -> IkeEndpoint:
    init, auth = VECTOR["ike_sa_init"], VECTOR["ike_auth"]
    peer = PeerConfig(
        local_id=Identity.parse("gateway.example"),
        remote_id=Identity.parse("client.example"),
        psk=auth["psk_ascii"].encode(),
        ike_proposals=parse_proposals("aes256gcm16-prfsha256-ecp256"),
        esp_proposals=parse_proposals("aes256gcm16-esn", ProtocolId.ESP),
        clone=True,
        mobike=False,
    )
    random = scripted_random(
        {
            32: [bytes(32), bytes.fromhex(init["nr"])],  # cookie secret, then Nr
            8: [bytes.fromhex(init["spi_r"])],
            4: [bytes.fromhex(auth["esp_spi_r"])],
        }
    )

    def fixed_key(group: int) -> KeyExchange:
        return key_exchange(group, bytes.fromhex(init["dh_private_r"]))

    return IkeEndpoint(
        EndpointConfig(peers=(peer,), ike_proposals=peer.ike_proposals),
        random=random,
        key_exchange=fixed_key,
    )


def test_responder_reproduces_the_vector_handshake() -> None:
    init, auth = VECTOR["ike_sa_init"], VECTOR["ike_auth"]
    responder = vector_responder()
    # message1: HDR, SA, KEi, Ni  -->   <-- message2: HDR, SA, KEr, Nr
    responder.receive_datagram(bytes.fromhex(init["message1"]), CLIENT, GATEWAY, 0.0)
    (reply,) = responder.datagrams_to_send(0.0)
    assert reply.data.hex() == init["message2"]
    assert reply.dst == CLIENT and reply.src == GATEWAY
    (session,) = responder.sessions
    keys = session.sa.keys
    assert keys is not None
    for name, value in init["keys"].items():
        assert getattr(keys, name.lower()).hex() == value
    # message3: HDR, SK {IDi, AUTH, N(CLONE_IKE_SA_SUPPORTED), SA, TSi, TSr}  -->
    #   <-- message4: HDR, SK {IDr, AUTH, N(CLONE_IKE_SA_SUPPORTED), SA, TSi, TSr}
    responder.receive_datagram(bytes.fromhex(auth["message3"]), CLIENT, GATEWAY, 0.0)
    (reply,) = responder.datagrams_to_send(0.0)
    assert reply.data.hex() == auth["message4"]
    assert session.state == IkeState.ESTABLISHED
    assert session.sa.clone_negotiated and not session.sa.peer_mobike_supported
    events = drain(responder)
    assert [type(e) for e in events] == [IkeSaEstablished, ChildSaEstablished]
    child = events[1].child  # type: ignore[attr-defined]
    keys_by_direction = auth["child_sa_keys"]
    assert child.spi_out.hex() == auth["esp_spi_i"] and child.spi_in.hex() == auth["esp_spi_r"]
    assert child.key_in.hex() == keys_by_direction["i_to_r (SA with SPI chosen by responder)"]
    assert child.key_out.hex() == keys_by_direction["r_to_i (SA with SPI chosen by initiator)"]
    assert child.transforms.esn


def test_initiator_reproduces_the_vector_handshake() -> None:
    init, auth = VECTOR["ike_sa_init"], VECTOR["ike_auth"]
    peer = PeerConfig(
        local_id=Identity.parse("client.example"),
        remote_id=Identity.parse("gateway.example"),
        psk=auth["psk_ascii"].encode(),
        remote_address=GATEWAY,
        local_address=CLIENT,
        ike_proposals=parse_proposals("aes256gcm16-prfsha256-ecp256"),
        esp_proposals=parse_proposals("aes256gcm16-esn", ProtocolId.ESP),
        local_ts=(TrafficSelector("10.1.0.2", "10.1.0.2"),),
        clone=True,
        mobike=False,
    )
    random = scripted_random(
        {
            32: [bytes(32), bytes.fromhex(init["ni"])],  # cookie secret, then Ni
            8: [bytes.fromhex(init["spi_i"])],
            4: [bytes.fromhex(auth["esp_spi_i"])],
        }
    )

    def fixed_key(group: int) -> KeyExchange:
        return key_exchange(group, bytes.fromhex(init["dh_private_i"]))

    initiator = IkeEndpoint(
        # The vector's message1 has no NAT_DETECTION notifies.
        EndpointConfig(peers=(peer,), nat_detection=False, fragmentation=False),
        random=random,
        key_exchange=fixed_key,
    )
    # message1: HDR, SA, KEi, Ni  -->
    session = initiator.initiate(peer, 0.0)
    (request,) = initiator.datagrams_to_send(0.0)
    assert request.data.hex() == init["message1"]
    # <-- message2 ; message3: HDR, SK {IDi, AUTH, N(CLONE_IKE_SA_SUPPORTED), SA, TSi, TSr} -->
    initiator.receive_datagram(bytes.fromhex(init["message2"]), GATEWAY, CLIENT, 0.0)
    (request,) = initiator.datagrams_to_send(0.0)
    assert request.data.hex() == auth["message3"]
    # <-- message4
    initiator.receive_datagram(bytes.fromhex(auth["message4"]), GATEWAY, CLIENT, 0.0)
    assert session.state == IkeState.ESTABLISHED and session.sa.clone_negotiated
    events = drain(initiator)
    assert [type(e) for e in events] == [IkeSaEstablished, ChildSaEstablished]
    child = events[1].child  # type: ignore[attr-defined]
    keys_by_direction = auth["child_sa_keys"]
    assert child.key_out.hex() == keys_by_direction["i_to_r (SA with SPI chosen by responder)"]
    assert child.key_in.hex() == keys_by_direction["r_to_i (SA with SPI chosen by initiator)"]
    assert child.local_ts == (TrafficSelector("10.1.0.2", "10.1.0.2"),)
