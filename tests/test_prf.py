"""prf and prf+ (RFC 7296 §2.13): vectors, Wycheproof, a differential oracle, bad arguments."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kdf_oracle import ALL_PRFS, OUTPUT_LENGTH
from kdf_oracle import prf as ref_prf
from kdf_oracle import prf_plus as ref_prf_plus
from kdf_vectors import MacCase, PrfCase, kdf_vectors, rfc_prf_cases, wycheproof_mac_cases
from prf_paths import hmac_sha256_path  # noqa: F401  (every test on both SHA-256 paths)

import ikecore._fast.prf
from ikecore import PrfId, prf, prf_plus, psk_auth

RFC_CASES = rfc_prf_cases()
WYCHEPROOF_CASES = wycheproof_mac_cases()
PRF_PLUS_CASES = [v for v in kdf_vectors() if v["id"].startswith("prfplus-")]


def test_vector_files_were_all_loaded() -> None:
    # 72 HMAC + 14 XCBC (7 MACs, full and -96) + 4 CMAC + 3 + 3 PRF vectors
    assert len(RFC_CASES) == 72 + 14 + 4 + 6
    assert {c.prf_id for c in RFC_CASES} == set(ALL_PRFS)
    valid = sum(c.valid for c in WYCHEPROOF_CASES)
    assert len(WYCHEPROOF_CASES) - valid > valid > 200  # invalid cases outnumber the valid ones
    assert len(PRF_PLUS_CASES) == 7


@pytest.mark.parametrize("case", RFC_CASES, ids=lambda c: c.id)
def test_rfc_vectors(case: PrfCase) -> None:
    out = prf(case.prf_id, case.key, case.data)
    assert len(out) == OUTPUT_LENGTH[case.prf_id]
    assert out[: len(case.output)] == case.output


@pytest.mark.parametrize("case", WYCHEPROOF_CASES, ids=lambda c: c.id)
def test_wycheproof(case: MacCase) -> None:
    tag = prf(case.prf_id, case.key, case.data)[: len(case.tag)]
    assert (tag == case.tag) is case.valid


@pytest.mark.parametrize("vector", PRF_PLUS_CASES, ids=lambda v: v["id"])
def test_prf_plus_vectors(vector: dict[str, str]) -> None:
    prf_id = PrfId[vector["prf"].removeprefix("PRF_")]
    key, seed = bytes.fromhex(vector["key"]), bytes.fromhex(vector["seed"])
    out = prf_plus(prf_id, key, seed, int(vector["output_len"]))
    assert out.hex() == vector["output"]


@pytest.mark.parametrize("prf_id", ALL_PRFS)
def test_bytes_like_arguments_give_the_same_result(prf_id: PrfId) -> None:
    key, data = bytes(range(20)), bytes(range(100, 180))
    expected = prf(prf_id, key, data)
    assert prf(prf_id, bytearray(key), memoryview(data)) == expected
    assert prf(int(prf_id), memoryview(bytearray(key)), bytearray(data)) == expected
    assert prf(prf_id, key=key, data=data) == expected


@pytest.mark.parametrize("prf_id", ALL_PRFS)
def test_prf_plus_blocks_chain_and_cut_anywhere(prf_id: PrfId) -> None:
    key, seed = b"K" * 19, b"S" * 33
    h = OUTPUT_LENGTH[prf_id]
    full = prf_plus(prf_id, key, seed, 255 * h)
    assert len(full) == 255 * h
    # T1 = prf(K, S | 0x01); T2 = prf(K, T1 | S | 0x02); T255 uses the counter 0xff
    assert full[:h] == prf(prf_id, key, seed + b"\x01")
    assert full[h : 2 * h] == prf(prf_id, key, full[:h] + seed + b"\x02")
    assert full[-h:] == prf(prf_id, key, full[-2 * h : -h] + seed + b"\xff")
    for length in (0, 1, h - 1, h, h + 1, 3 * h + 5):
        assert prf_plus(prf_id, key, seed, length) == full[:length]


@settings(max_examples=60, deadline=None)
@given(
    prf_id=st.sampled_from(ALL_PRFS),
    key=st.binary(max_size=200),
    data=st.binary(max_size=300),
)
def test_prf_matches_the_reference(prf_id: PrfId, key: bytes, data: bytes) -> None:
    assert prf(prf_id, key, data) == ref_prf(prf_id, key, data)


@settings(max_examples=40, deadline=None)
@given(
    prf_id=st.sampled_from(ALL_PRFS),
    key=st.binary(max_size=100),
    seed=st.binary(max_size=1100),
    blocks=st.integers(min_value=0, max_value=255),
    cut=st.integers(min_value=0, max_value=63),
)
def test_prf_plus_matches_the_reference(
    prf_id: PrfId, key: bytes, seed: bytes, blocks: int, cut: int
) -> None:
    # the seed crosses the 1024-byte stack scratch; lengths cover every block count
    length = max(0, blocks * OUTPUT_LENGTH[prf_id] - cut)
    assert prf_plus(prf_id, key, seed, length) == ref_prf_plus(prf_id, key, seed, length)


@settings(max_examples=30, deadline=None)
@given(
    prf_id=st.sampled_from(ALL_PRFS),
    psk=st.binary(max_size=100),
    octets=st.binary(max_size=400),
)
def test_psk_auth_matches_the_reference(prf_id: PrfId, psk: bytes, octets: bytes) -> None:
    # AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
    expected = ref_prf(prf_id, ref_prf(prf_id, psk, b"Key Pad for IKEv2"), octets)
    assert psk_auth(prf_id, psk, octets) == expected


# HMAC-SHA-256 keys by RFC 2104 class: shorter than the 64-byte block (zero-padded), exactly a
# block, longer (hashed first). On the SHA-NI path every class ends in the 2-lane kernel that
# compresses the K0 ^ ipad and K0 ^ opad blocks together.
SHA256_KEYS = st.one_of(
    st.binary(max_size=63),
    st.binary(min_size=64, max_size=64),
    st.binary(min_size=65, max_size=300),
)


@settings(max_examples=60, deadline=None)
@given(key=SHA256_KEYS, data=st.binary(max_size=200))
def test_hmac_sha256_keys_of_every_length_class_match_stdlib_hmac(key: bytes, data: bytes) -> None:
    assert prf(PrfId.HMAC_SHA2_256, key, data) == hmac.digest(key, data, "sha256")


@settings(max_examples=40, deadline=None)
@given(key=SHA256_KEYS, seed=st.binary(max_size=150), blocks=st.integers(min_value=1, max_value=9))
def test_hmac_sha256_prf_plus_keys_of_every_length_class_match_stdlib_hmac(
    key: bytes, seed: bytes, blocks: int
) -> None:
    # T1 = prf(K, S | 0x01), Tn = prf(K, T(n-1) | S | n): every block from one key state pair
    expected, t = b"", b""
    for n in range(1, blocks + 1):
        t = hmac.digest(key, t + seed + bytes((n,)), "sha256")
        expected += t
    assert prf_plus(PrfId.HMAC_SHA2_256, key, seed, 32 * blocks) == expected



def test_hmac_sha256_prf_plus_every_seed_length_around_the_blocks() -> None:
    # S | 0x01 (T1) and T(n-1) | S | n (T2, T3, ...: padded apart from T1) end at every byte
    # position of a hash block, the padding with them; the last block is cut
    key = bytes(range(32))
    for seed_len in range(0, 140):
        seed = bytes((5 * i + seed_len) % 256 for i in range(seed_len))
        expected, t = b"", b""
        for n in range(1, 4):
            t = hmac.digest(key, t + seed + bytes((n,)), "sha256")
            expected += t
        assert prf_plus(PrfId.HMAC_SHA2_256, key, seed, 90) == expected[:90], seed_len

def test_hmac_sha256_every_key_length_around_the_block() -> None:
    # every length up to past one block: each byte position of K0 and both XOR pads is covered
    data = bytes(range(77))
    for length in range(0, 131):
        key = bytes((7 * i + length) % 256 for i in range(length))
        assert prf(PrfId.HMAC_SHA2_256, key, data) == hmac.digest(key, data, "sha256"), length


def test_long_xcbc_and_cmac_messages_use_the_chunked_cbc_path() -> None:
    key = bytes(range(16))
    for length in (255, 256, 257, 272, 4096, 4097):
        data = bytes(i % 251 for i in range(length))
        for prf_id in (PrfId.AES128_XCBC, PrfId.AES128_CMAC):
            assert prf(prf_id, key, data) == ref_prf(prf_id, key, data)


@pytest.mark.parametrize("bad_id", [0, 1, 3, 9, -5, 2**70])
def test_unknown_prf_id_is_a_value_error(bad_id: int) -> None:
    with pytest.raises(ValueError, match="unknown or unsupported PRF id"):
        prf(bad_id, b"k", b"d")
    with pytest.raises(ValueError, match="PRF id"):
        prf_plus(bad_id, b"k", b"s", 10)


def test_prf_plus_refuses_more_than_255_blocks() -> None:
    assert len(prf_plus(PrfId.HMAC_SHA2_256, b"k", b"s", 8160)) == 8160
    with pytest.raises(ValueError, match="255 blocks"):
        prf_plus(PrfId.HMAC_SHA2_256, b"k", b"s", 8161)
    with pytest.raises(ValueError, match="255 blocks"):
        prf_plus(PrfId.AES128_CMAC, b"k", b"s", 4081)
    with pytest.raises(ValueError, match="length"):
        prf_plus(PrfId.HMAC_SHA2_256, b"k", b"s", 2**80)
    with pytest.raises(ValueError, match="non-negative"):
        prf_plus(PrfId.HMAC_SHA2_256, b"k", b"s", -1)


def test_wrong_types_name_the_argument() -> None:
    with pytest.raises(TypeError, match="prf_id must be an int"):
        prf("5", b"k", b"d")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be bytes-like"):
        prf(PrfId.HMAC_SHA2_256, "secret", b"d")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data must be bytes-like"):
        prf(PrfId.AES128_CMAC, b"k", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be bytes-like"):
        prf_plus(PrfId.HMAC_SHA1, b"k", 7, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="length must be an int"):
        prf_plus(PrfId.HMAC_SHA1, b"k", b"s", 3.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="psk must be bytes-like"):
        psk_auth(PrfId.HMAC_SHA1, "psk", b"s")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key must be a C-contiguous buffer"):
        prf(PrfId.HMAC_SHA2_256, memoryview(b"abcdef")[::2], b"d")


def test_both_sha256_paths_are_exercised(request: pytest.FixtureRequest) -> None:
    # the autouse fixture really switches: the SHA-NI kernel is on only on the "sha-ni" run
    on_sha_ni = request.node.callspec.params["hmac_sha256_path"] == "sha-ni"
    assert ikecore._fast.prf._set_sha_ni(on_sha_ni) is on_sha_ni
    key, data = bytes(range(32)), bytes(range(200))
    assert prf(PrfId.HMAC_SHA2_256, key, data) == hmac.digest(key, data, "sha256")
