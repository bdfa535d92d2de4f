"""Loader for the IKE messages of tests/vectors/ikev2_clone_exchange.json (see its README).

Every hex string whose key is ``message<N>``, ``request`` or ``response`` is a whole IKE
message (the first two cleartext IKE_SA_INIT, the others with an SK payload); every
``<name>_sk`` object carries the decrypted ``inner_payloads`` with ``first_inner_payload`` and
the ``plaintext`` (inner payloads + padding + Pad Length) of the SK payload of ``<name>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).parent / "vectors" / "ikev2_clone_exchange.json"


@dataclass(frozen=True)
class MessageVector:
    name: str
    data: bytes


@dataclass(frozen=True)
class InnerChainVector:
    name: str  # name of the message that carries it
    first_type: int
    inner: bytes
    plaintext: bytes


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


def messages() -> list[MessageVector]:
    found = []
    for section, fields in load().items():
        if not isinstance(fields, dict):
            continue
        for key, value in fields.items():
            is_message = key.startswith("message") and not key.endswith("_sk")
            if is_message or key in ("request", "response"):
                found.append(MessageVector(f"{section}.{key}", bytes.fromhex(value)))
    return found


def inner_chains() -> list[InnerChainVector]:
    found = []
    for section, fields in load().items():
        if not isinstance(fields, dict):
            continue
        for key, value in fields.items():
            if key.endswith("_sk") and isinstance(value, dict) and "inner_payloads" in value:
                found.append(
                    InnerChainVector(
                        f"{section}.{key[:-3]}",
                        value["first_inner_payload"],
                        bytes.fromhex(value["inner_payloads"]),
                        bytes.fromhex(value["plaintext"]),
                    )
                )
    return found
