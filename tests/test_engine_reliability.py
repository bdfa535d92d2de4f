"""Lost, duplicated, reordered and corrupted messages; timeouts; garbage from the network."""

from __future__ import annotations

from engine_harness import INITIATOR_HOST, RESPONDER_HOST, Delivery, describe, drain, of_type, pair

from ikecore import ExchangeType, NotifyType
from ikecore.endpoint import Datagram
from ikecore.events import ChildSaEstablished, IkeSaDeleted, IkeSaEstablished
from ikecore.payloads import Notify, UnknownPayload
from ikecore.states import IkeState
from ikecore.wire import build_message, ike_cipher, open_message, parse_message


def _drop_first(predicate: object) -> object:
    dropped: list[Delivery] = []

    def tamper(datagram: Datagram) -> list[Datagram]:
        entry = describe(datagram)
        assert callable(predicate)
        if not dropped and predicate(entry):
            dropped.append(entry)
            return []
        return [datagram]

    return tamper


def test_lost_response_is_retransmitted_after_the_timer() -> None:
    initiator, responder, peer, net = pair()
    session = initiator.initiate(peer, 0.0)
    # IKE_SA_INIT -->   <-- IKE_SA_INIT  (lost)
    net.run(0.0, _drop_first(lambda d: d.response))  # type: ignore[arg-type]
    assert session.state == IkeState.CONNECTING
    assert initiator.get_timer() == 1.0
    # t=1.0: IKE_SA_INIT --> (same bytes)   <-- IKE_SA_INIT (from the response cache)
    initiator.handle_timer(1.0)
    flow = net.run(1.0)
    assert session.retransmissions == 1
    assert responder.sessions[0].cached_answers == 1
    assert [str(d) for d in flow] == [
        "IKE_SA_INIT --> #0",
        "IKE_SA_INIT <-- #0",
        "IKE_AUTH --> #1",
        "IKE_AUTH <-- #1",
    ]
    assert session.state == IkeState.ESTABLISHED
    assert len(responder.sessions) == 1


def test_duplicated_request_answered_from_cache_exchange_runs_once() -> None:
    initiator, responder, peer, net = pair()
    session = initiator.initiate(peer, 0.0)

    def duplicate_auth(datagram: Datagram) -> list[Datagram]:
        entry = describe(datagram)
        if entry.exchange == 35 and not entry.response:
            return [datagram, datagram]
        return [datagram]

    # IKE_AUTH -->  IKE_AUTH --> (duplicate)   <-- IKE_AUTH  <-- IKE_AUTH (cached copy)
    net.run(0.0, duplicate_auth)
    (peer_session,) = responder.sessions
    assert peer_session.cached_answers == 1
    assert len(peer_session.child_sas) == 1
    assert [type(e) for e in drain(responder)] == [IkeSaEstablished, ChildSaEstablished]
    # The duplicate response is dropped by the initiator: no second child, no error.
    assert [type(e) for e in drain(initiator)] == [IkeSaEstablished, ChildSaEstablished]
    assert session.state == IkeState.ESTABLISHED and len(session.child_sas) == 1


def test_corrupted_request_dropped_silently_then_retransmitted() -> None:
    initiator, responder, peer, net = pair()
    session = initiator.initiate(peer, 0.0)
    corrupted: list[int] = []

    def flip_auth(datagram: Datagram) -> list[Datagram]:
        entry = describe(datagram)
        if entry.exchange == 35 and not entry.response and not corrupted:
            data = bytearray(datagram.data)
            data[-5] ^= 0x40  # inside the ICV
            corrupted.append(1)
            return [Datagram(bytes(data), datagram.src, datagram.dst)]
        return [datagram]

    # IKE_AUTH (bad ICV) -->   (dropped, no answer, no state change)
    net.run(0.0, flip_auth)
    (peer_session,) = responder.sessions
    assert peer_session.integrity_failures == 1
    assert peer_session.state == IkeState.AUTHENTICATING
    assert peer_session.sa.next_peer_request_id == 1
    assert drain(responder) == []
    # t=1: IKE_AUTH (retransmitted, intact) -->  <-- IKE_AUTH
    initiator.handle_timer(1.0)
    net.run(1.0)
    assert session.state == IkeState.ESTABLISHED and peer_session.state == IkeState.ESTABLISHED


def test_unanswered_requests_end_the_sa_with_an_event() -> None:
    initiator, _responder, peer, net = pair()
    session = initiator.initiate(peer, 0.0)
    sent = len(net.capture(0.0))  # the responder is unreachable: everything is lost
    times = []
    now = 0.0
    while (timer := initiator.get_timer()) is not None:
        now = timer
        times.append(now)
        initiator.handle_timer(now)
        sent += len(net.capture(now))
    # 1 + 5 retransmissions at 1, 3, 7, 15, 31 (back-off 2), given up at 63.
    assert times == [1.0, 3.0, 7.0, 15.0, 31.0, 63.0]
    assert sent == 6
    assert session.state == IkeState.DELETED
    (deleted,) = drain(initiator)
    assert isinstance(deleted, IkeSaDeleted) and deleted.reason == "timeout"
    assert initiator.sessions == []


def test_half_open_responder_state_expires() -> None:
    initiator, responder, peer, net = pair(endpoint_options={"half_open_timeout": 10.0})
    initiator.initiate(peer, 0.0)
    # IKE_SA_INIT -->  <-- IKE_SA_INIT ; the IKE_AUTH request never comes.
    net.deliver(net.capture(0.0), 0.0)
    assert len(responder.sessions) == 1
    assert responder.get_timer() == 10.0
    responder.handle_timer(10.0)
    assert responder.sessions == [] and drain(responder) == []


def test_garbage_and_stray_messages_change_nothing() -> None:
    initiator, responder, peer, net = pair()
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    drain(initiator), drain(responder)
    (peer_session,) = responder.sessions
    before = peer_session.sa.to_dict()
    src, dst = (INITIATOR_HOST, 4500), (RESPONDER_HOST, 4500)
    for junk in (b"", b"\x00\x00\x00\x00", b"\x00" * 4 + b"\x01" * 40, b"\xff", bytes(200)):
        responder.receive_datagram(junk, src, dst, 1.0)
    # A well-formed header for the SA with a message ID far outside the window.
    stray = bytearray(net.log[2].datagram.data)
    stray[4 + 20 : 4 + 24] = (7).to_bytes(4, "big")
    responder.receive_datagram(bytes(stray), src, dst, 1.0)
    # The responder's own IKE_AUTH response reflected back at it (wrong I flag for it).
    reflected = net.log[3].datagram
    responder.receive_datagram(reflected.data, src, dst, 1.0)
    assert peer_session.sa.to_dict() == before
    assert drain(responder) == [] and net.capture(1.0) == []
    assert responder.malformed >= 3
    assert session.state == IkeState.ESTABLISHED


def test_reordered_duplicate_of_an_old_request_is_dropped() -> None:
    initiator, responder, peer, net = pair()
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    first_request = net.log[0].datagram
    # An IKE_SA_INIT request arriving again after the SA was established is not a new SA.
    responder.receive_datagram(first_request.data, first_request.src, first_request.dst, 5.0)
    assert len(responder.sessions) == 1
    assert net.capture(5.0) == []
    assert session.state == IkeState.ESTABLISHED
    assert of_type(drain(responder), IkeSaEstablished)


def test_set_window_size_lets_several_requests_fly() -> None:
    initiator, responder, peer, net = pair(endpoint_options={"window_size": 3})
    session = initiator.initiate(peer, 0.0)
    # IKE_AUTH {..., N(SET_WINDOW_SIZE, 3)} -->  <-- IKE_AUTH {..., N(SET_WINDOW_SIZE, 3)}
    net.run(0.0)
    (peer_session,) = responder.sessions
    assert session.sa.peer_window == 3 and peer_session.sa.peer_window == 3
    drain(initiator), drain(responder)
    # CREATE_CHILD_SA #2, #3, #4 -->  all in flight at once (window 3), #5 waits
    for _ in range(4):
        session.create_child_sa(1.0)
    in_flight = net.capture(1.0)
    assert [describe(d).message_id for d in in_flight] == [2, 3, 4]
    # Answered out of order: the responder processes any ID inside its window.
    net.deliver(in_flight[::-1], 1.0)
    net.run(1.0)
    assert len(of_type(drain(initiator), ChildSaEstablished)) == 4
    assert len(session.child_sas) == 5 and peer_session.sa.next_peer_request_id == 6


def test_a_responder_answering_nonsense_ends_the_attempt() -> None:
    initiator, responder, peer, net = pair()
    session = initiator.initiate(peer, 0.0)
    request = net.capture(0.0)[0]
    # <-- IKE_SA_INIT {N(NAT_D..)} only: well-formed, but without SA, KEr and Nr
    nonsense = build_message(
        request.data[:8],
        b"\x42" * 8,
        ExchangeType.IKE_SA_INIT,
        initiator=False,
        response=True,
        message_id=0,
        payloads=[Notify.status(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)],
    )
    initiator.receive_datagram(nonsense, request.dst, request.src, 0.1)
    assert session.state == IkeState.DELETED
    (deleted,) = drain(initiator)
    assert isinstance(deleted, IkeSaDeleted) and deleted.notify == NotifyType.INVALID_SYNTAX
    # Random bytes as an answer are only counted (MalformedMessage), never a crash.
    session = initiator.initiate(peer, 1.0)
    request = net.capture(1.0)[0]
    for junk in (b"\x00" * 27, request.data[:40], bytes(range(256))):
        initiator.receive_datagram(junk, request.dst, request.src, 1.1)
    assert session.state == IkeState.CONNECTING and initiator.malformed == 3
    assert responder.sessions == []


def test_unknown_critical_payload_in_a_request_is_refused_naming_it() -> None:
    initiator, responder, peer, net = pair()
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    (peer_session,) = responder.sessions
    sa = session.sa
    assert sa.keys is not None and sa.transforms is not None
    cipher = ike_cipher(sa.transforms.encr, sa.keys.sk_ei, sa.transforms.icv_length, 10**6)
    # INFORMATIONAL #2 {UNKNOWN(200, critical)} -->  <-- {N(UNSUPPORTED_CRITICAL_PAYLOAD, 200)}
    request = build_message(
        sa.spi_i,
        sa.spi_r,
        ExchangeType.INFORMATIONAL,
        initiator=True,
        response=False,
        message_id=2,
        payloads=[UnknownPayload(200, b"x", True)],
        cipher=cipher,
    )
    responder.receive_datagram(bytes(4) + request, ("192.0.2.1", 4500), ("198.51.100.1", 4500), 1.0)
    (answer,) = responder.datagrams_to_send(1.0)
    peer_cipher = ike_cipher(sa.transforms.encr, sa.keys.sk_er, sa.transforms.icv_length, 0)
    (notify,) = open_message(peer_cipher, parse_message(answer.data[4:]))
    assert isinstance(notify, Notify)
    assert notify.notify_type == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD and notify.data == b"\xc8"
    assert peer_session.state == IkeState.ESTABLISHED
    assert peer_session.sa.next_peer_request_id == 3


def test_responses_go_where_the_request_came_from() -> None:
    initiator, responder, peer, net = pair(mobike=False)
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    (peer_session,) = responder.sessions
    # INFORMATIONAL #2 arrives from another source port (§2.11: answer it there), and the
    # SA's own address is not changed by it (no NAT was detected, no MOBIKE).
    session.check_liveness(1.0)
    (request,) = net.capture(1.0)
    elsewhere = ("192.0.2.1", 5555)
    responder.receive_datagram(request.data, elsewhere, request.dst, 1.0)
    (answer,) = responder.datagrams_to_send(1.0)
    assert answer.dst == elsewhere and answer.src == request.dst
    assert peer_session.sa.remote_address == ("192.0.2.1", 500)
