"""Hypothesis strategies for valid IKEv2 payloads and messages (RFC 7296 §3, RFC 7383 §2.5):
every payload class, every field random within what the format allows."""

from __future__ import annotations

from hypothesis import strategies as st

from ikecore.payloads import (
    Attribute,
    Authentication,
    Certificate,
    CertificateRequest,
    ConfigAttribute,
    Configuration,
    Delete,
    Eap,
    Encrypted,
    EncryptedFragment,
    IDi,
    IDr,
    KeyExchange,
    Nonce,
    Notify,
    Payload,
    Proposal,
    SecurityAssociation,
    TrafficSelector,
    Transform,
    TSi,
    TSr,
    UnknownPayload,
    VendorId,
)

u8 = st.integers(0, 255)
u16 = st.integers(0, 65535)
critical = st.booleans()


def blob(min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=min_size, max_size=max_size)


@st.composite
def transforms(draw: st.DrawFn) -> Transform:
    attr_types = draw(
        st.lists(st.integers(0, 0x7FFF).filter(lambda t: t != 14), max_size=3, unique=True)
    )
    attributes = tuple(
        Attribute(t, draw(st.one_of(u16, blob(0, 12)))) for t in attr_types
    )
    key_length = draw(st.one_of(st.none(), u16))
    return Transform(draw(u8), draw(u16), key_length, attributes)


@st.composite
def security_associations(draw: st.DrawFn) -> SecurityAssociation:
    first = draw(st.integers(1, 250))
    count = draw(st.integers(1, 4))
    proposals = tuple(
        Proposal(
            first + i,
            draw(u8),
            draw(st.sampled_from([b"", bytes(4), bytes(range(8))]) | blob(0, 9)),
            tuple(draw(st.lists(transforms(), min_size=1, max_size=5))),
        )
        for i in range(count)
    )
    return SecurityAssociation(proposals, draw(critical))


KE_LENGTHS = {14: 256, 15: 384, 16: 512, 19: 64, 20: 96, 21: 132, 31: 32, 32: 56}


@st.composite
def key_exchanges(draw: st.DrawFn) -> KeyExchange:
    group = draw(st.sampled_from(sorted(KE_LENGTHS)) | u16)
    size = KE_LENGTHS.get(group)
    data = draw(blob(size, size) if size is not None else blob(0, 40))
    return KeyExchange(group, data, draw(critical))


@st.composite
def identifications(draw: st.DrawFn) -> IDi | IDr:
    id_type = draw(st.sampled_from([1, 2, 3, 5, 9, 10, 11]) | u8)
    size = {1: 4, 5: 16}.get(id_type)
    data = draw(blob(size, size) if size else blob(1, 30))
    return draw(st.sampled_from([IDi, IDr]))(id_type, data, draw(critical))


NOTIFY_SIZES = {
    1: (1, 1), 9: (4, 4), 17: (2, 2), 16385: (4, 4), 16388: (20, 20), 16389: (20, 20),
    16390: (1, 64), 16397: (4, 4), 16398: (16, 16), 16401: (8, 64),
}


@st.composite
def notifies(draw: st.DrawFn) -> Notify:
    notify_type = draw(
        st.sampled_from([*NOTIFY_SIZES, 16431, 16432, 16433, 16396, 16393, 16430, 14]) | u16
    )
    if notify_type == 16431:
        data = draw(blob(0, 10).map(lambda b: b[: len(b) // 2 * 2]))
    else:
        low, high = NOTIFY_SIZES.get(notify_type, (0, 30))
        data = draw(blob(low, high))
    spi = draw(st.sampled_from([b"", bytes(4)]) | blob(0, 8))
    return Notify(draw(u8), spi, notify_type, data, draw(critical))


@st.composite
def deletes(draw: st.DrawFn) -> Delete:
    spi_size = draw(st.sampled_from([0, 4, 8]) | st.integers(1, 9))
    count = 0 if spi_size == 0 else draw(st.integers(0, 4))
    spis = tuple(draw(blob(spi_size, spi_size)) for _ in range(count))
    return Delete(draw(u8), spi_size, spis, draw(critical))


@st.composite
def selectors(draw: st.DrawFn) -> TrafficSelector:
    ts_type = draw(st.sampled_from([7, 8]))
    size = 4 if ts_type == 7 else 16
    return TrafficSelector(
        ts_type, draw(u8), draw(u16), draw(u16), draw(blob(size, size)), draw(blob(size, size))
    )


@st.composite
def traffic_selectors(draw: st.DrawFn) -> TSi | TSr:
    kind = draw(st.sampled_from([TSi, TSr]))
    return kind(tuple(draw(st.lists(selectors(), min_size=1, max_size=4))), draw(critical))


@st.composite
def eaps(draw: st.DrawFn) -> Eap:
    code = draw(st.sampled_from([1, 2, 3, 4]) | u8)
    if code in (3, 4):
        data = b""
    elif code in (1, 2):
        data = draw(blob(1, 30))
    else:
        data = draw(blob(0, 30))
    return Eap(code, draw(u8), data, draw(critical))


UNKNOWN_TYPES = st.integers(1, 255).filter(lambda t: not (33 <= t <= 48 or t == 53))

cleartext_payloads: st.SearchStrategy[Payload] = st.one_of(
    security_associations(),
    key_exchanges(),
    identifications(),
    st.builds(Certificate, u8, blob(), critical),
    st.builds(CertificateRequest, u8, blob(), critical),
    st.builds(Authentication, u8, blob(), critical),
    st.builds(Nonce, blob(16, 256), critical),
    notifies(),
    deletes(),
    st.builds(VendorId, blob(), critical),
    traffic_selectors(),
    st.builds(
        Configuration,
        u8,
        st.lists(st.builds(ConfigAttribute, st.integers(0, 0x7FFF), blob(0, 20)), max_size=4).map(
            tuple
        ),
        critical,
    ),
    eaps(),
    st.builds(UnknownPayload, UNKNOWN_TYPES, blob(), st.just(False)),
)

encrypted_payloads: st.SearchStrategy[Payload] = st.one_of(
    st.builds(Encrypted, u8, blob(0, 60), critical),
    st.builds(EncryptedFragment, u8, u16, u16, blob(0, 60), critical),
)


@st.composite
def payload_chains(draw: st.DrawFn, inner: bool = False) -> list[Payload]:
    chain = draw(st.lists(cleartext_payloads, max_size=6))
    if not inner and draw(st.booleans()):
        chain.append(draw(encrypted_payloads))
    return chain


@st.composite
def message_fields(draw: st.DrawFn) -> dict[str, object]:
    return {
        "spi_i": draw(blob(8, 8).filter(any)),
        "spi_r": draw(blob(8, 8)),
        "exchange": draw(st.sampled_from([34, 35, 36, 37]) | u8),
        "message_id": draw(st.integers(0, 2**32 - 1)),
        "payloads": draw(payload_chains()),
        "initiator": draw(st.booleans()),
        "response": draw(st.booleans()),
    }
