"""`RedisStore`: SAs shared by the nodes of a gateway cluster (Python ``redis`` client).

Every change is one Lua script, which Redis runs atomically: the compare-and-set of owner and
version, the record and all its indexes change together or not at all. A lookup by SPI pair
is one plain ``HGETALL`` (an atomic snapshot of the SA's hash). With ``replicas=N``
each change is followed by ``WAIT N`` and only counts as done when N replicas confirmed it,
so that a promoted replica still has it after the primary is lost.

Keys (``prefix`` defaults to ``ikecore:``; SPIs in lowercase hex):

- ``sa:<SPIi><SPIr>`` hash: owner, version, local (our SPI), rid (peer identity), children
  (inbound ESP SPIs, comma-separated), record (sealed, see sealing.py), and ``seq:<SPI>``
  per Child SA: its reserved sequence high-water mark in 16 hex digits (64-bit values, which
  Lua's doubles cannot hold, compared as fixed-width strings)
- ``child:<SPI>`` hash: sa (the SPI pair), esn
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
from ikecore.errors import LocalProtocolError, MalformedMessage, SequenceExhausted
from ikecore.sa import IkeSa, SpiPair
from ikecore.store import MAX_SEQ, StoreUnavailable, WriteConflict
from ikecore.store.sealing import RecordSealer

__all__ = ["RedisStore"]

# ARGV: prefix, inbound ESP SPI -> {SPI pair, HGETALL of its SA hash}, or nil.
_LOAD_BY_ESP = """
local pair = redis.call('HGET', ARGV[1] .. 'child:' .. ARGV[2], 'sa')
if not pair then return false end
return {pair, redis.call('HGETALL', ARGV[1] .. 'sa:' .. pair)}
"""

# KEYS: the SA hash. ARGV: prefix, node, expected version ('' to create), record, pair, our
# SPI, peer identity ('' for none), inbound SPIs of the Child SAs (comma-separated), then
# "<esn><seq>" of each (esn 0 or 1, seq 16 hex digits), in the same order, concatenated.
# One HMGET reads the owner, version, indexes and reservations; one HSET writes the SA.
_PUT = """
local p, node, expected, pair, rid, children = ARGV[1], ARGV[2], ARGV[3], ARGV[5], ARGV[7], ARGV[8]
local spis = {}
for spi in string.gmatch(children, '[^,]+') do spis[#spis + 1] = spi end
local names = {'owner', 'version', 'children', 'rid'}
for i, spi in ipairs(spis) do names[4 + i] = 'seq:' .. spi end
local cur = redis.call('HMGET', KEYS[1], unpack(names))
local version = 1
if cur[1] then
  if cur[1] ~= node then return {'owner', cur[1]} end
  if cur[2] ~= expected then return {'stale', cur[2]} end
  version = tonumber(cur[2]) + 1
elseif expected ~= '' then
  return {'deleted', ''}
end
local fields = {'owner', node, 'version', version, 'local', ARGV[6], 'rid', rid,
                'children', children, 'record', ARGV[4]}
local new = {}
for i, spi in ipairs(spis) do
  local esn = string.sub(ARGV[9], 17 * i - 16, 17 * i - 16)
  local seq = string.sub(ARGV[9], 17 * i - 15, 17 * i)
  local reserved = cur[4 + i]
  new[spi] = true
  if not reserved then
    -- New here: a new Child SA, or one moved from the IKE SA this one rekeyed (RFC 7296
    -- §2.8), whose reservation comes along.
    local child = p .. 'child:' .. spi
    local from = redis.call('HGET', child, 'sa')
    if from and from ~= pair then
      reserved = redis.call('HGET', p .. 'sa:' .. from, 'seq:' .. spi)
    end
    redis.call('HSET', child, 'sa', pair, 'esn', esn)
  end
  if reserved and reserved > seq then seq = reserved end
  fields[#fields + 1] = 'seq:' .. spi
  fields[#fields + 1] = seq
end
if cur[3] and cur[3] ~= children then
  for spi in string.gmatch(cur[3], '[^,]+') do
    if not new[spi] then
      -- Its index only if it still names this SA (not if it moved to another).
      if redis.call('HGET', p .. 'child:' .. spi, 'sa') == pair then
        redis.call('DEL', p .. 'child:' .. spi)
      end
      redis.call('HDEL', KEYS[1], 'seq:' .. spi)
    end
  end
end
if cur[4] ~= rid then
  if cur[4] and cur[4] ~= '' then redis.call('SREM', p .. 'id:' .. cur[4], pair) end
  if rid ~= '' then redis.call('SADD', p .. 'id:' .. rid, pair) end
end
if not cur[1] then redis.call('SADD', p .. 'sas', pair) end
redis.call('HSET', KEYS[1], unpack(fields))
return {'ok', tostring(version)}
"""

# KEYS: the SA hash. ARGV: prefix, node, pair.
_DELETE = """
local p, pair = ARGV[1], ARGV[3]
local cur = redis.call('HMGET', KEYS[1], 'owner', 'children', 'rid', 'local')
if not cur[1] then return {'ok'} end
if cur[1] ~= ARGV[2] then return {'owner', cur[1]} end
for spi in string.gmatch(cur[2], '[^,]+') do
  if redis.call('HGET', p .. 'child:' .. spi, 'sa') == pair then
    redis.call('DEL', p .. 'child:' .. spi)
    redis.call('SREM', p .. 'esp_spi', spi)
  end
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

# KEYS: the child hash. ARGV: prefix, node, count (1 .. 2^32 - 1), inbound SPI. 64-bit
# arithmetic on the 16-hex-digit mark in two 32-bit halves (exact in Lua's doubles), capped at
# the last number. The mark lives in the SA hash; the version does not change (not a put).
_RESERVE = """
local c = redis.call('HMGET', KEYS[1], 'sa', 'esn')
if not c[1] then return {'none'} end
local sa, field = ARGV[1] .. 'sa:' .. c[1], 'seq:' .. ARGV[4]
local cur = redis.call('HMGET', sa, 'owner', field)
if cur[1] ~= ARGV[2] then return {'owner', cur[1] or ''} end
local last = '00000000ffffffff'
if c[2] == '1' then last = 'ffffffffffffffff' end
if cur[2] >= last then return {'exhausted'} end
local hi = tonumber(string.sub(cur[2], 1, 8), 16)
local lo = tonumber(string.sub(cur[2], 9, 16), 16) + tonumber(ARGV[3])
if lo >= 4294967296 then lo = lo - 4294967296; hi = hi + 1 end
local seq = last
if hi < 4294967296 then seq = string.format('%08x%08x', hi, lo) end
if seq > last then seq = last end
redis.call('HSET', sa, field, seq)
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
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if not node_id:
            raise ValueError("node_id must be a non-empty name")
        self._errors: tuple[type[Exception], ...] = (redis.RedisError,)
        self._sealer = RecordSealer(key)
        self._node_id = node_id
        self._replicas = replicas
        self._replica_timeout_ms = int(replica_timeout * 1000)
        self._prefix = prefix
        self._seen: dict[SpiPair, int] = {}
        # No automatic retries: a write whose reply was lost must not be sent again behind
        # the caller's back (a repeated transfer would report False although it moved the SA).
        # The caller sees StoreUnavailable and decides.
        self._redis: Any = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        register = self._redis.register_script
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
        children = sa.child_sas.values()
        args = (
            self._prefix,
            self._node_id,
            "" if seen is None else str(seen),
            self._sealer.seal(sa),
            pair,
            sa.local_spi.hex(),
            _identity_hex(sa.remote_id),
            ",".join(child.spi_in.hex() for child in children),
            "".join(f"{int(child.transforms.esn)}{child.seq_out:016x}" for child in children),
        )
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

    def _from_hash(self, pair: bytes | str, fields: dict[bytes, bytes]) -> IkeSa | None:
        """The SA from its hash (HGETALL), None for an empty one (no such SA)."""
        if not fields:
            return None
        try:
            text = pair.decode() if isinstance(pair, bytes) else pair
            spi_i, spi_r = bytes.fromhex(text[:16]), bytes.fromhex(text[16:])
            version, record = int(fields[b"version"]), fields[b"record"]
            reservations = {
                spi_in: int(fields[b"seq:" + spi_in.hex().encode()] or b"0", 16)
                for spi_in in self._reserved_spis(fields)
            }
        except (KeyError, ValueError):
            raise MalformedMessage(f"stored IKE SA {pair!r} incomplete or corrupt") from None
        sa = self._sealer.open(record, spi_i, spi_r)
        for spi_in, child in sa.child_sas.items():
            # Resume above every number that may have been sent (reserved or recorded).
            child.seq_out = max(child.seq_out, reservations.get(spi_in, 0))
        self._seen[(spi_i, spi_r)] = version
        return sa

    @staticmethod
    def _reserved_spis(fields: dict[bytes, bytes]) -> list[bytes]:
        """The inbound SPIs of the reservations in an SA's hash (its ``seq:SPI`` fields)."""
        return [bytes.fromhex(name[4:].decode()) for name in fields if name.startswith(b"seq:")]

    def _load(self, pairs: list[str]) -> list[IkeSa]:
        with self._server():
            pipe = self._redis.pipeline(transaction=False)
            for pair in pairs:
                pipe.hgetall(self._sa_key(pair))
            hashes = pipe.execute()
        found = (self._from_hash(pair, fields) for pair, fields in zip(pairs, hashes, strict=True))
        return [sa for sa in found if sa is not None]

    def get_ike_sa(self, spi_i: bytes, spi_r: bytes) -> IkeSa | None:
        pair = _pair_hex(spi_i, spi_r)
        with self._server():
            fields = self._redis.hgetall(self._sa_key(pair))
        return self._from_hash(pair, fields)

    def find_by_esp_spi(self, spi_in: bytes) -> IkeSa | None:
        with self._server():
            found = self._load_esp_script(args=[self._prefix, spi_in.hex()])
        if found is None:
            return None
        pair, flat = found
        return self._from_hash(pair, dict(zip(flat[::2], flat[1::2], strict=True)))

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
                args=[self._prefix, self._node_id, count, spi_in.hex()],
            )
        status = result[0]
        if status == b"none":
            raise LocalProtocolError(f"no stored Child SA with inbound SPI {spi_in.hex()}")
        if status == b"owner":
            raise WriteConflict(f"Child SA {spi_in.hex()} belongs to {result[1].decode()}")
        if status == b"exhausted":
            raise SequenceExhausted(f"Child SA {spi_in.hex()}: no sequence numbers left")
        return int(result[1], 16)
