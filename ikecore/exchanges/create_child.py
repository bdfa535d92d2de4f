"""CREATE_CHILD_SA for Child SAs (RFC 7296 §1.3.1, §1.3.3), and the responder's dispatch.

    HDR, SK {SA, Ni, [KEi], TSi, TSr}                    -->  <--  HDR, SK {SA, Nr, [KEr], TSi, TSr}
    HDR, SK {N(REKEY_SA), SA, Ni, [KEi], TSi, TSr}       -->  <--  HDR, SK {SA, Nr, [KEr], TSi, TSr}

KEi/KEr (PFS) are sent when the ESP proposals name a key exchange group. After a Child SA
rekey the initiator deletes the old Child SA (INFORMATIONAL {D(ESP)}).

The responder's dispatch looks at the SA payload: an IKE proposal means an IKE SA rekey
(`rekey_ike`), and with N(CLONE_IKE_SA) the RFC 7791 clone (its module plugs in here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ikecore.config import TrafficSelector
from ikecore.constants import ExchangeType, NotifyType, ProtocolId, TransformType
from ikecore.dh import SUPPORTED_GROUPS, KeyExchange
from ikecore.errors import RemoteProtocolError
from ikecore.events import ChildSaEstablished, ChildSaFailed, ChildSaRekeyed
from ikecore.exchanges.base import (
    NotifyError,
    ResponderTask,
    answer,
    error_notify,
    find_notify,
    first_of,
    new_nonce,
    offer,
    payload_kinds,
    proposals_for,
    require,
    ts_payloads,
)
from ikecore.exchanges.child import accepted_esp_choice, make_child, responder_child_choice
from ikecore.exchanges.clone_ike import CloneIkeResponder
from ikecore.exchanges.informational import DeleteChildInitiator
from ikecore.exchanges.rekey_ike import RekeyIkeResponder
from ikecore.sa import ChildSa
from ikecore.states import ChildState, ChildTrigger, IkeState
from ikecore.suites import ProposalSpec
from ikecore.wire import (
    IkeMessage,
    Nonce,
    Notify,
    Payload,
    SecurityAssociation,
    ke_payload,
    nonce_payload,
)
from ikecore.wire import (
    KeyExchange as KePayload,
)

if TYPE_CHECKING:
    from ikecore.session import IkeSession

__all__ = [
    "ChildCollision",
    "CreateChildDispatch",
    "CreateChildInitiator",
    "CreateChildResponder",
    "peer_rekey_won",
]

# Enum members read in every CREATE_CHILD_SA request, bound once: an Enum class attribute
# read takes the slow path of a metaclass with __getattr__ (0.1-0.3 µs a read on CPython 3.11).
_IKE = ProtocolId.IKE
_CLONE_IKE_SA = int(NotifyType.CLONE_IKE_SA)
_DELETING = IkeState.DELETING


def _pfs_group(proposals: tuple[ProposalSpec, ...]) -> int | None:
    for spec in proposals:
        for transform in spec.of_type(TransformType.DH):
            if transform.id in SUPPORTED_GROUPS:
                return transform.id
    return None


@dataclass(slots=True)
class ChildCollision:
    """§2.8.1: the Child SA we made answering the peer's rekey of one we were rekeying."""

    child: ChildSa
    nonces: tuple[bytes, bytes]


def peer_rekey_won(session: IkeSession, old: ChildSa) -> bool:
    """The peer's replacement of ``old`` survives: announce it (the peer deletes ``old``)."""
    collision = session.child_collisions.pop(old.spi_in, None)
    if collision is None:
        return False
    if session.unannounced is not None:
        session.unannounced.discard(collision.child.spi_in)
    if old.state == ChildState.REKEYING:
        session.child_transition(old, ChildTrigger.REKEYED)
    session.emit(ChildSaRekeyed(session, old, collision.child))
    return True


class CreateChildInitiator:
    """A new Child SA, or (``rekey``) the replacement of an existing one."""

    exchange_type = ExchangeType.CREATE_CHILD_SA

    def __init__(
        self,
        esp_proposals: tuple[ProposalSpec, ...],
        local_ts: tuple[TrafficSelector, ...],
        remote_ts: tuple[TrafficSelector, ...],
        *,
        rekey: ChildSa | None = None,
        group: int | None = None,
    ) -> None:
        self._proposals = esp_proposals
        self._local_ts = local_ts
        self._remote_ts = remote_ts
        self._rekey = rekey
        self._group = group if group is not None else _pfs_group(esp_proposals)
        self._key_exchange: KeyExchange | None = None
        self._spi_in = b""
        self._ni = b""

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        self._spi_in = session.endpoint.allocate_esp_spi()
        self._ni = new_nonce(session)
        payloads: list[Payload] = []
        if self._rekey is not None:
            # §1.3.3: REKEY_SA names the SA being replaced by our inbound SPI.
            payloads.append(Notify.rekey_sa(ProtocolId.ESP, self._rekey.spi_in))
        payloads += [offer(self._proposals, self._spi_in), nonce_payload(self._ni)]
        if self._group is not None:
            self._key_exchange = session.endpoint.new_key_exchange(self._group)
            payloads.append(ke_payload(self._group, self._key_exchange.public_data))
        payloads += ts_payloads(self._local_ts, self._remote_ts)
        return payloads

    def _fail(self, session: IkeSession, notify: int | None, reason: str) -> None:
        session.endpoint.release_esp_spi(self._spi_in)
        if self._rekey is not None and self._rekey.state == ChildState.REKEYING:
            session.child_transition(self._rekey, ChildTrigger.REKEY_ABORTED)
        session.emit(ChildSaFailed(session, notify, reason))

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> None:
        error = error_notify(payloads)
        old = self._rekey
        if error is not None and old is not None and old.state != ChildState.INSTALLED:
            # §2.8.1: the peer rekeyed (and maybe deleted) this Child SA itself before it saw
            # our request; its CHILD_SA_NOT_FOUND / TEMPORARY_FAILURE is ignored.
            if peer_rekey_won(session, old) or old.state == ChildState.DELETED:
                session.endpoint.release_esp_spi(self._spi_in)
                return
        if error is not None:
            if error.notify_type == NotifyType.INVALID_KE_PAYLOAD and len(error.data) >= 2:
                wanted = int.from_bytes(error.data[:2], "big")
                if wanted in SUPPORTED_GROUPS and wanted != self._group:
                    # §1.3: retry with the group the responder asked for, as a new exchange.
                    session.endpoint.release_esp_spi(self._spi_in)
                    session.start(
                        CreateChildInitiator(
                            self._proposals,
                            self._local_ts,
                            self._remote_ts,
                            rekey=self._rekey,
                            group=wanted,
                        ),
                        now,
                    )
                    return
            self._fail(session, error.notify_type, "refused by the peer")
            return
        ke = first_of(payloads, KePayload)
        if (ke is None) != (self._key_exchange is None):
            self._fail(session, None, "KE payload mismatch")
            return
        try:
            spi_out, transforms, ts_i, ts_r = accepted_esp_choice(
                payload_kinds(payloads),
                self._proposals,
                self._local_ts,
                self._remote_ts,
                with_dh=self._key_exchange is not None,
            )
            nr = require(payloads, Nonce).data
        except RemoteProtocolError as refused:
            self._fail(session, None, str(refused))
            return
        if session.deleted_before_known(spi_out):
            # The peer made it, then deleted it before this response reached us (§1.4.1
            # ignores a Delete for an unknown SPI): installing it now would leave it half open.
            replaced = old is not None and old.state == ChildState.REKEYING
            self._fail(session, None, "deleted by the peer before it was established")
            if old is not None and replaced:
                # The peer did replace ``old`` and waits for us, the rekey's initiator, to
                # delete it (§2.8); its replacement being gone, the Child SA ends here.
                session.child_transition(old, ChildTrigger.DELETE_STARTED)
                session.start(DeleteChildInitiator(old, "deleted_by_peer"), now)
            return
        g_ir = None
        if self._key_exchange is not None and ke is not None:
            if ke.group != transforms.dh:
                self._fail(session, None, "KEr group differs from the chosen one")
                return
            # RFC 6989 §2.5: a bad KEr in a response ends the IKE SA (raises).
            g_ir = self._key_exchange.shared_secret(ke.data)
        child = make_child(
            session,
            initiator=True,
            transforms=transforms,
            spi_in=self._spi_in,
            spi_out=spi_out,
            ni=self._ni,
            nr=nr,
            g_ir=g_ir,
            local_ts=ts_i,
            remote_ts=ts_r,
            now=now,
        )
        if old is None:
            session.add_child(child)
            session.emit(ChildSaEstablished(session, child))
            return
        child.rekeyed_from = old.spi_in
        session.add_child(child)
        collision = session.child_collisions.get(old.spi_in)
        if collision is not None and min(self._ni, nr, *collision.nonces) in (self._ni, nr):
            # §2.8.1: ours holds the lowest nonce, so it is redundant and we close it; the
            # peer, initiator of the survivor, deletes the old Child SA.
            session.keep_unannounced(child.spi_in)
            session.child_transition(child, ChildTrigger.DELETE_STARTED)
            session.start(DeleteChildInitiator(child, "redundant"), now)
            peer_rekey_won(session, old)
            return
        # Ours survives; a redundant one of the peer's (if any) is closed by the peer.
        session.child_collisions.pop(old.spi_in, None)
        if old.state == ChildState.REKEYING:
            session.child_transition(old, ChildTrigger.REKEYED)
            session.emit(ChildSaRekeyed(session, old, child))
            session.child_transition(old, ChildTrigger.DELETE_STARTED)
            session.start(DeleteChildInitiator(old, "rekeyed"), now)
        else:
            # The old SA went away meanwhile (deleted by the peer): the new one simply stays.
            session.emit(ChildSaEstablished(session, child))

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        if self._spi_in:
            session.endpoint.release_esp_spi(self._spi_in)


class CreateChildResponder:
    def process_request(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> list[Payload]:
        peer = session.peer
        if peer is None:
            raise RemoteProtocolError("no policy for this SA", NotifyType.NO_PROPOSAL_CHOSEN)
        old: ChildSa | None = None
        rekey = find_notify(payloads, NotifyType.REKEY_SA)
        if rekey is not None:
            old = session.child_by_outbound_spi(rekey.spi)
            if old is None:
                raise RemoteProtocolError("no such Child SA", NotifyType.CHILD_SA_NOT_FOUND)
            if old.state not in (ChildState.INSTALLED, ChildState.REKEYING):
                # §2.25.1: it is being deleted; the rekey makes no sense any more.
                raise RemoteProtocolError("Child SA is going away", NotifyType.TEMPORARY_FAILURE)
        ke = first_of(payloads, KePayload)
        ni = require(payloads, Nonce).data
        proposal, transforms, ts_i, ts_r = responder_child_choice(
            payload_kinds(payloads),
            peer.esp_proposals,
            peer.local_ts,
            peer.remote_ts,
            with_dh=ke is not None,
            prefer_dh=None if ke is None else ke.group,
        )
        g_ir = None
        response_ke: list[Payload] = []
        if ke is not None:
            if ke.group != transforms.dh:
                raise NotifyError(
                    f"KEi group {ke.group}, selected {transforms.dh}",
                    NotifyType.INVALID_KE_PAYLOAD,
                    transforms.dh.to_bytes(2, "big"),
                )
            key_exchange = session.endpoint.new_key_exchange(transforms.dh)
            # RFC 6989 §2.5: INVALID_SYNTAX, and the IKE SA goes (the session does that).
            g_ir = key_exchange.shared_secret(ke.data)
            response_ke = [ke_payload(transforms.dh, key_exchange.public_data)]
        nr = new_nonce(session)
        spi_in = session.endpoint.allocate_esp_spi()
        child = make_child(
            session,
            initiator=False,
            transforms=transforms,
            spi_in=spi_in,
            spi_out=proposal.spi,
            ni=ni,
            nr=nr,
            g_ir=g_ir,
            local_ts=ts_r,
            remote_ts=ts_i,
            now=now,
        )
        session.add_child(child)
        if old is None:
            session.emit(ChildSaEstablished(session, child))
        elif old.state == ChildState.REKEYING:
            # §2.8.1: we are rekeying it too; which replacement survives is known when ours
            # completes. Until then the user hears nothing of this one.
            child.rekeyed_from = old.spi_in
            session.keep_unannounced(child.spi_in)
            session.child_collisions[old.spi_in] = ChildCollision(child, (ni, nr))
        else:
            child.rekeyed_from = old.spi_in
            # The initiator deletes the old Child SA next (§1.3.3).
            session.child_transition(old, ChildTrigger.REKEYED)
            session.emit(ChildSaRekeyed(session, old, child))
        return [
            answer(proposal, transforms, spi_in),
            nonce_payload(nr),
            *response_ke,
            *ts_payloads(ts_i, ts_r),
        ]


class CreateChildDispatch:
    """The responder's CREATE_CHILD_SA: picks the task by the request's content (a Child SA,
    an IKE SA rekey, an RFC 7791 clone); the role is the responder's throughout."""

    def process_request(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> list[Payload]:
        if session.state is _DELETING:
            # We are closing this IKE SA: no new SA on it (RFC 7296 §2.25.2, RFC 7791 §5.3).
            raise RemoteProtocolError("IKE SA is being deleted", NotifyType.TEMPORARY_FAILURE)
        sa_payload = require(payloads, SecurityAssociation)
        task: ResponderTask
        if proposals_for(sa_payload, _IKE):
            # RFC 7791 §5.2: N(CLONE_IKE_SA) counts only in an IKE SA rekey request (with an
            # ESP proposal it is ignored, like any unknown status notify).
            if find_notify(payloads, _CLONE_IKE_SA) is not None:
                task = CloneIkeResponder()
            else:
                task = RekeyIkeResponder()
        else:
            if session.state in (IkeState.REKEYING, IkeState.REKEYED):
                # §2.25.2: "a request to create or rekey a Child SA when it is currently
                # rekeying the IKE SA" is answered TEMPORARY_FAILURE (the new Child SA would
                # land on an IKE SA whose Child SAs are moving to its successor).
                raise RemoteProtocolError("IKE SA is being rekeyed", NotifyType.TEMPORARY_FAILURE)
            task = CreateChildResponder()
        return task.process_request(session, message, payloads, now)
