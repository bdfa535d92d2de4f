"""Automatic maintenance driven by the timer (PeerConfig.ike_rekey_time, .child_rekey_time,
.dpd_delay, .ike_lifetime, .child_lifetime): rekeys when they fall due, liveness checks after
silence, retry after a refusal, deletion at the hard lifetime."""

from __future__ import annotations

import dataclasses

import pytest
from engine_harness import Network, drain, of_type, pair_from, peer_configs

from ikecore.constants import ExchangeType
from ikecore.endpoint import Datagram, IkeEndpoint
from ikecore.events import (
    ChildSaDeleted,
    ChildSaRekeyed,
    IkeSaCloned,
    IkeSaDeleted,
    IkeSaRekeyed,
    IkeSaRekeyFailed,
    LivenessChecked,
)
from ikecore.session import IkeSession
from ikecore.states import ChildState, IkeState


def _established(**maintenance: float) -> tuple[IkeEndpoint, IkeEndpoint, IkeSession, Network]:
    client, gateway = peer_configs()
    client = dataclasses.replace(client, **maintenance)  # type: ignore[arg-type]
    initiator, responder, net = pair_from(client, gateway)
    session = initiator.initiate(client, 0.0)
    net.run(0.0)
    assert session.state == IkeState.ESTABLISHED
    drain(initiator), drain(responder)
    return initiator, responder, session, net


def test_nothing_is_scheduled_unless_configured() -> None:
    initiator, responder, _session, _net = _established()
    assert initiator.get_timer() is None and responder.get_timer() is None


def test_ike_sa_is_rekeyed_when_due_and_the_new_sa_schedules_its_own() -> None:
    initiator, responder, session, net = _established(ike_rekey_time=100.0)
    assert initiator.get_timer() == 100.0
    initiator.handle_timer(99.0)
    assert net.capture(99.0) == []
    # t=100: CREATE_CHILD_SA {SA, Ni, KEi} -->  <-- {SA, Nr, KEr};  INFORMATIONAL {D} ...
    initiator.handle_timer(100.0)
    net.run(100.0)
    (rekeyed,) = of_type(drain(initiator), IkeSaRekeyed)
    assert isinstance(rekeyed, IkeSaRekeyed) and rekeyed.old is session
    assert session.state == IkeState.DELETED
    assert rekeyed.new.state == IkeState.ESTABLISHED
    assert len(rekeyed.new.child_sas) == 1
    assert initiator.get_timer() == 200.0  # 100 s after the new SA was made
    assert len(of_type(drain(responder), IkeSaRekeyed)) == 1


def test_child_sa_is_rekeyed_when_due() -> None:
    initiator, _responder, session, net = _established(child_rekey_time=50.0)
    (old,) = session.child_sas
    assert initiator.get_timer() == 50.0
    # t=50: CREATE_CHILD_SA {N(REKEY_SA), SA, Ni, TSi, TSr} -->  <-- ; then the old one deleted
    initiator.handle_timer(50.0)
    net.run(50.0)
    (rekeyed,) = of_type(drain(initiator), ChildSaRekeyed)
    assert isinstance(rekeyed, ChildSaRekeyed) and rekeyed.old.spi_in == old.spi_in
    (new,) = session.child_sas
    assert new.spi_in != old.spi_in
    assert initiator.get_timer() == 100.0


def test_liveness_check_after_silence_and_esp_counts_as_life() -> None:
    initiator, responder, session, net = _established(dpd_delay=30.0)
    assert initiator.get_timer() == 30.0
    # t=30: INFORMATIONAL {} -->  <-- INFORMATIONAL {}
    initiator.handle_timer(30.0)
    flow = net.run(30.0)
    assert [(d.exchange, d.response) for d in flow] == [
        (ExchangeType.INFORMATIONAL, False),
        (ExchangeType.INFORMATIONAL, True),
    ]
    assert len(of_type(drain(initiator), LivenessChecked)) == 1
    assert initiator.get_timer() == 60.0
    # t=40: an ESP packet from the gateway: the peer is alive, the next check moves to 70.
    (peer_session,) = responder.sessions
    (peer_child,) = peer_session.child_sas
    responder.send_esp(peer_child.spi_in, b"\x45" + bytes(27), 4, 40.0)
    net.run(40.0)
    assert initiator.get_timer() == 70.0
    assert session.state == IkeState.ESTABLISHED


def test_liveness_check_against_a_dead_peer_ends_the_sa() -> None:
    initiator, _responder, session, net = _established(dpd_delay=30.0)
    now = 30.0
    initiator.handle_timer(now)
    net.capture(now)  # the peer is gone: every request is lost
    while (timer := initiator.get_timer()) is not None:
        now = timer
        initiator.handle_timer(now)
        net.capture(now)
    assert session.state == IkeState.DELETED
    (deleted,) = of_type(drain(initiator), IkeSaDeleted)
    assert isinstance(deleted, IkeSaDeleted) and deleted.reason == "timeout"


def _rekey_at_100_meets_a_gateway_request(
    initiator: IkeEndpoint, responder: IkeEndpoint, net: Network
) -> list[Datagram]:
    """The gateway has a request of its own in flight (held back, returned): the rekey due at
    t=100 meeting it is answered TEMPORARY_FAILURE (RFC 7296 §2.25)."""
    (peer_session,) = responder.sessions
    peer_session.check_liveness(99.0)
    held = net.capture(99.0)
    initiator.handle_timer(100.0)
    net.deliver(net.capture(100.0), 100.0)  # CREATE_CHILD_SA -->
    net.deliver(net.capture(100.0), 100.0)  # <-- N(TEMPORARY_FAILURE)
    return held


def test_a_refused_rekey_is_retried_later_not_at_once() -> None:
    initiator, responder, session, net = _established(ike_rekey_time=100.0)
    held = _rekey_at_100_meets_a_gateway_request(initiator, responder, net)
    assert len(of_type(drain(initiator), IkeSaRekeyFailed)) == 1
    assert session.state == IkeState.ESTABLISHED
    net.deliver(held, 100.0)
    net.run(100.0)
    # Not again at once: after the retry delay (10 s).
    assert initiator.get_timer() == 110.0
    initiator.handle_timer(110.0)
    net.run(110.0)
    assert len(of_type(drain(initiator), IkeSaRekeyed)) == 1


def test_ike_sa_is_deleted_at_its_hard_lifetime() -> None:
    initiator, responder, session, net = _established(ike_lifetime=300.0)
    (peer_session,) = responder.sessions
    assert initiator.get_timer() == 300.0
    initiator.handle_timer(299.0)
    assert net.capture(299.0) == []
    # t=300: INFORMATIONAL {D(IKE)} -->  <-- INFORMATIONAL {}
    initiator.handle_timer(300.0)
    flow = net.run(300.0)
    assert [(d.exchange, d.response) for d in flow] == [
        (ExchangeType.INFORMATIONAL, False),
        (ExchangeType.INFORMATIONAL, True),
    ]
    assert session.state == IkeState.DELETED and peer_session.state == IkeState.DELETED
    (deleted,) = of_type(drain(initiator), IkeSaDeleted)
    assert isinstance(deleted, IkeSaDeleted) and deleted.reason == "expired"
    (peer_deleted,) = of_type(drain(responder), IkeSaDeleted)
    assert isinstance(peer_deleted, IkeSaDeleted) and peer_deleted.reason == "deleted_by_peer"
    assert initiator.get_timer() is None


def test_a_rekey_before_the_hard_lifetime_restarts_it_on_the_new_sa() -> None:
    initiator, _responder, session, net = _established(ike_rekey_time=100.0, ike_lifetime=150.0)
    initiator.handle_timer(100.0)
    net.run(100.0)
    (rekeyed,) = of_type(drain(initiator), IkeSaRekeyed)
    assert isinstance(rekeyed, IkeSaRekeyed) and session.state == IkeState.DELETED
    # The new SA was made at t=100: rekey due at 200, hard lifetime at 250; nothing at 150.
    assert initiator.get_timer() == 200.0
    assert rekeyed.new.state == IkeState.ESTABLISHED


def test_child_sa_is_deleted_at_its_hard_lifetime_and_the_ike_sa_stays() -> None:
    initiator, responder, session, net = _established(child_lifetime=60.0)
    (child,) = session.child_sas
    assert initiator.get_timer() == 60.0
    # t=60: INFORMATIONAL {D(ESP, spi)} -->  <-- INFORMATIONAL {D(ESP, spi')}
    initiator.handle_timer(60.0)
    net.run(60.0)
    (deleted,) = of_type(drain(initiator), ChildSaDeleted)
    assert isinstance(deleted, ChildSaDeleted) and deleted.reason == "expired"
    assert deleted.child.spi_in == child.spi_in and child.state == ChildState.DELETED
    assert session.child_sas == [] and session.state == IkeState.ESTABLISHED
    (peer_session,) = responder.sessions
    assert peer_session.child_sas == []
    assert initiator.get_timer() is None


def test_a_clone_has_its_own_hard_lifetime_from_when_it_was_made() -> None:
    initiator, responder, session, net = _established(ike_lifetime=300.0)
    # t=100: CREATE_CHILD_SA {N(CLONE_IKE_SA), SA, Ni, KEi} -->  <-- {SA, Nr, KEr}
    session.request_clone(100.0)
    net.run(100.0)
    (cloned,) = of_type(drain(initiator), IkeSaCloned)
    assert isinstance(cloned, IkeSaCloned)
    clone = cloned.clone
    assert initiator.get_timer() == 300.0  # the parent's, established at t=0
    # t=300: the parent expires (INFORMATIONAL {D(IKE)} on it); the clone lives on.
    initiator.handle_timer(300.0)
    net.run(300.0)
    assert session.state == IkeState.DELETED and clone.state == IkeState.ESTABLISHED
    assert initiator.get_timer() == 400.0  # the clone's: made at t=100
    initiator.handle_timer(400.0)
    net.run(400.0)
    assert clone.state == IkeState.DELETED
    reasons = [e.reason for e in of_type(drain(initiator), IkeSaDeleted)]  # type: ignore[attr-defined]
    assert reasons == ["expired", "expired"]
    assert responder.sessions == []  # both SAs deleted on the gateway too


def test_expiry_wins_over_a_rekey_that_keeps_being_refused() -> None:
    initiator, responder, session, net = _established(ike_rekey_time=100.0, ike_lifetime=105.0)
    # The rekey is refused at t=100; its retry (t=110) would come after the hard lifetime.
    held = _rekey_at_100_meets_a_gateway_request(initiator, responder, net)
    net.deliver(held, 100.0)
    net.run(100.0)
    assert initiator.get_timer() == 105.0
    initiator.handle_timer(105.0)
    net.run(105.0)
    assert session.state == IkeState.DELETED
    (deleted,) = of_type(drain(initiator), IkeSaDeleted)
    assert isinstance(deleted, IkeSaDeleted) and deleted.reason == "expired"
    assert of_type(drain(initiator), IkeSaRekeyed) == []


@pytest.mark.parametrize(
    ("lifetime", "rekey"),
    [("ike_lifetime", "ike_rekey_time"), ("child_lifetime", "child_rekey_time")],
)
def test_a_hard_lifetime_must_outlast_the_rekey_time(lifetime: str, rekey: str) -> None:
    client, _ = peer_configs()
    with pytest.raises(ValueError, match=f"{lifetime} must be longer than {rekey}"):
        dataclasses.replace(client, **{lifetime: 100.0, rekey: 100.0})  # type: ignore[arg-type]
    config = dataclasses.replace(client, **{lifetime: 101.0, rekey: 100.0})  # type: ignore[arg-type]
    assert getattr(config, lifetime) == 101.0


@pytest.mark.parametrize(
    "name", ["ike_rekey_time", "child_rekey_time", "dpd_delay", "ike_lifetime", "child_lifetime"]
)
def test_maintenance_times_must_be_positive(name: str) -> None:
    client, _ = peer_configs()
    with pytest.raises(ValueError, match=name):
        dataclasses.replace(client, **{name: 0.0})  # type: ignore[arg-type]
    assert getattr(dataclasses.replace(client, **{name: 5.0}), name) == 5.0  # type: ignore[arg-type]
