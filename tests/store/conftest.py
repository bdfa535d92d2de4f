"""Fixtures of the store tests: one real redis-server for the session, stores of each kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_fixtures import STORE_KINDS, RedisServer, StoreFactory, open_kind

from ikecore.store import MemoryStore, SaStore


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's redis-server, emptied for this test."""
    redis_server.client.flushall()
    return redis_server.url


@pytest.fixture
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the test's shared store lives: a file for sqlite, a URL for redis."""
    kind = request.getfixturevalue("kind")
    if kind == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(tmp_path / "sa.db")


@pytest.fixture
def open_store(kind: str, location: str) -> Iterator[StoreFactory]:
    """Opens store objects of the test's kind on one location (another process or node of
    the same store); a memory store has only the one object."""
    opened: list[SaStore] = []
    memory = MemoryStore()

    def factory(node_id: str = "local", **options: object) -> SaStore:
        if kind == "memory":
            return memory
        store = open_kind(kind, location, node_id=node_id, **options)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()  # type: ignore[attr-defined]


@pytest.fixture(params=STORE_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(open_store: StoreFactory) -> SaStore:
    return open_store()
