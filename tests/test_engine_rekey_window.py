"""Requests crossing an IKE SA rekey (RFC 7296 §2.25.2, §2.8): a Child SA created or rekeyed
by the peer while we rekey the IKE SA is refused with TEMPORARY_FAILURE, and with
SET_WINDOW_SIZE > 1 no request in flight is lost with the old SA."""

from __future__ import annotations

from engine_harness import INITIATOR_HOST, RESPONDER_HOST, Network, describe, drain, of_type, pair

from ikecore import NotifyType
from ikecore.endpoint import Datagram, IkeEndpoint
from ikecore.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    IkeSaDeleted,
    IkeSaRekeyed,
    LivenessChecked,
)
from ikecore.session import IkeSession
from ikecore.states import ChildState, IkeState


def _established(
    window: int = 1,
) -> tuple[IkeEndpoint, IkeEndpoint, IkeSession, IkeSession, Network]:
    client, gateway, peer, net = pair(endpoint_options={"window_size": window})
    session = client.initiate(peer, 0.0)
    net.run(0.0)
    (peer_session,) = gateway.sessions
    drain(client), drain(gateway)
    return client, gateway, session, peer_session, net


def _split(datagrams: list[Datagram]) -> tuple[list[Datagram], list[Datagram]]:
    """(what the client sent, what the gateway sent)."""
    from_client = [d for d in datagrams if d.src[0] == INITIATOR_HOST]
    from_gateway = [d for d in datagrams if d.src[0] == RESPONDER_HOST]
    return from_client, from_gateway


def test_a_new_child_sa_asked_for_during_an_ike_rekey_is_refused_temporarily() -> None:
    client, gateway, session, peer_session, net = _established()
    # (client) HDR(old, #2), SK {SA(SPIi'), Ni, KEi}  --> held back
    session.rekey(1.0)
    # (gateway) HDR(old, #0), SK {SA, Ni, TSi, TSr}  -->
    #           <--  HDR(old, #0), SK {N(TEMPORARY_FAILURE)}   (the client is rekeying)
    peer_session.create_child_sa(1.0)
    rekey, create = _split(net.capture(1.0))
    net.deliver(create, 1.0)
    (refusal,) = net.capture(1.0)
    assert describe(refusal).response and describe(refusal).message_id == 0
    net.deliver([refusal], 1.0)
    (failed,) = of_type(drain(gateway), ChildSaFailed)
    assert isinstance(failed, ChildSaFailed) and failed.notify == NotifyType.TEMPORARY_FAILURE
    assert len(session.child_sas) == 1 and len(peer_session.child_sas) == 1
    # The rekey then completes as usual and the Child SA moves.
    # HDR(old, #2) rekey -->  <--  ; HDR(old, #3), SK {D(IKE)}  -->  <--
    net.deliver(rekey, 1.0)
    net.run(1.0)
    (successor,) = client.sessions
    (peer_successor,) = gateway.sessions
    assert successor is not session and session.state == IkeState.DELETED
    assert [c.spi_in for c in peer_successor.child_sas] == [c.spi_out for c in successor.child_sas]
    # Asked again later, on the new IKE SA: HDR(new, #0) CREATE_CHILD_SA -->  <--
    peer_successor.create_child_sa(20.0)
    assert [str(d) for d in net.run(20.0)] == ["CREATE_CHILD_SA --> #0", "CREATE_CHILD_SA <-- #0"]
    assert of_type(drain(gateway), ChildSaEstablished)
    assert len(successor.child_sas) == 2


def test_a_child_sa_rekey_during_an_ike_rekey_is_refused_and_the_child_sa_moves() -> None:
    client, gateway, session, peer_session, net = _established()
    (peer_child,) = peer_session.child_sas
    # (client)  HDR(old, #2) IKE SA rekey  --> held back
    # (gateway) HDR(old, #0), SK {N(REKEY_SA), SA, Ni, TSi, TSr}  -->
    #           <--  HDR(old, #0), SK {N(TEMPORARY_FAILURE)}
    session.rekey(1.0)
    peer_session.rekey_child_sa(peer_child.spi_in, 1.0)
    rekey, child_rekey = _split(net.capture(1.0))
    net.deliver(child_rekey, 1.0)
    net.run(1.0)  # the refusal back to the gateway; nothing else moves
    (failed,) = of_type(drain(gateway), ChildSaFailed)
    assert isinstance(failed, ChildSaFailed) and failed.notify == NotifyType.TEMPORARY_FAILURE
    assert peer_child.state == ChildState.INSTALLED  # back from REKEYING
    assert len(peer_session.child_sas) == 1 and not of_type(drain(client), ChildSaEstablished)
    # The IKE rekey completes; the (unchanged) Child SA is on the new IKE SA at both ends.
    net.deliver(rekey, 1.0)
    net.run(1.0)
    (peer_successor,) = gateway.sessions
    assert peer_successor.child_sas == [peer_child]
    assert client.sessions[0].child_sas[0].spi_out == peer_child.spi_in


def test_a_child_sa_delete_during_an_ike_rekey_is_answered_as_usual() -> None:
    """§2.25.2: "a request to delete a Child SA when it is currently rekeying the IKE SA" is
    answered as usual, with a Delete payload."""
    client, gateway, session, peer_session, net = _established()
    (peer_child,) = peer_session.child_sas
    session.rekey(1.0)
    # (gateway) HDR(old, #0), SK {D(ESP, spi)}  -->  <--  HDR(old, #0), SK {D(ESP, spi')}
    peer_session.delete_child_sa(peer_child.spi_in, 1.0)
    rekey, delete = _split(net.capture(1.0))
    net.deliver(delete, 1.0)
    net.run(1.0)
    assert of_type(drain(gateway), ChildSaDeleted) and of_type(drain(client), ChildSaDeleted)
    net.deliver(rekey, 1.0)
    net.run(1.0)
    assert [s.child_sas for s in client.sessions] == [[]]
    assert [s.child_sas for s in gateway.sessions] == [[]]


def test_with_a_window_of_three_an_ike_rekey_flies_alone() -> None:
    """SET_WINDOW_SIZE 3: the rekey waits for the requests before it to be answered on the
    old SA, and the requests after it go on the new SA: none is answered on an SA whose Child
    SAs moved away, none is lost with the old SA."""
    client, gateway, session, _peer_session, net = _established(window=3)
    assert session.sa.peer_window == 3
    (first_child,) = session.child_sas
    # HDR(old, #2) CREATE_CHILD_SA -->  HDR(old, #3) INFORMATIONAL {} -->  (in flight at once)
    #   the rekey and the Delete of the first Child SA asked for after it wait
    session.create_child_sa(1.0)
    session.check_liveness(1.0)
    session.rekey(1.0)
    session.delete_child_sa(first_child.spi_in, 1.0)
    first = net.capture(1.0)
    assert [str(describe(d)) for d in first] == ["CREATE_CHILD_SA --> #2", "INFORMATIONAL --> #3"]
    # Answered (out of order); then the rekey goes alone; then the Delete of the old SA and
    # the Child SA Delete on the new one:
    #   <-- #3, <-- #2 ; HDR(old, #4) {SA(SPIi'), Ni, KEi} --> <-- ;
    #   HDR(old, #5) {D(IKE)} -->  HDR(new, #0) {D(ESP)} -->  <-- <--
    net.deliver(first[::-1], 1.0)
    flow = [str(d) for d in net.run(1.0)]
    assert flow[:4] == [
        "INFORMATIONAL <-- #3",
        "CREATE_CHILD_SA <-- #2",
        "CREATE_CHILD_SA --> #4",
        "CREATE_CHILD_SA <-- #4",
    ]
    assert sorted(flow[4:]) == sorted(
        [
            "INFORMATIONAL --> #5",
            "INFORMATIONAL <-- #5",
            "INFORMATIONAL --> #0",
            "INFORMATIONAL <-- #0",
        ]
    )
    events = drain(client)
    assert len(of_type(events, ChildSaEstablished)) == 1
    assert of_type(events, LivenessChecked) and of_type(events, IkeSaRekeyed)
    assert not of_type(events, ChildSaFailed)
    (child_deleted,) = of_type(events, ChildSaDeleted)
    assert isinstance(child_deleted, ChildSaDeleted) and child_deleted.child is first_child
    (deleted,) = of_type(events, IkeSaDeleted)
    assert isinstance(deleted, IkeSaDeleted) and deleted.reason == "rekeyed"
    # The Child SA made before the rekey lives on the new IKE SA, on both ends.
    (successor,) = client.sessions
    (peer_successor,) = gateway.sessions
    (child,) = successor.child_sas
    assert [c.spi_in for c in peer_successor.child_sas] == [child.spi_out]
    assert not successor.busy() and not peer_successor.busy()


def test_with_a_window_of_three_nothing_follows_a_rekey_in_flight() -> None:
    client, gateway, session, _peer_session, net = _established(window=3)
    (child,) = session.child_sas
    # HDR(old, #2) rekey -->   a Child SA Delete asked for now waits for the new SA:
    #   <-- #2 ; HDR(old, #3) {D(IKE)} -->  HDR(new, #0) {D(ESP)} -->  <-- <--
    session.rekey(1.0)
    session.delete_child_sa(child.spi_in, 1.0)
    (request,) = net.capture(1.0)
    assert str(describe(request)) == "CREATE_CHILD_SA --> #2"
    net.deliver([request], 1.0)
    flow = [str(d) for d in net.run(1.0)]
    assert flow[0] == "CREATE_CHILD_SA <-- #2"
    assert "INFORMATIONAL --> #0" in flow and "INFORMATIONAL --> #3" in flow
    (successor,) = client.sessions
    assert successor.child_sas == [] and gateway.sessions[0].child_sas == []
    assert of_type(drain(gateway), ChildSaDeleted)


def test_a_child_sa_delete_sent_on_the_old_sa_reaches_the_child_sa_on_the_new_one() -> None:
    """A peer that answers our IKE SA rekey while its own Child SA Delete is in flight on the
    old SA (§2.25.1 says it SHOULD refuse; not every peer does): the Delete arrives after the
    Child SA moved to the new IKE SA, and is applied there on both ends (§2.8)."""
    client, gateway, session, peer_session, net = _established()
    (peer_child,) = peer_session.child_sas
    # (gateway) HDR(old, #0), SK {D(ESP, spi)}  --> held back
    # (client)  HDR(old, #2), SK {SA(SPIi'), Ni, KEi}  -->
    peer_session.delete_child_sa(peer_child.spi_in, 1.0)
    session.rekey(1.0)
    rekey, delete_child = _split(net.capture(1.0))
    peer_session.busy = lambda: False  # type: ignore[method-assign]
    #   <--  HDR(old, #2), SK {SA(SPIr'), Nr, KEr}   (both ends: the Child SA moves)
    net.deliver(rekey, 1.0)
    net.deliver(net.capture(1.0), 1.0)
    # (client) HDR(old, #3), SK {D(IKE)}  --> held back while the Child SA Delete arrives:
    # HDR(old, #0), SK {D(ESP, spi)}  -->  <--  HDR(old, #0), SK {D(ESP, spi')}
    delete_old = net.capture(1.0)
    assert [str(describe(d)) for d in delete_old] == ["INFORMATIONAL --> #3"]
    net.deliver(delete_child, 1.0)
    net.run(1.0)
    net.deliver(delete_old, 1.0)
    net.run(1.0)
    (successor,) = client.sessions
    (peer_successor,) = gateway.sessions
    assert successor.child_sas == [] and peer_successor.child_sas == []
    assert of_type(drain(client), ChildSaDeleted) and of_type(drain(gateway), ChildSaDeleted)
    assert session.state == peer_session.state == IkeState.DELETED
