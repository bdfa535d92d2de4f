"""IKE_SA_INIT (RFC 7296 §1.2): proposals, key exchange, nonces, NAT detection, COOKIE and
INVALID_KE_PAYLOAD retries.

    HDR, SA, KEi, Ni, N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP)  -->
         <--  HDR, SA, KEr, Nr, N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP)

Both sides then derive the IKE SA keys (§2.14):

    SKEYSEED = prf(Ni | Nr, g^ir)
    {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ikecore.config import PeerConfig
from ikecore.constants import ExchangeType, NotifyType, ProtocolId
from ikecore.dh import KeyExchange
from ikecore.errors import RemoteProtocolError
from ikecore.exchanges.base import (
    DropMessage,
    NotifyError,
    Retry,
    answer,
    detect_nat,
    error_notify,
    find_notify,
    nat_detection_payloads,
    new_nonce,
    notifies,
    offer,
    proposals_for,
    require,
)
from ikecore.sa import IkeSaKeys
from ikecore.states import IkeTrigger
from ikecore.suites import IkeTransforms, ProposalSpec, select_proposal
from ikecore.wire import (
    IkeMessage,
    Nonce,
    Notify,
    Payload,
    SecurityAssociation,
    ike_keys_initial,
    ke_payload,
    nonce_payload,
    shared_suite,
)
from ikecore.wire import (
    KeyExchange as KePayload,
)

if TYPE_CHECKING:
    from ikecore.session import IkeSession

__all__ = ["Handshake", "IkeSaInitInitiator", "IkeSaInitResponder", "derive_ike_keys"]

_ZERO_SPI = bytes(8)
# Payloads are immutable: the RFC 7383 §2.3 announcement is made once.
_FRAGMENTATION_SUPPORTED = Notify.status(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)
_MAX_COOKIE_RETRIES = 3  # a responder that keeps asking is not going to accept us
# Enum members read in every handshake, bound once: an Enum class attribute read takes the
# slow path of a metaclass with __getattr__ (0.1-0.3 µs a read on CPython 3.11).
_IKE = ProtocolId.IKE
_COOKIE = int(NotifyType.COOKIE)
_INVALID_KE_PAYLOAD = int(NotifyType.INVALID_KE_PAYLOAD)
_FRAGMENTATION_ANNOUNCED = int(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)
_INIT_DONE = IkeTrigger.INIT_DONE


@dataclass(slots=True)
class Handshake:
    """What IKE_AUTH needs from IKE_SA_INIT (RFC 7296 §2.15): both messages as sent (the last
    version, after any COOKIE or INVALID_KE_PAYLOAD retry) and both nonces."""

    ni: bytes = b""
    nr: bytes = b""
    request: bytes = b""
    response: bytes = b""


def derive_ike_keys(
    transforms: IkeTransforms, g_ir: bytes, ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes
) -> IkeSaKeys:
    suite = shared_suite(transforms.encr, transforms.key_bits, transforms.prf, None, transforms.dh)
    # SKEYSEED = prf(Ni | Nr, g^ir)
    # {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
    #     = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)
    # (one native call: SKEYSEED never becomes a Python object)
    keys = ike_keys_initial(suite, ni, nr, g_ir, spi_i, spi_r)
    return IkeSaKeys(
        keys.sk_d, keys.sk_ai, keys.sk_ar, keys.sk_ei, keys.sk_er, keys.sk_pi, keys.sk_pr
    )


def _acceptable_groups(specs: tuple[ProposalSpec, ...]) -> list[int]:
    groups: list[int] = []
    for spec in specs:
        for group in spec.supported_groups:
            if group not in groups:
                groups.append(group)
    return groups


def _single_choice(sa: SecurityAssociation, ours: tuple[ProposalSpec, ...]) -> IkeTransforms:
    """The responder's answer must be one proposal, one transform per type, from our offer."""
    if len(sa.proposals) != 1:
        raise RemoteProtocolError("responder returned several proposals", NotifyType.INVALID_SYNTAX)
    proposal = sa.proposals[0]
    types = [t.type for t in proposal.transforms]
    if proposal.protocol_id != _IKE or len(types) != len(set(types)):
        raise RemoteProtocolError("responder's proposal is not a choice", NotifyType.INVALID_SYNTAX)
    selection = select_proposal([proposal], ours)
    if selection is None or selection.ike is None:
        raise RemoteProtocolError(
            "responder chose what we did not offer", NotifyType.NO_PROPOSAL_CHOSEN
        )
    return selection.ike


def _announces_fragmentation(payloads: Sequence[Payload]) -> bool:
    return find_notify(payloads, _FRAGMENTATION_ANNOUNCED) is not None


class IkeSaInitInitiator:
    """The initiator's IKE_SA_INIT; retries on COOKIE and INVALID_KE_PAYLOAD (§2.6, §1.2)."""

    exchange_type = ExchangeType.IKE_SA_INIT

    def __init__(self, peer: PeerConfig) -> None:
        self._peer = peer
        self._groups = _acceptable_groups(peer.ike_proposals)
        self._group = self._groups[0]
        self._cookie: bytes | None = None
        self._cookie_retries = 0
        self._key_exchange: KeyExchange | None = None
        self._ni = b""

    def build_request(self, session: IkeSession, now: float) -> list[Payload]:
        sa = session.sa
        if self._key_exchange is None or self._key_exchange.group != self._group:
            self._key_exchange = session.endpoint.new_key_exchange(self._group)
        if not self._ni:
            self._ni = new_nonce(session)
        payloads: list[Payload] = []
        if self._cookie is not None:
            # §2.6: the COOKIE notify goes first, the rest unchanged.
            payloads.append(Notify.status(NotifyType.COOKIE, self._cookie))
        payloads += [
            offer(self._peer.ike_proposals),
            ke_payload(self._group, self._key_exchange.public_data),
            nonce_payload(self._ni),
        ]
        if session.endpoint.config.nat_detection:
            payloads += nat_detection_payloads(
                sa.spi_i, _ZERO_SPI, sa.local_address, sa.remote_address
            )
        if session.endpoint.config.fragmentation:
            payloads.append(_FRAGMENTATION_SUPPORTED)  # RFC 7383
        return payloads

    def process_response(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> Retry | None:
        received = notifies(payloads)  # walked once, then each question walks these only
        cookie = find_notify(received, _COOKIE)
        if cookie is not None:
            if self._cookie_retries >= _MAX_COOKIE_RETRIES:
                raise RemoteProtocolError("responder keeps demanding a COOKIE", NotifyType.COOKIE)
            self._cookie_retries += 1
            self._cookie = cookie.data
            return Retry(self.build_request(session, now))
        invalid_ke = find_notify(received, _INVALID_KE_PAYLOAD)
        if invalid_ke is not None:
            wanted = int.from_bytes(invalid_ke.data[:2], "big") if len(invalid_ke.data) >= 2 else 0
            if wanted not in self._groups or wanted == self._group:
                raise RemoteProtocolError(
                    f"responder wants group {wanted}", NotifyType.INVALID_KE_PAYLOAD
                )
            self._group = wanted
            return Retry(self.build_request(session, now))
        error = error_notify(received)
        if error is not None:
            raise RemoteProtocolError(
                f"IKE_SA_INIT refused: {error.notify_type}", error.notify_type
            )
        if message.spi_r == _ZERO_SPI:
            raise RemoteProtocolError(
                "IKE_SA_INIT response without SPIr", NotifyType.INVALID_SYNTAX
            )
        transforms = _single_choice(
            require(payloads, SecurityAssociation), self._peer.ike_proposals
        )
        ke = require(payloads, KePayload)
        assert self._key_exchange is not None
        if ke.group != transforms.dh or ke.group != self._group:
            raise RemoteProtocolError(
                "KEr group differs from the chosen one", NotifyType.INVALID_SYNTAX
            )
        nr = require(payloads, Nonce).data
        g_ir = self._key_exchange.shared_secret(ke.data)
        sa = session.sa
        sa.spi_r = message.spi_r
        # RFC 7383 §2.3: remembered per SA; used when we announced it too.
        sa.peer_fragmentation_supported = _announces_fragmentation(received)
        nat = detect_nat(received, sa.spi_i, sa.spi_r, sa.local_address, sa.remote_address)
        if nat is not None:
            sa.local_behind_nat, sa.remote_behind_nat = nat
        sa.transforms = transforms
        sa.keys = derive_ike_keys(transforms, g_ir, self._ni, nr, sa.spi_i, sa.spi_r)
        assert session.handshake is not None
        session.handshake.ni, session.handshake.nr = self._ni, nr
        session.transition(_INIT_DONE)
        session.install_keys()
        if sa.local_behind_nat or sa.remote_behind_nat or self._peer.mobike:
            session.float_to_nat_port()
        return None

    def abort(self, session: IkeSession, reason: str, now: float) -> None:
        """Nothing of ours outlives an unanswered IKE_SA_INIT."""


class IkeSaInitResponder:
    """The responder's IKE_SA_INIT. COOKIE is checked by the endpoint before this runs."""

    def process_request(
        self, session: IkeSession, message: IkeMessage, payloads: list[Payload], now: float
    ) -> list[Payload]:
        sa_payload = require(payloads, SecurityAssociation)
        ke = require(payloads, KePayload)
        ni = require(payloads, Nonce).data
        ours = session.endpoint.config.ike_proposals
        offered = proposals_for(sa_payload, _IKE)
        selection = select_proposal(offered, ours, prefer_dh=ke.group)
        if selection is None or selection.ike is None:
            raise RemoteProtocolError("no acceptable IKE proposal", NotifyType.NO_PROPOSAL_CHOSEN)
        transforms = selection.ike
        if ke.group != transforms.dh:
            # §1.2: the KE payload must use the group we chose; tell the initiator which.
            raise NotifyError(
                f"KEi group {ke.group}, selected {transforms.dh}",
                NotifyType.INVALID_KE_PAYLOAD,
                transforms.dh.to_bytes(2, "big"),
            )
        key_exchange = session.endpoint.new_key_exchange(transforms.dh)
        try:
            g_ir = key_exchange.shared_secret(ke.data)
        except RemoteProtocolError:
            raise DropMessage("KEi fails the RFC 6989 checks") from None
        nr = new_nonce(session)
        sa = session.sa
        sa.peer_fragmentation_supported = _announces_fragmentation(payloads)
        nat = detect_nat(payloads, sa.spi_i, _ZERO_SPI, sa.local_address, sa.remote_address)
        if nat is not None:
            sa.local_behind_nat, sa.remote_behind_nat = nat
        sa.transforms = transforms
        sa.keys = derive_ike_keys(transforms, g_ir, ni, nr, sa.spi_i, sa.spi_r)
        assert session.handshake is not None
        session.handshake.ni, session.handshake.nr = ni, nr
        response: list[Payload] = [
            answer(offered[selection.index], transforms, b""),
            ke_payload(transforms.dh, key_exchange.public_data),
            nonce_payload(nr),
        ]
        if nat is not None:
            # §2.23: NAT detection is answered when the initiator asked for it.
            response += nat_detection_payloads(
                sa.spi_i, sa.spi_r, sa.local_address, sa.remote_address
            )
        if sa.peer_fragmentation_supported and session.endpoint.config.fragmentation:
            # RFC 7383 §2.3: answered only to an initiator that announced it.
            response.append(_FRAGMENTATION_SUPPORTED)
        session.transition(_INIT_DONE)
        session.install_keys()
        return response
