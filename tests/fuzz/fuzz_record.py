"""Mutation fuzzing of the store record decoder (`ikecore._fast.record.decode`, record formats
5, 4, 3 and 2).

Records are read back only after the sealer has authenticated them, but the decoder is native
code and a writer bug or a record of another format must still end in `MalformedMessage`,
never a crash, another exception type or a partial record. Each input is a valid record
(public and secret part, from `store_fixtures.make_sa`, with and without MOBIKE state and a
response cache; format 5 from the codec, formats 4, 3 and 2 from `store_record_reference`) with
1-4 random byte changes, truncations or insertions in one part, decoded in its own format or,
one time in five, in another; what still decodes must encode back to bytes that decode to the
same record.

    python tests/fuzz/fuzz_record.py [COUNT] [SEED]    # default 200,000 inputs, seed 0; -1: forever

Deterministic for a seed, so `make fuzz-valgrind` replays a fixed set under valgrind.
"""

from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path

DEFAULT_COUNT = 200_000


def mutate(rng: random.Random, part: bytes) -> bytes:
    data = bytearray(part)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.5 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.75 and data:
            del data[rng.randrange(len(data)) :]
        else:
            data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
    return bytes(data)


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_COUNT  # < 0: until stopped
    rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for the records
    from store_fixtures import make_sa
    from store_record_reference import reference_encode

    from ikecore.errors import MalformedMessage
    from ikecore.store.codec import decode, encode

    records = [make_sa(n) for n in range(8)]
    for n, sa in enumerate(records[::2]):
        sa.peer_addresses = (sa.remote_address[0], f"198.51.100.{n}", f"2001:db8::{n}")
        sa.mobike_update_id = n
        sa.nat_seen_as = bytes([n]) * 20
    for sa in records[1::2]:
        sa.mobike_initiator = not sa.initiator  # the responder rekeyed (RFC 4555 §1.3)
    for n, sa in enumerate(records[::3]):
        # The response cache (format 5): one window back and a request answered ahead, one
        # response in Encrypted Fragment messages (RFC 7383).
        sa.responses = {
            n: (bytes([n]) * 40, (bytes([n + 1]) * 60,)),
            n + 2: (bytes([n + 2]) * 30, (bytes([n + 3]) * 50, bytes([n + 4]) * 20)),
        }
    seeds = [(5, encode(sa)) for sa in records]
    seeds += [(f, reference_encode(sa, f)) for f in (2, 3, 4) for sa in records]
    decoded = 0
    for _ in range(count) if count >= 0 else itertools.count():
        record_format, (public, secret) = rng.choice(seeds)
        if rng.random() < 0.8:
            public = mutate(rng, public)
        else:
            secret = mutate(rng, secret)
        if rng.random() < 0.2:
            record_format = rng.choice([2, 3, 4, 5])  # read as another format
        try:
            record = decode(public, secret, record_format)
        except MalformedMessage:
            continue
        decoded += 1
        assert decode(*encode(record)) == record, "a decoded record does not round-trip"
    print(f"{count} mutated records: {decoded} decoded and round-tripped, the rest refused")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
