"""SqliteStore specifics: sqlite3's errors become the store's. A write lock held too long by
another process, a file that cannot be opened, disk trouble: StoreUnavailable; a file that is
not a database, a corrupt one, an unknown schema: StoreError. No sqlite3 exception escapes."""

from __future__ import annotations

import multiprocessing
import sqlite3
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
from store_fixtures import STORE_KEY, make_sa

from ikecore.store import SqliteStore, StoreError, StoreUnavailable


def test_write_lock_held_elsewhere_is_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "sa.db"
    store = SqliteStore(path, STORE_KEY, timeout=0.05)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    with pytest.raises(StoreUnavailable, match="locked"):
        store.put_ike_sa(make_sa(1))
    other.execute("ROLLBACK")
    store.put_ike_sa(make_sa(1))  # nothing half-done: the same create succeeds now
    assert store.get_ike_sa(*make_sa(1).spis) == make_sa(1)
    other.close()
    store.close()


def test_unknown_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sa.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 7")
    with pytest.raises(StoreError, match="schema 7"):
        SqliteStore(path, STORE_KEY)


@pytest.mark.parametrize("where", ["missing directory", "a directory"])
def test_unopenable_path_is_store_unavailable(tmp_path: Path, where: str) -> None:
    path = tmp_path / "missing" / "sa.db" if where == "missing directory" else tmp_path
    with pytest.raises(StoreUnavailable, match="unable to open database file") as caught:
        SqliteStore(path, STORE_KEY)
    assert str(path) in str(caught.value)


def test_file_that_is_not_a_database_is_store_error(tmp_path: Path) -> None:
    path = tmp_path / "sa.db"
    path.write_bytes(b"these are not the pages you are looking for" * 200)
    with pytest.raises(StoreError, match="not a database") as caught:
        SqliteStore(path, STORE_KEY)
    assert not isinstance(caught.value, StoreUnavailable)


def test_corrupt_database_pages_are_store_error_on_every_operation(tmp_path: Path) -> None:
    path = tmp_path / "sa.db"
    store = SqliteStore(path, STORE_KEY)
    for n in range(200):
        store.put_ike_sa(make_sa(n))
    store.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    for start in range(3 * page, len(data), 3 * page):  # b-tree pages of both tables
        data[start : start + 100] = b"\xff" * 100
    path.write_bytes(bytes(data))
    store = SqliteStore(path, STORE_KEY)
    sa = make_sa(5)
    operations = {
        "ike_sas": store.ike_sas,
        "get_ike_sa": lambda: store.get_ike_sa(*sa.spis),
        "find_by_esp_spi": lambda: store.find_by_esp_spi(next(iter(sa.child_sas))),
        "find_by_identity": lambda: store.find_by_identity(make_sa(7).remote_id),
        "put_ike_sa": lambda: store.put_ike_sa(make_sa(1000)),
    }
    for name, operation in operations.items():
        with pytest.raises(StoreError, match="malformed"):
            operation()
        assert not store._db.in_transaction, name  # a failed write was rolled back
    store.close()


def test_failed_write_leaves_nothing_half_done(tmp_path: Path) -> None:
    """A write that fails inside its transaction is rolled back whole: the store is usable
    and the SA reads as it was before."""
    path = tmp_path / "sa.db"
    store = SqliteStore(path, STORE_KEY, timeout=0.05)
    sa = make_sa(1)
    store.put_ike_sa(sa)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN IMMEDIATE")
    changed = store.get_ike_sa(*sa.spis)
    assert changed is not None
    changed.next_request_id += 5
    with pytest.raises(StoreUnavailable, match="locked"):
        store.put_ike_sa(changed)
    with pytest.raises(StoreUnavailable, match="locked"):
        store.reserve_seq(next(iter(sa.child_sas)), 64)
    reader.execute("ROLLBACK")
    reader.close()
    assert store.get_ike_sa(*sa.spis) == sa
    store.put_ike_sa(changed)  # the compare-and-set still expects the version it read
    assert store.get_ike_sa(*sa.spis) == changed
    store.close()


def test_update_while_the_write_lock_is_held_elsewhere_is_store_unavailable(
    tmp_path: Path,
) -> None:
    """The single-statement update of a record (no index row changes) waits for the write
    lock like a transaction does, and changes nothing when it cannot get it."""
    path = tmp_path / "sa.db"
    store = SqliteStore(path, STORE_KEY, timeout=0.05)
    sa = make_sa(1)
    store.put_ike_sa(sa)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    sa.next_request_id += 1
    with pytest.raises(StoreUnavailable, match="locked"):
        store.put_ike_sa(sa)
    other.execute("ROLLBACK")
    stored = SqliteStore(path, STORE_KEY).get_ike_sa(*sa.spis)
    assert stored is not None and stored.next_request_id == sa.next_request_id - 1
    store.put_ike_sa(sa)  # the version it read is still the stored one
    stored = SqliteStore(path, STORE_KEY).get_ike_sa(*sa.spis)
    assert stored is not None and stored.next_request_id == sa.next_request_id
    other.close()
    store.close()


def test_record_read_while_its_child_sa_is_indexed_under_another_resumes_above_it(
    tmp_path: Path,
) -> None:
    """Between the two writes of an IKE SA rekey (RFC 7296 §2.8) the old record still lists
    the Child SA that the new one took over: loading it starts that Child SA's seq_out at its
    reservation all the same (read by its SPI, not under the old SA)."""
    store = SqliteStore(tmp_path / "sa.db", STORE_KEY)
    old = make_sa(11)
    store.put_ike_sa(old)
    moved_spi, kept_spi = list(old.child_sas)
    moved_limit = store.reserve_seq(moved_spi, 500)
    kept_limit = store.reserve_seq(kept_spi, 300)
    new = make_sa(12, children=0)
    new.child_sas[moved_spi] = old.child_sas[moved_spi]
    store.put_ike_sa(new)
    loaded = SqliteStore(tmp_path / "sa.db", STORE_KEY).get_ike_sa(*old.spis)
    assert loaded is not None
    assert loaded.child_sas[moved_spi].seq_out == moved_limit
    assert loaded.child_sas[kept_spi].seq_out == kept_limit
    store.close()


def _open_and_put(path: Path, barrier: Barrier, results: multiprocessing.Queue, n: int) -> None:
    barrier.wait()  # all openers at once, on a file none of them has set up yet
    try:
        store = SqliteStore(path, STORE_KEY)
        store.put_ike_sa(make_sa(n))
        store.close()
        results.put("ok")
    except StoreError as exc:
        results.put(str(exc))


def test_processes_opening_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    # Gateway nodes started together on a new store file: each switches it to WAL mode and
    # creates the schema. SQLite refuses a concurrent switch at once ("database is locked",
    # without the busy timeout); before the fix most runs failed within the first 10 rounds.
    fork = multiprocessing.get_context("fork")
    for round_number in range(30):
        path = tmp_path / f"{round_number}.db"
        barrier, results = fork.Barrier(3), fork.Queue()
        openers = [
            fork.Process(target=_open_and_put, args=(path, barrier, results, n)) for n in range(3)
        ]
        for opener in openers:
            opener.start()
        outcomes = [results.get(timeout=60) for _ in openers]
        for opener in openers:
            opener.join(10)
        assert outcomes == ["ok"] * 3, f"round {round_number}: {outcomes}"
        assert len(SqliteStore(path, STORE_KEY).ike_sas()) == 3
