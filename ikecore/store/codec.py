"""The binary encoding of `IkeSa` records in the persistent stores (record format 3; format 2,
written before the MOBIKE fields were stored, is still read).

``encode(sa) -> (public, secret)`` (format 3) and ``decode(public, secret, record_format=3)
-> IkeSa`` are compiled
(``ikecore._fast.record``); the byte format is described in ``_fast/record.pyx``.
"""

from __future__ import annotations

from ikecore._fast.record import decode, encode

__all__ = ["decode", "encode"]
