"""Loaders for the PRF / IKEv2 key-derivation vectors in tests/vectors/ (provenance: its README).

One loader per file format; each returns plain records with bytes already decoded, and an ``id``
that pytest shows. Cases that must fail (Wycheproof "invalid") are kept next to the valid ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ikecore import PrfId

VECTORS = Path(__file__).with_name("vectors")

# HMAC-based integrity transforms of prf_hmac.json: the same HMAC as the PRF, truncated
_INTEG_HASH_PRF = {
    "AUTH_HMAC_SHA2_256_128": PrfId.HMAC_SHA2_256,
    "AUTH_HMAC_SHA2_384_192": PrfId.HMAC_SHA2_384,
    "AUTH_HMAC_SHA2_512_256": PrfId.HMAC_SHA2_512,
}

_WYCHEPROOF_HMAC = {
    "hmac_sha1_test.json": PrfId.HMAC_SHA1,
    "hmac_sha256_test.json": PrfId.HMAC_SHA2_256,
    "hmac_sha384_test.json": PrfId.HMAC_SHA2_384,
    "hmac_sha512_test.json": PrfId.HMAC_SHA2_512,
}


def _load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def prf_id_named(name: str) -> PrfId:
    """``"PRF_HMAC_SHA2_256"`` -> PrfId.HMAC_SHA2_256."""
    return PrfId[name.removeprefix("PRF_")]


@dataclass(frozen=True)
class PrfCase:
    """prf(key, data) must equal ``output`` (compared on its length: some sources truncate)."""

    id: str
    prf_id: PrfId
    key: bytes
    data: bytes
    output: bytes


@dataclass(frozen=True)
class MacCase:
    """A Wycheproof MAC test: ``valid`` tags must equal the PRF output (cut to the tag
    length), invalid ones must differ."""

    id: str
    prf_id: PrfId
    key: bytes
    data: bytes
    tag: bytes
    valid: bool


def rfc_prf_cases() -> list[PrfCase]:
    """prf_hmac.json (RFC 2202/4231/4868), prf_aes_xcbc.json (RFC 3566/4434) and
    prf_aes_cmac.json (RFC 4493/4615): every entry, PRF and MAC sections alike (with a
    16-byte key the MACs are the PRFs)."""
    cases = []
    for v in _load("prf_hmac.json")["vectors"]:
        prf_id = prf_id_named(v["prf"]) if "prf" in v else _INTEG_HASH_PRF[v["integ"]]
        output = bytes.fromhex(v["output"])
        assert len(output) == v.get("output_truncated_to_bytes", len(output))
        cases.append(
            PrfCase(v["id"], prf_id, bytes.fromhex(v["key"]), bytes.fromhex(v["data"]), output)
        )
    xcbc = _load("prf_aes_xcbc.json")
    for v in xcbc["mac_vectors"]:
        key, message = bytes.fromhex(v["key"]), bytes.fromhex(v["message"])
        cases.append(
            PrfCase(v["id"], PrfId.AES128_XCBC, key, message, bytes.fromhex(v["aes_xcbc_mac"]))
        )
        cases.append(
            PrfCase(
                v["id"] + "-96",
                PrfId.AES128_XCBC,
                key,
                message,
                bytes.fromhex(v["aes_xcbc_mac_96"]),
            )
        )
    cmac = _load("prf_aes_cmac.json")
    for v in cmac["mac_vectors"]:
        cases.append(
            PrfCase(
                v["id"],
                PrfId.AES128_CMAC,
                bytes.fromhex(v["key"]),
                bytes.fromhex(v["message"]),
                bytes.fromhex(v["aes_cmac"]),
            )
        )
    for v in [*xcbc["prf_vectors"], *cmac["prf_vectors"]]:
        key = bytes.fromhex(v["key"])
        assert len(key) == v["key_length"]
        cases.append(
            PrfCase(
                v["id"],
                prf_id_named(v["prf"]),
                key,
                bytes.fromhex(v["message"]),
                bytes.fromhex(v["output"]),
            )
        )
    return cases


def wycheproof_mac_cases() -> list[MacCase]:
    """Wycheproof HMAC-SHA1/256/384/512 (all groups; truncated tags compare on their length)
    and AES-CMAC with 128-bit keys. Left out: AES-192/256-CMAC (not PRF_AES128_CMAC) and the
    InvalidKeySize cases, which carry no tag (they test key-size rejection; the PRF instead
    maps any key length to a 16-byte key, RFC 4615 §3)."""
    cases = []
    for name, prf_id in _WYCHEPROOF_HMAC.items():
        for group in _load(f"wycheproof/{name}")["testGroups"]:
            for t in group["tests"]:
                cases.append(_mac_case(name, prf_id, t))
    for group in _load("wycheproof/aes_cmac_test.json")["testGroups"]:
        for t in group["tests"]:
            if group["keySize"] == 128:
                cases.append(_mac_case("aes_cmac_test.json", PrfId.AES128_CMAC, t))
    return cases


def _mac_case(file: str, prf_id: PrfId, t: dict[str, Any]) -> MacCase:
    assert t["result"] in ("valid", "invalid") and t["tag"]
    return MacCase(
        f"{file.removesuffix('_test.json')}-{t['tcId']}",
        prf_id,
        bytes.fromhex(t["key"]),
        bytes.fromhex(t["msg"]),
        bytes.fromhex(t["tag"]),
        t["result"] == "valid",
    )


def kdf_vectors() -> list[dict[str, Any]]:
    """ikev2_kdf.json entries, as stored (hex strings); tests pick them by ``id`` prefix."""
    return list(_load("ikev2_kdf.json")["vectors"])


def clone_exchange() -> dict[str, Any]:
    """ikev2_clone_exchange.json (generated RFC 7791 scenario, see the vectors README)."""
    return dict(_load("ikev2_clone_exchange.json"))


def h(text: str) -> bytes:
    return bytes.fromhex(text)
