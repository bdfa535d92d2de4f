"""SA stores: writes and lookups per second, next to the raw client doing the same I/O.

- ``memory lookup by SPI pair`` / ``memory lookup by ESP SPI``: MemoryStore against a plain
  dict read ("peer"): the target is >= 1,000,000 lookups/s.
- ``sqlite put SA <n>B``: SqliteStore against stdlib ``sqlite3`` with the same settings (WAL,
  synchronous=FULL) doing the same write: "peer" = the same compare-and-set (one ``UPDATE
  ... WHERE version = ?`` of a BLOB of the sealed record's size, its own transaction);
  "peer-bare" = only the BLOB write in a ``BEGIN IMMEDIATE`` transaction.
- ``redis put SA <n>B``: RedisStore against the ``redis`` client on the same server: "peer" =
  the same compare-and-set by hand (``WATCH``, ``HGET`` version, ``MULTI``/``HSET``/``EXEC``:
  redis-py's documented optimistic-locking pattern), "peer-bare" = one ``HSET`` of the
  same-size value (no compare-and-set, no indexes: the floor of a round trip).
- every sqlite group twice: databases on ``disk`` and on ``tmpfs`` (see ``medium``).
- ``sqlite get SA <n>B`` / ``redis get SA <n>B``: a lookup by SPI pair (unsealed, decoded into
  an IkeSa) against reading the same-size BLOB/value.
- ``... reserve 64 seq``: one sequence-number reservation (per 64 ESP packets) against the
  raw single-row/field increment in its transaction.

The store's put encodes the record (binary format 4, _fast/record.pyx), seals its keys
(AES-GCM under the sealer's subkey, sealing.py), and checks owner and version and writes the
record in one UPDATE; the index rows (Child SA SPIs, reservations, identity) are written, in one
transaction with the record, only when they change, as after a Child SA is added.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from store_fixtures import STORE_KEY, RedisServer, make_sa

from ikecore.store import MemoryStore, RedisStore, SqliteStore
from ikecore.store.sealing import RecordSealer

# Memory lookups take ~100 ns: rounds of at least 50 us after a warm-up, so the timer's own
# cost does not swamp them (as in test_esp.py).
pytestmark = pytest.mark.benchmark(min_time=50e-6, warmup=True, warmup_iterations=2000)

SAS = 1000
SA = make_sa(SAS // 2)
RECORD_SIZE = len(RecordSealer(STORE_KEY).seal(SA))


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def _tag(benchmark: Any, group: str, impl: str) -> None:
    benchmark.group = group
    benchmark.extra_info["impl"] = impl


# --- memory -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def memory_store() -> MemoryStore:
    store = MemoryStore()
    for n in range(SAS):
        store.put_ike_sa(make_sa(n))
    return store


def test_memory_lookup_by_spi_pair(benchmark: Any, memory_store: MemoryStore) -> None:
    _tag(benchmark, "memory lookup by SPI pair", "ikecore")
    spi_i, spi_r = SA.spis
    assert benchmark(memory_store.get_ike_sa, spi_i, spi_r) is not None


def test_memory_lookup_by_spi_pair_dict(benchmark: Any) -> None:
    _tag(benchmark, "memory lookup by SPI pair", "peer")
    table = {make_sa(n).spis: make_sa(n) for n in range(SAS)}
    spi_i, spi_r = SA.spis
    assert benchmark(lambda: table.get((spi_i, spi_r))) is not None


def test_memory_lookup_by_esp_spi(benchmark: Any, memory_store: MemoryStore) -> None:
    _tag(benchmark, "memory lookup by ESP SPI", "ikecore")
    spi_in = next(iter(SA.child_sas))
    assert benchmark(memory_store.find_by_esp_spi, spi_in) is not None


def test_memory_lookup_by_esp_spi_dict(benchmark: Any) -> None:
    _tag(benchmark, "memory lookup by ESP SPI", "peer")
    table = {spi: sa for sa in map(make_sa, range(SAS)) for spi in sa.child_sas}
    spi_in = next(iter(SA.child_sas))
    assert benchmark(table.get, spi_in) is not None


# --- sqlite -------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["disk", "tmpfs"])
def medium(request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """Where the databases live: the disk (every commit waits for fsync, whose latency on
    shared machines swings from 0.05 to 4 ms) or tmpfs (no fsync wait: the CPU cost alone)."""
    if request.param == "disk":
        yield "disk", request.getfixturevalue("tmp_path_factory").mktemp("sqlite")
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:
        yield "tmpfs", Path(directory)


@pytest.fixture(scope="module")
def sqlite_store(medium: tuple[str, Path]) -> Iterator[SqliteStore]:
    store = SqliteStore(medium[1] / "sa.db", STORE_KEY)
    for n in range(SAS):
        store.put_ike_sa(make_sa(n))
    yield store
    store.close()


@pytest.fixture(scope="module")
def raw_sqlite(medium: tuple[str, Path]) -> Iterator[sqlite3.Connection]:
    path = medium[1] / "raw.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE sa (spi_i BLOB, spi_r BLOB, version INTEGER, record BLOB, "
        "PRIMARY KEY (spi_i, spi_r)) WITHOUT ROWID"
    )
    for n in range(SAS):
        db.execute("INSERT INTO sa VALUES (?, ?, 1, ?)", (*make_sa(n).spis, bytes(RECORD_SIZE)))
    yield db
    db.close()


def test_sqlite_put(benchmark: Any, sqlite_store: SqliteStore, medium: tuple[str, Path]) -> None:
    _tag(benchmark, f"sqlite put SA {RECORD_SIZE}B {medium[0]}", "ikecore")
    sa = sqlite_store.get_ike_sa(*SA.spis)
    assert sa is not None

    def put() -> None:
        sa.next_request_id += 1
        sqlite_store.put_ike_sa(sa)

    benchmark(put)
    stored = sqlite_store.get_ike_sa(*SA.spis)
    assert stored is not None and stored.next_request_id == sa.next_request_id


def test_sqlite_put_raw(
    benchmark: Any, raw_sqlite: sqlite3.Connection, medium: tuple[str, Path]
) -> None:
    _tag(benchmark, f"sqlite put SA {RECORD_SIZE}B {medium[0]}", "peer")
    record = bytes(RECORD_SIZE)
    seen = [1]

    def put() -> None:
        # One UPDATE in autocommit mode is its own transaction (the write lock taken as the
        # statement starts), the cheapest compare-and-set SQLite offers, as SqliteStore does.
        version = seen[0]
        changed = raw_sqlite.execute(
            "UPDATE sa SET version = ?, record = ? WHERE spi_i = ? AND spi_r = ? AND version = ?",
            (version + 1, record, *SA.spis, version),
        ).rowcount
        assert changed == 1
        seen[0] = version + 1

    benchmark(put)


def test_sqlite_put_raw_bare(
    benchmark: Any, raw_sqlite: sqlite3.Connection, medium: tuple[str, Path]
) -> None:
    _tag(benchmark, f"sqlite put SA {RECORD_SIZE}B {medium[0]}", "peer-bare")
    record = bytes(RECORD_SIZE)
    spis = make_sa(SAS + 1).spis

    def put() -> None:
        raw_sqlite.execute("BEGIN IMMEDIATE")
        raw_sqlite.execute("INSERT OR REPLACE INTO sa VALUES (?, ?, 1, ?)", (*spis, record))
        raw_sqlite.execute("COMMIT")

    benchmark(put)


def test_sqlite_get(benchmark: Any, sqlite_store: SqliteStore, medium: tuple[str, Path]) -> None:
    _tag(benchmark, f"sqlite get SA {RECORD_SIZE}B {medium[0]}", "ikecore")
    assert benchmark(sqlite_store.get_ike_sa, *SA.spis) is not None


def test_sqlite_get_raw(
    benchmark: Any, raw_sqlite: sqlite3.Connection, medium: tuple[str, Path]
) -> None:
    _tag(benchmark, f"sqlite get SA {RECORD_SIZE}B {medium[0]}", "peer")
    query = "SELECT record FROM sa WHERE spi_i = ? AND spi_r = ?"
    assert benchmark(lambda: raw_sqlite.execute(query, SA.spis).fetchone()) is not None


def test_sqlite_reserve(
    benchmark: Any, sqlite_store: SqliteStore, medium: tuple[str, Path]
) -> None:
    _tag(benchmark, f"sqlite reserve 64 seq {medium[0]}", "ikecore")
    spi_in = next(iter(SA.child_sas))
    assert benchmark(sqlite_store.reserve_seq, spi_in, 64) > 0


def test_sqlite_reserve_raw(
    benchmark: Any, raw_sqlite: sqlite3.Connection, medium: tuple[str, Path]
) -> None:
    _tag(benchmark, f"sqlite reserve 64 seq {medium[0]}", "peer")
    raw_sqlite.execute("CREATE TABLE IF NOT EXISTS seq (spi BLOB PRIMARY KEY, hwm INTEGER)")
    raw_sqlite.execute("INSERT OR REPLACE INTO seq VALUES (?, 0)", (b"spi1",))

    def reserve() -> None:
        raw_sqlite.execute("BEGIN IMMEDIATE")
        raw_sqlite.execute("UPDATE seq SET hwm = hwm + 64 WHERE spi = ?", (b"spi1",))
        raw_sqlite.execute("COMMIT")

    benchmark(reserve)


# --- redis --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_store(redis_server: RedisServer) -> Iterator[RedisStore]:
    redis_server.client.flushall()
    store = RedisStore(redis_server.url, "bench", STORE_KEY)
    for n in range(SAS):
        store.put_ike_sa(make_sa(n))
    yield store
    store.close()


@pytest.fixture(scope="module")
def raw_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def test_redis_put(benchmark: Any, redis_store: RedisStore) -> None:
    _tag(benchmark, f"redis put SA {RECORD_SIZE}B", "ikecore")
    sa = redis_store.get_ike_sa(*SA.spis)
    assert sa is not None

    def put() -> None:
        sa.next_request_id += 1
        redis_store.put_ike_sa(sa)

    benchmark(put)
    stored = redis_store.get_ike_sa(*SA.spis)
    assert stored is not None and stored.next_request_id == sa.next_request_id


def test_redis_put_raw(benchmark: Any, raw_redis: redis.Redis) -> None:
    _tag(benchmark, f"redis put SA {RECORD_SIZE}B", "peer")
    record = bytes(RECORD_SIZE)
    key = "raw:sa:" + SA.spi_i.hex() + SA.spi_r.hex()
    raw_redis.hset(key, mapping={"version": 1, "record": record})
    seen = [1]

    def put() -> None:
        with raw_redis.pipeline() as pipe:
            pipe.watch(key)
            version = int(pipe.hget(key, "version"))
            assert version == seen[0]
            pipe.multi()
            pipe.hset(key, mapping={"version": version + 1, "record": record})
            pipe.execute()
        seen[0] = version + 1

    benchmark(put)


def test_redis_put_raw_bare(benchmark: Any, raw_redis: redis.Redis) -> None:
    _tag(benchmark, f"redis put SA {RECORD_SIZE}B", "peer-bare")
    record = bytes(RECORD_SIZE)
    key = "raw:bare:" + SA.spi_i.hex() + SA.spi_r.hex()
    benchmark(raw_redis.hset, key, "record", record)


def test_redis_get(benchmark: Any, redis_store: RedisStore) -> None:
    _tag(benchmark, f"redis get SA {RECORD_SIZE}B", "ikecore")
    assert benchmark(redis_store.get_ike_sa, *SA.spis) is not None


def test_redis_get_raw(benchmark: Any, raw_redis: redis.Redis) -> None:
    _tag(benchmark, f"redis get SA {RECORD_SIZE}B", "peer")
    key = "raw:sa:" + SA.spi_i.hex() + SA.spi_r.hex()
    raw_redis.hset(key, "record", bytes(RECORD_SIZE))
    assert benchmark(raw_redis.hget, key, "record") is not None


def test_redis_reserve(benchmark: Any, redis_store: RedisStore) -> None:
    _tag(benchmark, "redis reserve 64 seq", "ikecore")
    spi_in = next(iter(SA.child_sas))
    assert benchmark(redis_store.reserve_seq, spi_in, 64) > 0


def test_redis_reserve_raw(benchmark: Any, raw_redis: redis.Redis) -> None:
    _tag(benchmark, "redis reserve 64 seq", "peer")
    assert benchmark(raw_redis.hincrby, "raw:seq", "spi1", 64) > 0
