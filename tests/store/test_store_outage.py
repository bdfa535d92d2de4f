"""A store that cannot answer in the middle of an exchange (StoreUnavailable from an SPI claim:
SQLite's write lock held by another process past the timeout). The datagram is as good as
lost: nothing escapes `receive_datagram` or `handle_timer`, the session (if any) is dropped
with what it queued, and the peer's retransmission is served once the store answers again."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_harness import (
    RESPONDER_HOST,
    Network,
    counter_random,
    drain,
    of_type,
    pair,
    pair_from,
    peer_configs,
)
from store_fixtures import STORE_KEY

from ikecore.config import PeerConfig
from ikecore.endpoint import IkeEndpoint
from ikecore.events import ChildSaEstablished, IkeSaDeleted, IkeSaEstablished
from ikecore.states import IkeState
from ikecore.store import SqliteStore


class _WriteLock:
    """Another process holding the SQLite file's write lock (BEGIN IMMEDIATE)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)

    def hold(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self._db.execute("ROLLBACK")

    def close(self) -> None:
        self._db.close()


@pytest.fixture
def gateway_store(tmp_path: Path) -> Iterator[tuple[SqliteStore, _WriteLock]]:
    store = SqliteStore(tmp_path / "sa.db", STORE_KEY, timeout=0.05)
    lock = _WriteLock(tmp_path / "sa.db")
    yield store, lock
    lock.close()
    store.close()


def _gateway_on(store: SqliteStore) -> tuple[IkeEndpoint, IkeEndpoint, PeerConfig, Network]:
    """A client and a gateway whose SAs live in ``store``."""
    client, gateway, peer, net = pair()
    node = IkeEndpoint(gateway.config, store, random=counter_random(2))
    net.hosts[RESPONDER_HOST] = node
    return client, node, peer, net


def test_an_ike_sa_init_that_cannot_claim_an_spi_is_as_if_lost(
    gateway_store: tuple[SqliteStore, _WriteLock],
) -> None:
    store, lock = gateway_store
    client, node, peer, net = _gateway_on(store)
    lock.hold()
    # IKE_SA_INIT -->  (the gateway cannot claim its SPI: no answer, nothing kept)
    session = client.initiate(peer, 0.0)
    assert [str(d) for d in net.run(0.0)] == ["IKE_SA_INIT --> #0"]
    assert node.sessions == [] and node.half_open_count == 0
    lock.release()
    # The client retransmits (RFC 7296 §2.1): IKE_SA_INIT <-->, IKE_AUTH <-->
    client.handle_timer(1.0)
    net.run(1.0)
    assert session.state == IkeState.ESTABLISHED
    assert len(of_type(drain(node), IkeSaEstablished)) == 1


def test_a_request_that_cannot_claim_an_spi_drops_the_session_until_the_retransmission(
    gateway_store: tuple[SqliteStore, _WriteLock],
) -> None:
    store, lock = gateway_store
    client, node, peer, net = _gateway_on(store)
    session = client.initiate(peer, 0.0)
    net.run(0.0)
    drain(node)
    lock.hold()
    # CREATE_CHILD_SA -->  (the gateway cannot claim the new Child SA's SPI)
    session.create_child_sa(1.0)
    assert [str(d) for d in net.run(1.0)] == ["CREATE_CHILD_SA --> #2"]
    (gone,) = of_type(drain(node), IkeSaDeleted)
    assert isinstance(gone, IkeSaDeleted) and gone.reason == "store_unavailable"
    assert node.sessions == []
    lock.release()
    # CREATE_CHILD_SA --> (retransmitted; the record is loaded again)  <-- CREATE_CHILD_SA
    client.handle_timer(2.0)
    assert [str(d) for d in net.run(2.0)] == ["CREATE_CHILD_SA --> #2", "CREATE_CHILD_SA <-- #2"]
    (loaded,) = node.sessions
    assert len(loaded.child_sas) == 2 and len(session.child_sas) == 2
    assert len(of_type(drain(node), ChildSaEstablished)) == 1


def test_a_timer_whose_work_cannot_claim_an_spi_drops_the_session_not_the_timer(
    tmp_path: Path,
) -> None:
    client, gateway = peer_configs()
    gateway = dataclasses.replace(gateway, ike_rekey_time=10.0)
    initiator, _, net = pair_from(client, gateway)
    store = SqliteStore(tmp_path / "sa.db", STORE_KEY, timeout=0.05)
    lock = _WriteLock(tmp_path / "sa.db")
    node = IkeEndpoint(
        dataclasses.replace(net.hosts[RESPONDER_HOST].config), store, random=counter_random(2)
    )
    net.hosts[RESPONDER_HOST] = node
    session = initiator.initiate(client, 0.0)
    net.run(0.0)
    drain(node)
    deadline = node.get_timer()
    assert deadline is not None and deadline <= 10.0
    lock.hold()
    node.handle_timer(deadline)  # the gateway's IKE SA rekey cannot claim its new SPI
    (gone,) = of_type(drain(node), IkeSaDeleted)
    assert isinstance(gone, IkeSaDeleted) and gone.reason == "store_unavailable"
    assert node.sessions == [] and net.capture(deadline) == []
    lock.release()
    # The client's next request loads the SA again: INFORMATIONAL -->  <-- INFORMATIONAL
    session.check_liveness(deadline + 1)
    assert [str(d) for d in net.run(deadline + 1)] == [
        "INFORMATIONAL --> #2",
        "INFORMATIONAL <-- #2",
    ]
    assert len(node.sessions) == 1
    lock.close()
    store.close()
