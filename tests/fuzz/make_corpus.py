"""Write the fuzz seed corpus: every message and decrypted inner chain of
tests/vectors/ikev2_clone_exchange.json (inner chains prefixed with their first payload type,
see fuzz_parse.py), and built messages that together hold every payload type.

    python tests/fuzz/make_corpus.py DIR [MUTANTS]

With MUTANTS, also that many deterministic mutants of the seeds (a few bytes changed,
inserted, removed or truncated, the header Length mostly patched), for replaying a larger
corpus under valgrind where libFuzzer cannot run.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for the vector loader

from ikemsg_vectors import inner_chains, messages

from ikecore import (
    Attribute,
    Authentication,
    Certificate,
    CertificateRequest,
    ConfigAttribute,
    Configuration,
    Delete,
    Eap,
    Encrypted,
    EncryptedFragment,
    IDi,
    IDr,
    KeyExchange,
    Nonce,
    Notify,
    Proposal,
    SecurityAssociation,
    TrafficSelector,
    Transform,
    TSi,
    TSr,
    UnknownPayload,
    VendorId,
    encode_message,
    encode_payload_chain,
)

SPI = bytes.fromhex("0102030405060708")


def built_seeds() -> list[bytes]:
    sa = SecurityAssociation((
        Proposal(1, 3, b"\x01\x02\x03\x04", (
            Transform(1, 12, 128, (Attribute(3, 7), Attribute(200, b"xyz"))),
            Transform(3, 12),
            Transform(5, 0),
        )),
        Proposal(2, 1, SPI, (Transform(1, 20, 256), Transform(2, 5), Transform(4, 31))),
    ))
    every = [
        sa,
        KeyExchange(31, bytes(32)),
        IDi(2, b"client.example"),
        IDr(1, bytes((192, 0, 2, 1))),
        Certificate(4, b"cert"),
        CertificateRequest(4, bytes(20)),
        Authentication(2, bytes(32)),
        Nonce(bytes(16)),
        Notify(3, b"\x01\x02\x03\x04", 16393),
        Notify(0, b"", 16431, b"\x00\x02\x00\x03"),
        Delete(3, 4, (bytes(4), b"\xff" * 4)),
        VendorId(b"ikecore"),
        TSi((TrafficSelector(8, 6, 0, 65535, bytes(16), b"\xff" * 16),)),
        TSr((TrafficSelector(7, 17, 500, 500, bytes(4), bytes(4)),)),
        Configuration(1, (ConfigAttribute(1), ConfigAttribute(3, bytes(4)))),
        Eap(1, 7, b"\x01id"),
        UnknownPayload(200, b"unknown"),
    ]
    seeds = [encode_message(SPI, SPI, 36, 5, every, initiator=True, response=False)]
    seeds.append(encode_message(SPI, SPI, 35, 1, [Encrypted(35, bytes(40))], initiator=True,
                                response=True))
    seeds.append(encode_message(SPI, SPI, 35, 1, [EncryptedFragment(35, 1, 2, bytes(40))],
                                initiator=False, response=False))
    first, chain = encode_payload_chain(every)
    seeds.append(bytes((first,)) + chain)
    return seeds


def seeds() -> list[bytes]:
    found = [m.data for m in messages()]
    found += [bytes((c.first_type,)) + c.inner for c in inner_chains()]
    return found + built_seeds()


def mutants(count: int) -> list[bytes]:
    rng = random.Random(7296)
    base = seeds()
    found = []
    for _ in range(count):
        data = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 4)):
            action = rng.randrange(4)
            position = rng.randrange(len(data) + 1)
            if action == 0 and position < len(data):
                data[position] = rng.randrange(256)
            elif action == 1:
                inserted = rng.randbytes(rng.randint(1, 8))
                data[position:position] = inserted
            elif action == 2:
                del data[position : position + rng.randint(1, 8)]
            else:
                del data[position:]
        if len(data) >= 28 and rng.random() < 0.8:
            data[24:28] = len(data).to_bytes(4, "big")
        found.append(bytes(data))
    return found


def main() -> None:
    directory = Path(sys.argv[1])
    directory.mkdir(parents=True, exist_ok=True)
    corpus = seeds() + mutants(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    for item in corpus:
        (directory / hashlib.sha1(item).hexdigest()).write_bytes(item)
    print(f"{len(corpus)} inputs in {directory}")


if __name__ == "__main__":
    main()
