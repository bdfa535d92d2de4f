"""AEAD ciphers for IKE and ESP (AES-GCM, ChaCha20-Poly1305) and the IKE Encrypted payload.

The implementation is compiled (``ikecore._fast.aead``, see its ``.pyi``); this module gives
it the public name of API.md.
"""

from __future__ import annotations

from ikecore._fast.aead import (
    Aead,
    AesGcm,
    ChaCha20Poly1305,
    IkeCipher,
    available_engines,
    ipsec_mb_version,
    make_aead,
)

__all__ = [
    "Aead",
    "AesGcm",
    "ChaCha20Poly1305",
    "IkeCipher",
    "available_engines",
    "ipsec_mb_version",
    "make_aead",
]
