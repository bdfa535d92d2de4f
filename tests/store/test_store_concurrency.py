"""Two processes racing on one store (SQLite file, Redis server): exactly one wins every
create-if-absent and compare-and-set; read-modify-write with retry loses no update."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier

import pytest
from store_fixtures import SHARED_KINDS, ike_spis, make_sa, open_kind

from ikecore.store import WriteConflict

pytestmark = pytest.mark.parametrize("kind", SHARED_KINDS)

RACES = 30
INCREMENTS = 60
_fork = multiprocessing.get_context("fork")


def _race_creates(
    kind: str, location: str, barrier: Barrier, results: multiprocessing.Queue
) -> None:
    store = open_kind(kind, location)
    won = []
    for n in range(RACES):
        barrier.wait()
        try:
            store.put_ike_sa(make_sa(n))
            won.append(n)
        except WriteConflict:
            pass
    results.put((multiprocessing.current_process().name, won))


def _race_claims(
    kind: str, location: str, barrier: Barrier, results: multiprocessing.Queue
) -> None:
    store = open_kind(kind, location)
    won = []
    for n in range(RACES):
        barrier.wait()
        if store.claim_ike_spi(ike_spis(n)[0]):
            won.append(n)
    results.put((multiprocessing.current_process().name, won))


def _race_updates(
    kind: str, location: str, barrier: Barrier, results: multiprocessing.Queue
) -> None:
    store = open_kind(kind, location)
    won = []
    for n in range(RACES):
        barrier.wait()
        sa = store.get_ike_sa(*ike_spis(n))
        assert sa is not None
        barrier.wait()  # both have read the same version
        sa.peer_name = f"writer-{multiprocessing.current_process().name}"
        try:
            store.put_ike_sa(sa)
            won.append(n)
        except WriteConflict:
            pass
    results.put((multiprocessing.current_process().name, won))


def _increment(kind: str, location: str, barrier: Barrier, results: multiprocessing.Queue) -> None:
    store = open_kind(kind, location)
    barrier.wait()
    conflicts = 0
    for _ in range(INCREMENTS):
        while True:
            sa = store.get_ike_sa(*ike_spis(0))
            assert sa is not None
            sa.next_request_id += 1
            try:
                store.put_ike_sa(sa)
                break
            except WriteConflict:
                conflicts += 1
    results.put((multiprocessing.current_process().name, conflicts))


def _run_two(target: object, kind: str, location: str) -> list[object]:
    barrier, results = _fork.Barrier(2), _fork.Queue()
    processes = [
        _fork.Process(target=target, args=(kind, location, barrier, results), name=str(i))
        for i in range(2)
    ]
    for process in processes:
        process.start()
    outcome = dict(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(10)
        assert process.exitcode == 0
    return [outcome["0"], outcome["1"]]


def test_create_if_absent_has_one_winner(kind: str, location: str) -> None:
    first, second = _run_two(_race_creates, kind, location)
    assert isinstance(first, list) and isinstance(second, list)
    assert sorted(first + second) == list(range(RACES))  # each SA created exactly once
    store = open_kind(kind, location)
    assert len(store.ike_sas()) == RACES


def test_spi_claim_has_one_winner(kind: str, location: str) -> None:
    first, second = _run_two(_race_claims, kind, location)
    assert isinstance(first, list) and isinstance(second, list)
    assert sorted(first + second) == list(range(RACES))


def test_compare_and_set_has_one_winner(kind: str, location: str) -> None:
    store = open_kind(kind, location)
    for n in range(RACES):
        store.put_ike_sa(make_sa(n))
    first, second = _run_two(_race_updates, kind, location)
    assert isinstance(first, list) and isinstance(second, list)
    assert sorted(first + second) == list(range(RACES))
    for n in range(RACES):
        sa = store.get_ike_sa(*ike_spis(n))
        assert sa is not None
        winner = "0" if n in first else "1"
        assert sa.peer_name == f"writer-{winner}"  # the winner's write, not overwritten


def test_no_lost_update(kind: str, location: str) -> None:
    store = open_kind(kind, location)
    sa = make_sa(0)
    store.put_ike_sa(sa)
    _run_two(_increment, kind, location)
    final = store.get_ike_sa(*sa.spis)
    assert final is not None and final.next_request_id == sa.next_request_id + 2 * INCREMENTS
