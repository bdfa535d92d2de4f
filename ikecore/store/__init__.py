"""Where the engine keeps its SAs: the `SaStore` protocol and `open_store`.

The engine writes an `IkeSa` record (with its Child SAs) after every completed state change
and reads it back by SPI pair when a datagram arrives for a session it does not hold in
memory; that is what lets an SA outlive a process or move to another cluster node (RFC 7791
§1, §8). SPIs are allocated by an atomic claim (create-if-absent) so that two writers never
hand out the same SPI.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ikecore.config import Identity
from ikecore.sa import IkeSa

__all__ = ["MemoryStore", "SaStore", "open_store"]


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


def open_store(url: str, key: bytes | None = None) -> SaStore:
    """A store from a URL: ``memory:`` (the persistent kinds come with the stores issue)."""
    if url in ("memory:", "memory://"):
        return MemoryStore()
    raise ValueError(f"unsupported store URL {url!r} (this build has memory: only)")


from ikecore.store.memory import MemoryStore  # noqa: E402  (re-export; imports SaStore's deps)
