"""INITIAL_CONTACT (RFC 7296 §3.10.1): an initiator that restarted tells the responder, which
drops its stale IKE SAs (and their clones and Child SAs) with that identity."""

from __future__ import annotations

import dataclasses

from engine_harness import (
    INITIATOR_HOST,
    Network,
    counter_random,
    drain,
    of_type,
    pair_from,
    peer_configs,
)

from ikecore.config import EndpointConfig, PeerConfig
from ikecore.constants import ExchangeType
from ikecore.endpoint import IkeEndpoint
from ikecore.events import ChildSaDeleted, IkeSaDeleted, IkeSaEstablished
from ikecore.states import IkeState


def _setup(initial_contact: bool) -> tuple[IkeEndpoint, IkeEndpoint, PeerConfig, Network]:
    client, gateway = peer_configs()
    client = dataclasses.replace(client, initial_contact=initial_contact)
    initiator, responder, network = pair_from(client, gateway)
    return initiator, responder, client, network


def test_a_restarted_initiator_makes_the_responder_drop_its_stale_sas() -> None:
    initiator, responder, client, net = _setup(initial_contact=True)
    # IKE_SA_INIT <-->  IKE_AUTH {IDi, AUTH, N(INITIAL_CONTACT), ...} -->  <-- IKE_AUTH
    first = initiator.initiate(client, 0.0)
    flow = net.run(0.0)
    assert first.state == IkeState.ESTABLISHED
    assert [d.exchange for d in flow].count(ExchangeType.IKE_AUTH) == 2
    # CREATE_CHILD_SA {N(CLONE_IKE_SA), SA, Ni, KEi} -->  <-- {SA, Nr, KEr}
    first.request_clone(1.0)
    net.run(1.0)
    (stale, stale_clone) = responder.sessions
    drain(initiator), drain(responder)

    # The client restarts: a fresh endpoint (new SPIs), same identity and address.
    restarted = IkeEndpoint(EndpointConfig(peers=(client,)), random=counter_random(3))
    net.hosts[INITIATOR_HOST] = restarted
    # IKE_SA_INIT <-->  IKE_AUTH {IDi, AUTH, N(INITIAL_CONTACT), ...} -->  <-- IKE_AUTH
    fresh = restarted.initiate(client, 2.0)
    net.run(2.0)
    assert fresh.state == IkeState.ESTABLISHED
    # The responder kept only the new SA; the old one and its clone went without a Delete.
    (current,) = responder.sessions
    assert current.sa.spi_i == fresh.sa.spi_i
    assert stale.state == IkeState.DELETED == stale_clone.state
    events = drain(responder)
    deleted = of_type(events, IkeSaDeleted)
    assert {e.session for e in deleted} == {stale, stale_clone}  # type: ignore[attr-defined]
    assert all(e.reason == "initial_contact" for e in deleted)  # type: ignore[attr-defined]
    assert len(of_type(events, ChildSaDeleted)) == 1  # the first SA's Child SA
    assert len(of_type(events, IkeSaEstablished)) == 1
    assert not [d for d in net.log if d.exchange == ExchangeType.INFORMATIONAL]


def test_no_initial_contact_while_another_sa_to_the_peer_exists() -> None:
    initiator, responder, client, net = _setup(initial_contact=True)
    first = initiator.initiate(client, 0.0)
    net.run(0.0)
    # A second IKE SA from the same endpoint: not its first contact, so no INITIAL_CONTACT
    # (were it sent, the responder would drop the first SA): the responder keeps both.
    second = initiator.initiate(client, 1.0)
    net.run(1.0)
    assert first.state == IkeState.ESTABLISHED == second.state
    assert len(responder.sessions) == 2
    assert not of_type(drain(responder), IkeSaDeleted)


def test_initial_contact_is_off_by_default() -> None:
    initiator, responder, client, net = _setup(initial_contact=False)
    initiator.initiate(client, 0.0)
    net.run(0.0)
    restarted = IkeEndpoint(EndpointConfig(peers=(client,)), random=counter_random(3))
    net.hosts[INITIATOR_HOST] = restarted
    restarted.initiate(client, 1.0)
    net.run(1.0)
    # Without the notify the responder cannot know the first SA is stale: it keeps both.
    assert [s.state for s in responder.sessions] == [IkeState.ESTABLISHED] * 2
