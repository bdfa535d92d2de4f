# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=False, embedsignature.format=clinic
"""ESP with AES-GCM (RFC 4106) or ChaCha20-Poly1305 (RFC 7634) over RFC 4303.

Packet: SPI (4) | Seq low 32 (4) | IV (8) | ciphertext | ICV, where the plaintext is
payload | [TFC padding] | Padding 1, 2, 3, ... | Pad Length | Next Header and ends on a 4-byte
boundary (RFC 4303 §2.4). AAD = SPI | Seq (8 bytes), or SPI | Seq high | Seq low (12 bytes)
with extended sequence numbers (RFC 4106 §5).

Security state (STYLE.md §7):
* outbound: the IV is the 64-bit sequence number XOR a fixed per-SA mask (a bijection, so it
  never repeats under the key), and the counter refuses to wrap (SequenceExhausted);
* inbound: SA lookup (SPI) -> ESN high-half inference (RFC 4303 Appendix A2.2) -> replay
  check -> ICV -> padding check -> only then the window moves (RFC 4303 §3.4.3). The window is
  a ring of 64-bit words (RFC 6479) so a jump costs a few word clears, never a shift.

The AEAD engine is the shared ``ikecore._fast.aead.Aead`` (ipsec-mb or OpenSSL).
"""

from cpython.buffer cimport (
    PyBUF_FORMAT,
    PyBUF_SIMPLE,
    PyBUF_WRITABLE,
)
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.ref cimport PyObject, Py_XDECREF
from cpython.sequence cimport PySequence_Fast, PySequence_Fast_GET_ITEM, PySequence_Fast_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from ikecore._fast.aead cimport (
    Aead,
    acquire_buffer,
    buffer_clear,
    buffer_release,
    load_be32,
    make_aead,
    store_be32,
    store_be64,
)

from ikecore.errors import IntegrityError, MalformedMessage, ReplayError, SequenceExhausted


cdef extern from "Python.h":
    PyObject *new_bytes_raw "PyBytes_FromStringAndSize"(const char *data, Py_ssize_t size) except NULL
    int _PyBytes_Resize(PyObject **string, Py_ssize_t newsize) except -1
    char *bytes_data_raw "PyBytes_AS_STRING"(PyObject *string)


cdef enum:
    ESP_HEADER_LEN = 16        # SPI | Seq | IV
    ESP_TRAILER_LEN = 2        # Pad Length | Next Header
    MAX_WINDOW = 1 << 16
    MIN_WINDOW = 32            # RFC 4303 §3.4.3: a window of 32 MUST be supported
    MAX_PACKET = 0x3FFFFFFF

# Outcomes of one inbound packet; >= 0 is the Next Header.
cdef enum:
    BAD_INTEGRITY = -1
    BAD_REPLAY = -2
    BAD_MALFORMED = -3
    # detail, folded into the three above for the batch results
    BAD_SHORT = -10
    BAD_SPI = -11
    BAD_PAD_LENGTH = -12
    BAD_PAD_CONTENT = -13
    BAD_SEEN = -20
    BAD_OLD = -21
    BAD_ZERO = -22
    BAD_ESN_IMPOSSIBLE = -30

DECAP_INTEGRITY_FAILED = BAD_INTEGRITY
DECAP_REPLAYED = BAD_REPLAY
DECAP_MALFORMED = BAD_MALFORMED

DUMMY_NEXT_HEADER = 59

cdef const uint8_t *PADDING = b"\x01\x02\x03\x00"


cdef uint32_t _spi_value(object spi) except? 0xFFFFFFFF:
    if isinstance(spi, int):
        if not 0 <= spi <= 0xFFFFFFFF:
            raise ValueError(f"spi must fit in 32 bits, got {spi}")
        return <uint32_t>spi
    spi_bytes = bytes(spi)
    if len(spi_bytes) != 4:
        raise ValueError(f"spi must be an int or 4 bytes, got {len(spi_bytes)} bytes")
    return load_be32(<const uint8_t *>PyBytes_AS_STRING(spi_bytes))


cdef inline Py_ssize_t _padded_plaintext_len(Py_ssize_t inner_len, Py_ssize_t tfc) noexcept nogil:
    # Pad Length and Next Header end on a 4-byte boundary (RFC 4303 §2.4).
    cdef Py_ssize_t length = inner_len + tfc + ESP_TRAILER_LEN
    return length + ((-length) & 3)


cdef inline bint _overlaps(const void *a, Py_ssize_t a_len, const void *b,
                          Py_ssize_t b_len) noexcept nogil:
    return <const char *>a < <const char *>b + b_len and <const char *>b < <const char *>a + a_len


cdef int _check_index_buffer(Py_buffer *view, Py_ssize_t itemsize, bytes codes, Py_ssize_t count,
                             str name) except -1:
    cdef bytes fmt = view.format if view.format != NULL else b"B"
    # the last character is the type code ("<q", "=q", "q" all name the same layout here)
    if view.itemsize != itemsize or fmt[len(fmt) - 1:] not in codes:
        raise TypeError(f"{name} must be a buffer of {itemsize * 8}-bit integers "
                        f"(array('{'q' if itemsize == 8 else 'i'}')), got format {fmt!r}")
    if view.len // itemsize < count:
        raise ValueError(f"{name} holds {view.len // itemsize} items, {count} needed")
    return 0


cdef class EspOutbound:
    """Sender side of one ESP SA. ``seq`` is the last sequence number used (0: none yet)."""

    cdef readonly Aead aead
    cdef readonly uint32_t spi
    cdef readonly bint esn
    cdef readonly uint64_t packet_count
    cdef readonly uint64_t byte_count
    cdef uint64_t _seq
    cdef uint64_t _max_seq
    cdef uint64_t _iv_mask
    cdef int _icv_len
    cdef uint8_t _spi_be[4]

    def __init__(self, spi, key_and_salt, int icv_len=16, bint esn=False, seq=0, *,
                 algorithm="aes-gcm", engine=None, iv_mask=0):
        cdef uint64_t max_seq = 0xFFFFFFFFFFFFFFFF if esn else 0xFFFFFFFF
        if not 0 <= seq <= max_seq:
            raise ValueError(f"seq must be 0..{max_seq}, got {seq}")
        if not 0 <= iv_mask <= 0xFFFFFFFFFFFFFFFF:
            raise ValueError("iv_mask must fit in 64 bits")
        self.spi = _spi_value(spi)
        self.aead = make_aead(algorithm, key_and_salt, icv_len, engine)
        store_be32(self._spi_be, self.spi)
        self.esn = esn
        self._seq = seq
        self._max_seq = max_seq
        self._iv_mask = iv_mask
        self._icv_len = self.aead.icv_len
        self.packet_count = 0
        self.byte_count = 0

    @property
    def seq(self) -> int:
        """The last sequence number used (RFC 4303 §3.3.3: the first packet carries 1)."""
        return self._seq

    @property
    def icv_len(self) -> int:
        return self._icv_len

    def packet_len(self, Py_ssize_t inner_len, Py_ssize_t tfc_padding=0) -> int:
        """Size of the ESP packet that ``encapsulate`` makes for ``inner_len`` bytes."""
        if inner_len < 0 or tfc_padding < 0:
            raise ValueError("lengths must not be negative")
        return ESP_HEADER_LEN + _padded_plaintext_len(inner_len, tfc_padding) + self._icv_len

    cdef inline int _check_args(self, int next_header, Py_ssize_t inner_len,
                                Py_ssize_t tfc_padding) except -1:
        # one test on the per-packet path; the raising part stays out of line
        if (self.aead is not None and <unsigned int>next_header <= 255 and tfc_padding >= 0
                and inner_len + tfc_padding <= MAX_PACKET):
            return 0
        return self._reject_args(next_header, inner_len, tfc_padding)

    cdef int _reject_args(self, int next_header, Py_ssize_t inner_len,
                          Py_ssize_t tfc_padding) except -1:
        if self.aead is None:
            raise ValueError("EspOutbound was not initialised")
        if not 0 <= next_header <= 255:
            raise ValueError(f"next_header must be 0..255, got {next_header}")
        if tfc_padding < 0 or inner_len + tfc_padding > MAX_PACKET:
            raise ValueError("bad inner length or tfc_padding")
        return 0

    cdef int _seal_one(self, const uint8_t *inner, Py_ssize_t inner_len, int next_header,
                       Py_ssize_t tfc, uint8_t *out) except -1:
        """Writes one packet to ``out`` (room checked by the caller); returns its length."""
        cdef uint64_t seq
        cdef uint64_t iv
        cdef uint8_t aad[12]
        cdef uint8_t *plaintext = out + ESP_HEADER_LEN
        cdef Py_ssize_t plaintext_len = _padded_plaintext_len(inner_len, tfc)
        cdef Py_ssize_t pad_len = plaintext_len - inner_len - tfc - ESP_TRAILER_LEN
        if self._seq >= self._max_seq:
            # RFC 4303 §3.3.3: the counter MUST NOT cycle; a new SA is needed.
            raise SequenceExhausted("ESP sequence number space exhausted: rekey the Child SA")
        seq = self._seq + 1
        memcpy(out, self._spi_be, 4)
        store_be32(out + 4, <uint32_t>seq)
        # RFC 4106 §3.1: the IV must not repeat under a key; seq never repeats, XOR is 1:1.
        iv = seq ^ self._iv_mask
        store_be64(out + 8, iv)
        # The trailer goes in place now; the inner packet is read where it is (seal_parts).
        if tfc:
            memset(plaintext + inner_len, 0, tfc)
        # RFC 4303 §2.4: pad bytes 1, 2, 3 (fewer than 4 are ever needed for alignment)
        memcpy(plaintext + inner_len + tfc, PADDING, 4)
        plaintext[plaintext_len - 2] = <uint8_t>pad_len
        plaintext[plaintext_len - 1] = <uint8_t>next_header
        if self.esn:
            # RFC 4106 §5: AAD = SPI | Seq high | Seq low; the high half is not sent.
            memcpy(aad, self._spi_be, 4)
            store_be32(aad + 4, <uint32_t>(seq >> 32))
            store_be32(aad + 8, <uint32_t>seq)
            self.aead.seal_parts(out + 8, aad, 12, inner, inner_len, plaintext, plaintext_len)
        else:
            self.aead.seal_parts(out + 8, out, 8, inner, inner_len, plaintext, plaintext_len)
        self._seq = seq
        self.packet_count += 1
        self.byte_count += inner_len
        return <int>(ESP_HEADER_LEN + plaintext_len + self._icv_len)

    def encapsulate(self, inner, int next_header, *, Py_ssize_t tfc_padding=0) -> bytes:
        """SPI | Seq | IV | ciphertext | ICV for one inner packet. ``next_header`` 59 makes a
        dummy packet (RFC 4303 §2.6). ``tfc_padding`` zero bytes go after the payload."""
        cdef Py_buffer view
        cdef object result
        buffer_clear(&view)
        try:
            acquire_buffer(inner, &view, PyBUF_SIMPLE)
            self._check_args(next_header, view.len, tfc_padding)
            result = PyBytes_FromStringAndSize(
                NULL, ESP_HEADER_LEN + _padded_plaintext_len(view.len, tfc_padding) + self._icv_len)
            self._seal_one(<const uint8_t *>view.buf, view.len, next_header, tfc_padding,
                           <uint8_t *>PyBytes_AS_STRING(result))
            return result
        finally:
            buffer_release(&view)

    def encapsulate_into(self, inner, int next_header, out, *, Py_ssize_t tfc_padding=0) -> int:
        """Writes the packet to the start of ``out``; returns its length. ``out`` must not
        overlap ``inner``."""
        cdef Py_buffer view, out_view
        cdef Py_ssize_t needed
        buffer_clear(&view)
        buffer_clear(&out_view)
        try:
            acquire_buffer(inner, &view, PyBUF_SIMPLE)
            acquire_buffer(out, &out_view, PyBUF_WRITABLE)
            self._check_args(next_header, view.len, tfc_padding)
            needed = ESP_HEADER_LEN + _padded_plaintext_len(view.len, tfc_padding) + self._icv_len
            if out_view.len < needed:
                raise ValueError(f"out holds {out_view.len} bytes, {needed} needed")
            if _overlaps(view.buf, view.len, out_view.buf, needed):
                raise ValueError("out must not overlap inner")
            return self._seal_one(<const uint8_t *>view.buf, view.len, next_header, tfc_padding,
                                  <uint8_t *>out_view.buf)
        finally:
            buffer_release(&view)
            buffer_release(&out_view)

    def encapsulate_batch(self, inners, int next_header, out, ends, *,
                          Py_ssize_t tfc_padding=0) -> int:
        """Encapsulates every packet of ``inners`` (a list or tuple of bytes-like) back to back
        into ``out``; packet i is ``out[ends[i-1]:ends[i]]`` (from 0 for i = 0), ``ends`` a
        writable buffer of 64-bit ints (e.g. ``array('q')``) with room for len(inners).
        Returns the total bytes written. All or nothing: if ``out`` is too small or the
        sequence numbers would run out, nothing is sent and ValueError/SequenceExhausted
        is raised."""
        cdef object items = PySequence_Fast(inners, "inners must be a list or tuple")
        cdef Py_ssize_t count = PySequence_Fast_GET_SIZE(items)
        cdef Py_ssize_t i, inner_len, total = 0, position = 0
        cdef bint overlap
        cdef Py_buffer out_view, ends_view, item_view
        cdef object item
        cdef int64_t *end_offsets
        buffer_clear(&out_view)
        buffer_clear(&ends_view)
        buffer_clear(&item_view)
        try:
            acquire_buffer(out, &out_view, PyBUF_WRITABLE)
            acquire_buffer(ends, &ends_view, PyBUF_WRITABLE | PyBUF_FORMAT)
            _check_index_buffer(&ends_view, 8, b"qQlL", count, "ends")
            end_offsets = <int64_t *>ends_view.buf
            self._check_args(next_header, 0, tfc_padding)
            for i in range(count):
                item = <object>PySequence_Fast_GET_ITEM(items, i)
                acquire_buffer(item, &item_view, PyBUF_SIMPLE)
                inner_len = item_view.len
                overlap = _overlaps(item_view.buf, inner_len, out_view.buf, out_view.len)
                buffer_release(&item_view)
                if overlap:
                    raise ValueError("out must not overlap the inner packets")
                if inner_len + tfc_padding > MAX_PACKET:
                    raise ValueError("inner packet too long")
                total += ESP_HEADER_LEN + self._icv_len + _padded_plaintext_len(inner_len,
                                                                                tfc_padding)
            if out_view.len < total:
                raise ValueError(f"out holds {out_view.len} bytes, {total} needed")
            if self._max_seq - self._seq < <uint64_t>count:
                raise SequenceExhausted("ESP sequence number space exhausted: rekey the Child SA")
            for i in range(count):
                item = <object>PySequence_Fast_GET_ITEM(items, i)
                acquire_buffer(item, &item_view, PyBUF_SIMPLE)
                try:
                    # re-checked: a buffer exporter could report another size the second time
                    if (position + ESP_HEADER_LEN + self._icv_len
                            + _padded_plaintext_len(item_view.len, tfc_padding) > out_view.len):
                        raise ValueError("an inner packet changed size during the call")
                    position += self._seal_one(<const uint8_t *>item_view.buf, item_view.len,
                                               next_header, tfc_padding,
                                               <uint8_t *>out_view.buf + position)
                finally:
                    buffer_release(&item_view)
                end_offsets[i] = position
            return position
        finally:
            buffer_release(&out_view)
            buffer_release(&ends_view)


cdef class EspInbound:
    """Receiver side of one ESP SA with an anti-replay window of ``window`` packets
    (default 64, 32..65536). ``highest_seq`` and ``replay_bitmap`` restore a saved receiver
    (see the ``replay_bitmap`` property); with ``highest_seq`` alone every number of the
    window up to T counts as received, which can drop late packets but never accepts a
    replay. With ESN, ``resync_after`` > 0 turns on the re-synchronisation of RFC 4303 A3:
    after that many consecutive ICV failures the failing packet is retried with the next
    ``resync_limit`` values of the high half."""

    cdef readonly Aead aead
    cdef readonly uint32_t spi
    cdef readonly bint esn
    cdef readonly uint32_t window
    cdef readonly uint64_t packet_count
    cdef readonly uint64_t byte_count
    cdef uint64_t _top
    cdef uint64_t *_bitmap
    cdef uint64_t _block_mask
    cdef int _icv_len
    cdef uint32_t _resync_after
    cdef uint32_t _resync_limit
    cdef uint32_t _failures
    cdef uint8_t _spi_be[4]

    def __init__(self, spi, key_and_salt, int icv_len=16, bint esn=False, int window=64, *,
                 algorithm="aes-gcm", engine=None, highest_seq=0, replay_bitmap=None,
                 int resync_after=0, int resync_limit=8):
        cdef Py_ssize_t blocks = 1
        if not MIN_WINDOW <= window <= MAX_WINDOW:
            raise ValueError(f"window must be {MIN_WINDOW}..{MAX_WINDOW}, got {window}")
        if resync_after < 0 or not 0 < resync_limit <= 1024:
            raise ValueError("resync_after must be >= 0 and resync_limit 1..1024")
        if not 0 <= highest_seq <= (0xFFFFFFFFFFFFFFFF if esn else 0xFFFFFFFF):
            raise ValueError("highest_seq out of range")
        self.spi = _spi_value(spi)
        self.aead = make_aead(algorithm, key_and_salt, icv_len, engine)
        store_be32(self._spi_be, self.spi)
        self.esn = esn
        self.window = window
        self._icv_len = self.aead.icv_len
        self._resync_after = resync_after if esn else 0
        self._resync_limit = resync_limit
        self._failures = 0
        # RFC 6479: enough 64-bit words for the window plus the one being filled, rounded up
        # to a power of two so that a word index is a mask.
        while blocks < (window + 63) // 64 + 1:
            blocks *= 2
        PyMem_Free(self._bitmap)
        self._bitmap = <uint64_t *>PyMem_Malloc(blocks * sizeof(uint64_t))
        if self._bitmap == NULL:
            raise MemoryError()
        memset(self._bitmap, 0, blocks * sizeof(uint64_t))
        self._block_mask = blocks - 1
        self._top = highest_seq
        self._restore(replay_bitmap)
        self.packet_count = 0
        self.byte_count = 0

    def __dealloc__(self):
        PyMem_Free(self._bitmap)

    cdef int _restore(self, object replay_bitmap) except -1:
        cdef uint64_t offset, span = self.window
        if self._top < span:
            span = self._top  # numbers below 1 are never valid
        if replay_bitmap is None:
            for offset in range(span):
                self._mark(self._top - offset)
            return 0
        if not isinstance(replay_bitmap, int):
            raise TypeError("replay_bitmap must be an int")
        if replay_bitmap < 0 or replay_bitmap.bit_length() > self.window:
            raise ValueError("replay_bitmap must be a non-negative int of at most window bits")
        bits = replay_bitmap.to_bytes((self.window + 7) // 8, "little")
        for offset in range(span):
            if (<bytes>bits)[offset >> 3] >> (offset & 7) & 1:
                self._mark(self._top - offset)
        return 0

    @property
    def replay_bitmap(self) -> int:
        """The window as an int: bit i set when T - i was received (i < window). Save it with
        ``highest_seq`` to move the SA; pass both back to the constructor to restore it."""
        cdef uint64_t offset, seq, span = self.window
        cdef bytearray bits = bytearray((self.window + 7) // 8)
        if self._top < span:
            span = self._top
        for offset in range(span):
            seq = self._top - offset
            if self._bitmap[(seq >> 6) & self._block_mask] >> (seq & 63) & 1:
                bits[offset >> 3] |= 1 << (offset & 7)
        return int.from_bytes(bits, "little")

    @property
    def highest_seq(self) -> int:
        """T: the highest sequence number authenticated so far (RFC 4303 §3.4.3)."""
        return self._top

    @property
    def icv_len(self) -> int:
        return self._icv_len

    cdef inline void _mark(self, uint64_t seq) noexcept:
        self._bitmap[(seq >> 6) & self._block_mask] |= (<uint64_t>1) << (seq & 63)

    cdef inline int _infer_seq(self, uint32_t seq_low, uint64_t *seq) noexcept:
        """RFC 4303 Appendix A2.2: the full number is the one ≡ Seql (mod 2^32) in
        [B, B + 2^32) with B = T - W + 1."""
        cdef uint32_t top_low = <uint32_t>self._top
        cdef uint32_t top_high = <uint32_t>(self._top >> 32)
        cdef uint32_t bottom_low = top_low - self.window + 1   # mod 2^32
        cdef uint32_t seq_high
        if not self.esn:
            seq[0] = seq_low
            return 0
        if top_low >= self.window - 1:
            # Case A: the window lies in one 2^32 subspace.
            if seq_low >= bottom_low:
                seq_high = top_high
            elif top_high == 0xFFFFFFFF:
                return BAD_ESN_IMPOSSIBLE
            else:
                seq_high = top_high + 1
        else:
            # Case B: the window spans two subspaces.
            if seq_low >= bottom_low:
                if top_high == 0:
                    # Th - 1 = -1: before the SA started, cannot have been sent.
                    return BAD_ESN_IMPOSSIBLE
                seq_high = top_high - 1
            else:
                seq_high = top_high
        seq[0] = (<uint64_t>seq_high << 32) | seq_low
        return 0

    cdef inline int _check_replay(self, uint64_t seq) noexcept:
        if seq == 0:
            return BAD_ZERO
        if seq > self._top:
            return 0
        if self._top - seq >= self.window:
            return BAD_OLD
        if self._bitmap[(seq >> 6) & self._block_mask] & ((<uint64_t>1) << (seq & 63)):
            return BAD_SEEN
        return 0

    cdef inline void _commit(self, uint64_t seq) noexcept:
        cdef uint64_t old_block, new_block, steps, i
        if seq > self._top:
            old_block = self._top >> 6
            new_block = seq >> 6
            steps = new_block - old_block
            if steps > self._block_mask + 1:
                steps = self._block_mask + 1
            for i in range(1, steps + 1):
                self._bitmap[(old_block + i) & self._block_mask] = 0
            self._top = seq
        self._mark(seq)

    cdef int _open_one(self, const uint8_t *packet, Py_ssize_t length, uint8_t *out,
                       Py_ssize_t *inner_len, Py_ssize_t *bad_offset) except -1000:
        """Decapsulates into ``out`` (room for length - 16 - ICV bytes). Returns the Next
        Header, or a BAD_* code with nothing committed."""
        cdef Py_ssize_t plaintext_len = length - ESP_HEADER_LEN - self._icv_len
        cdef uint64_t seq
        cdef uint8_t aad[12]
        cdef int status, pad_len, i
        cdef Py_ssize_t payload_len
        if plaintext_len < ESP_TRAILER_LEN:
            bad_offset[0] = length
            return BAD_SHORT
        if memcmp4(packet, self._spi_be):
            bad_offset[0] = 0
            return BAD_SPI
        status = self._infer_seq(load_be32(packet + 4), &seq)
        if status:
            return status
        # Replay check before any decryption (RFC 4303 §3.4.3).
        status = self._check_replay(seq)
        if status:
            return status
        if self.esn:
            memcpy(aad, packet, 4)
            store_be32(aad + 4, <uint32_t>(seq >> 32))
            memcpy(aad + 8, packet + 4, 4)
            status = self.aead.open_raw(packet + 8, aad, 12, packet + ESP_HEADER_LEN,
                                        plaintext_len, out)
        else:
            status = self.aead.open_raw(packet + 8, packet, 8, packet + ESP_HEADER_LEN,
                                        plaintext_len, out)
        if not status and self._resync_after:
            # RFC 4303 A3.1: count consecutive authentication failures; at the trigger, try
            # this packet in the following subspaces (A3.2). Resetting the count bounds the
            # extra work a forger can cause to resync_limit tries per resync_after packets.
            self._failures += 1
            if self._failures >= self._resync_after:
                self._failures = 0
                status = self._resync(packet, plaintext_len, out, &seq)
        if not status:
            return BAD_INTEGRITY
        pad_len = out[plaintext_len - 2]
        payload_len = plaintext_len - ESP_TRAILER_LEN - pad_len
        if payload_len < 0:
            bad_offset[0] = ESP_HEADER_LEN + plaintext_len - 2
            return BAD_PAD_LENGTH
        # RFC 4303 §2.4: default padding is 1, 2, 3, ...; the receiver SHOULD check it.
        for i in range(pad_len):
            if out[payload_len + i] != i + 1:
                bad_offset[0] = ESP_HEADER_LEN + payload_len + i
                return BAD_PAD_CONTENT
        # Authentic and well formed: only now does the window move.
        self._commit(seq)
        self._failures = 0
        self.packet_count += 1
        self.byte_count += payload_len
        inner_len[0] = payload_len
        return out[plaintext_len - 1]

    cdef int _resync(self, const uint8_t *packet, Py_ssize_t plaintext_len, uint8_t *out,
                     uint64_t *seq) except -1:
        """RFC 4303 A3.2: retries authentication with Seqh + 1, + 2, ... (bounded); on
        success ``seq`` is the packet's full number, which lies right of the window."""
        cdef uint8_t aad[12]
        cdef uint64_t seq_high = seq[0] >> 32
        cdef uint32_t attempt
        memcpy(aad, packet, 4)
        memcpy(aad + 8, packet + 4, 4)
        for attempt in range(self._resync_limit):
            if seq_high == 0xFFFFFFFF:
                return 0
            seq_high += 1
            store_be32(aad + 4, <uint32_t>seq_high)
            if self.aead.open_raw(packet + 8, aad, 12, packet + ESP_HEADER_LEN, plaintext_len,
                                  out):
                seq[0] = (seq_high << 32) | (seq[0] & 0xFFFFFFFF)
                return 1
        return 0

    cdef int _raise_for(self, int status, Py_ssize_t bad_offset) except -1:
        if status == BAD_INTEGRITY or status == BAD_ESN_IMPOSSIBLE:
            raise IntegrityError()
        if status == BAD_SEEN:
            raise ReplayError("sequence number already received")
        if status == BAD_OLD:
            raise ReplayError("sequence number left of the replay window")
        if status == BAD_ZERO:
            raise ReplayError("sequence number 0 is never sent")
        if status == BAD_SHORT:
            raise MalformedMessage("ESP packet too short", bad_offset)
        if status == BAD_SPI:
            raise MalformedMessage("ESP packet for another SPI", bad_offset)
        if status == BAD_PAD_LENGTH:
            raise MalformedMessage("ESP Pad Length longer than the plaintext", bad_offset)
        raise MalformedMessage("ESP padding is not 1, 2, 3, ...", bad_offset)

    def decapsulate(self, packet) -> tuple:
        """Returns ``(next_header, inner)``. Next Header 59 is a dummy packet (RFC 4303
        §2.6): it was authentic and is counted in the window, the caller discards it.
        Raises MalformedMessage, ReplayError or IntegrityError with the window unchanged."""
        cdef Py_buffer view
        cdef PyObject *plain = NULL
        cdef Py_ssize_t plaintext_len, inner_len = 0, bad_offset = -1
        cdef int status
        buffer_clear(&view)
        try:
            acquire_buffer(packet, &view, PyBUF_SIMPLE)
            if self.aead is None:
                raise ValueError("EspInbound was not initialised")
            plaintext_len = view.len - ESP_HEADER_LEN - self._icv_len
            plain = new_bytes_raw(NULL, plaintext_len if plaintext_len > 0 else 0)
            status = self._open_one(<const uint8_t *>view.buf, view.len,
                                    <uint8_t *>bytes_data_raw(plain), &inner_len, &bad_offset)
            if status < 0:
                self._raise_for(status, bad_offset)
            if inner_len != plaintext_len:
                _PyBytes_Resize(&plain, inner_len)
            return (status, <object>plain)
        finally:
            Py_XDECREF(plain)
            buffer_release(&view)

    def decapsulate_into(self, packet, out) -> tuple:
        """Decrypts into ``out`` (room for len(packet) - 16 - icv_len bytes; not overlapping
        ``packet``, or exactly in place: ``memoryview(packet)[16:]``); returns
        ``(next_header, inner_length)``."""
        cdef Py_buffer view, out_view
        cdef Py_ssize_t plaintext_len, inner_len = 0, bad_offset = -1
        cdef int status
        buffer_clear(&view)
        buffer_clear(&out_view)
        try:
            acquire_buffer(packet, &view, PyBUF_SIMPLE)
            acquire_buffer(out, &out_view, PyBUF_WRITABLE)
            if self.aead is None:
                raise ValueError("EspInbound was not initialised")
            plaintext_len = view.len - ESP_HEADER_LEN - self._icv_len
            if out_view.len < plaintext_len:
                raise ValueError(f"out holds {out_view.len} bytes, {plaintext_len} needed")
            if (_overlaps(view.buf, view.len, out_view.buf, out_view.len)
                    and <char *>out_view.buf != <char *>view.buf + ESP_HEADER_LEN):
                raise ValueError("out must not overlap packet (except in place, at byte 16)")
            status = self._open_one(<const uint8_t *>view.buf, view.len,
                                    <uint8_t *>out_view.buf, &inner_len, &bad_offset)
            if status < 0:
                self._raise_for(status, bad_offset)
            return (status, inner_len)
        finally:
            buffer_release(&view)
            buffer_release(&out_view)

    def decapsulate_batch(self, packets, out, ends, results) -> int:
        """Decapsulates every packet of ``packets`` (list or tuple of bytes-like), in order,
        into ``out``: inner packet i is ``out[ends[i-1]:ends[i]]`` (from 0 for i = 0; empty
        for a rejected packet). ``results[i]`` is its Next Header (>= 0) or DECAP_INTEGRITY_FAILED
        (-1), DECAP_REPLAYED (-2), DECAP_MALFORMED (-3); bad packets never raise and never
        move the window. ``ends``: 64-bit ints (``array('q')``), ``results``: 32-bit ints
        (``array('i')``). ``out`` needs sum(len(p) - 16 - icv_len) bytes. Returns the number
        of packets accepted."""
        cdef object items = PySequence_Fast(packets, "packets must be a list or tuple")
        cdef Py_ssize_t count = PySequence_Fast_GET_SIZE(items)
        cdef Py_ssize_t i, room = 0, position = 0, inner_len, bad_offset, accepted = 0
        cdef Py_buffer out_view, ends_view, results_view, item_view
        cdef object item
        cdef int64_t *end_offsets
        cdef int32_t *statuses
        cdef int status
        cdef bint overlap
        buffer_clear(&out_view)
        buffer_clear(&ends_view)
        buffer_clear(&results_view)
        buffer_clear(&item_view)
        try:
            acquire_buffer(out, &out_view, PyBUF_WRITABLE)
            acquire_buffer(ends, &ends_view, PyBUF_WRITABLE | PyBUF_FORMAT)
            acquire_buffer(results, &results_view, PyBUF_WRITABLE | PyBUF_FORMAT)
            _check_index_buffer(&ends_view, 8, b"qQlL", count, "ends")
            # signed only: the rejection codes are negative
            _check_index_buffer(&results_view, 4, b"il", count, "results")
            if self.aead is None:
                raise ValueError("EspInbound was not initialised")
            end_offsets = <int64_t *>ends_view.buf
            statuses = <int32_t *>results_view.buf
            for i in range(count):
                item = <object>PySequence_Fast_GET_ITEM(items, i)
                if PyBytes_CheckExact(item):
                    inner_len = PyBytes_GET_SIZE(item)
                else:
                    acquire_buffer(item, &item_view, PyBUF_SIMPLE)
                    inner_len = item_view.len
                    overlap = _overlaps(item_view.buf, inner_len, out_view.buf, out_view.len)
                    buffer_release(&item_view)
                    if overlap:
                        raise ValueError("out must not overlap the packets")
                inner_len -= ESP_HEADER_LEN + self._icv_len
                if inner_len > 0:
                    room += inner_len
            if out_view.len < room:
                raise ValueError(f"out holds {out_view.len} bytes, {room} needed")
            for i in range(count):
                item = <object>PySequence_Fast_GET_ITEM(items, i)
                acquire_buffer(item, &item_view, PyBUF_SIMPLE)
                try:
                    # re-checked: a buffer exporter could report another size the second time
                    if item_view.len - ESP_HEADER_LEN - self._icv_len > out_view.len - position:
                        raise ValueError("a packet changed size during the call")
                    inner_len = 0
                    status = self._open_one(<const uint8_t *>item_view.buf, item_view.len,
                                            <uint8_t *>out_view.buf + position, &inner_len,
                                            &bad_offset)
                finally:
                    buffer_release(&item_view)
                if status >= 0:
                    position += inner_len
                    accepted += 1
                elif status == BAD_INTEGRITY or status == BAD_ESN_IMPOSSIBLE:
                    status = BAD_INTEGRITY
                elif status <= BAD_SEEN and status > BAD_ESN_IMPOSSIBLE:
                    status = BAD_REPLAY
                else:
                    status = BAD_MALFORMED
                statuses[i] = status
                end_offsets[i] = position
            return accepted
        finally:
            buffer_release(&out_view)
            buffer_release(&ends_view)
            buffer_release(&results_view)


cdef inline bint memcmp4(const uint8_t *a, const uint8_t *b) noexcept nogil:
    return a[0] != b[0] or a[1] != b[1] or a[2] != b[2] or a[3] != b[3]
