"""`SqliteStore`: the embedded persistent store of a single gateway (stdlib ``sqlite3``).

Durability: WAL journal with ``synchronous=FULL``, one transaction per state change (``BEGIN
IMMEDIATE`` … ``COMMIT``). A change is on disk when the call returns, so a kill -9 (or a power
loss) loses nothing that was committed; FULL rather than NORMAL because a lost sequence-number
reservation would let a restarted process reuse ESP sequence numbers, i.e. AES-GCM IVs.

Several processes may share the file (two gateway processes, or nodes on one machine):
``BEGIN IMMEDIATE`` takes SQLite's write lock before the compare-and-set reads the owner and
version, so of two racing writers exactly one wins; the other gets `WriteConflict`.

Tables: ``ike_sa`` (SPI pair -> owner, version, peer identity, sealed record), ``child_sa``
(inbound ESP SPI -> SPI pair, ESN flag, reserved sequence high-water mark), ``ike_spi`` and
``esp_spi`` (claimed SPIs). Sequence numbers are 8-byte big-endian BLOBs (ESN needs 64 bits
unsigned, SQLite integers are signed).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ikecore.config import Identity
from ikecore.errors import LocalProtocolError, SequenceExhausted
from ikecore.sa import IkeSa, SpiPair
from ikecore.store import MAX_ESN, MAX_SEQ, StoreUnavailable, WriteConflict
from ikecore.store.sealing import RecordSealer

__all__ = ["SqliteStore"]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS ike_sa (
    spi_i BLOB NOT NULL, spi_r BLOB NOT NULL, owner TEXT NOT NULL, version INTEGER NOT NULL,
    local_spi BLOB NOT NULL, remote_id BLOB, record BLOB NOT NULL,
    PRIMARY KEY (spi_i, spi_r)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ike_sa_by_remote_id ON ike_sa (remote_id);
CREATE TABLE IF NOT EXISTS child_sa (
    spi_in BLOB PRIMARY KEY, spi_i BLOB NOT NULL, spi_r BLOB NOT NULL, esn INTEGER NOT NULL,
    seq_reserved BLOB NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS child_sa_by_ike_sa ON child_sa (spi_i, spi_r);
CREATE TABLE IF NOT EXISTS ike_spi (spi BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS esp_spi (spi BLOB PRIMARY KEY) WITHOUT ROWID;
"""


def _identity_key(identity: Identity | None) -> bytes | None:
    return None if identity is None else bytes([identity.type]) + identity.data


def _marks(count: int) -> str:
    """SQL parameter marks for a list of ``count`` values."""
    return ",".join("?" * count)


def _seq(value: int) -> bytes:
    return value.to_bytes(8, "big")


class SqliteStore:
    """An `SaStore` in an SQLite file; key material sealed under ``key`` (see sealing.py)."""

    def __init__(
        self, path: str | Path, key: bytes, *, node_id: str = "local", timeout: float = 10.0
    ) -> None:
        self._sealer = RecordSealer(key)
        self._node_id = node_id
        # Version of each record as this object last read or wrote it (compare-and-set).
        self._seen: dict[SpiPair, int] = {}
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE in _write).
        self._db = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        try:
            with self._write():
                (version,) = self._db.execute("PRAGMA user_version").fetchone()
                if version not in (0, _SCHEMA_VERSION):
                    raise ValueError(
                        f"{path}: store schema {version}, this ikecore reads {_SCHEMA_VERSION}"
                    )
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction holding the write lock from its start (no lost update)."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # locked past the timeout, disk trouble
            raise StoreUnavailable(f"sqlite store: {exc}") from None
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            db.execute("ROLLBACK")
            raise StoreUnavailable(f"sqlite store: {exc}") from None

    # -- SPI claims ----------------------------------------------------------------------------

    def claim_ike_spi(self, spi: bytes) -> bool:
        if len(spi) != 8:
            raise ValueError("an IKE SPI is 8 bytes")
        with self._write() as db:
            return db.execute("INSERT OR IGNORE INTO ike_spi VALUES (?)", (spi,)).rowcount == 1

    def release_ike_spi(self, spi: bytes) -> None:
        with self._write() as db:
            db.execute("DELETE FROM ike_spi WHERE spi = ?", (spi,))

    def claim_esp_spi(self, spi: bytes) -> bool:
        if len(spi) != 4:
            raise ValueError("an ESP SPI is 4 bytes")
        with self._write() as db:
            return db.execute("INSERT OR IGNORE INTO esp_spi VALUES (?)", (spi,)).rowcount == 1

    def release_esp_spi(self, spi: bytes) -> None:
        with self._write() as db:
            db.execute("DELETE FROM esp_spi WHERE spi = ?", (spi,))

    # -- records -------------------------------------------------------------------------------

    def put_ike_sa(self, sa: IkeSa) -> None:
        spi_i, spi_r = key = sa.spis
        record = self._sealer.seal(sa)
        seen = self._seen.get(key)
        with self._write() as db:
            # Compare-and-set in one statement: create if absent, or update the version read.
            if seen is None:
                changed = db.execute(
                    "INSERT OR IGNORE INTO ike_sa VALUES (?, ?, ?, 1, ?, ?, ?)",
                    (
                        spi_i,
                        spi_r,
                        self._node_id,
                        sa.local_spi,
                        _identity_key(sa.remote_id),
                        record,
                    ),
                ).rowcount
            else:
                changed = db.execute(
                    "UPDATE ike_sa SET version = ?, local_spi = ?, remote_id = ?, record = ? "
                    "WHERE spi_i = ? AND spi_r = ? AND owner = ? AND version = ?",
                    (
                        seen + 1,
                        sa.local_spi,
                        _identity_key(sa.remote_id),
                        record,
                        spi_i,
                        spi_r,
                        self._node_id,
                        seen,
                    ),
                ).rowcount
            if changed != 1:
                row = db.execute(
                    "SELECT owner, version FROM ike_sa WHERE spi_i = ? AND spi_r = ?", key
                ).fetchone()
                raise self._conflict(key, row)
            version = 1 if seen is None else seen + 1
            # This SA's index rows, and the rows of its Child SAs wherever they are (a Child SA
            # moves to the new IKE SA of a rekey, RFC 7296 §2.8: its reservation moves along).
            spis = list(sa.child_sas)
            rows = db.execute(
                "SELECT spi_in, spi_i, spi_r, seq_reserved FROM child_sa "
                f"WHERE spi_i = ? AND spi_r = ? OR spi_in IN ({_marks(len(spis))})",
                (*key, *spis),
            ).fetchall()
            indexed = {
                spi_in: ((row_i, row_r), reserved) for spi_in, row_i, row_r, reserved in rows
            }
            for spi_in, (owner_sa, _) in indexed.items():
                if owner_sa == key and spi_in not in sa.child_sas:
                    db.execute("DELETE FROM child_sa WHERE spi_in = ?", (spi_in,))
            for spi_in, child in sa.child_sas.items():
                indexed_under, reserved = indexed.get(spi_in, (None, None))
                mark = child.seq_out if reserved is None else int.from_bytes(reserved, "big")
                if indexed_under != key or mark < child.seq_out:
                    db.execute(
                        "INSERT OR REPLACE INTO child_sa VALUES (?, ?, ?, ?, ?)",
                        (
                            spi_in,
                            spi_i,
                            spi_r,
                            child.transforms.esn,
                            _seq(max(mark, child.seq_out)),
                        ),
                    )
        self._seen[key] = version

    def _conflict(self, key: SpiPair, row: tuple[str, int] | None) -> WriteConflict:
        """Why the compare-and-set of ``key`` failed, given its row as it is now."""
        name = f"IKE SA {key[0].hex()}/{key[1].hex()}"
        if row is None:
            return WriteConflict(f"{name} was deleted")
        if row[0] != self._node_id:
            return WriteConflict(f"{name} belongs to {row[0]}")
        return WriteConflict(f"{name} changed since this store read it")

    def _load(self, spi_i: bytes, spi_r: bytes, version: int, record: bytes) -> IkeSa:
        sa = self._sealer.open(record, spi_i, spi_r)
        spis = list(sa.child_sas)
        for spi_in, reserved in self._db.execute(
            f"SELECT spi_in, seq_reserved FROM child_sa WHERE spi_in IN ({_marks(len(spis))})",
            spis,
        ):
            child = sa.child_sas.get(spi_in)
            if child is not None:
                # Resume above every number that may have been sent (reserved or recorded).
                child.seq_out = max(child.seq_out, int.from_bytes(reserved, "big"))
        self._seen[(spi_i, spi_r)] = version
        return sa

    def get_ike_sa(self, spi_i: bytes, spi_r: bytes) -> IkeSa | None:
        row = self._db.execute(
            "SELECT version, record FROM ike_sa WHERE spi_i = ? AND spi_r = ?", (spi_i, spi_r)
        ).fetchone()
        return None if row is None else self._load(spi_i, spi_r, *row)

    def find_by_esp_spi(self, spi_in: bytes) -> IkeSa | None:
        row = self._db.execute(
            "SELECT s.spi_i, s.spi_r, s.version, s.record FROM child_sa AS c "
            "JOIN ike_sa AS s ON s.spi_i = c.spi_i AND s.spi_r = c.spi_r WHERE c.spi_in = ?",
            (spi_in,),
        ).fetchone()
        return None if row is None else self._load(*row)

    def find_by_identity(self, remote_id: Identity) -> list[IkeSa]:
        rows = self._db.execute(
            "SELECT spi_i, spi_r, version, record FROM ike_sa WHERE remote_id = ? "
            "ORDER BY spi_i, spi_r",
            (_identity_key(remote_id),),
        ).fetchall()
        return [self._load(*row) for row in rows]

    def delete_ike_sa(self, spi_i: bytes, spi_r: bytes) -> None:
        key = (spi_i, spi_r)
        with self._write() as db:
            row = db.execute(
                "SELECT owner, local_spi FROM ike_sa WHERE spi_i = ? AND spi_r = ?", key
            ).fetchone()
            if row is None:
                return
            owner, local_spi = row
            if owner != self._node_id:
                raise WriteConflict(f"IKE SA {spi_i.hex()}/{spi_r.hex()} belongs to {owner}")
            db.execute(
                "DELETE FROM esp_spi WHERE spi IN "
                "(SELECT spi_in FROM child_sa WHERE spi_i = ? AND spi_r = ?)",
                key,
            )
            db.execute("DELETE FROM child_sa WHERE spi_i = ? AND spi_r = ?", key)
            db.execute("DELETE FROM ike_sa WHERE spi_i = ? AND spi_r = ?", key)
            db.execute("DELETE FROM ike_spi WHERE spi = ?", (local_spi,))
        self._seen.pop(key, None)

    def ike_sas(self) -> list[IkeSa]:
        rows = self._db.execute(
            "SELECT spi_i, spi_r, version, record FROM ike_sa ORDER BY spi_i, spi_r"
        ).fetchall()
        return [self._load(*row) for row in rows]

    # -- ownership and sequence numbers --------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._node_id

    def owner(self, spi_i: bytes, spi_r: bytes) -> str | None:
        row = self._db.execute(
            "SELECT owner FROM ike_sa WHERE spi_i = ? AND spi_r = ?", (spi_i, spi_r)
        ).fetchone()
        return None if row is None else str(row[0])

    def transfer(self, spis: SpiPair, from_node: str, to_node: str) -> bool:
        with self._write() as db:
            moved = db.execute(
                "UPDATE ike_sa SET owner = ?, version = version + 1 "
                "WHERE spi_i = ? AND spi_r = ? AND owner = ?",
                (to_node, *spis, from_node),
            ).rowcount
        # Whoever gets it must read it first (even this object, if it comes back here).
        self._seen.pop(spis, None)
        return moved == 1

    def reserve_seq(self, spi_in: bytes, count: int) -> int:
        if not isinstance(count, int) or not 1 <= count <= MAX_SEQ:
            raise ValueError("count must be an int from 1 to 2^32 - 1")
        with self._write() as db:
            row = db.execute(
                "SELECT s.owner, c.esn, c.seq_reserved FROM child_sa AS c "
                "JOIN ike_sa AS s ON s.spi_i = c.spi_i AND s.spi_r = c.spi_r WHERE c.spi_in = ?",
                (spi_in,),
            ).fetchone()
            if row is None:
                raise LocalProtocolError(f"no stored Child SA with inbound SPI {spi_in.hex()}")
            owner, esn, reserved_bytes = row
            if owner != self._node_id:
                raise WriteConflict(f"Child SA {spi_in.hex()} belongs to {owner}")
            last = MAX_ESN if esn else MAX_SEQ
            reserved = int.from_bytes(reserved_bytes, "big")
            if reserved >= last:
                raise SequenceExhausted(f"Child SA {spi_in.hex()}: no sequence numbers left")
            limit = min(reserved + count, last)
            db.execute(
                "UPDATE child_sa SET seq_reserved = ? WHERE spi_in = ?", (_seq(limit), spi_in)
            )
        return limit
