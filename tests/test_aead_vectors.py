"""Published AES-GCM / ChaCha20-Poly1305 vectors through AesGcm / ChaCha20Poly1305 / IkeCipher,
on every engine built in (ipsec-mb and OpenSSL)."""

from __future__ import annotations

import pytest
from aead_vectors import (
    ENGINES,
    GcmCase,
    gcm_spec_cases,
    ipsec_gcm_cases,
    load,
    wycheproof_gcm_cases,
)

from ikecore import IntegrityError, MalformedMessage
from ikecore._fast.aead import AesGcm, ChaCha20Poly1305, IkeCipher

SPEC = gcm_spec_cases()
WYCHEPROOF = wycheproof_gcm_cases()


def _check_case(case: GcmCase, engine: str) -> None:
    icv_len = len(case.tag)
    aead = AesGcm(case.key_and_salt, icv_len, engine=engine)
    assert aead.engine == engine
    sealed = aead.seal(case.iv, case.aad, case.plaintext)
    assert sealed == case.ciphertext + case.tag
    assert aead.open(case.iv, case.aad, sealed) == case.plaintext
    out = bytearray(len(sealed) + 3)
    assert aead.seal_into(case.iv, case.aad, case.plaintext, out) == len(sealed)
    assert bytes(out[: len(sealed)]) == sealed
    assert aead.open_into(case.iv, case.aad, sealed, out) == len(case.plaintext)
    assert bytes(out[: len(case.plaintext)]) == case.plaintext


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", [c for c in SPEC if len(c.nonce) == 12], ids=lambda c: c.id)
def test_gcm_spec_96_bit_iv(case: GcmCase, engine: str) -> None:
    _check_case(case, engine)


@pytest.mark.parametrize("case", [c for c in SPEC if len(c.nonce) != 12], ids=lambda c: c.id)
def test_gcm_spec_other_iv_sizes_cannot_be_expressed(case: GcmCase) -> None:
    # RFC 4106 nonces are salt (4) | IV (8): any other explicit IV size is refused.
    aead = AesGcm(case.key_and_salt)
    with pytest.raises(ValueError, match="iv must be 8 bytes"):
        aead.seal(case.iv, case.aad, case.plaintext)
    with pytest.raises(ValueError, match="iv must be 8 bytes"):
        aead.open(case.iv, case.aad, case.ciphertext + case.tag)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", ipsec_gcm_cases(), ids=lambda c: c.id)
def test_strongswan_ipsec_form_icv_8_12_16(case: GcmCase, engine: str) -> None:
    _check_case(case, engine)


def test_ipsec_cases_cover_every_icv_length() -> None:
    assert {len(c.tag) for c in ipsec_gcm_cases()} == {8, 12, 16}


@pytest.mark.parametrize("engine", ENGINES)
def test_wycheproof_96_bit_iv(engine: str) -> None:
    checked = rejected = 0
    for case in WYCHEPROOF:
        if len(case.nonce) != 12:
            continue
        aead = AesGcm(case.key_and_salt, 16, engine=engine)
        if case.valid:
            _check_case(case, engine)
            checked += 1
        else:
            with pytest.raises(IntegrityError):
                aead.open(case.iv, case.aad, case.ciphertext + case.tag)
            out = bytearray(b"\xaa" * len(case.ciphertext))
            with pytest.raises(IntegrityError):
                aead.open_into(case.iv, case.aad, case.ciphertext + case.tag, out)
            # no unauthenticated plaintext is left in the caller's buffer
            assert out == bytes(len(case.ciphertext))
            rejected += 1
    assert (checked, rejected) == (116, 81)  # all 197 cases with a 96-bit IV


def test_wycheproof_other_iv_sizes_rejected_cleanly() -> None:
    others = [c for c in WYCHEPROOF if len(c.nonce) != 12]
    assert len(others) > 100
    for case in others:
        with pytest.raises(ValueError):
            AesGcm(case.key_and_salt).open(case.iv, case.aad, case.ciphertext + case.tag)


def test_rfc7634_ike_example_opens_and_reseals() -> None:
    v = load("chacha20_poly1305_rfc7634.json")["ike"]
    message = bytes.fromhex(v["message"])
    keymat = bytes.fromhex(v["keymat"])
    iv = int(v["iv"], 16)
    opener = IkeCipher(keymat, algorithm="chacha20-poly1305")
    assert opener.open_sk(message, v["sk_offset"]) == (
        v["inner_next_payload"],
        bytes.fromhex(v["inner"]),
    )
    # the sender whose last IV was iv - 1 makes the same bytes
    sealer = IkeCipher(keymat, algorithm="chacha20-poly1305", iv_counter=iv - 1)
    prefix = message[:24] + bytes(4)
    assert sealer.seal_sk(prefix, v["inner_next_payload"], bytes.fromhex(v["inner"])) == message
    assert sealer.iv_counter == iv


def test_rfc7634_ike_example_tampered() -> None:
    v = load("chacha20_poly1305_rfc7634.json")["ike"]
    message = bytearray.fromhex(v["message"])
    message[-1] ^= 1
    with pytest.raises(IntegrityError):
        IkeCipher(bytes.fromhex(v["keymat"]), algorithm="chacha20-poly1305").open_sk(message, 28)
    message[27] += 1  # IKE header Length no longer matches
    with pytest.raises(MalformedMessage) as info:
        IkeCipher(bytes.fromhex(v["keymat"]), algorithm="chacha20-poly1305").open_sk(message, 28)
    assert info.value.offset == 24


def test_chacha_is_openssl_only() -> None:
    keymat = bytes(range(36))
    assert ChaCha20Poly1305(keymat).engine == "openssl"
    assert ChaCha20Poly1305(keymat).algorithm == "chacha20-poly1305"
    with pytest.raises(ValueError, match="AES-GCM only"):
        ChaCha20Poly1305(keymat, engine="ipsec-mb")
    with pytest.raises(ValueError, match="icv_len is 16"):
        ChaCha20Poly1305(keymat, 8)
