"""IKE SA rekey (RFC 7296 §1.3.2, §2.18): CREATE_CHILD_SA with an IKE proposal.

    HDR(old), SK {SA(SPIi'), Ni, KEi}  -->
                                       <--  HDR(old), SK {SA(SPIr'), Nr, KEr}
    HDR(old), SK {D(IKE)}              -->  <--  HDR(old), SK {}

    SKEYSEED' = prf_old(SK_d_old, g^ir (new) | Ni | Nr)
    {SK_d' | SK_ai' | SK_ar' | SK_ei' | SK_er' | SK_pi' | SK_pr'}
              = prf+_new(SKEYSEED', Ni | Nr | SPIi' | SPIr')

The new SA's SPIs come from the proposals; the rekey initiator becomes its original initiator;
message IDs restart at 0; the Child SAs move to it; the old SA is deleted by the initiator.
`derive_rekeyed_sa` is the step the RFC 7791 clone shares (there the Child SAs stay put and the
old SA lives on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ikecore.constants import ExchangeType, NotifyType, ProtocolId
from ikecore.dh import SUPPORTED_GROUPS, KeyExchange
from ikecore.errors import LocalProtocolError, RemoteProtocolError
from ikecore.events import IkeSaRekeyed, IkeSaRekeyFailed
from ikecore.exchanges.base import (
    NotifyError,
    answer,
    error_notify,
    new_nonce,
    offer,
    proposals_for,
    require,
)
from ikecore.exchanges.informational import DeleteIkeInitiator
from ikecore.sa import IkeSa, IkeSaKeys
from ikecore.states import IkeState, IkeTrigger
from ikecore.suites import IkeTransforms, ProposalSpec, select_proposal
from ikecore.wire import (
    Delete,
    IkeMessage,
    Nonce,
    Payload,
    SecurityAssociation,
    ike_keys_rekey,
    ke_payload,
    nonce_payload,
    shared_suite,
)
from ikecore.wire import (
    KeyExchange as KePayload,
)

if TYPE_CHECKING:
    from ikecore.session import IkeSession

__all__ = [
    "RekeyCollision",
    "RekeyIkeInitiator",
    "RekeyIkeResponder",
    "answer_with_new_sa",
    "derive_rekeyed_sa",
    "group_for",
    "sa_from_response",
    "yield_to_peer_rekey",
]

# Enum members read in every rekey and clone, bound once: an Enum class attribute read takes
# the slow path of a metaclass with __getattr__ (0.1-0.3 µs a read on CPython 3.11).
_IKE = ProtocolId.IKE
_ESTABLISHED = IkeState.ESTABLISHED


def derive_rekeyed_sa(
    old: IkeSa,
    transforms: IkeTransforms,
    g_ir: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    *,
    initiator: bool,
    now: float,
) -> IkeSa:
    """A new IKE SA record from a rekey-style exchange on ``old`` (no Child SAs yet).

    MOBIKE (RFC 4555) goes on across it, whichever end started the exchange: the roles are
    those of the first IKE SA "in a series of possibly several rekeyed IKE_SAs" (§1.3), so
    ``mobike_initiator`` is copied while ``initiator`` (the I flag) goes to the exchange's
    initiator; the peer's address set is "logically associated with the IKE_SA" (§3.4) and
    goes on with its successor; the NAT-T state is that of the path the new SA starts on, the
    old SA's. Not copied: ``mobike_update_id`` counts the old SA's message IDs (the new SA's
    start at 0, RFC 7296 §2.18), and ``nat_seen_as`` is a hash over the old SA's SPIs, which
    the new SA's answers never match (§3.8: "an extra address update when the IKE_SA is
    rekeyed ... is harmless"). An RFC 7791 clone is made by the same step and so inherits
    the same (docs/CLONE.md).
    """
    assert old.keys is not None and old.transforms is not None
    # SKEYSEED' = prf_old(SK_d_old, g^ir (new) | Ni | Nr)
    # {SK_d' | ... | SK_pr'} = prf+_new(SKEYSEED', Ni | Nr | SPIi' | SPIr')
    # (one native call: SKEYSEED' never becomes a Python object)
    suite = shared_suite(transforms.encr, transforms.key_bits, transforms.prf, None, transforms.dh)
    k = ike_keys_rekey(old.transforms.prf, old.keys.sk_d, suite, g_ir, ni, nr, spi_i, spi_r)
    # The fields past the five required ones are set one by one: a call with two dozen
    # keyword arguments costs ~2 µs more than these stores on CPython 3.11 (two per clone).
    new = IkeSa(spi_i, spi_r, initiator, old.local_address, old.remote_address)
    new.state = _ESTABLISHED
    new.transforms = transforms
    new.keys = IkeSaKeys(k.sk_d, k.sk_ai, k.sk_ar, k.sk_ei, k.sk_er, k.sk_pi, k.sk_pr)
    new.local_id = old.local_id
    new.remote_id = old.remote_id
    new.peer_name = old.peer_name
    new.local_window = old.local_window
    new.local_clone_supported = old.local_clone_supported
    new.peer_clone_supported = old.peer_clone_supported
    new.local_mobike_supported = old.local_mobike_supported
    new.peer_mobike_supported = old.peer_mobike_supported
    new.peer_fragmentation_supported = old.peer_fragmentation_supported
    new.local_behind_nat = old.local_behind_nat
    new.remote_behind_nat = old.remote_behind_nat
    new.peer_addresses = old.peer_addresses
    new.mobike_initiator = old.mobike_initiator
    new.family = old.family
    new.created_at = now
    new.established_at = now
    return new


def group_for(old: IkeSa, proposals: tuple[ProposalSpec, ...]) -> int:
    """The group of a rekey or clone request: the current one if still configured, else the
    first configured one (RFC 7296 §1.3: INVALID_KE_PAYLOAD retries name another)."""
    groups = [group for spec in proposals for group in spec.supported_groups]
    if old.transforms is not None and old.transforms.dh in groups:
        return old.transforms.dh
    if not groups:
        raise LocalProtocolError("no supported key exchange group in the IKE proposals")
    return groups[0]


def sa_from_response(
    session: IkeSession,
    payloads: list[Payload],
    offered: tuple[ProposalSpec, ...],
    key_exchange: KeyExchange,
    ni: bytes,
    spi_i: bytes,
    now: float,
) -> tuple[IkeSa, bytes]:
    """The initiator's new IKE SA and Nr from a rekey or clone response {SA(SPIr'), Nr, KEr}:
    the responder's single proposal must be one of ours (§2.7), KEr in our group (RFC 6989
    §2.5: a bad KEr raises INVALID_SYNTAX and ends the SA)."""
    sa_payload = require(payloads, SecurityAssociation)
    if len(sa_payload.proposals) != 1:
        raise RemoteProtocolError("several proposals in a response", NotifyType.INVALID_SYNTAX)
    proposal = sa_payload.proposals[0]
    if proposal.protocol_id != _IKE or len(proposal.spi) != 8:
        raise RemoteProtocolError("bad IKE proposal in response", NotifyType.INVALID_SYNTAX)
    selection = select_proposal([proposal], offered)
    if selection is None or selection.ike is None:
        raise RemoteProtocolError(
            "responder chose what we did not offer", NotifyType.NO_PROPOSAL_CHOSEN
        )
    ke = require(payloads, KePayload)
    nr = require(payloads, Nonce).data
    if ke.group != selection.ike.dh or ke.group != key_exchange.group:
        raise RemoteProtocolError("KEr group differs", NotifyType.INVALID_SYNTAX)
    g_ir = key_exchange.shared_secret(ke.data)
    new_sa = derive_rekeyed_sa(
        session.sa, selection.ike, g_ir, ni, nr, spi_i, proposal.spi, initiator=True, now=now
    )
    return new_sa, nr


def answer_with_new_sa(
    session: IkeSession, payloads: list[Payload], ni: bytes, now: float
) -> tuple[IkeSa, bytes, list[Payload]]:
    """The responder's half of a rekey or clone: proposal choice (§2.7), our key pair and
    g^ir (RFC 6989 §2.5: a bad KEi raises INVALID_SYNTAX, the SA ends); returns the new SA,
    Nr and the response {SA(SPIr'), Nr, KEr}."""
    ours = (
        session.peer.ike_proposals
        if session.peer is not None
        else session.endpoint.config.ike_proposals
    )
    offered = proposals_for(require(payloads, SecurityAssociation), _IKE)
    ke = require(payloads, KePayload)
    selection = select_proposal(offered, ours, prefer_dh=ke.group)
    if selection is None or selection.ike is None:
        raise RemoteProtocolError("no acceptable IKE proposal", NotifyType.NO_PROPOSAL_CHOSEN)
    proposal = offered[selection.index]
    if len(proposal.spi) != 8:
        raise RemoteProtocolError("IKE proposal SPI is not 8 bytes", NotifyType.INVALID_SYNTAX)
    if ke.group != selection.ike.dh:
        raise NotifyError(
            f"KEi group {ke.group}, selected {selection.ike.dh}",
            NotifyType.INVALID_KE_PAYLOAD,
            selection.ike.dh.to_bytes(2, "big"),
        )
    key_exchange = session.endpoint.new_key_exchange(selection.ike.dh)
    g_ir = key_exchange.shared_secret(ke.data)
    nr = new_nonce(session)
    spi_r = session.endpoint.allocate_ike_spi()
    new_sa = derive_rekeyed_sa(
        session.sa, selection.ike, g_ir, ni, nr, proposal.spi, spi_r, initiator=False, now=now
    )
    return new_sa, nr, [
        answer(proposal, selection.ike, spi_r),
        nonce_payload(nr),
        ke_payload(selection.ike.dh, key_exchange.public_data),
    ]


@dataclass(slots=True)
class RekeyCollision:
    """§2.8.2: we answered the peer's rekey of an SA we were rekeying ourselves."""

    successor: IkeSession
    nonces: tuple[bytes, bytes]


def _new_session(session: IkeSession, new_sa: IkeSa, *, visible: bool) -> IkeSession:
    new_sa.rekeyed_from = session.sa.spis
    # The old SA's class (IkeSession), without an import statement run in every rekey.
    successor = type(session)(session.endpoint, new_sa, session.peer)
    successor.visible = visible
    session.endpoint.adopt(successor)
    successor.save()
    return successor


def _hand_over(session: IkeSession, successor: IkeSession, now: float) -> None:
    """The successor gets the Child SAs, and our requests not sent yet; the old SA is now
    REKEYED (§2.8)."""
    old_sa, new_sa = session.sa, successor.sa
    new_sa.child_sas, old_sa.child_sas = {**new_sa.child_sas, **old_sa.child_sas}, {}
    for child in new_sa.child_sas.values():
        session.endpoint.child_installed(successor, child)
    successor.visible = True
    successor.save()
    session.successor = successor
    session.transition(IkeTrigger.REKEYED)
    session.save()
    session.emit(IkeSaRekeyed(session, successor))
    session.hand_over_queue(successor, now)


def _resolved(session: IkeSession) -> RekeyCollision | None:
    collision, session.rekey_collision = session.rekey_collision, None
    if collision is not None:
        collision.successor.collision_parent = None
    return collision


def yield_to_peer_rekey(session: IkeSession, now: float) -> bool:
    """The peer's rekey won a collision it may not have seen (its Delete of the old SA, a
    TEMPORARY_FAILURE or a request on its new SA came first, §2.8.2): its successor takes the
    Child SAs."""
    collision = _resolved(session)
    if collision is None:
        return False
    if session.state == IkeState.REKEYING:
        _hand_over(session, collision.successor, now)
    return True


def request_on_successor(successor: IkeSession, payloads: list[Payload], now: float) -> None:
    """A request on the SA the peer's rekey made in a collision still open here. Unless it
    deletes that SA (a redundant one, §2.8.2), the peer has moved the Child SAs to it (it won
    the collision or never saw one) and talks about them there: we follow before we answer,
    since its Delete of the old SA may arrive after this request."""
    parent = successor.collision_parent
    if parent is None or any(
        isinstance(p, Delete) and p.protocol_id == ProtocolId.IKE for p in payloads
    ):
        return
    yield_to_peer_rekey(parent, now)


class RekeyIkeInitiator:
    exchange_type = ExchangeType.CREATE_CHILD_SA
    # Sent only with nothing else in flight on the SA, and nothing sent after it (the
    # session's window, §2.25.2).
    exclusive = True

    def __init__(self, proposals: tuple[ProposalSpec, ...], group: int | None = None) -> None:
        self._proposals = proposals
        self._group = group
        self._key_exchange: KeyExchange | None = None
        self._spi = b""
        self._ni = b""

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        if self._group is None:
            self._group = group_for(session.sa, self._proposals)
        self._spi = session.endpoint.allocate_ike_spi()
        self._ni = new_nonce(session)
        self._key_exchange = session.endpoint.new_key_exchange(self._group)
        return [
            offer(self._proposals, self._spi),
            nonce_payload(self._ni),
            ke_payload(self._group, self._key_exchange.public_data),
        ]

    def _give_up(self, session: IkeSession, notify: int | None, now: float) -> None:
        session.endpoint.store.release_ike_spi(self._spi)
        if yield_to_peer_rekey(session, now) or session.state == IkeState.REKEYED:
            return  # the peer's rekey took over (§2.8.2)
        if session.state == IkeState.REKEYING:
            session.transition(IkeTrigger.REKEY_ABORTED)
        session.emit(IkeSaRekeyFailed(session, notify))

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> None:
        error = error_notify(payloads)
        if error is not None:
            wanted = int.from_bytes(error.data[:2], "big") if len(error.data) >= 2 else 0
            if (
                error.notify_type == NotifyType.INVALID_KE_PAYLOAD
                and wanted in SUPPORTED_GROUPS
                and wanted != self._group
            ):
                session.endpoint.store.release_ike_spi(self._spi)
                session.start(RekeyIkeInitiator(self._proposals, wanted), now)
                return
            self._give_up(session, error.notify_type, now)
            return
        assert self._key_exchange is not None
        new_sa, nr = sa_from_response(
            session, payloads, self._proposals, self._key_exchange, self._ni, self._spi, now
        )
        ours = _new_session(session, new_sa, visible=False)
        collision = _resolved(session)
        if session.state != IkeState.REKEYING:
            # The user deleted the SA while the rekey was in flight, or the peer's rekey took
            # over (§2.8.2): the new SA(s) exist at the peer too, so they go as well, silently
            # (the user never heard of them).
            for orphan in (ours, None if collision is None else collision.successor):
                if orphan is not None:
                    orphan.transition(IkeTrigger.DELETE_STARTED)
                    orphan.start(DeleteIkeInitiator("deleted_locally"), now)
            return
        if collision is not None:
            # §2.8.2: of the two new SAs, the one with the lowest of the four nonces is
            # redundant; its creator (the initiator of its exchange) deletes it, and the
            # initiator of the survivor deletes the old SA.
            lowest = min(self._ni, nr, *collision.nonces)
            if lowest in (self._ni, nr):
                _hand_over(session, collision.successor, now)
                ours.transition(IkeTrigger.DELETE_STARTED)
                ours.start(DeleteIkeInitiator("redundant"), now)
                return
            # The peer's new SA is redundant and the peer, its creator, deletes it once our
            # answer that made it arrives; but our Delete of the old SA may arrive first, and
            # then the answer is dropped with the old SA. Failing a Delete, it expires here.
            timeout = session.endpoint.config.half_open_timeout
            collision.successor.half_open_deadline = now + timeout
        _hand_over(session, ours, now)
        # §1.3.2: the initiator of the rekey deletes the old IKE SA.
        session.transition(IkeTrigger.DELETE_STARTED)
        session.start(DeleteIkeInitiator("rekeyed"), now)

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        if self._spi:
            session.endpoint.store.release_ike_spi(self._spi)


class RekeyIkeResponder:
    def process_request(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> list[Payload]:
        colliding = session.state == IkeState.REKEYING and any(
            isinstance(task, RekeyIkeInitiator) for task in session.outstanding_tasks()
        )
        if not colliding and (session.state != IkeState.ESTABLISHED or session.busy()):
            # §2.25.2: we are deleting this SA (or already rekeyed it), or have other
            # exchanges of our own in flight on it; the peer tries again later.
            raise RemoteProtocolError("IKE SA busy", NotifyType.TEMPORARY_FAILURE)
        ni = require(payloads, Nonce).data
        new_sa, nr, response = answer_with_new_sa(session, payloads, ni, now)
        if colliding:
            # §2.8.2: answer as usual; which new SA survives is known once ours completes.
            successor = _new_session(session, new_sa, visible=False)
            successor.collision_parent = session
            session.rekey_collision = RekeyCollision(successor, (ni, nr))
        else:
            _hand_over(session, _new_session(session, new_sa, visible=True), now)
        return response
