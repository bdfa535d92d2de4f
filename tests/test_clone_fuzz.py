"""Arbitrary, properly encrypted clone requests, clone responses and MOBIKE requests never
crash the engine: each is answered or dropped, the old SA is cloned, refused or (a fatal
error, RFC 7296 §2.21.3 / RFC 6989 §2.5) ended, and nothing else changes."""

from __future__ import annotations

from clone_harness import Pair, established
from engine_harness import drain
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ikecore import ExchangeType, NotifyType
from ikecore.events import (
    CloneFailed,
    CloneRequestRefused,
    IkeSaCloned,
    IkeSaDeleted,
    IkeSaMoved,
    PeerAddressesChanged,
)
from ikecore.payloads import Transform
from ikecore.session import IkeSession
from ikecore.states import IkeState
from ikecore.wire import (
    IkeCipher,
    KeyExchange,
    Nonce,
    Notify,
    Payload,
    Proposal,
    SecurityAssociation,
    build_message,
    ike_cipher,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLIENT, GATEWAY = ("192.0.2.1", 4500), ("198.51.100.1", 4500)

transforms = st.lists(
    st.builds(
        Transform,
        type=st.sampled_from([1, 2, 3, 4, 5, 6]),
        id=st.sampled_from([0, 1, 5, 12, 14, 19, 20, 28, 31, 1024]),
        key_length=st.sampled_from([None, 128, 256, 7]),
    ),
    min_size=1,
    max_size=6,
).map(tuple)
# The suite both ends use (aes256gcm16-prfsha256-x25519), so that some requests are valid.
_OURS = (Transform(1, 20, 256), Transform(2, 5), Transform(4, 31))
proposal_lists = st.lists(
    st.tuples(
        st.sampled_from([1, 1, 1, 3]),
        st.one_of(st.binary(min_size=8, max_size=8), st.binary(max_size=9)),
        st.one_of(st.just(_OURS), transforms),
    ),
    max_size=2,
).map(lambda items: [Proposal(n, proto, spi, ts) for n, (proto, spi, ts) in enumerate(items, 1)])
# KE data of the group's length (what the encoder allows), random content: a valid X25519
# value, most likely an ECP point off the curve or a MODP value out of range (RFC 6989).
key_exchanges = st.sampled_from([(14, 256), (19, 64), (31, 32)]).flatmap(
    lambda g: st.tuples(st.just(g[0]), st.binary(min_size=g[1], max_size=g[1]))
)
clone_requests = st.one_of(
    # Well-formed clones (random SPI, nonce and X25519 value): the success path.
    st.tuples(
        st.binary(min_size=8, max_size=8).map(lambda spi: [Proposal(1, 1, spi, _OURS)]),
        st.binary(min_size=16, max_size=64),
        st.binary(min_size=32, max_size=32).map(lambda value: (31, value)),
        st.just(True),
    ),
    st.tuples(
        proposal_lists,
        st.one_of(st.none(), st.binary(min_size=16, max_size=64)),
        st.one_of(st.none(), key_exchanges),
        st.booleans(),
    ),
)


def _clone_payloads(
    parts: tuple[list[Proposal], bytes | None, tuple[int, bytes] | None, bool],
) -> list[Payload]:
    offered, nonce, ke, with_notify = parts
    payloads: list[Payload] = []
    if with_notify:
        payloads.append(Notify.status(NotifyType.CLONE_IKE_SA))
    if offered:
        payloads.append(SecurityAssociation(tuple(offered)))
    if nonce is not None:
        payloads.append(Nonce(nonce))
    if ke is not None:
        payloads.append(KeyExchange(*ke))
    return payloads


def _unchanged_or_ended(p: Pair, session: IkeSession) -> None:
    assert session.state in (IkeState.ESTABLISHED, IkeState.DELETED)
    if session.state == IkeState.ESTABLISHED:
        assert len(session.child_sas) == 1


@SETTINGS
@given(parts=clone_requests)
def test_arbitrary_clone_requests(
    parts: tuple[list[Proposal], bytes | None, tuple[int, bytes] | None, bool],
) -> None:
    p = established()
    # Always with N(CLONE_IKE_SA): without it the request is an ordinary IKE SA rekey, which
    # is the engine's (test_engine_fuzz); the notify elsewhere is in test_clone_refusals.
    offered, nonce, ke, _ = parts
    payloads = _clone_payloads((offered, nonce, ke, True))
    data = bytes(4) + build_message(
        p.client_sa.sa.spi_i,
        p.client_sa.sa.spi_r,
        ExchangeType.CREATE_CHILD_SA,
        initiator=True,
        response=False,
        message_id=p.client_sa.sa.next_request_id,
        payloads=payloads,
        cipher=_client_cipher(p),
    )
    p.gateway.receive_datagram(data, CLIENT, GATEWAY, 1.0)
    assert len(p.gateway.datagrams_to_send(1.0)) <= 1
    events = drain(p.gateway)
    allowed = (IkeSaCloned, CloneRequestRefused, IkeSaDeleted)
    assert all(isinstance(e, allowed) or type(e).__name__.startswith("Child") for e in events)
    _unchanged_or_ended(p, p.gateway_sa)
    cloned = [e for e in events if isinstance(e, IkeSaCloned)]
    assert len(p.gateway.sessions) == (
        1 if p.gateway_sa.state == IkeState.ESTABLISHED else 0
    ) + len(cloned)


@SETTINGS
@given(parts=clone_requests.filter(lambda parts: bool(parts[0])))
def test_arbitrary_clone_responses(
    parts: tuple[list[Proposal], bytes | None, tuple[int, bytes] | None, bool],
) -> None:
    p = established()
    p.client_sa.request_clone(1.0)
    (request,) = p.net.capture(1.0)
    offered, nonce, ke, _ = parts
    answer = _clone_payloads((offered[:1], nonce, ke, False))
    data = bytes(4) + build_message(
        p.gateway_sa.sa.spi_i,
        p.gateway_sa.sa.spi_r,
        ExchangeType.CREATE_CHILD_SA,
        initiator=False,
        response=True,
        message_id=2,
        payloads=answer,
        cipher=_gateway_cipher(p),
    )
    p.client.receive_datagram(data, GATEWAY, CLIENT, 1.0)
    events = drain(p.client)
    allowed = (IkeSaCloned, CloneFailed, IkeSaDeleted)
    assert all(isinstance(e, allowed) or type(e).__name__.startswith("Child") for e in events)
    _unchanged_or_ended(p, p.client_sa)
    assert request.dst == GATEWAY


_VALID_DATA = {
    NotifyType.UPDATE_SA_ADDRESSES: st.just(b""),
    NotifyType.NO_ADDITIONAL_ADDRESSES: st.just(b""),
    NotifyType.CLONE_IKE_SA: st.just(b""),
    NotifyType.NAT_DETECTION_SOURCE_IP: st.binary(min_size=20, max_size=20),
    NotifyType.NAT_DETECTION_DESTINATION_IP: st.binary(min_size=20, max_size=20),
    NotifyType.COOKIE2: st.binary(min_size=8, max_size=64),
    NotifyType.ADDITIONAL_IP4_ADDRESS: st.binary(min_size=4, max_size=4),
    NotifyType.ADDITIONAL_IP6_ADDRESS: st.binary(min_size=16, max_size=16),
    NotifyType.NO_NATS_ALLOWED: st.binary(min_size=12, max_size=12),
    16417: st.just(b""),  # EAP_ONLY_AUTHENTICATION (RFC 5998): a status type ikecore ignores
}
mobike_notifies = st.lists(
    st.sampled_from(sorted(_VALID_DATA)).flatmap(
        lambda kind: st.tuples(st.just(kind), _VALID_DATA[kind])
    ),
    max_size=6,
)


@SETTINGS
@given(
    items=mobike_notifies, source=st.sampled_from([CLIENT, ("192.0.2.2", 4500), ("192.0.2.9", 777)])
)
def test_arbitrary_mobike_requests(items: list[tuple[int, bytes]], source: tuple[str, int]) -> None:
    p = established()
    payloads: list[Payload] = [Notify.status(kind, data) for kind, data in items]
    data = bytes(4) + build_message(
        p.client_sa.sa.spi_i,
        p.client_sa.sa.spi_r,
        ExchangeType.INFORMATIONAL,
        initiator=True,
        response=False,
        message_id=p.client_sa.sa.next_request_id,
        payloads=payloads,
        cipher=_client_cipher(p),
    )
    p.gateway.receive_datagram(data, source, GATEWAY, 1.0)
    answers = p.gateway.datagrams_to_send(1.0)
    assert len(answers) in (1, 2) and answers[0].dst == source
    if len(answers) == 2:
        # RFC 4555 §3.7: after the answer, the return routability check of the new address;
        # the IKE SA is there already, the Child SAs wait (no IkeSaMoved yet).
        assert answers[1].dst == source and p.gateway_sa.sa.remote_address == source
        assert p.gateway_sa.mobike.pending_check is not None
    events = drain(p.gateway)
    assert all(isinstance(e, (IkeSaMoved, PeerAddressesChanged)) for e in events)
    assert p.gateway_sa.state == IkeState.ESTABLISHED and len(p.gateway_sa.child_sas) == 1
    moved = [e for e in events if isinstance(e, IkeSaMoved)]
    if moved:
        assert p.gateway_sa.sa.remote_address == source and answers[0].dst == source


def _client_cipher(p: Pair) -> IkeCipher:
    sa = p.client_sa.sa
    assert sa.keys is not None and sa.transforms is not None
    return ike_cipher(sa.transforms.encr, sa.keys.sk_ei, sa.transforms.icv_length, 10**6)


def _gateway_cipher(p: Pair) -> IkeCipher:
    sa = p.gateway_sa.sa
    assert sa.keys is not None and sa.transforms is not None
    return ike_cipher(sa.transforms.encr, sa.keys.sk_er, sa.transforms.icv_length, 10**6)
