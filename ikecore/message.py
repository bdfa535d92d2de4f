"""IKE messages (RFC 7296 §3.1) over the native index of ``ikecore._fast.ikemsg``.

``parse_message`` validates the whole message in one native call (header, payload chain and
every payload body) and keeps only the bytes and a compact index; typed payload objects are made
on first access (``payloads``, or one at a time with ``find``). Payload numbers are plain ints.

Building: ``encode_message`` / ``encode_payload_chain`` serialize payload objects natively.
For an SK payload the engine encrypts the inner chain and needs the AAD (RFC 5282 §5.1: from the
IKE header to the end of the SK payload header), which is the encoded message without the SK
body: ``encode_message(..., [*clear, Encrypted(first, bytes(n))])[:-n]``.
"""

from __future__ import annotations

from typing import TypeVar, Union

from ikecore._fast import ikemsg as _ikemsg
from ikecore.constants import HeaderFlag, PayloadType
from ikecore.payloads import Encrypted, EncryptedFragment, Notify, Payload

__all__ = [
    "IkeMessage",
    "PayloadChain",
    "encode_message",
    "encode_payload_chain",
    "parse_message",
    "parse_payload_chain",
]

P = TypeVar("P")
BytesLike = Union[bytes, bytearray, memoryview]

_RECORD = 12  # index record: 3 native uint32 (type | C << 8 | next << 16, offset, length)


def _as_bytes(data: BytesLike) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"expected bytes, bytearray or memoryview, not {type(data).__name__}")


class PayloadChain:
    """A validated payload chain: the outer payloads of a message or a decrypted inner chain."""

    __slots__ = ("_base", "_data", "_index", "_payloads")

    _data: bytes
    _index: bytes
    _base: int
    _payloads: list[Payload] | None

    @property
    def payloads(self) -> list[Payload]:
        """All payloads, decoded on first access (the list is shared: do not modify it)."""
        payloads = self._payloads
        if payloads is None:
            payloads = self._payloads = _ikemsg.decode_payloads(self._data, self._index, self._base)
        return payloads

    @property
    def payload_types(self) -> tuple[int, ...]:
        """The payload types in order, read from the index without decoding anything."""
        words = memoryview(self._index).cast("I")
        return tuple(words[i] & 0xFF for i in range(0, len(words), 3))

    def __len__(self) -> int:
        return len(self._index) // _RECORD

    def find(self, kind: type[P]) -> P | None:
        """The first payload of class ``kind`` (decodes only that payload when the class fixes
        the payload type and the chain has not been decoded yet)."""
        payload_type = getattr(kind, "type", None)
        if self._payloads is None and isinstance(payload_type, int):
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
        for p in self.payloads:
            if isinstance(p, Notify) and p.notify_type == notify_type:
                return p
        return None

    def to_bytes(self) -> bytes:
        return self._data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.payloads!r})"


class IkeMessage(PayloadChain):
    """A parsed IKE message. ``to_bytes()`` returns the received bytes unchanged."""

    __slots__ = ()

    @property
    def spi_i(self) -> bytes:
        return self._data[0:8]

    @property
    def spi_r(self) -> bytes:
        return self._data[8:16]

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
    def exchange(self) -> int:
        return self._data[18]

    @property
    def flags(self) -> int:
        return self._data[19]

    @property
    def is_initiator(self) -> bool:
        """The I flag: sent by the original initiator of the IKE SA (RFC 7296 §3.1)."""
        return bool(self._data[19] & HeaderFlag.INITIATOR)

    @property
    def is_response(self) -> bool:
        return bool(self._data[19] & HeaderFlag.RESPONSE)

    @property
    def message_id(self) -> int:
        return int.from_bytes(self._data[20:24], "big")

    @property
    def length(self) -> int:
        return len(self._data)

    @property
    def encrypted(self) -> Encrypted | EncryptedFragment | None:
        """The SK or SKF payload (always last), or None."""
        if not self._index:
            return None
        last = memoryview(self._index).cast("I")[-3] & 0xFF
        if last == PayloadType.SK:
            return self.find(Encrypted)
        if last == PayloadType.SKF:
            return self.find(EncryptedFragment)
        return None

    @property
    def encrypted_aad(self) -> bytes:
        """The AAD of the SK/SKF payload: the message up to the end of the SK payload header
        (RFC 5282 §5.1), including the SKF Fragment Number and Total Fragments (RFC 7383 §2.5).
        Raises LookupError when the message has no encrypted payload."""
        if not self._index:
            raise LookupError("message has no encrypted payload")
        words = memoryview(self._index).cast("I")
        last, offset = words[-3] & 0xFF, words[-2]
        if last == PayloadType.SK:
            return self._data[: offset + 4]
        if last == PayloadType.SKF:
            return self._data[: offset + 8]
        raise LookupError("message has no encrypted payload")

    def __repr__(self) -> str:
        return (
            f"IkeMessage(exchange={self.exchange}, message_id={self.message_id}, "
            f"spi_i={self.spi_i.hex()}, spi_r={self.spi_r.hex()}, flags={self.flags:#04x}, "
            f"payloads={self.payloads!r})"
        )


def parse_message(data: BytesLike) -> IkeMessage:
    """Validate an IKE message and index its payloads (RFC 7296 §3).

    Raises MalformedMessage (with ``.offset``) for anything not well formed, and
    UnsupportedCriticalPayload (a RemoteProtocolError carrying UNSUPPORTED_CRITICAL_PAYLOAD) for
    a well-formed message with a critical payload of an unknown type (§2.5).
    """
    raw = _as_bytes(data)
    index = _ikemsg.index_message(raw)
    message = IkeMessage.__new__(IkeMessage)
    message._data = raw
    message._index = index
    message._base = 0
    message._payloads = None
    return message


def parse_payload_chain(first_type: int, data: BytesLike, base_offset: int = 0) -> PayloadChain:
    """Validate a decrypted inner chain: ``first_type`` is the SK payload's Next Payload;
    ``base_offset`` is added to error offsets (e.g. where the plaintext sits in the message)."""
    raw = _as_bytes(data)
    index = _ikemsg.index_chain(first_type, raw, base_offset)
    chain = PayloadChain.__new__(PayloadChain)
    chain._data = raw
    chain._index = index
    chain._base = base_offset
    chain._payloads = None
    return chain


def encode_payload_chain(payloads: list[Payload] | tuple[Payload, ...]) -> tuple[int, bytes]:
    """Serialize payloads: returns (type of the first payload, or 0 when empty; the bytes).
    The first type goes in the Next Payload field of the header or of the SK payload."""
    first, data = _ikemsg.encode_payloads(payloads)
    return first, data


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
    """Serialize an IKE message, version 2.0, Length computed, X and V flag bits zero."""
    flags = (HeaderFlag.INITIATOR if initiator else 0) | (HeaderFlag.RESPONSE if response else 0)
    data: bytes = _ikemsg.encode_message(spi_i, spi_r, exchange, int(flags), message_id, payloads)
    return data
