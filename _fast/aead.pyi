"""AEAD ciphers for IKE and ESP (compiled): AES-GCM (RFC 4106, RFC 5282) and
ChaCha20-Poly1305 (RFC 7634), and the IKE Encrypted payload (SK, RFC 7296 §3.14 / RFC 5282 §5;
SKF, RFC 7383 §2.5).

Every object holds one key: the key schedule is made once and reused, native key material is
wiped on dealloc. Nonce = salt (last 4 bytes of ``key_and_salt``) | 8-byte explicit IV.

Engines: ``"ipsec-mb"`` (intel-ipsec-mb, AES-GCM only, when built in and the CPU has AES-NI)
and ``"openssl"`` (OpenSSL 3 EVP, always). ``engine=None`` reads the environment variable
``IKECORE_AEAD_ENGINE`` (``auto`` | ``openssl`` | ``ipsec-mb``; unset means ``auto``, which
prefers ipsec-mb for AES-GCM). ChaCha20-Poly1305 always runs on OpenSSL. Calls hold the GIL.

Errors: a failed ICV raises ``IntegrityError`` (no detail); malformed IKE messages raise
``MalformedMessage`` with ``.offset``; bad arguments raise ``TypeError``/``ValueError``.
"""

from typing import Literal, TypeAlias

from typing_extensions import Buffer

Engine: TypeAlias = Literal["auto", "openssl", "ipsec-mb"]
Algorithm: TypeAlias = Literal["aes-gcm", "chacha20-poly1305"]

ENV_ENGINE: str
ALGORITHMS: tuple[str, ...]

def available_engines() -> tuple[str, ...]:
    """Usable engines, preferred first: ("ipsec-mb", "openssl") or ("openssl",)."""

def ipsec_mb_version() -> str | None: ...

class Aead:
    """Base of AesGcm and ChaCha20Poly1305 (not constructible itself)."""

    @property
    def icv_len(self) -> int: ...
    @property
    def key_len(self) -> int:
        """Cipher key length in bytes, without the salt."""
    @property
    def engine(self) -> str: ...
    @property
    def algorithm(self) -> str: ...
    def seal(self, iv: Buffer, aad: Buffer, plaintext: Buffer) -> bytes:
        """ciphertext | ICV. ``iv``: exactly 8 bytes."""
    def seal_into(self, iv: Buffer, aad: Buffer, plaintext: Buffer, out: Buffer) -> int:
        """Writes ciphertext | ICV to the start of ``out``; returns len(plaintext) + icv_len."""
    def open(self, iv: Buffer, aad: Buffer, data: Buffer) -> bytes:
        """``data`` = ciphertext | ICV. Raises IntegrityError."""
    def open_into(self, iv: Buffer, aad: Buffer, data: Buffer, out: Buffer) -> int:
        """Writes the plaintext to the start of ``out`` (may be ``data`` itself: in place);
        returns its length. On IntegrityError that part of ``out`` is zeroed."""

class AesGcm(Aead):
    """``key_and_salt``: 20/28/36 bytes (AES-128/192/256 key | 4-byte salt, RFC 4106 §8.1);
    ``icv_len``: 8, 12 or 16 (ENCR_AES_GCM_8/12/16)."""

    def __init__(self, key_and_salt: Buffer, icv_len: int = 16, *,
                 engine: Engine | None = None) -> None: ...

class ChaCha20Poly1305(Aead):
    """``key_and_salt``: 36 bytes (32-byte key | 4-byte salt, RFC 7634 §2, ENCR 28);
    ``icv_len``: 16 only. OpenSSL engine."""

    def __init__(self, key_and_salt: Buffer, icv_len: int = 16, *,
                 engine: Engine | None = None) -> None: ...

def make_aead(algorithm: Algorithm, key_and_salt: Buffer, icv_len: int = 16,
              engine: Engine | None = None) -> Aead:
    """AesGcm or ChaCha20Poly1305 by name (ValueError for an unknown name)."""

class IkeCipher:
    """One direction of an IKE SA's Encrypted payload protection (SK_ei or SK_er).

    The IV is a per-key 64-bit counter, big-endian: ``iv_counter`` is the last value used
    (0: none yet), so the first message carries IV 1; persist it with the SA (a restored SA
    continues from it and must never go back). Past 2^64 - 1 it raises SequenceExhausted.
    """

    def __init__(self, key_and_salt: Buffer, icv_len: int = 16, *,
                 algorithm: Algorithm = "aes-gcm", engine: Engine | None = None,
                 iv_counter: int = 0) -> None: ...
    @property
    def aead(self) -> Aead: ...
    @property
    def iv_counter(self) -> int: ...
    @property
    def icv_len(self) -> int: ...
    def seal_sk(self, prefix: Buffer, next_payload: int, inner: Buffer, *,
                pad_length: int = 0) -> bytes:
        """The whole message: ``prefix`` | SK header | IV | ciphertext | ICV.

        ``prefix`` = the 28-byte IKE header plus any unprotected payloads, whose Next Payload
        chain must already end in SK (46); its Length field (bytes 24..27) is overwritten with
        the final message length, and the SK Payload Length is filled in. ``next_payload`` =
        type of the first inner payload; ``inner`` = the inner payloads; ``pad_length`` zero
        bytes of padding (0..255, none needed for AEAD). AAD = prefix | SK header
        (RFC 5282 §5.1). ValueError if the payload would exceed 65535 bytes."""
    def seal_skf(self, prefix: Buffer, next_payload: int, fragment_number: int,
                 total_fragments: int, data: Buffer, *, pad_length: int = 0) -> bytes:
        """One Encrypted Fragment (RFC 7383 §2.5): like seal_sk with the 8-byte SKF header
        (Fragment Number, Total Fragments) in the AAD; ``prefix`` ends its chain in SKF (53);
        ``next_payload`` is the first inner payload's type in fragment 1, 0 in the others."""
    def open_sk(self, message: Buffer, sk_offset: int) -> tuple[int, bytes]:
        """``message`` = a whole IKE message (no non-ESP marker) whose SK payload starts at
        ``sk_offset`` and ends the message. Returns (SK header Next Payload, inner payloads
        without padding). MalformedMessage: header Length != len(message) (offset 24), SK
        Payload Length not reaching the end (offset sk_offset + 2), too short for IV + ICV +
        Pad Length, Pad Length beyond the plaintext; IntegrityError: ICV."""
    def open_skf(self, message: Buffer, skf_offset: int) -> tuple[int, int, int, bytes]:
        """(Next Payload, Fragment Number, Total Fragments, data); also MalformedMessage
        when not 1 <= Fragment Number <= Total Fragments (offset skf_offset + 4)."""
