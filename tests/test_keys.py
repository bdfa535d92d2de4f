"""IKE SA and Child SA key schedules (RFC 7296 §2.14-2.18, RFC 7791): CAVP chains, generated
XCBC/CMAC chains, the RFC 7791 clone scenario, a differential oracle and bad arguments."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import kdf_oracle as ref
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kdf_vectors import clone_exchange, h, kdf_vectors, prf_id_named
from prf_paths import hmac_sha256_path  # noqa: F401  (every test on both SHA-256 paths)

import ikecore
from ikecore import (
    ChildKeys,
    EncrId,
    IkeKeys,
    IkeSuite,
    IntegId,
    PrfId,
    child_keys,
    ike_keys,
    ike_keys_initial,
    ike_keys_rekey,
    prf,
    prf_plus,
    psk_auth,
    skeyseed,
    skeyseed_rekey,
)

SK_NAMES = ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr")
VECTOR_NAMES = ("SK_d", "SK_ai", "SK_ar", "SK_ei", "SK_er", "SK_pi", "SK_pr")  # as in the JSON
KDF = {v["id"]: v for v in kdf_vectors()}
CLONE = clone_exchange()
GCM256_SHA256 = IkeSuite(EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_256, dh=19)


def _keymat(keys: IkeKeys) -> bytes:
    return b"".join(getattr(keys, name) for name in SK_NAMES)


def _child_keymat(keys: ChildKeys) -> bytes:
    return keys.encr_i + keys.integ_i + keys.encr_r + keys.integ_r


# --- NIST CAVP SP 800-135 IKEv2 KDF (SHA-1 full chain; SHA-2 SKEYSEED and prf+) --------------


def test_cavp_sha1_full_chain() -> None:
    v = KDF["cavp-ikev2-sha1-count0"]
    i, o = v["inputs"], v["outputs"]
    prf_id = prf_id_named(v["prf"])
    ni, nr, g_ir, g_ir_new = h(i["ni"]), h(i["nr"]), h(i["g_ir"]), h(i["g_ir_new"])
    spi_i, spi_r = h(i["spi_i"]), h(i["spi_r"])
    # SKEYSEED = prf(Ni | Nr, g^ir)
    seed_key = skeyseed(prf_id, ni, nr, g_ir)
    assert seed_key.hex() == o["skeyseed"]
    # DKM = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr); 1056 bits = 3 * 20 + 2 * (16 + 20):
    # AES-CBC-128 with HMAC-SHA1-96 and PRF-HMAC-SHA1 take exactly that much
    assert i["dkm_length_bits"] == 1056
    suite = IkeSuite(EncrId.AES_CBC, 128, prf_id, IntegId.HMAC_SHA1_96)
    keys = ike_keys(suite, seed_key, ni, nr, spi_i, spi_r)
    assert _keymat(keys).hex() == o["dkm"]
    assert _keymat(ike_keys_initial(suite, ni, nr, g_ir, spi_i, spi_r)).hex() == o["dkm"]
    assert (len(keys.sk_d), len(keys.sk_ai), len(keys.sk_ei), len(keys.sk_pr)) == (20, 20, 16, 20)
    # Child SA: KEYMAT = prf+(SK_d, Ni | Nr), and with PFS prf+(SK_d, g^ir (new) | Ni | Nr)
    n = len(o["dkm_child_sa"]) // 2
    encr_len, integ_len = n // 4, n // 2 - n // 4
    child = child_keys(prf_id, keys.sk_d, ni, nr, encr_len, integ_len)
    assert _child_keymat(child).hex() == o["dkm_child_sa"]
    assert (len(child.encr_i), len(child.integ_i)) == (encr_len, integ_len)
    child_pfs = child_keys(prf_id, keys.sk_d, ni, nr, encr_len, integ_len, g_ir=g_ir_new)
    assert _child_keymat(child_pfs).hex() == o["dkm_child_sa_dh"]
    # rekey: SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
    assert skeyseed_rekey(prf_id, keys.sk_d, g_ir_new, ni, nr).hex() == o["skeyseed_rekey"]


@pytest.mark.parametrize(
    "vector", [v for k, v in KDF.items() if k.startswith("cavp-skeyseed-")], ids=lambda v: v["id"]
)
def test_cavp_skeyseed(vector: dict[str, str]) -> None:
    ni, nr = h(vector["ni"]), h(vector["nr"])
    assert ni + nr == h(vector["ni_nr"])
    out = skeyseed(prf_id_named(vector["prf"]), ni, nr, h(vector["g_ir"]))
    assert out.hex() == vector["skeyseed"]


# --- generated AES-XCBC / AES-CMAC PRF chains (8-byte nonce truncation, §2.14) ---------------


@pytest.mark.parametrize("name", ["generated-prf_aes128_xcbc", "generated-prf_aes128_cmac"])
def test_aes_prf_chain(name: str) -> None:
    v = KDF[name]
    i = v["inputs"]
    prf_id = prf_id_named(v["prf"])
    ni, nr, g_ir, spi_i, spi_r = (h(i[k]) for k in ("ni", "nr", "g_ir", "spi_i", "spi_r"))
    assert len(ni) == len(nr) == 32  # only Ni[0:8] | Nr[0:8] key SKEYSEED
    seed_key = skeyseed(prf_id, ni, nr, g_ir)
    assert seed_key.hex() == v["skeyseed"]
    assert prf_plus(prf_id, seed_key, ni + nr + spi_i + spi_r, 112).hex() == v["keymat"]
    suite = IkeSuite(EncrId.AES_CBC, 128, prf_id, IntegId.AES_XCBC_96)
    expected = [v["keys"][name] for name in VECTOR_NAMES]
    for keys in (
        ike_keys(suite, seed_key, ni, nr, spi_i, spi_r),
        ike_keys_initial(suite, ni, nr, g_ir, spi_i, spi_r),
    ):
        assert [getattr(keys, n).hex() for n in SK_NAMES] == expected
    sk_d = h(v["keys"]["SK_d"])
    rekey = skeyseed_rekey(prf_id, sk_d, h(i["rekey_g_ir"]), h(i["rekey_ni"]), h(i["rekey_nr"]))
    assert rekey.hex() == v["rekey_or_clone_skeyseed"]


# --- the RFC 7791 scenario: initial SA, PSK AUTH, clone, Child SAs on both ---------------------


def _ike_keys_hex(section: dict[str, Any]) -> list[str]:
    return [section["keys"][name] for name in VECTOR_NAMES]


def test_clone_scenario_initial_sa() -> None:
    s = CLONE["ike_sa_init"]
    ni, nr, g_ir, spi_i, spi_r = (h(s[k]) for k in ("ni", "nr", "g_ir", "spi_i", "spi_r"))
    seed_key = skeyseed(GCM256_SHA256.prf, ni, nr, g_ir)
    assert seed_key.hex() == s["skeyseed"]
    keys = ike_keys(GCM256_SHA256, seed_key, ni, nr, spi_i, spi_r)
    assert [getattr(keys, n).hex() for n in SK_NAMES] == _ike_keys_hex(s)
    assert _keymat(keys).hex() == s["keymat"]
    assert ike_keys_initial(GCM256_SHA256, ni, nr, g_ir, spi_i, spi_r) == keys
    # GCM keys carry their salt: SK_ei = 32-byte AES key | 4-byte salt
    assert len(keys.sk_ei) == len(keys.sk_er) == 36 and keys.sk_ai == keys.sk_ar == b""


def test_clone_scenario_psk_auth_and_first_child_sa() -> None:
    s, a = CLONE["ike_sa_init"], CLONE["ike_auth"]
    keys = {n: h(v) for n, v in s["keys"].items()}
    psk = a["psk_ascii"].encode("ascii")
    assert prf(PrfId.HMAC_SHA2_256, psk, b"Key Pad for IKEv2").hex() == a["prf_psk_keypad"]
    maced_id_i = prf(PrfId.HMAC_SHA2_256, keys["SK_pi"], h(a["id_i_body"]))
    maced_id_r = prf(PrfId.HMAC_SHA2_256, keys["SK_pr"], h(a["id_r_body"]))
    assert (maced_id_i.hex(), maced_id_r.hex()) == (a["maced_id_i"], a["maced_id_r"])
    # InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
    octets_i = h(s["message1"]) + h(s["nr"]) + maced_id_i
    octets_r = h(s["message2"]) + h(s["ni"]) + maced_id_r
    assert (octets_i.hex(), octets_r.hex()) == (
        a["initiator_signed_octets"],
        a["responder_signed_octets"],
    )
    assert psk_auth(PrfId.HMAC_SHA2_256, psk, octets_i).hex() == a["auth_i"]
    assert psk_auth(PrfId.HMAC_SHA2_256, psk, octets_r).hex() == a["auth_r"]
    # the IKE_AUTH Child SA uses the IKE_SA_INIT nonces; ESP AES-GCM-16-256: 36-byte keys, no integ
    child = child_keys(PrfId.HMAC_SHA2_256, keys["SK_d"], h(s["ni"]), h(s["nr"]), 36, 0)
    assert _child_keymat(child).hex() == a["child_sa_keymat"]
    by_direction = dict(zip(("i_to_r", "r_to_i"), a["child_sa_keys"].values(), strict=True))
    assert (child.encr_i.hex(), child.encr_r.hex()) == (
        by_direction["i_to_r"],
        by_direction["r_to_i"],
    )
    assert child.integ_i == child.integ_r == b""


def test_clone_scenario_clone_keys() -> None:
    old = {n: h(v) for n, v in CLONE["ike_sa_init"]["keys"].items()}
    c = CLONE["clone"]
    ni, nr, g_ir = h(c["ni"]), h(c["nr"]), h(c["g_ir_new"])
    spi_i, spi_r = h(c["new_spi_i"]), h(c["new_spi_r"])
    # SKEYSEED = prf_old(SK_d_old, g^ir (new) | Ni | Nr); keys from the Proposal SPIs
    seed_key = skeyseed_rekey(PrfId.HMAC_SHA2_256, old["SK_d"], g_ir, ni, nr)
    assert seed_key.hex() == c["skeyseed"]
    keys = ike_keys(GCM256_SHA256, seed_key, ni, nr, spi_i, spi_r)
    assert [getattr(keys, n).hex() for n in SK_NAMES] == _ike_keys_hex(c)
    assert _keymat(keys).hex() == c["keymat"]
    one_call = ike_keys_rekey(
        PrfId.HMAC_SHA2_256, old["SK_d"], GCM256_SHA256, g_ir, ni, nr, spi_i, spi_r
    )
    assert one_call == keys


def test_clone_scenario_child_sa_on_the_clone() -> None:
    sk_d = h(CLONE["clone"]["keys"]["SK_d"])
    c = CLONE["child_sa_on_clone"]
    ni, nr = h(c["ni"]), h(c["nr"])
    child = child_keys(PrfId.HMAC_SHA2_256, sk_d, ni, nr, 36, 0)
    assert _child_keymat(child).hex() == c["keymat_no_pfs"]
    assert (child.encr_i.hex(), child.encr_r.hex()) == (
        c["keys_no_pfs"]["i_to_r"],
        c["keys_no_pfs"]["r_to_i"],
    )
    pfs = c["pfs_variant"]
    child_pfs = child_keys(PrfId.HMAC_SHA2_256, sk_d, ni, nr, 36, 0, g_ir=h(pfs["g_ir"]))
    assert _child_keymat(child_pfs).hex() == pfs["keymat"]
    esp = CLONE["esp_on_clone"]  # the ESP packet's SA is i->r: its key and salt are encr_i
    assert child.encr_i == h(esp["key"]) + h(esp["salt"])


# --- IkeSuite key lengths (spec/ikev2-crypto.md §2, RFC 5282 §7.1, RFC 7634) -----------------

SUITES = [
    (IkeSuite(EncrId.AES_GCM_8, 128, PrfId.HMAC_SHA2_256), 20, 0),
    (IkeSuite(EncrId.AES_GCM_12, 192, PrfId.HMAC_SHA2_384), 28, 0),
    (IkeSuite(EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_512, IntegId.NONE), 36, 0),
    (IkeSuite(EncrId.CHACHA20_POLY1305, None, PrfId.HMAC_SHA2_256), 36, 0),
    (IkeSuite(EncrId.CHACHA20_POLY1305, 256, PrfId.AES128_CMAC), 36, 0),
    (IkeSuite(EncrId.AES_CBC, 128, PrfId.HMAC_SHA1, IntegId.HMAC_SHA1_96), 16, 20),
    (IkeSuite(EncrId.AES_CBC, 192, PrfId.AES128_XCBC, IntegId.AES_XCBC_96), 24, 16),
    (IkeSuite(EncrId.AES_CBC, 256, PrfId.HMAC_SHA2_256, IntegId.HMAC_SHA2_256_128), 32, 32),
    (IkeSuite(EncrId.AES_CBC, 256, PrfId.HMAC_SHA2_384, IntegId.HMAC_SHA2_384_192), 32, 48),
    (IkeSuite(EncrId.AES_CBC, 256, PrfId.HMAC_SHA2_512, IntegId.HMAC_SHA2_512_256), 32, 64),
]


@pytest.mark.parametrize(("suite", "encr_len", "integ_len"), SUITES, ids=repr)
def test_suite_key_lengths(suite: IkeSuite, encr_len: int, integ_len: int) -> None:
    assert (suite.encr_key_len, suite.integ_key_len) == (encr_len, integ_len)
    keys = ike_keys_initial(suite, b"N" * 16, b"R" * 16, b"G" * 32, b"I" * 8, b"J" * 8)
    prf_len = ref.OUTPUT_LENGTH[PrfId(suite.prf)]
    lengths = [len(getattr(keys, n)) for n in SK_NAMES]
    assert lengths == [prf_len, integ_len, integ_len, encr_len, encr_len, prf_len, prf_len]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((EncrId.AES_GCM_16, 100, PrfId.HMAC_SHA2_256), "key_bits 128, 192 or 256"),
        ((EncrId.AES_GCM_16, None, PrfId.HMAC_SHA2_256), "key_bits 128, 192 or 256"),
        ((EncrId.AES_CBC, 256, PrfId.HMAC_SHA2_256), "integrity transform"),
        ((EncrId.AES_CBC, 256, PrfId.HMAC_SHA2_256, 99), "integrity transform"),
        ((EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_256, IntegId.HMAC_SHA2_256_128), "AEAD"),
        ((EncrId.CHACHA20_POLY1305, 128, PrfId.HMAC_SHA2_256), "256-bit key"),
        ((EncrId.DES3, 192, PrfId.HMAC_SHA2_256, IntegId.HMAC_SHA1_96), "unsupported encryption"),
        ((EncrId.AES_GCM_16, 256, PrfId.HMAC_MD5), "PRF id"),
    ],
)
def test_bad_suites_are_value_errors(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IkeSuite(*args)


def test_bad_suite_types_are_type_errors() -> None:
    with pytest.raises(TypeError, match=r"IkeSuite\.encr must be an int"):
        IkeSuite("aes256gcm16", 256, PrfId.HMAC_SHA2_256)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"IkeSuite\.dh must be an int or None"):
        IkeSuite(EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_256, dh="x25519")  # type: ignore[arg-type]


# --- results: frozen, slotted, keys never in a repr ------------------------------------------


def test_key_records_are_immutable_and_never_show_keys() -> None:
    keys = ike_keys_initial(GCM256_SHA256, b"n" * 32, b"r" * 32, b"g" * 32, b"i" * 8, b"j" * 8)
    child = child_keys(PrfId.HMAC_SHA2_256, keys.sk_d, b"n" * 32, b"r" * 32, 36, 0)
    for record in (keys, child):
        text = repr(record) + str(record)
        for name in record.__match_args__:
            value = getattr(record, name)
            assert isinstance(value, bytes)
            assert value == b"" or (value.hex() not in text and repr(value) not in text)
            with pytest.raises(AttributeError):
                setattr(record, name, b"x")
        assert not hasattr(record, "__dict__")
    assert repr(keys).startswith("IkeKeys(sk_d=<32 bytes>, sk_ai=<0 bytes>")
    assert (
        repr(child)
        == "ChildKeys(encr_i=<36 bytes>, integ_i=<0 bytes>, encr_r=<36 bytes>, integ_r=<0 bytes>)"
    )


def test_suites_pickle_copy_and_replace_with_their_key_schedule() -> None:
    # the native record an IkeSuite keeps for the schedules travels with it
    args = (b"n" * 32, b"r" * 32, b"g" * 32, b"i" * 8, b"j" * 8)
    cbc = IkeSuite(EncrId.AES_CBC, 128, PrfId.HMAC_SHA2_384, IntegId.HMAC_SHA2_256_128)
    for suite in (GCM256_SHA256, cbc):
        expected = ike_keys_initial(suite, *args)
        for again in (pickle.loads(pickle.dumps(suite)), copy.deepcopy(suite), copy.copy(suite)):
            assert again == suite
            assert ike_keys_initial(again, *args) == expected
    aes256 = dataclasses.replace(cbc, key_bits=256)
    assert len(ike_keys_initial(aes256, *args).sk_ei) == 32
    assert "prf=6, integ_key_len=32, encr_key_len=16" in repr(cbc._key_schedule)



class _SubSuite(IkeSuite):
    """An IkeSuite subclass: the schedules read its record through the attribute."""


def test_the_schedules_read_an_ike_suites_record_from_its_slot_and_others_by_attribute() -> None:
    # IkeSuite's _key_schedule slot is read directly; a subclass, or a slot holding anything
    # but a _KeySchedule, takes the checked attribute path
    args = (b"n" * 32, b"r" * 32, b"g" * 32, b"i" * 8, b"j" * 8)
    expected = ike_keys_initial(GCM256_SHA256, *args)
    subclassed = _SubSuite(EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_256)
    assert ike_keys_initial(subclassed, *args) == expected
    cbc = IkeSuite(EncrId.AES_CBC, 128, PrfId.HMAC_SHA2_384, IntegId.HMAC_SHA2_256_128)
    assert ike_keys_initial(cbc, *args) != expected
    object.__setattr__(cbc, "_key_schedule", GCM256_SHA256._key_schedule)
    assert ike_keys_initial(cbc, *args) == expected
    object.__setattr__(cbc, "_key_schedule", (5, 0, 36))
    with pytest.raises(TypeError, match=r"_key_schedule must be an .*_KeySchedule, not tuple"):
        ike_keys_initial(cbc, *args)
    object.__delattr__(cbc, "_key_schedule")
    with pytest.raises(TypeError, match="suite must be an IkeSuite, not IkeSuite"):
        ike_keys_initial(cbc, *args)
    with pytest.raises(TypeError, match="must keep _key_schedule in a __slots__ member"):
        ikecore._fast.prf._register_suite_type(_LooseSuite)

def test_key_records_compare_hash_and_pickle_by_value() -> None:
    args = (b"n" * 32, b"r" * 32, b"g" * 32, b"i" * 8, b"j" * 8)
    keys = ike_keys_initial(GCM256_SHA256, *args)
    again = ike_keys_initial(GCM256_SHA256, *args)
    assert keys == again and hash(keys) == hash(again) and keys is not again
    assert keys != ike_keys_initial(GCM256_SHA256, *args[:4], b"k" * 8)
    assert keys != tuple(getattr(keys, name) for name in keys.__match_args__)
    assert pickle.loads(pickle.dumps(keys)) == keys
    assert IkeKeys(*(getattr(keys, name) for name in keys.__match_args__)) == keys
    child = child_keys(PrfId.HMAC_SHA2_256, keys.sk_d, b"n" * 32, b"r" * 32, 36, 0)
    assert ChildKeys(child.encr_i, child.integ_i, child.encr_r, child.integ_r) == child
    assert pickle.loads(pickle.dumps(child)) == child
    with pytest.raises(TypeError):
        ChildKeys(child.encr_i, None, child.encr_r, child.integ_r)  # type: ignore[arg-type]


def test_public_names_are_importable_from_the_package() -> None:
    assert ikecore.keys.SUPPORTED_PRFS == set(ref.ALL_PRFS)
    for name in (
        "prf",
        "prf_plus",
        "skeyseed",
        "skeyseed_rekey",
        "IkeSuite",
        "ike_keys",
        "child_keys",
        "psk_auth",
        "IkeKeys",
        "ChildKeys",
    ):
        assert getattr(ikecore, name) is getattr(ikecore.keys, name)


class _LooseSuite:
    """What the native schedules read from an IkeSuite, without IkeSuite's own checks."""

    def __init__(self, prf: Any, integ_key_len: Any, encr_key_len: Any) -> None:
        self._key_schedule = ikecore._fast.prf._KeySchedule(prf, integ_key_len, encr_key_len)


# --- bad arguments -------------------------------------------------------------------------


@pytest.mark.parametrize("spi", [b"", b"1234567", b"123456789"])
def test_spis_must_be_8_bytes(spi: bytes) -> None:
    with pytest.raises(ValueError, match="spi_i must be 8 bytes"):
        ike_keys(GCM256_SHA256, b"k" * 32, b"n", b"r", spi, b"j" * 8)
    with pytest.raises(ValueError, match="spi_r must be 8 bytes"):
        ike_keys_initial(GCM256_SHA256, b"n", b"r", b"g", b"i" * 8, spi)
    with pytest.raises(ValueError, match="spi_r must be 8 bytes"):
        ike_keys_rekey(
            PrfId.HMAC_SHA2_256, b"d" * 32, GCM256_SHA256, b"g", b"n", b"r", b"i" * 8, spi
        )


def test_bad_key_schedule_arguments() -> None:
    with pytest.raises(ValueError, match="at least 8 bytes"):
        skeyseed(PrfId.AES128_XCBC, b"n" * 7, b"r" * 8, b"g")
    with pytest.raises(ValueError, match="at least 8 bytes"):
        ike_keys_initial(
            IkeSuite(EncrId.AES_GCM_16, 128, PrfId.AES128_CMAC),
            b"n" * 8,
            b"r" * 4,
            b"g",
            b"i" * 8,
            b"j" * 8,
        )
    with pytest.raises(ValueError, match="old_prf_id"):
        skeyseed_rekey(42, b"d", b"g", b"n", b"r")
    with pytest.raises(ValueError, match="old_prf_id"):
        ike_keys_rekey(42, b"d", GCM256_SHA256, b"g", b"n", b"r", b"i" * 8, b"j" * 8)
    with pytest.raises(ValueError, match="255 blocks"):
        child_keys(PrfId.AES128_XCBC, b"d" * 16, b"n", b"r", 1000, 1041)
    assert (
        len(_child_keymat(child_keys(PrfId.AES128_XCBC, b"d" * 16, b"n", b"r", 1000, 1040))) == 4080
    )
    with pytest.raises(ValueError, match="encr_key_len"):
        child_keys(PrfId.HMAC_SHA2_256, b"d", b"n", b"r", -1, 0)
    for huge in (2**63 - 1, 2**62):  # 2 * (encr + integ) would wrap around in 64 bits
        with pytest.raises(ValueError, match="255 blocks"):
            child_keys(PrfId.HMAC_SHA2_256, b"d", b"n", b"r", huge, 10)
        with pytest.raises(ValueError, match="255 blocks"):
            ikecore._fast.prf.ike_keys(  # the native call, with lengths no IkeSuite has
                _LooseSuite(PrfId.HMAC_SHA2_256, huge, 2),  # type: ignore[arg-type]
                b"k", b"n", b"r", b"i" * 8, b"j" * 8,
            )
    with pytest.raises(TypeError, match="g_ir must be bytes-like"):
        child_keys(PrfId.HMAC_SHA2_256, b"d", b"n", b"r", 32, 32, g_ir="abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sk_d must be bytes-like"):
        child_keys(PrfId.HMAC_SHA2_256, 5, b"n", b"r", 32, 32)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="g_ir must be bytes-like"):
        skeyseed(PrfId.HMAC_SHA2_256, b"n", b"r", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="suite must be an IkeSuite, not str"):
        ike_keys("suite", b"k", b"n", b"r", b"i" * 8, b"j" * 8)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="suite must be an IkeSuite, not tuple"):
        ike_keys_initial((20, 256, 5), b"n", b"r", b"g", b"i" * 8, b"j" * 8)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="suite must be an IkeSuite, not NoneType"):
        ike_keys_rekey(5, b"d", None, b"g", b"n", b"r", b"i" * 8, b"j" * 8)  # type: ignore[arg-type]
    # the native record the schedules read from a suite checks its fields itself, not only
    # IkeSuite's constructor
    with pytest.raises(ValueError, match=r"unknown or unsupported PRF id 3 for suite\.prf"):
        ike_keys(_LooseSuite(3, 0, 36), b"k", b"n", b"r", b"i" * 8, b"j" * 8)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"suite\.encr_key_len must be an int"):
        ike_keys(_LooseSuite(5, 0, "36"), b"k", b"n", b"r", b"i" * 8, b"j" * 8)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"_key_schedule must be an .*_KeySchedule, not list"):
        loose = _LooseSuite(5, 0, 36)
        loose._key_schedule = [5, 0, 36]  # type: ignore[assignment]
        ike_keys(loose, b"k", b"n", b"r", b"i" * 8, b"j" * 8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"suite\.integ_key_len must be a non-negative int"):
        ike_keys(_LooseSuite(5, -1, 36), b"k", b"n", b"r", b"i" * 8, b"j" * 8)  # type: ignore[arg-type]


# --- differential: every schedule against the reference ----------------------------------------

SUITES_ONLY = [suite for suite, _, _ in SUITES]
nonces = st.binary(min_size=8, max_size=96)
spis = st.binary(min_size=8, max_size=8)


@settings(max_examples=40, deadline=None)
@given(
    suite=st.sampled_from(SUITES_ONLY),
    ni=nonces,
    nr=nonces,
    g_ir=st.binary(min_size=1, max_size=300),
    spi_i=spis,
    spi_r=spis,
)
def test_initial_sa_keys_match_the_reference(
    suite: IkeSuite, ni: bytes, nr: bytes, g_ir: bytes, spi_i: bytes, spi_r: bytes
) -> None:
    expected_seed = ref.skeyseed(suite.prf, ni, nr, g_ir)
    assert skeyseed(suite.prf, ni, nr, g_ir) == expected_seed
    expected = ref.ike_keys(
        suite.prf, expected_seed, ni, nr, spi_i, spi_r, suite.integ_key_len, suite.encr_key_len
    )
    assert [
        getattr(ike_keys_initial(suite, ni, nr, g_ir, spi_i, spi_r), n) for n in SK_NAMES
    ] == expected
    assert [
        getattr(ike_keys(suite, expected_seed, ni, nr, spi_i, spi_r), n) for n in SK_NAMES
    ] == expected


@settings(max_examples=40, deadline=None)
@given(
    old_prf=st.sampled_from(ref.ALL_PRFS),
    suite=st.sampled_from(SUITES_ONLY),
    sk_d_old=st.binary(max_size=80),
    ni=nonces,
    nr=nonces,
    g_ir=st.binary(max_size=600),
    spi_i=spis,
    spi_r=spis,
)
def test_rekey_keys_match_the_reference(
    old_prf: PrfId,
    suite: IkeSuite,
    sk_d_old: bytes,
    ni: bytes,
    nr: bytes,
    g_ir: bytes,
    spi_i: bytes,
    spi_r: bytes,
) -> None:
    # SKEYSEED with the old PRF, prf+ with the new one (RFC 7296 §2.18)
    expected_seed = ref.prf(old_prf, sk_d_old, g_ir + ni + nr)
    assert skeyseed_rekey(old_prf, sk_d_old, g_ir, ni, nr) == expected_seed
    expected = ref.ike_keys(
        suite.prf, expected_seed, ni, nr, spi_i, spi_r, suite.integ_key_len, suite.encr_key_len
    )
    keys = ike_keys_rekey(old_prf, sk_d_old, suite, g_ir, ni, nr, spi_i, spi_r)
    assert [getattr(keys, n) for n in SK_NAMES] == expected


@settings(max_examples=40, deadline=None)
@given(
    prf_id=st.sampled_from(ref.ALL_PRFS),
    sk_d=st.binary(max_size=80),
    ni=nonces,
    nr=nonces,
    encr_len=st.integers(0, 80),
    integ_len=st.integers(0, 80),
    g_ir=st.none() | st.binary(max_size=600),
)
def test_child_keys_match_the_reference(
    prf_id: PrfId,
    sk_d: bytes,
    ni: bytes,
    nr: bytes,
    encr_len: int,
    integ_len: int,
    g_ir: bytes | None,
) -> None:
    seed = (g_ir or b"") + ni + nr
    keymat = ref.prf_plus(prf_id, sk_d, seed, 2 * (encr_len + integ_len))
    expected = ref.split(keymat, [encr_len, integ_len, encr_len, integ_len])
    keys = child_keys(prf_id, sk_d, ni, nr, encr_len, integ_len, g_ir)
    assert [keys.encr_i, keys.integ_i, keys.encr_r, keys.integ_r] == expected


@pytest.mark.parametrize("prf_id", ref.ALL_PRFS)
def test_largest_inputs_take_the_heap_scratch_path(prf_id: PrfId) -> None:
    # 256-byte nonces (the RFC 7296 §3.9 maximum) and a 1024-byte g^ir (MODP group 18) overflow
    # the 1 KiB stack scratch in every schedule
    ni, nr, g_ir = bytes(range(256)), bytes(255 - i for i in range(256)), b"\x5a" * 1024
    spi_i, spi_r = b"I" * 8, b"R" * 8
    suite = IkeSuite(EncrId.AES_CBC, 256, prf_id, IntegId.HMAC_SHA2_512_256)
    lengths = (suite.integ_key_len, suite.encr_key_len)
    expected = ref.ike_keys(
        prf_id, ref.skeyseed(prf_id, ni, nr, g_ir), ni, nr, spi_i, spi_r, *lengths
    )
    keys = ike_keys_initial(suite, ni, nr, g_ir, spi_i, spi_r)
    assert [getattr(keys, n) for n in SK_NAMES] == expected
    old_sk_d = b"D" * 48
    rekey_seed = ref.prf(prf_id, old_sk_d, g_ir + ni + nr)
    expected = ref.ike_keys(prf_id, rekey_seed, ni, nr, spi_i, spi_r, *lengths)
    keys = ike_keys_rekey(prf_id, old_sk_d, suite, g_ir, ni, nr, spi_i, spi_r)
    assert [getattr(keys, n) for n in SK_NAMES] == expected
    child = child_keys(prf_id, keys.sk_d, ni, nr, 36, 64, g_ir=g_ir)
    keymat = ref.prf_plus(prf_id, keys.sk_d, g_ir + ni + nr, 200)
    assert _child_keymat(child) == keymat
