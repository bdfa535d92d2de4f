"""`RedisStore`: SAs shared by the nodes of a gateway cluster (Python ``redis`` client).

Every change is one Lua script, which Redis runs atomically: the compare-and-set of owner and
version, the record and all its indexes change together or not at all. With ``replicas=N``
each change is followed by ``WAIT N`` and only counts as done when N replicas confirmed it,
so that a promoted replica still has it after the primary is lost.

Keys (``prefix`` defaults to ``ikecore:``; SPIs in lowercase hex):

- ``sa:<SPIi><SPIr>`` hash: owner, version, local (our SPI), rid (peer identity), children
  (inbound ESP SPIs, comma-separated), record (sealed, see sealing.py)
- ``child:<SPI>`` hash: sa (the SPI pair), esn, seq (reserved high-water mark, 16 hex digits:
  64-bit values that Lua's doubles cannot hold are compared as fixed-width strings)
- ``id:<type><data>`` set of SPI pairs; ``sas`` set of every SPI pair; ``ike_spi`` and
  ``esp_spi`` sets of claimed SPIs.

The scripts touch index keys they compute, which a standalone or replicated Redis allows and
Redis Cluster does not: a cluster of gateways shares one Redis primary (with replicas).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ikecore.config import Identity
from ikecore.errors import LocalProtocolError, SequenceExhausted
from ikecore.sa import IkeSa, SpiPair
from ikecore.store import MAX_SEQ, StoreUnavailable, WriteConflict
from ikecore.store.sealing import RecordSealer

__all__ = ["RedisStore"]

# One stored SA as the load scripts return it: {pair, version, record, spi, seq, spi, seq...}.
_ENTRY = """
local function entry(p, pair)
  local cur = redis.call('HMGET', p .. 'sa:' .. pair, 'version', 'record', 'children')
  if not cur[1] then return false end
  local out = {pair, cur[1], cur[2]}
  for spi in string.gmatch(cur[3], '[^,]+') do
    out[#out + 1] = spi
    out[#out + 1] = redis.call('HGET', p .. 'child:' .. spi, 'seq') or ''
  end
  return out
end
"""

# ARGV: prefix, pair... -> one entry (or nil) per pair.
_LOAD = (
    _ENTRY
    + """
local out = {}
for i = 2, #ARGV do out[#out + 1] = entry(ARGV[1], ARGV[i]) end
return out
"""
)

# ARGV: prefix, inbound ESP SPI -> the entry of its IKE SA, or nil.
_LOAD_BY_ESP = (
    _ENTRY
    + """
local pair = redis.call('HGET', ARGV[1] .. 'child:' .. ARGV[2], 'sa')
if not pair then return false end
return entry(ARGV[1], pair)
"""
)

# KEYS: the SA hash. ARGV: prefix, node, expected version ('' to create), record, pair, our
# SPI, peer identity ('' for none), then (inbound SPI, esn, seq) per Child SA.
_PUT = """
local p, node, expected, pair, rid = ARGV[1], ARGV[2], ARGV[3], ARGV[5], ARGV[7]
local cur = redis.call('HMGET', KEYS[1], 'owner', 'version', 'children', 'rid')
local version = 1
if cur[1] then
  if cur[1] ~= node then return {'owner', cur[1]} end
  if cur[2] ~= expected then return {'stale', cur[2]} end
  version = tonumber(cur[2]) + 1
elseif expected ~= '' then
  return {'deleted', ''}
end
local names, new = {}, {}
for i = 8, #ARGV, 3 do
  local spi, seq = ARGV[i], ARGV[i + 2]
  local child = p .. 'child:' .. spi
  names[#names + 1] = spi
  new[spi] = true
  local reserved = redis.call('HGET', child, 'seq')
  if reserved and reserved > seq then seq = reserved end
  redis.call('HSET', child, 'sa', pair, 'esn', ARGV[i + 1], 'seq', seq)
end
if cur[3] then
  for spi in string.gmatch(cur[3], '[^,]+') do
    if not new[spi] then redis.call('DEL', p .. 'child:' .. spi) end
  end
end
if cur[4] and cur[4] ~= '' and cur[4] ~= rid then redis.call('SREM', p .. 'id:' .. cur[4], pair) end
if rid ~= '' then redis.call('SADD', p .. 'id:' .. rid, pair) end
redis.call('HSET', KEYS[1], 'owner', node, 'version', version, 'local', ARGV[6], 'rid', rid,
           'children', table.concat(names, ','), 'record', ARGV[4])
redis.call('SADD', p .. 'sas', pair)
return {'ok', tostring(version)}
"""

# KEYS: the SA hash. ARGV: prefix, node, pair.
_DELETE = """
local p, pair = ARGV[1], ARGV[3]
local cur = redis.call('HMGET', KEYS[1], 'owner', 'children', 'rid', 'local')
if not cur[1] then return {'ok'} end
if cur[1] ~= ARGV[2] then return {'owner', cur[1]} end
for spi in string.gmatch(cur[2], '[^,]+') do
  redis.call('DEL', p .. 'child:' .. spi)
  redis.call('SREM', p .. 'esp_spi', spi)
end
if cur[3] ~= '' then redis.call('SREM', p .. 'id:' .. cur[3], pair) end
redis.call('SREM', p .. 'ike_spi', cur[4])
redis.call('SREM', p .. 'sas', pair)
redis.call('DEL', KEYS[1])
return {'ok'}
"""

# KEYS: the SA hash. ARGV: from node, to node.
_TRANSFER = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'version', 1)
return 1
"""

# KEYS: the child hash. ARGV: prefix, node, count (1 .. 2^32 - 1). 64-bit arithmetic on the
# 16-hex-digit mark in two 32-bit halves (exact in doubles); capped at the last number.
_RESERVE = """
local c = redis.call('HMGET', KEYS[1], 'sa', 'esn', 'seq')
if not c[1] then return {'none'} end
local owner = redis.call('HGET', ARGV[1] .. 'sa:' .. c[1], 'owner')
if owner ~= ARGV[2] then return {'owner', owner or ''} end
local last = '00000000ffffffff'
if c[2] == '1' then last = 'ffffffffffffffff' end
if c[3] >= last then return {'exhausted'} end
local hi = tonumber(string.sub(c[3], 1, 8), 16)
local lo = tonumber(string.sub(c[3], 9, 16), 16) + tonumber(ARGV[3])
if lo >= 4294967296 then lo = lo - 4294967296; hi = hi + 1 end
local seq = last
if hi < 4294967296 then seq = string.format('%08x%08x', hi, lo) end
if seq > last then seq = last end
redis.call('HSET', KEYS[1], 'seq', seq)
return {'ok', seq}
"""


def _pair_hex(spi_i: bytes, spi_r: bytes) -> str:
    return spi_i.hex() + spi_r.hex()


def _identity_hex(identity: Identity | None) -> str:
    return "" if identity is None else bytes([identity.type]).hex() + identity.data.hex()


class RedisStore:
    """An `SaStore` in Redis at ``url`` (``redis://HOST:PORT/DB``), written as ``node_id``;
    key material sealed under ``key``. ``replicas``: replicas that must confirm each change
    (``WAIT``) within ``replica_timeout`` seconds, else `StoreUnavailable`."""

    def __init__(
        self,
        url: str,
        node_id: str,
        key: bytes,
        *,
        replicas: int = 0,
        replica_timeout: float = 2.0,
        prefix: str = "ikecore:",
        socket_timeout: float = 5.0,
    ) -> None:
        import redis  # the optional dependency ikecore[redis]

        if not node_id:
            raise ValueError("node_id must be a non-empty name")
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._sealer = RecordSealer(key)
        self._node_id = node_id
        self._replicas = replicas
        self._replica_timeout_ms = int(replica_timeout * 1000)
        self._prefix = prefix
        self._seen: dict[SpiPair, int] = {}
        self._redis: Any = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        register = self._redis.register_script
        self._load_script = register(_LOAD)
        self._load_esp_script = register(_LOAD_BY_ESP)
        self._put_script = register(_PUT)
        self._delete_script = register(_DELETE)
        self._transfer_script = register(_TRANSFER)
        self._reserve_script = register(_RESERVE)

    def close(self) -> None:
        self._redis.close()

    @contextmanager
    def _server(self, write: bool = False) -> Iterator[None]:
        """Redis errors as StoreUnavailable; a write waits for its replicas (WAIT)."""
        try:
            yield
            if write and self._replicas:
                confirmed = self._redis.wait(self._replicas, self._replica_timeout_ms)
                if confirmed < self._replicas:
                    raise StoreUnavailable(
                        f"redis store: {confirmed} of {self._replicas} replicas confirmed"
                    )
        except self._errors as exc:
            raise StoreUnavailable(f"redis store: {exc}") from None

    def _sa_key(self, pair: str) -> str:
        return f"{self._prefix}sa:{pair}"

    # -- SPI claims ----------------------------------------------------------------------------

    def _claim(self, kind: str, spi: bytes) -> bool:
        with self._server(write=True):
            added = self._redis.sadd(self._prefix + kind, spi.hex())
        return bool(added == 1)

    def _release(self, kind: str, spi: bytes) -> None:
        with self._server(write=True):
            self._redis.srem(self._prefix + kind, spi.hex())

    def claim_ike_spi(self, spi: bytes) -> bool:
        if len(spi) != 8:
            raise ValueError("an IKE SPI is 8 bytes")
        return self._claim("ike_spi", spi)

    def release_ike_spi(self, spi: bytes) -> None:
        self._release("ike_spi", spi)

    def claim_esp_spi(self, spi: bytes) -> bool:
        if len(spi) != 4:
            raise ValueError("an ESP SPI is 4 bytes")
        return self._claim("esp_spi", spi)

    def release_esp_spi(self, spi: bytes) -> None:
        self._release("esp_spi", spi)

    # -- records -------------------------------------------------------------------------------

    def put_ike_sa(self, sa: IkeSa) -> None:
        key = sa.spis
        pair = _pair_hex(*key)
        seen = self._seen.get(key)
        args: list[str | bytes] = [
            self._prefix,
            self._node_id,
            "" if seen is None else str(seen),
            self._sealer.seal(sa),
            pair,
            sa.local_spi.hex(),
            _identity_hex(sa.remote_id),
        ]
        for spi_in, child in sa.child_sas.items():
            args += (spi_in.hex(), "1" if child.transforms.esn else "0", f"{child.seq_out:016x}")
        with self._server(write=True):
            status, detail = self._put_script(keys=[self._sa_key(pair)], args=args)
        if status != b"ok":
            self._conflict(key, status, detail)
        self._seen[key] = int(detail)

    @staticmethod
    def _conflict(key: SpiPair, status: bytes, detail: bytes = b"") -> None:
        name = f"IKE SA {key[0].hex()}/{key[1].hex()}"
        if status == b"owner":
            raise WriteConflict(f"{name} belongs to {detail.decode()}")
        if status == b"deleted":
            raise WriteConflict(f"{name} was deleted")
        raise WriteConflict(f"{name} changed since this store read it")

    def _entry(self, entry: list[bytes] | None) -> IkeSa | None:
        if entry is None:
            return None
        pair, version, record, *seqs = entry
        spi_i, spi_r = bytes.fromhex(pair[:16].decode()), bytes.fromhex(pair[16:].decode())
        sa = self._sealer.open(record, spi_i, spi_r)
        for spi_hex, reserved in zip(seqs[::2], seqs[1::2], strict=True):
            child = sa.child_sas.get(bytes.fromhex(spi_hex.decode()))
            if child is not None and reserved:
                # Resume above every number that may have been sent (reserved or recorded).
                child.seq_out = max(child.seq_out, int(reserved, 16))
        self._seen[(spi_i, spi_r)] = int(version)
        return sa

    def _load(self, pairs: list[str]) -> list[IkeSa]:
        if not pairs:
            return []
        with self._server():
            entries = self._load_script(args=[self._prefix, *pairs])
        return [sa for sa in map(self._entry, entries) if sa is not None]

    def get_ike_sa(self, spi_i: bytes, spi_r: bytes) -> IkeSa | None:
        found = self._load([_pair_hex(spi_i, spi_r)])
        return found[0] if found else None

    def find_by_esp_spi(self, spi_in: bytes) -> IkeSa | None:
        with self._server():
            entry = self._load_esp_script(args=[self._prefix, spi_in.hex()])
        return self._entry(entry)

    def find_by_identity(self, remote_id: Identity) -> list[IkeSa]:
        with self._server():
            pairs = self._redis.smembers(f"{self._prefix}id:{_identity_hex(remote_id)}")
        return self._load(sorted(p.decode() for p in pairs))

    def delete_ike_sa(self, spi_i: bytes, spi_r: bytes) -> None:
        pair = _pair_hex(spi_i, spi_r)
        with self._server(write=True):
            result = self._delete_script(
                keys=[self._sa_key(pair)], args=[self._prefix, self._node_id, pair]
            )
        if result[0] != b"ok":
            self._conflict((spi_i, spi_r), *result)
        self._seen.pop((spi_i, spi_r), None)

    def ike_sas(self) -> list[IkeSa]:
        with self._server():
            pairs = self._redis.smembers(self._prefix + "sas")
        return self._load(sorted(p.decode() for p in pairs))

    # -- ownership and sequence numbers --------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._node_id

    def owner(self, spi_i: bytes, spi_r: bytes) -> str | None:
        with self._server():
            owner = self._redis.hget(self._sa_key(_pair_hex(spi_i, spi_r)), "owner")
        return None if owner is None else str(owner.decode())

    def transfer(self, spis: SpiPair, from_node: str, to_node: str) -> bool:
        with self._server(write=True):
            moved = self._transfer_script(
                keys=[self._sa_key(_pair_hex(*spis))], args=[from_node, to_node]
            )
        # Whoever gets it must read it first (even this object, if it comes back here).
        self._seen.pop(spis, None)
        return bool(moved == 1)

    def reserve_seq(self, spi_in: bytes, count: int) -> int:
        if not isinstance(count, int) or not 1 <= count <= MAX_SEQ:
            raise ValueError("count must be an int from 1 to 2^32 - 1")
        with self._server(write=True):
            result = self._reserve_script(
                keys=[f"{self._prefix}child:{spi_in.hex()}"],
                args=[self._prefix, self._node_id, count],
            )
        status = result[0]
        if status == b"none":
            raise LocalProtocolError(f"no stored Child SA with inbound SPI {spi_in.hex()}")
        if status == b"owner":
            raise WriteConflict(f"Child SA {spi_in.hex()} belongs to {result[1].decode()}")
        if status == b"exhausted":
            raise SequenceExhausted(f"Child SA {spi_in.hex()}: no sequence numbers left")
        return int(result[1], 16)
