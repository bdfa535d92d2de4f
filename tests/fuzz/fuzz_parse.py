"""Fuzz target for the IKE message parser (atheris / libFuzzer).

Each input is parsed as an IKE message and, from its second byte on, as a decrypted inner
payload chain whose first payload type is the first byte. Whatever parses must decode into
payload objects, re-encode, and parse again to the same payloads; anything else must raise
MalformedMessage or UnsupportedCriticalPayload. Any other exception or a crash is a finding.

    python tests/fuzz/fuzz_parse.py [-runs=N] [libFuzzer flags] [CORPUS_DIR ...]
    python tests/fuzz/fuzz_parse.py --replay DIR ...   # each file once, without libFuzzer

Without ``-runs`` it stops after 200,000 inputs (the CI budget); ``-runs=-1`` runs until
stopped. ``tests/fuzz/make_corpus.py DIR`` writes the seed corpus from the test vectors.

The parser is native code that libFuzzer cannot see (this machine has no clang to build it
with coverage instrumentation), so coverage feedback alone would shrink the corpus to a few
tiny inputs. A structure-aware mutator keeps the search on real messages instead: half the
time it starts again from a seed, then applies libFuzzer's byte mutations, and mostly patches
the IKE header afterwards (Length = input length, version 2.0, non-zero SPI) so that mutants
get past the header check into the payload chain and bodies.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

DEFAULT_RUNS = 200_000


def test_one_input(data: bytes) -> None:
    from ikecore import (
        MalformedMessage,
        UnsupportedCriticalPayload,
        encode_message,
        encode_payload_chain,
        parse_message,
        parse_payload_chain,
    )

    try:
        message = parse_message(data)
    except (MalformedMessage, UnsupportedCriticalPayload):
        pass
    else:
        assert message.to_bytes() == data
        rebuilt = encode_message(
            message.spi_i, message.spi_r, message.exchange, message.message_id,
            message.payloads, initiator=message.is_initiator, response=message.is_response,
        )
        assert parse_message(rebuilt).payloads == message.payloads
    if len(data) < 1:
        return
    try:
        chain = parse_payload_chain(data[0], data[1:], 1)
    except (MalformedMessage, UnsupportedCriticalPayload):
        return
    first, encoded = encode_payload_chain(chain.payloads)
    assert parse_payload_chain(first, encoded).payloads == chain.payloads


def replay(directories: list[str]) -> int:
    import ikecore  # noqa: F401  (imported even for an empty corpus: the valgrind baseline)

    count = 0
    for directory in directories:
        for path in sorted(Path(directory).iterdir()):
            test_one_input(path.read_bytes())
            count += 1
    print(f"replayed {count} inputs without a finding")
    return 0


def make_mutator(seeds: list[bytes]):  # type: ignore[no-untyped-def]
    import atheris

    def mutate(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if len(data) < 28 or rng.random() < 0.5:
            data = rng.choice(seeds)
        mutant = bytearray(atheris.Mutate(data, max(max_size, len(data))))
        if len(mutant) >= 28 and rng.random() < 0.8:
            mutant[24:28] = len(mutant).to_bytes(4, "big")
            mutant[17] = 0x20
            mutant[0] |= 1
        return bytes(mutant[:max_size])

    return mutate


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--replay":
        raise SystemExit(replay(sys.argv[2:]))
    import atheris

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_corpus import seeds

    with atheris.instrument_imports(include=["ikecore"]):
        import ikecore  # noqa: F401
    argv = list(sys.argv)
    if not any(arg.startswith("-runs=") for arg in argv):
        argv.append(f"-runs={DEFAULT_RUNS}")
    if not any(arg.startswith("-max_len=") for arg in argv):
        argv.append("-max_len=2048")
    atheris.Setup(argv, test_one_input, custom_mutator=make_mutator(seeds()))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
