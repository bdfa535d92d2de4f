"""The engine's seam to messages, payloads, SK protection and the key schedule.

INTERIM: the parser (ikecore.message / ikecore.payloads), the AEAD core (ikecore.aead) and
the key schedule (ikecore.keys) are built on other branches. Until they are merged, this module
implements the small subset the engine needs, with the names and attributes API.md gives those
modules, so that the exchanges never change when it turns into an adapter over them. Nothing
outside ikecore/session.py, ikecore/endpoint.py and ikecore/exchanges/ may import it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ikecore.config import TrafficSelector
from ikecore.constants import (
    IKE_HEADER_LENGTH,
    IKE_VERSION,
    KEY_PAD_FOR_IKEV2,
    EncrId,
    ExchangeType,
    HeaderFlag,
    PayloadType,
    PrfId,
    TsType,
)
from ikecore.errors import IntegrityError, MalformedMessage, RemoteProtocolError
from ikecore.suites import Transform, encr_key_length

__all__ = [
    "Authentication",
    "Delete",
    "Identification",
    "IkeMessage",
    "IkeSuite",
    "KeyExchange",
    "Nonce",
    "Notify",
    "Payload",
    "Proposal",
    "SecurityAssociation",
    "SkCipher",
    "TrafficSelectors",
    "UnknownPayload",
    "build_message",
    "child_keys",
    "ike_keys",
    "parse_message",
    "prf",
    "prf_plus",
    "psk_auth",
    "skeyseed",
    "skeyseed_rekey",
]


# ---------------------------------------------------------------------------------------------
# Payloads (RFC 7296 §3)


@dataclass(frozen=True, slots=True)
class Proposal:
    number: int
    protocol_id: int
    spi: bytes
    transforms: tuple[Transform, ...]


@dataclass(frozen=True, slots=True)
class SecurityAssociation:
    proposals: tuple[Proposal, ...]
    type: int = PayloadType.SA
    critical: bool = False


@dataclass(frozen=True, slots=True)
class KeyExchange:
    group: int
    data: bytes
    type: int = PayloadType.KE
    critical: bool = False


@dataclass(frozen=True, slots=True)
class Nonce:
    data: bytes
    type: int = PayloadType.NONCE
    critical: bool = False


@dataclass(frozen=True, slots=True)
class Notify:
    notify_type: int
    data: bytes = b""
    protocol_id: int = 0
    spi: bytes = b""
    type: int = PayloadType.NOTIFY
    critical: bool = False


@dataclass(frozen=True, slots=True)
class Identification:
    """IDi or IDr (``type``); ``body`` is ID Type | RESERVED | data, what AUTH MACs."""

    id_type: int
    data: bytes
    type: int = PayloadType.IDI
    critical: bool = False

    @property
    def body(self) -> bytes:
        return bytes([self.id_type, 0, 0, 0]) + self.data


@dataclass(frozen=True, slots=True)
class Authentication:
    method: int
    data: bytes
    type: int = PayloadType.AUTH
    critical: bool = False


@dataclass(frozen=True, slots=True)
class TrafficSelectors:
    selectors: tuple[TrafficSelector, ...]
    type: int = PayloadType.TSI
    critical: bool = False


@dataclass(frozen=True, slots=True)
class Delete:
    protocol_id: int
    spis: tuple[bytes, ...] = ()
    type: int = PayloadType.DELETE
    critical: bool = False


@dataclass(frozen=True, slots=True)
class UnknownPayload:
    type: int
    data: bytes
    critical: bool = False


Payload = (
    SecurityAssociation
    | KeyExchange
    | Nonce
    | Notify
    | Identification
    | Authentication
    | TrafficSelectors
    | Delete
    | UnknownPayload
)


@dataclass(slots=True)
class IkeMessage:
    spi_i: bytes
    spi_r: bytes
    exchange: int
    is_initiator: bool
    is_response: bool
    message_id: int
    payloads: list[Payload] = field(default_factory=list)
    raw: bytes = b""
    # Offset of the SK payload's generic header in ``raw`` (None for an unprotected message).
    sk_offset: int | None = None
    sk_first_payload: int = 0


# ---------------------------------------------------------------------------------------------
# Decoding

_KEY_LENGTH_ATTRIBUTE: Final = 0x800E


def _decode_sa(body: bytes, base: int) -> SecurityAssociation:
    proposals: list[Proposal] = []
    pos = 0
    while pos < len(body):
        if len(body) - pos < 8:
            raise MalformedMessage("truncated proposal", base + pos)
        last, _, length, number, protocol, spi_size, count = struct.unpack_from(
            "!BBHBBBB", body, pos
        )
        if length < 8 + spi_size or pos + length > len(body):
            raise MalformedMessage("bad proposal length", base + pos)
        spi = body[pos + 8 : pos + 8 + spi_size]
        tpos, end = pos + 8 + spi_size, pos + length
        transforms: list[Transform] = []
        for _ in range(count):
            if end - tpos < 8:
                raise MalformedMessage("truncated transform", base + tpos)
            _, _, tlen, ttype, _, tid = struct.unpack_from("!BBHBBH", body, tpos)
            if tlen < 8 or tpos + tlen > end:
                raise MalformedMessage("bad transform length", base + tpos)
            key_length = None
            apos = tpos + 8
            while apos < tpos + tlen:
                if tpos + tlen - apos < 4:
                    raise MalformedMessage("truncated attribute", base + apos)
                kind, value = struct.unpack_from("!HH", body, apos)
                if kind & 0x8000:
                    if kind == _KEY_LENGTH_ATTRIBUTE:
                        key_length = value
                    apos += 4
                else:
                    apos += 4 + value
            if apos != tpos + tlen:
                raise MalformedMessage("attribute overruns transform", base + apos)
            transforms.append(Transform(ttype, tid, key_length))
            tpos += tlen
        if tpos != end:
            raise MalformedMessage("transforms do not fill the proposal", base + tpos)
        proposals.append(Proposal(number, protocol, spi, tuple(transforms)))
        pos = end
        if last == 0:
            break
    if pos != len(body):
        raise MalformedMessage("data after the last proposal", base + pos)
    return SecurityAssociation(tuple(proposals))


def _decode_ts(body: bytes, kind: int, base: int) -> TrafficSelectors:
    if len(body) < 4:
        raise MalformedMessage("truncated TS payload", base)
    count = body[0]
    pos = 4
    selectors: list[TrafficSelector] = []
    for _ in range(count):
        if len(body) - pos < 8:
            raise MalformedMessage("truncated selector", base + pos)
        ts_type, proto, length, start_port, end_port = struct.unpack_from("!BBHHH", body, pos)
        size = {TsType.IPV4_ADDR_RANGE: 4, TsType.IPV6_ADDR_RANGE: 16}.get(ts_type)
        if size is None or length != 8 + 2 * size or pos + length > len(body):
            raise MalformedMessage("bad selector", base + pos)
        start = ipaddress.ip_address(body[pos + 8 : pos + 8 + size])
        end = ipaddress.ip_address(body[pos + 8 + size : pos + 8 + 2 * size])
        selectors.append(TrafficSelector(str(start), str(end), proto, start_port, end_port))
        pos += length
    if pos != len(body):
        raise MalformedMessage("data after the last selector", base + pos)
    return TrafficSelectors(tuple(selectors), kind)


def _decode_payload(kind: int, critical: bool, body: bytes, base: int) -> Payload:
    if kind == PayloadType.SA:
        return _decode_sa(body, base)
    if kind == PayloadType.KE:
        if len(body) < 4:
            raise MalformedMessage("truncated KE payload", base)
        return KeyExchange(struct.unpack_from("!H", body)[0], body[4:])
    if kind == PayloadType.NONCE:
        if not 16 <= len(body) <= 256:
            raise MalformedMessage("nonce length outside 16..256", base)
        return Nonce(body)
    if kind == PayloadType.NOTIFY:
        if len(body) < 4:
            raise MalformedMessage("truncated notify", base)
        protocol, spi_size, notify_type = struct.unpack_from("!BBH", body)
        if 4 + spi_size > len(body):
            raise MalformedMessage("notify SPI overruns payload", base)
        return Notify(notify_type, body[4 + spi_size :], protocol, body[4 : 4 + spi_size])
    if kind in (PayloadType.IDI, PayloadType.IDR):
        if len(body) < 4:
            raise MalformedMessage("truncated ID payload", base)
        return Identification(body[0], body[4:], kind)
    if kind == PayloadType.AUTH:
        if len(body) < 4:
            raise MalformedMessage("truncated AUTH payload", base)
        return Authentication(body[0], body[4:])
    if kind in (PayloadType.TSI, PayloadType.TSR):
        return _decode_ts(body, kind, base)
    if kind == PayloadType.DELETE:
        if len(body) < 4:
            raise MalformedMessage("truncated Delete payload", base)
        protocol, spi_size, count = struct.unpack_from("!BBH", body)
        if len(body) != 4 + spi_size * count:
            raise MalformedMessage("Delete SPI count does not match its length", base)
        spis = tuple(body[4 + i * spi_size : 4 + (i + 1) * spi_size] for i in range(count))
        return Delete(protocol, spis)
    if critical:
        raise RemoteProtocolError(f"unsupported critical payload {kind}", 1)
    return UnknownPayload(kind, body, critical)


def _decode_chain(data: bytes, first: int, start: int, end: int) -> tuple[list[Payload], int]:
    """Payloads from ``start``; stops at SK (returns its offset) or at the chain's end."""
    payloads: list[Payload] = []
    kind, pos = first, start
    while kind != PayloadType.NONE:
        if kind in (PayloadType.SK, PayloadType.SKF):
            return payloads, pos
        if end - pos < 4:
            raise MalformedMessage("truncated payload header", pos)
        next_kind, flags, length = struct.unpack_from("!BBH", data, pos)
        if length < 4 or pos + length > end:
            raise MalformedMessage("bad payload length", pos + 2)
        payloads.append(
            _decode_payload(kind, bool(flags & 0x80), data[pos + 4 : pos + length], pos + 4)
        )
        kind, pos = next_kind, pos + length
    if pos != end:
        raise MalformedMessage("data after the last payload", pos)
    return payloads, -1


def parse_message(data: bytes) -> IkeMessage:
    """Header and unprotected payloads; an SK payload is left for `SkCipher.open`."""
    data = bytes(data)
    if len(data) < IKE_HEADER_LENGTH:
        raise MalformedMessage("shorter than an IKE header", 0)
    spi_i, spi_r, first, version, exchange, flags, message_id, length = struct.unpack_from(
        "!8s8sBBBBII", data
    )
    if version >> 4 != 2:
        raise MalformedMessage("not IKEv2", 17)
    if length != len(data):
        raise MalformedMessage("header length does not match the datagram", 24)
    payloads, sk_offset = _decode_chain(data, first, IKE_HEADER_LENGTH, len(data))
    message = IkeMessage(
        spi_i,
        spi_r,
        exchange,
        bool(flags & HeaderFlag.INITIATOR),
        bool(flags & HeaderFlag.RESPONSE),
        message_id,
        payloads,
        data,
    )
    if sk_offset >= 0:
        if len(data) - sk_offset < 4:
            raise MalformedMessage("truncated SK payload", sk_offset)
        next_kind, _, sk_length = struct.unpack_from("!BBH", data, sk_offset)
        if sk_offset + sk_length != len(data):
            raise MalformedMessage("SK payload is not last", sk_offset)
        message.sk_offset = sk_offset
        message.sk_first_payload = next_kind
    return message


# ---------------------------------------------------------------------------------------------
# Encoding


def _encode_transform(t: Transform, last: bool) -> bytes:
    attributes = b""
    if t.key_length is not None:
        attributes = struct.pack("!HH", _KEY_LENGTH_ATTRIBUTE, t.key_length)
    return struct.pack("!BBHBBH", 0 if last else 3, 0, 8 + len(attributes), t.type, 0, t.id) + (
        attributes
    )


def _encode_body(p: Payload) -> bytes:
    if isinstance(p, SecurityAssociation):
        out = b""
        for index, proposal in enumerate(p.proposals):
            transforms = b"".join(
                _encode_transform(t, i == len(proposal.transforms) - 1)
                for i, t in enumerate(proposal.transforms)
            )
            last = index == len(p.proposals) - 1
            length = 8 + len(proposal.spi) + len(transforms)
            out += struct.pack(
                "!BBHBBBB",
                0 if last else 2,
                0,
                length,
                proposal.number,
                proposal.protocol_id,
                len(proposal.spi),
                len(proposal.transforms),
            )
            out += proposal.spi + transforms
        return out
    if isinstance(p, KeyExchange):
        return struct.pack("!HH", p.group, 0) + p.data
    if isinstance(p, Nonce):
        return p.data
    if isinstance(p, Notify):
        return struct.pack("!BBH", p.protocol_id, len(p.spi), p.notify_type) + p.spi + p.data
    if isinstance(p, Identification):
        return p.body
    if isinstance(p, Authentication):
        return bytes([p.method, 0, 0, 0]) + p.data
    if isinstance(p, TrafficSelectors):
        out = bytes([len(p.selectors), 0, 0, 0])
        for ts in p.selectors:
            start, end = ipaddress.ip_address(ts.start), ipaddress.ip_address(ts.end)
            kind = TsType.IPV4_ADDR_RANGE if start.version == 4 else TsType.IPV6_ADDR_RANGE
            out += struct.pack(
                "!BBHHH",
                kind,
                ts.ip_protocol,
                8 + 2 * len(start.packed),
                ts.start_port,
                ts.end_port,
            )
            out += start.packed + end.packed
        return out
    if isinstance(p, Delete):
        size = len(p.spis[0]) if p.spis else 0
        return struct.pack("!BBH", p.protocol_id, size, len(p.spis)) + b"".join(p.spis)
    return p.data


def encode_payloads(payloads: Sequence[Payload], next_after: int = 0) -> tuple[int, bytes]:
    """(type of the first payload, the chained payloads)."""
    out = b""
    for index, payload in enumerate(payloads):
        following = payloads[index + 1].type if index + 1 < len(payloads) else next_after
        body = _encode_body(payload)
        out += struct.pack("!BBH", following, 0x80 if payload.critical else 0, 4 + len(body))
        out += body
    return (payloads[0].type if payloads else next_after), out


def _header(
    spi_i: bytes,
    spi_r: bytes,
    first: int,
    exchange: int,
    *,
    initiator: bool,
    response: bool,
    message_id: int,
    length: int,
) -> bytes:
    flags = (HeaderFlag.INITIATOR if initiator else 0) | (HeaderFlag.RESPONSE if response else 0)
    return struct.pack(
        "!8s8sBBBBII", spi_i, spi_r, first, IKE_VERSION, exchange, flags, message_id, length
    )


def build_message(
    spi_i: bytes,
    spi_r: bytes,
    exchange: ExchangeType,
    *,
    initiator: bool,
    response: bool,
    message_id: int,
    payloads: Sequence[Payload],
    cipher: SkCipher | None = None,
    iv: int = 0,
) -> bytes:
    """A complete IKE message; with ``cipher`` the payloads go inside an SK payload."""
    if cipher is None:
        first, body = encode_payloads(payloads)
        head = _header(
            spi_i,
            spi_r,
            first,
            exchange,
            initiator=initiator,
            response=response,
            message_id=message_id,
            length=IKE_HEADER_LENGTH + len(body),
        )
        return head + body
    inner_first, inner = encode_payloads(payloads)
    plaintext = inner + b"\x00"  # no padding, Pad Length 0 (RFC 5282 §3)
    sk_length = 4 + 8 + len(plaintext) + cipher.icv_length
    head = _header(
        spi_i,
        spi_r,
        PayloadType.SK,
        exchange,
        initiator=initiator,
        response=response,
        message_id=message_id,
        length=IKE_HEADER_LENGTH + sk_length,
    )
    aad = head + struct.pack("!BBH", inner_first, 0, sk_length)
    iv8 = iv.to_bytes(8, "big")
    return aad + iv8 + cipher.seal(iv8, aad, plaintext)


class SkCipher:
    """The AEAD of one direction of an IKE SA (RFC 5282): key | 4-byte salt."""

    def __init__(self, encr: int, key_and_salt: bytes, icv_length: int) -> None:
        self._salt = key_and_salt[-4:]
        self.icv_length = icv_length
        if encr == EncrId.CHACHA20_POLY1305:
            self._aead: AESGCM | ChaCha20Poly1305 = ChaCha20Poly1305(key_and_salt[:-4])
        elif encr == EncrId.AES_GCM_16:
            self._aead = AESGCM(key_and_salt[:-4])
        else:
            raise ValueError(f"interim SK cipher supports GCM-16 and ChaCha20 only, not {encr}")

    def seal(self, iv8: bytes, aad: bytes, plaintext: bytes) -> bytes:
        return self._aead.encrypt(self._salt + iv8, plaintext, aad)

    def open(self, message: IkeMessage) -> list[Payload]:
        """The inner payloads of the SK payload; IntegrityError if the ICV fails."""
        if message.sk_offset is None:
            raise MalformedMessage("no SK payload", IKE_HEADER_LENGTH)
        raw, sk = message.raw, message.sk_offset
        if len(raw) - sk < 4 + 8 + self.icv_length + 1:
            raise MalformedMessage("SK payload too short", sk)
        aad, iv8, sealed = raw[: sk + 4], raw[sk + 4 : sk + 12], raw[sk + 12 :]
        try:
            plaintext = self._aead.decrypt(self._salt + iv8, sealed, aad)
        except InvalidTag:
            raise IntegrityError() from None
        pad = plaintext[-1]
        if pad + 1 > len(plaintext):
            raise MalformedMessage("SK padding longer than the plaintext", sk)
        inner = plaintext[: -1 - pad]
        payloads, _ = _decode_chain(inner, message.sk_first_payload, 0, len(inner))
        return payloads


# ---------------------------------------------------------------------------------------------
# Key schedule (RFC 7296 §2.13-2.18), HMAC PRFs only

_HASHES: Final[dict[int, Callable[[], Any]]] = {
    PrfId.HMAC_SHA2_256: hashlib.sha256,
    PrfId.HMAC_SHA2_384: hashlib.sha384,
    PrfId.HMAC_SHA2_512: hashlib.sha512,
}


def prf(prf_id: int, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, _HASHES[prf_id]).digest()


def prf_plus(prf_id: int, key: bytes, seed: bytes, length: int) -> bytes:
    # prf+ (K,S) = T1 | T2 | ...; T1 = prf(K, S | 0x01); Tn = prf(K, Tn-1 | S | n)
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = prf(prf_id, key, block + seed + bytes([counter]))
        out += block
        counter += 1
    return out[:length]


def prf_key_length(prf_id: int) -> int:
    return int(_HASHES[prf_id]().digest_size)


def skeyseed(prf_id: int, ni: bytes, nr: bytes, g_ir: bytes) -> bytes:
    # SKEYSEED = prf(Ni | Nr, g^ir)
    return prf(prf_id, ni + nr, g_ir)


def skeyseed_rekey(old_prf_id: int, sk_d_old: bytes, g_ir: bytes, ni: bytes, nr: bytes) -> bytes:
    # SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
    return prf(old_prf_id, sk_d_old, g_ir + ni + nr)


@dataclass(frozen=True, slots=True)
class IkeKeys:
    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes


@dataclass(frozen=True, slots=True)
class IkeSuite:
    encr: int
    key_bits: int | None
    prf: int
    integ: int | None = None
    dh: int | None = None


def ike_keys(
    suite: IkeSuite, seed: bytes, ni: bytes, nr: bytes, spi_i: bytes, spi_r: bytes
) -> IkeKeys:
    # {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
    #     = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)
    p = prf_key_length(suite.prf)
    e = encr_key_length(suite.encr, suite.key_bits)
    lengths = (p, 0, 0, e, e, p, p)
    stream = prf_plus(suite.prf, seed, ni + nr + spi_i + spi_r, sum(lengths))
    parts, pos = [], 0
    for n in lengths:
        parts.append(stream[pos : pos + n])
        pos += n
    return IkeKeys(*parts)


@dataclass(frozen=True, slots=True)
class ChildKeys:
    encr_i: bytes
    integ_i: bytes
    encr_r: bytes
    integ_r: bytes


def child_keys(
    prf_id: int,
    sk_d: bytes,
    ni: bytes,
    nr: bytes,
    encr_key_len: int,
    integ_key_len: int,
    g_ir: bytes | None = None,
) -> ChildKeys:
    # KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr)
    seed = (g_ir or b"") + ni + nr
    keymat = prf_plus(prf_id, sk_d, seed, 2 * encr_key_len)
    return ChildKeys(keymat[:encr_key_len], b"", keymat[encr_key_len:], b"")


def psk_auth(prf_id: int, psk: bytes, signed_octets: bytes) -> bytes:
    # AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
    return prf(prf_id, prf(prf_id, psk, KEY_PAD_FOR_IKEV2), signed_octets)
