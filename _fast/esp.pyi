"""ESP with AES-GCM (RFC 4106) or ChaCha20-Poly1305 (RFC 7634) over RFC 4303 (compiled).

Packet = SPI (4) | Seq low 32 (4) | IV (8) | ciphertext | ICV; plaintext = payload | [TFC
padding: zeros] | Padding 1, 2, 3, ... | Pad Length | Next Header, 4-byte aligned. AAD = SPI |
Seq (8) or, with ESN, SPI | Seq high | Seq low (12). ``spi`` is an int or 4 bytes.

Outbound: ``seq`` is the last number used (the first packet carries seq + 1). The IV is the
64-bit sequence number XOR ``iv_mask`` (default 0), so it never repeats under the key; at
2^32 - 1 (2^64 - 1 with ESN) further calls raise SequenceExhausted, never wrap.

Inbound: SPI check -> ESN high-half inference (RFC 4303 Appendix A2.2) -> replay check ->
ICV -> padding check (1, 2, 3, ...) -> then the window moves and the counters count. Anything
that fails raises MalformedMessage (short packet, other SPI, bad Pad Length or padding; with
``.offset``), ReplayError (seen, left of the window, or seq 0) or IntegrityError (ICV, or an
ESN that cannot exist: before the SA start or past 2^64), and changes nothing.
``highest_seq`` (T) and ``replay_bitmap`` (bit i: T - i received) save and restore a
receiver; with ``highest_seq`` alone the whole window up to T counts as received (safe: never
accepts a replay, may drop late packets).
Anti-replay window: ``window`` packets (32..65536, default 64), a ring of 64-bit words
(RFC 6479). ESN re-synchronisation after 2^32 lost packets (RFC 4303 A3) is off by default:
``resync_after=N`` (N > 0) retries the N-th consecutive packet failing its ICV with Seqh + 1
... Seqh + ``resync_limit``, in line (not in the background), and then restarts the count.

Next Header 59 is a dummy packet (RFC 4303 §2.6): ``encapsulate(b"...", 59)`` makes one;
``decapsulate`` returns it like any other (it was authentic and moved the window) and the
caller discards it. The receiver returns TFC padding as part of the payload (tunnel-mode inner
packets carry their own length).

Batch forms take a list/tuple of packets and one output buffer, write offsets into an
``array('q')`` (64-bit ints) and, inbound, results into an ``array('i')`` (32-bit ints).
``packet_count``/``byte_count`` (inner payload bytes) are for SA lifetimes (RFC 4301 §4.4.2).
"""

from collections.abc import Sequence

from typing_extensions import Buffer

from ikecore._fast.aead import Aead, Algorithm, Engine

DECAP_INTEGRITY_FAILED: int  # -1
DECAP_REPLAYED: int  # -2
DECAP_MALFORMED: int  # -3
DUMMY_NEXT_HEADER: int  # 59

class EspOutbound:
    def __init__(self, spi: int | Buffer, key_and_salt: Buffer, icv_len: int = 16,
                 esn: bool = False, seq: int = 0, *, algorithm: Algorithm = "aes-gcm",
                 engine: Engine | None = None, iv_mask: int = 0) -> None: ...
    @property
    def aead(self) -> Aead: ...
    @property
    def spi(self) -> int: ...
    @property
    def esn(self) -> bool: ...
    @property
    def seq(self) -> int: ...
    @property
    def icv_len(self) -> int: ...
    @property
    def packet_count(self) -> int: ...
    @property
    def byte_count(self) -> int: ...
    def packet_len(self, inner_len: int, tfc_padding: int = 0) -> int:
        """Size of the packet encapsulate() makes for ``inner_len`` payload bytes."""
    def encapsulate(self, inner: Buffer, next_header: int, *, tfc_padding: int = 0) -> bytes: ...
    def encapsulate_into(self, inner: Buffer, next_header: int, out: Buffer, *,
                         tfc_padding: int = 0) -> int:
        """Writes the packet to the start of ``out`` (not overlapping ``inner``); returns its
        length. ValueError if ``out`` is shorter than packet_len()."""
    def encapsulate_batch(self, inners: Sequence[Buffer], next_header: int, out: Buffer,
                          ends: Buffer, *, tfc_padding: int = 0) -> int:
        """Encapsulates each inner packet, in order, back to back into ``out``: packet i is
        ``out[ends[i-1]:ends[i]]`` (from 0 for i = 0). ``ends``: writable buffer of 64-bit
        ints (``array('q')``) with at least len(inners) items. Returns the bytes written
        (``ends[len(inners)-1]``). All or nothing: too small an ``out``/``ends``, an overlap,
        a bad item or too few sequence numbers left raise before anything is sealed."""

class EspInbound:
    def __init__(self, spi: int | Buffer, key_and_salt: Buffer, icv_len: int = 16,
                 esn: bool = False, window: int = 64, *, algorithm: Algorithm = "aes-gcm",
                 engine: Engine | None = None, highest_seq: int = 0,
                 replay_bitmap: int | None = None, resync_after: int = 0,
                 resync_limit: int = 8) -> None: ...
    @property
    def aead(self) -> Aead: ...
    @property
    def spi(self) -> int: ...
    @property
    def esn(self) -> bool: ...
    @property
    def window(self) -> int: ...
    @property
    def highest_seq(self) -> int: ...
    @property
    def replay_bitmap(self) -> int: ...
    @property
    def icv_len(self) -> int: ...
    @property
    def packet_count(self) -> int: ...
    @property
    def byte_count(self) -> int: ...
    def decapsulate(self, packet: Buffer) -> tuple[int, bytes]:
        """(next_header, inner payload)."""
    def decapsulate_into(self, packet: Buffer, out: Buffer) -> tuple[int, int]:
        """(next_header, inner length) with the payload at the start of ``out``, which needs
        len(packet) - 16 - icv_len bytes (the trailer is decrypted there too) and must not
        overlap ``packet`` unless exactly in place (``memoryview(packet)[16:]``). After an
        IntegrityError that part of ``out`` is zeroed."""
    def decapsulate_batch(self, packets: Sequence[Buffer], out: Buffer, ends: Buffer,
                          results: Buffer) -> int:
        """Decapsulates each packet in order (the window moves between them) into ``out``:
        payload i is ``out[ends[i-1]:ends[i]]`` (from 0; empty for a rejected packet).
        ``results[i]`` = Next Header (0..255) or DECAP_INTEGRITY_FAILED (-1), DECAP_REPLAYED
        (-2), DECAP_MALFORMED (-3); bad packets never raise and change nothing. ``ends``:
        ``array('q')``, ``results``: ``array('i')``, each with len(packets) items; ``out``
        needs sum(max(len(p) - 16 - icv_len, 0)) bytes. Returns the number accepted."""
