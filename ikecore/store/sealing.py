"""Sealing IKE SA records at rest: the key material encrypted under the store key.

A sealed record is one byte string::

    "IKS" | format (1) | key id (8) | salt (32) | IV (8) | public length (4) | public
          | ciphertext | ICV (16)

*format* is the record format, ``"5"``: *public* and the plaintext of *ciphertext* are the two
parts of `ikecore.store.codec` (compiled: ``_fast/record.pyx``; everything but key material;
the IKE SA's and every Child SA's keys). The *ciphertext* is AES-256-GCM over the keys alone;
the AAD is everything before the ciphertext plus the SPI pair the record is stored under, so
every field is authenticated and a record copied under another SPI pair does not open.

Records are written in format 5. Format 4 (the same without the response cache,
`IkeSa.responses`, read as none), format 3 (also without the MOBIKE role,
`IkeSa.mobike_initiator`, read as the I flag's) and format 2 (without any MOBIKE state: the peer's
address set, the last UPDATE_SA_ADDRESSES acted on, the NAT value of §3.8) are still read, the
missing fields defaulted, so a store written before keeps working after an upgrade; such a
record is rewritten in format 5 the next time its SA is saved. (An SA loaded from a record of
format 4 or before has no cached response: a retransmission of the request it answered last is
dropped, as it was before format 5.)

Format 1 (JSON of `IkeSa.to_dict`, written before the binary codec) is not read: such records
existed only in test and demo stores, and opening one raises `MalformedMessage` naming the
format, so a store of the old format is recreated (a SQLite file of schema 1 is refused when
it is opened), never half-read.

Nonces (RFC 4106 §3: an IV must never repeat under one key): a `RecordSealer` seals under its
own subkey, derived from the store key and a fresh random 32-byte salt, with a counter as the
IV; the salt and IV are in the record, so any holder of the store key opens it. No counter
needs persisting or sharing between processes and cluster nodes: every sealer (and a process
forked from one: the salt is renewed when the process id changes) has its own subkey, and it
takes a new salt before its counter reaches 2^32. Two sealers share a subkey only if their
256-bit salts collide. Deriving the subkey once per sealer rather than once per record keeps a
store write cheap; opening caches the subkeys of the last salts it saw.

Errors: a record sealed under another store key raises `IntegrityError` (the key id differs);
a record that does not authenticate under the right key, or does not parse, is corrupt and
raises `MalformedMessage`. Nothing is returned from a record that did not authenticate.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import NamedTuple

from ikecore.aead import AesGcm
from ikecore.constants import PrfId
from ikecore.errors import IntegrityError, MalformedMessage
from ikecore.keys import prf, prf_plus
from ikecore.sa import IkeSa
from ikecore.store import codec

__all__ = ["RecordSealer"]

_MAGIC = b"IKS"
_FORMAT = b"5"
# The formats `open` reads, by their header byte (see the module docstring).
_READABLE_FORMATS = {b"2": 2, b"3": 3, b"4": 4, b"5": 5}
_KEY_ID_LEN = 8
_SALT_LEN = 32
_IV_LEN = 8
_KEY_ID_AT = len(_MAGIC) + len(_FORMAT)
_SALT_AT = _KEY_ID_AT + _KEY_ID_LEN
_IV_AT = _SALT_AT + _SALT_LEN
_HEADER_LEN = _IV_AT + _IV_LEN + 4
_ICV_LEN = 16
_PRF = PrfId.HMAC_SHA2_256
_SUBKEY_LEN = 32 + 4  # AES-256 key | GCM salt (RFC 4106 §8.1 layout, as AesGcm takes it)
# Records one subkey seals before its sealer takes a new salt (far below GCM's limits).
_RECORDS_PER_SUBKEY = 2**32
# Subkeys of other sealers' salts kept for opening (a process reads what a few wrote).
_OPEN_CACHE_SIZE = 64


class _Writer(NamedTuple):
    """A sealer's subkey: its salt, its cipher, the counter of its IVs, the process using it,
    and the start of every record it seals (magic, format, key id, salt)."""

    salt: bytes
    aead: AesGcm
    counter: Iterator[int]
    pid: int
    head: bytes


class RecordSealer:
    """Seals and opens `IkeSa` records under one store key (at least 16 bytes, e.g. 32 random)."""

    __slots__ = ("_key", "_key_id", "_opening", "_writer")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes):
            raise TypeError(f"the store key must be bytes, not {type(key).__name__}")
        if len(key) < 16:
            raise ValueError("the store key must be at least 16 bytes")
        self._key = key
        # Identifies the key without revealing it: a record under another key is refused
        # with IntegrityError before any decryption is tried.
        self._key_id = prf(_PRF, key, b"ikecore store key id")[:_KEY_ID_LEN]
        self._opening: dict[bytes, AesGcm] = {}
        self._writer = self._new_writer()

    def _subkey(self, salt: bytes) -> AesGcm:
        # HKDF-like (RFC 5869 shape, RFC 7296 §2.13 prf+):
        #   K = prf(salt, store key); subkey = prf+(K, "ikecore store records")
        extracted = prf(_PRF, salt, self._key)
        return AesGcm(prf_plus(_PRF, extracted, b"ikecore store records", _SUBKEY_LEN), _ICV_LEN)

    def _new_writer(self) -> _Writer:
        salt = os.urandom(_SALT_LEN)
        aead = self._opening[salt] = self._subkey(salt)
        head = _MAGIC + _FORMAT + self._key_id + salt
        return _Writer(salt, aead, itertools.count(), os.getpid(), head)

    def seal(self, sa: IkeSa) -> bytes:
        """The sealed record of ``sa`` (stored under ``sa.spis``)."""
        public, secret = codec.encode(sa)
        writer = self._writer
        # next() of an itertools.count is atomic: threads sharing this sealer never draw the
        # same IV. A forked child must not continue its parent's counter under its subkey.
        number = next(writer.counter)
        while number >= _RECORDS_PER_SUBKEY or writer.pid != os.getpid():
            writer = self._writer = self._new_writer()
            number = next(writer.counter)
        iv = number.to_bytes(_IV_LEN, "big")
        header = b"".join((writer.head, iv, len(public).to_bytes(4, "big")))
        aad = b"".join((header, public, sa.spi_i, sa.spi_r))
        return b"".join((header, public, writer.aead.seal(iv, aad, secret)))

    def open(self, record: bytes, spi_i: bytes, spi_r: bytes) -> IkeSa:
        """The `IkeSa` sealed in ``record``, which was stored under (``spi_i``, ``spi_r``)."""
        if len(record) < _HEADER_LEN + _ICV_LEN:
            raise MalformedMessage("stored SA record too short", len(record))
        if record[:3] != _MAGIC:
            raise MalformedMessage("not a stored SA record", 0)
        record_format = _READABLE_FORMATS.get(record[3:4])
        if record_format is None:
            # Format 1 (JSON) is not read: see the module docstring.
            raise MalformedMessage(
                f"stored SA record of format {record[3:4]!r}; this ikecore reads formats "
                f"b'2', b'3', b'4' and {_FORMAT!r} (recreate the store)",
                3,
            )
        if record[_KEY_ID_AT:_SALT_AT] != self._key_id:
            # Sealed under another store key: loud, and nothing is decrypted.
            raise IntegrityError()
        salt = record[_SALT_AT:_IV_AT]
        aead = self._opening.get(salt)
        if aead is None:
            if len(self._opening) == _OPEN_CACHE_SIZE:
                self._opening.clear()
            aead = self._opening[salt] = self._subkey(salt)
        public_len = int.from_bytes(record[_HEADER_LEN - 4 : _HEADER_LEN], "big")
        public_end = _HEADER_LEN + public_len
        if public_end + _ICV_LEN > len(record):
            raise MalformedMessage("stored SA record length field beyond its end", _HEADER_LEN - 4)
        aad = record[:public_end] + spi_i + spi_r
        try:
            plaintext = aead.open(record[_IV_AT : _IV_AT + _IV_LEN], aad, record[public_end:])
        except IntegrityError:
            # The key id matched, so the key is right: the record was altered or moved.
            raise MalformedMessage(
                "stored SA record does not authenticate (corrupt, or not this SPI pair's)"
            ) from None
        sa = codec.decode(record[_HEADER_LEN:public_end], plaintext, record_format)
        if sa.spis != (spi_i, spi_r):
            raise MalformedMessage("stored SA record names other SPIs")
        return sa
