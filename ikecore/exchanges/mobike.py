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
UPDATE_SA_ADDRESSES is discussed in docs/CLONE.md: the roles are those of the first IKE SA of a
series of rekeys (§1.3), kept in `IkeSa.mobike_initiator` through rekeys and clones.

    (responder of the update, return routability check, §3.7, to the new address)
                 <--  HDR, SK {N(COOKIE2)}
    HDR, SK {N(COOKIE2)}  -->

The IKE SA follows an update at once; its Child SAs only once the check is answered (the
``return_routability_check`` policy). NO_NATS_ALLOWED (§3.9) carries the addresses the sender
used; a responder that sees others answers UNEXPECTED_NAT_DETECTED and changes nothing.
ADDITIONAL_*_ADDRESS may come in IKE_AUTH too (§3.4): the peer's address set is kept per SA.

Changes in NAT mappings (§3.8): behind a NAT, our liveness checks carry NAT detection; when the
peer's NAT_DETECTION_DESTINATION_IP differs from the one of our last UPDATE_SA_ADDRESSES
response, the NAT gave us another public address or port, and an UPDATE_SA_ADDRESSES from
where we are makes the peer follow (it never follows a plain INFORMATIONAL, §3.8). Until an
update was answered there is no value to compare with (the IKE_SA_INIT response's is for port
500, before the float to 4500, and a rekey or clone changes the SPIs the hashes cover), so the
first check sends one update more, which §3.8 calls harmless.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ikecore.config import Address
from ikecore.constants import ExchangeType, NotifyType
from ikecore.errors import LocalProtocolError, RemoteProtocolError
from ikecore.events import (
    IkeSaMoved,
    IkeSaMoveFailed,
    PeerAddressesChanged,
    ReturnRoutabilityFailed,
)
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
    from ikecore.config import PeerConfig
    from ikecore.session import IkeSession

__all__ = [
    "COOKIE2_LENGTH",
    "AnnounceAddressesInitiator",
    "MobikeState",
    "ReturnRoutabilityCheck",
    "UpdateAddressesInitiator",
    "auth_address_notifies",
    "mobike_response",
    "nat_mapping_probe",
    "no_nats_data",
    "notice_nat_mapping",
    "refuse_unexpected_nat",
    "remember_auth_addresses",
    "start_announcement",
    "start_update",
]

COOKIE2_LENGTH = 16  # RFC 4555 §4.2.5: 8..64 bytes, unpredictable

_ADDRESS_NOTIFIES = (
    NotifyType.ADDITIONAL_IP4_ADDRESS,
    NotifyType.ADDITIONAL_IP6_ADDRESS,
    NotifyType.NO_ADDITIONAL_ADDRESSES,
)


@dataclass(slots=True)
class MobikeState:
    """Per session, in memory, what is in flight: the update we sent (the newest wins, §3.5)
    and, while the peer's new address is being checked (§3.7), the check and the (local,
    remote) path the Child SAs keep using. Transient: a hand-off or restart mid-update is not
    supported (docs/CLUSTER.md). What outlives the process (the peer's address set, the last
    update acted on, how the peer saw us, §3.4-§3.8) is in the IKE SA record (`IkeSa`).
    ``address_list_id`` is the message ID of the last peer request whose address list we took
    (§3.6): an older one arriving later (window above one) is answered and ignored. It is
    transient too: after a hand-off or restart the next list is taken whatever its ID."""

    pending_update: UpdateAddressesInitiator | None = None
    pending_check: ReturnRoutabilityCheck | None = None
    esp_path: tuple[Address, Address] | None = None
    address_list_id: int = -1


def no_nats_data(source: Address, destination: Address) -> bytes:
    """NO_NATS_ALLOWED's data (§4.2.6): source IP | destination IP | source port | dest port."""
    addresses = [ipaddress.ip_address(host).packed for host in (source[0], destination[0])]
    return b"".join(addresses) + source[1].to_bytes(2, "big") + destination[1].to_bytes(2, "big")


# Read in every IKE_AUTH, bound once (an Enum class attribute read takes a slow path).
_NO_NATS_ALLOWED = int(NotifyType.NO_NATS_ALLOWED)


def _nat_prohibited(payloads: Sequence[Payload], src: Address, dst: Address) -> bool:
    """§3.9: a NO_NATS_ALLOWED whose addresses are not the IP header's (src, dst)."""
    no_nats = find_notify(payloads, _NO_NATS_ALLOWED)
    return no_nats is not None and not hmac.compare_digest(no_nats.data, no_nats_data(src, dst))


def _no_nats(session: IkeSession, path: tuple[Address, Address] | None = None) -> list[Payload]:
    """N(NO_NATS_ALLOWED) with the addresses our request leaves from and goes to (§3.9): the
    SA's, or the request's own ``path``, when our policy forbids NATs on the path; else
    nothing."""
    if session.peer is None or not session.peer.no_nats_allowed:
        return []
    sa = session.sa
    data = no_nats_data(*(path or (sa.local_address, sa.remote_address)))
    return [Notify.status(NotifyType.NO_NATS_ALLOWED, data)]


def nat_mapping_probe(session: IkeSession) -> list[Payload]:
    """§3.8: "When the initiator is behind a NAT ..., it SHOULD include these notifications in
    DPD messages" (with MOBIKE negotiated); else nothing."""
    sa = session.sa
    if not (
        sa.local_mobike_supported
        and sa.peer_mobike_supported
        and sa.local_behind_nat
        and sa.mobike_initiator
    ):
        return []
    return nat_detection_payloads(sa.spi_i, sa.spi_r, sa.local_address, sa.remote_address)


def notice_nat_mapping(session: IkeSession, payloads: list[Payload], now: float) -> None:
    """§3.8, on the response to a liveness check that carried NAT detection: "If the values do
    not match, the IP address and/or port seen by the responder has changed, and the initiator
    SHOULD send UPDATE_SA_ADDRESSES"."""
    destination = find_notify(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP)
    if destination is None:
        return
    seen_as = session.sa.nat_seen_as
    if seen_as and hmac.compare_digest(destination.data, seen_as):
        return
    if session.mobike.pending_update is not None or session.state != IkeState.ESTABLISHED:
        return  # an update is on its way already, or the SA is busy (rekey, delete)
    sa = session.sa
    start_update(session, sa.local_address, sa.remote_address, now)


def _announced(received: list[Notify]) -> tuple[str, ...]:
    """The ADDITIONAL_IP4/IP6_ADDRESS values (a notify of the wrong length names nothing)."""
    lengths: dict[int, int] = {
        NotifyType.ADDITIONAL_IP4_ADDRESS: 4,
        NotifyType.ADDITIONAL_IP6_ADDRESS: 16,
    }
    return tuple(str(n.value) for n in received if lengths.get(n.notify_type) == len(n.data))


def auth_address_notifies(session: IkeSession, peer: PeerConfig, *, request: bool) -> list[Payload]:
    """What MOBIKE adds to our IKE_AUTH message once we announce MOBIKE_SUPPORTED: our other
    addresses (§3.4) and, in the request, NO_NATS_ALLOWED when the policy forbids NATs (§3.9)."""
    out: list[Payload] = [
        Notify.additional_address(ipaddress.ip_address(a)) for a in peer.additional_addresses
    ]
    if request:
        out += _no_nats(session)
    return out


def remember_auth_addresses(
    session: IkeSession, payloads: Sequence[Payload], notify_types: set[int] | None = None
) -> None:
    """§3.4: "The recipient stores this information, but no other action is taken".
    ``notify_types``: those of the message, when the caller read them already (IKE_AUTH
    reads them once for all its checks)."""
    if notify_types is not None and notify_types.isdisjoint(_ADDRESS_NOTIFIES):
        return
    received = notifies(payloads)
    if not any(n.notify_type in _ADDRESS_NOTIFIES for n in received):
        return
    session.sa.peer_addresses = (session.sa.remote_address[0], *_announced(received))


def refuse_unexpected_nat(
    session: IkeSession, peer: PeerConfig, payloads: Sequence[Payload]
) -> None:
    """§3.9 for the first IKE_AUTH request: a NAT rewrote what NO_NATS_ALLOWED names. Answered
    UNEXPECTED_NAT_DETECTED (to where the request came from); the half-made SA goes."""
    path = session.request_path
    if not peer.mobike or path is None or not _nat_prohibited(payloads, *path):
        return
    session.close_after_response(
        IkeTrigger.FAILED, "unexpected_nat_detected", NotifyType.UNEXPECTED_NAT_DETECTED
    )
    raise RemoteProtocolError(
        "NO_NATS_ALLOWED does not match the IP header", NotifyType.UNEXPECTED_NAT_DETECTED
    )


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
    if sa.mobike_initiator:
        # §3.3: with MOBIKE and NAT-T both ends use the NAT-T port.
        remote = remote or (sa.remote_address[0], session.endpoint.config.nat_port)
    elif remote is None or remote == sa.remote_address:
        # The responder moves only its own end, to where the initiator is now: its address
        # went away (§3.5's exception), or another gateway node took the SA over
        # (docs/CLUSTER.md). The roles are those of the first IKE SA of a series of rekeys and
        # clones (§1.3, `IkeSa.mobike_initiator`), whichever end rekeyed.
        remote = sa.remote_address
    else:
        raise LocalProtocolError(
            "only the MOBIKE initiator chooses the peer's address (RFC 4555 §2.1, §3.5); "
            "the responder announces its addresses (announce_addresses, §3.6)"
        )
    task = UpdateAddressesInitiator(previous=(sa.local_address, sa.remote_address))
    # The IKE SA (and so its Child SAs and any request being retransmitted) uses the new
    # addresses at once; UPDATE_SA_ADDRESSES goes when the window allows.
    sa.local_address, sa.remote_address = local, remote
    session.mobike.pending_update = task
    session.save()
    session.start(task, now)


def start_announcement(
    session: IkeSession, additional: Sequence[str], now: float, local: Address | None = None
) -> None:
    """`IkeSession.announce_addresses`."""
    if local is not None:
        local = _checked_address("local", local)
    _require_mobike(session)
    parsed = []
    for text in additional:
        try:
            parsed.append(ipaddress.ip_address(text))
        except ValueError:
            raise ValueError(f"not an IP address: {text!r}") from None
    if local is None:
        session.start(AnnounceAddressesInitiator(tuple(parsed)), now)
        return
    sa = session.sa
    if sa.mobike_initiator:
        raise LocalProtocolError(
            "the MOBIKE initiator changes its addresses with update_addresses (RFC 4555 §3.5)"
        )
    # §3.5: "If the source address that the responder is currently using becomes
    # unavailable ..., the responder is allowed to update the IPsec SAs to use some other
    # address": the IKE SA and its Child SAs leave from `local` now; the initiator's address
    # stays what the initiator chose (also on the path the Child SAs keep while the
    # initiator's new address is being checked, §3.7).
    sa.local_address = local
    mobike = session.mobike
    if mobike.esp_path is not None:
        mobike.esp_path = (local, mobike.esp_path[1])
    session.save()
    # §3.6: "the responder uses the additional address list received from the initiator, and
    # the list of its own addresses, to determine which addresses to use for sending the
    # INFORMATIONAL request": the initiator's current address first (only ours went away),
    # then the others it announced, on the port it uses.
    current = sa.remote_address
    others = tuple((host, current[1]) for host in sa.peer_addresses if host != current[0])
    task = AnnounceAddressesInitiator(tuple(parsed), path=(local, current), others=others)
    session.start(task, now)


def _cookie2_echoed(session: IkeSession, sent: bytes, payloads: list[Payload], now: float) -> bool:
    """§3.7: the response carries our COOKIE2 unchanged; "If the values do not match, the
    IKE_SA MUST be closed" (a Delete goes out, like any local delete)."""
    echoed = find_notify(payloads, NotifyType.COOKIE2)
    if echoed is not None and hmac.compare_digest(echoed.data, sent):
        return True
    session.delete_because(now, "cookie2_mismatch")
    return False


class UpdateAddressesInitiator:
    """INFORMATIONAL {N(UPDATE_SA_ADDRESSES), N(NAT_DETECTION_*), [N(NO_NATS_ALLOWED)],
    N(COOKIE2)} (§3.5). ``attempt`` counts the new requests sent after UNEXPECTED_NAT_DETECTED
    (§3.9)."""

    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self, previous: tuple[Address, Address], attempt: int = 0) -> None:
        self._previous = previous
        self._attempt = attempt
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
            *_no_nats(session),
            Notify.status(NotifyType.COOKIE2, self._cookie2),
        ]

    def _retry_after_nat(self, session: IkeSession, now: float) -> bool:
        """§3.9: UNEXPECTED_NAT_DETECTED is retried "several times using new INFORMATIONAL
        requests" (as many as retransmissions), so that one altered packet does not keep a
        path unused."""
        if self._attempt >= session.endpoint.config.retransmit_tries:
            return False
        retry = UpdateAddressesInitiator(self._previous, self._attempt + 1)
        session.mobike.pending_update = retry
        session.start(retry, now)
        return True

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> None:
        if not _cookie2_echoed(session, self._cookie2, payloads, now):
            return
        if session.mobike.pending_update is not self:
            return  # §3.5: an address change after this request was sent; a newer one runs
        session.mobike.pending_update = None
        sa = session.sa
        error = error_notify(payloads)
        if (
            error is not None
            and error.notify_type == NotifyType.UNEXPECTED_NAT_DETECTED
            and self._retry_after_nat(session, now)
        ):
            return
        if error is not None:
            # §3.5: UNACCEPTABLE_ADDRESSES, UNEXPECTED_NAT_DETECTED once the retries are spent
            # (or any refusal): keep using the previous addresses.
            sa.local_address, sa.remote_address = self._previous
            session.save()
            session.emit(IkeSaMoveFailed(session, error.notify_type))
            return
        detected = detect_nat(payloads, sa.spi_i, sa.spi_r, sa.local_address, sa.remote_address)
        if detected is not None:
            # §3.5: "enables or disables NAT Traversal" from the response's NAT detection.
            sa.local_behind_nat, sa.remote_behind_nat = detected
        destination = find_notify(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP)
        # §3.8: how the peer sees us now, for the liveness checks to compare with.
        sa.nat_seen_as = b"" if destination is None else destination.data
        session.save()
        session.emit(IkeSaMoved(session, sa.local_address, sa.remote_address))

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        if session.mobike.pending_update is self:
            session.mobike.pending_update = None


class AnnounceAddressesInitiator:
    """INFORMATIONAL {N(ADDITIONAL_IP4/6_ADDRESS)+ | N(NO_ADDITIONAL_ADDRESSES),
    [N(NO_NATS_ALLOWED)], N(COOKIE2)} (§3.6): the complete list of our other addresses,
    replacing what the peer knew. ``attempt`` as in `UpdateAddressesInitiator`.

    ``path`` (local, remote), when the MOBIKE responder's address in use is gone (§3.6, last
    paragraphs): the request goes there instead of to the SA's addresses, and ``others``, the
    initiator's other addresses, are tried in turn when it is not answered."""

    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(
        self,
        additional: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...],
        attempt: int = 0,
        *,
        path: tuple[Address, Address] | None = None,
        others: tuple[Address, ...] = (),
    ):
        self._additional = additional
        self._attempt = attempt
        self._cookie2 = b""
        self.path = path
        self._others = others

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        self._cookie2 = session.endpoint.random(COOKIE2_LENGTH)
        addresses: list[Payload] = [Notify.additional_address(a) for a in self._additional]
        if not addresses:
            addresses = [Notify.status(NotifyType.NO_ADDITIONAL_ADDRESSES)]
        return [
            *addresses,
            *_no_nats(session, self.path),
            Notify.status(NotifyType.COOKIE2, self._cookie2),
        ]

    def path_failed(self, session: IkeSession, now: float) -> bool:
        """The initiator did not answer at this address: the same request (its message ID
        must still be answered) goes on to the next address it announced (§3.6). False when
        none is left: the peer is gone (RFC 7296 §2.4). The request's NO_NATS_ALLOWED, if any,
        then names the first path: the initiator refuses it and a new request follows, from
        the path that answered (§3.9)."""
        if self.path is None or not self._others:
            return False
        self.path = (self.path[0], self._others[0])
        self._others = self._others[1:]
        return True

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> None:
        if not _cookie2_echoed(session, self._cookie2, payloads, now):
            return
        refused = find_notify(payloads, NotifyType.UNEXPECTED_NAT_DETECTED) is not None
        if refused and self._attempt < session.endpoint.config.retransmit_tries:
            # §3.9: retried with new requests; after that the peer keeps the set it knew.
            retry = AnnounceAddressesInitiator(
                self._additional, self._attempt + 1, path=self.path, others=self._others
            )
            session.start(retry, now)

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
    newest = message.message_id > sa.mobike_update_id
    cookie2 = find_notify(received, NotifyType.COOKIE2)
    changes = kinds & {NotifyType.UPDATE_SA_ADDRESSES, *_ADDRESS_NOTIFIES}
    if changes and _nat_prohibited(payloads, src, dst):
        # §3.9: a NAT rewrote the addresses the sender forbade to change: nothing is updated,
        # the answer goes back where the request came from.
        refusal: list[Payload] = [Notify.status(NotifyType.UNEXPECTED_NAT_DETECTED)]
        if cookie2 is not None:
            refusal.append(Notify.status(NotifyType.COOKIE2, cookie2.data))
        return refusal
    if NotifyType.UPDATE_SA_ADDRESSES in kinds and newest:
        # §3.5: act only on the newest update (out-of-order requests are just answered).
        sa.mobike_update_id = message.message_id
        _follow_update(session, payloads, src, dst)
    if kinds & set(_ADDRESS_NOTIFIES) and message.message_id > session.mobike.address_list_id:
        # §3.6: the new list replaces the old one (unless a newer request's list came first);
        # the IP header's source comes first.
        session.mobike.address_list_id = message.message_id
        sa.peer_addresses = (src[0], *_announced(received))
        session.emit(PeerAddressesChanged(session, sa.peer_addresses))
    answer: list[Payload] = []
    if NotifyType.NAT_DETECTION_SOURCE_IP in kinds:
        # §3.8: NAT detection in a request is answered with ours (our address first).
        answer += nat_detection_payloads(sa.spi_i, sa.spi_r, dst, src)
    if cookie2 is not None:
        # §3.7: copied as-is.
        answer.append(Notify.status(NotifyType.COOKIE2, cookie2.data))
    return answer


def _follow_update(
    session: IkeSession, payloads: list[Payload], src: Address, dst: Address
) -> None:
    """§3.5, the responder's steps after the checks: the IKE SA takes the IP header's
    addresses now; the Child SAs (and the NAT state) follow at once, or once a return
    routability check of the new address is answered (§3.7)."""
    sa, mobike = session.sa, session.mobike
    # Where the Child SAs are: the verified path while a check is in flight, else the SA's.
    current = mobike.esp_path or (sa.local_address, sa.remote_address)
    # "Updates the IP addresses in the IKE_SA with the values from the IP header".
    sa.local_address, sa.remote_address = dst, src
    detected = detect_nat(payloads, sa.spi_i, sa.spi_r, dst, src)
    check_needed = session.peer is not None and session.peer.return_routability_check
    if (dst, src) == current or not check_needed:
        # Back on the verified path (a check in flight is moot), or no check by policy.
        mobike.pending_check = None
        mobike.esp_path = None
        _apply_move(session, detected, moved=(dst, src) != current)
        return
    # §3.7: "initiates a return routability check for the new initiator address ... and waits
    # until the check is completed" before the IPsec SAs are updated. It goes after our
    # answer to the update.
    mobike.esp_path = current
    check = ReturnRoutabilityCheck(detected)
    mobike.pending_check = check
    session.enqueue(check)


def _apply_move(session: IkeSession, detected: tuple[bool, bool] | None, *, moved: bool) -> None:
    sa = session.sa
    if detected is not None:
        # §3.5: "If NAT Traversal is supported and NAT detection payloads were included,
        # enables or disables NAT Traversal" (keepalives from the side behind the NAT).
        sa.local_behind_nat, sa.remote_behind_nat = detected
    if moved:
        session.emit(IkeSaMoved(session, sa.local_address, sa.remote_address))


class ReturnRoutabilityCheck:
    """INFORMATIONAL {N(COOKIE2)} to the peer's new address (§3.7): a response with our
    COOKIE2 shows the peer really is there; then the Child SAs follow the IKE SA."""

    exchange_type = ExchangeType.INFORMATIONAL

    def __init__(self, detected: tuple[bool, bool] | None) -> None:
        self._detected = detected
        self._cookie2 = b""
        self._failed = False

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        if session.mobike.pending_check is not self:
            raise LocalProtocolError("superseded by a newer address update")
        self._cookie2 = session.endpoint.random(COOKIE2_LENGTH)
        return [Notify.status(NotifyType.COOKIE2, self._cookie2)]

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> None:
        if not _cookie2_echoed(session, self._cookie2, payloads, now):
            return
        mobike = session.mobike
        if self._failed or mobike.pending_check is not self:
            return  # answered on the old path after it failed, or a newer update took over
        mobike.pending_check = None
        mobike.esp_path = None
        _apply_move(session, self._detected, moved=True)
        session.save()

    def path_failed(self, session: IkeSession, now: float) -> bool:
        """The session's retransmissions went unanswered. If the check (or a newer one) still
        holds the Child SAs back, the IKE SA goes back to their verified path and this
        request, whose message ID the peer must still see, is retransmitted there (now a
        liveness check of that path). False: nothing to fall back to, the SA ends."""
        mobike = session.mobike
        verified = mobike.esp_path
        if self._failed or verified is None:
            return False
        self._failed = True
        sa = session.sa
        unanswered = sa.remote_address
        sa.local_address, sa.remote_address = verified
        mobike.esp_path = None
        mobike.pending_check = None
        session.save()
        session.emit(ReturnRoutabilityFailed(session, unanswered, *verified))
        return True

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        if session.mobike.pending_check is self:
            session.mobike.pending_check = None
