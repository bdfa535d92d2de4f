"""Two (or more) sans-IO endpoints wired together in memory, for the scenario tests.

`Network.run` carries every queued datagram to the endpoint that owns its destination host
until nothing is left to send; a ``tamper`` hook can drop, duplicate or change datagrams on
the way. Every delivered datagram is logged with the IKE exchange it carried.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ikecore.config import EndpointConfig, Identity, PeerConfig
from ikecore.constants import ExchangeType, ProtocolId
from ikecore.endpoint import Datagram, IkeEndpoint
from ikecore.events import Event
from ikecore.suites import parse_proposals

INITIATOR_HOST = "192.0.2.1"
RESPONDER_HOST = "198.51.100.1"
PSK = b"ikecore-test-psk-not-secret-0123456789"

Tamper = Callable[[Datagram], list[Datagram]]


@dataclass(frozen=True)
class Delivery:
    """One datagram as it crossed the wire: exchange, response flag, message ID."""

    exchange: int | None
    response: bool
    message_id: int
    datagram: Datagram

    def __str__(self) -> str:
        name = ExchangeType(self.exchange).name if self.exchange else "ESP/other"
        arrow = "<--" if self.response else "-->"
        return f"{name} {arrow} #{self.message_id}"


def describe(datagram: Datagram) -> Delivery:
    data = datagram.data
    if data[:4] == bytes(4):
        data = data[4:]
    if len(data) < 28:
        return Delivery(None, False, 0, datagram)
    exchange, flags, message_id = struct.unpack_from("!BBI", data, 18)
    return Delivery(exchange, bool(flags & 0x20), message_id, datagram)


@dataclass
class Network:
    hosts: dict[str, IkeEndpoint]
    log: list[Delivery] = field(default_factory=list)

    def run(self, now: float, tamper: Tamper | None = None, limit: int = 100) -> list[Delivery]:
        """Deliver until quiet; returns what was delivered in this call."""
        delivered: list[Delivery] = []
        for _ in range(limit):
            pending = [d for ep in self.hosts.values() for d in ep.datagrams_to_send(now)]
            if not pending:
                return delivered
            for datagram in pending:
                for copy in tamper(datagram) if tamper else [datagram]:
                    target = self.hosts.get(copy.dst[0])
                    if target is None:
                        continue
                    entry = describe(copy)
                    delivered.append(entry)
                    self.log.append(entry)
                    target.receive_datagram(copy.data, copy.src, copy.dst, now)
        raise AssertionError("the endpoints never went quiet")

    def capture(self, now: float) -> list[Datagram]:
        """Take the queued datagrams without delivering them."""
        return [d for ep in self.hosts.values() for d in ep.datagrams_to_send(now)]

    def deliver(self, datagrams: list[Datagram], now: float) -> None:
        for datagram in datagrams:
            self.log.append(describe(datagram))
            self.hosts[datagram.dst[0]].receive_datagram(
                datagram.data, datagram.src, datagram.dst, now
            )


def drain(endpoint: IkeEndpoint) -> list[Event]:
    events: list[Event] = []
    while (event := endpoint.next_event()) is not None:
        events.append(event)
    return events


def of_type(events: list[Event], kind: type) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


def counter_random(seed: int) -> Callable[[int], bytes]:
    """Deterministic, distinct bytes for SPIs and nonces (never zero, never reserved)."""
    counter: Iterator[int] = itertools.count(1)

    def random(length: int) -> bytes:
        value = (seed << 40) | next(counter) << 8 | 0x5A
        return value.to_bytes(max(length, 8), "big")[-length:]

    return random


def peer_configs(
    ike: str = "aes256gcm16-prfsha256-x25519",
    esp: str = "aes256gcm16",
    *,
    initiator_ike: str | None = None,
    responder_ike: str | None = None,
    initiator_esp: str | None = None,
    responder_esp: str | None = None,
    responder_psk: bytes = PSK,
    clone: bool = True,
    mobike: bool = True,
) -> tuple[PeerConfig, PeerConfig]:
    initiator = PeerConfig(
        local_id=Identity.parse("client.example"),
        remote_id=Identity.parse("gateway.example"),
        psk=PSK,
        remote_address=(RESPONDER_HOST, 500),
        local_address=(INITIATOR_HOST, 500),
        ike_proposals=parse_proposals(initiator_ike or ike),
        esp_proposals=parse_proposals(initiator_esp or esp, ProtocolId.ESP),
        clone=clone,
        mobike=mobike,
        name="to-gateway",
    )
    responder = PeerConfig(
        local_id=Identity.parse("gateway.example"),
        remote_id=Identity.parse("client.example"),
        psk=responder_psk,
        ike_proposals=parse_proposals(responder_ike or ike),
        esp_proposals=parse_proposals(responder_esp or esp, ProtocolId.ESP),
        clone=clone,
        mobike=mobike,
        name="client",
    )
    return initiator, responder


def pair(
    ike: str = "aes256gcm16-prfsha256-x25519",
    esp: str = "aes256gcm16",
    *,
    endpoint_options: dict[str, object] | None = None,
    **options: object,
) -> tuple[IkeEndpoint, IkeEndpoint, PeerConfig, Network]:
    """An initiator and a responder endpoint with matching configuration."""
    initiator_peer, responder_peer = peer_configs(ike, esp, **options)  # type: ignore[arg-type]
    initiator, responder, network = pair_from(
        initiator_peer,
        responder_peer,
        initiator_options=endpoint_options,
        responder_options=endpoint_options,
    )
    return initiator, responder, initiator_peer, network


def pair_from(
    client: PeerConfig,
    gateway: PeerConfig,
    *,
    initiator_options: dict[str, object] | None = None,
    responder_options: dict[str, object] | None = None,
) -> tuple[IkeEndpoint, IkeEndpoint, Network]:
    """Endpoints for these peer configurations (each with its own EndpointConfig options)."""
    initiator = IkeEndpoint(
        EndpointConfig(peers=(client,), **(initiator_options or {})),  # type: ignore[arg-type]
        random=counter_random(1),
    )
    responder = IkeEndpoint(
        EndpointConfig(
            peers=(gateway,),
            ike_proposals=gateway.ike_proposals,
            **(responder_options or {}),  # type: ignore[arg-type]
        ),
        random=counter_random(2),
    )
    network = Network({INITIATOR_HOST: initiator, RESPONDER_HOST: responder})
    return initiator, responder, network
