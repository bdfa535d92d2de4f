"""`SqliteStore`: the embedded persistent store of a single gateway (stdlib ``sqlite3``).

Durability: WAL journal with ``synchronous=FULL``, one transaction per state change (``BEGIN
IMMEDIATE`` … ``COMMIT``, or a lone ``UPDATE`` in autocommit mode, which is its own
transaction). A change is on disk when the call returns, so a kill -9 (or a power loss) loses
nothing that was committed; FULL rather than NORMAL because a lost sequence-number reservation
would let a restarted process reuse ESP sequence numbers, i.e. AES-GCM IVs.

Several processes may share the file (two gateway processes, or nodes on one machine): a write
takes SQLite's write lock before the compare-and-set reads the owner and version (``BEGIN
IMMEDIATE``, or the single ``UPDATE … WHERE owner = ? AND version = ?`` of a write that
touches no index row), so of two racing writers exactly one wins; the other gets
`WriteConflict`.

Tables: ``ike_sa`` (SPI pair -> owner, version, peer identity, sealed record), ``child_sa``
(inbound ESP SPI -> SPI pair, ESN flag, reserved sequence high-water mark), ``ike_spi`` and
``esp_spi`` (claimed SPIs). Sequence numbers are 8-byte big-endian BLOBs (ESN needs 64 bits
unsigned, SQLite integers are signed).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from ikecore.config import Identity
from ikecore.errors import LocalProtocolError, SequenceExhausted
from ikecore.sa import IkeSa, SpiPair
from ikecore.store import MAX_ESN, MAX_SEQ, StoreError, StoreUnavailable, WriteConflict
from ikecore.store.sealing import RecordSealer

__all__ = ["SqliteStore"]

# 2: records of format 2 or 3 (sealing.py; the tables are the same). A file of schema 1 holds
# JSON records (format 1), which this ikecore does not read: it is refused when opened, to be
# recreated.
_SCHEMA_VERSION = 2
_SCHEMA_1 = " (its SA records are of format 1: recreate the store)"
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


class _SqliteErrors:
    """Maps sqlite3's errors to the store's: a locked database (past the timeout), a file
    that cannot be opened or written, disk I/O trouble (OperationalError) are
    `StoreUnavailable`; any other (a file that is not a database, a corrupt one) is a
    `StoreError`. A context manager, reused for every statement outside a transaction."""

    __slots__ = ("_path",)

    def __init__(self, path: str) -> None:
        self._path = path

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _: TracebackType | None
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            raise self.mapped(exc) from None

    def mapped(self, exc: sqlite3.Error) -> StoreError:
        if isinstance(exc, sqlite3.OperationalError):
            return StoreUnavailable(f"sqlite store {self._path}: {exc}")
        return StoreError(f"sqlite store {self._path}: {exc}")


class _Transaction:
    """One transaction holding the write lock from its start (no lost update): BEGIN
    IMMEDIATE on entry, COMMIT on a normal exit, ROLLBACK on an exception. A context manager
    reused for every write; sqlite3 errors are mapped as `_SqliteErrors` says."""

    __slots__ = ("_db", "_errors")

    def __init__(self, db: sqlite3.Connection, errors: _SqliteErrors) -> None:
        self._db = db
        self._errors = errors

    def __enter__(self) -> sqlite3.Connection:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # locked past the timeout, disk trouble
            raise self._errors.mapped(exc) from None
        return self._db

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _: TracebackType | None
    ) -> None:
        try:
            if exc is None:
                self._db.execute("COMMIT")
                return
        except sqlite3.Error as commit_error:
            exc = commit_error
        if self._db.in_transaction:
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # SQLite may have rolled back already (I/O error, full disk)
        if isinstance(exc, sqlite3.Error):
            raise self._errors.mapped(exc) from None


# How often a new store file's switch to WAL is tried again after another connection's (see
# _enter_wal_mode); each retry first waits, up to the busy timeout, for that connection.
_WAL_ATTEMPTS = 20


def _enter_wal_mode(db: sqlite3.Connection) -> None:
    """PRAGMA journal_mode=WAL, also when other processes open the same new file at once.

    Switching a file from the rollback journal to WAL needs an exclusive lock, and when
    another connection holds a lock at that moment (its own switch, its schema transaction)
    SQLite answers "database is locked" at once, without waiting out the busy timeout. BEGIN
    IMMEDIATE does wait for it; once that connection is done, the switch is tried again (a
    file already in WAL mode makes the pragma a read)."""
    for _ in range(_WAL_ATTEMPTS):
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):  # SQLITE_BUSY's message; anything else is real
                raise
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
    db.execute("PRAGMA journal_mode=WAL")  # the last try: its error is the caller's


@dataclass(slots=True)
class _Seen:
    """A record as this object last read or wrote it: what its compare-and-set expects."""

    version: int
    remote_id: bytes | None
    # The reservation high-water mark of each Child SA indexed under the record: a lower
    # bound (only reserve_seq raises a mark, and never lowers it).
    marks: dict[bytes, int]


class SqliteStore:
    """An `SaStore` in an SQLite file; key material sealed under ``key`` (see sealing.py)."""

    def __init__(
        self, path: str | Path, key: bytes, *, node_id: str = "local", timeout: float = 10.0
    ) -> None:
        self._sealer = RecordSealer(key)
        self._node_id = node_id
        # Each record as this object last read or wrote it (compare-and-set).
        self._seen: dict[SpiPair, _Seen] = {}
        self._errors = _SqliteErrors(str(path))
        with self._errors:
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE in _write).
            self._db = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
        try:
            with self._errors:
                _enter_wal_mode(self._db)
                self._db.execute("PRAGMA synchronous=FULL")
            self._write = _Transaction(self._db, self._errors)
            with self._write:
                (version,) = self._db.execute("PRAGMA user_version").fetchone()
                if version not in (0, _SCHEMA_VERSION):
                    raise StoreError(
                        f"sqlite store {path}: schema {version}, this ikecore reads "
                        f"{_SCHEMA_VERSION}" + (_SCHEMA_1 if version == 1 else "")
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

    # -- SPI claims ----------------------------------------------------------------------------

    def claim_ike_spi(self, spi: bytes) -> bool:
        if len(spi) != 8:
            raise ValueError("an IKE SPI is 8 bytes")
        with self._write as db:
            return db.execute("INSERT OR IGNORE INTO ike_spi VALUES (?)", (spi,)).rowcount == 1

    def release_ike_spi(self, spi: bytes) -> None:
        with self._write as db:
            db.execute("DELETE FROM ike_spi WHERE spi = ?", (spi,))

    def claim_esp_spi(self, spi: bytes) -> bool:
        if len(spi) != 4:
            raise ValueError("an ESP SPI is 4 bytes")
        with self._write as db:
            return db.execute("INSERT OR IGNORE INTO esp_spi VALUES (?)", (spi,)).rowcount == 1

    def release_esp_spi(self, spi: bytes) -> None:
        with self._write as db:
            db.execute("DELETE FROM esp_spi WHERE spi = ?", (spi,))

    # -- records -------------------------------------------------------------------------------

    def put_ike_sa(self, sa: IkeSa) -> None:
        spi_i, spi_r = key = sa.spis
        record = self._sealer.seal(sa)
        remote_id = _identity_key(sa.remote_id)
        seen = self._seen.get(key)
        children = sa.child_sas
        # The same Child SAs as the version read or written (indexed then), none past its
        # reservation: the index rows are right as they are.
        indexed = (
            seen is not None
            and seen.marks.keys() == children.keys()
            and all(child.seq_out <= seen.marks[spi] for spi, child in children.items())
        )
        if indexed and seen is not None and remote_id == seen.remote_id:
            # Most writes (message IDs, windows, counters): the compare-and-set of the record
            # is the whole change. One UPDATE in autocommit mode is its own transaction: SQLite
            # takes the write lock when the statement starts (as BEGIN IMMEDIATE does) and
            # commits, durably, when it ends.
            with self._errors:
                changed = self._db.execute(
                    "UPDATE ike_sa SET version = ?, record = ? "
                    "WHERE spi_i = ? AND spi_r = ? AND owner = ? AND version = ?",
                    (seen.version + 1, record, spi_i, spi_r, self._node_id, seen.version),
                ).rowcount
                if changed != 1:
                    raise self._conflict(key, self._current(key))
            seen.version += 1
            return
        with self._write as db:
            # Compare-and-set in one statement: create if absent, or update the version read.
            if seen is None:
                changed = db.execute(
                    "INSERT OR IGNORE INTO ike_sa VALUES (?, ?, ?, 1, ?, ?, ?)",
                    (spi_i, spi_r, self._node_id, sa.local_spi, remote_id, record),
                ).rowcount
            else:
                changed = db.execute(
                    "UPDATE ike_sa SET version = ?, remote_id = ?, record = ? "
                    "WHERE spi_i = ? AND spi_r = ? AND owner = ? AND version = ?",
                    (
                        seen.version + 1,
                        remote_id,
                        record,
                        spi_i,
                        spi_r,
                        self._node_id,
                        seen.version,
                    ),
                ).rowcount
            if changed != 1:
                raise self._conflict(key, self._current(key))
            marks = seen.marks if indexed and seen is not None else self._index_children(db, sa)
        self._seen[key] = _Seen(1 if seen is None else seen.version + 1, remote_id, marks)

    @staticmethod
    def _index_children(db: sqlite3.Connection, sa: IkeSa) -> dict[bytes, int]:
        """Points the index rows of ``sa``'s Child SAs at it, with reservations at least their
        ``seq_out``; drops the rows of its Child SAs that are gone. Returns the marks."""
        spi_i, spi_r = key = sa.spis
        # This SA's index rows, and the rows of its Child SAs wherever they are (a Child SA
        # moves to the new IKE SA of a rekey, RFC 7296 §2.8: its reservation moves along).
        spis = list(sa.child_sas)
        rows = db.execute(
            "SELECT spi_in, spi_i, spi_r, seq_reserved FROM child_sa "
            f"WHERE spi_i = ? AND spi_r = ? OR spi_in IN ({_marks(len(spis))})",
            (*key, *spis),
        ).fetchall()
        indexed = {spi_in: ((row_i, row_r), reserved) for spi_in, row_i, row_r, reserved in rows}
        for spi_in, (owner_sa, _) in indexed.items():
            if owner_sa == key and spi_in not in sa.child_sas:
                db.execute("DELETE FROM child_sa WHERE spi_in = ?", (spi_in,))
        marks = {}
        for spi_in, child in sa.child_sas.items():
            indexed_under, reserved = indexed.get(spi_in, (None, None))
            mark = child.seq_out if reserved is None else int.from_bytes(reserved, "big")
            marks[spi_in] = max(mark, child.seq_out)
            if indexed_under != key or mark < child.seq_out:
                db.execute(
                    "INSERT OR REPLACE INTO child_sa VALUES (?, ?, ?, ?, ?)",
                    (spi_in, spi_i, spi_r, child.transforms.esn, _seq(marks[spi_in])),
                )
        return marks

    def _current(self, key: SpiPair) -> tuple[str, int] | None:
        """The owner and version of ``key``'s row as it is now (None if there is none)."""
        row: tuple[str, int] | None = self._db.execute(
            "SELECT owner, version FROM ike_sa WHERE spi_i = ? AND spi_r = ?", key
        ).fetchone()
        return row

    def _conflict(self, key: SpiPair, row: tuple[str, int] | None) -> WriteConflict:
        """Why the compare-and-set of ``key`` failed, given its row as it is now."""
        name = f"IKE SA {key[0].hex()}/{key[1].hex()}"
        if row is None:
            return WriteConflict(f"{name} was deleted")
        if row[0] != self._node_id:
            return WriteConflict(f"{name} belongs to {row[0]}")
        return WriteConflict(f"{name} changed since this store read it")

    def _rows(self, query: str, parameters: Sequence[object]) -> list[Any]:
        """The rows of a read outside a transaction (sqlite3 errors mapped)."""
        with self._errors:
            return self._db.execute(query, parameters).fetchall()

    def _load(
        self,
        spi_i: bytes,
        spi_r: bytes,
        version: int,
        record: bytes,
        indexed: Sequence[tuple[bytes, bytes]] = (),
    ) -> IkeSa:
        """The SA of a row read, its Child SAs' ``seq_out`` raised to their reservations.
        ``indexed``: (spi_in, seq_reserved) of index rows under this SA read along with it;
        the reservations of its other Child SAs are read here."""
        key = (spi_i, spi_r)
        sa = self._sealer.open(record, spi_i, spi_r)
        children = sa.child_sas
        # Resume above every number that may have been sent (reserved or recorded). A mark is
        # kept for the next put's compare only for rows under this SA.
        marks = {
            spi_in: int.from_bytes(reserved, "big")
            for spi_in, reserved in indexed
            if spi_in in children
        }
        raised = dict(marks)
        elsewhere = [spi_in for spi_in in children if spi_in not in marks]
        if elsewhere:
            for spi_in, row_i, row_r, reserved in self._rows(
                "SELECT spi_in, spi_i, spi_r, seq_reserved FROM child_sa "
                f"WHERE spi_in IN ({_marks(len(elsewhere))})",
                elsewhere,
            ):
                raised[spi_in] = int.from_bytes(reserved, "big")
                if (row_i, row_r) == key:
                    marks[spi_in] = raised[spi_in]
        for spi_in, mark in raised.items():
            child = children[spi_in]
            child.seq_out = max(child.seq_out, mark)
        self._seen[key] = _Seen(version, _identity_key(sa.remote_id), marks)
        return sa

    def get_ike_sa(self, spi_i: bytes, spi_r: bytes) -> IkeSa | None:
        # The record and its index rows in one statement (one snapshot).
        rows = self._rows(
            "SELECT s.version, s.record, c.spi_in, c.seq_reserved FROM ike_sa AS s "
            "LEFT JOIN child_sa AS c ON c.spi_i = s.spi_i AND c.spi_r = s.spi_r "
            "WHERE s.spi_i = ? AND s.spi_r = ?",
            (spi_i, spi_r),
        )
        if not rows:
            return None
        indexed = [(spi_in, reserved) for _, _, spi_in, reserved in rows if spi_in is not None]
        return self._load(spi_i, spi_r, rows[0][0], rows[0][1], indexed)

    def find_by_esp_spi(self, spi_in: bytes) -> IkeSa | None:
        rows = self._rows(
            "SELECT s.spi_i, s.spi_r, s.version, s.record FROM child_sa AS c "
            "JOIN ike_sa AS s ON s.spi_i = c.spi_i AND s.spi_r = c.spi_r WHERE c.spi_in = ?",
            (spi_in,),
        )
        return self._load(*rows[0]) if rows else None

    def find_by_identity(self, remote_id: Identity) -> list[IkeSa]:
        rows = self._rows(
            "SELECT spi_i, spi_r, version, record FROM ike_sa WHERE remote_id = ? "
            "ORDER BY spi_i, spi_r",
            (_identity_key(remote_id),),
        )
        return [self._load(*row) for row in rows]

    def delete_ike_sa(self, spi_i: bytes, spi_r: bytes) -> None:
        key = (spi_i, spi_r)
        with self._write as db:
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
        rows = self._rows(
            "SELECT spi_i, spi_r, version, record FROM ike_sa ORDER BY spi_i, spi_r", ()
        )
        return [self._load(*row) for row in rows]

    # -- ownership and sequence numbers --------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._node_id

    def owner(self, spi_i: bytes, spi_r: bytes) -> str | None:
        rows = self._rows("SELECT owner FROM ike_sa WHERE spi_i = ? AND spi_r = ?", (spi_i, spi_r))
        return str(rows[0][0]) if rows else None

    def transfer(self, spis: SpiPair, from_node: str, to_node: str) -> bool:
        with self._write as db:
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
        with self._write as db:
            row = db.execute(
                "SELECT s.owner, c.esn, c.seq_reserved, c.spi_i, c.spi_r FROM child_sa AS c "
                "JOIN ike_sa AS s ON s.spi_i = c.spi_i AND s.spi_r = c.spi_r WHERE c.spi_in = ?",
                (spi_in,),
            ).fetchone()
            if row is None:
                raise LocalProtocolError(f"no stored Child SA with inbound SPI {spi_in.hex()}")
            owner, esn, reserved_bytes, spi_i, spi_r = row
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
        seen = self._seen.get((spi_i, spi_r))
        if seen is not None and spi_in in seen.marks:
            seen.marks[spi_in] = limit  # the next put of the SA need not touch the index
        return limit
