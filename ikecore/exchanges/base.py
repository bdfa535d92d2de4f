"""What every exchange shares: the two task interfaces and the common payload steps.

strongSwan's habit (STYLE.md §5): one class per exchange, its role fixed at construction.
An initiator task builds the request and processes the response; a responder task processes
the request and returns the response payloads. Tasks never touch the network, the clock or
message IDs: the session does (RFC 7296 §2.1-2.3), so retransmission and the response cache
work the same for every exchange.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ikecore._fast.prf import nat_detection_hash as _nat_detection_hash
from ikecore.cache import BoundedCache, IdentityCache
from ikecore.config import TrafficSelector
from ikecore.constants import ExchangeType, NotifyType, ProtocolId
from ikecore.errors import RemoteProtocolError
from ikecore.suites import EspTransforms, IkeTransforms, ProposalSpec
from ikecore.wire import (
    IkeMessage,
    Notify,
    Payload,
    Proposal,
    SecurityAssociation,
    TSi,
    TSr,
    negotiated_wire_transforms,
    sa_payload,
    selectors_to_wire,
    status_notify,
    wire_transforms,
)
from ikecore.wire import proposal as new_proposal  # `proposal` names a received one below

if TYPE_CHECKING:
    from ikecore.session import IkeSession

__all__ = [
    "NONCE_LENGTH",
    "InitiatorTask",
    "ResponderTask",
    "Retry",
    "find_notify",
    "first_of",
    "narrow",
    "notifies",
    "offer",
    "payload_kinds",
    "require",
    "require_kind",
]

P = TypeVar("P")

NONCE_LENGTH = 32  # RFC 7296 §2.10: at least half the PRF key size, 16..256 bytes


@dataclass(frozen=True, slots=True)
class Retry:
    """An initiator task asks to send a changed request with the same message ID
    (IKE_SA_INIT after COOKIE or INVALID_KE_PAYLOAD, RFC 7296 §2.6, §1.2)."""

    payloads: list[Payload]


class NotifyError(RemoteProtocolError):
    """A refusal answered with an error notify that carries data (INVALID_KE_PAYLOAD's group)."""

    def __init__(self, message: str, notify_type: int, data: bytes = b"") -> None:
        super().__init__(message, notify_type)
        self.data = data


class DropMessage(Exception):
    """Not an answerable request: drop it silently, nothing changes (e.g. RFC 6989 §2.5 in
    IKE_SA_INIT, a bad COOKIE)."""


class InitiatorTask(Protocol):
    exchange_type: ExchangeType

    def build_request(self, session: IkeSession, now: float) -> list[Payload]: ...

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> Retry | None: ...

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        """The request was never answered (retransmissions exhausted) or the SA went away."""
        ...


class ResponderTask(Protocol):
    def process_request(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> list[Payload]:
        """The response payloads; RemoteProtocolError becomes an error notify response."""
        ...


def notifies(payloads: Sequence[Payload]) -> list[Notify]:
    return [p for p in payloads if isinstance(p, Notify)]


def find_notify(payloads: Sequence[Payload], notify_type: int) -> Notify | None:
    for payload in payloads:
        if isinstance(payload, Notify) and payload.notify_type == notify_type:
            return payload
    return None


def first_of(payloads: Sequence[Payload], kind: type[P]) -> P | None:
    for payload in payloads:
        if isinstance(payload, kind):
            return payload
    return None


def require(payloads: Sequence[Payload], kind: type[P]) -> P:
    """The payload the exchange cannot do without; INVALID_SYNTAX when it is missing."""
    for payload in payloads:
        if isinstance(payload, kind):
            return payload
    raise RemoteProtocolError(f"missing {kind.__name__} payload", NotifyType.INVALID_SYNTAX)


PayloadKinds = dict[type, Any]
"""The first payload of each class of a message, by class (see `payload_kinds`): each value
is an instance of its key, which a dict's type cannot say (so no typing.cast per lookup)."""


def payload_kinds(payloads: Sequence[Payload]) -> PayloadKinds:
    """The first payload of each class, from one walk: an exchange that asks for several
    (IKE_AUTH: ID, AUTH, SA, TSi, TSr) then looks each up instead of walking again."""
    return {type(payload): payload for payload in reversed(payloads)}


def require_kind(kinds: PayloadKinds, kind: type[P]) -> P:
    """`require` on a message's `payload_kinds`."""
    payload: P | None = kinds.get(kind)
    if payload is None:
        raise RemoteProtocolError(f"missing {kind.__name__} payload", NotifyType.INVALID_SYNTAX)
    return payload


def error_notify(payloads: Sequence[Payload]) -> Notify | None:
    """The first error notify (type < 16384, RFC 7296 §3.10.1) of a response."""
    for payload in payloads:
        if isinstance(payload, Notify) and payload.notify_type < 16384:
            return payload
    return None


def _offer(specs: Sequence[ProposalSpec], spi: bytes = b"") -> SecurityAssociation:
    return sa_payload(
        tuple(
            [
                new_proposal(number, spec.protocol, spi, wire_transforms(spec.transforms))
                for number, spec in enumerate(specs, start=1)
            ]
        )
    )


# IKE_SA_INIT's offer (no SPI) per configured proposal tuple: payloads are immutable and a
# configuration offers the same proposals in every handshake.
_offer_without_spi = IdentityCache(_offer)


def offer(specs: Sequence[ProposalSpec], spi: bytes = b"") -> SecurityAssociation:
    """An SA payload offering our configured proposals, numbered from 1 (RFC 7296 §3.3.1)."""
    if not spi and isinstance(specs, tuple):
        return _offer_without_spi(specs)
    return _offer(specs, spi)


def answer(
    proposal: Proposal, negotiated: IkeTransforms | EspTransforms, spi: bytes
) -> SecurityAssociation:
    """The responder's SA payload: the accepted proposal's number, one transform per type."""
    if not spi:
        # IKE_SA_INIT's answer carries no SPI: the same payload for every peer that makes the
        # same choice (payloads are immutable; the negotiated objects are shared per choice).
        key = (proposal.number, proposal.protocol_id, id(negotiated))
        known = _answers_without_spi.get(key, negotiated)
        if known is not None:
            return known
    transforms = negotiated_wire_transforms(negotiated)
    made = sa_payload((new_proposal(proposal.number, proposal.protocol_id, spi, transforms),))
    if not spi:
        _answers_without_spi.put(key, made, negotiated)
    return made


_answers_without_spi: BoundedCache[SecurityAssociation] = BoundedCache()


def proposals_for(sa: SecurityAssociation, protocol: ProtocolId) -> list[Proposal]:
    return [p for p in sa.proposals if p.protocol_id == protocol]


def new_nonce(session: IkeSession) -> bytes:
    """Our Ni or Nr data (RFC 7296 §2.10), from the endpoint's random source."""
    return session.endpoint.random(NONCE_LENGTH)


def narrow(
    offered: Sequence[TrafficSelector], ours: Sequence[TrafficSelector]
) -> tuple[TrafficSelector, ...]:
    """RFC 7296 §2.9: the parts of the offered selectors our policy allows."""
    narrowed: list[TrafficSelector] = []
    for theirs in offered:
        for mine in ours:
            # An offer equal to our policy (the common case) is its own intersection.
            common = theirs if theirs == mine else theirs.intersect(mine)
            if common is not None and common not in narrowed:
                narrowed.append(common)
    return tuple(narrowed)


def ts_payloads(ts_i: Sequence[TrafficSelector], ts_r: Sequence[TrafficSelector]) -> list[Payload]:
    return list(_ts_payloads(tuple(ts_i), tuple(ts_r)))


# The pair is cached whole: a gateway sends the same few selector sets in every exchange, and
# payloads are immutable.
@functools.lru_cache(maxsize=256)
def _ts_payloads(
    ts_i: tuple[TrafficSelector, ...], ts_r: tuple[TrafficSelector, ...]
) -> tuple[TSi, TSr]:
    return TSi(selectors_to_wire(ts_i)), TSr(selectors_to_wire(ts_r))


@functools.lru_cache(maxsize=256)
def _packed_address(address: tuple[str, int]) -> bytes:
    """IP | Port as NAT detection hashes them (an endpoint has few addresses of its own, and
    each peer's is hashed several times per exchange)."""
    host, port = address
    packed = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    return packed + port.to_bytes(2, "big")


def nat_detection_hash(spi_i: bytes, spi_r: bytes, address: tuple[str, int]) -> bytes:
    """RFC 7296 §2.23: SHA-1(SPIi | SPIr | IP | Port) (RFC 4555 §3.8: with the SA's SPIs)."""
    return _nat_detection_hash(spi_i, spi_r, _packed_address(address))


_NAT_SOURCE = int(NotifyType.NAT_DETECTION_SOURCE_IP)
_NAT_DESTINATION = int(NotifyType.NAT_DETECTION_DESTINATION_IP)


def nat_detection_payloads(
    spi_i: bytes, spi_r: bytes, local: tuple[str, int], remote: tuple[str, int]
) -> list[Payload]:
    return [
        status_notify(_NAT_SOURCE, nat_detection_hash(spi_i, spi_r, local)),
        status_notify(_NAT_DESTINATION, nat_detection_hash(spi_i, spi_r, remote)),
    ]


def detect_nat(
    payloads: Sequence[Payload],
    spi_i: bytes,
    spi_r: bytes,
    local: tuple[str, int],
    remote: tuple[str, int],
) -> tuple[bool, bool] | None:
    """(we are behind a NAT, the peer is) from its NAT_DETECTION_* notifies; None if absent.

    The peer's SOURCE hashes name the address it sent from: none matching what we saw means
    a NAT rewrote it. Its DESTINATION hash names where it sent to: a mismatch with our own
    address means a NAT in front of us.
    """
    sources: list[bytes] = []
    destination: Notify | None = None
    for payload in payloads:  # one pass for both kinds (the first DESTINATION counts)
        if isinstance(payload, Notify):
            if payload.notify_type == _NAT_SOURCE:
                sources.append(payload.data)
            elif payload.notify_type == _NAT_DESTINATION and destination is None:
                destination = payload
    if not sources or destination is None:
        return None
    remote_behind_nat = nat_detection_hash(spi_i, spi_r, remote) not in sources
    local_behind_nat = destination.data != nat_detection_hash(spi_i, spi_r, local)
    return local_behind_nat, remote_behind_nat
