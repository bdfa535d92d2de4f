"""CREATE_CHILD_SA (new, PFS, rekey), INFORMATIONAL (Delete, liveness) and the IKE SA rekey."""

from __future__ import annotations

import pytest
from engine_harness import Network, drain, of_type, pair

from ikecore import LocalProtocolError, NotifyType, ProtocolId
from ikecore.config import TrafficSelector
from ikecore.endpoint import IkeEndpoint
from ikecore.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    ChildSaRekeyed,
    IkeSaDeleted,
    IkeSaRekeyed,
    IkeSaRekeyFailed,
    LivenessChecked,
)
from ikecore.session import IkeSession
from ikecore.states import ChildState, IkeState
from ikecore.suites import parse_proposals

ESP = ProtocolId.ESP


def established(
    **options: object,
) -> tuple[IkeEndpoint, IkeEndpoint, IkeSession, IkeSession, Network]:
    initiator, responder, peer, net = pair(**options)  # type: ignore[arg-type]
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    (peer_session,) = responder.sessions
    drain(initiator), drain(responder)
    return initiator, responder, session, peer_session, net


def test_create_child_sa_without_and_with_pfs() -> None:
    initiator, responder, session, peer_session, net = established(
        esp="aes256gcm16,aes128gcm16-x25519"
    )
    # CREATE_CHILD_SA {SA, Ni, TSi, TSr} -->  <-- CREATE_CHILD_SA {SA, Nr, TSi, TSr}
    session.create_child_sa(1.0, esp_proposals=parse_proposals("aes256gcm16", ESP))
    flow = net.run(1.0)
    assert [str(d) for d in flow] == ["CREATE_CHILD_SA --> #2", "CREATE_CHILD_SA <-- #2"]
    (new,) = of_type(drain(initiator), ChildSaEstablished)
    assert isinstance(new, ChildSaEstablished) and new.child.transforms.dh == 0
    (theirs,) = of_type(drain(responder), ChildSaEstablished)
    assert isinstance(theirs, ChildSaEstablished) and theirs.child.spi_out == new.child.spi_in
    assert theirs.child.key_in == new.child.key_out
    # CREATE_CHILD_SA {SA, Ni, KEi(31), TSi, TSr} -->
    #                                     <-- CREATE_CHILD_SA {SA, Nr, KEr(31), TSi, TSr}
    session.create_child_sa(2.0, esp_proposals=parse_proposals("aes128gcm16-x25519", ESP))
    net.run(2.0)
    (pfs,) = of_type(drain(initiator), ChildSaEstablished)
    assert isinstance(pfs, ChildSaEstablished) and pfs.child.transforms.dh == 31
    (pfs_peer,) = of_type(drain(responder), ChildSaEstablished)
    assert isinstance(pfs_peer, ChildSaEstablished) and pfs_peer.child.key_in == pfs.child.key_out
    assert len(session.child_sas) == 3 and len(peer_session.child_sas) == 3
    assert session.sa.next_request_id == 4 and peer_session.sa.next_peer_request_id == 4


def test_responder_side_creates_a_child_sa_too() -> None:
    _initiator, _responder, session, peer_session, net = established()
    # (responder as exchange initiator) CREATE_CHILD_SA -->  <-- CREATE_CHILD_SA
    peer_session.create_child_sa(1.0)
    flow = net.run(1.0)
    assert [str(d) for d in flow] == ["CREATE_CHILD_SA --> #0", "CREATE_CHILD_SA <-- #0"]
    assert len(session.child_sas) == 2 and len(peer_session.child_sas) == 2
    assert peer_session.sa.next_request_id == 1 and session.sa.next_peer_request_id == 1


def test_traffic_selectors_are_narrowed_or_refused() -> None:
    initiator, _responder, session, _peer_session, net = established()
    host = TrafficSelector("10.1.0.2", "10.1.0.2")
    session.create_child_sa(1.0, local_ts=(host,), remote_ts=(TrafficSelector.any(),))
    net.run(1.0)
    (made,) = of_type(drain(initiator), ChildSaEstablished)
    assert isinstance(made, ChildSaEstablished) and made.child.local_ts == (host,)
    # A selector outside the responder's policy (it allows IPv4 only): TS_UNACCEPTABLE.
    session.create_child_sa(
        2.0, local_ts=(TrafficSelector.any(6),), remote_ts=(TrafficSelector.any(6),)
    )
    net.run(2.0)
    (failed,) = drain(initiator)
    assert isinstance(failed, ChildSaFailed) and failed.notify == NotifyType.TS_UNACCEPTABLE
    assert session.state == IkeState.ESTABLISHED and len(session.child_sas) == 2


def test_pfs_group_mismatch_retries_with_invalid_ke_group() -> None:
    initiator, _responder, peer, net = pair(
        initiator_esp="aes256gcm16-x25519-ecp256", responder_esp="aes256gcm16-ecp256"
    )
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    drain(initiator)
    # CREATE_CHILD_SA {SA, Ni, KEi(31)} -->  <-- {N(INVALID_KE_PAYLOAD, 19)}
    # CREATE_CHILD_SA {SA, Ni, KEi(19)} -->  <-- {SA, Nr, KEr(19)}
    session.create_child_sa(1.0)
    flow = net.run(1.0)
    assert [str(d) for d in flow] == [
        "CREATE_CHILD_SA --> #2",
        "CREATE_CHILD_SA <-- #2",
        "CREATE_CHILD_SA --> #3",
        "CREATE_CHILD_SA <-- #3",
    ]
    (made,) = of_type(drain(initiator), ChildSaEstablished)
    assert isinstance(made, ChildSaEstablished) and made.child.transforms.dh == 19


def test_child_sa_rekey_then_old_one_deleted() -> None:
    initiator, responder, session, peer_session, net = established()
    (old,) = session.child_sas
    # CREATE_CHILD_SA {N(REKEY_SA, old), SA, Ni, TSi, TSr} -->  <-- {SA, Nr, TSi, TSr}
    # INFORMATIONAL {D(ESP, old in)} -->  <-- INFORMATIONAL {D(ESP, old peer in)}
    session.rekey_child_sa(old.spi_in, 1.0)
    assert old.state == ChildState.REKEYING
    flow = net.run(1.0)
    assert [str(d) for d in flow] == [
        "CREATE_CHILD_SA --> #2",
        "CREATE_CHILD_SA <-- #2",
        "INFORMATIONAL --> #3",
        "INFORMATIONAL <-- #3",
    ]
    events = drain(initiator)
    assert [type(e) for e in events] == [ChildSaRekeyed, ChildSaDeleted]
    rekeyed = events[0]
    assert isinstance(rekeyed, ChildSaRekeyed) and rekeyed.old is old
    assert rekeyed.new.rekeyed_from == old.spi_in and rekeyed.new.key_out != old.key_out
    assert [c.spi_in for c in session.child_sas] == [rekeyed.new.spi_in]
    peer_events = drain(responder)
    assert [type(e) for e in peer_events] == [ChildSaRekeyed, ChildSaDeleted]
    (peer_child,) = peer_session.child_sas
    assert peer_child.spi_out == rekeyed.new.spi_in
    assert responder.store.find_by_esp_spi(old.spi_out) is None


def test_delete_child_sa_and_unknown_spi() -> None:
    initiator, responder, session, peer_session, net = established()
    (child,) = session.child_sas
    # INFORMATIONAL {D(ESP, spi)} -->  <-- INFORMATIONAL {D(ESP, peer spi)}
    session.delete_child_sa(child.spi_in, 1.0)
    net.run(1.0)
    (deleted,) = drain(initiator)
    assert isinstance(deleted, ChildSaDeleted) and deleted.reason == "deleted_locally"
    (peer_deleted,) = drain(responder)
    assert isinstance(peer_deleted, ChildSaDeleted) and peer_deleted.reason == "deleted_by_peer"
    assert session.child_sas == [] and peer_session.child_sas == []
    assert session.state == IkeState.ESTABLISHED
    with pytest.raises(LocalProtocolError, match="no Child SA"):
        session.delete_child_sa(child.spi_in, 2.0)


def test_simultaneous_child_deletes() -> None:
    initiator, responder, session, peer_session, net = established()
    (child,) = session.child_sas
    (peer_child,) = peer_session.child_sas
    # INFORMATIONAL {D(ESP, a)} -->      <-- INFORMATIONAL {D(ESP, b)}   (crossing)
    session.delete_child_sa(child.spi_in, 1.0)
    peer_session.delete_child_sa(peer_child.spi_in, 1.0)
    net.run(1.0)
    assert session.child_sas == [] and peer_session.child_sas == []
    assert len(of_type(drain(initiator), ChildSaDeleted)) == 1
    assert len(of_type(drain(responder), ChildSaDeleted)) == 1


def test_delete_ike_sa_from_either_side() -> None:
    initiator, responder, session, peer_session, net = established()
    # INFORMATIONAL {D(IKE)} -->  <-- INFORMATIONAL {}
    session.delete(1.0)
    assert session.state == IkeState.DELETING
    net.run(1.0)
    assert session.state == IkeState.DELETED and peer_session.state == IkeState.DELETED
    i_events, r_events = drain(initiator), drain(responder)
    assert [type(e) for e in i_events] == [ChildSaDeleted, IkeSaDeleted]
    assert [type(e) for e in r_events] == [ChildSaDeleted, IkeSaDeleted]
    assert isinstance(i_events[1], IkeSaDeleted) and i_events[1].reason == "deleted_locally"
    assert isinstance(r_events[1], IkeSaDeleted) and r_events[1].reason == "deleted_by_peer"
    assert initiator.sessions == [] and responder.sessions == []
    assert initiator.store.ike_sas() == [] and responder.store.ike_sas() == []
    # The responder may delete too.
    initiator, responder, session, peer_session, net = established()
    peer_session.delete(1.0)
    net.run(1.0)
    assert session.state == IkeState.DELETED and peer_session.state == IkeState.DELETED


def test_liveness_check() -> None:
    initiator, responder, session, _peer_session, net = established()
    # INFORMATIONAL {} -->  <-- INFORMATIONAL {}
    session.check_liveness(1.0)
    net.run(1.0)
    (checked,) = drain(initiator)
    assert isinstance(checked, LivenessChecked) and checked.session is session
    assert drain(responder) == []


def test_requests_queue_behind_the_window() -> None:
    _initiator, _responder, session, _peer_session, net = established()
    # Window 1: the second request waits for the first response (§2.3).
    session.create_child_sa(1.0)
    session.check_liveness(1.0)
    first = net.capture(1.0)
    assert len(first) == 1
    net.deliver(first, 1.0)
    flow = net.run(1.0)
    assert [str(d) for d in flow] == [
        "CREATE_CHILD_SA <-- #2",
        "INFORMATIONAL --> #3",
        "INFORMATIONAL <-- #3",
    ]


def test_ike_sa_rekey_moves_child_sas() -> None:
    initiator, responder, session, _peer_session, net = established()
    (child,) = session.child_sas
    # CREATE_CHILD_SA {SA(SPIi'), Ni, KEi} -->  <-- CREATE_CHILD_SA {SA(SPIr'), Nr, KEr}
    # INFORMATIONAL(old SA) {D(IKE)} -->  <-- INFORMATIONAL(old SA) {}
    session.rekey(1.0)
    assert session.state == IkeState.REKEYING
    flow = net.run(1.0)
    assert [str(d) for d in flow] == [
        "CREATE_CHILD_SA --> #2",
        "CREATE_CHILD_SA <-- #2",
        "INFORMATIONAL --> #3",
        "INFORMATIONAL <-- #3",
    ]
    i_events, r_events = drain(initiator), drain(responder)
    assert [type(e) for e in i_events] == [IkeSaRekeyed, IkeSaDeleted]
    assert [type(e) for e in r_events] == [IkeSaRekeyed, IkeSaDeleted]
    rekeyed = i_events[0]
    assert isinstance(rekeyed, IkeSaRekeyed) and rekeyed.old is session
    new = rekeyed.new
    assert isinstance(i_events[1], IkeSaDeleted) and i_events[1].reason == "rekeyed"
    assert isinstance(r_events[1], IkeSaDeleted) and r_events[1].reason == "rekeyed"
    assert session.state == IkeState.DELETED and new.state == IkeState.ESTABLISHED
    assert new.child_sas == [child] and session.child_sas == []
    peer_new = r_events[0].new
    assert peer_new.sa.spis == new.sa.spis and peer_new.sa.keys == new.sa.keys
    assert new.sa.keys != session.sa.keys
    assert new.sa.next_request_id == 0 and new.sa.rekeyed_from == session.sa.spis
    assert initiator.store.ike_sas() == [new.sa] and responder.store.ike_sas() == [peer_new.sa]
    assert initiator.store.find_by_esp_spi(child.spi_in) is new.sa
    assert responder.store.find_by_esp_spi(child.spi_out) is peer_new.sa
    # The new SA works: a Child SA and a liveness check on it, message IDs from 0.
    new.create_child_sa(2.0)
    flow = net.run(2.0)
    assert [str(d) for d in flow] == ["CREATE_CHILD_SA --> #0", "CREATE_CHILD_SA <-- #0"]
    assert len(new.child_sas) == 2 and len(peer_new.child_sas) == 2
    assert responder.store.find_by_esp_spi(child.spi_out) is peer_new.sa


def test_ike_sa_rekey_by_the_responder() -> None:
    initiator, responder, _session, peer_session, net = established()
    peer_session.rekey(1.0)
    net.run(1.0)
    (new,) = initiator.sessions
    (peer_new,) = responder.sessions
    # The rekey initiator is the original initiator of the new SA (§2.18).
    assert peer_new.sa.initiator and not new.sa.initiator
    assert new.sa.spis == peer_new.sa.spis and len(new.child_sas) == 1
    new.check_liveness(2.0)
    net.run(2.0)
    assert of_type(drain(initiator), LivenessChecked)


def _single_survivor(initiator: IkeEndpoint, responder: IkeEndpoint, old: IkeSession) -> None:
    (survivor,) = initiator.sessions
    (peer_survivor,) = responder.sessions
    assert survivor.sa.spis == peer_survivor.sa.spis and survivor.sa.keys == peer_survivor.sa.keys
    assert survivor.sa.rekeyed_from == old.sa.spis
    assert len(survivor.child_sas) == 1 and len(peer_survivor.child_sas) == 1
    assert survivor.child_sas[0].spi_out == peer_survivor.child_sas[0].spi_in
    for endpoint, session in ((initiator, survivor), (responder, peer_survivor)):
        events = drain(endpoint)
        (rekeyed,) = of_type(events, IkeSaRekeyed)
        assert isinstance(rekeyed, IkeSaRekeyed) and rekeyed.new is session
        (deleted,) = of_type(events, IkeSaDeleted)  # the old SA; the redundant one is silent
        assert isinstance(deleted, IkeSaDeleted) and deleted.reason == "rekeyed"
        assert endpoint.store.ike_sas() == [session.sa]
        assert not of_type(events, IkeSaRekeyFailed)


def test_simultaneous_ike_rekey_both_notice() -> None:
    initiator, responder, session, peer_session, net = established()
    # A: CREATE_CHILD_SA(rekey, Ni1) -->      <-- B: CREATE_CHILD_SA(rekey, Ni2)   (crossing)
    # A: resp2 {SA, Nr1, KEr} -->             <-- B: resp1 {SA, Nr2, KEr}
    # three IKE SAs now; the new one with the lowest of Ni1, Nr2, Ni2, Nr1 is redundant:
    # its creator deletes it, the initiator of the survivor deletes the old SA (§2.8.2).
    session.rekey(1.0)
    peer_session.rekey(1.0)
    crossing = net.capture(1.0)
    assert len(crossing) == 2
    net.deliver(crossing, 1.0)
    assert session.rekey_collision is not None and peer_session.rekey_collision is not None
    net.run(1.0)
    assert session.state == IkeState.DELETED and peer_session.state == IkeState.DELETED
    _single_survivor(initiator, responder, session)


def test_simultaneous_ike_rekey_only_one_side_notices() -> None:
    initiator, responder, session, peer_session, net = established()
    session.rekey(1.0)
    peer_session.rekey(1.0)
    a_request, b_request = sorted(net.capture(1.0), key=lambda d: d.src[0] != "192.0.2.1")
    # <-- B: CREATE_CHILD_SA(rekey)  reaches A first; A answers (and notes the collision)
    net.deliver([b_request], 1.0)
    # A's answer reaches B: B completes its rekey, moves its Child SAs, deletes the old SA
    net.deliver(net.capture(1.0), 1.0)
    assert len(responder.sessions) == 2
    # A: CREATE_CHILD_SA(rekey) --> arrives late: B answers TEMPORARY_FAILURE (§2.8.2)
    net.deliver([a_request], 1.0)
    net.run(1.0)
    _single_survivor(initiator, responder, session)


def test_ike_rekey_refused_while_other_exchanges_run() -> None:
    initiator, _responder, session, peer_session, net = established()
    # B has a CREATE_CHILD_SA in flight when A's rekey arrives: TEMPORARY_FAILURE (§2.25.2)
    # and A, rekeying the IKE SA, answers B's CREATE_CHILD_SA the same way (§2.25.2).
    peer_session.create_child_sa(1.0)
    session.rekey(1.0)
    net.run(1.0)
    (failed,) = of_type(drain(initiator), IkeSaRekeyFailed)
    assert isinstance(failed, IkeSaRekeyFailed) and failed.notify == NotifyType.TEMPORARY_FAILURE
    (child_failed,) = of_type(drain(_responder), ChildSaFailed)
    assert isinstance(child_failed, ChildSaFailed)
    assert child_failed.notify == NotifyType.TEMPORARY_FAILURE
    assert session.state == IkeState.ESTABLISHED and len(session.child_sas) == 1
    assert len(peer_session.child_sas) == 1
    # Later both go through (§2.25: retried after a wait, one at a time).
    session.rekey(10.0)
    net.run(10.0)
    assert len(initiator.sessions) == 1 and initiator.sessions[0] is not session
    (peer_successor,) = _responder.sessions
    peer_successor.create_child_sa(20.0)
    net.run(20.0)
    assert len(initiator.sessions[0].child_sas) == 2


def test_api_refuses_what_the_state_does_not_allow() -> None:
    initiator, _responder, peer, net = pair()
    session = initiator.initiate(peer, 0.0)
    with pytest.raises(LocalProtocolError, match="CONNECTING"):
        session.create_child_sa(0.0)
    with pytest.raises(LocalProtocolError, match="CONNECTING"):
        session.rekey(0.0)
    net.run(0.0)
    session.delete(1.0)
    with pytest.raises(LocalProtocolError, match="DELETING"):
        session.check_liveness(1.0)


def _one_child_pair(
    initiator: IkeEndpoint, responder: IkeEndpoint, session: IkeSession, peer_session: IkeSession
) -> None:
    (child,) = session.child_sas
    (peer_child,) = peer_session.child_sas
    assert child.spi_out == peer_child.spi_in and child.spi_in == peer_child.spi_out
    assert child.key_out == peer_child.key_in
    for endpoint, survivor in ((initiator, child), (responder, peer_child)):
        events = drain(endpoint)
        (rekeyed,) = of_type(events, ChildSaRekeyed)
        assert isinstance(rekeyed, ChildSaRekeyed) and rekeyed.new is survivor
        # Exactly the old Child SA is reported deleted; the redundant one goes silently.
        (deleted,) = of_type(events, ChildSaDeleted)
        assert isinstance(deleted, ChildSaDeleted) and deleted.child is rekeyed.old
        assert deleted.reason == "rekeyed"
        assert not of_type(events, ChildSaFailed)


def test_simultaneous_child_rekey_both_notice() -> None:
    initiator, responder, session, peer_session, net = established()
    (child,) = session.child_sas
    (peer_child,) = peer_session.child_sas
    # A: CREATE_CHILD_SA {N(REKEY_SA,a1), SA(a2), Ni1} -->  <-- B: {N(REKEY_SA,b1), SA(b2), Ni2}
    # A: resp2 {SA(a3), Nr1} -->                             <-- B: resp1 {SA(b3), Nr2}
    # lowest of the four nonces: its creator deletes the redundant pair, the initiator of
    # the surviving pair deletes the old one (§2.8.1).
    session.rekey_child_sa(child.spi_in, 1.0)
    peer_session.rekey_child_sa(peer_child.spi_in, 1.0)
    net.deliver(net.capture(1.0), 1.0)
    assert session.child_collisions and peer_session.child_collisions
    net.run(1.0)
    _one_child_pair(initiator, responder, session, peer_session)
    assert not session.child_collisions and not peer_session.child_collisions


def test_simultaneous_child_rekey_only_one_side_notices() -> None:
    initiator, responder, session, peer_session, net = established()
    (child,) = session.child_sas
    (peer_child,) = peer_session.child_sas
    session.rekey_child_sa(child.spi_in, 1.0)
    peer_session.rekey_child_sa(peer_child.spi_in, 1.0)
    a_request, b_request = sorted(net.capture(1.0), key=lambda d: d.src[0] != "192.0.2.1")
    # <-- B's rekey reaches A first; A answers; B completes and deletes the old Child SA
    net.deliver([b_request], 1.0)
    net.run(1.0)
    # A's request arrives late: B answers CHILD_SA_NOT_FOUND, A ignores it (§2.8.1)
    net.deliver([a_request], 1.0)
    net.run(1.0)
    _one_child_pair(initiator, responder, session, peer_session)


def test_delete_while_a_rekey_is_in_flight() -> None:
    initiator, responder, session, _peer_session, net = established()
    # CREATE_CHILD_SA(rekey) -->  ... the user deletes the SA before the answer comes:
    # <-- CREATE_CHILD_SA {SA(SPIr'), Nr, KEr}   (the new SA exists at the peer: delete it too)
    # INFORMATIONAL(old) {D(IKE)} -->  <--    INFORMATIONAL(new) {D(IKE)} -->  <--
    session.rekey(1.0)
    session.delete(1.0)
    net.run(1.0)
    assert initiator.sessions == [] and responder.sessions == []
    assert initiator.store.ike_sas() == [] and responder.store.ike_sas() == []
    events = drain(initiator)
    (deleted,) = of_type(events, IkeSaDeleted)
    assert isinstance(deleted, IkeSaDeleted) and deleted.session is session
    assert deleted.reason == "deleted_locally"
    assert len(of_type(events, ChildSaDeleted)) == 1


def _only_the_new_child(
    initiator: IkeEndpoint, responder: IkeEndpoint, old_spi_in: bytes, new_spi_in: bytes
) -> None:
    """One IKE SA each, holding the same single Child SA (the rekey's new one) at both ends;
    the replaced Child SA is gone everywhere, store included."""
    (survivor,) = initiator.sessions
    (peer_survivor,) = responder.sessions
    assert survivor.sa.spis == peer_survivor.sa.spis
    (child,) = survivor.child_sas
    (peer_child,) = peer_survivor.child_sas
    assert child.spi_in == new_spi_in and child.state == ChildState.INSTALLED
    assert (peer_child.spi_in, peer_child.spi_out) == (child.spi_out, child.spi_in)
    assert peer_child.state == ChildState.INSTALLED
    assert initiator.store.find_by_esp_spi(old_spi_in) is None
    assert initiator.store.ike_sas() == [survivor.sa]
    assert responder.store.ike_sas() == [peer_survivor.sa]


def test_child_rekey_finishing_behind_an_ike_rekey_deletes_on_the_new_sa() -> None:
    initiator, responder, session, _peer_session, net = established()
    (old,) = session.child_sas
    # A: CREATE_CHILD_SA {N(REKEY_SA, old), ...} --> #2; B answers; A calls rekey() meanwhile
    session.rekey_child_sa(old.spi_in, 1.0)
    net.deliver(net.capture(1.0), 1.0)
    child_response = net.capture(1.0)
    session.rekey(1.0)
    # <-- #2: the Child SA rekey is done, its Delete of the old Child SA queues behind the
    # IKE SA rekey. Once that is done, the new IKE SA carries it (§2.8: the new SA is used
    # for all control messages about the inherited Child SAs) and D(IKE) is the last
    # request on the old SA.
    net.deliver(child_response, 1.0)
    flow = net.run(1.0)
    assert [str(d) for d in flow] == [
        "CREATE_CHILD_SA --> #3",
        "CREATE_CHILD_SA <-- #3",
        "INFORMATIONAL --> #0",  # new SA: D(ESP, old)
        "INFORMATIONAL --> #4",  # old SA: D(IKE)
        "INFORMATIONAL <-- #0",
        "INFORMATIONAL <-- #4",
    ]
    events = drain(initiator)
    (rekeyed,) = of_type(events, ChildSaRekeyed)
    assert isinstance(rekeyed, ChildSaRekeyed) and rekeyed.old is old
    (child_deleted,) = of_type(events, ChildSaDeleted)
    assert isinstance(child_deleted, ChildSaDeleted) and child_deleted.child is old
    _only_the_new_child(initiator, responder, old.spi_in, rekeyed.new.spi_in)


def test_child_rekey_across_a_simultaneous_ike_rekey_only_one_side_notices() -> None:
    # Found by test_engine_interleavings (the @example there).
    initiator, responder, session, peer_session, net = established()
    (old,) = session.child_sas
    # A: CREATE_CHILD_SA {N(REKEY_SA, old), ...} --> #2; B answers
    session.rekey_child_sa(old.spi_in, 1.0)
    net.deliver(net.capture(1.0), 1.0)
    child_response = net.capture(1.0)
    # Both start an IKE SA rekey; A's waits behind #2, B's request is held back.
    session.rekey(1.0)
    peer_session.rekey(1.0)
    b_rekey = net.capture(1.0)
    # <-- #2: A's Child SA rekey is done; A: CREATE_CHILD_SA(rekey IKE) --> #3, D(ESP) queued
    net.deliver(child_response, 1.0)
    # B answers #3 while its own rekey is in flight: it notes the collision (§2.8.2)
    net.deliver(net.capture(1.0), 1.0)
    assert peer_session.rekey_collision is not None
    # <-- #3: A never saw B's request, so its new SA simply won: the Child SAs move, and
    # A: INFORMATIONAL(new SA) {D(ESP, old)} --> #0    A: INFORMATIONAL(old SA) {D(IKE)} --> #4
    net.deliver(net.capture(1.0), 1.0)
    new_sa_delete, old_sa_delete = sorted(
        net.capture(1.0), key=lambda d: d.data[:8] == session.sa.spi_i
    )
    # D(ESP) on the new SA reaches B first: A already uses the new SA, so B moves its
    # Child SAs there before answering, and deletes the old Child SA at once.
    net.deliver([new_sa_delete], 1.0)
    assert peer_session.state == IkeState.REKEYED and peer_session.child_sas == []
    # Then B's late rekey request (to A's old SA, being deleted) and D(IKE) of the old SA.
    net.deliver([*b_rekey, old_sa_delete], 1.0)
    net.run(1.0)
    (rekeyed,) = of_type(drain(initiator), ChildSaRekeyed)
    assert isinstance(rekeyed, ChildSaRekeyed)
    _only_the_new_child(initiator, responder, old.spi_in, rekeyed.new.spi_in)
    peer_events = drain(responder)
    assert [type(e) for e in of_type(peer_events, IkeSaRekeyed)] == [IkeSaRekeyed]
    assert not of_type(peer_events, IkeSaRekeyFailed)


def test_replacement_deleted_by_the_peer_before_the_rekey_response_arrives() -> None:
    initiator, responder, session, peer_session, net = established()
    (old,) = session.child_sas
    # A: CREATE_CHILD_SA {N(REKEY_SA, old), ...} --> #2
    # <-- #2 {SA, Nr, ...} (delayed)   B replaced old (REKEYED), waits for A's D(ESP, old)
    session.rekey_child_sa(old.spi_in, 1.0)
    net.deliver(net.capture(1.0), 1.0)
    rekey_response = net.capture(1.0)
    (_, replacement) = peer_session.child_sas
    # <-- B: INFORMATIONAL {D(ESP, replacement)} arrives first: unknown to A, ignored (§1.4.1)
    peer_session.delete_child_sa(replacement.spi_in, 1.0)
    net.run(1.0)
    # <-- #2: A installs nothing; B replaced old, so A, the rekey's initiator, deletes it
    # A: INFORMATIONAL {D(ESP, old)} -->  <-- {D(ESP, old)}: nothing left waiting at B (§2.8)
    net.deliver(rekey_response, 1.0)
    net.run(1.0)
    assert session.child_sas == [] and peer_session.child_sas == []
    events = drain(initiator)
    assert [type(e) for e in events] == [ChildSaFailed, ChildSaDeleted]
    deleted = events[1]
    assert isinstance(deleted, ChildSaDeleted) and deleted.child is old
    assert initiator.store.find_by_esp_spi(old.spi_in) is None
    assert responder.store.find_by_esp_spi(old.spi_out) is None


def test_simultaneous_ike_rekey_old_sa_delete_overtakes_an_answer() -> None:
    initiator, responder, session, peer_session, net = established()
    peer_session.rekey(1.0)
    b_request = net.capture(1.0)
    session.rekey(1.0)
    # A: CREATE_CHILD_SA(rekey) --> B answers, noting the collision; resp1 is held back
    net.deliver(net.capture(1.0), 1.0)
    resp1 = net.capture(1.0)
    # <-- B: CREATE_CHILD_SA(rekey): A answers; resp2 reaches B, whose new SA wins here,
    # so B moves the Child SAs and sends D(IKE) on the old SA, which reaches A before resp1:
    # A follows, the old SA ends, and resp1 (about A's redundant SA) is dropped with it.
    net.deliver(b_request, 1.0)
    net.run(1.0)
    net.deliver(resp1, 1.0)
    net.run(1.0)
    # B's copy of A's redundant SA never hears the Delete A would have sent: it expires.
    assert len(responder.sessions) == 2
    later = 1.0 + responder.config.half_open_timeout
    assert responder.get_timer() == later
    responder.handle_timer(later)
    _single_survivor(initiator, responder, session)
