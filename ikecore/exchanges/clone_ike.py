"""RFC 7791: cloning the IKE SA — an IKE SA rekey that keeps the old SA and its Child SAs.

    HDR(old), SK {N(CLONE_IKE_SA), SA(SPIi'), Ni, KEi}  -->
                                                        <--  HDR(old), SK {SA(SPIr'), Nr, KEr}

The keys are those of an IKE SA rekey (RFC 7296 §2.18, `rekey_ike.derive_rekeyed_sa`):

    SKEYSEED' = prf_old(SK_d_old, g^ir (new) | Ni | Nr)
    {SK_d' | SK_ai' | SK_ar' | SK_ei' | SK_er' | SK_pi' | SK_pr'}
              = prf+_new(SKEYSEED', Ni | Nr | SPIi' | SPIr')

What differs from a rekey (RFC 7791 §5.2): the old SA is not deleted and keeps its Child SAs,
its state and its message IDs; the clone starts with no Child SA, message IDs 0/0 and window 1;
the clone initiator is the clone's original initiator. Both peers must have announced
CLONE_IKE_SA_SUPPORTED in IKE_AUTH (§5.1), and a responder refuses with TEMPORARY_FAILURE or
NO_ADDITIONAL_SAS (§5.3). Every choice RFC 7791 leaves open is in docs/CLONE.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ikecore.config import Identity
from ikecore.constants import ExchangeType, NotifyType
from ikecore.dh import SUPPORTED_GROUPS, KeyExchange
from ikecore.errors import CloneRefused, LocalProtocolError, RemoteProtocolError
from ikecore.events import CloneFailed, CloneRequestRefused, IkeSaCloned
from ikecore.exchanges.base import (
    error_notify,
    new_nonce,
    offer,
    require,
)
from ikecore.exchanges.rekey_ike import answer_with_new_sa, group_for, sa_from_response
from ikecore.sa import IkeSa, SpiPair
from ikecore.states import IkeState
from ikecore.suites import ProposalSpec
from ikecore.wire import IkeMessage, Nonce, Notify, Payload, ke_payload, nonce_payload

if TYPE_CHECKING:
    from ikecore.endpoint import IkeEndpoint
    from ikecore.session import IkeSession

__all__ = [
    "CLONE_RETRY_DELAY",
    "CloneBackoff",
    "CloneIkeInitiator",
    "CloneIkeResponder",
    "backoff_for",
    "family_clone_count",
    "start_clone",
]

# Payloads are immutable: the notify that marks a clone request is made once.
_CLONE_IKE_SA = Notify.status(NotifyType.CLONE_IKE_SA)

CLONE_RETRY_DELAY = 30.0
"""Seconds before the same IKE SA may be cloned again after TEMPORARY_FAILURE (RFC 7296 §2.25:
"MUST NOT retry immediately"; RFC 7791 §5.3)."""

# SAs that count as members of a clone family: up, or being rekeyed (a REKEYED SA is already
# replaced by its successor, a DELETING one is going).
_LIVE = (IkeState.ESTABLISHED, IkeState.REKEYING)
# Enum members read in every clone, bound once: an Enum class attribute read takes the slow
# path of a metaclass with __getattr__ (0.1-0.3 µs a read on CPython 3.11).
_ESTABLISHED = IkeState.ESTABLISHED
_HALF_OPEN = (IkeState.CONNECTING, IkeState.AUTHENTICATING)
_BUSY = (IkeState.REKEYING, IkeState.DELETING)


@dataclass
class CloneBackoff:
    """The initiator's memory of refusals (RFC 7791 §5.3), one per endpoint.

    ``temporary``: per IKE SA, the time before which it is not cloned again (TEMPORARY_FAILURE).
    ``exhausted``: per peer identity, how many IKE SAs we had with it when it answered
    NO_ADDITIONAL_SAS; no clone is asked for until fewer remain ("until some of the existing
    SAs with the responder are deleted").
    """

    retry_delay: float = CLONE_RETRY_DELAY
    temporary: dict[SpiPair, float] = field(default_factory=dict)
    exhausted: dict[Identity, int] = field(default_factory=dict)

    def check(self, session: IkeSession, now: float) -> None:
        """CloneRefused if a refusal still holds for this SA or its peer."""
        sa = session.sa
        # Empty (no refusal held: the usual case) is checked first: a lookup would hash the
        # SPI pair and the identity (a dataclass hash, in Python) for nothing.
        until = self.temporary.get(sa.spis) if self.temporary else None
        if until is not None:
            if now < until:
                raise CloneRefused("TEMPORARY_FAILURE")
            del self.temporary[sa.spis]
        if self.exhausted and sa.remote_id is not None and sa.remote_id in self.exhausted:
            if _live_with_peer(session.endpoint, sa.remote_id) >= self.exhausted[sa.remote_id]:
                raise CloneRefused("NO_ADDITIONAL_SAS")
            del self.exhausted[sa.remote_id]

    def refused(self, session: IkeSession, notify_type: int, now: float) -> None:
        sa = session.sa
        if notify_type == NotifyType.TEMPORARY_FAILURE:
            self.temporary[sa.spis] = now + self.retry_delay
        elif notify_type == NotifyType.NO_ADDITIONAL_SAS and sa.remote_id is not None:
            self.exhausted[sa.remote_id] = _live_with_peer(session.endpoint, sa.remote_id)


def backoff_for(endpoint: IkeEndpoint) -> CloneBackoff:
    """The endpoint's `CloneBackoff`, made at its first refusal (until then no refusal holds)."""
    backoff = endpoint.clone_backoff
    if backoff is None:
        backoff = endpoint.clone_backoff = CloneBackoff()
    return backoff


def _live_with_peer(endpoint: IkeEndpoint, remote_id: Identity) -> int:
    return sum(1 for s in endpoint.sessions_with(remote_id) if s.sa.state in _LIVE)


def _family_members(session: IkeSession) -> list[IkeSa]:
    """The live IKE SAs of this SA's clone family, from the store (a cluster shares it)."""
    sa = session.sa
    if sa.remote_id is None:
        return [sa]
    members = [
        other
        for other in session.endpoint.store.find_by_identity(sa.remote_id)
        if other.family == sa.family and other.state in _LIVE
    ]
    if all(other.spis != sa.spis for other in members):
        members.append(sa)
    return members


def family_clone_count(session: IkeSession) -> int:
    """Clones alive in the family: every live member but one (the original or its successor)."""
    return len(_family_members(session)) - 1


def _pending_clones(session: IkeSession) -> list[CloneIkeInitiator]:
    """Our clone requests in flight on any SA of the family (they reserve a place)."""
    sa, endpoint = session.sa, session.endpoint
    # A family shares its peer's identity: only that peer's SAs are looked at.
    members = endpoint.sessions if sa.remote_id is None else endpoint.sessions_with(sa.remote_id)
    return [
        task
        for other in members
        if other.sa.family == sa.family
        for task in other.outstanding_tasks()
        if isinstance(task, CloneIkeInitiator)
    ]


def start_clone(session: IkeSession, now: float) -> None:
    """`IkeSession.request_clone`: refuse locally (CloneRefused, nothing sent) or queue the
    clone exchange; `IkeSaCloned` or `CloneFailed` follows."""
    sa = session.sa
    if sa.state in _HALF_OPEN:
        raise CloneRefused("NOT_NEGOTIATED")
    if sa.state in _BUSY:
        # RFC 7791 §5.3 by analogy: this SA is going away or being replaced.
        raise CloneRefused("TEMPORARY_FAILURE")
    if sa.state is not _ESTABLISHED:
        raise LocalProtocolError(f"IKE SA is {sa.state.value}, not ESTABLISHED")
    if not sa.clone_negotiated:
        # §5.1: "the IKE SA MUST NOT be cloned" unless both sent CLONE_IKE_SA_SUPPORTED.
        raise CloneRefused("NOT_NEGOTIATED")
    backoff = session.endpoint.clone_backoff
    if backoff is not None:
        backoff.check(session, now)
    peer = session.peer
    if peer is None:
        raise LocalProtocolError("no peer configuration for this SA")
    if peer.max_clones is not None:
        reserved = family_clone_count(session) + len(_pending_clones(session))
        if reserved >= peer.max_clones:
            raise CloneRefused("NO_ADDITIONAL_SAS")
    session.start(CloneIkeInitiator(peer.ike_proposals), now)


def _new_clone(session: IkeSession, clone_sa: IkeSa) -> IkeSession:
    """Track the clone as a session of its own; the parent's state does not change."""
    parent = session.sa
    clone_sa.parent = (parent.spi_i, parent.spi_r)  # parent.spis, without a property call
    # The parent's class is IkeSession: naming it so spares an import statement run in every
    # clone (session.py imports this module, so it cannot be imported at the top; an import
    # in the body costs ~1.5 µs a run on CPython 3.11).
    clone = type(session)(session.endpoint, clone_sa, session.peer)
    session.endpoint.adopt(clone)
    clone.save()
    session.emit(IkeSaCloned(session, clone))
    return clone


def refusal_name(notify_type: int) -> str:
    try:
        return NotifyType(notify_type).name
    except ValueError:
        return f"NOTIFY_{notify_type}"


class CloneIkeInitiator:
    """CREATE_CHILD_SA {N(CLONE_IKE_SA), SA, Ni, KEi} on the SA to clone (RFC 7791 §5.2)."""

    exchange_type = ExchangeType.CREATE_CHILD_SA

    def __init__(self, proposals: tuple[ProposalSpec, ...], group: int | None = None) -> None:
        self._proposals = proposals
        self._group = group
        self._key_exchange: KeyExchange | None = None
        self._spi = b""
        self.ni = b""

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        if session.state is not _ESTABLISHED:
            # Queued behind a rekey or a Delete that has since started (§5.3 by analogy).
            raise LocalProtocolError("the IKE SA is no longer established")
        if self._group is None:
            self._group = group_for(session.sa, self._proposals)
        self._spi = session.endpoint.allocate_ike_spi()
        self.ni = new_nonce(session)
        self._key_exchange = session.endpoint.new_key_exchange(self._group)
        # The order RFC 7791 §5.2 draws: N(CLONE_IKE_SA), SA, Ni, KEi.
        return [
            _CLONE_IKE_SA,
            offer(self._proposals, self._spi),
            nonce_payload(self.ni),
            ke_payload(self._group, self._key_exchange.public_data),
        ]

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> None:
        error = error_notify(payloads)
        if error is not None:
            session.endpoint.store.release_ike_spi(self._spi)
            wanted = int.from_bytes(error.data[:2], "big") if len(error.data) >= 2 else 0
            if (
                error.notify_type == NotifyType.INVALID_KE_PAYLOAD
                and wanted in SUPPORTED_GROUPS
                and wanted != self._group
            ):
                # RFC 7296 §1.3: the same request again with the group the responder wants.
                session.start(CloneIkeInitiator(self._proposals, wanted), now)
                return
            backoff_for(session.endpoint).refused(session, error.notify_type, now)
            session.emit(CloneFailed(session, refusal_name(error.notify_type)))
            return
        assert self._key_exchange is not None
        clone_sa, _ = sa_from_response(
            session, payloads, self._proposals, self._key_exchange, self.ni, self._spi, now
        )
        _new_clone(session, clone_sa)

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        if self._spi:
            session.endpoint.store.release_ike_spi(self._spi)
        session.emit(CloneFailed(session, reason))


class CloneIkeResponder:
    """The peer's CREATE_CHILD_SA with an IKE proposal and N(CLONE_IKE_SA)."""

    def process_request(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> list[Payload]:
        try:
            return self._clone(session, payloads, now)
        except RemoteProtocolError as refusal:
            # The error notify is the answer (the session sends it); the user hears of it.
            session.emit(CloneRequestRefused(session, refusal_name(refusal.notify_type)))
            raise

    def _clone(self, session: IkeSession, payloads: list[Payload], now: float) -> list[Payload]:
        sa = session.sa
        if not sa.clone_negotiated:
            # §5.1 forbids the clone; a plain rekey instead would move the Child SAs the peer
            # means to keep (spec notes §10), so the answer is a permanent refusal.
            raise RemoteProtocolError("clone not negotiated", NotifyType.NO_ADDITIONAL_SAS)
        if sa.state is not _ESTABLISHED:
            # §5.3: we are deleting or rekeying this SA (RFC 7296 §2.25.2 by analogy).
            raise RemoteProtocolError("IKE SA busy", NotifyType.TEMPORARY_FAILURE)
        if _resources_short(session.endpoint):
            raise RemoteProtocolError("too many SAs being set up", NotifyType.TEMPORARY_FAILURE)
        ni = require(payloads, Nonce).data
        if session.peer is not None and session.peer.max_clones is not None:
            if not _room_for_peer_clone(session, session.peer.max_clones, ni):
                raise RemoteProtocolError("clone limit reached", NotifyType.NO_ADDITIONAL_SAS)
        clone_sa, _, response = answer_with_new_sa(session, payloads, ni, now)
        _new_clone(session, clone_sa)
        # §5.2: "No additional Notify Payloads are included in the CREATE_CHILD_SA response".
        return response


def _resources_short(endpoint: IkeEndpoint) -> bool:
    """Our temporary shortage: as many SAs half open as make us demand COOKIEs (§2.6)."""
    return endpoint.half_open_count >= endpoint.config.cookie_threshold


def _room_for_peer_clone(session: IkeSession, max_clones: int, peer_nonce: bytes) -> bool:
    """§5.3 policy: at most ``max_clones`` clones in the family, counting ours in flight.

    When only our own clone in flight on this SA stands in the way (both ends cloned at once),
    the request with the higher nonce wins; the peer applies the same rule to ours, so
    exactly one of the two clones is made and the limit holds.
    """
    alive = family_clone_count(session)
    pending = _pending_clones(session)
    if alive + len(pending) < max_clones:
        return True
    if alive + len(pending) - 1 >= max_clones:
        return False
    crossing = [t for t in session.outstanding_tasks() if isinstance(t, CloneIkeInitiator)]
    return any(peer_nonce > task.ni for task in crossing)
