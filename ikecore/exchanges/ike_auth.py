"""IKE_AUTH with pre-shared keys and the first Child SA (RFC 7296 §1.2, §2.15).

    HDR, SK {IDi, AUTH, N(CLONE_IKE_SA_SUPPORTED), N(MOBIKE_SUPPORTED), SA, TSi, TSr}  -->
              <--  HDR, SK {IDr, AUTH, N(CLONE_IKE_SA_SUPPORTED), N(MOBIKE_SUPPORTED), SA, TSi, TSr}

RFC 7791 §5.1 puts CLONE_IKE_SA_SUPPORTED in the first IKE_AUTH request and the last IKE_AUTH
response; RFC 4555 §3.2 MOBIKE_SUPPORTED in the messages with the SA payload (the same two
here: PSK needs one round trip). Each side remembers per SA what the other announced.

    InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, IDi')
    ResponderSignedOctets = RealMessage2 | NonceIData | prf(SK_pr, IDr')
    AUTH = prf( prf(SharedSecret, "Key Pad for IKEv2"), <SignedOctets> )
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from ikecore.cache import BoundedCache, IdentityCache
from ikecore.config import Identity, PeerConfig
from ikecore.constants import AuthMethod, ExchangeType, IdType, NotifyType
from ikecore.errors import RemoteProtocolError
from ikecore.events import ChildSaEstablished, ChildSaFailed, IkeSaEstablished
from ikecore.exchanges.base import (
    answer,
    error_notify,
    notifies,
    offer,
    payload_kinds,
    require_kind,
    ts_payloads,
)
from ikecore.exchanges.child import accepted_esp_choice, make_child, responder_child_choice
from ikecore.exchanges.mobike import (
    auth_address_notifies,
    refuse_unexpected_nat,
    remember_auth_addresses,
)
from ikecore.states import IkeState, IkeTrigger
from ikecore.wire import (
    Authentication,
    IDi,
    IDr,
    IkeMessage,
    Notify,
    Payload,
    SecurityAssociation,
    auth_payload,
    id_body,
    prf,
    psk_auth,
)

if TYPE_CHECKING:
    from ikecore.session import IkeSession

__all__ = ["IkeAuthInitiator", "IkeAuthResponder"]

# Payloads are immutable: the capability notifies are made once.
_CLONE_SUPPORTED = Notify.status(NotifyType.CLONE_IKE_SA_SUPPORTED)
_MOBIKE_SUPPORTED = Notify.status(NotifyType.MOBIKE_SUPPORTED)
# Enum members read in every handshake, bound once: an Enum class attribute read takes the
# slow path of a metaclass with __getattr__ (0.1-0.3 µs a read on CPython 3.11).
_CLONE_ANNOUNCED = int(NotifyType.CLONE_IKE_SA_SUPPORTED)
_MOBIKE_ANNOUNCED = int(NotifyType.MOBIKE_SUPPORTED)
_INITIAL_CONTACT = int(NotifyType.INITIAL_CONTACT)
_SHARED_KEY_MIC = AuthMethod.SHARED_KEY_MIC
_AUTH_DONE = IkeTrigger.AUTH_DONE


def _auth_value(
    prf_id: int, psk: bytes, message: bytes, peer_nonce: bytes, sk_p: bytes, id_body: bytes
) -> bytes:
    # <SignedOctets> = RealMessage | Nonce(peer)Data | prf(SK_p, ID')
    signed_octets = message + peer_nonce + prf(prf_id, sk_p, id_body)
    # AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
    return psk_auth(prf_id, psk, signed_octets)


# Received identities by (ID type, data): a gateway hears the same few peers again and again,
# and an Identity is immutable, so one object per identity is shared (no enum call, no frozen
# dataclass built per IKE_AUTH; records and store indexes then compare it by identity first).
# Emptied when full: anyone can send any identity.
_received_identities: BoundedCache[Identity] = BoundedCache()


def _identity(payload: IDi | IDr) -> Identity:
    key = (payload.id_type, payload.data)
    identity = _received_identities.get(key)
    if identity is not None:
        return identity
    try:
        identity = Identity(IdType(payload.id_type), payload.data)
    except ValueError:
        raise RemoteProtocolError(
            f"unknown ID type {payload.id_type}", NotifyType.AUTHENTICATION_FAILED
        ) from None
    return _received_identities.put(key, identity)


# Our ID payloads per configured identity (immutable, the same in every IKE_AUTH).
def _idi(identity: Identity) -> IDi:
    return IDi(identity.type, identity.data)


def _idr(identity: Identity) -> IDr:
    return IDr(identity.type, identity.data)


_our_idi = IdentityCache(_idi)
_our_idr = IdentityCache(_idr)


def _announcements(session: IkeSession, peer: PeerConfig, *, request: bool) -> list[Payload]:
    """Our capability notifies; a responder announces MOBIKE only to an initiator that did
    (what `_remember_peer` noted of the request)."""
    sa = session.sa
    out: list[Payload] = []
    if peer.clone:
        sa.local_clone_supported = True
        out.append(_CLONE_SUPPORTED)
    if peer.mobike and (request or sa.peer_mobike_supported):
        sa.local_mobike_supported = True
        out.append(_MOBIKE_SUPPORTED)
        # RFC 4555 §3.4, §3.9: our other addresses; NO_NATS_ALLOWED in the request.
        out += auth_address_notifies(session, peer, request=request)
    if sa.local_window > 1:
        # §2.3: the peer may have this many of its requests in flight towards us.
        out.append(Notify.set_window_size(sa.local_window))
    return out


def _other_sas_with(
    session: IkeSession, local_id: Identity, remote_id: Identity | None
) -> list[IkeSession]:
    """The endpoint's other live IKE SAs between these identities (clones included)."""
    endpoint = session.endpoint
    candidates = endpoint.sessions if remote_id is None else endpoint.sessions_with(remote_id)
    return [
        other
        for other in candidates
        if other is not session
        and other.sa.state != IkeState.DELETED
        and other.sa.local_id == local_id
        and (remote_id is None or other.sa.remote_id == remote_id)
        and other.sa.remote_id is not None
    ]


def _remember_peer(session: IkeSession, received: list[Notify]) -> set[int]:
    """Note what the peer announced (``received``: the notifies of its message); returns
    their types (one pass for every notify IKE_AUTH asks about)."""
    sa = session.sa
    notify_types = {n.notify_type for n in received}
    sa.peer_clone_supported = _CLONE_ANNOUNCED in notify_types
    sa.peer_mobike_supported = _MOBIKE_ANNOUNCED in notify_types
    if sa.peer_mobike_supported:
        remember_auth_addresses(session, received, notify_types)
    return notify_types


class IkeAuthInitiator:
    exchange_type = ExchangeType.IKE_AUTH

    def __init__(self, peer: PeerConfig) -> None:
        self._peer = peer
        self._spi_in = b""

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        sa, peer, handshake = session.sa, self._peer, session.handshake
        assert sa.keys is not None and sa.transforms is not None and handshake is not None
        id_i = _our_idi(peer.local_id)
        auth = _auth_value(
            sa.transforms.prf,
            peer.psk,
            handshake.request,
            handshake.nr,
            sa.keys.sk_pi,
            id_body(id_i),
        )
        self._spi_in = session.endpoint.allocate_esp_spi()
        sa.local_id = peer.local_id
        first_contact: list[Payload] = []
        if peer.initial_contact and not _other_sas_with(session, peer.local_id, peer.remote_id):
            first_contact.append(Notify.status(NotifyType.INITIAL_CONTACT))
        return [
            id_i,
            auth_payload(_SHARED_KEY_MIC, auth),
            *first_contact,
            *_announcements(session, peer, request=True),
            offer(peer.esp_proposals, self._spi_in),
            *ts_payloads(peer.local_ts, peer.remote_ts),
        ]

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> None:
        sa, peer, handshake = session.sa, self._peer, session.handshake
        assert sa.keys is not None and sa.transforms is not None and handshake is not None
        kinds = payload_kinds(payloads)
        received = notifies(payloads)
        error = error_notify(received)
        if Authentication not in kinds:
            notify = NotifyType.AUTHENTICATION_FAILED if error is None else error.notify_type
            raise RemoteProtocolError(f"IKE_AUTH refused: {notify}", notify)
        auth = require_kind(kinds, Authentication)
        id_r = require_kind(kinds, IDr)
        identity = _identity(id_r)
        if peer.remote_id is not None and identity != peer.remote_id:
            self._reject_responder(session, now)
            return
        expected = _auth_value(
            sa.transforms.prf,
            peer.psk,
            handshake.response,
            handshake.ni,
            sa.keys.sk_pr,
            id_body(id_r),
        )
        if auth.method != _SHARED_KEY_MIC or not hmac.compare_digest(auth.data, expected):
            self._reject_responder(session, now)
            return
        sa.remote_id = identity
        _remember_peer(session, received)
        session.transition(_AUTH_DONE)
        session.established(now)
        session.emit(IkeSaEstablished(session))
        if error is not None or SecurityAssociation not in kinds:
            session.endpoint.release_esp_spi(self._spi_in)
            refusal = None if error is None else error.notify_type
            session.emit(ChildSaFailed(session, refusal, "refused in IKE_AUTH"))
            return
        try:
            spi_out, transforms, ts_i, ts_r = accepted_esp_choice(
                kinds, peer.esp_proposals, peer.local_ts, peer.remote_ts, with_dh=None
            )
        except RemoteProtocolError as refused:
            session.endpoint.release_esp_spi(self._spi_in)
            session.emit(ChildSaFailed(session, None, str(refused)))
            return
        child = make_child(
            session,
            initiator=True,
            transforms=transforms,
            spi_in=self._spi_in,
            spi_out=spi_out,
            ni=handshake.ni,
            nr=handshake.nr,
            g_ir=None,
            local_ts=ts_i,
            remote_ts=ts_r,
            now=now,
        )
        session.add_child(child)
        session.emit(ChildSaEstablished(session, child))

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        if self._spi_in:
            session.endpoint.release_esp_spi(self._spi_in)

    def _reject_responder(self, session: IkeSession, now: float) -> None:
        """§2.21.2: the responder considers the SA up; tell it, then close ours."""
        from ikecore.exchanges.informational import FatalNotifyInitiator

        session.endpoint.release_esp_spi(self._spi_in)
        session.start(
            FatalNotifyInitiator(NotifyType.AUTHENTICATION_FAILED, "authentication_failed"), now
        )


class IkeAuthResponder:
    def process_request(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> list[Payload]:
        sa, handshake = session.sa, session.handshake
        assert sa.keys is not None and sa.transforms is not None and handshake is not None
        kinds = payload_kinds(payloads)
        received = notifies(payloads)
        id_i = require_kind(kinds, IDi)
        auth = require_kind(kinds, Authentication)
        identity = _identity(id_i)
        peer = session.endpoint.config.peer_for(identity)
        if peer is None:
            raise RemoteProtocolError(
                f"no configuration for {identity}", NotifyType.AUTHENTICATION_FAILED
            )
        expected = _auth_value(
            sa.transforms.prf,
            peer.psk,
            handshake.request,
            handshake.nr,
            sa.keys.sk_pi,
            id_body(id_i),
        )
        if auth.method != _SHARED_KEY_MIC or not hmac.compare_digest(auth.data, expected):
            raise RemoteProtocolError(
                "initiator's AUTH does not verify", NotifyType.AUTHENTICATION_FAILED
            )
        refuse_unexpected_nat(session, peer, received)  # RFC 4555 §3.9
        session.peer = peer
        sa.peer_name = peer.name
        sa.remote_id = identity
        sa.local_id = peer.local_id
        notify_types = _remember_peer(session, received)
        id_r = _our_idr(peer.local_id)
        our_auth = _auth_value(
            sa.transforms.prf,
            peer.psk,
            handshake.response,
            handshake.ni,
            sa.keys.sk_pr,
            id_body(id_r),
        )
        response: list[Payload] = [
            id_r,
            auth_payload(_SHARED_KEY_MIC, our_auth),
            *_announcements(session, peer, request=False),
        ]
        session.transition(_AUTH_DONE)
        session.established(now)
        session.emit(IkeSaEstablished(session))
        if _INITIAL_CONTACT in notify_types:
            # §3.10.1: the initiator has no other IKE SA with us (it restarted): ours with the
            # same identities are stale. They go without a Delete: nobody would answer it.
            for stale in _other_sas_with(session, peer.local_id, identity):
                stale.terminate(IkeTrigger.FAILED, "initial_contact", now)
        if SecurityAssociation not in kinds:
            return response
        try:
            proposal, transforms, ts_i, ts_r = responder_child_choice(
                kinds, peer.esp_proposals, peer.local_ts, peer.remote_ts, with_dh=None
            )
        except RemoteProtocolError as refused:
            # §1.2: the IKE SA stands; only the Child SA is refused, in this same response.
            return [*response, Notify.status(refused.notify_type)]
        spi_in = session.endpoint.allocate_esp_spi()
        child = make_child(
            session,
            initiator=False,
            transforms=transforms,
            spi_in=spi_in,
            spi_out=proposal.spi,
            ni=handshake.ni,
            nr=handshake.nr,
            g_ir=None,
            local_ts=ts_r,
            remote_ts=ts_i,
            now=now,
        )
        session.add_child(child)
        session.emit(ChildSaEstablished(session, child))
        return [
            *response,
            answer(proposal, transforms, spi_in),
            *ts_payloads(ts_i, ts_r),
        ]
