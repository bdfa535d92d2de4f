"""Where the engine keeps its SAs: the `SaStore` protocol and `open_store`.

The engine writes an `IkeSa` record (with its Child SAs) after every completed state change
and reads it back by SPI pair when a datagram arrives for a session it does not hold in
memory; that is what lets an SA outlive a process or move to another cluster node (RFC 7791
§1, §8). SPIs are allocated by an atomic claim (create-if-absent) so that two writers never
hand out the same SPI.

Cluster additions (issue "SA stores"): every record has an owning node (``node_id`` of the
store that created it) and a version. ``put_ike_sa`` is a compare-and-set: it succeeds only
for the owner, and only if the record is still the version this store object last read or
wrote (a record it never read must not exist yet: create-if-absent). Otherwise it raises
`WriteConflict` and changes nothing: another process won the race, or the SA was transferred
(fencing: the old owner's writes are refused from then on). `transfer` moves ownership with a
compare-and-set and bumps the version, so even the node it comes back to must read it again.

ESP sequence numbers (compare RFC 6311): the owner reserves outbound sequence numbers in
blocks with `reserve_seq`, durably, before it sends them; every load of the SA (after a
crash, a restart or a transfer) starts the Child SA's ``seq_out`` at the reserved high-water
mark, so no sequence number, and so no AES-GCM IV (RFC 4106 §3), is ever used twice.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from ikecore.config import Identity
from ikecore.errors import StoreError, StoreUnavailable, WriteConflict
from ikecore.sa import IkeSa, SpiPair

__all__ = [
    "MemoryStore",
    "RedisStore",
    "SaStore",
    "SqliteStore",
    "StoreError",
    "StoreUnavailable",
    "WriteConflict",
    "open_store",
]

MAX_SEQ = 2**32 - 1
"""Last 32-bit ESP sequence number (RFC 4303 §3.3.3: never wraps)."""
MAX_ESN = 2**64 - 1
"""Last extended (64-bit) ESP sequence number (RFC 4303 §2.2.1)."""


@runtime_checkable
class SaStore(Protocol):
    """Storage of IKE SA records, each with its Child SAs."""

    def claim_ike_spi(self, spi: bytes) -> bool:
        """Reserve our 8-byte IKE SPI; False if it is already taken (atomic)."""
        ...

    def release_ike_spi(self, spi: bytes) -> None:
        """Give back an SPI claimed for an SA that never completed."""
        ...

    def claim_esp_spi(self, spi: bytes) -> bool:
        """Reserve a 4-byte inbound ESP SPI; False if it is already taken (atomic)."""
        ...

    def release_esp_spi(self, spi: bytes) -> None:
        """Give back an inbound ESP SPI."""
        ...

    def put_ike_sa(self, sa: IkeSa) -> None:
        """Insert or replace the record (and the index of its Child SAs)."""
        ...

    def get_ike_sa(self, spi_i: bytes, spi_r: bytes) -> IkeSa | None:
        """The record for an SPI pair, None if there is none."""
        ...

    def find_by_esp_spi(self, spi_in: bytes) -> IkeSa | None:
        """The IKE SA whose Child SA has inbound SPI ``spi_in``."""
        ...

    def find_by_identity(self, remote_id: Identity) -> list[IkeSa]:
        """Every IKE SA with this authenticated peer identity."""
        ...

    def delete_ike_sa(self, spi_i: bytes, spi_r: bytes) -> None:
        """Remove the record, its Child SAs and their SPIs; no error if absent."""
        ...

    def ike_sas(self) -> list[IkeSa]:
        """Every record."""
        ...

    # -- cluster ownership and sequence-number reservations (additive) --------------------------

    @property
    def node_id(self) -> str:
        """The node this store object writes as (the owner of the SAs it creates)."""
        ...

    def owner(self, spi_i: bytes, spi_r: bytes) -> str | None:
        """The node owning the SA, None if there is no such record."""
        ...

    def transfer(self, spis: SpiPair, from_node: str, to_node: str) -> bool:
        """Give the SA to ``to_node`` if ``from_node`` owns it (atomic compare-and-set); False
        (nothing changed) otherwise. Afterwards ``from_node``'s writes raise `WriteConflict`
        and the new owner loads the record (``get_ike_sa``) before writing it."""
        ...

    def reserve_seq(self, spi_in: bytes, count: int) -> int:
        """Reserve ``count`` (1 .. 2^32 - 1) more outbound ESP sequence numbers of the Child SA
        with inbound SPI ``spi_in``; returns the new high-water mark: the owner may send up to
        that number, and every later load of the SA starts its ``seq_out`` there. Durable
        before it returns.
        Fewer near the end of the space (2^32 - 1, or 2^64 - 1 with ESN); SequenceExhausted
        when none is left; `WriteConflict` unless this node owns the SA; LocalProtocolError
        if no stored Child SA has that SPI."""
        ...


def open_store(url: str, key: bytes | None = None) -> SaStore:
    """A store from a URL: ``memory:``, ``sqlite:PATH`` or ``redis://HOST:PORT/DB``.

    The persistent kinds need ``key`` (it seals the key material at rest). Query parameters:
    ``node=NAME`` sets the node id (default ``local``) of ``sqlite:`` and ``redis://`` stores;
    ``replicas=N`` makes a Redis store wait for N replicas to confirm every write.
    """
    if url in ("memory:", "memory://"):
        return MemoryStore()
    scheme, _, rest = url.partition(":")
    if scheme not in ("sqlite", "redis"):
        raise ValueError(f"unsupported store URL {url!r} (memory:, sqlite:PATH, redis://...)")
    if key is None:
        raise ValueError(f"{scheme} store needs a key: it seals the key material at rest")
    base, _, query = rest.partition("?")
    params = {name: values[-1] for name, values in parse_qs(query).items()}
    node_id = params.pop("node", "local")
    if scheme == "sqlite":
        if params:
            raise ValueError(f"unknown sqlite store parameters {sorted(params)}")
        path = base[2:] if base.startswith("//") else base
        if not path:
            raise ValueError("sqlite: store URL without a path")
        return SqliteStore(path, key, node_id=node_id)
    replicas = int(params.pop("replicas", "0"))
    if params:
        raise ValueError(f"unknown redis store parameters {sorted(params)}")
    return RedisStore(urlsplit(url)._replace(query="").geturl(), node_id, key, replicas=replicas)


# Re-exports (below: they import this module's protocol and errors).
from ikecore.store.memory import MemoryStore  # noqa: E402
from ikecore.store.redis import RedisStore  # noqa: E402
from ikecore.store.sqlite import SqliteStore  # noqa: E402
