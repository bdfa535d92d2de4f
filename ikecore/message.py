"""IKE messages (RFC 7296 §3.1) over the native index of ``ikecore._fast.ikemsg``.

``parse_message`` validates the whole message in one native call (header, payload chain and
every payload body) and keeps the bytes, the header fields and a compact index; typed payload
objects are made on first access (``payloads`` decodes all in one native call, ``find`` one).
Payload numbers are plain ints (compare them with the IntEnums of ``ikecore.constants``).

Building: ``encode_message`` / ``encode_payload_chain`` serialize payload objects natively.
For an SK payload the engine encrypts the inner chain and needs the AAD (RFC 5282 §5.1: from the
IKE header to the end of the SK payload header), which is the encoded message without the SK
body: ``encode_message(..., [*clear, Encrypted(first, bytes(n))])[:-n]``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

from ikecore._fast import ikemsg as _ikemsg
from ikecore.constants import PayloadType
from ikecore.payloads import (
    PAYLOAD_CLASSES,
    PAYLOAD_TYPE_OF,
    Authentication,
    Encrypted,
    EncryptedFragment,
    KeyExchange,
    Nonce,
    Notify,
    Payload,
    Proposal,
    SecurityAssociation,
    Transform,
    UnsupportedCriticalPayload,
)

__all__ = [
    "IkeMessage",
    "PayloadChain",
    "auth_payload",
    "encode_message",
    "encode_payload_chain",
    "ke_payload",
    "nonce_payload",
    "parse_message",
    "parse_payload_chain",
    "proposal",
    "sa_payload",
    "status_notify",
]

P = TypeVar("P")
BytesLike = bytes | bytearray | memoryview

_RESPONSE = 0x20  # header flags, RFC 7296 §3.1 (plain ints: IntFlag arithmetic is slow)
_INITIATOR = 0x08
# Bound once: an Enum class attribute read takes the slow path of a metaclass with __getattr__.
_SK = int(PayloadType.SK)
_SKF = int(PayloadType.SKF)
# One index entry's first two native uint32 words (type | C << 8 | next << 16, offset), read in
# place: a memoryview cast costs twice as much for the one entry the engine asks about.
_ENTRY_HEAD = struct.Struct("=II")


class PayloadChain:
    """A validated payload chain: the payloads of a message, or a decrypted inner chain.

    Made only by ``parse_message`` / ``parse_payload_chain``; read-only.
    """

    __slots__ = ("_base", "_data", "_index", "_payloads")

    _data: bytes
    _index: bytes  # per payload 3 native uint32: type | C << 8 | next << 16, offset, length
    _base: int
    _payloads: list[Payload] | None

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is read-only")

    if TYPE_CHECKING:

        @property
        def payloads(self) -> list[Payload]:
            """All payloads, decoded on first access (the list is shared: do not modify it)."""

    else:
        payloads = _ikemsg.PayloadsAttribute()

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The payload types in order, read from the index without decoding anything."""
        words = memoryview(self._index).cast("I")
        return tuple(words[i] & 0xFF for i in range(0, len(words), 3))

    def __len__(self) -> int:
        return len(self._index) // 12

    def find(self, kind: type[P]) -> P | None:
        """The first payload of class ``kind``; before ``payloads`` was read, only that payload
        is decoded (when the class fixes the payload type)."""
        payload_type = PAYLOAD_TYPE_OF.get(kind)
        if self._payloads is None and payload_type is not None:
            for position, found in enumerate(self.payload_types):
                if found == payload_type:
                    payload = _ikemsg.decode_payload(self._data, self._index, position, self._base)
                    assert isinstance(payload, kind)
                    return payload
            return None
        for payload in self.payloads:
            if isinstance(payload, kind):
                return payload
        return None

    def find_all(self, kind: type[P]) -> list[P]:
        return [p for p in self.payloads if isinstance(p, kind)]

    def notifies(self, notify_type: int | None = None) -> list[Notify]:
        """All Notify payloads, or those of one notify type."""
        return [
            p
            for p in self.payloads
            if isinstance(p, Notify) and (notify_type is None or p.notify_type == notify_type)
        ]

    def notify(self, notify_type: int) -> Notify | None:
        """The first Notify of ``notify_type``, or None."""
        for p in self.payloads:
            if isinstance(p, Notify) and p.notify_type == notify_type:
                return p
        return None

    def to_bytes(self) -> bytes:
        return self._data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PayloadChain) and type(other) is type(self) and (
            self._data == other._data
        )

    def __hash__(self) -> int:
        return hash(self._data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.payloads!r})"


class IkeMessage(PayloadChain):
    """A parsed IKE message (RFC 7296 §3.1). ``to_bytes()`` returns the received bytes."""

    __slots__ = ("exchange", "flags", "is_initiator", "is_response", "message_id", "spi_i", "spi_r")

    spi_i: bytes
    spi_r: bytes
    exchange: int
    flags: int
    message_id: int
    is_initiator: bool  # the I flag: sent by the original initiator of the IKE SA
    is_response: bool  # the R flag

    @property
    def next_payload(self) -> int:
        return self._data[16]

    @property
    def major_version(self) -> int:
        return self._data[17] >> 4

    @property
    def minor_version(self) -> int:
        return self._data[17] & 0x0F

    @property
    def length(self) -> int:
        return len(self._data)

    def _last(self) -> tuple[int, int]:
        index = self._index
        if not index:
            return 0, 0
        word, offset = _ENTRY_HEAD.unpack_from(index, len(index) - 12)
        return word & 0xFF, offset

    @property
    def last_payload_type(self) -> int:
        """The type of the last payload (SK or SKF in a protected message), read from the
        index without decoding anything; 0 for a message without payloads."""
        index = self._index
        return _ENTRY_HEAD.unpack_from(index, len(index) - 12)[0] & 0xFF if index else 0

    @property
    def encrypted(self) -> Encrypted | EncryptedFragment | None:
        """The SK or SKF payload (always the last one), or None."""
        last, _ = self._last()
        if last == _SK:
            return self.find(Encrypted)
        if last == _SKF:
            return self.find(EncryptedFragment)
        return None

    @property
    def encrypted_aad(self) -> bytes:
        """The AAD of the SK/SKF payload: the message up to the end of the SK payload header
        (RFC 5282 §5.1), with the SKF Fragment Number and Total Fragments (RFC 7383 §2.5).
        Raises LookupError when the message has no encrypted payload."""
        last, offset = self._last()
        if last == _SK:
            return self._data[: offset + 4]
        if last == _SKF:
            return self._data[: offset + 8]
        raise LookupError("message has no encrypted payload")

    def __repr__(self) -> str:
        return (
            f"IkeMessage(exchange={self.exchange}, message_id={self.message_id}, "
            f"spi_i={self.spi_i.hex()}, spi_r={self.spi_r.hex()}, flags={self.flags:#04x}, "
            f"payloads={self.payloads!r})"
        )


_ikemsg.bind_classes(
    {**PAYLOAD_CLASSES, "PayloadChain": PayloadChain, "IkeMessage": IkeMessage},
    UnsupportedCriticalPayload,
)


# parse_message(data) -> IkeMessage: validate an IKE message and index its payloads (RFC 7296
# §3). Raises MalformedMessage (with ``.offset``) for anything not well formed, and
# UnsupportedCriticalPayload (a RemoteProtocolError carrying UNSUPPORTED_CRITICAL_PAYLOAD, with
# ``.payload_type`` and ``.offset``) for a well-formed message with a critical payload of an
# unknown type (§2.5); TypeError when ``data`` is not bytes-like. It is the native function
# itself: a Python wrapper would cost a tenth of the whole parse.
parse_message: Callable[[BytesLike], IkeMessage] = _ikemsg.parse_message


# parse_payload_chain(first_type, data, base_offset=0) -> PayloadChain: validate a decrypted
# inner chain; ``first_type`` is the SK payload's Next Payload, ``base_offset`` is added to
# error offsets (where the plaintext sits in the message). Same errors as parse_message.
parse_payload_chain: Callable[..., PayloadChain] = _ikemsg.parse_payload_chain


# status_notify(notify_type, data) -> Notify: Notify(protocol 0, no SPI, notify_type, data) to
# send, built natively (its slots filled as decoding fills them: a third of what the frozen
# dataclass's __init__ costs; two are made per IKE_SA_INIT message). TypeError / ValueError for
# a notify type that is not an int of 16 bits or data that is not bytes.
status_notify: Callable[[int, bytes], Notify] = _ikemsg.status_notify

# The other payloads the engine sends in every handshake, built natively the same way, with the
# dataclass's arguments (TypeError for an argument of the wrong type): Nonce(data),
# KeyExchange(group, data), Authentication(method, data), Proposal(number, protocol_id, spi,
# transforms), SecurityAssociation(proposals).
nonce_payload: Callable[[bytes], Nonce] = _ikemsg.nonce_payload
ke_payload: Callable[[int, bytes], KeyExchange] = _ikemsg.ke_payload
auth_payload: Callable[[int, bytes], Authentication] = _ikemsg.auth_payload
proposal: Callable[[int, int, bytes, tuple[Transform, ...]], Proposal] = _ikemsg.proposal
sa_payload: Callable[[tuple[Proposal, ...]], SecurityAssociation] = _ikemsg.sa_payload


def encode_payload_chain(payloads: list[Payload] | tuple[Payload, ...]) -> tuple[int, bytes]:
    """Serialize payloads: (type of the first payload, 0 when empty; the bytes). The first type
    goes in the Next Payload field of the IKE header or of the SK payload."""
    result: tuple[int, bytes] = _ikemsg.encode_payloads(payloads)
    return result


def encode_message(
    spi_i: bytes,
    spi_r: bytes,
    exchange: int,
    message_id: int,
    payloads: list[Payload] | tuple[Payload, ...],
    *,
    initiator: bool,
    response: bool,
) -> bytes:
    """Serialize an IKE message: version 2.0, Length computed, only the I and R flags set as
    asked (RFC 7296 §3.1: V and X bits zero on send)."""
    flags = (_INITIATOR if initiator else 0) | (_RESPONSE if response else 0)
    data: bytes = _ikemsg.encode_message(spi_i, spi_r, exchange, flags, message_id, payloads)
    return data


