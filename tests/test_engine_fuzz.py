"""Well-formed but arbitrary messages, in the clear and properly encrypted, never crash the
engine: every one is answered (an error notify at worst) or dropped, no exception escapes."""

from __future__ import annotations

from engine_harness import INITIATOR_HOST, RESPONDER_HOST, drain, pair
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ikemsg_strategies import payload_chains

from ikecore import ExchangeType
from ikecore.events import ChildSaDeleted, ChildSaEstablished, ChildSaFailed, IkeSaDeleted
from ikecore.payloads import Payload
from ikecore.states import IkeState
from ikecore.wire import build_message, ike_cipher

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLIENT, GATEWAY = (INITIATOR_HOST, 4500), (RESPONDER_HOST, 4500)


@SETTINGS
@given(chain=payload_chains(inner=True), spi_i=st.binary(min_size=8, max_size=8).filter(any))
def test_arbitrary_ike_sa_init_requests(chain: list[Payload], spi_i: bytes) -> None:
    _, responder, _, _ = pair()
    data = build_message(
        spi_i,
        bytes(8),
        ExchangeType.IKE_SA_INIT,
        initiator=True,
        response=False,
        message_id=0,
        payloads=chain,
    )
    responder.receive_datagram(data, (INITIATOR_HOST, 500), (RESPONDER_HOST, 500), 0.0)
    assert len(responder.datagrams_to_send(0.0)) <= 1
    assert all(s.state == IkeState.AUTHENTICATING for s in responder.sessions)
    assert drain(responder) == []


@SETTINGS
@given(
    chain=payload_chains(inner=True),
    exchange=st.sampled_from([35, 36, 37, 41]),  # IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL, ?
)
def test_arbitrary_authenticated_requests(chain: list[Payload], exchange: int) -> None:
    initiator, responder, peer, net = pair()
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    (peer_session,) = responder.sessions
    sa = session.sa
    assert sa.keys is not None and sa.transforms is not None
    # Sealed with the initiator's real key, as its next request: it passes the ICV.
    cipher = ike_cipher(sa.transforms.encr, sa.keys.sk_ei, sa.transforms.icv_length, 10**6)
    data = build_message(
        sa.spi_i,
        sa.spi_r,
        exchange,
        initiator=True,
        response=False,
        message_id=sa.next_request_id,
        payloads=chain,
        cipher=cipher,
    )
    responder.receive_datagram(bytes(4) + data, CLIENT, GATEWAY, 1.0)
    answers = responder.datagrams_to_send(1.0)
    assert len(answers) <= 1
    assert peer_session.integrity_failures == 0
    if answers:
        # Whatever it answered, the initiator can open it.
        initiator.receive_datagram(answers[0].data, GATEWAY, CLIENT, 1.0)
    assert peer_session.state in (IkeState.ESTABLISHED, IkeState.DELETED, IkeState.REKEYED)


@SETTINGS
@given(chain=payload_chains(inner=True))
def test_arbitrary_authenticated_responses(chain: list[Payload]) -> None:
    initiator, responder, peer, net = pair()
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    (peer_session,) = responder.sessions
    session.create_child_sa(1.0)
    (request,) = net.capture(1.0)
    sa = peer_session.sa
    assert sa.keys is not None and sa.transforms is not None
    cipher = ike_cipher(sa.transforms.encr, sa.keys.sk_er, sa.transforms.icv_length, 10**6)
    answer = build_message(
        sa.spi_i,
        sa.spi_r,
        ExchangeType.CREATE_CHILD_SA,
        initiator=False,
        response=True,
        message_id=2,
        payloads=chain,
        cipher=cipher,
    )
    drain(initiator)
    initiator.receive_datagram(bytes(4) + answer, GATEWAY, CLIENT, 1.0)
    # The answer is taken as a Child SA, a refusal, or (a bad KEr, RFC 6989) the end of the
    # IKE SA; a retry may be queued after INVALID_KE_PAYLOAD. Never an exception.
    events = drain(initiator)
    allowed = (ChildSaEstablished, ChildSaFailed, IkeSaDeleted, ChildSaDeleted)
    assert len(events) <= 2 and all(isinstance(e, allowed) for e in events)
    assert session.state in (IkeState.ESTABLISHED, IkeState.DELETED)
    assert request.dst == GATEWAY
