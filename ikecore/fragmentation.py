"""IKE fragmentation (RFC 7383): splitting a protected message into Encrypted Fragment
messages, and putting received ones back together.

Used only when both peers announced IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT (§2.3) and
only for messages with an Encrypted payload (§2.5), i.e. never for IKE_SA_INIT itself. A
message is fragmented when its IP datagram would exceed the fragmentation threshold (§2.5.1).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from ikecore.aead import IkeCipher
from ikecore.errors import MalformedMessage
from ikecore.message import IkeMessage, encode_message, encode_payload_chain, parse_payload_chain
from ikecore.payloads import Encrypted, EncryptedFragment, Payload

__all__ = ["MAX_REASSEMBLED", "Reassembly", "build_protected", "max_message_length"]

_IKE_HEADER = 28
_SK_HEADER = 4
_SKF_HEADER = 8
_IV = 8
_PAD_LENGTH_BYTE = 1
_UDP_HEADER = 8
_NON_ESP_MARKER = 4
# §2.5.1: without better knowledge, the largest IP datagram that is safe to send.
DEFAULT_THRESHOLD_IPV4 = 576
DEFAULT_THRESHOLD_IPV6 = 1280
# The reassembled content of one Encrypted payload can never exceed an IKE message (its Length
# field is 32 bits, but an SK payload's is 16): more is a peer wasting our memory.
MAX_REASSEMBLED = 65535


def max_message_length(threshold: int, *, ipv6: bool, nat_port: bool) -> int:
    """The largest IKE message whose IP datagram stays within ``threshold`` bytes (IP and UDP
    headers, plus the non-ESP marker on the NAT-T port, RFC 3948 §2.2)."""
    ip_header = 40 if ipv6 else 20
    return threshold - ip_header - _UDP_HEADER - (_NON_ESP_MARKER if nat_port else 0)


def build_protected(
    cipher: IkeCipher,
    spi_i: bytes,
    spi_r: bytes,
    exchange: int,
    *,
    initiator: bool,
    response: bool,
    message_id: int,
    payloads: Sequence[Payload],
    max_length: int | None,
) -> tuple[bytes, ...]:
    """The message as one SK message, or (``max_length`` given and exceeded) as Encrypted
    Fragment messages of at most ``max_length`` bytes each (§2.5): the inner payloads are one
    blob cut into chunks, each chunk sealed on its own; the first fragment's Next Payload
    names the first inner payload, the others carry 0."""
    first, inner = encode_payload_chain(
        payloads if isinstance(payloads, (list, tuple)) else list(payloads)
    )
    overhead = _IV + _PAD_LENGTH_BYTE + cipher.icv_len
    if max_length is None or _IKE_HEADER + _SK_HEADER + overhead + len(inner) <= max_length:
        framed = _frame(
            spi_i, spi_r, exchange, message_id, initiator, response, _empty_sk(first)
        )
        sealed: bytes = cipher.seal_sk(framed[:-_SK_HEADER], first, inner)
        return (sealed,)
    chunk = max_length - _IKE_HEADER - _SKF_HEADER - overhead
    if chunk <= 0:
        raise ValueError(f"fragmentation threshold leaves no room for data ({max_length} bytes)")
    total = -(-len(inner) // chunk)
    fragments = []
    for number in range(1, total + 1):
        next_payload = first if number == 1 else 0
        framed = _frame(
            spi_i,
            spi_r,
            exchange,
            message_id,
            initiator,
            response,
            EncryptedFragment(next_payload, number, total, b""),
        )
        data = inner[(number - 1) * chunk : number * chunk]
        fragments.append(cipher.seal_skf(framed[:-_SKF_HEADER], next_payload, number, total, data))
    return tuple(fragments)


@functools.cache
def _empty_sk(first_payload: int) -> Encrypted:
    """An SK payload with no body yet (the header the AAD ends with), per first inner type."""
    return Encrypted(first_payload, b"")


def _frame(
    spi_i: bytes,
    spi_r: bytes,
    exchange: int,
    message_id: int,
    initiator: bool,
    response: bool,
    last: Encrypted | EncryptedFragment,
) -> bytes:
    return encode_message(
        spi_i,
        spi_r,
        exchange,
        message_id,
        [last],
        initiator=initiator,
        response=response,
    )


@dataclass
class _Queue:
    """The fragments of one message received so far (§2.6)."""

    total: int
    started: float
    first_payload: int = 0
    chunks: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class Reassembly:
    """The reassembly queues of one IKE SA, one per (response?, Message ID).

    `add` follows §2.6 in order: validity of Fragment Number / Total Fragments, replay,
    ICV, restart on a larger Total Fragments, store. It returns the inner payloads once the
    message is complete, None while fragments are missing or when the fragment was discarded
    (silently, as §2.6 requires; ``discarded`` counts those). A fragment whose ICV fails
    raises IntegrityError and leaves the queue as it was; a complete message whose inner
    chain is bad raises MalformedMessage (or UnsupportedCriticalPayload) like an SK payload.
    A queue older than ``timeout`` seconds is dropped when its next fragment arrives (§2.6:
    incomplete messages do not linger; at most a window of Message IDs can have a queue, so
    memory stays bounded).
    """

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._queues: dict[tuple[bool, int], _Queue] = {}
        self.discarded = 0

    def __len__(self) -> int:
        return len(self._queues)

    def add(self, cipher: IkeCipher, message: IkeMessage, now: float) -> list[Payload] | None:
        fragment = message.encrypted
        assert isinstance(fragment, EncryptedFragment)
        key = (message.is_response, message.message_id)
        number, total = fragment.fragment_number, fragment.total_fragments
        queue = self._queues.get(key)
        if queue is not None and now - queue.started > self._timeout:
            del self._queues[key]
            queue = None
        if not 1 <= number <= total or (queue is not None and total < queue.total):
            self.discarded += 1
            return None
        if queue is not None and total == queue.total and number in queue.chunks:
            self.discarded += 1  # a replay or a retransmission (§2.6.1)
            return None
        data = message.to_bytes()
        skf_offset = len(message.encrypted_aad) - _SKF_HEADER
        try:
            next_payload, _, _, chunk = cipher.open_skf(data, skf_offset)
        except MalformedMessage:
            self.discarded += 1
            return None
        if queue is None or total > queue.total:
            queue = self._queues[key] = _Queue(total, now)
        if queue.size + len(chunk) > MAX_REASSEMBLED:
            del self._queues[key]
            self.discarded += 1
            return None
        queue.chunks[number] = chunk
        queue.size += len(chunk)
        if number == 1:
            queue.first_payload = next_payload
        if len(queue.chunks) < queue.total:
            return None
        del self._queues[key]
        inner = b"".join(queue.chunks[n] for n in range(1, queue.total + 1))
        chain = parse_payload_chain(queue.first_payload, inner, 0)
        return list(chain.payloads)
