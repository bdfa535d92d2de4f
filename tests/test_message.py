"""IKE message parser and builder (ikecore.message, ikecore._fast.ikemsg): the published
exchange vectors, the strict-parser rules of RFC 7296 §3 and the builder's argument checks."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from ikemsg_vectors import inner_chains, load, messages

from ikecore import (
    ExchangeType,
    MalformedMessage,
    NotifyType,
    RemoteProtocolError,
)
from ikecore.message import (
    IkeMessage,
    auth_payload,
    encode_message,
    encode_payload_chain,
    ke_payload,
    nonce_payload,
    parse_message,
    parse_payload_chain,
    proposal,
    sa_payload,
    status_notify,
)
from ikecore.payloads import (
    Attribute,
    Authentication,
    Delete,
    Eap,
    Encrypted,
    EncryptedFragment,
    IDi,
    KeyExchange,
    Nonce,
    Notify,
    Proposal,
    SecurityAssociation,
    TrafficSelector,
    Transform,
    TSi,
    UnknownPayload,
    UnsupportedCriticalPayload,
    VendorId,
)

SPI_I = bytes.fromhex("a1b2c3d4e5f60718")
SPI_R = bytes(8)


def header(next_payload: int, body_length: int, flags: int = 0x08, exchange: int = 34) -> bytes:
    return SPI_I + SPI_R + struct.pack("!BBBBII", next_payload, 0x20, exchange, flags, 0,
                                       28 + body_length)


def message(first: int, chain: bytes) -> bytes:
    return header(first, len(chain)) + chain


def generic(next_payload: int, body: bytes, flags: int = 0) -> bytes:
    return struct.pack("!BBH", next_payload, flags, 4 + len(body)) + body


# --- vectors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", messages(), ids=lambda v: v.name)
def test_vector_message_round_trips(vector):
    parsed = parse_message(vector.data)
    assert parsed.to_bytes() == vector.data
    rebuilt = encode_message(
        parsed.spi_i,
        parsed.spi_r,
        parsed.exchange,
        parsed.message_id,
        parsed.payloads,
        initiator=parsed.is_initiator,
        response=parsed.is_response,
    )
    assert rebuilt == vector.data


@pytest.mark.parametrize("vector", inner_chains(), ids=lambda v: v.name)
def test_vector_inner_chain_round_trips(vector):
    chain = parse_payload_chain(vector.first_type, vector.inner)
    assert chain.to_bytes() == vector.inner
    assert encode_payload_chain(chain.payloads) == (vector.first_type, vector.inner)
    # the SK plaintext is the inner chain followed by padding and the Pad Length byte
    pad_length = vector.plaintext[-1]
    assert vector.plaintext[: len(vector.plaintext) - pad_length - 1] == vector.inner


def test_vector_ike_sa_init_request_fields():
    vec = load()["ike_sa_init"]
    parsed = parse_message(bytes.fromhex(vec["message1"]))
    assert parsed.spi_i == bytes.fromhex(vec["spi_i"])
    assert parsed.spi_r == bytes(8)
    assert parsed.exchange == ExchangeType.IKE_SA_INIT
    assert parsed.message_id == 0
    assert parsed.is_initiator and not parsed.is_response
    assert [type(p) for p in parsed.payloads] == [SecurityAssociation, KeyExchange, Nonce]
    (proposal,) = parsed.payloads[0].proposals
    assert (proposal.number, proposal.protocol_id, proposal.spi) == (1, 1, b"")
    assert [(t.type, t.id, t.key_length) for t in proposal.transforms] == [
        (1, 20, 256), (2, 5, None), (4, 19, None)
    ]
    assert parsed.find(KeyExchange) == KeyExchange(19, bytes.fromhex(vec["ke_i_data"]))
    assert parsed.find(Nonce) == Nonce(bytes.fromhex(vec["ni"]))


def test_vector_ike_auth_request_sk_and_inner_chain():
    vec = load()["ike_auth"]
    parsed = parse_message(bytes.fromhex(vec["message3"]))
    assert (parsed.exchange, parsed.message_id) == (ExchangeType.IKE_AUTH, 1)
    sk = parsed.encrypted
    assert isinstance(sk, Encrypted)
    assert sk.first_payload == vec["message3_sk"]["first_inner_payload"]
    assert parsed.encrypted_aad == bytes.fromhex(vec["message3_sk"]["aad"])
    assert sk.data[:8] == bytes.fromhex(vec["message3_sk"]["iv"])
    assert sk.data[-16:] == bytes.fromhex(vec["message3_sk"]["icv"])
    inner = parse_payload_chain(sk.first_payload,
                                bytes.fromhex(vec["message3_sk"]["inner_payloads"]))
    assert inner.find(IDi) == IDi(2, b"client.example")
    auth = inner.find(Authentication)
    assert auth is not None and auth.data == bytes.fromhex(vec["auth_i"])
    assert inner.notify(NotifyType.CLONE_IKE_SA_SUPPORTED) is not None
    ts = inner.find(TSi)
    assert ts is not None
    assert ts.selectors[0].start == ipaddress.ip_address("10.1.0.2")


def test_vector_mobike_notifies_typed():
    vec = load()["mobike_on_clone"]
    inner = parse_payload_chain(41, bytes.fromhex(vec["request_sk"]["inner_payloads"]))
    assert inner.payload_types == (41, 41, 41, 41)
    natd = inner.notify(NotifyType.NAT_DETECTION_SOURCE_IP)
    assert natd is not None
    assert natd.value == bytes.fromhex(vec["nat_detection_source_ip_in_request"])
    cookie2 = inner.notify(NotifyType.COOKIE2)
    assert cookie2 is not None and cookie2.value == bytes.fromhex(vec["cookie2"])
    assert inner.notify(NotifyType.UPDATE_SA_ADDRESSES).value is None  # type: ignore[union-attr]
    assert len(inner.notifies()) == 4
    assert len(inner.notifies(NotifyType.NAT_DETECTION_DESTINATION_IP)) == 1


# --- typed notify data -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("notify", "value"),
    [
        (Notify.invalid_ke_payload(31), 31),
        (Notify.set_window_size(10), 10),
        (Notify.additional_address(ipaddress.ip_address("192.0.2.1")),
         ipaddress.ip_address("192.0.2.1")),
        (Notify.additional_address(ipaddress.ip_address("2001:db8::1")),
         ipaddress.ip_address("2001:db8::1")),
        (Notify.signature_hash_algorithms((2, 3, 4)), (2, 3, 4)),
        (Notify.status(NotifyType.CLONE_IKE_SA), None),
        (Notify.status(NotifyType.COOKIE, b"c" * 10), b"c" * 10),
        (Notify.status(40000, b"anything"), b"anything"),
    ],
)
def test_notify_value_typed_after_round_trip(notify, value):
    first, chain = encode_payload_chain([notify])
    (decoded,) = parse_payload_chain(first, chain).payloads
    assert decoded == notify
    assert decoded.value == value


def test_rekey_sa_notify_carries_spi():
    notify = Notify.rekey_sa(3, b"\x01\x02\x03\x04")
    (decoded,) = parse_payload_chain(*encode_payload_chain([notify])).payloads
    assert (decoded.protocol_id, decoded.spi, decoded.notify_type) == (3, b"\x01\x02\x03\x04",
                                                                       16393)


# --- strict parsing: MalformedMessage with the offset -----------------------------------------

NONCE = generic(0, bytes(16))

MALFORMED = [
    ("short", SPI_I + bytes(10), 18),
    ("length field != datagram", header(40, 21) + NONCE, 24),
    ("major version 1", header(40, 20)[:17] + b"\x10" + header(40, 20)[18:] + NONCE, 17),
    ("zero initiator SPI", bytes(8) + header(40, 20)[8:] + NONCE, 0),
    ("payload header truncated", message(40, b"\x00\x00"), 28),
    ("payload length < 4", message(40, b"\x00\x00\x00\x03"), 30),
    ("payload length beyond end", message(40, b"\x00\x00\x00\x40" + bytes(16)), 30),
    ("trailing data after chain", message(40, NONCE + b"\x00"), 48),
    ("chain announces more", message(40, generic(40, bytes(16))), 48),
    ("SK not last", message(46, generic(0, bytes(8)) + NONCE), 40),
    ("nonce too short", message(40, generic(0, bytes(15))), 30),
    ("nonce too long", message(40, generic(0, bytes(257))), 30),
    ("KE wrong length for x25519", message(34, generic(0, b"\x00\x1f\x00\x00" + bytes(31))), 36),
    ("KE truncated", message(34, generic(0, b"\x00")), 32),
    ("IPv4 ID not 4 bytes", message(35, generic(0, b"\x01\x00\x00\x00" + bytes(5))), 36),
    ("empty FQDN ID", message(35, generic(0, b"\x02\x00\x00\x00")), 36),
    ("notify SPI beyond payload", message(41, generic(0, b"\x00\x08\x40\x00" + bytes(4))), 33),
    ("NAT-D not 20 bytes", message(41, generic(0, b"\x00\x00\x40\x04" + bytes(19))), 36),
    ("COOKIE empty", message(41, generic(0, b"\x00\x00\x40\x06")), 36),
    ("delete length mismatch", message(42, generic(0, b"\x03\x04\x00\x02" + bytes(4))), 34),
    ("TS count zero", message(44, generic(0, b"\x00\x00\x00\x00")), 32),
    ("TS bad type", message(44, generic(0, b"\x01\x00\x00\x00" + b"\x09\x00\x00\x10"
                                         + bytes(12))), 36),
    ("TS count larger than present", message(44, generic(0, b"\x02\x00\x00\x00" + b"\x07\x00"
                                                      b"\x00\x10" + bytes(12))), 52),
    ("EAP length mismatch", message(48, generic(0, b"\x01\x01\x00\x09\x01")), 34),
    ("EAP success with data", message(48, generic(0, b"\x03\x01\x00\x05\x00")), 34),
    ("SKF truncated", message(53, generic(0, b"\x00\x01")), 32),
    ("CP attribute beyond payload", message(47, generic(0, b"\x01\x00\x00\x00\x00\x01\x00\x08")),
     38),
]


@pytest.mark.parametrize(("name", "data", "offset"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_raises_with_offset(name, data, offset):
    with pytest.raises(MalformedMessage) as info:
        parse_message(data)
    assert info.value.offset == offset


def _sa_body(proposals: list[bytes]) -> bytes:
    return b"".join(proposals)


def _proposal(last: int, number: int, transforms: list[bytes], count: int | None = None,
              spi: bytes = b"") -> bytes:
    body = b"".join(transforms)
    n = len(transforms) if count is None else count
    return struct.pack("!BBHBBBB", last, 0, 8 + len(spi) + len(body), number, 1, len(spi),
                       n) + spi + body


def _transform(last: int, ttype: int, tid: int, attrs: bytes = b"") -> bytes:
    return struct.pack("!BBHBBH", last, 0, 8 + len(attrs), ttype, 0, tid) + attrs


GOOD_T = [_transform(3, 1, 20, b"\x80\x0e\x01\x00"), _transform(0, 2, 5)]

SA_MALFORMED = [
    ("transform count too high", [_proposal(0, 1, GOOD_T, count=3)], 7),
    ("transform count too low", [_proposal(0, 1, GOOD_T, count=1)], 20),
    ("proposal numbering", [_proposal(2, 1, GOOD_T), _proposal(0, 3, GOOD_T)], 32),
    ("first proposal number 0", [_proposal(0, 0, GOOD_T)], 4),
    ("last proposal flag says more", [_proposal(2, 1, GOOD_T)], 0),
    ("more proposals after last", [_proposal(0, 1, GOOD_T), _proposal(0, 2, GOOD_T)], 28),
    ("transform last flag wrong", [_proposal(0, 1, [_transform(0, 1, 20), _transform(0, 2, 5)])],
     8),
    ("Key Length as TLV", [_proposal(0, 1, [_transform(0, 1, 20, b"\x00\x0e\x00\x02\x01\x00")])],
     8 + 8),
    ("duplicate attribute", [_proposal(0, 1, [_transform(0, 1, 20, b"\x80\x0e\x01\x00" * 2)])],
     8 + 12),
    ("attribute beyond transform", [_proposal(0, 1, [_transform(0, 1, 20, b"\x00\x05\x00\x09")])],
     8 + 10),
    ("proposal without transforms", [_proposal(0, 1, [])], 7),
    ("empty SA", [], 0),
]


@pytest.mark.parametrize(("name", "proposals", "offset"), SA_MALFORMED,
                         ids=[m[0] for m in SA_MALFORMED])
def test_malformed_sa_raises_with_offset(name, proposals, offset):
    data = message(33, generic(0, _sa_body(proposals)))
    with pytest.raises(MalformedMessage) as info:
        parse_message(data)
    assert info.value.offset == 32 + offset


def test_inner_chain_offsets_are_absolute_and_sk_in_sk_rejected():
    with pytest.raises(MalformedMessage) as info:
        parse_payload_chain(40, generic(0, bytes(8)), base_offset=100)
    assert info.value.offset == 102
    with pytest.raises(MalformedMessage) as info:
        parse_payload_chain(46, generic(0, bytes(8)), base_offset=100)
    assert info.value.offset == 100


def test_critical_unknown_payload_raises_remote_protocol_error():
    data = message(40, generic(200, bytes(16)) + generic(0, b"xyz", flags=0x80))
    with pytest.raises(UnsupportedCriticalPayload) as info:
        parse_message(data)
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.notify_type == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert info.value.payload_type == 200
    assert info.value.offset == 48
    assert info.value.notify_data == b"\xc8"


def test_unknown_noncritical_payload_kept_and_known_critical_accepted():
    data = message(200, generic(40, b"opaque") + generic(0, bytes(16), flags=0x80))
    parsed = parse_message(data)
    assert parsed.payloads == [UnknownPayload(200, b"opaque"), Nonce(bytes(16), critical=True)]
    assert parsed.to_bytes() == data


def test_reserved_bits_ignored_on_receipt_and_zero_on_send():
    # generic header RESERVED bits, KE RESERVED, ID RESERVED, header X/V flag bits set
    ke = generic(35, b"\x00\x1f\xff\xff" + bytes(32), flags=0x7F)
    ident = generic(0, b"\x02\xaa\xbb\xcc" + b"host")
    data = SPI_I + SPI_R + struct.pack("!BBBBII", 34, 0x2F, 34, 0xFF, 7, 28 + len(ke + ident))
    data += ke + ident
    parsed = parse_message(data)
    assert parsed.to_bytes() == data
    assert parsed.minor_version == 0xF and parsed.is_initiator and parsed.is_response
    assert parsed.payloads == [KeyExchange(31, bytes(32)), IDi(2, b"host")]
    rebuilt = encode_message(SPI_I, SPI_R, 34, 7, parsed.payloads, initiator=True, response=True)
    assert rebuilt[17] == 0x20 and rebuilt[19] == 0x28
    assert rebuilt[28 + 1] == 0 and rebuilt[28 + 6 : 28 + 8] == b"\x00\x00"
    assert rebuilt[-7:-4] == b"\x00\x00\x00"


def test_find_decodes_one_payload_and_payloads_is_cached():
    payloads = [Nonce(bytes(range(16))), VendorId(b"v"), Notify.status(NotifyType.COOKIE, b"c")]
    parsed = parse_message(encode_message(SPI_I, SPI_R, 34, 0, payloads, initiator=True,
                                          response=False))
    assert parsed.find(VendorId) == VendorId(b"v")
    assert parsed.find(Delete) is None
    assert parsed.payloads is parsed.payloads
    assert parsed.find(Notify) == payloads[2]
    assert parsed.find_all(Nonce) == [payloads[0]]
    assert parsed.payload_types == (40, 43, 41)
    assert len(parsed) == 3
    assert parsed.encrypted is None
    with pytest.raises(LookupError):
        _ = parsed.encrypted_aad


def test_message_is_read_only():
    parsed = parse_message(message(40, NONCE))
    with pytest.raises(AttributeError):
        parsed.message_id = 5  # type: ignore[misc]
    assert parsed == parse_message(bytearray(parsed.to_bytes()))
    assert isinstance(parse_message(memoryview(parsed.to_bytes())), IkeMessage)


def test_parse_rejects_non_bytes():
    with pytest.raises(TypeError):
        parse_message("not bytes")  # type: ignore[arg-type]


def test_skf_aad_includes_fragment_fields():
    skf = EncryptedFragment(35, 1, 3, bytes(24))
    data = encode_message(SPI_I, SPI_R, 35, 1, [skf], initiator=True, response=False)
    parsed = parse_message(data)
    assert parsed.encrypted == skf
    assert parsed.encrypted_aad == data[: 28 + 8]
    assert data[28] == 35  # the SKF Next Payload is the first inner payload type


# --- the builder's argument checks ------------------------------------------------------------


@pytest.mark.parametrize(
    ("payloads", "error"),
    [
        ([Nonce(bytes(15))], ValueError),
        ([Nonce("x" * 16)], TypeError),  # type: ignore[arg-type]
        ([KeyExchange(31, bytes(31))], ValueError),
        ([SecurityAssociation(())], ValueError),
        ([SecurityAssociation((Proposal(1, 1, b"", (Transform(1, 20),)),
                               Proposal(3, 1, b"", (Transform(1, 20),))))], ValueError),
        ([SecurityAssociation((Proposal(0, 1, b"", (Transform(1, 20),)),))], ValueError),
        ([SecurityAssociation((Proposal(1, 1, b"", ()),))], ValueError),
        ([SecurityAssociation((Proposal(1, 1, b"", (Transform(1, 20, 1 << 16),)),))], ValueError),
        ([SecurityAssociation((Proposal(1, 1, b"", (Transform(1, 20, None,
                                                              (Attribute(14, 5),)),)),))],
         ValueError),
        ([SecurityAssociation((Proposal(1, 1, b"", (Transform(1, 20, None,
                                                              (Attribute(3, 1),
                                                               Attribute(3, 2))),)),))],
         ValueError),
        ([SecurityAssociation((Proposal(1, 1, b"", (Transform(-1, 20),)),))], ValueError),
        ([SecurityAssociation((Proposal(1, 1, b"", (Transform(1.0, 20),)),))], TypeError),  # type: ignore[arg-type]
        ([Notify(0, b"", NotifyType.NAT_DETECTION_SOURCE_IP, bytes(19))], ValueError),
        ([Notify(0, b"", 70000, b"")], ValueError),
        ([Encrypted(35, b""), Nonce(bytes(16))], ValueError),
        ([Delete(3, 4, (bytes(3),))], ValueError),
        ([TSi((TrafficSelector(7, 0, 0, 65535, bytes(16), bytes(16)),))], ValueError),
        ([TSi(())], ValueError),
        ([Eap(3, 1, b"x")], ValueError),
        ([UnknownPayload(40, b"")], ValueError),
        (["not a payload"], TypeError),
        ((Nonce(bytes(16)) for _ in range(1)), TypeError),
    ],
)
def test_encode_rejects_bad_arguments(payloads, error):
    with pytest.raises(error):
        encode_payload_chain(payloads)


def test_encode_message_rejects_bad_header_arguments():
    with pytest.raises(ValueError):
        encode_message(b"short", SPI_R, 34, 0, [], initiator=True, response=False)
    with pytest.raises(ValueError):
        encode_message(SPI_I, SPI_R, 34, 2**32, [], initiator=True, response=False)


def test_empty_message_and_chain():
    data = encode_message(SPI_I, SPI_R, 37, 3, [], initiator=False, response=True)
    assert len(data) == 28 and data[16] == 0
    parsed = parse_message(data)
    assert parsed.payloads == [] and parsed.is_response and not parsed.is_initiator
    assert encode_payload_chain([]) == (0, b"")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: parse_payload_chain(-1, b""), ValueError),
        (lambda: parse_payload_chain(256, b""), ValueError),
        (lambda: parse_payload_chain(2**80, b""), ValueError),
        (lambda: parse_payload_chain("40", b""), TypeError),
        (lambda: parse_payload_chain(40, b"", base_offset=-1), ValueError),
        (lambda: parse_payload_chain(40, "text"), TypeError),
        (lambda: encode_message(SPI_I, SPI_R, -1, 0, [], initiator=True, response=False),
         ValueError),
        (lambda: encode_message(SPI_I, SPI_R, 256, 0, [], initiator=True, response=False),
         ValueError),
        (lambda: encode_message(SPI_I, SPI_R, 34, -1, [], initiator=True, response=False),
         ValueError),
        (lambda: encode_message("x" * 8, SPI_R, 34, 0, [], initiator=True, response=False),
         TypeError),
    ],
)
def test_bad_caller_arguments_are_type_or_value_errors(call, error):
    with pytest.raises(error):
        call()


def test_transforms_decode_to_equal_values():
    sa = SecurityAssociation((Proposal(1, 1, b"", (Transform(1, 20, 256), Transform(2, 5))),))
    first, chain = encode_payload_chain([sa])
    a = parse_payload_chain(first, chain).payloads[0]
    b = parse_payload_chain(first, chain).payloads[0]
    assert a == b == sa
    assert a.proposals[0].transforms[0] == Transform(1, 20, 256)
    assert a.proposals[0].transforms[1].key_length is None
    with_attribute = Transform(1, 12, 128, (Attribute(3, 1),))
    sa2 = SecurityAssociation((Proposal(1, 1, b"", (with_attribute,)),))
    decoded = parse_payload_chain(*encode_payload_chain([sa2])).payloads[0]
    assert decoded.proposals[0].transforms == (with_attribute,)


def test_bind_classes_checks_fields_and_keeps_the_bound_ones():
    from dataclasses import dataclass

    from ikecore._fast import ikemsg
    from ikecore.payloads import PAYLOAD_CLASSES

    @dataclass(frozen=True, slots=True)
    class Nonce2:  # wrong fields
        nonce: bytes

    classes = dict(PAYLOAD_CLASSES, Nonce=Nonce2)
    with pytest.raises(TypeError):
        ikemsg.bind_classes(classes, UnsupportedCriticalPayload)
    with pytest.raises(TypeError):
        ikemsg.bind_classes({"Nonce": Nonce}, UnsupportedCriticalPayload)
    assert parse_message(message(40, NONCE)).payloads == [Nonce(bytes(16))]


# --- status_notify: the native Notify builder for what the engine sends ---------------------------


@pytest.mark.parametrize(
    ("notify_type", "data"),
    [
        (NotifyType.NAT_DETECTION_SOURCE_IP, bytes(range(20))),  # a shared status int
        (NotifyType.IKEV2_FRAGMENTATION_SUPPORTED, b""),
        (NotifyType.INVALID_KE_PAYLOAD, b"\x00\x13"),  # an error type
        (40000, b"\xff" * 5),  # outside the shared status ints
        (0xFFFF, b"x"),
    ],
)
def test_status_notify_is_the_dataclass_notify(notify_type: int, data: bytes) -> None:
    made = status_notify(int(notify_type), data)
    expected = Notify(0, b"", int(notify_type), data)
    assert type(made) is Notify
    assert made == expected and hash(made) == hash(expected)
    assert (made.type, made.protocol_id, made.spi, made.critical) == (41, 0, b"", False)
    # encoded exactly as the dataclass-built one, and decoded back to an equal payload
    first, encoded = encode_payload_chain([made])
    assert (first, encoded) == encode_payload_chain([expected])
    assert parse_payload_chain(first, encoded).payloads == [expected]


@pytest.mark.parametrize(
    ("notify_type", "data", "error"),
    [
        (-1, b"", ValueError),
        (0x10000, b"", ValueError),
        (True, b"", TypeError),
        (16388.0, b"", TypeError),
        (16388, "text", TypeError),
        (16388, bytearray(4), TypeError),
    ],
)
def test_status_notify_rejects_bad_arguments(
    notify_type: object, data: object, error: type
) -> None:
    with pytest.raises(error):
        status_notify(notify_type, data)  # type: ignore[arg-type]


# --- the other native builders: the same payloads as the dataclasses make -------------------------

_TRANSFORMS = (Transform(1, 20, 256), Transform(2, 5), Transform(4, 31))


@pytest.mark.parametrize(
    ("made", "expected"),
    [
        (lambda: nonce_payload(bytes(32)), lambda: Nonce(bytes(32))),
        (lambda: ke_payload(31, bytes(range(32))), lambda: KeyExchange(31, bytes(range(32)))),
        (
            lambda: ke_payload(NotifyType.COOKIE, bytes(32)),  # an int subclass is kept as given
            lambda: KeyExchange(NotifyType.COOKIE, bytes(32)),
        ),
        (lambda: auth_payload(2, b"\x01" * 32), lambda: Authentication(2, b"\x01" * 32)),
        (
            lambda: proposal(1, 3, b"\xaa" * 4, _TRANSFORMS),
            lambda: Proposal(1, 3, b"\xaa" * 4, _TRANSFORMS),
        ),
        (
            lambda: sa_payload(
                (proposal(1, 1, b"", _TRANSFORMS), proposal(2, 1, b"", _TRANSFORMS))
            ),
            lambda: SecurityAssociation(
                (Proposal(1, 1, b"", _TRANSFORMS), Proposal(2, 1, b"", _TRANSFORMS))
            ),
        ),
    ],
)
def test_native_builders_make_the_dataclass_payloads(made, expected) -> None:  # type: ignore[no-untyped-def]
    payload, reference = made(), expected()
    assert type(payload) is type(reference)
    assert payload == reference and hash(payload) == hash(reference)
    assert repr(payload) == repr(reference)
    if not isinstance(payload, Proposal):
        assert encode_payload_chain([payload]) == encode_payload_chain([reference])


@pytest.mark.parametrize(
    "call",
    [
        lambda: nonce_payload("text"),
        lambda: nonce_payload(bytearray(16)),
        lambda: ke_payload("31", bytes(32)),
        lambda: ke_payload(31, memoryview(bytes(32))),
        lambda: auth_payload(2.0, bytes(32)),
        lambda: auth_payload(2, None),
        lambda: proposal(1, 1, b"", list(_TRANSFORMS)),
        lambda: proposal(1, None, b"", ()),
        lambda: proposal("1", 1, b"", ()),
        lambda: proposal(1, 1, "spi", ()),
        lambda: sa_payload([]),
    ],
)
def test_native_builders_reject_wrong_types(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError):
        call()
