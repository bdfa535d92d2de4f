"""What the handshake and clone benches share: two endpoints wired together in memory, and the
key exchange work a handshake or a clone cannot avoid, measured on `cryptography` directly.

``dh_work(group)`` is the "dh-limit" of both benches: two key pairs, each public value
serialized as the KE payload carries it, each peer value parsed with the checks RFC 6989
requires (``from_encoded_point`` refuses points off the curve; X25519 refuses an all-zero
result), and two shared secrets. It calls `cryptography` itself, with the cheapest calls that
do this work, so ikecore's own DH wrapper (`ikecore.dh`) is part of what the "ikecore" side is
timed for, never of the limit it is compared with.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ikecore.config import EndpointConfig, Identity, PeerConfig
from ikecore.constants import ProtocolId
from ikecore.endpoint import IkeEndpoint
from ikecore.events import Event
from ikecore.suites import parse_proposals

PSK = b"ikecore-bench-psk-0123456789abcdef"
CLIENT, GATEWAY = ("192.0.2.1", 500), ("198.51.100.1", 500)
# bench name -> (IKE proposal, its key exchange group)
GROUPS = {
    "x25519": ("aes256gcm16-prfsha256-x25519", 31),
    "ecp256": ("aes256gcm16-prfsha256-ecp256", 19),
}


def endpoint_pair(ike: str) -> tuple[IkeEndpoint, IkeEndpoint, PeerConfig]:
    """(initiator, responder, the initiator's peer configuration) for one IKE proposal."""
    proposals = parse_proposals(ike)
    esp = parse_proposals("aes256gcm16", ProtocolId.ESP)
    client = PeerConfig(
        local_id=Identity.parse("client.example"),
        remote_id=Identity.parse("gateway.example"),
        psk=PSK,
        remote_address=GATEWAY,
        local_address=CLIENT,
        ike_proposals=proposals,
        esp_proposals=esp,
    )
    gateway = PeerConfig(
        local_id=Identity.parse("gateway.example"),
        remote_id=Identity.parse("client.example"),
        psk=PSK,
        ike_proposals=proposals,
        esp_proposals=esp,
    )
    initiator = IkeEndpoint(EndpointConfig(peers=(client,)))
    responder = IkeEndpoint(EndpointConfig(peers=(gateway,), ike_proposals=proposals))
    return initiator, responder, client


def deliver(initiator: IkeEndpoint, responder: IkeEndpoint) -> None:
    """Carry datagrams between the two endpoints until neither has anything to send."""
    by_host = {CLIENT[0]: initiator, GATEWAY[0]: responder}
    pending = initiator.datagrams_to_send(0.0) + responder.datagrams_to_send(0.0)
    while pending:
        for datagram in pending:
            by_host[datagram.dst[0]].receive_datagram(
                datagram.data, datagram.src, datagram.dst, 0.0
            )
        pending = initiator.datagrams_to_send(0.0) + responder.datagrams_to_send(0.0)


def _x25519_side() -> tuple[x25519.X25519PrivateKey, bytes]:
    key = x25519.X25519PrivateKey.generate()
    return key, key.public_key().public_bytes_raw()


def _x25519_work() -> None:
    ours, our_public = _x25519_side()
    theirs, their_public = _x25519_side()
    secret = ours.exchange(x25519.X25519PublicKey.from_public_bytes(their_public))
    assert secret == theirs.exchange(x25519.X25519PublicKey.from_public_bytes(our_public))


def _ecp_work(curve: ec.EllipticCurve) -> Callable[[], None]:
    ecdh = ec.ECDH()

    def side() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        key = ec.generate_private_key(curve)
        # the KE payload's x | y (RFC 5903 §7): the uncompressed point without its 0x04
        return key, key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def work() -> None:
        ours, our_point = side()
        theirs, their_point = side()
        peer_of_ours = ec.EllipticCurvePublicKey.from_encoded_point(curve, their_point)
        peer_of_theirs = ec.EllipticCurvePublicKey.from_encoded_point(curve, our_point)
        assert ours.exchange(ecdh, peer_of_ours) == theirs.exchange(ecdh, peer_of_theirs)

    return work


def dh_work(group: int) -> Callable[[], None]:
    """One round of the key exchange work of a handshake or a clone in ``group``."""
    if group == 31:
        return _x25519_work
    if group == 19:
        return _ecp_work(ec.SECP256R1())
    raise ValueError(f"no dh-limit for group {group}")


def count_events(kind: type[Event], *endpoints: IkeEndpoint) -> int:
    """Drain the endpoints' events; how many were of ``kind``."""
    count = 0
    for endpoint in endpoints:
        while (event := endpoint.next_event()) is not None:
            count += isinstance(event, kind)
    return count
