"""Key material at rest: sealed under the store key, bound to its SPIs, loud when wrong."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest
import redis
from store_fixtures import OTHER_KEY, SHARED_KINDS, STORE_KEY, StoreFactory, make_sa, open_kind
from store_record_reference import reference_encode

from ikecore.errors import IntegrityError, MalformedMessage
from ikecore.sa import IkeSa, SpiPair
from ikecore.store import MemoryStore, RedisStore, SqliteStore, codec, open_store, sealing
from ikecore.store.sealing import RecordSealer

shared = pytest.mark.parametrize("kind", SHARED_KINDS)


def _secrets(sa: IkeSa) -> list[bytes]:
    assert sa.keys is not None
    keys = [getattr(sa.keys, name) for name in sa.keys.__slots__]
    for child in sa.child_sas.values():
        keys += [child.key_in, child.key_out]
    return keys


def _sa_key(spis: SpiPair) -> str:
    return f"ikecore:sa:{spis[0].hex()}{spis[1].hex()}"


def _raw_record(kind: str, location: str, spis: SpiPair) -> bytes:
    if kind == "sqlite":
        with sqlite3.connect(location) as db:
            (record,) = db.execute(
                "SELECT record FROM ike_sa WHERE spi_i = ? AND spi_r = ?", spis
            ).fetchone()
        return bytes(record)
    value = redis.Redis.from_url(location).hget(_sa_key(spis), "record")
    assert isinstance(value, bytes)
    return value


def _set_raw_record(kind: str, location: str, spis: SpiPair, record: bytes) -> None:
    if kind == "sqlite":
        with sqlite3.connect(location) as db:
            db.execute(
                "UPDATE ike_sa SET record = ? WHERE spi_i = ? AND spi_r = ?", (record, *spis)
            )
    else:
        redis.Redis.from_url(location).hset(_sa_key(spis), "record", record)


def _everything_stored(kind: str, location: str) -> bytes:
    if kind == "sqlite":
        return b"".join(p.read_bytes() for p in Path(location).parent.glob("sa.db*"))
    client = redis.Redis.from_url(location)
    return b"".join(client.dump(key) or b"" for key in client.keys("*"))


def _put_as_before_the_upgrade(
    open_store: StoreFactory,
    monkeypatch: pytest.MonkeyPatch,
    sas: list[IkeSa],
    record_format: int,
) -> None:
    """Store ``sas`` as the ikecore of ``record_format`` did (the reference encoder's records
    under that header byte)."""
    with monkeypatch.context() as before_the_upgrade:
        before_the_upgrade.setattr(sealing, "_FORMAT", str(record_format).encode())
        before_the_upgrade.setattr(codec, "encode", lambda sa: reference_encode(sa, record_format))
        old = open_store("A")
        for sa in sas:
            old.put_ike_sa(sa)


SALT = slice(12, 44)
IV = slice(44, 52)


def test_sealer_round_trip_with_a_fresh_iv_per_record() -> None:
    sealer, other = RecordSealer(STORE_KEY), RecordSealer(STORE_KEY)
    sa = make_sa(1)
    first, second, third = sealer.seal(sa), sealer.seal(sa), other.seal(sa)
    # One sealer: one subkey (its salt), a counter IV; another sealer: another subkey.
    assert first[SALT] == second[SALT] != third[SALT]
    assert first[IV] == bytes(8) and second[IV] == (1).to_bytes(8, "big")
    for record in (first, second, third):
        assert sealer.open(record, *sa.spis) == sa == other.open(record, *sa.spis)
        assert not any(
            secret in record or secret.hex().encode() in record for secret in _secrets(sa)
        )


def test_forked_sealer_takes_a_new_subkey() -> None:
    """A child process continuing its parent's counter under the parent's subkey would reuse
    its IVs: the sealer notices the new process id and takes a new salt."""
    sealer = RecordSealer(STORE_KEY)
    sa = make_sa(1)
    parent_record = sealer.seal(sa)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: seal once, send the record, leave without pytest's cleanup
        os.close(read_end)
        os.write(write_end, sealer.seal(sa))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_record = pipe.read()
    assert os.waitpid(pid, 0)[1] == 0
    assert child_record[SALT] != parent_record[SALT]
    assert sealer.open(child_record, *sa.spis) == sa
    assert sealer.seal(sa)[SALT] == parent_record[SALT]  # the parent keeps its own


def test_threads_sharing_a_sealer_never_draw_the_same_iv() -> None:
    sealer = RecordSealer(STORE_KEY)
    sa = make_sa(2)
    records: list[bytes] = []

    def seal_many() -> None:
        records.extend(sealer.seal(sa) for _ in range(300))

    threads = [threading.Thread(target=seal_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({record[SALT] for record in records}) == 1
    assert sorted(int.from_bytes(record[IV], "big") for record in records) == list(range(1200))


def test_sealer_takes_a_new_subkey_before_its_counter_runs_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sealing, "_RECORDS_PER_SUBKEY", 3)  # instead of 2^32
    sealer = RecordSealer(STORE_KEY)
    sa = make_sa(3)
    records = [sealer.seal(sa) for _ in range(7)]
    salts = [record[SALT] for record in records]
    assert salts[0] == salts[2] != salts[3] == salts[5] != salts[6] != salts[0]
    assert [int.from_bytes(r[IV], "big") for r in records] == [0, 1, 2, 0, 1, 2, 0]
    assert all(sealer.open(record, *sa.spis) == sa for record in records)


def test_sealer_refuses_bad_keys() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        RecordSealer(b"short")
    with pytest.raises(TypeError, match="bytes"):
        RecordSealer("a text passphrase!!")  # type: ignore[arg-type]


def test_sealer_wrong_key_is_integrity_error() -> None:
    sa = make_sa(2)
    record = RecordSealer(STORE_KEY).seal(sa)
    with pytest.raises(IntegrityError):
        RecordSealer(OTHER_KEY).open(record, *sa.spis)


def test_sealer_every_corruption_is_malformed() -> None:
    sealer = RecordSealer(STORE_KEY)
    sa = make_sa(3)
    record = sealer.seal(sa)
    key_id = slice(4, 12)
    for offset in range(len(record)):
        corrupt = bytearray(record)
        corrupt[offset] ^= 0x01
        expected = IntegrityError if key_id.start <= offset < key_id.stop else MalformedMessage
        with pytest.raises(expected):
            sealer.open(bytes(corrupt), *sa.spis)
    for length in (0, 10, 47, 48, 100, len(record) - 1):
        with pytest.raises(MalformedMessage):
            sealer.open(record[:length], *sa.spis)
    with pytest.raises(MalformedMessage):
        sealer.open(record + b"\x00", *sa.spis)


def test_sealer_record_is_bound_to_its_spis() -> None:
    sealer = RecordSealer(STORE_KEY)
    one, two = make_sa(4), make_sa(5)
    with pytest.raises(MalformedMessage, match="authenticate"):
        sealer.open(sealer.seal(one), *two.spis)


@shared
def test_no_plaintext_key_in_the_store(kind: str, location: str, open_store: StoreFactory) -> None:
    store = open_store()
    sas = [make_sa(n) for n in range(4)]
    for sa in sas:
        store.put_ike_sa(sa)
    stored = _everything_stored(kind, location)
    assert sas[0].spi_i.hex().encode() in stored  # the search does see what is stored
    for sa in sas:
        for secret in _secrets(sa):
            assert secret not in stored and secret.hex().encode() not in stored


@shared
def test_wrong_store_key_fails_loudly(kind: str, location: str, open_store: StoreFactory) -> None:
    sa = make_sa(6)
    open_store().put_ike_sa(sa)
    wrong = open_kind(kind, location, key=OTHER_KEY)
    with pytest.raises(IntegrityError):
        wrong.get_ike_sa(*sa.spis)
    with pytest.raises(IntegrityError):
        wrong.find_by_esp_spi(next(iter(sa.child_sas)))
    with pytest.raises(IntegrityError):
        wrong.ike_sas()
    wrong.close()  # type: ignore[attr-defined]


@shared
def test_corrupt_or_swapped_record_is_malformed(
    kind: str, location: str, open_store: StoreFactory
) -> None:
    store = open_store()
    one, two = make_sa(7), make_sa(8)
    store.put_ike_sa(one)
    store.put_ike_sa(two)
    record_one = _raw_record(kind, location, one.spis)
    # Swapped: SA 7's record stored under SA 8's SPIs does not open.
    _set_raw_record(kind, location, two.spis, record_one)
    with pytest.raises(MalformedMessage):
        store.get_ike_sa(*two.spis)
    for offset in (0, 50, len(record_one) // 2, len(record_one) - 1):
        corrupt = bytearray(record_one)
        corrupt[offset] ^= 0x80
        _set_raw_record(kind, location, one.spis, bytes(corrupt))
        with pytest.raises(MalformedMessage):
            store.get_ike_sa(*one.spis)
        with pytest.raises(MalformedMessage):
            store.find_by_esp_spi(next(iter(one.child_sas)))
    _set_raw_record(kind, location, one.spis, record_one)
    assert store.get_ike_sa(*one.spis) == one


@shared
def test_a_store_of_format_2_records_keeps_working_after_the_upgrade(
    kind: str, location: str, open_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records the ikecore before format 3 wrote (format 2: the reference encoder's, under the
    header byte "2") are read with the MOBIKE fields defaulted; an SA saved again is
    written in format 5, with its MOBIKE state."""
    sas = [make_sa(n) for n in range(3)]
    for sa in sas:
        sa.mobike_initiator = sa.initiator  # what a format-2 record is read with
    _put_as_before_the_upgrade(open_store, monkeypatch, sas, 2)
    assert {_raw_record(kind, location, sa.spis)[:4] for sa in sas} == {b"IKS2"}
    upgraded = open_store("A")
    assert sorted(upgraded.ike_sas(), key=lambda sa: sa.spis) == sorted(sas, key=lambda sa: sa.spis)
    first = upgraded.get_ike_sa(*sas[0].spis)
    assert first is not None and first == sas[0]
    assert (first.peer_addresses, first.mobike_update_id, first.nat_seen_as) == ((), -1, b"")
    spi_in = next(iter(sas[1].child_sas))
    found = upgraded.find_by_esp_spi(spi_in)
    assert found is not None and found.spis == sas[1].spis
    # The SA goes on (RFC 4555 state arrives) and is saved again: now a format-5 record.
    first.peer_addresses = ("192.0.2.1", "2001:db8::1")
    first.mobike_update_id = 6
    first.nat_seen_as = bytes(range(20))
    upgraded.put_ike_sa(first)
    assert _raw_record(kind, location, first.spis)[:4] == b"IKS5"
    assert _raw_record(kind, location, sas[2].spis)[:4] == b"IKS2"  # untouched: still read
    again = open_store("A")
    assert again.get_ike_sa(*first.spis) == first
    assert again.get_ike_sa(*sas[2].spis) == sas[2]


@shared
def test_a_store_of_format_3_records_keeps_working_after_the_upgrade(
    kind: str, location: str, open_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records the ikecore before format 4 wrote (with the MOBIKE state, without the MOBIKE
    role) are read with the role of the I flag; saved again, they are format 5 and keep a
    role that differs from the I flag (the responder rekeyed the SA, RFC 4555 §1.3)."""
    sas = [make_sa(n) for n in range(2)]
    for n, sa in enumerate(sas):
        sa.peer_addresses = (sa.remote_address[0], f"198.51.100.{n}")
        sa.mobike_update_id = n
        sa.mobike_initiator = sa.initiator
    _put_as_before_the_upgrade(open_store, monkeypatch, sas, 3)
    assert {_raw_record(kind, location, sa.spis)[:4] for sa in sas} == {b"IKS3"}
    upgraded = open_store("A")
    first = upgraded.get_ike_sa(*sas[0].spis)
    assert first is not None and first == sas[0]
    assert upgraded.get_ike_sa(*sas[1].spis) == sas[1]
    first.initiator = not first.initiator  # a rekey by the other end: the I flag moves
    upgraded.put_ike_sa(first)
    assert _raw_record(kind, location, first.spis)[:4] == b"IKS5"
    again = open_store("A").get_ike_sa(*first.spis)
    assert again == first and again.mobike_initiator != again.initiator


@shared
def test_a_store_of_format_4_records_keeps_working_after_the_upgrade(
    kind: str, location: str, open_store: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records the ikecore before format 5 wrote (without the response cache) are read with
    none; saved again with a response, they are format 5 and keep it."""
    sas = [make_sa(n) for n in range(2)]
    for sa in sas:
        sa.mobike_initiator = not sa.initiator  # format 4 keeps the role apart from the I flag
    _put_as_before_the_upgrade(open_store, monkeypatch, sas, 4)
    assert {_raw_record(kind, location, sa.spis)[:4] for sa in sas} == {b"IKS4"}
    upgraded = open_store("A")
    first = upgraded.get_ike_sa(*sas[0].spis)
    assert first is not None and first == sas[0] and first.responses is None
    assert upgraded.get_ike_sa(*sas[1].spis) == sas[1]
    # The peer's request #2 is answered (RFC 7296 §2.2: the response is kept for it).
    first.responses = {2: (b"request #2", (b"response #2",))}
    first.next_peer_request_id = 3
    upgraded.put_ike_sa(first)
    assert _raw_record(kind, location, first.spis)[:4] == b"IKS5"
    assert _raw_record(kind, location, sas[1].spis)[:4] == b"IKS4"  # untouched: still read
    again = open_store("A").get_ike_sa(*first.spis)
    assert again == first and again.responses == {2: (b"request #2", (b"response #2",))}


def test_open_store_urls(tmp_path: Path, redis_url: str) -> None:
    assert isinstance(open_store("memory:"), MemoryStore)
    sqlite_store = open_store(f"sqlite:{tmp_path}/a.db?node=gw1", STORE_KEY)
    assert isinstance(sqlite_store, SqliteStore) and sqlite_store.node_id == "gw1"
    assert (tmp_path / "a.db").exists()
    redis_store = open_store(redis_url + "?node=gw2", STORE_KEY)
    assert isinstance(redis_store, RedisStore) and redis_store.node_id == "gw2"
    redis_store.put_ike_sa(make_sa(9))
    assert redis_store.get_ike_sa(*make_sa(9).spis) == make_sa(9)
    sqlite_store.close()
    redis_store.close()
    with pytest.raises(ValueError, match="needs a key"):
        open_store(f"sqlite:{tmp_path}/b.db")
    for bad in ("etcd://127.0.0.1:2379", "sqlite:", "sqlite:x.db?colour=red"):
        with pytest.raises(ValueError):
            open_store(bad, STORE_KEY)
