"""Three Redis nodes on loopback (a primary and two replicas): the primary is SIGKILLed in the
middle of a stream of SA writes; the most advanced replica is promoted (what Sentinel would
do) and has every SA and reservation the store acknowledged (``replicas=1``: WAIT)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from store_fixtures import STORE_KEY, RedisServer, free_port, make_sa

from ikecore.errors import MalformedMessage
from ikecore.store import RedisStore, StoreUnavailable


def _replication(server: RedisServer) -> dict[str, object]:
    info: dict[str, object] = server.client.info("replication")
    return info


def _wait_linked(replica: RedisServer) -> None:
    deadline = time.monotonic() + 15
    while _replication(replica).get("master_link_status") != "up":
        assert time.monotonic() < deadline, "replica did not link to its primary"
        time.sleep(0.02)


def test_primary_killed_mid_run_no_acknowledged_sa_lost(tmp_path: Path) -> None:
    # No delay before a full sync (Redis waits 5 s by default for more replicas to join).
    no_delay = ("--repl-diskless-sync-delay", "0")
    primary = RedisServer(tmp_path / "node1", *no_delay)
    replicas = [
        RedisServer(tmp_path / f"node{i}", *no_delay, "--replicaof", "127.0.0.1", str(primary.port))
        for i in (2, 3)
    ]
    try:
        for replica in replicas:
            _wait_linked(replica)
        store = RedisStore(primary.url, "gw-a", STORE_KEY, replicas=1, replica_timeout=1.0)
        acknowledged: dict[int, int] = {}  # SA number -> reserved sequence high-water mark
        failures: list[StoreUnavailable] = []

        def write() -> None:
            for n in range(100_000):
                sa = make_sa(n, children=1)
                try:
                    store.put_ike_sa(sa)
                    limit = store.reserve_seq(next(iter(sa.child_sas)), 1000)
                except StoreUnavailable as exc:
                    failures.append(exc)
                    return
                acknowledged[n] = limit

        writer = threading.Thread(target=write)
        writer.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 150 and writer.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        primary.kill()  # mid-run: the writer is between (or inside) writes
        writer.join(30)
        assert not writer.is_alive() and len(failures) == 1
        assert len(acknowledged) >= 150
        store.close()

        # Failover: promote the replica that has seen most of the primary's stream.
        offsets = [int(str(_replication(r)["master_repl_offset"])) for r in replicas]
        promoted, other = sorted(replicas, key=lambda r: offsets[replicas.index(r)])[::-1]
        promoted.client.replicaof("NO", "ONE")
        other.client.replicaof("127.0.0.1", promoted.port)
        _wait_linked(other)

        survivor = RedisStore(promoted.url, "gw-a", STORE_KEY, replicas=1, replica_timeout=1.0)
        for n, limit in acknowledged.items():
            original = make_sa(n, children=1)
            loaded = survivor.get_ike_sa(*original.spis)
            assert loaded is not None, f"acknowledged SA {n} lost in the failover"
            (child,) = loaded.child_sas.values()
            assert child.seq_out == limit  # the reservation survived too: no reuse
            child.seq_out = original.child_sas[child.spi_in].seq_out
            assert loaded == original
        # The cluster goes on: the loaded SAs are written on the new primary and replicated.
        loaded = survivor.get_ike_sa(*make_sa(0).spis)
        assert loaded is not None
        loaded.next_request_id += 1
        survivor.put_ike_sa(loaded)
        replica_view = RedisStore(other.url, "reader", STORE_KEY)
        replicated = replica_view.get_ike_sa(*loaded.spis)
        assert replicated is not None and replicated.next_request_id == loaded.next_request_id
        survivor.close()
        replica_view.close()
    finally:
        for server in [primary, *replicas]:
            server.stop()


def _every_operation(store: RedisStore) -> dict[str, Callable[[], object]]:
    sa = make_sa(1)
    spi_in = next(iter(sa.child_sas))
    remote_id = sa.remote_id
    assert remote_id is not None
    return {
        "put_ike_sa": lambda: store.put_ike_sa(make_sa(1)),
        "get_ike_sa": lambda: store.get_ike_sa(*sa.spis),
        "find_by_esp_spi": lambda: store.find_by_esp_spi(spi_in),
        "find_by_identity": lambda: store.find_by_identity(remote_id),
        "ike_sas": store.ike_sas,
        "delete_ike_sa": lambda: store.delete_ike_sa(*sa.spis),
        "owner": lambda: store.owner(*sa.spis),
        "transfer": lambda: store.transfer(sa.spis, "gw-a", "gw-b"),
        "reserve_seq": lambda: store.reserve_seq(spi_in, 64),
        "claim_ike_spi": lambda: store.claim_ike_spi(sa.spi_i),
        "release_ike_spi": lambda: store.release_ike_spi(sa.spi_i),
        "claim_esp_spi": lambda: store.claim_esp_spi(spi_in),
        "release_esp_spi": lambda: store.release_esp_spi(spi_in),
    }


def test_unreachable_server_is_store_unavailable() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", "gw-a", STORE_KEY)
    for operation in _every_operation(store).values():
        with pytest.raises(StoreUnavailable, match="redis store"):
            operation()
    store.close()


def test_corrupt_hash_fields_are_malformed(redis_url: str) -> None:
    """Fields beside the sealed record (version, reservations) that do not parse are a
    corrupt record too: MalformedMessage, not a ValueError."""
    store = RedisStore(redis_url, "gw-a", STORE_KEY)
    sa = make_sa(3)
    store.put_ike_sa(sa)
    client = redis.Redis.from_url(redis_url)
    key = f"ikecore:sa:{sa.spi_i.hex()}{sa.spi_r.hex()}"
    seq_field = "seq:" + next(iter(sa.child_sas)).hex()
    for field, value in ((seq_field, "not hex"), ("version", "seven")):
        good = client.hget(key, field)
        assert good is not None
        client.hset(key, field, value)
        with pytest.raises(MalformedMessage, match="corrupt"):
            store.get_ike_sa(*sa.spis)
        with pytest.raises(MalformedMessage, match="corrupt"):
            store.find_by_esp_spi(next(iter(sa.child_sas)))
        client.hset(key, field, good)
    assert store.get_ike_sa(*sa.spis) == sa
    client.close()
    store.close()


def test_server_killed_mid_run_is_store_unavailable(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    store = RedisStore(server.url, "gw-a", STORE_KEY, socket_timeout=1.0)
    try:
        store.put_ike_sa(make_sa(1))
        assert store.get_ike_sa(*make_sa(1).spis) == make_sa(1)
        server.kill()
        for operation in _every_operation(store).values():
            with pytest.raises(StoreUnavailable, match="redis store"):
                operation()
    finally:
        store.close()
        server.stop()


def test_write_without_its_replicas_is_store_unavailable(redis_url: str) -> None:
    # The session's server has no replica: WAIT 1 times out, the write is not confirmed.
    store = RedisStore(redis_url, "gw-a", STORE_KEY, replicas=1, replica_timeout=0.05)
    with pytest.raises(StoreUnavailable, match="0 of 1 replicas"):
        store.put_ike_sa(make_sa(2))
    store.close()
