"""ESP with AES-GCM (RFC 4106) or ChaCha20-Poly1305 (RFC 7634): the compiled per-packet path.

See ``ikecore/_fast/esp.pyi`` for the full API, including the batch forms.
"""

from __future__ import annotations

from ikecore._fast.esp import (
    DECAP_INTEGRITY_FAILED,
    DECAP_MALFORMED,
    DECAP_REPLAYED,
    DUMMY_NEXT_HEADER,
    EspInbound,
    EspOutbound,
)

__all__ = [
    "DECAP_INTEGRITY_FAILED",
    "DECAP_MALFORMED",
    "DECAP_REPLAYED",
    "DUMMY_NEXT_HEADER",
    "EspInbound",
    "EspOutbound",
]
