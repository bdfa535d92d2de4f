"""INITIAL_CONTACT (RFC 7296 §3.10.1): an initiator that restarted tells the responder, which
drops its stale IKE SAs (and their clones and Child SAs) with that identity."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from engine_harness import (
    INITIATOR_HOST,
    RESPONDER_HOST,
    Network,
    counter_random,
    drain,
    of_type,
    pair_from,
    peer_configs,
)

from ikecore.config import EndpointConfig, Identity, PeerConfig
from ikecore.constants import ExchangeType
from ikecore.endpoint import IkeEndpoint
from ikecore.events import ChildSaDeleted, IkeSaDeleted, IkeSaEstablished
from ikecore.states import IkeState
from ikecore.store import MemoryStore, SqliteStore

_SECOND_HOST = "192.0.2.2"
_KEY = bytes(range(32))


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


@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_initial_contact_drops_only_the_sas_of_that_identity(
    store_kind: str, tmp_path: Path
) -> None:
    # A gateway with two clients; the first restarts. Its stale SAs are found through the
    # store's identity index (not a pass over every SA), and the other client's SA stays.
    first_client, gateway_for_first = peer_configs()
    first_client = dataclasses.replace(first_client, initial_contact=True)
    other = Identity.parse("other-client.example")
    second_client = dataclasses.replace(
        first_client, local_id=other, local_address=(_SECOND_HOST, 500), name="second"
    )
    gateway_for_second = dataclasses.replace(gateway_for_first, remote_id=other, name="second")
    store = MemoryStore() if store_kind == "memory" else SqliteStore(tmp_path / "sa.db", _KEY)
    gateway = IkeEndpoint(
        EndpointConfig(
            peers=(gateway_for_first, gateway_for_second),
            ike_proposals=gateway_for_first.ike_proposals,
        ),
        store,
        random=counter_random(2),
    )
    first = IkeEndpoint(EndpointConfig(peers=(first_client,)), random=counter_random(1))
    second = IkeEndpoint(EndpointConfig(peers=(second_client,)), random=counter_random(4))
    net = Network({INITIATOR_HOST: first, _SECOND_HOST: second, RESPONDER_HOST: gateway})
    # IKE_SA_INIT <-->  IKE_AUTH {IDi, AUTH, N(INITIAL_CONTACT), ...} -->  <-- IKE_AUTH, twice
    stale = first.initiate(first_client, 0.0)
    kept = second.initiate(second_client, 0.0)
    net.run(0.0)
    assert stale.state == IkeState.ESTABLISHED == kept.state
    assert [s.sa.remote_id for s in gateway.sessions_with(other)] == [other]
    drain(gateway)

    restarted = IkeEndpoint(EndpointConfig(peers=(first_client,)), random=counter_random(3))
    net.hosts[INITIATOR_HOST] = restarted
    # IKE_SA_INIT <-->  IKE_AUTH {IDi, AUTH, N(INITIAL_CONTACT), ...} -->  <-- IKE_AUTH
    restarted.initiate(first_client, 1.0)
    net.run(1.0)
    deleted = of_type(drain(gateway), IkeSaDeleted)
    assert [e.session.sa.spi_i for e in deleted] == [stale.sa.spi_i]  # type: ignore[attr-defined]
    assert sorted(s.sa.remote_id.data for s in gateway.sessions) == [  # type: ignore[union-attr]
        b"client.example",
        b"other-client.example",
    ]
    assert all(s.state == IkeState.ESTABLISHED for s in gateway.sessions)
