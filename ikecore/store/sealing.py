"""Sealing IKE SA records at rest: the key material encrypted under the store key.

A sealed record is one byte string::

    "IKS1" | key id (8) | salt (32) | public length (4) | public JSON | ciphertext | ICV (16)

*public JSON* is `IkeSa.to_dict()` without its key material (the IKE SA's ``"keys"`` and every
Child SA's ``"keys"``); the *ciphertext* is AES-256-GCM over those keys. The AAD is everything
before the ciphertext plus the SPI pair the record is stored under, so every field is
authenticated and a record copied under another SPI pair does not open.

Nonces: each record is sealed under its own subkey, derived from the store key and a fresh
random 32-byte salt, and that subkey seals exactly one message, so the fixed IV cannot repeat
under any key. A random 8-byte IV under the long-lived store key could (birthday bound after
~2^32 records, which a busy gateway writes in days); a persisted counter would need to be
shared by every process and cluster node writing the store. Two records get the same subkey
only if their 256-bit salts collide.

Errors: a record sealed under another store key raises `IntegrityError` (the key id differs);
a record that does not authenticate under the right key, or does not parse, is corrupt and
raises `MalformedMessage`. Nothing is returned from a record that did not authenticate.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ikecore.aead import AesGcm
from ikecore.constants import PrfId
from ikecore.errors import IntegrityError, MalformedMessage
from ikecore.keys import prf, prf_plus
from ikecore.sa import IkeSa

__all__ = ["RecordSealer"]

_MAGIC = b"IKS1"
_KEY_ID_LEN = 8
_SALT_LEN = 32
_HEADER_LEN = len(_MAGIC) + _KEY_ID_LEN + _SALT_LEN + 4
_ICV_LEN = 16
# One subkey seals one record: the IV may be constant (see the module docstring).
_IV = bytes(8)
_PRF = PrfId.HMAC_SHA2_256
_SUBKEY_LEN = 32 + 4  # AES-256 key | GCM salt (RFC 4106 §8.1 layout, as AesGcm takes it)


class RecordSealer:
    """Seals and opens `IkeSa` records under one store key (at least 16 bytes, e.g. 32 random)."""

    __slots__ = ("_key", "_key_id")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes):
            raise TypeError(f"the store key must be bytes, not {type(key).__name__}")
        if len(key) < 16:
            raise ValueError("the store key must be at least 16 bytes")
        self._key = key
        # Identifies the key without revealing it: a record under another key is refused
        # with IntegrityError before any decryption is tried.
        self._key_id = prf(_PRF, key, b"ikecore store key id")[:_KEY_ID_LEN]

    def _aead(self, salt: bytes, spi_i: bytes, spi_r: bytes) -> AesGcm:
        # HKDF-like (RFC 5869 shape, RFC 7296 §2.13 prf+):
        #   K = prf(salt, store key); subkey = prf+(K, "ikecore store record" | SPIi | SPIr)
        extracted = prf(_PRF, salt, self._key)
        info = b"ikecore store record" + spi_i + spi_r
        return AesGcm(prf_plus(_PRF, extracted, info, _SUBKEY_LEN), _ICV_LEN)

    def seal(self, sa: IkeSa) -> bytes:
        """The sealed record of ``sa`` (stored under ``sa.spis``)."""
        public = sa.to_dict()
        secret: dict[str, Any] = {"ike": public.pop("keys"), "child": {}}
        public["keys"] = None
        for child in public["child_sas"]:
            secret["child"][child["spi_in"]] = child.pop("keys")
        public_json = json.dumps(public, separators=(",", ":")).encode()
        salt = os.urandom(_SALT_LEN)
        header = _MAGIC + self._key_id + salt + len(public_json).to_bytes(4, "big")
        aad = header + public_json + sa.spi_i + sa.spi_r
        plaintext = json.dumps(secret, separators=(",", ":")).encode()
        sealed = self._aead(salt, sa.spi_i, sa.spi_r).seal(_IV, aad, plaintext)
        return header + public_json + sealed

    def open(self, record: bytes, spi_i: bytes, spi_r: bytes) -> IkeSa:
        """The `IkeSa` sealed in ``record``, which was stored under (``spi_i``, ``spi_r``)."""
        if len(record) < _HEADER_LEN + _ICV_LEN:
            raise MalformedMessage("stored SA record too short", len(record))
        if record[:4] != _MAGIC:
            raise MalformedMessage("stored SA record of an unknown format", 0)
        if record[4 : 4 + _KEY_ID_LEN] != self._key_id:
            # Sealed under another store key: loud, and nothing is decrypted.
            raise IntegrityError()
        salt = record[4 + _KEY_ID_LEN : 4 + _KEY_ID_LEN + _SALT_LEN]
        public_len = int.from_bytes(record[_HEADER_LEN - 4 : _HEADER_LEN], "big")
        public_end = _HEADER_LEN + public_len
        if public_end + _ICV_LEN > len(record):
            raise MalformedMessage("stored SA record length field beyond its end", _HEADER_LEN - 4)
        aad = record[:public_end] + spi_i + spi_r
        try:
            plaintext = self._aead(salt, spi_i, spi_r).open(_IV, aad, record[public_end:])
        except IntegrityError:
            # The key id matched, so the key is right: the record was altered or moved.
            raise MalformedMessage(
                "stored SA record does not authenticate (corrupt, or not this SPI pair's)"
            ) from None
        try:
            public = json.loads(record[_HEADER_LEN:public_end])
            secret = json.loads(plaintext)
            public["keys"] = secret["ike"]
            for child in public["child_sas"]:
                child["keys"] = secret["child"][child["spi_in"]]
        except (ValueError, TypeError, KeyError) as exc:
            raise MalformedMessage(f"unreadable stored SA record: {exc}") from None
        sa = IkeSa.from_dict(public)
        if sa.spis != (spi_i, spi_r):
            raise MalformedMessage("stored SA record names other SPIs")
        return sa
