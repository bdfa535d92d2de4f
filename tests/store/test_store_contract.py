"""The `SaStore` contract, run against every store: MemoryStore, SqliteStore, RedisStore.

Tests that need a second node or a reopened store run on the shared kinds (SQLite, Redis):
a MemoryStore lives in one process and has no other node to hand anything to.
"""

from __future__ import annotations

import pytest
from store_fixtures import SHARED_KINDS, StoreFactory, add_child, make_sa

from ikecore.config import Identity
from ikecore.errors import LocalProtocolError, SequenceExhausted
from ikecore.esp import EspInbound, EspOutbound
from ikecore.store import MAX_ESN, MAX_SEQ, SaStore, WriteConflict

shared = pytest.mark.parametrize("kind", SHARED_KINDS)


def _first_child_spi(store: SaStore, n: int) -> bytes:
    sa = make_sa(n)
    store.put_ike_sa(sa)
    return next(iter(sa.child_sas))


def test_is_an_sa_store(store: SaStore) -> None:
    assert isinstance(store, SaStore)
    assert store.node_id == "local"


def test_spi_claims_are_exclusive_until_released(store: SaStore) -> None:
    ike, esp = bytes.fromhex("0102030405060708"), bytes.fromhex("c0010203")
    assert store.claim_ike_spi(ike) and not store.claim_ike_spi(ike)
    assert store.claim_esp_spi(esp) and not store.claim_esp_spi(esp)
    store.release_ike_spi(ike)
    store.release_esp_spi(esp)
    assert store.claim_ike_spi(ike) and store.claim_esp_spi(esp)
    with pytest.raises(ValueError, match="8 bytes"):
        store.claim_ike_spi(b"\x01" * 4)
    with pytest.raises(ValueError, match="4 bytes"):
        store.claim_esp_spi(b"\x01" * 8)


def test_put_then_lookups(store: SaStore) -> None:
    sas = [make_sa(n, peer="road@example.org" if n < 3 else "") for n in range(5)]
    for sa in sas:
        store.put_ike_sa(sa)
    for sa in sas:
        assert store.get_ike_sa(*sa.spis) == sa
        for spi_in in sa.child_sas:
            assert store.find_by_esp_spi(spi_in) == sa
    assert store.find_by_identity(Identity.parse("road@example.org")) == sas[:3]
    assert store.find_by_identity(Identity.parse("client4@example.org")) == [sas[4]]
    assert store.find_by_identity(Identity.parse("nobody@example.org")) == []
    assert sorted(sa.spis for sa in store.ike_sas()) == sorted(sa.spis for sa in sas)
    assert store.get_ike_sa(bytes(8), bytes(8)) is None
    assert store.find_by_esp_spi(b"\xff\xff\xff\xff") is None


def test_put_replaces_record_and_indexes(store: SaStore) -> None:
    sa = make_sa(1)
    store.put_ike_sa(sa)
    old_spi, kept_spi = list(sa.child_sas)
    loaded = store.get_ike_sa(*sa.spis)
    assert loaded is not None
    # A rekeyed Child SA: one replaced by a new one; the peer's identity changed (EAP id).
    del loaded.child_sas[old_spi]
    new_child = add_child(loaded, 99)
    loaded.next_request_id = 9
    loaded.remote_id = Identity.parse("renamed@example.org")
    store.put_ike_sa(loaded)
    assert store.find_by_esp_spi(old_spi) is None
    assert store.find_by_esp_spi(kept_spi) == loaded
    assert store.find_by_esp_spi(new_child.spi_in) == loaded
    again = store.get_ike_sa(*sa.spis)
    assert again is not None and again.next_request_id == 9
    assert store.find_by_identity(Identity.parse("client1@example.org")) == []
    assert store.find_by_identity(Identity.parse("renamed@example.org")) == [loaded]


def test_delete_removes_record_indexes_and_claims(store: SaStore) -> None:
    sa = make_sa(2)
    assert store.claim_ike_spi(sa.local_spi)
    for spi_in in sa.child_sas:
        assert store.claim_esp_spi(spi_in)
    store.put_ike_sa(sa)
    other = make_sa(3)
    store.put_ike_sa(other)
    store.delete_ike_sa(*sa.spis)
    assert store.get_ike_sa(*sa.spis) is None
    assert store.owner(*sa.spis) is None
    assert all(store.find_by_esp_spi(spi) is None for spi in sa.child_sas)
    assert store.find_by_identity(sa.remote_id) == []  # type: ignore[arg-type]
    assert [s.spis for s in store.ike_sas()] == [other.spis]
    assert store.claim_ike_spi(sa.local_spi)
    assert all(store.claim_esp_spi(spi) for spi in sa.child_sas)
    store.delete_ike_sa(*sa.spis)  # absent: no error
    assert store.get_ike_sa(*other.spis) == other


def test_owner_is_the_creating_node(store: SaStore) -> None:
    sa = make_sa(4)
    assert store.owner(*sa.spis) is None
    store.put_ike_sa(sa)
    assert store.owner(*sa.spis) == store.node_id


def test_transfer_is_compare_and_set_and_fences_the_old_owner(store: SaStore) -> None:
    sa = make_sa(5)
    store.put_ike_sa(sa)
    spi_in = next(iter(sa.child_sas))
    assert not store.transfer(sa.spis, "node-x", "node-b")  # not the owner: nothing moves
    assert store.owner(*sa.spis) == "local"
    assert store.transfer(sa.spis, "local", "node-b")
    assert store.owner(*sa.spis) == "node-b"
    assert not store.transfer(sa.spis, "local", "node-c")  # lost the race: already moved
    sa.next_request_id += 1
    with pytest.raises(WriteConflict, match="node-b"):
        store.put_ike_sa(sa)
    with pytest.raises(WriteConflict):
        store.reserve_seq(spi_in, 10)
    with pytest.raises(WriteConflict):
        store.delete_ike_sa(*sa.spis)
    assert store.owner(*sa.spis) == "node-b"
    assert not store.transfer((bytes(8), bytes(8)), "local", "node-b")


def test_reserve_seq_hands_out_disjoint_blocks(store: SaStore) -> None:
    spi_in = _first_child_spi(store, 6)  # its seq_out is 7
    assert store.reserve_seq(spi_in, 100) == 107
    assert store.reserve_seq(spi_in, 1) == 108
    assert store.reserve_seq(spi_in, 1000) == 1108
    with pytest.raises(LocalProtocolError):
        store.reserve_seq(b"\x00\x00\x00\x09", 10)
    for bad in (0, -1, 2**32):
        with pytest.raises(ValueError, match="count"):
            store.reserve_seq(spi_in, bad)


def test_put_never_lowers_a_reservation(store: SaStore) -> None:
    sa = make_sa(7)
    store.put_ike_sa(sa)
    spi_in = next(iter(sa.child_sas))
    assert store.reserve_seq(spi_in, 50) == 57
    sa.child_sas[spi_in].seq_out = 20  # the engine records what it used so far
    store.put_ike_sa(sa)
    assert store.reserve_seq(spi_in, 10) == 67
    sa.child_sas[spi_in].seq_out = 80  # past the mark (a record written without reserving)
    store.put_ike_sa(sa)
    assert store.reserve_seq(spi_in, 1) == 81


@pytest.mark.parametrize(("esn", "last"), [(False, MAX_SEQ), (True, MAX_ESN)])
def test_reserve_seq_stops_at_the_end_never_wraps(store: SaStore, esn: bool, last: int) -> None:
    sa = make_sa(8, children=1, esn=esn)
    (child,) = sa.child_sas.values()
    child.seq_out = last - 5
    store.put_ike_sa(sa)
    assert store.reserve_seq(child.spi_in, 3) == last - 2
    assert store.reserve_seq(child.spi_in, 2**32 - 1) == last  # capped, not wrapped
    with pytest.raises(SequenceExhausted):
        store.reserve_seq(child.spi_in, 1)


@shared
def test_reopened_store_has_everything(open_store: StoreFactory) -> None:
    first = open_store()
    sas = [make_sa(n) for n in range(3)]
    for sa in sas:
        first.put_ike_sa(sa)
    spi_in = next(iter(sas[0].child_sas))
    limit = first.reserve_seq(spi_in, 1000)
    first.close()  # type: ignore[attr-defined]
    reopened = open_store()
    assert sorted(s.spis for s in reopened.ike_sas()) == sorted(s.spis for s in sas)
    loaded = reopened.get_ike_sa(*sas[0].spis)
    assert loaded is not None and loaded.keys == sas[0].keys
    # Loaded at the reservation: nothing up to it may be sent again.
    assert loaded.child_sas[spi_in].seq_out == limit
    sas[0].child_sas[spi_in].seq_out = limit
    assert loaded == sas[0]
    reopened.put_ike_sa(loaded)  # read first, so the compare-and-set passes


@shared
def test_put_is_compare_and_set_against_what_was_read(open_store: StoreFactory) -> None:
    one, two = open_store(), open_store()  # two processes of one node
    sa = make_sa(9)
    one.put_ike_sa(sa)
    with pytest.raises(WriteConflict):  # never read: create-if-absent fails
        two.put_ike_sa(make_sa(9))
    mine, theirs = one.get_ike_sa(*sa.spis), two.get_ike_sa(*sa.spis)
    assert mine is not None and theirs is not None
    theirs.next_request_id = 10
    two.put_ike_sa(theirs)
    mine.next_request_id = 11
    with pytest.raises(WriteConflict, match="changed"):
        one.put_ike_sa(mine)  # lost update refused
    stored = one.get_ike_sa(*sa.spis)
    assert stored is not None and stored.next_request_id == 10
    stored.next_request_id = 12
    one.put_ike_sa(stored)  # after reading it again
    two.delete_ike_sa(*sa.spis)
    with pytest.raises(WriteConflict, match="deleted"):
        one.put_ike_sa(stored)
    assert one.get_ike_sa(*sa.spis) is None


@shared
def test_hand_off_resumes_esp_above_everything_sent(open_store: StoreFactory) -> None:
    node_a, node_b = open_store("node-a"), open_store("node-b")
    sa = make_sa(10, children=1)
    node_a.put_ike_sa(sa)
    (child,) = sa.child_sas.values()
    t = child.transforms
    # Node A sends ESP, reserving blocks of 64 before it uses them: no per-packet writes.
    outbound = EspOutbound(child.spi_out, child.key_out, t.icv_length, t.esn, child.seq_out)
    limit, sent = child.seq_out, []
    for _ in range(150):
        if outbound.seq >= limit:
            limit = node_a.reserve_seq(child.spi_in, 64)
        sent.append(outbound.encapsulate(b"\x45" + bytes(39), 4))
    child.seq_out = outbound.seq
    node_a.put_ike_sa(sa)
    assert limit == 7 + 3 * 64
    assert node_a.transfer(sa.spis, "node-a", "node-b")
    # Node B loads it: counters intact, outbound resumes above the reservation.
    loaded = node_b.get_ike_sa(*sa.spis)
    assert loaded is not None and loaded.next_request_id == sa.next_request_id
    moved = loaded.child_sas[child.spi_in]
    assert moved.seq_out == limit
    resumed = EspOutbound(moved.spi_out, moved.key_out, t.icv_length, t.esn, moved.seq_out)
    if resumed.seq >= limit:
        limit = node_b.reserve_seq(child.spi_in, 64)
    packet = resumed.encapsulate(b"\x45" + bytes(39), 4)
    # The receiver accepts everything, never a repeated sequence number (or GCM IV).
    receiver = EspInbound(child.spi_out, child.key_out, t.icv_length, t.esn, window=1024)
    seqs = [int.from_bytes(p[4:8], "big") for p in [*sent, packet]]
    for p in [*sent, packet]:
        receiver.decapsulate(p)
    assert len(set(seqs)) == len(seqs) and seqs[-1] == 7 + 3 * 64 + 1
    # The old owner is fenced: no writes, no more sequence numbers.
    with pytest.raises(WriteConflict):
        node_a.put_ike_sa(sa)
    with pytest.raises(WriteConflict):
        node_a.reserve_seq(child.spi_in, 64)
    loaded.next_request_id += 1
    node_b.put_ike_sa(loaded)
    # Back to A: A must read it again first, its old copy is stale.
    assert node_b.transfer(sa.spis, "node-b", "node-a")
    with pytest.raises(WriteConflict, match="changed"):
        node_a.put_ike_sa(sa)
    fresh = node_a.get_ike_sa(*sa.spis)
    assert fresh is not None and fresh.next_request_id == sa.next_request_id + 1
    node_a.put_ike_sa(fresh)


def test_child_sa_moved_by_an_ike_rekey_keeps_index_claim_and_reservation(
    store: SaStore,
) -> None:
    old = make_sa(11)
    for spi_in in old.child_sas:
        assert store.claim_esp_spi(spi_in)
    store.put_ike_sa(old)
    moved_spi, left_spi = list(old.child_sas)
    limit = store.reserve_seq(moved_spi, 500)
    # RFC 7296 §2.8: the new IKE SA takes over the Child SAs; then the old one goes.
    new = make_sa(12, children=0)
    new.child_sas[moved_spi] = old.child_sas[moved_spi]
    store.put_ike_sa(new)
    del old.child_sas[moved_spi]
    store.put_ike_sa(old)
    found = store.find_by_esp_spi(moved_spi)
    assert found is not None and found.spis == new.spis
    assert store.reserve_seq(moved_spi, 1) == limit + 1  # the reservation moved along
    store.delete_ike_sa(*old.spis)
    found = store.find_by_esp_spi(moved_spi)
    assert found is not None and found.spis == new.spis
    assert store.find_by_esp_spi(left_spi) is None
    assert not store.claim_esp_spi(moved_spi)  # still the new IKE SA's
    assert store.claim_esp_spi(left_spi)  # released with the old IKE SA
