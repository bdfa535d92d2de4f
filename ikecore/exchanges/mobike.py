"""MOBIKE (RFC 4555): moving an IKE SA and its Child SAs to other addresses.

    (from the new address)
    HDR, SK {N(UPDATE_SA_ADDRESSES), N(NAT_DETECTION_SOURCE_IP),
             N(NAT_DETECTION_DESTINATION_IP), N(COOKIE2)}        -->
                 <--  HDR, SK {N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP),
                               N(COOKIE2)}

    HDR, SK {N(ADDITIONAL_IP4_ADDRESS)+ | N(NO_ADDITIONAL_ADDRESSES), N(COOKIE2)}  -->
                 <--  HDR, SK {N(COOKIE2)}

Used by RFC 7791 to move a clone to another interface (App. A.4): the NAT_DETECTION hashes
are computed with the SPIs of the SA the message belongs to (RFC 4555 §3.8), so with a clone's
own SPIs, and only the Child SAs of the moved SA follow it (the old SA keeps its addresses).
Only SAs on which both peers sent MOBIKE_SUPPORTED move. The responder takes the new
addresses from the IP header (§3.5); COOKIE2 is copied into every INFORMATIONAL response and
a response whose COOKIE2 differs closes the IKE SA (§3.7). Which end may send
UPDATE_SA_ADDRESSES is discussed in docs/CLONE.md.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ikecore.config import Address
from ikecore.constants import ExchangeType, NotifyType
from ikecore.errors import LocalProtocolError
from ikecore.events import IkeSaMoved, IkeSaMoveFailed, PeerAddressesChanged
from ikecore.exchanges.base import (
    detect_nat,
    error_notify,
    find_notify,
    nat_detection_payloads,
    notifies,
)
from ikecore.states import IkeState, IkeTrigger
from ikecore.wire import IkeMessage, Notify, Payload

if TYPE_CHECKING:
    from ikecore.session import IkeSession

__all__ = [
    "COOKIE2_LENGTH",
    "AnnounceAddressesInitiator",
    "MobikeState",
    "UpdateAddressesInitiator",
    "mobike_response",
    "start_announcement",
    "start_update",
]

COOKIE2_LENGTH = 16  # RFC 4555 §4.2.5: 8..64 bytes, unpredictable

_ADDRESS_NOTIFIES = (
    NotifyType.ADDITIONAL_IP4_ADDRESS,
    NotifyType.ADDITIONAL_IP6_ADDRESS,
    NotifyType.NO_ADDITIONAL_ADDRESSES,
)


@dataclass
class MobikeState:
    """Per session, in memory: the update in flight (the newest wins, §3.5), the highest
    message ID of an UPDATE_SA_ADDRESSES we acted on (older ones are answered but ignored),
    and the peer's announced address set (§3.6)."""

    pending_update: UpdateAddressesInitiator | None = None
    last_update_id: int = -1
    peer_addresses: tuple[str, ...] = field(default_factory=tuple)


def _require_mobike(session: IkeSession) -> None:
    sa = session.sa
    if sa.state != IkeState.ESTABLISHED:
        raise LocalProtocolError(f"IKE SA is {sa.state.value}, not ESTABLISHED")
    if not (sa.local_mobike_supported and sa.peer_mobike_supported):
        raise LocalProtocolError("MOBIKE was not negotiated on this IKE SA (RFC 4555 §3.2)")


def _checked_address(name: str, address: object) -> Address:
    """A caller's (host, port): TypeError/ValueError naming what is wrong."""
    if not (isinstance(address, tuple) and len(address) == 2):
        raise TypeError(f"{name} must be a (host, port) tuple, not {address!r}")
    host, port = address
    if not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"{name} must be (str, int), not {address!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{name}: {host!r} is not an IP address") from None
    if not 0 < port < 65536:
        raise ValueError(f"{name}: port {port} outside 1..65535")
    return (host, port)


def start_update(session: IkeSession, local: Address, remote: Address | None, now: float) -> None:
    """`IkeSession.update_addresses`: §3.5's initiator steps, in order."""
    local = _checked_address("local", local)
    if remote is not None:
        remote = _checked_address("remote", remote)
    _require_mobike(session)
    sa = session.sa
    # §3.3: with MOBIKE and NAT-T both ends use the NAT-T port.
    remote = remote or (sa.remote_address[0], session.endpoint.config.nat_port)
    task = UpdateAddressesInitiator(previous=(sa.local_address, sa.remote_address))
    # The IKE SA (and so its Child SAs and any request being retransmitted) uses the new
    # addresses at once; UPDATE_SA_ADDRESSES goes when the window allows.
    sa.local_address, sa.remote_address = local, remote
    session.mobike.pending_update = task
    session.save()
    session.start(task, now)


def start_announcement(session: IkeSession, additional: Sequence[str], now: float) -> None:
    """`IkeSession.announce_addresses`."""
    _require_mobike(session)
    parsed = []
    for text in additional:
        try:
            parsed.append(ipaddress.ip_address(text))
        except ValueError:
            raise ValueError(f"not an IP address: {text!r}") from None
    session.start(AnnounceAddressesInitiator(tuple(parsed)), now)


def _cookie_matches(sent: bytes, payloads: list[Payload]) -> bool:
    echoed = find_notify(payloads, NotifyType.COOKIE2)
    return echoed is not None and hmac.compare_digest(echoed.data, sent)


def _close_for_cookie(session: IkeSession, now: float) -> None:
    """§3.7: "If the values do not match, the IKE_SA MUST be closed"."""
    from ikecore.exchanges.informational import DeleteIkeInitiator

    if session.state == IkeState.DELETING:
        return
    session.transition(IkeTrigger.DELETE_STARTED)
    session.start(DeleteIkeInitiator("cookie2_mismatch"), now, first=True)


class UpdateAddressesInitiator:
    """INFORMATIONAL {N(UPDATE_SA_ADDRESSES), N(NAT_DETECTION_*), N(COOKIE2)} (§3.5)."""

    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self, previous: tuple[Address, Address]) -> None:
        self._previous = previous
        self._cookie2 = b""

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        if session.mobike.pending_update is not self:
            # A newer update was asked for before this one went out: it says it all (§3.5).
            raise LocalProtocolError("superseded by a newer address update")
        sa = session.sa
        self._cookie2 = session.endpoint.random(COOKIE2_LENGTH)
        return [
            Notify.status(NotifyType.UPDATE_SA_ADDRESSES),
            *nat_detection_payloads(sa.spi_i, sa.spi_r, sa.local_address, sa.remote_address),
            Notify.status(NotifyType.COOKIE2, self._cookie2),
        ]

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> None:
        if not _cookie_matches(self._cookie2, payloads):
            _close_for_cookie(session, now)
            return
        if session.mobike.pending_update is not self:
            return  # §3.5: an address change after this request was sent; a newer one runs
        session.mobike.pending_update = None
        sa = session.sa
        error = error_notify(payloads)
        if error is not None:
            # §3.5: UNACCEPTABLE_ADDRESSES (or any refusal): keep using the previous addresses.
            sa.local_address, sa.remote_address = self._previous
            session.save()
            session.emit(IkeSaMoveFailed(session, error.notify_type))
            return
        detected = detect_nat(payloads, sa.spi_i, sa.spi_r, sa.local_address, sa.remote_address)
        if detected is not None:
            # §3.5: "enables or disables NAT Traversal" from the response's NAT detection.
            sa.local_behind_nat, sa.remote_behind_nat = detected
        session.save()
        session.emit(IkeSaMoved(session, sa.local_address, sa.remote_address))

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        if session.mobike.pending_update is self:
            session.mobike.pending_update = None


class AnnounceAddressesInitiator:
    """INFORMATIONAL {N(ADDITIONAL_IP4/6_ADDRESS)+ | N(NO_ADDITIONAL_ADDRESSES), N(COOKIE2)}
    (§3.6): the complete list of our other addresses, replacing what the peer knew."""

    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self, additional: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]):
        self._additional = additional
        self._cookie2 = b""

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        self._cookie2 = session.endpoint.random(COOKIE2_LENGTH)
        addresses: list[Payload] = [Notify.additional_address(a) for a in self._additional]
        if not addresses:
            addresses = [Notify.status(NotifyType.NO_ADDITIONAL_ADDRESSES)]
        return [*addresses, Notify.status(NotifyType.COOKIE2, self._cookie2)]

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> None:
        if not _cookie_matches(self._cookie2, payloads):
            _close_for_cookie(session, now)

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        """Nothing to undo: the peer keeps the address set it knew."""


def mobike_response(
    session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
) -> list[Payload]:
    """The MOBIKE part of our answer to any INFORMATIONAL request, and its effects.

    Without MOBIKE negotiated these notifies are unknown status types and are ignored
    (RFC 7296 §3.10.1): nothing moves and nothing is added to the response.
    """
    sa = session.sa
    path = session.request_path
    if not (sa.local_mobike_supported and sa.peer_mobike_supported) or path is None:
        return []
    src, dst = path
    received = notifies(payloads)
    kinds = {n.notify_type for n in received}
    newest = message.message_id > session.mobike.last_update_id
    if NotifyType.UPDATE_SA_ADDRESSES in kinds and newest:
        # §3.5: act only on the newest update (out-of-order requests are just answered).
        session.mobike.last_update_id = message.message_id
        before = (sa.local_address, sa.remote_address)
        # "Updates the IP addresses in the IKE_SA with the values from the IP header".
        sa.local_address, sa.remote_address = dst, src
        detected = detect_nat(payloads, sa.spi_i, sa.spi_r, dst, src)
        if detected is not None:
            sa.local_behind_nat, sa.remote_behind_nat = detected
        if (sa.local_address, sa.remote_address) != before:
            session.emit(IkeSaMoved(session, sa.local_address, sa.remote_address))
    if kinds & set(_ADDRESS_NOTIFIES):
        # §3.6: the new list replaces the old one; the IP header's source comes first.
        additional = tuple(str(n.value) for n in received if n.notify_type in _ADDRESS_NOTIFIES[:2])
        session.mobike.peer_addresses = (src[0], *additional)
        session.emit(PeerAddressesChanged(session, session.mobike.peer_addresses))
    answer: list[Payload] = []
    if NotifyType.NAT_DETECTION_SOURCE_IP in kinds:
        # §3.8: NAT detection in a request is answered with ours (our address first).
        answer += nat_detection_payloads(sa.spi_i, sa.spi_r, dst, src)
    cookie2 = find_notify(received, NotifyType.COOKIE2)
    if cookie2 is not None:
        # §3.7: copied as-is.
        answer.append(Notify.status(NotifyType.COOKIE2, cookie2.data))
    return answer
