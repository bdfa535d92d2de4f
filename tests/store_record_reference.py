"""An independent encoder of record formats 5, 4, 3 and 2 (the layout in _fast/record.pyx,
written with the stdlib ``struct`` module): the oracle of the compiled codec's differential
test, and the writer of format-4, 3 and 2 records as the ikecore before format 5, 4 and 3 wrote
them. Encoding only; decoding is checked by round trips and by the golden records."""

from __future__ import annotations

import struct

from ikecore.sa import IkeSa

IKE_BLOCK = struct.Struct(">8s8sBBHHHHQQIIQdd16s16sHHBBH" + "H" * 14)
CHILD_BLOCK = struct.Struct(">4s4sBHHHQQd4sBBHHHH")
TS_BLOCK = struct.Struct(">BHHHH")
MOBIKE_BLOCK = struct.Struct(">BQHH")
ADDRESS_LENGTH = struct.Struct(">H")
CACHE_BLOCK = struct.Struct(">I")
RESPONSE_BLOCK = struct.Struct(">IIH")
MESSAGE_LENGTH = struct.Struct(">I")
IKE_FLAGS = (
    "initiator",
    "local_clone_supported",
    "peer_clone_supported",
    "local_mobike_supported",
    "peer_mobike_supported",
    "peer_fragmentation_supported",
    "local_behind_nat",
    "remote_behind_nat",
)
IKE_SA_KEYS = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")


def reference_encode(sa: IkeSa, record_format: int = 5) -> tuple[bytes, bytes]:
    """(public, secret) of ``sa`` in record format 5, 4 (without the response cache), 3 (also
    without the MOBIKE role) or 2 (without the MOBIKE fields)."""
    transforms, keys, local_id, remote_id = sa.transforms, sa.keys, sa.local_id, sa.remote_id
    optional = (transforms, keys, local_id, remote_id, sa.parent, sa.rekeyed_from)
    present = sum(1 << bit for bit, value in enumerate(optional) if value is not None)
    present |= 0 if sa.established_at is None else 64
    flags = sum(1 << bit for bit, name in enumerate(IKE_FLAGS) if getattr(sa, name))
    texts = [sa.state.value, sa.local_address[0], sa.remote_address[0], sa.peer_name, sa.family]
    blobs = [b"" if identity is None else identity.data for identity in (local_id, remote_id)]
    secret = [] if keys is None else [getattr(keys, name) for name in IKE_SA_KEYS]
    blocks = [
        IKE_BLOCK.pack(
            sa.spi_i,
            sa.spi_r,
            flags,
            present,
            *(
                (0, 0, 0, 0)
                if transforms is None
                else (transforms.encr, transforms.key_bits or 0, transforms.prf, transforms.dh)
            ),
            sa.next_request_id,
            sa.next_peer_request_id,
            sa.peer_window,
            sa.local_window,
            sa.sk_iv,
            sa.created_at,
            0.0 if sa.established_at is None else sa.established_at,
            bytes(16) if sa.parent is None else b"".join(sa.parent),
            bytes(16) if sa.rekeyed_from is None else b"".join(sa.rekeyed_from),
            sa.local_address[1],
            sa.remote_address[1],
            0 if local_id is None else local_id.type,
            0 if remote_id is None else remote_id.type,
            len(sa.child_sas),
            *map(len, blobs),
            *map(len, texts),
            *(map(len, secret) if secret else [0] * 7),
        )
    ]
    for child in sa.child_sas.values():
        bitmap = child.replay_bitmap.to_bytes((child.replay_bitmap.bit_length() + 7) // 8, "big")
        child_flags = child.initiator | child.transforms.esn << 1
        child_flags |= 0 if child.rekeyed_from is None else 4
        blocks.append(
            CHILD_BLOCK.pack(
                child.spi_in,
                child.spi_out,
                child_flags,
                child.transforms.encr,
                child.transforms.key_bits or 0,
                child.transforms.dh,
                child.seq_out,
                child.replay_highest,
                child.created_at,
                child.rekeyed_from or bytes(4),
                len(child.local_ts),
                len(child.remote_ts),
                len(bitmap),
                len(child.state.value),
                len(child.key_in),
                len(child.key_out),
            )
        )
        blobs.append(bitmap)
        texts.append(child.state.value)
        for ts in (*child.local_ts, *child.remote_ts):
            ports = (ts.ip_protocol, ts.start_port, ts.end_port)
            blocks.append(TS_BLOCK.pack(*ports, len(ts.start), len(ts.end)))
            texts += (ts.start, ts.end)
        secret += (child.key_in, child.key_out)
    if record_format >= 3:
        # Format 3: the MOBIKE state after everything else of each section; format 4: the
        # MOBIKE role as flag 2 of its block.
        update_id = sa.mobike_update_id
        role = 2 if record_format >= 4 and sa.mobike_initiator else 0
        blocks.append(
            MOBIKE_BLOCK.pack(
                (update_id != -1) | role,
                0 if update_id == -1 else update_id,
                len(sa.nat_seen_as),
                len(sa.peer_addresses),
            )
        )
        blocks += [ADDRESS_LENGTH.pack(len(address)) for address in sa.peer_addresses]
        blobs.append(sa.nat_seen_as)
        texts += sa.peer_addresses
    else:
        assert record_format == 2
    if record_format >= 5:
        # Format 5: the response cache after the MOBIKE state, its messages' lengths 32-bit.
        responses = sa.responses or {}
        blocks.append(CACHE_BLOCK.pack(len(responses)))
        for message_id, (request, messages) in responses.items():
            blocks.append(RESPONSE_BLOCK.pack(message_id, len(request), len(messages)))
            blocks += [MESSAGE_LENGTH.pack(len(message)) for message in messages]
            blobs += (request, *messages)
    return b"".join(blocks + blobs) + "".join(texts).encode(), b"".join(secret)
