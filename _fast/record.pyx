# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The binary encoding of `IkeSa` records in the persistent stores (record format 5; formats 2,
3 and 4 are still read).

A record is encoded into two byte strings: the *public* part (everything but key material,
stored in the clear but authenticated) and the *secret* part (the IKE SA's SK_* keys and
every Child SA's KEYMAT, which `RecordSealer` encrypts). Both are big-endian layouts, written
and read here in one native call each (format 1 was ``json.dumps(sa.to_dict())``, tens of
microseconds; a Python ``struct`` version of format 2 still took ~10 us to encode and ~40 us
to decode a record with two Child SAs).

Public part::

    IKE SA fixed block (IKE_BLOCK below)
    per Child SA: its fixed block (CHILD_BLOCK), then one TS_BLOCK per traffic selector
    format 3: the MOBIKE block (MOBIKE_BLOCK), then one ADDRESS_LENGTH per peer address
    format 5: the response cache (CACHE_BLOCK), then per response its RESPONSE_BLOCK and one
        MESSAGE_LENGTH per message
    byte strings: the local and remote identity data, then each Child SA's replay bitmap,
        then (format 3) nat_seen_as, then (format 5) per response the request and its messages
    text (UTF-8, to the end): IKE SA state, local host, remote host, peer name, family, then
        per Child SA its state and the start and end of each traffic selector, then (format 3)
        each of peer_addresses

The fixed blocks, in Python ``struct`` notation (big-endian, no padding)::

    IKE_BLOCK   ">8s8sBBHHHHQQIIQdd16s16sHHBBH" + "H" * 14   (142 bytes)
        spi_i spi_r | flags present | encr key_bits prf dh | next_request_id
        next_peer_request_id | peer_window local_window | sk_iv | created_at established_at
        | parent rekeyed_from | local port, remote port | local_id type, remote_id type
        | Child SA count | lengths: 2 identity data, 5 texts, 7 keys
    CHILD_BLOCK ">4s4sBHHHQQd4sBBHHHH"                         (53 bytes)
        spi_in spi_out | flags | encr key_bits dh | seq_out replay_highest | created_at
        | rekeyed_from | local TS count, remote TS count | lengths: bitmap, state, key_in,
        key_out
    TS_BLOCK    ">BHHHH"                                       (9 bytes)
        ip_protocol start_port end_port | lengths: start, end
    MOBIKE_BLOCK ">BQHH"                                       (13 bytes, format 3)
        flags (1: mobike_update_id present, 2 (format 4): mobike_initiator) | mobike_update_id
        | length of nat_seen_as | number of peer addresses
    ADDRESS_LENGTH ">H"                                        (2 bytes, format 3)
        length of one of peer_addresses
    CACHE_BLOCK ">I"                                           (4 bytes, format 5)
        number of cached responses
    RESPONSE_BLOCK ">IIH"                                      (10 bytes, format 5)
        message ID | length of the request | number of messages
    MESSAGE_LENGTH ">I"                                        (4 bytes, format 5)
        length of one message of the response

Format 3 is format 2 with the MOBIKE state of RFC 4555 added after everything else of each
section (so the format-2 part of a format-3 record is laid out exactly as before): the peer's
address set (§3.4, §3.6), the message ID of the last UPDATE_SA_ADDRESSES acted on (§3.5;
absent when none, the record's -1) and the peer's last NAT_DETECTION_DESTINATION_IP (§3.8;
empty when none); the secret part is the same in both. `decode` is told the format (by the
sealed record's header, sealing.py): a format-2 record decodes with the MOBIKE fields
defaulted (stores written before format 3 keep working); `encode` writes format 4 only.

Format 4 is format 3 with one more MOBIKE_BLOCK flag, ``mobike_initiator`` (RFC 4555's
initiator, §1.3: the end that initiated the first IKE SA of a series of rekeys, which a rekey
by the responder no longer tells apart from the I flag). Formats 2 and 3 never stored it: their
records decode with it equal to ``initiator``, which it was unless the responder had rekeyed
the SA (or the gateway cloned it) since the first IKE SA.

Format 5 is format 4 with the response cache (`IkeSa.responses`, RFC 7296 §2.1, §2.2) added
after everything else of each section, as format 3 added the MOBIKE state: so that a restarted
node, or the cluster node that takes the SA over, answers a retransmitted request with the
response sent before instead of dropping it (and, with a window > 1, knows which requests were
answered ahead of a lower one). Per response: its message ID, the request as received and our
response, one message or its Encrypted Fragment messages (RFC 7383), in the order of the
dictionary. These are IKE messages as sent on the wire (SK payloads sealed under the IKE SA's
keys, or a clear IKE_SA_INIT), so they belong in the public part; their lengths are 32-bit, as
the IKE header's Length field (RFC 7296 §3.1). No cache and an empty one are both stored as no
response and read back as None; formats 2, 3 and 4 decode with None.

The fixed blocks carry every length: of each byte string in bytes (16-bit but for the
messages of the response cache), of each text in characters
(all texts are encoded at once), of each key. Optional values have a presence bit and a zero
placeholder; ``key_bits`` 0 means "no Key Length attribute" (no transform is negotiated with
0). States are stored by their names, so adding a state does not renumber old records.
IKE_BLOCK flags are the booleans from bit 0 in this order: initiator, local_clone_supported,
peer_clone_supported, local_mobike_supported, peer_mobike_supported,
peer_fragmentation_supported, local_behind_nat, remote_behind_nat; its presence bits are
transforms 1, keys 2, local_id 4, remote_id 8, parent 16, rekeyed_from 32, established_at 64.
CHILD_BLOCK flags: initiator 1, ESN 2, rekeyed_from present 4.

Secret part: the seven IKE SA keys (RFC 7296 §2.14) when present, then ``key_in`` and
``key_out`` of each Child SA in the order of the public part, back to back.

`encode` raises ValueError for a value that does not fit its field (a negative counter, a
9-byte SPI) and TypeError for a value of the wrong type: such a record was never valid, and
nothing of it is written. `decode` is given only authenticated bytes (the sealer opens the
record first), so a decoding error means a writer bug or a record of another format; it raises
`MalformedMessage`, never another exception and never a partial record.

Decoded objects are built without running the dataclasses' ``__init__``: each instance is
allocated and every one of its slots filled directly (the record classes are bound below and
their slots checked when this module is imported, so a field added to a class without being
added here fails at import). That skips no check the record needs: the classes' ``__init__``
only assigns, and the one ``__post_init__`` (TrafficSelector's packed addresses) is done here
with the same ``socket.inet_pton``. Everything else in a record was validated when the SA was
made, and the record is authenticated, so its values are the ones ``encode`` was given.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_Check, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.float cimport PyFloat_AsDouble
from cpython.long cimport PyLong_AsUnsignedLongLong, PyLong_Check
from cpython.object cimport PyObject, PyObject_IsTrue, PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_Check, PyTuple_GET_SIZE
from cpython.type cimport PyType_GenericAlloc
from cpython.unicode cimport (
    PyUnicode_AsUTF8AndSize,
    PyUnicode_Check,
    PyUnicode_DecodeUTF8,
    PyUnicode_GET_LENGTH,
)
from libc.stdint cimport uint8_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, memset

import socket

from ikecore.config import Identity, TrafficSelector
from ikecore.constants import IdType
from ikecore.errors import MalformedMessage
from ikecore.sa import ChildSa, IkeSa, IkeSaKeys
from ikecore.states import ChildState, IkeState
from ikecore.suites import EspTransforms, IkeTransforms

__all__ = ["decode", "encode"]


from ikecore._fast._slots cimport object_slot_offset


cdef extern from "Python.h":
    unsigned long Py_TPFLAGS_HEAPTYPE
    unsigned long PyType_GetFlags(object type)
    PyTypeObject *Py_TYPE(object instance)


cdef enum:
    IKE_BLOCK = 142
    CHILD_BLOCK = 53
    TS_BLOCK = 9
    MOBIKE_BLOCK = 13
    ADDRESS_LENGTH = 2
    CACHE_BLOCK = 4
    RESPONSE_BLOCK = 10
    MESSAGE_LENGTH = 4
    # MOBIKE_BLOCK flags
    HAS_MOBIKE_UPDATE_ID = 1
    MOBIKE_INITIATOR = 2
    # IKE_BLOCK presence bits
    HAS_TRANSFORMS = 1
    HAS_KEYS = 2
    HAS_LOCAL_ID = 4
    HAS_REMOTE_ID = 8
    HAS_PARENT = 16
    HAS_REKEYED_FROM = 32
    HAS_ESTABLISHED_AT = 64
    # CHILD_BLOCK flags
    CHILD_INITIATOR = 1
    CHILD_ESN = 2
    CHILD_HAS_REKEYED_FROM = 4
    IKE_SA_KEYS = 7
    MAX_SLOTS = 40

cdef uint64_t U8 = 0xFF
cdef uint64_t U16 = 0xFFFF
cdef uint64_t U32 = 0xFFFFFFFF
cdef uint64_t U64 = 0xFFFFFFFFFFFFFFFF

# The IKE_BLOCK booleans, from bit 0 (see the module docstring).
cdef tuple _IKE_FLAGS = (
    "initiator",
    "local_clone_supported",
    "peer_clone_supported",
    "local_mobike_supported",
    "peer_mobike_supported",
    "peer_fragmentation_supported",
    "local_behind_nat",
    "remote_behind_nat",
)
cdef tuple _IKE_SA_KEY_NAMES = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")

# States by name, identity types by number (an unknown one is a malformed record).
cdef dict _IKE_STATES = {state._value_: state for state in IkeState}
cdef dict _CHILD_STATES = {state._value_: state for state in ChildState}
cdef dict _ID_TYPES = {int(id_type): id_type for id_type in IdType}

cdef object _inet_pton = socket.inet_pton
cdef object _AF_INET = socket.AF_INET
cdef object _AF_INET6 = socket.AF_INET6


# --- the record classes' slots ----------------------------------------------------------------

cdef struct Layout:
    PyObject *cls
    PyObject *fields  # tuple of the slot names
    Py_ssize_t count
    Py_ssize_t offsets[MAX_SLOTS]


cdef Layout L_IKE_SA, L_CHILD_SA, L_IKE_SA_KEYS, L_IDENTITY, L_SELECTOR
cdef Layout L_IKE_TRANSFORMS, L_ESP_TRANSFORMS

# Slot numbers (the order of the field names given to _bind below, which is checked against the
# class): encode reads the slots it needs by number.
cdef enum:
    SA_SPI_I, SA_SPI_R, SA_INITIATOR, SA_LOCAL_ADDRESS, SA_REMOTE_ADDRESS, SA_STATE,
    SA_TRANSFORMS, SA_KEYS, SA_LOCAL_ID, SA_REMOTE_ID, SA_PEER_NAME, SA_NEXT_REQUEST_ID,
    SA_NEXT_PEER_REQUEST_ID, SA_PEER_WINDOW, SA_LOCAL_WINDOW, SA_SK_IV,
    SA_LOCAL_CLONE_SUPPORTED,  # ... the other IKE_BLOCK flags after it, in their bit order
    SA_PEER_ADDRESSES = SA_LOCAL_CLONE_SUPPORTED + 7, SA_MOBIKE_UPDATE_ID, SA_NAT_SEEN_AS,
    SA_MOBIKE_INITIATOR, SA_PARENT, SA_FAMILY, SA_REKEYED_FROM, SA_CREATED_AT,
    SA_ESTABLISHED_AT, SA_CHILD_SAS, SA_RESPONSES
cdef enum:
    CHILD_SPI_IN, CHILD_SPI_OUT, CHILD_INITIATOR_SLOT, CHILD_TRANSFORMS, CHILD_KEY_IN,
    CHILD_KEY_OUT, CHILD_LOCAL_TS, CHILD_REMOTE_TS, CHILD_STATE, CHILD_SEQ_OUT,
    CHILD_REPLAY_HIGHEST, CHILD_REPLAY_BITMAP, CHILD_CREATED_AT, CHILD_REKEYED_FROM
cdef enum:
    ID_TYPE, ID_DATA
cdef enum:
    TS_START, TS_END, TS_IP_PROTOCOL, TS_START_PORT, TS_END_PORT
cdef enum:
    # IkeTransforms and EspTransforms (PRF in one, ESN in the other)
    TF_ENCR, TF_KEY_BITS, TF_PRF_OR_ESN, TF_DH


cdef int _bind(Layout *layout, type cls, tuple fields, object post_init=None) except -1:
    """Records where each slot of ``cls`` is, in the order of ``fields``: the class must be a
    slotted dataclass directly over object whose slots are exactly ``fields``, in that order
    (the order of its dataclass fields, so `_make` takes the values of a positional call).
    Decoding skips ``__init__``, so the class may have no ``__new__`` and no
    ``__post_init__`` but ``post_init``, whose work `_decode_child` does."""
    if (
        cls.__bases__ != (object,)
        or not PyType_GetFlags(cls) & Py_TPFLAGS_HEAPTYPE
        or cls.__dict__.get("__slots__") != fields
        or len(fields) > MAX_SLOTS
    ):
        raise TypeError(
            f"the record codec (_fast/record.pyx) stores {cls.__name__} as the slots {fields}, "
            f"but the class has {cls.__dict__.get('__slots__')}: update the codec (and the "
            "record format) with the class"
        )
    if cls.__new__ is not object.__new__ or cls.__dict__.get("__post_init__") is not post_init:
        raise TypeError(
            f"{cls.__name__} has a __new__ or __post_init__ that the record codec "
            "(_fast/record.pyx) does not do when it decodes: update the codec"
        )
    for index, name in enumerate(fields):
        layout.offsets[index] = object_slot_offset(cls, name)
    # The class and the names stay referenced by this module (_BOUND).
    layout.cls = <PyObject *>cls
    layout.fields = <PyObject *>fields
    layout.count = len(fields)
    _BOUND.append((cls, fields))
    return 0


cdef list _BOUND = []
_bind(&L_IKE_SA, IkeSa, (
    "spi_i", "spi_r", "initiator", "local_address", "remote_address", "state", "transforms",
    "keys", "local_id", "remote_id", "peer_name", "next_request_id", "next_peer_request_id",
    "peer_window", "local_window", "sk_iv", *_IKE_FLAGS[1:], "peer_addresses",
    "mobike_update_id", "nat_seen_as", "mobike_initiator", "parent", "family",
    "rekeyed_from", "created_at", "established_at", "child_sas", "responses",
))
_bind(&L_CHILD_SA, ChildSa, (
    "spi_in", "spi_out", "initiator", "transforms", "key_in", "key_out", "local_ts",
    "remote_ts", "state", "seq_out", "replay_highest", "replay_bitmap", "created_at",
    "rekeyed_from",
))
_bind(&L_IKE_SA_KEYS, IkeSaKeys, _IKE_SA_KEY_NAMES)
_bind(&L_IDENTITY, Identity, ("type", "data"))
_bind(&L_SELECTOR, TrafficSelector, (
    "start", "end", "ip_protocol", "start_port", "end_port", "packed_start", "packed_end",
), TrafficSelector.__dict__["__post_init__"])
_bind(&L_IKE_TRANSFORMS, IkeTransforms, ("encr", "key_bits", "prf", "dh"))
_bind(&L_ESP_TRANSFORMS, EspTransforms, ("encr", "key_bits", "esn", "dh"))


cdef int _check(object instance, Layout *layout, str what) except -1:
    """Encoding reads the slots of the exact record classes (a subclass could hold more than
    the format stores)."""
    if <PyObject *>Py_TYPE(instance) != layout.cls:
        raise TypeError(
            f"{what} must be {(<object>layout.cls).__name__}, not {type(instance).__name__}"
        )
    return 0


cdef inline object _get(object instance, Layout *layout, Py_ssize_t field):
    """Slot ``field`` of ``instance`` (of the layout's exact class: see `_check`)."""
    cdef PyObject *value = (<PyObject **>(<char *><PyObject *>instance + layout.offsets[field]))[0]
    if value == NULL:  # an instance made without __init__ that never set it
        raise AttributeError((<tuple>layout.fields)[field])
    return <object>value


cdef object _make(Layout *layout, tuple values):
    """A new instance of the layout's class with ``values`` in its slots (every slot set)."""
    cdef Py_ssize_t index
    cdef PyObject **slot
    if PyTuple_GET_SIZE(values) != layout.count:
        raise SystemError("record codec: wrong number of slot values")
    instance = PyType_GenericAlloc(<object>layout.cls, 0)
    for index in range(layout.count):
        value = values[index]
        Py_INCREF(value)
        slot = <PyObject **>(<char *><PyObject *>instance + layout.offsets[index])
        slot[0] = <PyObject *>value
    return instance


# --- big-endian fields ----------------------------------------------------------------------

cdef inline uint64_t _load(const uint8_t *data, int size) noexcept:
    cdef uint64_t value = 0
    cdef int index
    for index in range(size):
        value = value << 8 | data[index]
    return value


cdef inline void _store(uint8_t *out, int size, uint64_t value) noexcept:
    cdef int index
    for index in range(size - 1, -1, -1):
        out[index] = <uint8_t>value
        value >>= 8


cdef inline double _load_double(const uint8_t *data) noexcept:
    cdef uint64_t bits = _load(data, 8)
    cdef double value
    memcpy(&value, &bits, 8)
    return value


cdef inline void _store_double(uint8_t *out, double value) noexcept:
    cdef uint64_t bits
    memcpy(&bits, &value, 8)
    _store(out, 8, bits)


# --- encoding -------------------------------------------------------------------------------

cdef struct Buffer:
    uint8_t *data
    Py_ssize_t length
    Py_ssize_t capacity


cdef uint8_t *_grow(Buffer *buffer, Py_ssize_t size) except NULL:
    """Room for ``size`` more bytes at the end of ``buffer`` (a pointer into it, valid until
    the next call for the same buffer)."""
    cdef Py_ssize_t needed = buffer.length + size
    cdef Py_ssize_t capacity
    cdef uint8_t *grown
    if needed > buffer.capacity or buffer.data == NULL:  # never NULL, even for size 0
        capacity = max(needed, 2 * buffer.capacity, 512)
        grown = <uint8_t *>realloc(buffer.data, capacity)
        if grown == NULL:
            raise MemoryError()
        buffer.data = grown
        buffer.capacity = capacity
    grown = buffer.data + buffer.length
    buffer.length = needed
    return grown


cdef int _view(object data, str field, const uint8_t **start, Py_ssize_t *length) except -1:
    if PyBytes_Check(data):
        start[0] = <const uint8_t *>PyBytes_AS_STRING(data)
        length[0] = PyBytes_GET_SIZE(data)
    elif PyByteArray_Check(data):
        start[0] = <const uint8_t *>PyByteArray_AS_STRING(data)
        length[0] = PyByteArray_GET_SIZE(data)
    else:
        raise TypeError(f"IKE SA record field {field} must be bytes, not {type(data).__name__}")
    return 0


cdef int _spi(uint8_t *out, object spi, Py_ssize_t size, str field) except -1:
    """Copies an SPI of exactly ``size`` bytes (never cut or padded to fit)."""
    cdef const uint8_t *start
    cdef Py_ssize_t length
    _view(spi, field, &start, &length)
    if length != size:
        raise ValueError(f"{'IKE' if size == 8 else 'ESP'} SPIs are {size} bytes ({field})")
    memcpy(out, start, size)
    return 0


cdef int _spi_pair(uint8_t *out, object pair, str field) except -1:
    first, second = pair
    _spi(out, first, 8, field)
    _spi(out + 8, second, 8, field)
    return 0


cdef int _uint(uint8_t *out, int size, object value, uint64_t limit, str field) except -1:
    """Stores ``value`` (an int from 0 to ``limit``) in ``size`` big-endian bytes."""
    cdef uint64_t number
    if not PyLong_Check(value):
        raise TypeError(f"IKE SA record field {field} must be an int, not {type(value).__name__}")
    try:
        number = PyLong_AsUnsignedLongLong(value)
    except OverflowError:  # negative, or 2^64 and above
        raise ValueError(f"IKE SA record field out of range: {field} = {value}") from None
    if number > limit:
        raise ValueError(f"IKE SA record field out of range: {field} = {value}")
    _store(out, size, number)
    return 0


cdef int _length(uint8_t *out, Py_ssize_t length, str field) except -1:
    """Stores the length of a byte string or text in a 16-bit length field."""
    if length > U16:
        raise ValueError(f"IKE SA record field out of range: {field} is {length} long")
    _store(out, 2, length)
    return 0


cdef int _double(uint8_t *out, object value, str field) except -1:
    try:
        _store_double(out, PyFloat_AsDouble(value))
    except OverflowError:
        raise ValueError(f"IKE SA record field out of range: {field}") from None
    return 0


cdef int _append_bytes(Buffer *buffer, object data, str field, uint8_t *length_out) except -1:
    """Appends a byte string; its length goes to a 16-bit length field."""
    cdef const uint8_t *start
    cdef Py_ssize_t length
    _view(data, field, &start, &length)
    _length(length_out, length, field)
    memcpy(_grow(buffer, length), start, length)
    return 0


cdef int _append_message(Buffer *buffer, object data, str field, uint8_t *length_out) except -1:
    """Appends an IKE message of the response cache; its length goes to a 32-bit field."""
    cdef const uint8_t *start
    cdef Py_ssize_t length
    _view(data, field, &start, &length)
    if <uint64_t>length > U32:
        raise ValueError(f"IKE SA record field out of range: {field} is {length} long")
    _store(length_out, 4, length)
    memcpy(_grow(buffer, length), start, length)
    return 0


cdef int _encode_identity(Buffer *blobs, object identity, uint8_t *type_out,
                          uint8_t *length_out, str name, str type_name,
                          str data_name) except -1:
    """An Identity's type into its IKE block byte, its data into the blobs (length at
    ``length_out``); the field names come ready-made, so no text is built per record."""
    _check(identity, &L_IDENTITY, name)
    _uint(type_out, 1, _get(identity, &L_IDENTITY, ID_TYPE), U8, type_name)
    _append_bytes(blobs, _get(identity, &L_IDENTITY, ID_DATA), data_name, length_out)
    return 0


cdef int _append_text(Buffer *buffer, object text, str field, uint8_t *length_out) except -1:
    """Appends a text in UTF-8; its length in characters goes to a 16-bit length field."""
    cdef const char *utf8
    cdef Py_ssize_t size
    if not PyUnicode_Check(text):
        raise TypeError(f"IKE SA record field {field} must be str, not {type(text).__name__}")
    _length(length_out, PyUnicode_GET_LENGTH(text), field)
    utf8 = PyUnicode_AsUTF8AndSize(text, &size)  # ValueError for lone surrogates
    memcpy(_grow(buffer, size), utf8, size)
    return 0


cdef int _append_bitmap(Buffer *buffer, object bitmap, uint8_t *length_out) except -1:
    """Appends a replay bitmap (a non-negative int) as its shortest big-endian bytes."""
    cdef uint64_t number
    cdef int size = 0
    if not PyLong_Check(bitmap):
        raise TypeError(f"IKE SA record field replay_bitmap must be an int, not "
                        f"{type(bitmap).__name__}")
    try:
        number = PyLong_AsUnsignedLongLong(bitmap)
    except OverflowError:  # negative, or wider than 64 bits
        if bitmap < 0:
            raise ValueError(f"IKE SA record field out of range: replay_bitmap = {bitmap}") from None
        return _append_bytes(buffer, bitmap.to_bytes((bitmap.bit_length() + 7) // 8, "big"),
                             "replay_bitmap", length_out)
    while size < 8 and number >> (8 * size):
        size += 1
    _store(_grow(buffer, size), size, number)
    _store(length_out, 2, size)
    return 0


def encode(sa):
    """(public, secret) encodings of ``sa`` (an `IkeSa`)."""
    cdef Buffer blocks, blobs, texts
    memset(&blocks, 0, sizeof(Buffer))
    memset(&blobs, 0, sizeof(Buffer))
    memset(&texts, 0, sizeof(Buffer))
    try:
        return _encode(sa, &blocks, &blobs, &texts)
    finally:
        free(blocks.data)
        free(blobs.data)
        free(texts.data)


cdef tuple _encode(object sa, Buffer *blocks, Buffer *blobs, Buffer *texts):
    # Key material is never copied into a native buffer: the secret part is joined from the
    # key objects themselves.
    cdef list secret = []
    cdef uint8_t *ike
    cdef uint8_t *block
    cdef uint8_t flags = 0
    cdef uint8_t present = 0
    cdef int bit
    cdef Py_ssize_t index, length
    cdef const uint8_t *start
    cdef bytes public

    _check(sa, &L_IKE_SA, "the record")
    ike = _grow(blocks, IKE_BLOCK)  # filled completely before blocks grows again
    memset(ike, 0, IKE_BLOCK)
    _spi(ike, _get(sa, &L_IKE_SA, SA_SPI_I), 8, "spi_i")
    _spi(ike + 8, _get(sa, &L_IKE_SA, SA_SPI_R), 8, "spi_r")
    if PyObject_IsTrue(_get(sa, &L_IKE_SA, SA_INITIATOR)):
        flags = 1
    for bit in range(1, 8):
        if PyObject_IsTrue(_get(sa, &L_IKE_SA, SA_LOCAL_CLONE_SUPPORTED + bit - 1)):
            flags |= 1 << bit
    ike[16] = flags

    transforms = _get(sa, &L_IKE_SA, SA_TRANSFORMS)
    if transforms is not None:
        present |= HAS_TRANSFORMS
        _check(transforms, &L_IKE_TRANSFORMS, "transforms")
        _uint(ike + 18, 2, _get(transforms, &L_IKE_TRANSFORMS, TF_ENCR), U16, "transforms.encr")
        _uint(ike + 20, 2, _get(transforms, &L_IKE_TRANSFORMS, TF_KEY_BITS) or 0, U16,
              "transforms.key_bits")
        _uint(ike + 22, 2, _get(transforms, &L_IKE_TRANSFORMS, TF_PRF_OR_ESN), U16,
              "transforms.prf")
        _uint(ike + 24, 2, _get(transforms, &L_IKE_TRANSFORMS, TF_DH), U16, "transforms.dh")
    _uint(ike + 26, 8, _get(sa, &L_IKE_SA, SA_NEXT_REQUEST_ID), U64, "next_request_id")
    _uint(ike + 34, 8, _get(sa, &L_IKE_SA, SA_NEXT_PEER_REQUEST_ID), U64,
          "next_peer_request_id")
    _uint(ike + 42, 4, _get(sa, &L_IKE_SA, SA_PEER_WINDOW), U32, "peer_window")
    _uint(ike + 46, 4, _get(sa, &L_IKE_SA, SA_LOCAL_WINDOW), U32, "local_window")
    _uint(ike + 50, 8, _get(sa, &L_IKE_SA, SA_SK_IV), U64, "sk_iv")
    _double(ike + 58, _get(sa, &L_IKE_SA, SA_CREATED_AT), "created_at")
    established_at = _get(sa, &L_IKE_SA, SA_ESTABLISHED_AT)
    if established_at is not None:
        present |= HAS_ESTABLISHED_AT
        _double(ike + 66, established_at, "established_at")
    parent = _get(sa, &L_IKE_SA, SA_PARENT)
    if parent is not None:
        present |= HAS_PARENT
        _spi_pair(ike + 74, parent, "parent")
    rekeyed_from = _get(sa, &L_IKE_SA, SA_REKEYED_FROM)
    if rekeyed_from is not None:
        present |= HAS_REKEYED_FROM
        _spi_pair(ike + 90, rekeyed_from, "rekeyed_from")
    local_host, local_port = _get(sa, &L_IKE_SA, SA_LOCAL_ADDRESS)
    remote_host, remote_port = _get(sa, &L_IKE_SA, SA_REMOTE_ADDRESS)
    _uint(ike + 106, 2, local_port, U16, "local_address port")
    _uint(ike + 108, 2, remote_port, U16, "remote_address port")
    local_id = _get(sa, &L_IKE_SA, SA_LOCAL_ID)
    if local_id is not None:
        present |= HAS_LOCAL_ID
        _encode_identity(blobs, local_id, ike + 110, ike + 114,
                         "local_id", "local_id.type", "local_id.data")
    remote_id = _get(sa, &L_IKE_SA, SA_REMOTE_ID)
    if remote_id is not None:
        present |= HAS_REMOTE_ID
        _encode_identity(blobs, remote_id, ike + 111, ike + 116,
                         "remote_id", "remote_id.type", "remote_id.data")
    cdef dict child_sas = _get(sa, &L_IKE_SA, SA_CHILD_SAS)
    _length(ike + 112, len(child_sas), "number of Child SAs")
    _append_text(texts, _get(sa, &L_IKE_SA, SA_STATE)._value_, "state", ike + 118)
    _append_text(texts, local_host, "local_address host", ike + 120)
    _append_text(texts, remote_host, "remote_address host", ike + 122)
    _append_text(texts, _get(sa, &L_IKE_SA, SA_PEER_NAME), "peer_name", ike + 124)
    _append_text(texts, _get(sa, &L_IKE_SA, SA_FAMILY), "family", ike + 126)
    keys = _get(sa, &L_IKE_SA, SA_KEYS)
    if keys is not None:
        present |= HAS_KEYS
        _check(keys, &L_IKE_SA_KEYS, "keys")
        for index in range(IKE_SA_KEYS):
            key = _get(keys, &L_IKE_SA_KEYS, index)
            _view(key, _IKE_SA_KEY_NAMES[index], &start, &length)
            _length(ike + 128 + 2 * index, length, _IKE_SA_KEY_NAMES[index])
            secret.append(key)
    ike[17] = present

    for child in child_sas.values():
        _encode_child(child, blocks, blobs, texts, secret)
    _encode_mobike(sa, blocks, blobs, texts)
    _encode_responses(sa, blocks, blobs)

    public = PyBytes_FromStringAndSize(NULL, blocks.length + blobs.length + texts.length)
    block = <uint8_t *>PyBytes_AS_STRING(public)
    memcpy(block, blocks.data, blocks.length)
    memcpy(block + blocks.length, blobs.data, blobs.length)
    memcpy(block + blocks.length + blobs.length, texts.data, texts.length)
    return public, b"".join(secret)


cdef int _encode_child(object child, Buffer *blocks, Buffer *blobs, Buffer *texts,
                       list secret) except -1:
    cdef uint8_t *block
    cdef uint8_t flags = 0
    cdef const uint8_t *start
    cdef Py_ssize_t length
    _check(child, &L_CHILD_SA, "a Child SA")
    esp = _get(child, &L_CHILD_SA, CHILD_TRANSFORMS)
    _check(esp, &L_ESP_TRANSFORMS, "a Child SA's transforms")
    local_ts = _get(child, &L_CHILD_SA, CHILD_LOCAL_TS)
    remote_ts = _get(child, &L_CHILD_SA, CHILD_REMOTE_TS)
    block = _grow(blocks, CHILD_BLOCK)  # filled before blocks grows again
    _spi(block, _get(child, &L_CHILD_SA, CHILD_SPI_IN), 4, "spi_in")
    _spi(block + 4, _get(child, &L_CHILD_SA, CHILD_SPI_OUT), 4, "spi_out")
    if PyObject_IsTrue(_get(child, &L_CHILD_SA, CHILD_INITIATOR_SLOT)):
        flags |= CHILD_INITIATOR
    if PyObject_IsTrue(_get(esp, &L_ESP_TRANSFORMS, TF_PRF_OR_ESN)):
        flags |= CHILD_ESN
    rekeyed_from = _get(child, &L_CHILD_SA, CHILD_REKEYED_FROM)
    if rekeyed_from is None:
        memset(block + 39, 0, 4)
    else:
        flags |= CHILD_HAS_REKEYED_FROM
        _spi(block + 39, rekeyed_from, 4, "Child SA rekeyed_from")
    block[8] = flags
    _uint(block + 9, 2, _get(esp, &L_ESP_TRANSFORMS, TF_ENCR), U16, "Child SA transforms.encr")
    _uint(block + 11, 2, _get(esp, &L_ESP_TRANSFORMS, TF_KEY_BITS) or 0, U16,
          "Child SA transforms.key_bits")
    _uint(block + 13, 2, _get(esp, &L_ESP_TRANSFORMS, TF_DH), U16, "Child SA transforms.dh")
    _uint(block + 15, 8, _get(child, &L_CHILD_SA, CHILD_SEQ_OUT), U64, "seq_out")
    _uint(block + 23, 8, _get(child, &L_CHILD_SA, CHILD_REPLAY_HIGHEST), U64, "replay_highest")
    _double(block + 31, _get(child, &L_CHILD_SA, CHILD_CREATED_AT), "Child SA created_at")
    _uint(block + 43, 1, len(local_ts), U8, "number of local traffic selectors")
    _uint(block + 44, 1, len(remote_ts), U8, "number of remote traffic selectors")
    _append_bitmap(blobs, _get(child, &L_CHILD_SA, CHILD_REPLAY_BITMAP), block + 45)
    _append_text(texts, _get(child, &L_CHILD_SA, CHILD_STATE)._value_, "Child SA state",
                 block + 47)
    key_in = _get(child, &L_CHILD_SA, CHILD_KEY_IN)
    key_out = _get(child, &L_CHILD_SA, CHILD_KEY_OUT)
    _view(key_in, "key_in", &start, &length)
    _length(block + 49, length, "key_in")
    _view(key_out, "key_out", &start, &length)
    _length(block + 51, length, "key_out")
    secret.append(key_in)
    secret.append(key_out)
    for selectors in (local_ts, remote_ts):
        for selector in selectors:
            _check(selector, &L_SELECTOR, "a traffic selector")
            block = _grow(blocks, TS_BLOCK)
            _uint(block, 1, _get(selector, &L_SELECTOR, TS_IP_PROTOCOL), U8,
                  "traffic selector ip_protocol")
            _uint(block + 1, 2, _get(selector, &L_SELECTOR, TS_START_PORT), U16,
                  "traffic selector start_port")
            _uint(block + 3, 2, _get(selector, &L_SELECTOR, TS_END_PORT), U16,
                  "traffic selector end_port")
            _append_text(texts, _get(selector, &L_SELECTOR, TS_START), "traffic selector start",
                         block + 5)
            _append_text(texts, _get(selector, &L_SELECTOR, TS_END), "traffic selector end",
                         block + 7)
    return 0


cdef int _encode_mobike(object sa, Buffer *blocks, Buffer *blobs, Buffer *texts) except -1:
    """Format 4's MOBIKE_BLOCK and ADDRESS_LENGTHs, nat_seen_as and the peer addresses."""
    cdef uint8_t *block
    cdef Py_ssize_t count, index
    addresses = _get(sa, &L_IKE_SA, SA_PEER_ADDRESSES)
    if not PyTuple_Check(addresses):
        raise TypeError(f"IKE SA record field peer_addresses must be a tuple, not "
                        f"{type(addresses).__name__}")
    count = PyTuple_GET_SIZE(addresses)
    if count > U16:
        raise ValueError(f"IKE SA record field out of range: {count} peer_addresses")
    block = _grow(blocks, MOBIKE_BLOCK + ADDRESS_LENGTH * count)  # filled before it grows
    memset(block, 0, MOBIKE_BLOCK)
    update_id = _get(sa, &L_IKE_SA, SA_MOBIKE_UPDATE_ID)
    # -1: no update acted on yet (no message ID is negative).
    if not (PyLong_Check(update_id) and update_id == -1):
        block[0] = HAS_MOBIKE_UPDATE_ID
        _uint(block + 1, 8, update_id, U64, "mobike_update_id")
    if PyObject_IsTrue(_get(sa, &L_IKE_SA, SA_MOBIKE_INITIATOR)):
        block[0] |= MOBIKE_INITIATOR
    _append_bytes(blobs, _get(sa, &L_IKE_SA, SA_NAT_SEEN_AS), "nat_seen_as", block + 9)
    _store(block + 11, 2, count)
    for index in range(count):
        _append_text(texts, addresses[index], "peer_addresses",
                     block + MOBIKE_BLOCK + ADDRESS_LENGTH * index)
    return 0


cdef int _encode_responses(object sa, Buffer *blocks, Buffer *blobs) except -1:
    """Format 5's CACHE_BLOCK, RESPONSE_BLOCKs and MESSAGE_LENGTHs; the requests and messages
    into the byte strings."""
    cdef uint8_t *block
    cdef Py_ssize_t count, index
    responses = _get(sa, &L_IKE_SA, SA_RESPONSES)
    if responses is None:
        memset(_grow(blocks, CACHE_BLOCK), 0, CACHE_BLOCK)
        return 0
    if type(responses) is not dict:
        raise TypeError(f"IKE SA record field responses must be a dict or None, not "
                        f"{type(responses).__name__}")
    _uint(_grow(blocks, CACHE_BLOCK), 4, len(responses), U32, "number of responses")
    for message_id, response in (<dict>responses).items():
        if not (PyTuple_Check(response) and PyTuple_GET_SIZE(response) == 2
                and PyTuple_Check(response[1])):
            raise TypeError("IKE SA record field responses must hold (request, messages) "
                            "tuples, messages a tuple")
        messages = response[1]
        count = PyTuple_GET_SIZE(messages)
        if count > U16:
            raise ValueError(f"IKE SA record field out of range: a response of {count} "
                             "messages")
        # Filled before blocks grows again (only the byte strings grow below).
        block = _grow(blocks, RESPONSE_BLOCK + MESSAGE_LENGTH * count)
        _uint(block, 4, message_id, U32, "responses message ID")
        _append_message(blobs, response[0], "responses request", block + 4)
        _store(block + 8, 2, count)
        for index in range(count):
            _append_message(blobs, messages[index], "responses message",
                            block + RESPONSE_BLOCK + MESSAGE_LENGTH * index)
    return 0


# --- decoding -------------------------------------------------------------------------------

def decode(public, secret, int record_format=5):
    """The `IkeSa` encoded by `encode` as (``public``, ``secret``) in ``record_format`` (5, or
    4, 3 or 2 as written before: what they did not store gets its default); MalformedMessage
    for anything else."""
    cdef Py_buffer public_view, secret_view
    if record_format < 2 or record_format > 5:
        raise ValueError(f"record format {record_format}: only formats 2, 3, 4 and 5 are "
                         "decoded")
    PyObject_GetBuffer(public, &public_view, PyBUF_SIMPLE)
    try:
        PyObject_GetBuffer(secret, &secret_view, PyBUF_SIMPLE)
        try:
            return _decode(<const uint8_t *>public_view.buf, public_view.len,
                           <const uint8_t *>secret_view.buf, secret_view.len,
                           record_format)
        finally:
            PyBuffer_Release(&secret_view)
    finally:
        PyBuffer_Release(&public_view)


cdef inline bytes _bytes(const uint8_t *data, Py_ssize_t length):
    return PyBytes_FromStringAndSize(<const char *>data, length)


cdef object _unreadable(str what):
    return MalformedMessage(f"unreadable stored SA record: {what}")


cdef object _decode(const uint8_t *public, Py_ssize_t public_length, const uint8_t *secret,
                    Py_ssize_t secret_length, int record_format):
    cdef Py_ssize_t offset, blocks_end, text_at, blob_at, key_at, text_pos, index
    cdef Py_ssize_t mobike_at = 0, address_count = 0
    cdef Py_ssize_t cache_at = 0, response_count = 0, response_index, message_count
    cdef object update_id = -1  # a Python int: -1 is "none", not 2^64 - 1
    cdef Py_ssize_t blob_total, text_total, key_total, ike_key_total
    cdef Py_ssize_t child_count, selector_count, child_index, selector_index, length
    cdef const uint8_t *block
    cdef uint8_t flags, present
    cdef str text
    cdef bint with_mobike = record_format >= 3
    cdef bint with_responses = record_format >= 5

    # The fixed blocks first: they give every length of what follows them.
    if public_length < IKE_BLOCK:
        raise MalformedMessage("stored SA record ends inside a fixed block", 0)
    flags = public[16]
    present = public[17]
    child_count = _load(public + 112, 2)
    blob_total = _load(public + 114, 2) + _load(public + 116, 2)
    text_total = 0
    for index in range(5):
        text_total += _load(public + 118 + 2 * index, 2)
    ike_key_total = 0
    for index in range(IKE_SA_KEYS):
        ike_key_total += _load(public + 128 + 2 * index, 2)
    key_total = ike_key_total
    offset = IKE_BLOCK
    for child_index in range(child_count):
        if offset + CHILD_BLOCK > public_length:
            raise MalformedMessage("stored SA record ends inside a fixed block", offset)
        block = public + offset
        blob_total += _load(block + 45, 2)
        text_total += _load(block + 47, 2)
        key_total += _load(block + 49, 2) + _load(block + 51, 2)
        selector_count = block[43] + block[44]
        offset += CHILD_BLOCK
        for selector_index in range(selector_count):
            if offset + TS_BLOCK > public_length:
                raise MalformedMessage("stored SA record ends inside a fixed block", offset)
            text_total += _load(public + offset + 5, 2) + _load(public + offset + 7, 2)
            offset += TS_BLOCK
    if with_mobike:
        if offset + MOBIKE_BLOCK > public_length:
            raise MalformedMessage("stored SA record ends inside a fixed block", offset)
        mobike_at = offset
        blob_total += _load(public + offset + 9, 2)
        address_count = _load(public + offset + 11, 2)
        offset += MOBIKE_BLOCK
        if offset + ADDRESS_LENGTH * address_count > public_length:
            raise MalformedMessage("stored SA record ends inside a fixed block", offset)
        for index in range(address_count):
            text_total += _load(public + offset + ADDRESS_LENGTH * index, 2)
        offset += ADDRESS_LENGTH * address_count
    if with_responses:
        if offset + CACHE_BLOCK > public_length:
            raise MalformedMessage("stored SA record ends inside a fixed block", offset)
        cache_at = offset
        response_count = _load(public + offset, 4)
        offset += CACHE_BLOCK
        for response_index in range(response_count):
            if offset + RESPONSE_BLOCK > public_length:
                raise MalformedMessage("stored SA record ends inside a fixed block", offset)
            blob_total += _load(public + offset + 4, 4)
            message_count = _load(public + offset + 8, 2)
            offset += RESPONSE_BLOCK
            if offset + MESSAGE_LENGTH * message_count > public_length:
                raise MalformedMessage("stored SA record ends inside a fixed block", offset)
            for index in range(message_count):
                blob_total += _load(public + offset + MESSAGE_LENGTH * index, 4)
            offset += MESSAGE_LENGTH * message_count
    blocks_end = offset
    text_at = offset + blob_total
    if text_at > public_length:
        raise MalformedMessage("stored SA record ends inside its byte strings", offset)
    try:
        text = PyUnicode_DecodeUTF8(<const char *>public + text_at, public_length - text_at,
                                    "strict")
    except UnicodeDecodeError:
        raise MalformedMessage("stored SA record text is not UTF-8", text_at) from None
    if text_total != PyUnicode_GET_LENGTH(text):
        raise MalformedMessage("stored SA record text is not as long as its lengths", text_at)
    if not present & HAS_KEYS and ike_key_total:
        raise MalformedMessage("stored SA record has lengths of IKE SA keys it does not hold")
    if key_total != secret_length:
        raise MalformedMessage("stored SA record keys are not as long as their lengths")

    # Every length is consistent: the pieces are cut in order (blobs, texts and keys each
    # from a cursor), and the objects built.
    blob_at = blocks_end
    text_pos = 0
    key_at = 0

    local_id = remote_id = None
    length = _load(public + 114, 2)
    if present & HAS_LOCAL_ID:
        local_id = _make(&L_IDENTITY, (_id_type(public[110]), _bytes(public + blob_at, length)))
    blob_at += length
    length = _load(public + 116, 2)
    if present & HAS_REMOTE_ID:
        remote_id = _make(&L_IDENTITY, (_id_type(public[111]), _bytes(public + blob_at, length)))
    blob_at += length

    pieces = []
    for index in range(5):
        length = _load(public + 118 + 2 * index, 2)
        pieces.append(text[text_pos : text_pos + length])
        text_pos += length
    state = _IKE_STATES.get(pieces[0])
    if state is None:
        raise _unreadable(f"{pieces[0]!r} is not an IKE SA state")

    keys = None
    if present & HAS_KEYS:
        values = []
        for index in range(IKE_SA_KEYS):
            length = _load(public + 128 + 2 * index, 2)
            values.append(_bytes(secret + key_at, length))
            key_at += length
        keys = _make(&L_IKE_SA_KEYS, tuple(values))

    transforms = None
    if present & HAS_TRANSFORMS:
        transforms = _make(&L_IKE_TRANSFORMS, (
            _load(public + 18, 2), _load(public + 20, 2) or None, _load(public + 22, 2),
            _load(public + 24, 2),
        ))

    children = {}
    offset = IKE_BLOCK
    for child_index in range(child_count):
        spi_in, child = _decode_child(
            public + offset, text, &text_pos, public + blob_at, secret + key_at
        )
        block = public + offset
        blob_at += _load(block + 45, 2)
        key_at += _load(block + 49, 2) + _load(block + 51, 2)
        offset += CHILD_BLOCK + (block[43] + block[44]) * TS_BLOCK
        children[spi_in] = child
    if len(children) != child_count:
        raise MalformedMessage("stored SA record has two Child SAs with one inbound SPI")

    # The MOBIKE state (format 3 on), after everything else of each section; format 2: the
    # defaults. Before format 4 the MOBIKE role is taken to be the I flag's (see above).
    peer_addresses = ()
    nat_seen_as = b""
    mobike_initiator = bool(flags & 1)
    if with_mobike:
        block = public + mobike_at
        if record_format >= 4:
            mobike_initiator = bool(block[0] & MOBIKE_INITIATOR)
        if block[0] & HAS_MOBIKE_UPDATE_ID:
            update_id = _load(block + 1, 8)
        length = _load(block + 9, 2)
        nat_seen_as = _bytes(public + blob_at, length)
        blob_at += length
        values = []
        for index in range(address_count):
            length = _load(block + MOBIKE_BLOCK + ADDRESS_LENGTH * index, 2)
            values.append(text[text_pos : text_pos + length])
            text_pos += length
        peer_addresses = tuple(values)

    # The response cache (format 5 on), after the MOBIKE state; before: none.
    responses = None
    if response_count:
        responses = {}
        offset = cache_at + CACHE_BLOCK
        for response_index in range(response_count):
            block = public + offset
            message_count = _load(block + 8, 2)
            length = _load(block + 4, 4)
            request = _bytes(public + blob_at, length)
            blob_at += length
            values = []
            for index in range(message_count):
                length = _load(block + RESPONSE_BLOCK + MESSAGE_LENGTH * index, 4)
                values.append(_bytes(public + blob_at, length))
                blob_at += length
            responses[_load(block, 4)] = (request, tuple(values))
            offset += RESPONSE_BLOCK + MESSAGE_LENGTH * message_count
        if len(responses) != response_count:
            raise MalformedMessage("stored SA record has two responses with one message ID")

    return _make(&L_IKE_SA, (
        _bytes(public, 8),
        _bytes(public + 8, 8),
        bool(flags & 1),
        (pieces[1], _load(public + 106, 2)),
        (pieces[2], _load(public + 108, 2)),
        state,
        transforms,
        keys,
        local_id,
        remote_id,
        pieces[3],
        _load(public + 26, 8),
        _load(public + 34, 8),
        _load(public + 42, 4),
        _load(public + 46, 4),
        _load(public + 50, 8),
        bool(flags & 2),
        bool(flags & 4),
        bool(flags & 8),
        bool(flags & 16),
        bool(flags & 32),
        bool(flags & 64),
        bool(flags & 128),
        peer_addresses,
        update_id,
        nat_seen_as,
        mobike_initiator,
        (_bytes(public + 74, 8), _bytes(public + 82, 8)) if present & HAS_PARENT else None,
        pieces[4],
        (_bytes(public + 90, 8), _bytes(public + 98, 8)) if present & HAS_REKEYED_FROM else None,
        _load_double(public + 58),
        _load_double(public + 66) if present & HAS_ESTABLISHED_AT else None,
        children,
        responses,
    ))


cdef object _id_type(uint8_t number):
    id_type = _ID_TYPES.get(number)
    if id_type is None:
        raise _unreadable(f"{number} is not an identity type")
    return id_type


cdef tuple _decode_child(const uint8_t *block, str text, Py_ssize_t *text_pos,
                         const uint8_t *blob, const uint8_t *keys):
    """(spi_in, ChildSa) of the Child SA whose block (followed by its TS_BLOCKs) is at
    ``block``; ``blob`` and ``keys`` point at its bitmap and keys, ``text_pos`` at its state
    (advanced past its texts)."""
    cdef uint8_t flags = block[8]
    cdef Py_ssize_t bitmap_length = _load(block + 45, 2)
    cdef Py_ssize_t state_length = _load(block + 47, 2)
    cdef Py_ssize_t key_in_length = _load(block + 49, 2)
    cdef Py_ssize_t position = text_pos[0]
    cdef Py_ssize_t start_length, end_length, count, index
    cdef const uint8_t *selector
    cdef str name, start, end

    name = text[position : position + state_length]
    position += state_length
    state = _CHILD_STATES.get(name)
    if state is None:
        raise _unreadable(f"{name!r} is not a Child SA state")
    if bitmap_length <= 8:
        bitmap = _load(blob, <int>bitmap_length)
    else:
        bitmap = int.from_bytes(_bytes(blob, bitmap_length), "big")

    selectors = []
    selector = block + CHILD_BLOCK
    count = block[43] + block[44]
    for index in range(count):
        start_length = _load(selector + 5, 2)
        end_length = _load(selector + 7, 2)
        start = text[position : position + start_length]
        position += start_length
        end = text[position : position + end_length]
        position += end_length
        # TrafficSelector.__post_init__'s packed forms, by the same function.
        family = _AF_INET6 if ":" in start else _AF_INET
        try:
            packed_start = _inet_pton(family, start)
            packed_end = _inet_pton(family, end)
        except (OSError, ValueError):
            raise _unreadable(f"bad traffic selector range {start} - {end}") from None
        selectors.append(_make(&L_SELECTOR, (
            start, end, selector[0], _load(selector + 1, 2), _load(selector + 3, 2),
            packed_start, packed_end,
        )))
        selector += TS_BLOCK
    text_pos[0] = position

    spi_in = _bytes(block, 4)
    child = _make(&L_CHILD_SA, (
        spi_in,
        _bytes(block + 4, 4),
        bool(flags & CHILD_INITIATOR),
        _make(&L_ESP_TRANSFORMS, (
            _load(block + 9, 2), _load(block + 11, 2) or None, bool(flags & CHILD_ESN),
            _load(block + 13, 2),
        )),
        _bytes(keys, key_in_length),
        _bytes(keys + key_in_length, _load(block + 51, 2)),
        tuple(selectors[: block[43]]),
        tuple(selectors[block[43] :]),
        state,
        _load(block + 15, 8),
        _load(block + 23, 8),
        bitmap,
        _load_double(block + 31),
        _bytes(block + 39, 4) if flags & CHILD_HAS_REKEYED_FROM else None,
    ))
    return spi_in, child
