"""The engine's seam to messages, payloads, SK protection and the key schedule.

The exchanges and the session import what they use of ``ikecore.payloads``,
``ikecore.message``, ``ikecore.aead`` and ``ikecore.keys`` from here, plus the few steps that
join them: building a (protected) message, opening an SK payload into its inner payloads, and
converting traffic selectors between the policy form (`ikecore.config.TrafficSelector`, text
addresses) and the wire form (`ikecore.payloads.TrafficSelector`, packed addresses).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

from ikecore import config
from ikecore.aead import IkeCipher
from ikecore.cache import IdentityCache
from ikecore.constants import EncrId, TsType
from ikecore.errors import MalformedMessage
from ikecore.fragmentation import build_protected
from ikecore.keys import (
    IkeSuite,
    child_keys,
    ike_keys,
    ike_keys_initial,
    ike_keys_rekey,
    prf,
    psk_auth,
    shared_suite,
    skeyseed,
    skeyseed_rekey,
)
from ikecore.message import (
    IkeMessage,
    auth_payload,
    encode_message,
    ke_payload,
    nonce_payload,
    parse_message,
    parse_payload_chain,
    proposal,
    sa_payload,
    status_notify,
)
from ikecore.payloads import (
    Authentication,
    Delete,
    IDi,
    IDr,
    KeyExchange,
    Nonce,
    Notify,
    Payload,
    Proposal,
    SecurityAssociation,
    TrafficSelector,
    Transform,
    TSi,
    TSr,
)
from ikecore.suites import EspTransforms, IkeTransforms
from ikecore.suites import Transform as PolicyTransform

__all__ = [
    "Authentication",
    "Delete",
    "IDi",
    "IDr",
    "IkeCipher",
    "IkeMessage",
    "IkeSuite",
    "KeyExchange",
    "Nonce",
    "Notify",
    "Payload",
    "Proposal",
    "SecurityAssociation",
    "TSi",
    "TSr",
    "aead_algorithm",
    "auth_payload",
    "build_message",
    "child_keys",
    "id_body",
    "ike_cipher",
    "ike_keys",
    "ike_keys_initial",
    "ike_keys_rekey",
    "ke_payload",
    "negotiated_wire_transforms",
    "nonce_payload",
    "open_message",
    "parse_message",
    "prf",
    "proposal",
    "psk_auth",
    "sa_payload",
    "selectors_from_wire",
    "selectors_to_wire",
    "shared_suite",
    "skeyseed",
    "skeyseed_rekey",
    "status_notify",
    "wire_transforms",
]

_SK_HEADER_LENGTH = 4
_IV_LENGTH = 8


# Bound once: an Enum class attribute read takes the slow path of a metaclass with __getattr__.
_CHACHA20_POLY1305 = int(EncrId.CHACHA20_POLY1305)


def aead_algorithm(encr: int) -> Literal["aes-gcm", "chacha20-poly1305"]:
    """The AEAD core's name for an ENCR transform (AES-GCM-8/12/16 or ChaCha20-Poly1305)."""
    return "chacha20-poly1305" if encr == _CHACHA20_POLY1305 else "aes-gcm"


def ike_cipher(encr: int, key_and_salt: bytes, icv_length: int, iv_counter: int) -> IkeCipher:
    """The SK cipher of one direction; ``iv_counter`` continues a restored SA's IVs."""
    return IkeCipher(
        key_and_salt, icv_length, algorithm=aead_algorithm(encr), iv_counter=iv_counter
    )


def build_message(
    spi_i: bytes,
    spi_r: bytes,
    exchange: int,
    *,
    initiator: bool,
    response: bool,
    message_id: int,
    payloads: Sequence[Payload],
    cipher: IkeCipher | None = None,
) -> bytes:
    """A complete IKE message; with ``cipher`` the payloads go inside an SK payload
    (RFC 5282 §5: the AAD is the header through the SK payload header, sealed natively)."""
    chain = payloads if isinstance(payloads, (list, tuple)) else list(payloads)
    if cipher is None:
        return encode_message(
            spi_i, spi_r, exchange, message_id, chain, initiator=initiator, response=response
        )
    (sealed,) = build_protected(
        cipher,
        spi_i,
        spi_r,
        exchange,
        initiator=initiator,
        response=response,
        message_id=message_id,
        payloads=chain,
        max_length=None,
    )
    return sealed


def open_message(cipher: IkeCipher, message: IkeMessage) -> list[Payload]:
    """The inner payloads of the SK payload: IntegrityError for a bad ICV, MalformedMessage
    (or UnsupportedCriticalPayload) for a bad inner chain."""
    try:
        aad_length = len(message.encrypted_aad)
    except LookupError:
        raise MalformedMessage("no Encrypted payload", 28) from None
    offset = aad_length - _SK_HEADER_LENGTH
    first, inner = cipher.open_sk(message.to_bytes(), offset)
    chain = parse_payload_chain(first, inner, offset + _SK_HEADER_LENGTH + _IV_LENGTH)
    return list(chain.payloads)


def id_body(payload: IDi | IDr) -> bytes:
    """RFC 7296 §2.15: IDx' = ID Type | RESERVED | Identification Data (what AUTH MACs)."""
    return bytes((payload.id_type, 0, 0, 0)) + payload.data


def _payload_transforms(transforms: tuple[PolicyTransform, ...]) -> tuple[Transform, ...]:
    return tuple(Transform(t.type, t.id, t.key_length) for t in transforms)


# Payload transforms for configured ones (immutable, so made once per proposal).
wire_transforms = IdentityCache(_payload_transforms)


# Per negotiated choice, keyed by plain tuples (a dataclass's __hash__ and __eq__ run in
# Python). Only what our proposals accept is ever negotiated, so these stay small.
_answers: dict[tuple[bool, int, int | None, int | bool, int], tuple[Transform, ...]] = {}


def negotiated_wire_transforms(negotiated: IkeTransforms | EspTransforms) -> tuple[Transform, ...]:
    """The payload transforms of a negotiated choice (the responder's SA payload)."""
    if isinstance(negotiated, IkeTransforms):
        key = (True, negotiated.encr, negotiated.key_bits, negotiated.prf, negotiated.dh)
    else:
        key = (False, negotiated.encr, negotiated.key_bits, negotiated.esn, negotiated.dh)
    transforms = _answers.get(key)
    if transforms is None:
        transforms = _answers[key] = _payload_transforms(negotiated.transforms())
    return transforms


def selectors_to_wire(selectors: Sequence[config.TrafficSelector]) -> tuple[TrafficSelector, ...]:
    return _to_wire(tuple(selectors))


def selectors_from_wire(selectors: Sequence[TrafficSelector]) -> tuple[config.TrafficSelector, ...]:
    return _from_wire(tuple(selectors))


# Both conversions are cached: a gateway sees the same few selectors in every exchange, and
# both forms are immutable.
@functools.lru_cache(maxsize=256)
def _to_wire(selectors: tuple[config.TrafficSelector, ...]) -> tuple[TrafficSelector, ...]:
    return tuple(
        TrafficSelector(
            TsType.IPV4_ADDR_RANGE if ts.version == 4 else TsType.IPV6_ADDR_RANGE,
            ts.ip_protocol,
            ts.start_port,
            ts.end_port,
            ts.packed_start,
            ts.packed_end,
        )
        for ts in selectors
    )


@functools.lru_cache(maxsize=256)
def _from_wire(selectors: tuple[TrafficSelector, ...]) -> tuple[config.TrafficSelector, ...]:
    return tuple(
        config.TrafficSelector.from_packed(
            ts.start_address, ts.end_address, ts.ip_protocol, ts.start_port, ts.end_port
        )
        for ts in selectors
    )
