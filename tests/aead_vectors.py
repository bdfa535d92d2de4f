"""Loaders for the AEAD / ESP vector files in tests/vectors/ (one per format) and the engine
list the AEAD and ESP tests are parametrized over (every test runs on every engine)."""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass
from typing import Any

import pytest

from ikecore._fast import aead

VECTORS = pathlib.Path(__file__).parent / "vectors"

ENGINES = [
    pytest.param(engine, id=engine)
    for engine in ("ipsec-mb", "openssl")
    if engine in aead.available_engines()
]


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


@dataclass(frozen=True)
class GcmCase:
    """One AES-GCM computation: 12-byte nonce split the RFC 4106 way (salt | explicit IV)."""

    id: str
    key: bytes
    nonce: bytes
    aad: bytes
    plaintext: bytes
    ciphertext: bytes
    tag: bytes
    valid: bool = True

    @property
    def key_and_salt(self) -> bytes:
        return self.key + self.nonce[:4]

    @property
    def iv(self) -> bytes:
        return self.nonce[4:]


def gcm_spec_cases() -> list[GcmCase]:
    """McGrew-Viega spec cases (all IV sizes; only 96-bit ones fit RFC 4106)."""
    return [
        GcmCase(
            c["id"],
            bytes.fromhex(c["key"]),
            bytes.fromhex(c["iv"]),
            bytes.fromhex(c["aad"]),
            bytes.fromhex(c["plaintext"]),
            bytes.fromhex(c["ciphertext"]),
            bytes.fromhex(c["tag"]),
        )
        for c in load("aes_gcm.json")["gcm_spec"]
    ]


def ipsec_gcm_cases() -> list[GcmCase]:
    """strongSwan's IPsec-form cases: keymat = key | salt, 8-byte IV, ICV 8/12/16."""
    cases = []
    for c in load("aes_gcm.json")["strongswan"]:
        keymat = bytes.fromhex(c["keymat"])
        assert len(bytes.fromhex(c["icv"])) == c["icv_bytes"]
        cases.append(
            GcmCase(
                c["id"],
                keymat[:-4],
                keymat[-4:] + bytes.fromhex(c["iv"]),
                bytes.fromhex(c["aad"]),
                bytes.fromhex(c["plaintext"]),
                bytes.fromhex(c["ciphertext"]),
                bytes.fromhex(c["icv"]),
            )
        )
    return cases


def wycheproof_gcm_cases() -> list[GcmCase]:
    data = load("wycheproof/aes_gcm_test.json")
    cases = []
    for group in data["testGroups"]:
        for t in group["tests"]:
            cases.append(
                GcmCase(
                    f"wycheproof-{t['tcId']}",
                    bytes.fromhex(t["key"]),
                    bytes.fromhex(t["iv"]),
                    bytes.fromhex(t["aad"]),
                    bytes.fromhex(t["msg"]),
                    bytes.fromhex(t["ct"]),
                    bytes.fromhex(t["tag"]),
                    valid=t["result"] == "valid",
                )
            )
    return cases


@dataclass(frozen=True)
class EspVector:
    id: str
    keymat: bytes
    spi: bytes
    esn: bool
    seq: int
    iv: bytes
    payload: bytes
    next_header: int
    packet: bytes
    icv_len: int
    algorithm: str


def esp_gcm_vectors() -> list[EspVector]:
    vectors = []
    for v in load("esp_aes_gcm.json")["vectors"]:
        plaintext = bytes.fromhex(v["plaintext"])
        trailer = v["trailer"]
        vectors.append(
            EspVector(
                v["id"],
                bytes.fromhex(v["keymat"]),
                bytes.fromhex(v["spi"]),
                v["esn"],
                int(v["seq"], 16),
                bytes.fromhex(v["iv"]),
                plaintext[: trailer["payload_len"]],
                trailer["next_header"],
                bytes.fromhex(v["esp_packet"]),
                len(bytes.fromhex(v["icv"])),
                "aes-gcm",
            )
        )
    return vectors


def esp_chacha_vector() -> EspVector:
    v = load("chacha20_poly1305_rfc7634.json")["esp"]
    return EspVector(
        v["id"],
        bytes.fromhex(v["keymat"]),
        bytes.fromhex(v["spi"]),
        v["esn"],
        v["seq"],
        bytes.fromhex(v["iv"]),
        bytes.fromhex(v["inner"]),
        v["next_header"],
        bytes.fromhex(v["esp_packet"]),
        16,
        "chacha20-poly1305",
    )


@dataclass(frozen=True)
class ReplayStep:
    sent_seq: int
    wire_seq: int
    result: str  # "accept", "replay" or "integrity_fail"
    highest_after: int


@dataclass(frozen=True)
class ReplayScenario:
    title: str
    window: int
    initial_highest: int
    steps: tuple[ReplayStep, ...]


def replay_scenarios() -> list[ReplayScenario]:
    return [
        ReplayScenario(
            s["title"],
            s["W"],
            int(s["initial_T"], 16),
            tuple(
                ReplayStep(
                    int(st["sent_seq64"], 16),
                    int(st["wire_seq32"], 16),
                    st["result"],
                    int(st["T_after"], 16),
                )
                for st in s["steps"]
            ),
        )
        for s in load("esp_replay_esn.json")["scenarios"]
    ]
