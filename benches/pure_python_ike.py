"""The peer of benches/test_parse.py: a plain pure-Python IKEv2 parser and builder (struct,
slotted classes), what a Python user would write instead of ikecore. Bench-only code: it checks
lengths as it goes but is not hardened like ikecore's native parser."""

from __future__ import annotations

import struct

_HEADER = struct.Struct("!8s8sBBBBII")
_GENERIC = struct.Struct("!BBH")
_PROPOSAL = struct.Struct("!BBHBBBB")
_TRANSFORM = struct.Struct("!BBHBBH")
_ATTR = struct.Struct("!HH")
_NOTIFY = struct.Struct("!BBH")
_TS = struct.Struct("!BBHHH")


class Transform:
    __slots__ = ("attributes", "id", "key_length", "type")

    def __init__(self, type: int, id: int, key_length: int | None, attributes: tuple) -> None:
        self.type = type
        self.id = id
        self.key_length = key_length
        self.attributes = attributes


class Proposal:
    __slots__ = ("number", "protocol_id", "spi", "transforms")

    def __init__(self, number: int, protocol_id: int, spi: bytes, transforms: tuple) -> None:
        self.number = number
        self.protocol_id = protocol_id
        self.spi = spi
        self.transforms = transforms


class Payload:
    __slots__ = ("critical", "type")


class SecurityAssociation(Payload):
    __slots__ = ("proposals",)


class KeyExchange(Payload):
    __slots__ = ("data", "group")


class Nonce(Payload):
    __slots__ = ("data",)


class Notify(Payload):
    __slots__ = ("data", "notify_type", "protocol_id", "spi")


class Identification(Payload):
    __slots__ = ("data", "id_type")


class Authentication(Payload):
    __slots__ = ("data", "method")


class TrafficSelector:
    __slots__ = ("end_address", "end_port", "ip_protocol", "start_address", "start_port", "ts_type")


class TrafficSelectors(Payload):
    __slots__ = ("selectors",)


class Raw(Payload):
    __slots__ = ("data",)


class Message:
    __slots__ = (
        "exchange", "flags", "is_initiator", "is_response", "message_id", "payloads", "spi_i",
        "spi_r",
    )


def _sa(body: bytes, pos: int, end: int) -> SecurityAssociation:
    proposals = []
    while pos < end:
        fields = _PROPOSAL.unpack_from(body, pos)
        last, _, plen, number, protocol_id, spi_size, n_transforms = fields
        if plen < 8 or pos + plen > end:
            raise ValueError("bad proposal length")
        spi = body[pos + 8 : pos + 8 + spi_size]
        tpos = pos + 8 + spi_size
        transforms = []
        for _ in range(n_transforms):
            _tlast, _, tlen, ttype, _, tid = _TRANSFORM.unpack_from(body, tpos)
            if tlen < 8 or tpos + tlen > pos + plen:
                raise ValueError("bad transform length")
            key_length = None
            attributes = []
            apos = tpos + 8
            while apos < tpos + tlen:
                atype, value = _ATTR.unpack_from(body, apos)
                if atype & 0x8000:
                    if atype & 0x7FFF == 14:
                        key_length = value
                    else:
                        attributes.append((atype & 0x7FFF, value))
                    apos += 4
                else:
                    attributes.append((atype, body[apos + 4 : apos + 4 + value]))
                    apos += 4 + value
            transforms.append(Transform(ttype, tid, key_length, tuple(attributes)))
            tpos += tlen
        proposals.append(Proposal(number, protocol_id, spi, tuple(transforms)))
        pos += plen
        if last == 0:
            break
    sa = SecurityAssociation()
    sa.proposals = tuple(proposals)
    return sa


def _selectors(data: bytes, pos: int, end: int, kind: type) -> TrafficSelectors:
    count = data[pos]
    pos += 4
    selectors = []
    for _ in range(count):
        ts_type, protocol, length, start_port, end_port = _TS.unpack_from(data, pos)
        half = (length - 8) // 2
        ts = TrafficSelector()
        ts.ts_type = ts_type
        ts.ip_protocol = protocol
        ts.start_port = start_port
        ts.end_port = end_port
        ts.start_address = data[pos + 8 : pos + 8 + half]
        ts.end_address = data[pos + 8 + half : pos + length]
        selectors.append(ts)
        pos += length
    payload = TrafficSelectors()
    payload.selectors = tuple(selectors)
    return payload


def parse_chain(next_type: int, data: bytes, pos: int, end: int) -> list[Payload]:
    payloads: list[Payload] = []
    while next_type:
        following, flags, length = _GENERIC.unpack_from(data, pos)
        if length < 4 or pos + length > end:
            raise ValueError("bad payload length")
        body = pos + 4
        stop = pos + length
        payload: Payload
        if next_type == 33:
            payload = _sa(data, body, stop)
        elif next_type == 34:
            payload = KeyExchange()
            payload.group = int.from_bytes(data[body : body + 2], "big")
            payload.data = data[body + 4 : stop]
        elif next_type == 40:
            payload = Nonce()
            payload.data = data[body:stop]
        elif next_type == 41:
            payload = Notify()
            payload.protocol_id, spi_size, payload.notify_type = _NOTIFY.unpack_from(data, body)
            payload.spi = data[body + 4 : body + 4 + spi_size]
            payload.data = data[body + 4 + spi_size : stop]
        elif next_type in (35, 36):
            payload = Identification()
            payload.id_type = data[body]
            payload.data = data[body + 4 : stop]
        elif next_type == 39:
            payload = Authentication()
            payload.method = data[body]
            payload.data = data[body + 4 : stop]
        elif next_type in (44, 45):
            payload = _selectors(data, body, stop, TrafficSelectors)
        else:
            payload = Raw()
            payload.data = data[body:stop]
        payload.type = next_type
        payload.critical = bool(flags & 0x80)
        payloads.append(payload)
        if next_type == 46:
            break
        next_type = following
        pos = stop
    if pos != end and next_type != 46:
        raise ValueError("trailing data")
    return payloads


def parse_message(data: bytes) -> Message:
    spi_i, spi_r, next_type, _version, exchange, flags, message_id, length = _HEADER.unpack_from(
        data
    )
    if length != len(data):
        raise ValueError("bad length")
    message = Message()
    message.spi_i = spi_i
    message.spi_r = spi_r
    message.exchange = exchange
    message.flags = flags
    message.is_initiator = bool(flags & 0x08)
    message.is_response = bool(flags & 0x20)
    message.message_id = message_id
    message.payloads = parse_chain(next_type, data, 28, len(data))
    return message


def index_message(data: bytes) -> list[tuple[int, int, int]]:
    """The peer of the index-only walk: (type, offset, length) per payload."""
    next_type = data[16]
    pos = 28
    index = []
    while next_type:
        following, _, length = _GENERIC.unpack_from(data, pos)
        index.append((next_type, pos, length))
        if next_type == 46:
            break
        next_type = following
        pos += length
    return index


# --- building -----------------------------------------------------------------------------------


def _generic(next_type: int, body: bytes) -> bytes:
    return _GENERIC.pack(next_type, 0, 4 + len(body)) + body


def encode_sa(proposals: list[tuple[int, int, bytes, list[tuple[int, int, int | None]]]]) -> bytes:
    out = []
    for i, (number, protocol_id, spi, transforms) in enumerate(proposals):
        encoded = []
        for j, (ttype, tid, key_length) in enumerate(transforms):
            attrs = b"" if key_length is None else _ATTR.pack(0x800E, key_length)
            last = 0 if j == len(transforms) - 1 else 3
            encoded.append(_TRANSFORM.pack(last, 0, 8 + len(attrs), ttype, 0, tid) + attrs)
        tbytes = b"".join(encoded)
        last = 0 if i == len(proposals) - 1 else 2
        out.append(
            _PROPOSAL.pack(last, 0, 8 + len(spi) + len(tbytes), number, protocol_id, len(spi),
                           len(transforms))
            + spi
            + tbytes
        )
    return b"".join(out)


def encode_chain(payloads: list[tuple[int, bytes]]) -> bytes:
    """payloads: (type, body) pairs."""
    out = []
    for i, (_ptype, body) in enumerate(payloads):
        following = payloads[i + 1][0] if i + 1 < len(payloads) else 0
        out.append(_generic(following, body))
    return b"".join(out)


def encode_message(spi_i: bytes, spi_r: bytes, exchange: int, flags: int, message_id: int,
                   payloads: list[tuple[int, bytes]]) -> bytes:
    chain = encode_chain(payloads)
    first = payloads[0][0] if payloads else 0
    return _HEADER.pack(spi_i, spi_r, first, 0x20, exchange, flags, message_id,
                        28 + len(chain)) + chain


def encode_notify(protocol_id: int, spi: bytes, notify_type: int, data: bytes = b"") -> bytes:
    return _NOTIFY.pack(protocol_id, len(spi), notify_type) + spi + data


def encode_ke(group: int, data: bytes) -> bytes:
    return struct.pack("!HH", group, 0) + data


def encode_id(id_type: int, data: bytes) -> bytes:
    return struct.pack("!B3x", id_type) + data


def encode_ts(selectors: list[tuple[int, int, int, int, bytes, bytes]]) -> bytes:
    out = [struct.pack("!B3x", len(selectors))]
    for ts_type, protocol, start_port, end_port, start, end in selectors:
        out.append(_TS.pack(ts_type, protocol, 8 + len(start) + len(end), start_port, end_port)
                   + start + end)
    return b"".join(out)
