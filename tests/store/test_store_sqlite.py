"""SqliteStore specifics: a write lock held too long by another process is StoreUnavailable,
and a database of an unknown schema is refused."""

from __future__ import annotations

import sqlite3
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
