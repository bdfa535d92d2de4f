# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""IKEv2 message structure (RFC 7296 §3, RFC 7383 §2.5): one native call per operation.

- ``index_message`` / ``index_chain``: the IKE header and the payload chain are walked with
  strict bounds checks and summarised as a compact *index*: bytes holding, per payload, three
  native-endian uint32 words ``type | critical << 8 | next_payload << 16``, the payload's offset
  (of its generic header) and its length. With ``check_bodies`` every payload body is also
  validated (the same code as decoding, without building objects).
- ``decode_payloads`` / ``decode_payload``: typed objects from an index.
- ``encode_payloads`` / ``encode_message``: payload objects to bytes (RESERVED fields zero).

The payload classes are frozen slotted dataclasses defined in ``ikecore.payloads`` and handed to
``bind_classes``. Objects are built by allocating the instance and storing each field in its
slot (what ``object.__setattr__`` does through the slot's member descriptor), and read back
from the slots when encoding (after an exact class check), so no Python-level ``__init__`` or
attribute lookup runs per payload. ``bind_classes`` checks that the field names match.

Every malformed input raises ``MalformedMessage`` with the absolute byte offset of the problem;
a critical payload of an unknown type raises the bound ``UnsupportedCriticalPayload``.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_Check, PyByteArray_GET_SIZE
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_CheckExact,
    PyBytes_Check,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.list cimport PyList_Append, PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_Check
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.stdint cimport uint32_t
from libc.string cimport memcpy, memset

from ikecore.errors import MalformedMessage, RemoteProtocolError


from ikecore._fast._slots cimport object_slot_offset


cdef extern from "Python.h":
    ctypedef struct PyTypeObject
    object PyType_GenericAlloc(PyTypeObject *type, Py_ssize_t nitems)
    long long PyLong_AsLongLongAndOverflow(object obj, int *overflow) except? -1
    PyObject *PyLong_FromUnsignedLong(unsigned long value)


ctypedef unsigned char uchar

# Payload types (RFC 7296 §3.2, RFC 7383 §2.5)
DEF PT_SA = 33
DEF PT_KE = 34
DEF PT_IDI = 35
DEF PT_IDR = 36
DEF PT_CERT = 37
DEF PT_CERTREQ = 38
DEF PT_AUTH = 39
DEF PT_NONCE = 40
DEF PT_NOTIFY = 41
DEF PT_DELETE = 42
DEF PT_VENDOR = 43
DEF PT_TSI = 44
DEF PT_TSR = 45
DEF PT_SK = 46
DEF PT_CP = 47
DEF PT_EAP = 48
DEF PT_SKF = 53

DEF HEADER_LEN = 28
DEF RECORD_WORDS = 3
DEF UNSUPPORTED_CRITICAL_PAYLOAD = 1
DEF MAX_FIELDS = 12
DEF HEAPTYPE_FLAG = 1 << 9  # Py_TPFLAGS_HEAPTYPE


# --- classes bound by ikecore.payloads ------------------------------------------------------------

cdef class _Layout:
    """A payload dataclass and the slot offsets of its fields, in the order this module uses."""
    cdef type cls
    cdef int payload_type
    cdef Py_ssize_t off[MAX_FIELDS]


cdef _Layout L_ATTR, L_TRANSFORM, L_PROPOSAL, L_SA, L_KE, L_IDI, L_IDR, L_CERT, L_CERTREQ
cdef _Layout L_AUTH, L_NONCE, L_NOTIFY, L_DELETE, L_VENDOR, L_TS, L_TSI, L_TSR, L_SK, L_SKF
cdef _Layout L_CFGATTR, L_CP, L_EAP, L_UNKNOWN, L_CHAIN, L_MESSAGE
cdef object _critical_error = None
cdef bint _bound = False

cdef dict _FIELDS = {
    "Attribute": (0, ("type", "value")),
    "Transform": (0, ("type", "id", "key_length", "attributes")),
    "Proposal": (0, ("number", "protocol_id", "spi", "transforms")),
    "SecurityAssociation": (PT_SA, ("proposals", "critical", "type")),
    "KeyExchange": (PT_KE, ("group", "data", "critical", "type")),
    "IDi": (PT_IDI, ("id_type", "data", "critical", "type")),
    "IDr": (PT_IDR, ("id_type", "data", "critical", "type")),
    "Certificate": (PT_CERT, ("encoding", "data", "critical", "type")),
    "CertificateRequest": (PT_CERTREQ, ("encoding", "data", "critical", "type")),
    "Authentication": (PT_AUTH, ("method", "data", "critical", "type")),
    "Nonce": (PT_NONCE, ("data", "critical", "type")),
    "Notify": (PT_NOTIFY, ("protocol_id", "spi", "notify_type", "data", "critical",
                          "type")),
    "Delete": (PT_DELETE, ("protocol_id", "spi_size", "spis", "critical", "type")),
    "VendorId": (PT_VENDOR, ("data", "critical", "type")),
    "TrafficSelector": (0, ("ts_type", "ip_protocol", "start_port", "end_port",
                            "start_address", "end_address")),
    "TSi": (PT_TSI, ("selectors", "critical", "type")),
    "TSr": (PT_TSR, ("selectors", "critical", "type")),
    "Encrypted": (PT_SK, ("first_payload", "data", "critical", "type")),
    "EncryptedFragment": (PT_SKF, ("first_payload", "fragment_number", "total_fragments",
                                   "data", "critical", "type")),
    "ConfigAttribute": (0, ("type", "value")),
    "Configuration": (PT_CP, ("cfg_type", "attributes", "critical", "type")),
    "Eap": (PT_EAP, ("code", "identifier", "data", "critical", "type")),
    "UnknownPayload": (0, ("type", "data", "critical")),
    # plain slotted classes of ikecore.message
    "PayloadChain": (0, ("_data", "_index", "_base", "_payloads")),
    "IkeMessage": (0, ("_data", "_index", "_base", "_payloads", "spi_i", "spi_r", "exchange",
                       "flags", "message_id", "is_initiator", "is_response")),
}


cdef _Layout _make_layout(str name, type cls):
    cdef _Layout layout = _Layout()
    payload_type, names = _FIELDS[name]
    fields = getattr(cls, "__dataclass_fields__", None)
    if fields is None:
        # a plain class: every slot of it and its bases, outside object
        instance_fields = tuple(
            slot for klass in cls.__mro__ for slot in klass.__dict__.get("__slots__", ())
        )
    else:
        instance_fields = tuple(
            f for f, spec in fields.items() if spec._field_type.name == "_FIELD"
        )
    if any(not (klass.__flags__ & HEAPTYPE_FLAG) for klass in cls.__mro__[:-1]):
        # only plain Python classes over object are allocated with PyType_GenericAlloc
        raise TypeError(f"{name} must be a Python class deriving from object only")
    if sorted(instance_fields) != sorted(names) or len(names) > MAX_FIELDS:
        raise TypeError(f"{name}: expected a dataclass with fields {names}, got {instance_fields}")
    for i, field in enumerate(names):
        layout.off[i] = object_slot_offset(cls, field)
    layout.cls = cls
    layout.payload_type = payload_type
    return layout


def bind_classes(dict classes, type critical_error):
    """Called once by ikecore.message with the payload dataclasses, its own message classes and
    UnsupportedCriticalPayload."""
    global L_ATTR, L_TRANSFORM, L_PROPOSAL, L_SA, L_KE, L_IDI, L_IDR, L_CERT, L_CERTREQ
    global L_AUTH, L_NONCE, L_NOTIFY, L_DELETE, L_VENDOR, L_TS, L_TSI, L_TSR, L_SK, L_SKF
    global L_CFGATTR, L_CP, L_EAP, L_UNKNOWN, L_CHAIN, L_MESSAGE, _critical_error, _bound
    if set(classes) != set(_FIELDS):
        raise TypeError(f"bind_classes needs exactly {sorted(_FIELDS)}")
    layouts = {name: _make_layout(name, cls) for name, cls in classes.items()}
    L_ATTR = layouts["Attribute"]
    L_TRANSFORM = layouts["Transform"]
    L_PROPOSAL = layouts["Proposal"]
    L_SA = layouts["SecurityAssociation"]
    L_KE = layouts["KeyExchange"]
    L_IDI = layouts["IDi"]
    L_IDR = layouts["IDr"]
    L_CERT = layouts["Certificate"]
    L_CERTREQ = layouts["CertificateRequest"]
    L_AUTH = layouts["Authentication"]
    L_NONCE = layouts["Nonce"]
    L_NOTIFY = layouts["Notify"]
    L_DELETE = layouts["Delete"]
    L_VENDOR = layouts["VendorId"]
    L_TS = layouts["TrafficSelector"]
    L_TSI = layouts["TSi"]
    L_TSR = layouts["TSr"]
    L_SK = layouts["Encrypted"]
    L_SKF = layouts["EncryptedFragment"]
    L_CFGATTR = layouts["ConfigAttribute"]
    L_CP = layouts["Configuration"]
    L_EAP = layouts["Eap"]
    L_UNKNOWN = layouts["UnknownPayload"]
    L_CHAIN = layouts["PayloadChain"]
    L_MESSAGE = layouts["IkeMessage"]
    _critical_error = critical_error
    _bound = True


cdef inline object _new(_Layout layout):
    return PyType_GenericAlloc(<PyTypeObject *>layout.cls, 0)


cdef inline void _put(object obj, Py_ssize_t offset, object value) noexcept:
    """Store a new reference in an empty slot of a freshly allocated object."""
    Py_INCREF(value)
    (<PyObject **>((<char *><PyObject *>obj) + offset))[0] = <PyObject *>value


# CPython's shared small ints by value, so that a byte field (and most 16-bit ones: transform
# ids, groups) is stored without a PyLong_FromLong call.
DEF SMALL_INTS = 257
cdef PyObject *_small_ints[SMALL_INTS]


cdef void _init_small_ints() noexcept:
    cdef Py_ssize_t i
    cdef object number
    for i in range(SMALL_INTS):
        number = i
        Py_INCREF(number)   # held for the life of the process
        _small_ints[i] = <PyObject *>number


_init_small_ints()


cdef inline int _put_uint(object obj, Py_ssize_t offset, unsigned long value) except -1:
    """Store an int in an empty slot of a freshly allocated object."""
    cdef PyObject *number
    if value < SMALL_INTS:
        number = _small_ints[value]
        Py_INCREF(<object>number)
    else:
        number = PyLong_FromUnsignedLong(value)
        if number == NULL:
            return -1
    (<PyObject **>((<char *><PyObject *>obj) + offset))[0] = number
    return 0


cdef inline object _field(object obj, Py_ssize_t offset):
    cdef PyObject *value = (<PyObject **>((<char *><PyObject *>obj) + offset))[0]
    if value == NULL:
        raise ValueError(f"{type(obj).__name__} has an unset field")
    return <object>value


cdef inline void _require_bound() except *:
    if not _bound:
        raise RuntimeError("import ikecore.payloads before decoding or encoding payloads")


# --- small helpers --------------------------------------------------------------------------------

cdef inline unsigned int _u16(const uchar *p) noexcept nogil:
    return (<unsigned int>p[0] << 8) | p[1]


cdef inline uint32_t _u32(const uchar *p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline void _w16(uchar *p, unsigned int v) noexcept nogil:
    p[0] = <uchar>(v >> 8)
    p[1] = <uchar>v


cdef inline void _w32(uchar *p, uint32_t v) noexcept nogil:
    p[0] = <uchar>(v >> 24)
    p[1] = <uchar>(v >> 16)
    p[2] = <uchar>(v >> 8)
    p[3] = <uchar>v


cdef inline object _bytes(const uchar *p, Py_ssize_t n):
    return PyBytes_FromStringAndSize(<const char *>p, n)


cdef inline int _malformed(str what, Py_ssize_t offset) except -1:
    raise MalformedMessage(what, offset)


cdef inline bint _known_type(unsigned int t) noexcept nogil:
    return (PT_SA <= t <= PT_EAP) or t == PT_SKF


cdef Py_ssize_t _ke_data_length(unsigned int group) noexcept nogil:
    """Fixed KE data length of the groups ikecore knows (RFC 7296 §3.4; MODP: RFC 3526,
    ECP x ‖ y: RFC 5903, Curve25519/448: RFC 8031); -1 for other groups."""
    if group == 14:
        return 256
    if group == 15:
        return 384
    if group == 16:
        return 512
    if group == 19:
        return 64
    if group == 20:
        return 96
    if group == 21:
        return 132
    if group == 31:
        return 32
    if group == 32:
        return 56
    return -1


cdef bint _notify_data_ok(unsigned int notify_type, Py_ssize_t n) noexcept nogil:
    """Data lengths of the typed notifies (table in ikecore/payloads.py and spec §6)."""
    if notify_type == 1:       # UNSUPPORTED_CRITICAL_PAYLOAD: the payload type
        return n == 1
    if notify_type == 9:       # INVALID_MESSAGE_ID
        return n == 4
    if notify_type == 17:      # INVALID_KE_PAYLOAD: the accepted D-H group
        return n == 2
    if notify_type == 16385:   # SET_WINDOW_SIZE
        return n == 4
    if notify_type == 16388 or notify_type == 16389:   # NAT_DETECTION_*: SHA-1
        return n == 20
    if notify_type == 16390:   # COOKIE, RFC 7296 §2.6
        return 1 <= n <= 64
    if notify_type == 16397:   # ADDITIONAL_IP4_ADDRESS, RFC 4555
        return n == 4
    if notify_type == 16398:   # ADDITIONAL_IP6_ADDRESS
        return n == 16
    if notify_type == 16401:   # COOKIE2, RFC 4555 §3.4.2
        return 8 <= n <= 64
    if notify_type == 16431:   # SIGNATURE_HASH_ALGORITHMS: 16-bit ids, RFC 7427 §4
        return n % 2 == 0
    return True


cdef bint _id_data_ok(unsigned int id_type, Py_ssize_t n) noexcept nogil:
    if id_type == 1:   # ID_IPV4_ADDR
        return n == 4
    if id_type == 5:   # ID_IPV6_ADDR
        return n == 16
    return n > 0


cdef bint _ts_length_ok(unsigned int ts_type, unsigned int length) noexcept nogil:
    return (ts_type == 7 and length == 16) or (ts_type == 8 and length == 40)


# The status notify types in use (16384-16447, RFC 7296 §3.10.1 and its extensions) as shared
# int objects: CPython caches ints only up to 256.
DEF STATUS_NOTIFY_FIRST = 16384
DEF STATUS_NOTIFY_COUNT = 64
cdef tuple _status_notify_types = tuple(range(STATUS_NOTIFY_FIRST,
                                              STATUS_NOTIFY_FIRST + STATUS_NOTIFY_COUNT))


# Transform attribute types seen in the transform being read (RFC 7296 §3.3: no two of one
# type). Always all-zero between calls: bits are cleared by re-walking the attributes read.
cdef uchar _seen_attribute[4096]


cdef void _forget_attributes(const uchar *d, Py_ssize_t pos, Py_ssize_t stop) noexcept nogil:
    cdef unsigned int word, attr_type
    while pos < stop:
        word = _u16(d + pos)
        attr_type = word & 0x7FFF
        _seen_attribute[attr_type >> 3] = 0
        pos += 4 if word & 0x8000 else 4 + _u16(d + pos + 2)


# --- body decoders (build=False: validate only) ---------------------------------------------------
# Arguments: d = buffer, pos/end = body start and payload end (relative to d), base = absolute
# offset of d[0] (for error offsets). Each returns the object, or None when build is False.

cdef object _transform(const uchar *d, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t base,
                       bint build):
    cdef Py_ssize_t apos = pos + 8, start = pos + 8
    cdef unsigned int word, attr_type, value_len
    cdef object key_length = None
    cdef list attributes = None
    try:
        while apos < end:
            if end - apos < 4:
                _malformed("truncated transform attribute", base + apos)
            word = _u16(d + apos)
            attr_type = word & 0x7FFF
            if _seen_attribute[attr_type >> 3] & (1 << (attr_type & 7)):
                _malformed("transform carries two attributes of one type", base + apos)
            if word & 0x8000:   # TV
                if attr_type == 14:
                    key_length = _u16(d + apos + 2)
                elif build:
                    attribute = _new(L_ATTR)
                    _put_uint(attribute, L_ATTR.off[0], attr_type)
                    _put_uint(attribute, L_ATTR.off[1], _u16(d + apos + 2))
                    if attributes is None:
                        attributes = []
                    attributes.append(attribute)
                _seen_attribute[attr_type >> 3] |= <uchar>(1 << (attr_type & 7))
                apos += 4
            else:               # TLV
                value_len = _u16(d + apos + 2)
                if value_len > end - apos - 4:
                    _malformed("transform attribute length beyond the transform", base + apos + 2)
                if attr_type == 14:
                    _malformed("Key Length attribute must use TV form (RFC 7296 §3.3.5)",
                               base + apos)
                if build:
                    attribute = _new(L_ATTR)
                    _put_uint(attribute, L_ATTR.off[0], attr_type)
                    _put(attribute, L_ATTR.off[1], _bytes(d + apos + 4, value_len))
                    if attributes is None:
                        attributes = []
                    attributes.append(attribute)
                _seen_attribute[attr_type >> 3] |= <uchar>(1 << (attr_type & 7))
                apos += 4 + value_len
    finally:
        _forget_attributes(d, start, apos)
    if not build:
        return None
    transform = _new(L_TRANSFORM)
    _put_uint(transform, L_TRANSFORM.off[0], d[pos + 4])
    _put_uint(transform, L_TRANSFORM.off[1], _u16(d + pos + 6))
    _put(transform, L_TRANSFORM.off[2], key_length)
    _put(transform, L_TRANSFORM.off[3], () if attributes is None else tuple(attributes))
    return transform


cdef object _security_association(const uchar *d, Py_ssize_t pos, Py_ssize_t end,
                                  Py_ssize_t base, bint build):
    """RFC 7296 §3.3: lengths and counts must be consistent at every level."""
    cdef list proposals = [] if build else None
    cdef Py_ssize_t p_end, t_pos, t_len, spi_size, n_transforms, i
    cdef unsigned int last, t_last, number, expected_number = 0
    cdef tuple transforms
    while True:
        if end - pos < 8:
            _malformed("truncated proposal", base + pos)
        last = d[pos]
        p_end = pos + _u16(d + pos + 2)
        if p_end - pos < 8 or p_end > end:
            _malformed("proposal length inconsistent with the SA payload", base + pos + 2)
        if last != 0 and last != 2:
            _malformed("proposal Last Substruc must be 0 or 2", base + pos)
        number = d[pos + 4]
        if number == 0 or (expected_number and number != expected_number):
            _malformed("proposal numbers must start at 1 and increase by 1", base + pos + 4)
        spi_size = d[pos + 6]
        n_transforms = d[pos + 7]
        if n_transforms == 0:
            _malformed("proposal without transforms", base + pos + 7)
        if 8 + spi_size > p_end - pos:
            _malformed("proposal SPI beyond the proposal", base + pos + 6)
        transforms = PyTuple_New(n_transforms) if build else None
        t_pos = pos + 8 + spi_size
        i = 0
        while t_pos < p_end:
            if i == n_transforms:
                _malformed("more transforms than the proposal counts", base + t_pos)
            if p_end - t_pos < 8:
                _malformed("truncated transform", base + t_pos)
            t_last = d[t_pos]
            t_len = _u16(d + t_pos + 2)
            if t_len < 8 or t_len > p_end - t_pos:
                _malformed("transform length inconsistent with the proposal", base + t_pos + 2)
            if t_last != (0 if t_pos + t_len == p_end else 3):
                _malformed("transform Last Substruc must be 3, or 0 on the last", base + t_pos)
            transform = _transform(d, t_pos, t_pos + t_len, base, build)
            if build:
                Py_INCREF(transform)
                PyTuple_SET_ITEM(transforms, i, transform)
            i += 1
            t_pos += t_len
        if i != n_transforms:
            _malformed("fewer transforms than the proposal counts", base + pos + 7)
        if build:
            proposal = _new(L_PROPOSAL)
            _put_uint(proposal, L_PROPOSAL.off[0], number)
            _put_uint(proposal, L_PROPOSAL.off[1], d[pos + 5])
            _put(proposal, L_PROPOSAL.off[2], _bytes(d + pos + 8, spi_size))
            _put(proposal, L_PROPOSAL.off[3], transforms)
            PyList_Append(proposals, proposal)
        if last == 0:
            if p_end != end:
                _malformed("data after the last proposal", base + p_end)
            break
        if p_end == end:
            _malformed("proposal Last Substruc announces another proposal", base + pos)
        expected_number = number + 1
        pos = p_end
    return tuple(proposals) if build else None


cdef object _traffic_selectors(const uchar *d, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t base,
                               bint build):
    """RFC 7296 §3.13: Number of TSs, then that many selectors filling the payload."""
    cdef Py_ssize_t count, i, ts_len, addr_len
    cdef unsigned int ts_type
    cdef tuple selectors
    if end - pos < 4:
        _malformed("truncated traffic selector payload", base + pos)
    count = d[pos]
    if count == 0:
        _malformed("traffic selector payload without selectors", base + pos)
    selectors = PyTuple_New(count) if build else None
    pos += 4
    for i in range(count):
        if end - pos < 8:
            _malformed("truncated traffic selector", base + pos)
        ts_type = d[pos]
        ts_len = _u16(d + pos + 2)
        if not _ts_length_ok(ts_type, ts_len):
            _malformed("traffic selector type or length not IPv4 (7, 16) or IPv6 (8, 40)",
                       base + pos)
        if ts_len > end - pos:
            _malformed("traffic selector beyond the payload", base + pos + 2)
        if build:
            addr_len = (ts_len - 8) // 2
            selector = _new(L_TS)
            _put_uint(selector, L_TS.off[0], ts_type)
            _put_uint(selector, L_TS.off[1], d[pos + 1])
            _put_uint(selector, L_TS.off[2], _u16(d + pos + 4))
            _put_uint(selector, L_TS.off[3], _u16(d + pos + 6))
            _put(selector, L_TS.off[4], _bytes(d + pos + 8, addr_len))
            _put(selector, L_TS.off[5], _bytes(d + pos + 8 + addr_len, addr_len))
            Py_INCREF(selector)
            PyTuple_SET_ITEM(selectors, i, selector)
        pos += ts_len
    if pos != end:
        _malformed("data after the last traffic selector", base + pos)
    return selectors


cdef object _config_attributes(const uchar *d, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t base,
                               bint build):
    cdef list attributes = [] if build else None
    cdef unsigned int value_len
    while pos < end:
        if end - pos < 4:
            _malformed("truncated configuration attribute", base + pos)
        value_len = _u16(d + pos + 2)
        if value_len > end - pos - 4:
            _malformed("configuration attribute beyond the payload", base + pos + 2)
        if build:
            attribute = _new(L_CFGATTR)
            _put_uint(attribute, L_CFGATTR.off[0], _u16(d + pos) & 0x7FFF)   # R bit ignored
            _put(attribute, L_CFGATTR.off[1], _bytes(d + pos + 4, value_len))
            PyList_Append(attributes, attribute)
        pos += 4 + value_len
    return tuple(attributes) if build else None


cdef object _payload(const uchar *d, Py_ssize_t start, Py_ssize_t length, unsigned int ptype,
                     bint critical, unsigned int next_payload, Py_ssize_t base, bint build):
    """Validate (and with build, decode) one payload whose generic header is at d[start]."""
    cdef Py_ssize_t pos = start + 4, end = start + length, n = length - 4, spi_size, count, i
    cdef unsigned int value
    cdef _Layout layout
    cdef tuple spis
    crit = True if critical else False
    if ptype == PT_SA:
        proposals = _security_association(d, pos, end, base, build)
        if not build:
            return None
        obj = _new(L_SA)
        _put(obj, L_SA.off[0], proposals)
        _put(obj, L_SA.off[1], crit)
        _put_uint(obj, L_SA.off[2], ptype)
        return obj
    if ptype == PT_NOTIFY:
        if n < 4:
            _malformed("truncated notify payload", base + pos)
        spi_size = d[pos + 1]
        if spi_size > n - 4:
            _malformed("notify SPI beyond the payload", base + pos + 1)
        value = _u16(d + pos + 2)
        if not _notify_data_ok(value, n - 4 - spi_size):
            _malformed(f"notify {value}: wrong data length", base + pos + 4 + spi_size)
        if not build:
            return None
        obj = _new(L_NOTIFY)
        _put_uint(obj, L_NOTIFY.off[0], d[pos])
        _put(obj, L_NOTIFY.off[1], _bytes(d + pos + 4, spi_size))
        if STATUS_NOTIFY_FIRST <= value < STATUS_NOTIFY_FIRST + STATUS_NOTIFY_COUNT:
            _put(obj, L_NOTIFY.off[2], _status_notify_types[value - STATUS_NOTIFY_FIRST])
        else:
            _put_uint(obj, L_NOTIFY.off[2], value)
        _put(obj, L_NOTIFY.off[3], _bytes(d + pos + 4 + spi_size, n - 4 - spi_size))
        _put(obj, L_NOTIFY.off[4], crit)
        _put_uint(obj, L_NOTIFY.off[5], ptype)
        return obj
    if ptype == PT_KE:
        if n < 4:
            _malformed("truncated KE payload", base + pos)
        value = _u16(d + pos)
        count = _ke_data_length(value)
        if count >= 0 and n - 4 != count:
            _malformed(f"KE data length wrong for group {value}", base + pos + 4)
        if not build:
            return None
        obj = _new(L_KE)
        _put_uint(obj, L_KE.off[0], value)
        _put(obj, L_KE.off[1], _bytes(d + pos + 4, n - 4))
        _put(obj, L_KE.off[2], crit)
        _put_uint(obj, L_KE.off[3], ptype)
        return obj
    if ptype == PT_NONCE:
        if n < 16 or n > 256:
            _malformed("nonce must be 16 to 256 bytes (RFC 7296 §2.10)", base + start + 2)
        if not build:
            return None
        obj = _new(L_NONCE)
        _put(obj, L_NONCE.off[0], _bytes(d + pos, n))
        _put(obj, L_NONCE.off[1], crit)
        _put_uint(obj, L_NONCE.off[2], ptype)
        return obj
    if ptype == PT_IDI or ptype == PT_IDR or ptype == PT_AUTH:
        if n < 4:
            _malformed("truncated ID/AUTH payload", base + pos)
        if ptype != PT_AUTH and not _id_data_ok(d[pos], n - 4):
            _malformed(f"identification data length wrong for ID type {d[pos]}", base + pos + 4)
        if not build:
            return None
        layout = L_AUTH if ptype == PT_AUTH else (L_IDI if ptype == PT_IDI else L_IDR)
        obj = _new(layout)
        _put_uint(obj, layout.off[0], d[pos])
        _put(obj, layout.off[1], _bytes(d + pos + 4, n - 4))
        _put(obj, layout.off[2], crit)
        _put_uint(obj, layout.off[3], ptype)
        return obj
    if ptype == PT_TSI or ptype == PT_TSR:
        selectors = _traffic_selectors(d, pos, end, base, build)
        if not build:
            return None
        layout = L_TSI if ptype == PT_TSI else L_TSR
        obj = _new(layout)
        _put(obj, layout.off[0], selectors)
        _put(obj, layout.off[1], crit)
        _put_uint(obj, layout.off[2], ptype)
        return obj
    if ptype == PT_SK:
        if not build:
            return None
        obj = _new(L_SK)
        _put_uint(obj, L_SK.off[0], next_payload)
        _put(obj, L_SK.off[1], _bytes(d + pos, n))
        _put(obj, L_SK.off[2], crit)
        _put_uint(obj, L_SK.off[3], ptype)
        return obj
    if ptype == PT_SKF:
        if n < 4:
            _malformed("truncated encrypted fragment payload", base + pos)
        if not build:
            return None
        obj = _new(L_SKF)
        _put_uint(obj, L_SKF.off[0], next_payload)
        _put_uint(obj, L_SKF.off[1], _u16(d + pos))
        _put_uint(obj, L_SKF.off[2], _u16(d + pos + 2))
        _put(obj, L_SKF.off[3], _bytes(d + pos + 4, n - 4))
        _put(obj, L_SKF.off[4], crit)
        _put_uint(obj, L_SKF.off[5], ptype)
        return obj
    if ptype == PT_CERT or ptype == PT_CERTREQ:
        if n < 1:
            _malformed("truncated CERT/CERTREQ payload", base + pos)
        if not build:
            return None
        layout = L_CERT if ptype == PT_CERT else L_CERTREQ
        obj = _new(layout)
        _put_uint(obj, layout.off[0], d[pos])
        _put(obj, layout.off[1], _bytes(d + pos + 1, n - 1))
        _put(obj, layout.off[2], crit)
        _put_uint(obj, layout.off[3], ptype)
        return obj
    if ptype == PT_DELETE:
        if n < 4:
            _malformed("truncated delete payload", base + pos)
        spi_size = d[pos + 1]
        count = _u16(d + pos + 2)
        if n - 4 != spi_size * count or (spi_size == 0 and count != 0):
            _malformed("delete payload length != SPI size x number of SPIs", base + pos + 2)
        if not build:
            return None
        spis = PyTuple_New(count)
        for i in range(count):
            spi = _bytes(d + pos + 4 + i * spi_size, spi_size)
            Py_INCREF(spi)
            PyTuple_SET_ITEM(spis, i, spi)
        obj = _new(L_DELETE)
        _put_uint(obj, L_DELETE.off[0], d[pos])
        _put_uint(obj, L_DELETE.off[1], spi_size)
        _put(obj, L_DELETE.off[2], spis)
        _put(obj, L_DELETE.off[3], crit)
        _put_uint(obj, L_DELETE.off[4], ptype)
        return obj
    if ptype == PT_VENDOR:
        if not build:
            return None
        obj = _new(L_VENDOR)
        _put(obj, L_VENDOR.off[0], _bytes(d + pos, n))
        _put(obj, L_VENDOR.off[1], crit)
        _put_uint(obj, L_VENDOR.off[2], ptype)
        return obj
    if ptype == PT_CP:
        if n < 4:
            _malformed("truncated configuration payload", base + pos)
        attributes = _config_attributes(d, pos + 4, end, base, build)
        if not build:
            return None
        obj = _new(L_CP)
        _put_uint(obj, L_CP.off[0], d[pos])
        _put(obj, L_CP.off[1], attributes)
        _put(obj, L_CP.off[2], crit)
        _put_uint(obj, L_CP.off[3], ptype)
        return obj
    if ptype == PT_EAP:
        # RFC 7296 §3.16, RFC 3748 §4: Length covers the EAP message = the payload body
        if n < 4:
            _malformed("truncated EAP payload", base + pos)
        if _u16(d + pos + 2) != n:
            _malformed("EAP length != payload length - 4", base + pos + 2)
        value = d[pos]
        if (value == 1 or value == 2) and n < 5:
            _malformed("EAP request/response without a type", base + pos)
        if (value == 3 or value == 4) and n != 4:
            _malformed("EAP success/failure must be 4 bytes", base + pos + 2)
        if not build:
            return None
        obj = _new(L_EAP)
        _put_uint(obj, L_EAP.off[0], value)
        _put_uint(obj, L_EAP.off[1], d[pos + 1])
        _put(obj, L_EAP.off[2], _bytes(d + pos + 4, n - 4))
        _put(obj, L_EAP.off[3], crit)
        _put_uint(obj, L_EAP.off[4], ptype)
        return obj
    # unknown, non-critical (the walk rejected critical ones): kept raw (RFC 7296 §2.5)
    if not build:
        return None
    obj = _new(L_UNKNOWN)
    _put_uint(obj, L_UNKNOWN.off[0], ptype)
    _put(obj, L_UNKNOWN.off[1], _bytes(d + pos, n))
    _put(obj, L_UNKNOWN.off[2], crit)
    return obj


# --- the chain walk -------------------------------------------------------------------------------

cdef Py_ssize_t _walk(const uchar *d, Py_ssize_t pos, Py_ssize_t end, unsigned int next_type,
                      Py_ssize_t base, bint inner, uint32_t *out, Py_ssize_t capacity) except -1:
    """Walk a payload chain from d[pos] to d[end]; fill out with the records of the first
    ``capacity`` payloads.

    RFC 7296 §3.2: every Payload Length >= 4 and within the message, the chain ends (Next
    Payload 0) exactly at the end; §3.14 / RFC 7383 §2.5: SK/SKF is last, never inside SK.
    Returns the number of payloads.
    """
    cdef Py_ssize_t count = 0, length
    cdef unsigned int critical
    while next_type != 0:
        if end - pos < 4:
            _malformed("payload header beyond the end", base + pos)
        length = _u16(d + pos + 2)
        if length < 4:
            _malformed("payload length below 4", base + pos + 2)
        if length > end - pos:
            _malformed("payload length beyond the end", base + pos + 2)
        critical = d[pos + 1] >> 7
        if critical and not _known_type(next_type):
            if _critical_error is None:
                raise RemoteProtocolError(
                    f"unsupported critical payload type {next_type} (at byte {base + pos})",
                    UNSUPPORTED_CRITICAL_PAYLOAD)
            raise _critical_error(next_type, base + pos)
        if count < capacity:
            out[0] = next_type | (critical << 8) | (<uint32_t>d[pos] << 16)
            out[1] = <uint32_t>pos
            out[2] = <uint32_t>length
            out += RECORD_WORDS
        count += 1
        if next_type == PT_SK or next_type == PT_SKF:
            if inner:
                _malformed("encrypted payload inside an encrypted payload", base + pos)
            if pos + length != end:
                _malformed("encrypted payload is not the last payload", base + pos + length)
            return count
        next_type = d[pos]
        pos += length
    if pos != end:
        _malformed("data after the last payload", base + pos)
    return count


cdef int _check_bodies(const uchar *d, const uint32_t *index, Py_ssize_t count,
                       Py_ssize_t base) except -1:
    cdef Py_ssize_t i
    for i in range(count):
        _payload(d, index[1], index[2], index[0] & 0xFF, 0, 0, base, False)
        index += RECORD_WORDS
    return 0


# Records of a chain walked into a stack buffer first, so that a usual message is walked once.
DEF INDEX_STACK_PAYLOADS = 32


cdef object _build_index(const uchar *d, Py_ssize_t pos, Py_ssize_t end, unsigned int first,
                         Py_ssize_t base, bint inner, bint check_bodies):
    cdef uint32_t records[INDEX_STACK_PAYLOADS * RECORD_WORDS]
    cdef Py_ssize_t count = _walk(d, pos, end, first, base, inner, records, INDEX_STACK_PAYLOADS)
    index = PyBytes_FromStringAndSize(NULL, count * RECORD_WORDS * 4)
    cdef uint32_t *words = <uint32_t *>PyBytes_AS_STRING(index)
    if count <= INDEX_STACK_PAYLOADS:
        memcpy(words, records, count * RECORD_WORDS * 4)
    else:
        _walk(d, pos, end, first, base, inner, words, count)
    if check_bodies:
        _check_bodies(d, words, count, base)
    return index


cdef int _check_header(const uchar *d, Py_ssize_t n) except -1:
    """RFC 7296 §3.1: Length == datagram length >= 28, major version 2, Initiator SPI != 0."""
    cdef Py_ssize_t i
    if n < HEADER_LEN:
        _malformed("shorter than the IKE header", n)
    if _u32(d + 24) != <uint32_t>n:
        _malformed("IKE header Length differs from the datagram length", 24)
    if d[17] >> 4 != 2:
        _malformed("IKE major version is not 2", 17)
    for i in range(8):
        if d[i]:
            return 0
    _malformed("Initiator SPI is zero", 0)


def index_message(data, bint check_bodies=True):
    """Validate an IKE message (header, chain, and with check_bodies every payload body) and
    return its index."""
    cdef Py_buffer view
    cdef const uchar *d
    cdef Py_ssize_t n
    if PyBytes_CheckExact(data):
        d = <const uchar *>PyBytes_AS_STRING(data)
        n = PyBytes_GET_SIZE(data)
        _check_header(d, n)
        return _build_index(d, HEADER_LEN, n, d[16], 0, False, check_bodies)
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        d = <const uchar *>view.buf
        _check_header(d, view.len)
        return _build_index(d, HEADER_LEN, view.len, d[16], 0, False, check_bodies)
    finally:
        PyBuffer_Release(&view)


def index_chain(first_type, data, base_offset=0, bint check_bodies=True):
    """Validate a decrypted inner payload chain (first payload type from the SK payload's Next
    Payload) and return its index; error offsets are reported as base_offset + position."""
    cdef Py_buffer view
    cdef unsigned int first = <unsigned int>_uint(first_type, 255, "first_type")
    cdef Py_ssize_t base = <Py_ssize_t>_uint(base_offset, 0xFFFFFFFF, "base_offset")
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _build_index(<const uchar *>view.buf, 0, view.len, first, base, True, check_bodies)
    finally:
        PyBuffer_Release(&view)


cdef const uint32_t *_index_words(bytes index, Py_ssize_t data_len, Py_ssize_t *count) except NULL:
    """The records of an index, after checking they lie inside the data they describe."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(index), i
    cdef const uint32_t *words = <const uint32_t *>PyBytes_AS_STRING(index)
    if n % (RECORD_WORDS * 4):
        raise ValueError("not a payload index")
    count[0] = n // (RECORD_WORDS * 4)
    for i in range(count[0]):
        if words[i * 3 + 2] < 4 or <Py_ssize_t>words[i * 3 + 1] + words[i * 3 + 2] > data_len:
            raise ValueError("payload index does not match the data")
    return words


cdef list _decode_all(bytes data, bytes index, Py_ssize_t base_offset):
    cdef Py_ssize_t count, i
    cdef const uint32_t *w = _index_words(index, PyBytes_GET_SIZE(data), &count)
    cdef const uchar *d = <const uchar *>PyBytes_AS_STRING(data)
    cdef list result = PyList_New(count)
    for i in range(count):
        payload = _payload(d, w[1], w[2], w[0] & 0xFF, (w[0] >> 8) & 1, (w[0] >> 16) & 0xFF,
                           base_offset, True)
        Py_INCREF(payload)
        PyList_SET_ITEM(result, i, payload)
        w += RECORD_WORDS
    return result


def decode_payloads(bytes data, bytes index, Py_ssize_t base_offset=0):
    """Every payload of an index as typed objects (a list, in message order)."""
    _require_bound()
    return _decode_all(data, index, base_offset)


def decode_payload(bytes data, bytes index, Py_ssize_t position, Py_ssize_t base_offset=0):
    """The payload at ``position`` of an index as a typed object."""
    cdef Py_ssize_t count
    _require_bound()
    cdef const uint32_t *w = _index_words(index, PyBytes_GET_SIZE(data), &count)
    if position < 0 or position >= count:
        raise IndexError("payload position out of range")
    w += position * RECORD_WORDS
    return _payload(<const uchar *>PyBytes_AS_STRING(data), w[1], w[2], w[0] & 0xFF,
                    (w[0] >> 8) & 1, (w[0] >> 16) & 0xFF, base_offset, True)


def parse_message(data):
    """Validate an IKE message (header, chain, every payload body) and return an
    ``ikecore.message.IkeMessage`` over it (its bytes are kept; payloads decode on access)."""
    cdef Py_buffer view
    cdef const uchar *d
    cdef Py_ssize_t n
    _require_bound()
    if not PyBytes_CheckExact(data):
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)   # TypeError for non bytes-like objects
        try:
            data = PyBytes_FromStringAndSize(<const char *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
    d = <const uchar *>PyBytes_AS_STRING(data)
    n = PyBytes_GET_SIZE(data)
    _check_header(d, n)
    index = _build_index(d, HEADER_LEN, n, d[16], 0, False, True)
    message = _new(L_MESSAGE)
    _put(message, L_MESSAGE.off[0], data)
    _put(message, L_MESSAGE.off[1], index)
    _put_uint(message, L_MESSAGE.off[2], 0)
    _put(message, L_MESSAGE.off[3], None)
    _put(message, L_MESSAGE.off[4], _bytes(d, 8))
    _put(message, L_MESSAGE.off[5], _bytes(d + 8, 8))
    _put_uint(message, L_MESSAGE.off[6], d[18])
    _put_uint(message, L_MESSAGE.off[7], d[19])
    _put_uint(message, L_MESSAGE.off[8], _u32(d + 20))
    _put(message, L_MESSAGE.off[9], True if d[19] & 0x08 else False)   # I flag, RFC 7296 §3.1
    _put(message, L_MESSAGE.off[10], True if d[19] & 0x20 else False)  # R flag
    return message


def parse_payload_chain(first_type, data, base_offset=0):
    """Validate a decrypted inner chain (first payload type from the SK payload's Next
    Payload; error offsets are base_offset + position) and return an
    ``ikecore.message.PayloadChain`` over it."""
    cdef Py_buffer view
    _require_bound()
    cdef unsigned int first = <unsigned int>_uint(first_type, 255, "first_type")
    cdef Py_ssize_t base = <Py_ssize_t>_uint(base_offset, 0xFFFFFFFF, "base_offset")
    if not PyBytes_CheckExact(data):
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)   # TypeError for non bytes-like objects
        try:
            data = PyBytes_FromStringAndSize(<const char *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
    index = _build_index(<const uchar *>PyBytes_AS_STRING(data), 0, PyBytes_GET_SIZE(data),
                         first, base, True, True)
    chain = _new(L_CHAIN)
    _put(chain, L_CHAIN.off[0], data)
    _put(chain, L_CHAIN.off[1], index)
    _put_uint(chain, L_CHAIN.off[2], base)
    _put(chain, L_CHAIN.off[3], None)
    return chain


cdef object _chain_payloads(object chain):
    cdef PyObject **slot
    cdef PyObject *old
    cached = _field(chain, L_CHAIN.off[3])
    if cached is not None:
        return cached
    payloads = _decode_all(_field(chain, L_CHAIN.off[0]), _field(chain, L_CHAIN.off[1]),
                           _field(chain, L_CHAIN.off[2]))
    slot = <PyObject **>((<char *><PyObject *>chain) + L_CHAIN.off[3])
    old = slot[0]
    Py_INCREF(payloads)
    slot[0] = <PyObject *>payloads
    Py_XDECREF(old)
    return payloads


def status_notify(notify_type, data):
    """Notify(protocol 0, no SPI, ``notify_type``, ``data``) to send, made as a decoded one is
    (its slots filled directly): the generated __init__ of the frozen dataclass costs about
    three times as much, and every IKE_SA_INIT message carries two (NAT detection). The data
    is checked when encoding, as for any Notify."""
    _require_bound()
    if type(notify_type) is not int:
        raise TypeError(f"notify type must be an int, not {type(notify_type).__name__}")
    if not 0 <= notify_type <= 0xFFFF:
        raise ValueError(f"notify type {notify_type} does not fit in 16 bits")
    if not PyBytes_CheckExact(data):
        raise TypeError(f"notify data must be bytes, not {type(data).__name__}")
    cdef unsigned long value = notify_type
    obj = _new(L_NOTIFY)
    _put_uint(obj, L_NOTIFY.off[0], 0)
    _put(obj, L_NOTIFY.off[1], b"")
    if STATUS_NOTIFY_FIRST <= value < STATUS_NOTIFY_FIRST + STATUS_NOTIFY_COUNT:
        _put(obj, L_NOTIFY.off[2], _status_notify_types[value - STATUS_NOTIFY_FIRST])
    else:
        _put_uint(obj, L_NOTIFY.off[2], value)
    _put(obj, L_NOTIFY.off[3], data)
    _put(obj, L_NOTIFY.off[4], False)
    _put_uint(obj, L_NOTIFY.off[5], PT_NOTIFY)
    return obj


# The other payloads the engine sends in every handshake, made the same way (each is about a
# quarter of the cost of the dataclass's __init__). Arguments as the dataclass takes them.


cdef inline void _need_int(object value, str name) except *:
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")


cdef inline void _need(object value, type kind, str name) except *:
    if type(value) is not kind:
        raise TypeError(f"{name} must be {kind.__name__}, not {type(value).__name__}")


def nonce_payload(data):
    """Nonce(data)."""
    _require_bound()
    _need(data, bytes, "nonce data")
    obj = _new(L_NONCE)
    _put(obj, L_NONCE.off[0], data)
    _put(obj, L_NONCE.off[1], False)
    _put_uint(obj, L_NONCE.off[2], PT_NONCE)
    return obj


def ke_payload(group, data):
    """KeyExchange(group, data)."""
    _require_bound()
    _need_int(group, "D-H group")
    _need(data, bytes, "key exchange data")
    obj = _new(L_KE)
    _put(obj, L_KE.off[0], group)
    _put(obj, L_KE.off[1], data)
    _put(obj, L_KE.off[2], False)
    _put_uint(obj, L_KE.off[3], PT_KE)
    return obj


def auth_payload(method, data):
    """Authentication(method, data)."""
    _require_bound()
    _need_int(method, "AUTH method")
    _need(data, bytes, "AUTH data")
    obj = _new(L_AUTH)
    _put(obj, L_AUTH.off[0], method)
    _put(obj, L_AUTH.off[1], data)
    _put(obj, L_AUTH.off[2], False)
    _put_uint(obj, L_AUTH.off[3], PT_AUTH)
    return obj


def proposal(number, protocol_id, spi, transforms):
    """Proposal(number, protocol_id, spi, transforms)."""
    _require_bound()
    _need_int(number, "proposal number")
    _need_int(protocol_id, "protocol id")
    _need(spi, bytes, "SPI")
    _need(transforms, tuple, "transforms")
    obj = _new(L_PROPOSAL)
    _put(obj, L_PROPOSAL.off[0], number)
    _put(obj, L_PROPOSAL.off[1], protocol_id)
    _put(obj, L_PROPOSAL.off[2], spi)
    _put(obj, L_PROPOSAL.off[3], transforms)
    return obj


def sa_payload(proposals):
    """SecurityAssociation(proposals)."""
    _require_bound()
    _need(proposals, tuple, "proposals")
    obj = _new(L_SA)
    _put(obj, L_SA.off[0], proposals)
    _put(obj, L_SA.off[1], False)
    _put_uint(obj, L_SA.off[2], PT_SA)
    return obj


def chain_payloads(chain):
    """Decode every payload of a PayloadChain/IkeMessage once and cache the list in it."""
    _require_bound()
    if not isinstance(chain, L_CHAIN.cls):
        raise TypeError("expected a PayloadChain")
    return _chain_payloads(chain)


cdef class PayloadsAttribute:
    """``PayloadChain.payloads`` as a native (non-data) descriptor: all payloads, decoded on
    first access and cached in the chain. A Python property would cost as much as decoding
    a small payload."""

    def __get__(self, instance, owner):
        if instance is None:
            return self
        if not _bound or not isinstance(instance, L_CHAIN.cls):
            raise TypeError("PayloadsAttribute belongs to ikecore.message.PayloadChain")
        return _chain_payloads(instance)


# --- encoding -------------------------------------------------------------------------------------
# Each _enc_* returns the encoded length; with out == NULL it only measures (and validates).
# Caller errors are TypeError (wrong type) or ValueError (out of range, inconsistent).

cdef long long _uint(object value, long long maximum, str what) except -1:
    cdef int overflow = 0
    cdef long long v
    if not PyLong_Check(value):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow or v < 0 or v > maximum:
        raise ValueError(f"{what} must be in 0..{maximum}, got {value}")
    return v


cdef inline const uchar *_data(object value, Py_ssize_t *n, str what) except NULL:
    if PyBytes_Check(value):
        n[0] = PyBytes_GET_SIZE(value)
        return <const uchar *>PyBytes_AS_STRING(value)
    if PyByteArray_Check(value):
        n[0] = PyByteArray_GET_SIZE(value)
        return <const uchar *>PyByteArray_AS_STRING(value)
    raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


cdef inline Py_ssize_t _put_data(uchar *out, object value, str what, Py_ssize_t maximum) except -1:
    cdef Py_ssize_t n
    cdef const uchar *p = _data(value, &n, what)
    if n > maximum:
        raise ValueError(f"{what} longer than {maximum} bytes")
    if out != NULL:
        memcpy(out, p, n)
    return n


cdef inline object _sequence(object value, str what):
    if type(value) is tuple or type(value) is list:
        return value
    raise TypeError(f"{what} must be a tuple or list, not {type(value).__name__}")


cdef Py_ssize_t _enc_transform(object t, uchar *out, bint last) except -1:
    cdef Py_ssize_t n = 8, i, j, vlen
    cdef long long attr_type
    if type(t) is not L_TRANSFORM.cls:
        raise TypeError(f"proposal transforms must be Transform, not {type(t).__name__}")
    transform_type = _uint(_field(t, L_TRANSFORM.off[0]), 255, "Transform.type")
    transform_id = _uint(_field(t, L_TRANSFORM.off[1]), 65535, "Transform.id")
    key_length = _field(t, L_TRANSFORM.off[2])
    attributes = _sequence(_field(t, L_TRANSFORM.off[3]), "Transform.attributes")
    if key_length is not None:
        vlen = <Py_ssize_t>_uint(key_length, 65535, "Transform.key_length")
        if out != NULL:
            _w16(out + n, 0x800E)
            _w16(out + n + 2, <unsigned int>vlen)
        n += 4
    for i in range(len(attributes)):
        a = attributes[i]
        if type(a) is not L_ATTR.cls:
            raise TypeError(f"transform attributes must be Attribute, not {type(a).__name__}")
        attr_type = _uint(_field(a, L_ATTR.off[0]), 0x7FFF, "Attribute.type")
        if attr_type == 14:
            raise ValueError("Key Length goes in Transform.key_length, not in attributes")
        for j in range(i):
            if _field(attributes[j], L_ATTR.off[0]) == attr_type:
                raise ValueError(f"two attributes of type {attr_type} in one transform")
        value = _field(a, L_ATTR.off[1])
        if PyLong_Check(value):
            vlen = <Py_ssize_t>_uint(value, 65535, "Attribute.value")
            if out != NULL:
                _w16(out + n, 0x8000 | <unsigned int>attr_type)
                _w16(out + n + 2, <unsigned int>vlen)
            n += 4
        else:
            vlen = _put_data(out + n + 4 if out != NULL else NULL, value, "Attribute.value", 65535)
            if out != NULL:
                _w16(out + n, <unsigned int>attr_type)
                _w16(out + n + 2, <unsigned int>vlen)
            n += 4 + vlen
    if n > 65535:
        raise ValueError("transform longer than 65535 bytes")
    if out != NULL:
        out[0] = 0 if last else 3
        out[1] = 0
        _w16(out + 2, <unsigned int>n)
        out[4] = <uchar>transform_type
        out[5] = 0
        _w16(out + 6, <unsigned int>transform_id)
    return n


cdef Py_ssize_t _enc_sa(object proposals, uchar *out) except -1:
    cdef Py_ssize_t n = 0, pn, i, j, spi_len, count
    cdef long long number, expected = 0
    proposals = _sequence(proposals, "SecurityAssociation.proposals")
    count = len(proposals)
    if count == 0:
        raise ValueError("an SA payload needs at least one proposal")
    for i in range(count):
        p = proposals[i]
        if type(p) is not L_PROPOSAL.cls:
            raise TypeError(f"SA proposals must be Proposal, not {type(p).__name__}")
        number = _uint(_field(p, L_PROPOSAL.off[0]), 255, "Proposal.number")
        if number == 0 or (expected and number != expected):
            raise ValueError("proposal numbers must start at 1 and increase by 1")
        expected = number + 1
        protocol_id = _uint(_field(p, L_PROPOSAL.off[1]), 255, "Proposal.protocol_id")
        spi_len = _put_data(out + n + 8 if out != NULL else NULL, _field(p, L_PROPOSAL.off[2]),
                            "Proposal.spi", 255)
        transforms = _sequence(_field(p, L_PROPOSAL.off[3]), "Proposal.transforms")
        if not 1 <= len(transforms) <= 255:
            raise ValueError("a proposal needs 1 to 255 transforms")
        pn = 8 + spi_len
        for j in range(len(transforms)):
            pn += _enc_transform(transforms[j], out + n + pn if out != NULL else NULL,
                                 j == len(transforms) - 1)
        if pn > 65535:
            raise ValueError("proposal longer than 65535 bytes")
        if out != NULL:
            out[n] = 0 if i == count - 1 else 2
            out[n + 1] = 0
            _w16(out + n + 2, <unsigned int>pn)
            out[n + 4] = <uchar>number
            out[n + 5] = <uchar>protocol_id
            out[n + 6] = <uchar>spi_len
            out[n + 7] = <uchar>len(transforms)
        n += pn
    return n


cdef Py_ssize_t _enc_selectors(object selectors, uchar *out) except -1:
    cdef Py_ssize_t n = 4, i, a, b
    cdef long long ts_type
    selectors = _sequence(selectors, "TrafficSelectors.selectors")
    if not 1 <= len(selectors) <= 255:
        raise ValueError("a TS payload needs 1 to 255 selectors")
    if out != NULL:
        out[0] = <uchar>len(selectors)
        memset(out + 1, 0, 3)
    for i in range(len(selectors)):
        s = selectors[i]
        if type(s) is not L_TS.cls:
            raise TypeError(f"selectors must be TrafficSelector, not {type(s).__name__}")
        ts_type = _uint(_field(s, L_TS.off[0]), 255, "TrafficSelector.ts_type")
        if ts_type != 7 and ts_type != 8:
            raise ValueError("TrafficSelector.ts_type must be 7 (IPv4) or 8 (IPv6)")
        protocol = _uint(_field(s, L_TS.off[1]), 255, "TrafficSelector.ip_protocol")
        start_port = _uint(_field(s, L_TS.off[2]), 65535, "TrafficSelector.start_port")
        end_port = _uint(_field(s, L_TS.off[3]), 65535, "TrafficSelector.end_port")
        a = _put_data(out + n + 8 if out != NULL else NULL, _field(s, L_TS.off[4]),
                      "TrafficSelector.start_address", 16)
        b = _put_data(out + n + 8 + a if out != NULL else NULL, _field(s, L_TS.off[5]),
                      "TrafficSelector.end_address", 16)
        if a != b or a != (4 if ts_type == 7 else 16):
            raise ValueError("traffic selector addresses must be 4 (IPv4) or 16 (IPv6) bytes")
        if out != NULL:
            out[n] = <uchar>ts_type
            out[n + 1] = <uchar>protocol
            _w16(out + n + 2, <unsigned int>(8 + 2 * a))
            _w16(out + n + 4, <unsigned int>start_port)
            _w16(out + n + 6, <unsigned int>end_port)
        n += 8 + 2 * a
    return n


cdef Py_ssize_t _enc_body(object p, uchar *out, unsigned int *ptype, unsigned int *next_field,
                          bint *critical) except -1:
    """Encode the body of payload p at out (NULL: measure); report its type, the value its Next
    Payload field must hold when it is an SK/SKF payload (else 256), and its C bit."""
    cdef type cls = type(p)
    cdef Py_ssize_t n, m, i, spi_size
    cdef _Layout layout
    next_field[0] = 256
    if cls is L_NOTIFY.cls:
        ptype[0] = PT_NOTIFY
        critical[0] = _field(p, L_NOTIFY.off[4])
        protocol_id = _uint(_field(p, L_NOTIFY.off[0]), 255, "Notify.protocol_id")
        notify_type = _uint(_field(p, L_NOTIFY.off[2]), 65535, "Notify.notify_type")
        spi_size = _put_data(out + 4 if out != NULL else NULL, _field(p, L_NOTIFY.off[1]),
                             "Notify.spi", 255)
        m = _put_data(out + 4 + spi_size if out != NULL else NULL, _field(p, L_NOTIFY.off[3]),
                      "Notify.data", 65535)
        if not _notify_data_ok(<unsigned int>notify_type, m):
            raise ValueError(f"wrong data length {m} for notify type {notify_type}")
        if out != NULL:
            out[0] = <uchar>protocol_id
            out[1] = <uchar>spi_size
            _w16(out + 2, <unsigned int>notify_type)
        return 4 + spi_size + m
    if cls is L_SA.cls:
        ptype[0] = PT_SA
        critical[0] = _field(p, L_SA.off[1])
        return _enc_sa(_field(p, L_SA.off[0]), out)
    if cls is L_KE.cls:
        ptype[0] = PT_KE
        critical[0] = _field(p, L_KE.off[2])
        group = _uint(_field(p, L_KE.off[0]), 65535, "KeyExchange.group")
        m = _put_data(out + 4 if out != NULL else NULL, _field(p, L_KE.off[1]),
                      "KeyExchange.data", 65535)
        if _ke_data_length(<unsigned int>group) not in (-1, m):
            raise ValueError(f"KE data for group {group} must be "
                             f"{_ke_data_length(<unsigned int>group)} bytes")
        if out != NULL:
            _w16(out, <unsigned int>group)
            out[2] = 0
            out[3] = 0
        return 4 + m
    if cls is L_NONCE.cls:
        ptype[0] = PT_NONCE
        critical[0] = _field(p, L_NONCE.off[1])
        m = _put_data(out, _field(p, L_NONCE.off[0]), "Nonce.data", 256)
        if m < 16:
            raise ValueError("a nonce must be 16 to 256 bytes (RFC 7296 §2.10)")
        return m
    if cls is L_IDI.cls or cls is L_IDR.cls or cls is L_AUTH.cls:
        layout = L_IDI if cls is L_IDI.cls else (L_IDR if cls is L_IDR.cls else L_AUTH)
        ptype[0] = layout.payload_type
        critical[0] = _field(p, layout.off[2])
        kind = _uint(_field(p, layout.off[0]), 255, f"{cls.__name__} type")
        m = _put_data(out + 4 if out != NULL else NULL, _field(p, layout.off[1]),
                      f"{cls.__name__}.data", 65535)
        if layout is not L_AUTH and not _id_data_ok(<unsigned int>kind, m):
            raise ValueError(f"identification data length {m} wrong for ID type {kind}")
        if out != NULL:
            out[0] = <uchar>kind
            memset(out + 1, 0, 3)
        return 4 + m
    if cls is L_TSI.cls or cls is L_TSR.cls:
        layout = L_TSI if cls is L_TSI.cls else L_TSR
        ptype[0] = layout.payload_type
        critical[0] = _field(p, layout.off[1])
        return _enc_selectors(_field(p, layout.off[0]), out)
    if cls is L_SK.cls:
        ptype[0] = PT_SK
        critical[0] = _field(p, L_SK.off[2])
        next_field[0] = <unsigned int>_uint(_field(p, L_SK.off[0]), 255, "Encrypted.first_payload")
        return _put_data(out, _field(p, L_SK.off[1]), "Encrypted.data", 65535)
    if cls is L_SKF.cls:
        ptype[0] = PT_SKF
        critical[0] = _field(p, L_SKF.off[4])
        next_field[0] = <unsigned int>_uint(_field(p, L_SKF.off[0]), 255,
                                            "EncryptedFragment.first_payload")
        number = _uint(_field(p, L_SKF.off[1]), 65535, "EncryptedFragment.fragment_number")
        total = _uint(_field(p, L_SKF.off[2]), 65535, "EncryptedFragment.total_fragments")
        if out != NULL:
            _w16(out, <unsigned int>number)
            _w16(out + 2, <unsigned int>total)
        return 4 + _put_data(out + 4 if out != NULL else NULL, _field(p, L_SKF.off[3]),
                             "EncryptedFragment.data", 65535)
    if cls is L_CERT.cls or cls is L_CERTREQ.cls:
        layout = L_CERT if cls is L_CERT.cls else L_CERTREQ
        ptype[0] = layout.payload_type
        critical[0] = _field(p, layout.off[2])
        encoding = _uint(_field(p, layout.off[0]), 255, f"{cls.__name__}.encoding")
        if out != NULL:
            out[0] = <uchar>encoding
        return 1 + _put_data(out + 1 if out != NULL else NULL, _field(p, layout.off[1]),
                             f"{cls.__name__}.data", 65535)
    if cls is L_DELETE.cls:
        ptype[0] = PT_DELETE
        critical[0] = _field(p, L_DELETE.off[3])
        protocol_id = _uint(_field(p, L_DELETE.off[0]), 255, "Delete.protocol_id")
        spi_size = _uint(_field(p, L_DELETE.off[1]), 255, "Delete.spi_size")
        spis = _sequence(_field(p, L_DELETE.off[2]), "Delete.spis")
        if len(spis) > 65535 or (spi_size == 0 and len(spis)):
            raise ValueError("Delete: too many SPIs, or SPIs with spi_size 0")
        n = 4
        for i in range(len(spis)):
            if _put_data(out + n if out != NULL else NULL, spis[i], "Delete SPI", 255) != spi_size:
                raise ValueError("every Delete SPI must be spi_size bytes")
            n += spi_size
        if out != NULL:
            out[0] = <uchar>protocol_id
            out[1] = <uchar>spi_size
            _w16(out + 2, <unsigned int>len(spis))
        return n
    if cls is L_VENDOR.cls:
        ptype[0] = PT_VENDOR
        critical[0] = _field(p, L_VENDOR.off[1])
        return _put_data(out, _field(p, L_VENDOR.off[0]), "VendorId.data", 65535)
    if cls is L_CP.cls:
        ptype[0] = PT_CP
        critical[0] = _field(p, L_CP.off[2])
        cfg_type = _uint(_field(p, L_CP.off[0]), 255, "Configuration.cfg_type")
        attributes = _sequence(_field(p, L_CP.off[1]), "Configuration.attributes")
        n = 4
        for i in range(len(attributes)):
            a = attributes[i]
            if type(a) is not L_CFGATTR.cls:
                raise TypeError(f"CP attributes must be ConfigAttribute, not {type(a).__name__}")
            attr_type = _uint(_field(a, L_CFGATTR.off[0]), 0x7FFF, "ConfigAttribute.type")
            m = _put_data(out + n + 4 if out != NULL else NULL, _field(a, L_CFGATTR.off[1]),
                          "ConfigAttribute.value", 65535)
            if out != NULL:
                _w16(out + n, <unsigned int>attr_type)
                _w16(out + n + 2, <unsigned int>m)
            n += 4 + m
        if out != NULL:
            out[0] = <uchar>cfg_type
            memset(out + 1, 0, 3)
        return n
    if cls is L_EAP.cls:
        ptype[0] = PT_EAP
        critical[0] = _field(p, L_EAP.off[3])
        code = _uint(_field(p, L_EAP.off[0]), 255, "Eap.code")
        identifier = _uint(_field(p, L_EAP.off[1]), 255, "Eap.identifier")
        m = _put_data(out + 4 if out != NULL else NULL, _field(p, L_EAP.off[2]), "Eap.data",
                      65527)
        if (code == 1 or code == 2) and m == 0:
            raise ValueError("EAP request/response needs a type")
        if (code == 3 or code == 4) and m != 0:
            raise ValueError("EAP success/failure carries no data")
        if out != NULL:
            out[0] = <uchar>code
            out[1] = <uchar>identifier
            _w16(out + 2, <unsigned int>(4 + m))
        return 4 + m
    if cls is L_UNKNOWN.cls:
        kind = _uint(_field(p, L_UNKNOWN.off[0]), 255, "UnknownPayload.type")
        if kind == 0 or _known_type(<unsigned int>kind):
            raise ValueError(f"UnknownPayload.type {kind} is a known or reserved type")
        ptype[0] = <unsigned int>kind
        critical[0] = _field(p, L_UNKNOWN.off[2])
        return _put_data(out, _field(p, L_UNKNOWN.off[1]), "UnknownPayload.data", 65535)
    raise TypeError(f"not an IKEv2 payload: {cls.__name__}")


cdef Py_ssize_t _enc_chain(object payloads, uchar *out, unsigned int *first) except -1:
    """Encode payloads with their generic headers (RFC 7296 §3.2); C bit as given, RESERVED 0."""
    cdef Py_ssize_t n = 0, m, i, count
    cdef unsigned int ptype = 0, next_field = 256, previous_at = 0
    cdef bint critical = False
    cdef bint have_previous = False
    payloads = _sequence(payloads, "payloads")
    count = len(payloads)
    first[0] = 0
    for i in range(count):
        if next_field != 256:
            raise ValueError("an Encrypted (SK/SKF) payload must be the last payload")
        m = _enc_body(payloads[i], out + n + 4 if out != NULL else NULL, &ptype, &next_field,
                      &critical)
        if m > 65531:
            raise ValueError("payload longer than 65535 bytes")
        if i == 0:
            first[0] = ptype
        if out != NULL:
            if have_previous:
                out[previous_at] = <uchar>ptype
            out[n] = <uchar>(next_field if next_field != 256 else 0)
            out[n + 1] = 0x80 if critical else 0
            _w16(out + n + 2, <unsigned int>(m + 4))
        have_previous = True
        previous_at = <unsigned int>n
        n += m + 4
    return n


def encode_payloads(payloads):
    """Encode a payload chain: returns (type of the first payload or 0, bytes)."""
    cdef unsigned int first
    _require_bound()
    cdef Py_ssize_t n = _enc_chain(payloads, NULL, &first)
    result = PyBytes_FromStringAndSize(NULL, n)
    _enc_chain(payloads, <uchar *>PyBytes_AS_STRING(result), &first)
    return first, result


def encode_message(spi_i, spi_r, exchange, flags, message_id, payloads):
    """Encode an IKE message (RFC 7296 §3.1): version 2.0, Length computed."""
    cdef unsigned int first
    cdef Py_ssize_t si, sr
    cdef const uchar *pi = _data(spi_i, &si, "spi_i")
    cdef const uchar *pr = _data(spi_r, &sr, "spi_r")
    if si != 8 or sr != 8:
        raise ValueError("SPIs must be 8 bytes")
    cdef uchar exchange_type = <uchar>_uint(exchange, 255, "exchange")
    cdef uchar header_flags = <uchar>_uint(flags, 255, "flags")
    cdef uint32_t mid = <uint32_t>_uint(message_id, 0xFFFFFFFF, "message_id")
    _require_bound()
    cdef Py_ssize_t n = HEADER_LEN + _enc_chain(payloads, NULL, &first)
    if n > 0xFFFFFFFF:
        raise ValueError("message too long")
    result = PyBytes_FromStringAndSize(NULL, n)
    cdef uchar *out = <uchar *>PyBytes_AS_STRING(result)
    memcpy(out, pi, 8)
    memcpy(out + 8, pr, 8)
    _enc_chain(payloads, out + HEADER_LEN, &first)
    out[16] = <uchar>first
    out[17] = 0x20
    out[18] = exchange_type
    out[19] = header_flags
    _w32(out + 20, mid)
    _w32(out + 24, <uint32_t>n)
    return result
