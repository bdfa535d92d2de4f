"""The binary encoding of `IkeSa` records in the persistent stores (record format 2).

``encode(sa) -> (public, secret)`` and ``decode(public, secret) -> IkeSa`` are compiled
(``ikecore._fast.record``); the byte format is described in ``_fast/record.pyx``.
"""

from __future__ import annotations

from ikecore._fast.record import decode, encode

__all__ = ["decode", "encode"]
