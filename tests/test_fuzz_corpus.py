"""The fuzz target's checks (tests/fuzz/fuzz_parse.py) over its seed corpus and deterministic
mutants, in the normal suite; ``make fuzz`` runs the target itself under libFuzzer."""

from __future__ import annotations

import pytest
from fuzz.fuzz_parse import test_one_input as fuzz_one_input
from fuzz.make_corpus import mutants, seeds

from ikecore import MalformedMessage, parse_message


def test_seed_corpus_holds_every_payload_type():
    types = set()
    for seed in seeds():
        try:
            types.update(parse_message(seed).payload_types)
        except MalformedMessage:
            continue  # inner-chain seeds are not messages
    assert set(range(33, 49)) | {53, 200} <= types


@pytest.mark.parametrize("data", seeds() + mutants(500))
def test_fuzz_target_accepts_corpus(data):
    fuzz_one_input(data)
