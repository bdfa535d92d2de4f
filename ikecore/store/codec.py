"""The binary encoding of `IkeSa` records in the persistent stores (record format 2).

A record is encoded into two byte strings: the *public* part (everything but key material,
stored in the clear but authenticated) and the *secret* part (the IKE SA's SK_* keys and
every Child SA's KEYMAT, which `RecordSealer` encrypts). Both are fixed-layout big-endian
structures with length-prefixed variable fields, packed with `struct`: a store write encodes a
record in a few microseconds, where ``json.dumps(sa.to_dict())`` took tens (format 1).

Public part::

    IKE SA fixed block (_IKE)
    per Child SA: fixed block (_CHILD), then one _TS block per traffic selector
    string table: length (2) of each string | the strings

The fixed blocks give the number of strings: 7 of the IKE SA (state, local and remote host,
peer name, family, local and remote identity data), 2 per Child SA (state, replay bitmap) and
2 per traffic selector (start, end), in that order. Text is UTF-8. Optional values have a
presence bit and a zero placeholder; ``key_bits`` 0 means "no Key Length attribute" (no
transform is negotiated with 0). States are stored by their names, so adding a state does not
renumber old records. Secret part: a string table of the seven IKE SA keys (RFC 7296 §2.14)
when present, then ``key_in``, ``key_out`` of each Child SA in the order of the public part.

`decode` is given only authenticated bytes (the sealer opens the record first), so a decoding
error means a writer bug or a record of another format; it raises `MalformedMessage` with the
offset, never a partial record.
"""

from __future__ import annotations

import struct
from typing import Any

from ikecore.config import Identity, TrafficSelector
from ikecore.constants import IdType
from ikecore.errors import MalformedMessage
from ikecore.sa import ChildSa, IkeSa, IkeSaKeys
from ikecore.states import ChildState, IkeState
from ikecore.suites import EspTransforms, IkeTransforms

__all__ = ["decode", "encode"]

# spi_i spi_r | flags present | encr key_bits prf dh | next_request_id next_peer_request_id
# peer_window local_window sk_iv | created_at established_at | parent rekeyed_from
# | local port, remote port | local_id type, remote_id type | Child SA count
_IKE = struct.Struct(">8s8sBBHHHHQQIIQdd16s16sHHBBH")
# spi_in spi_out | flags | encr key_bits dh | seq_out replay_highest | created_at
# | rekeyed_from | local TS count, remote TS count
_CHILD = struct.Struct(">4s4sBHHHQQd4sBB")
# ip_protocol start_port end_port
_TS = struct.Struct(">BHH")

# _IKE flags (bit per boolean, from bit 0; encode packs them in this order) and presence
# bits (optional values).
_IKE_FLAGS = (
    "initiator",
    "local_clone_supported",
    "peer_clone_supported",
    "local_mobike_supported",
    "peer_mobike_supported",
    "peer_fragmentation_supported",
    "local_behind_nat",
    "remote_behind_nat",
)
_HAS_TRANSFORMS, _HAS_KEYS, _HAS_LOCAL_ID, _HAS_REMOTE_ID = 1, 2, 4, 8
_HAS_PARENT, _HAS_REKEYED_FROM, _HAS_ESTABLISHED_AT = 16, 32, 64
# _CHILD flags.
_CHILD_INITIATOR, _CHILD_ESN, _CHILD_HAS_REKEYED_FROM = 1, 2, 4

_NO_PAIR = bytes(16)
_KEY_NAMES = IkeSaKeys.__slots__


def _table(strings: list[bytes]) -> bytes:
    """The string table of ``strings``: their lengths, then their bytes."""
    return struct.pack(f">{len(strings)}H", *map(len, strings)) + b"".join(strings)


def _strings(data: bytes, offset: int, count: int) -> list[bytes]:
    """The ``count`` strings of the table at ``offset``, which must end ``data``."""
    end = offset + 2 * count
    if end > len(data):
        raise MalformedMessage("stored SA record ends inside its string table", offset)
    strings = []
    for length in struct.unpack_from(f">{count}H", data, offset):
        strings.append(data[end : end + length])
        end += length
    if end != len(data):
        raise MalformedMessage("stored SA record string table does not fill it", offset)
    return strings


def encode(sa: IkeSa) -> tuple[bytes, bytes]:
    """(public, secret) encodings of ``sa``. ValueError for a value that does not fit its
    field (a negative counter, a 9-byte SPI): such a record was never valid, and nothing of
    it is written."""
    if len(sa.spi_i) != 8 or len(sa.spi_r) != 8:
        raise ValueError("IKE SPIs are 8 bytes")
    transforms, keys, local_id, remote_id = sa.transforms, sa.keys, sa.local_id, sa.remote_id
    flags = (
        sa.initiator
        | sa.local_clone_supported << 1
        | sa.peer_clone_supported << 2
        | sa.local_mobike_supported << 3
        | sa.peer_mobike_supported << 4
        | sa.peer_fragmentation_supported << 5
        | sa.local_behind_nat << 6
        | sa.remote_behind_nat << 7
    )
    present = (
        (0 if transforms is None else _HAS_TRANSFORMS)
        | (0 if keys is None else _HAS_KEYS)
        | (0 if local_id is None else _HAS_LOCAL_ID)
        | (0 if remote_id is None else _HAS_REMOTE_ID)
        | (0 if sa.parent is None else _HAS_PARENT)
        | (0 if sa.rekeyed_from is None else _HAS_REKEYED_FROM)
        | (0 if sa.established_at is None else _HAS_ESTABLISHED_AT)
    )
    strings = [
        sa.state.value.encode(),
        sa.local_address[0].encode(),
        sa.remote_address[0].encode(),
        sa.peer_name.encode(),
        sa.family.encode(),
        b"" if local_id is None else local_id.data,
        b"" if remote_id is None else remote_id.data,
    ]
    secret = [] if keys is None else [getattr(keys, name) for name in _KEY_NAMES]
    try:
        blocks = [
            _IKE.pack(
                sa.spi_i,
                sa.spi_r,
                flags,
                present,
                0 if transforms is None else transforms.encr,
                0 if transforms is None else transforms.key_bits or 0,
                0 if transforms is None else transforms.prf,
                0 if transforms is None else transforms.dh,
                sa.next_request_id,
                sa.next_peer_request_id,
                sa.peer_window,
                sa.local_window,
                sa.sk_iv,
                sa.created_at,
                sa.established_at or 0.0,
                _NO_PAIR if sa.parent is None else b"".join(sa.parent),
                _NO_PAIR if sa.rekeyed_from is None else b"".join(sa.rekeyed_from),
                sa.local_address[1],
                sa.remote_address[1],
                0 if local_id is None else local_id.type,
                0 if remote_id is None else remote_id.type,
                len(sa.child_sas),
            )
        ]
        for child in sa.child_sas.values():
            esp = child.transforms
            bitmap = child.replay_bitmap
            blocks.append(
                _CHILD.pack(
                    child.spi_in,
                    child.spi_out,
                    (_CHILD_INITIATOR if child.initiator else 0)
                    | (_CHILD_ESN if esp.esn else 0)
                    | (0 if child.rekeyed_from is None else _CHILD_HAS_REKEYED_FROM),
                    esp.encr,
                    esp.key_bits or 0,
                    esp.dh,
                    child.seq_out,
                    child.replay_highest,
                    child.created_at,
                    child.rekeyed_from or bytes(4),
                    len(child.local_ts),
                    len(child.remote_ts),
                )
            )
            strings.append(child.state.value.encode())
            strings.append(bitmap.to_bytes((bitmap.bit_length() + 7) // 8, "big"))
            for ts in (*child.local_ts, *child.remote_ts):
                blocks.append(_TS.pack(ts.ip_protocol, ts.start_port, ts.end_port))
                strings.append(ts.start.encode())
                strings.append(ts.end.encode())
            secret.append(child.key_in)
            secret.append(child.key_out)
        blocks.append(_table(strings))
        return b"".join(blocks), _table(secret)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"IKE SA record field out of range: {exc}") from None


def _unpack(layout: struct.Struct, data: bytes, offset: int) -> tuple[Any, ...]:
    if offset + layout.size > len(data):
        raise MalformedMessage("stored SA record ends inside a fixed block", offset)
    return layout.unpack_from(data, offset)


def decode(public: bytes, secret: bytes) -> IkeSa:
    """The `IkeSa` encoded by `encode` as (``public``, ``secret``)."""
    try:
        return _decode(public, secret)
    except ValueError as exc:  # a state name, identity type or address this ikecore refuses
        raise MalformedMessage(f"unreadable stored SA record: {exc}") from None


def _decode(public: bytes, secret: bytes) -> IkeSa:
    (
        spi_i,
        spi_r,
        flags,
        present,
        encr,
        key_bits,
        prf,
        dh,
        next_request_id,
        next_peer_request_id,
        peer_window,
        local_window,
        sk_iv,
        created_at,
        established_at,
        parent,
        rekeyed_from,
        local_port,
        remote_port,
        local_id_type,
        remote_id_type,
        child_count,
    ) = _unpack(_IKE, public, 0)
    offset = _IKE.size
    child_blocks = []
    string_count = 7
    for _ in range(child_count):
        child_block = _unpack(_CHILD, public, offset)
        offset += _CHILD.size
        selector_blocks = []
        for _ in range(child_block[-2] + child_block[-1]):
            selector_blocks.append(_unpack(_TS, public, offset))
            offset += _TS.size
        child_blocks.append((child_block, selector_blocks))
        string_count += 2 + 2 * len(selector_blocks)
    strings = _strings(public, offset, string_count)
    keys = _strings(secret, 0, (7 if present & _HAS_KEYS else 0) + 2 * child_count)
    state, local_host, remote_host, peer_name, family, local_id_data, remote_id_data = strings[:7]
    next_string, next_key = 7, 0
    if present & _HAS_KEYS:
        ike_keys: IkeSaKeys | None = IkeSaKeys(*keys[:7])
        next_key = 7
    else:
        ike_keys = None
    children = {}
    for child_block, selector_blocks in child_blocks:
        (
            spi_in,
            spi_out,
            child_flags,
            esp_encr,
            esp_key_bits,
            esp_dh,
            seq_out,
            replay_highest,
            child_created_at,
            child_rekeyed_from,
            local_count,
            _,
        ) = child_block
        child_state, bitmap = strings[next_string : next_string + 2]
        next_string += 2
        selectors = []
        for ip_protocol, start_port, end_port in selector_blocks:
            start, end = strings[next_string : next_string + 2]
            next_string += 2
            selectors.append(
                TrafficSelector(start.decode(), end.decode(), ip_protocol, start_port, end_port)
            )
        key_in, key_out = keys[next_key : next_key + 2]
        next_key += 2
        children[spi_in] = ChildSa(
            spi_in=spi_in,
            spi_out=spi_out,
            initiator=bool(child_flags & _CHILD_INITIATOR),
            transforms=EspTransforms(
                esp_encr, esp_key_bits or None, bool(child_flags & _CHILD_ESN), esp_dh
            ),
            key_in=key_in,
            key_out=key_out,
            local_ts=tuple(selectors[:local_count]),
            remote_ts=tuple(selectors[local_count:]),
            state=ChildState(child_state.decode()),
            seq_out=seq_out,
            replay_highest=replay_highest,
            replay_bitmap=int.from_bytes(bitmap, "big"),
            created_at=child_created_at,
            rekeyed_from=child_rekeyed_from if child_flags & _CHILD_HAS_REKEYED_FROM else None,
        )
    if len(children) != child_count:
        raise MalformedMessage("stored SA record has two Child SAs with one inbound SPI")
    sa = IkeSa(
        spi_i=spi_i,
        spi_r=spi_r,
        initiator=False,
        local_address=(local_host.decode(), local_port),
        remote_address=(remote_host.decode(), remote_port),
        state=IkeState(state.decode()),
        transforms=IkeTransforms(encr, key_bits or None, prf, dh)
        if present & _HAS_TRANSFORMS
        else None,
        keys=ike_keys,
        local_id=Identity(IdType(local_id_type), local_id_data)
        if present & _HAS_LOCAL_ID
        else None,
        remote_id=Identity(IdType(remote_id_type), remote_id_data)
        if present & _HAS_REMOTE_ID
        else None,
        peer_name=peer_name.decode(),
        next_request_id=next_request_id,
        next_peer_request_id=next_peer_request_id,
        peer_window=peer_window,
        local_window=local_window,
        sk_iv=sk_iv,
        parent=(parent[:8], parent[8:]) if present & _HAS_PARENT else None,
        family=family.decode(),
        rekeyed_from=(rekeyed_from[:8], rekeyed_from[8:]) if present & _HAS_REKEYED_FROM else None,
        created_at=created_at,
        established_at=established_at if present & _HAS_ESTABLISHED_AT else None,
        child_sas=children,
    )
    for bit, name in enumerate(_IKE_FLAGS):
        setattr(sa, name, bool(flags >> bit & 1))
    return sa
