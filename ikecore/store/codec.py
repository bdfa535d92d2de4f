"""The binary encoding of `IkeSa` records in the persistent stores (record format 2).

A record is encoded into two byte strings: the *public* part (everything but key material,
stored in the clear but authenticated) and the *secret* part (the IKE SA's SK_* keys and
every Child SA's KEYMAT, which `RecordSealer` encrypts). Both are big-endian `struct` layouts:
a store write encodes a record in a few microseconds, where ``json.dumps(sa.to_dict())``
took tens (format 1).

Public part::

    IKE SA fixed block (_IKE)
    per Child SA: its fixed block (_CHILD), then one _TS block per traffic selector
    byte strings: the local and remote identity data, then each Child SA's replay bitmap
    text (UTF-8, to the end): IKE SA state, local host, remote host, peer name, family, then
        per Child SA its state and the start and end of each traffic selector

The fixed blocks carry every length: of each byte string in bytes, of each text in characters
(all texts are encoded at once), of each key. Optional values have a presence bit and a zero
placeholder; ``key_bits`` 0 means "no Key Length attribute" (no transform is negotiated with
0). States are stored by their names, so adding a state does not renumber old records.

Secret part: the seven IKE SA keys (RFC 7296 §2.14) when present, then ``key_in`` and
``key_out`` of each Child SA in the order of the public part, back to back.

`decode` is given only authenticated bytes (the sealer opens the record first), so a decoding
error means a writer bug or a record of another format; it raises `MalformedMessage`, never
returns a partial record.
"""

from __future__ import annotations

import struct
from operator import attrgetter
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
# | lengths: 2 identity data, 5 texts, 7 keys
_IKE = struct.Struct(">8s8sBBHHHHQQIIQdd16s16sHHBBH" + "H" * 14)
# spi_in spi_out | flags | encr key_bits dh | seq_out replay_highest | created_at
# | rekeyed_from | local TS count, remote TS count | lengths: bitmap, state, key_in, key_out
_CHILD = struct.Struct(">4s4sBHHHQQd4sBBHHHH")
# ip_protocol start_port end_port | lengths: start, end
_TS = struct.Struct(">BHHHH")

# _IKE flags: one bit per boolean, from bit 0 in this order (encode and decode follow it).
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
# _IKE presence bits of the optional values.
_HAS_TRANSFORMS, _HAS_KEYS, _HAS_LOCAL_ID, _HAS_REMOTE_ID = 1, 2, 4, 8
_HAS_PARENT, _HAS_REKEYED_FROM, _HAS_ESTABLISHED_AT = 16, 32, 64
# _CHILD flags.
_CHILD_INITIATOR, _CHILD_ESN, _CHILD_HAS_REKEYED_FROM = 1, 2, 4

_NO_PAIR = bytes(16)
_NO_SPI = bytes(4)
_NO_KEYS = (0,) * 7
_IKE_SA_KEYS = attrgetter(*IkeSaKeys.__slots__)


def encode(sa: IkeSa) -> tuple[bytes, bytes]:
    """(public, secret) encodings of ``sa``. ValueError for a value that does not fit its
    field (a negative counter, a 9-byte SPI): such a record was never valid, and nothing of
    it is written."""
    # struct's "s" pads or cuts a byte string to its size: the SPI lengths are checked here.
    parent = _NO_PAIR if sa.parent is None else b"".join(sa.parent)
    rekeyed_from = _NO_PAIR if sa.rekeyed_from is None else b"".join(sa.rekeyed_from)
    if len(sa.spi_i) != 8 or len(sa.spi_r) != 8 or len(parent) != 16 or len(rekeyed_from) != 16:
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
    local_data = b"" if local_id is None else local_id.data
    remote_data = b"" if remote_id is None else remote_id.data
    # States by name: _value_ is the plain attribute behind Enum's (much slower) .value.
    texts: list[str] = [sa.state._value_, sa.local_address[0], sa.remote_address[0]]
    texts += (sa.peer_name, sa.family)
    blobs = [local_data, remote_data]
    secret: list[bytes] = [] if keys is None else list(_IKE_SA_KEYS(keys))
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
                parent,
                rekeyed_from,
                sa.local_address[1],
                sa.remote_address[1],
                0 if local_id is None else local_id.type,
                0 if remote_id is None else remote_id.type,
                len(sa.child_sas),
                len(local_data),
                len(remote_data),
                *map(len, texts),
                *(map(len, secret) if secret else _NO_KEYS),
            )
        ]
        for child in sa.child_sas.values():
            esp = child.transforms
            bitmap = child.replay_bitmap
            bitmap_bytes = bitmap.to_bytes((bitmap.bit_length() + 7) // 8, "big")
            state = child.state._value_
            key_in, key_out = child.key_in, child.key_out
            child_rekeyed_from = child.rekeyed_from or _NO_SPI
            if len(child.spi_in) != 4 or len(child.spi_out) != 4 or len(child_rekeyed_from) != 4:
                raise ValueError("ESP SPIs are 4 bytes")
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
                    child_rekeyed_from,
                    len(child.local_ts),
                    len(child.remote_ts),
                    len(bitmap_bytes),
                    len(state),
                    len(key_in),
                    len(key_out),
                )
            )
            blobs.append(bitmap_bytes)
            texts.append(state)
            for ts in (*child.local_ts, *child.remote_ts):
                start, end = ts.start, ts.end
                blocks.append(
                    _TS.pack(ts.ip_protocol, ts.start_port, ts.end_port, len(start), len(end))
                )
                texts.append(start)
                texts.append(end)
            secret.append(key_in)
            secret.append(key_out)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"IKE SA record field out of range: {exc}") from None
    blocks += blobs
    blocks.append("".join(texts).encode())
    return b"".join(blocks), b"".join(secret)


def _unpack(layout: struct.Struct, data: bytes, offset: int) -> tuple[Any, ...]:
    if offset + layout.size > len(data):
        raise MalformedMessage("stored SA record ends inside a fixed block", offset)
    return layout.unpack_from(data, offset)


class _Cutter:
    """Cuts a sequence (bytes or str) into consecutive pieces of the given lengths."""

    __slots__ = ("data", "offset")

    def __init__(self, data: Any, offset: int = 0) -> None:
        self.data = data
        self.offset = offset

    def take(self, length: int) -> Any:
        start = self.offset
        self.offset = start + length
        return self.data[start : self.offset]


def decode(public: bytes, secret: bytes) -> IkeSa:
    """The `IkeSa` encoded by `encode` as (``public``, ``secret``)."""
    try:
        return _decode(public, secret)
    except ValueError as exc:  # a state name, identity type or address this ikecore refuses
        raise MalformedMessage(f"unreadable stored SA record: {exc}") from None


def _decode(public: bytes, secret: bytes) -> IkeSa:
    ike = _unpack(_IKE, public, 0)
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
        local_data_length,
        remote_data_length,
    ) = ike[:24]
    text_lengths = list(ike[24:29])
    key_lengths = list(ike[29:36])
    blob_lengths = [local_data_length, remote_data_length]
    # The fixed blocks first: they give every length of what follows them.
    offset = _IKE.size
    child_blocks = []
    for _ in range(child_count):
        child = _unpack(_CHILD, public, offset)
        offset += _CHILD.size
        selectors = []
        for _ in range(child[10] + child[11]):
            selectors.append(_unpack(_TS, public, offset))
            offset += _TS.size
        child_blocks.append((child, selectors))
        blob_lengths.append(child[12])
        text_lengths.append(child[13])
        text_lengths += [length for ts in selectors for length in ts[3:]]
        key_lengths += child[14:]
    text_at = offset + sum(blob_lengths)
    if text_at > len(public):
        raise MalformedMessage("stored SA record ends inside its byte strings", offset)
    try:
        text = _Cutter(public[text_at:].decode())
    except UnicodeDecodeError:
        raise MalformedMessage("stored SA record text is not UTF-8", text_at) from None
    if sum(text_lengths) != len(text.data):
        raise MalformedMessage("stored SA record text is not as long as its lengths", text_at)
    if not present & _HAS_KEYS and any(key_lengths[:7]):
        raise MalformedMessage("stored SA record has lengths of IKE SA keys it does not hold")
    if sum(key_lengths) != len(secret):
        raise MalformedMessage("stored SA record keys are not as long as their lengths")
    blobs, keys = _Cutter(public, offset), _Cutter(secret)
    local_id_data, remote_id_data = blobs.take(local_data_length), blobs.take(remote_data_length)
    state, local_host, remote_host, peer_name, family = (text.take(n) for n in text_lengths[:5])
    ike_keys = IkeSaKeys(*(keys.take(n) for n in key_lengths[:7])) if present & _HAS_KEYS else None
    children = {}
    for child, selectors in child_blocks:
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
            bitmap_length,
            state_length,
            key_in_length,
            key_out_length,
        ) = child
        bitmap = blobs.take(bitmap_length)
        child_state = text.take(state_length)
        traffic_selectors = [
            TrafficSelector(text.take(start), text.take(end), ip_protocol, first, last)
            for ip_protocol, first, last, start, end in selectors
        ]
        children[spi_in] = ChildSa(
            spi_in=spi_in,
            spi_out=spi_out,
            initiator=bool(child_flags & _CHILD_INITIATOR),
            transforms=EspTransforms(
                esp_encr, esp_key_bits or None, bool(child_flags & _CHILD_ESN), esp_dh
            ),
            key_in=keys.take(key_in_length),
            key_out=keys.take(key_out_length),
            local_ts=tuple(traffic_selectors[:local_count]),
            remote_ts=tuple(traffic_selectors[local_count:]),
            state=ChildState(child_state),
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
        local_address=(local_host, local_port),
        remote_address=(remote_host, remote_port),
        state=IkeState(state),
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
        peer_name=peer_name,
        next_request_id=next_request_id,
        next_peer_request_id=next_peer_request_id,
        peer_window=peer_window,
        local_window=local_window,
        sk_iv=sk_iv,
        parent=(parent[:8], parent[8:]) if present & _HAS_PARENT else None,
        family=family,
        rekeyed_from=(rekeyed_from[:8], rekeyed_from[8:]) if present & _HAS_REKEYED_FROM else None,
        created_at=created_at,
        established_at=established_at if present & _HAS_ESTABLISHED_AT else None,
        child_sas=children,
    )
    for bit, name in enumerate(_IKE_FLAGS):
        setattr(sa, name, bool(flags >> bit & 1))
    return sa
