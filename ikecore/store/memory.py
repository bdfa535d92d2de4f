"""`MemoryStore`: the default store, dictionaries in this process.

Records are kept by reference: the engine mutates an `IkeSa` and then calls `put_ike_sa`,
which refreshes the indexes (Child SA SPIs, peer identity). Lookups are plain dict reads.
Only one process sees it, so ownership is only this node's or, after `transfer`, nobody's
here: the SA is then read-only for this store (its writes raise `WriteConflict`).
`node(node_id)` gives a view of the same dictionaries writing as another node: cluster nodes
simulated in one process (tests). Records are shared by reference between the views, so a node
must stop using an SA it hands off (`IkeEndpoint.hand_off` does).
"""

from __future__ import annotations

from ikecore.config import Identity
from ikecore.errors import LocalProtocolError, SequenceExhausted
from ikecore.sa import IkeSa, SpiPair
from ikecore.store import MAX_ESN, MAX_SEQ, WriteConflict

__all__ = ["MemoryStore"]

# The Child SA index of a record that has none (no entry is kept for it).
_NO_SPIS: frozenset[bytes] = frozenset()


class MemoryStore:
    """An `SaStore` in memory: nothing survives the process."""

    def __init__(self, node_id: str = "local") -> None:
        self._node_id = node_id
        self._owners: dict[SpiPair, str] = {}
        self._seq_reserved: dict[bytes, int] = {}
        # SAs put or given a reservation since their last load: only their load has work to do.
        self._unloaded: set[SpiPair] = set()
        self._sas: dict[SpiPair, IkeSa] = {}
        self._ike_spis: set[bytes] = set()
        self._esp_spis: set[bytes] = set()
        self._by_esp_spi: dict[bytes, SpiPair] = {}
        self._esp_of: dict[SpiPair, set[bytes]] = {}
        # Keyed by (ID type, data), the Identity's fields: a tuple of an int and bytes hashes
        # in C, an Identity (a dataclass) through a Python __hash__, on every new record.
        self._by_identity: dict[tuple[int, bytes], set[SpiPair]] = {}
        self._identity_of: dict[SpiPair, Identity] = {}

    def claim_ike_spi(self, spi: bytes) -> bool:
        if len(spi) != 8:
            raise ValueError("an IKE SPI is 8 bytes")
        if spi in self._ike_spis:
            return False
        self._ike_spis.add(spi)
        return True

    def release_ike_spi(self, spi: bytes) -> None:
        self._ike_spis.discard(spi)

    def claim_esp_spi(self, spi: bytes) -> bool:
        if len(spi) != 4:
            raise ValueError("an ESP SPI is 4 bytes")
        if spi in self._esp_spis:
            return False
        self._esp_spis.add(spi)
        return True

    def release_esp_spi(self, spi: bytes) -> None:
        self._esp_spis.discard(spi)

    def node(self, node_id: str) -> MemoryStore:
        """Another node's view of this store: same records, owners and reservations."""
        view = MemoryStore.__new__(MemoryStore)
        for name, value in vars(self).items():
            setattr(view, name, value)
        view._node_id = node_id
        return view

    def put_ike_sa(self, sa: IkeSa) -> None:
        key = (sa.spi_i, sa.spi_r)  # sa.spis, without a property call on every write
        # `_check_owner` inline (the engine writes after every exchange): no owner yet is a
        # new record (or one deleted), which this node creates.
        owner = self._owners.get(key)
        if owner is None:
            self._owners[key] = self._node_id
        elif owner != self._node_id:
            raise WriteConflict(f"IKE SA {key[0].hex()}/{key[1].hex()} belongs to {owner}")
        elif self._sas.get(key) is sa and self._indexed(key, sa):
            return  # the engine changed counters or state of a record held here: nothing to do
        self._sas[key] = sa
        self._unloaded.add(key)
        indexed = self._esp_of.get(key)  # None for a new record: nothing can be stale
        if indexed:
            for stale in indexed - sa.child_sas.keys():
                # Only if it still names this SA: a Child SA that moved (IKE SA rekey) is
                # indexed under its new IKE SA already.
                if self._by_esp_spi.get(stale) == key:
                    del self._by_esp_spi[stale]
        # A record without Child SAs (a new clone, a rekey's new SA) gets no entry: one set
        # less per SA.
        if sa.child_sas:
            self._esp_of[key] = set(sa.child_sas)
            for spi in sa.child_sas:
                self._by_esp_spi[spi] = key
        elif indexed is not None:
            del self._esp_of[key]
        old_identity = self._identity_of.pop(key, None)
        if old_identity is not None:
            self._by_identity[old_identity.type, old_identity.data].discard(key)
        remote_id = sa.remote_id
        if remote_id is not None:
            self._identity_of[key] = remote_id
            keys = self._by_identity.get((remote_id.type, remote_id.data))
            if keys is None:  # (setdefault would build a set each time)
                self._by_identity[remote_id.type, remote_id.data] = {key}
            else:
                keys.add(key)

    def _indexed(self, key: SpiPair, sa: IkeSa) -> bool:
        """The indexes already say what a put of ``sa`` would write (same Child SAs, all
        indexed under it, same peer identity)."""
        identity = self._identity_of.get(key)
        if not (identity is sa.remote_id or identity == sa.remote_id):
            return False
        # The same SPIs: as many, each indexed (a set compared with a dict's keys view takes
        # the slow path of a reflected comparison).
        indexed = self._esp_of.get(key, _NO_SPIS)
        if len(indexed) != len(sa.child_sas):
            return False
        by_esp_spi = self._by_esp_spi
        for spi in sa.child_sas:
            if spi not in indexed or by_esp_spi.get(spi) != key:
                return False
        return True

    def get_ike_sa(self, spi_i: bytes, spi_r: bytes) -> IkeSa | None:
        key = (spi_i, spi_r)
        return self._loaded(key) if key in self._unloaded else self._sas.get(key)

    def find_by_esp_spi(self, spi_in: bytes) -> IkeSa | None:
        key = self._by_esp_spi.get(spi_in)
        if key is None:
            return None
        return self._loaded(key) if key in self._unloaded else self._sas.get(key)

    def _loaded(self, key: SpiPair) -> IkeSa | None:
        """A load resumes each Child SA's ``seq_out`` above its reservations, like the
        persistent stores: a node that takes the SA over never reuses a number the old owner
        may have sent. Done once after each put or reservation: ``seq_out`` never goes down,
        so until the next one a load finds every Child SA above its reservation already."""
        self._unloaded.discard(key)
        sa = self._sas.get(key)
        if sa is not None:
            for spi_in, child in sa.child_sas.items():
                child.seq_out = max(child.seq_out, self._seq_reserved.get(spi_in, 0))
        return sa

    def find_by_identity(self, remote_id: Identity) -> list[IkeSa]:
        keys = self._by_identity.get((remote_id.type, remote_id.data), ())
        return [self._sas[key] for key in sorted(keys)]

    def delete_ike_sa(self, spi_i: bytes, spi_r: bytes) -> None:
        key = (spi_i, spi_r)
        self._check_owner(key)
        self._owners.pop(key, None)
        self._unloaded.discard(key)
        sa = self._sas.pop(key, None)
        for spi in self._esp_of.pop(key, set()):
            if self._by_esp_spi.get(spi) == key:
                del self._by_esp_spi[spi]
                self._esp_spis.discard(spi)
                self._seq_reserved.pop(spi, None)
        identity = self._identity_of.pop(key, None)
        if identity is not None:
            self._by_identity[identity.type, identity.data].discard(key)
        if sa is not None:
            self._ike_spis.discard(sa.local_spi)

    def ike_sas(self) -> list[IkeSa]:
        return list(self._sas.values())

    @property
    def node_id(self) -> str:
        return self._node_id

    def owner(self, spi_i: bytes, spi_r: bytes) -> str | None:
        key = (spi_i, spi_r)
        return self._owners.get(key, self._node_id) if key in self._sas else None

    def transfer(self, spis: SpiPair, from_node: str, to_node: str) -> bool:
        if self.owner(*spis) != from_node:
            return False
        self._owners[spis] = to_node
        return True

    def reserve_seq(self, spi_in: bytes, count: int) -> int:
        if not isinstance(count, int) or not 1 <= count <= MAX_SEQ:
            raise ValueError("count must be an int from 1 to 2^32 - 1")
        key = self._by_esp_spi.get(spi_in)
        if key is None:
            raise LocalProtocolError(f"no stored Child SA with inbound SPI {spi_in.hex()}")
        self._check_owner(key)
        child = self._sas[key].child_sas[spi_in]
        last = MAX_ESN if child.transforms.esn else MAX_SEQ
        reserved = max(self._seq_reserved.get(spi_in, 0), child.seq_out)
        if reserved >= last:
            raise SequenceExhausted(f"Child SA {spi_in.hex()}: no sequence numbers left")
        self._seq_reserved[spi_in] = limit = min(reserved + count, last)
        self._unloaded.add(key)
        return limit

    def _check_owner(self, key: SpiPair) -> None:
        owner = self._owners.get(key, self._node_id)
        if owner != self._node_id:
            raise WriteConflict(f"IKE SA {key[0].hex()}/{key[1].hex()} belongs to {owner}")
