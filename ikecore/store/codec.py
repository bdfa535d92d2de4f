"""The binary encoding of `IkeSa` records in the persistent stores (record format 5; formats 4,
3 and 2, written before the response cache, the MOBIKE role and the MOBIKE fields were stored,
are still read).

``encode(sa) -> (public, secret)`` (format 5) and ``decode(public, secret, record_format=5)
-> IkeSa`` are compiled
(``ikecore._fast.record``); the byte format is described in ``_fast/record.pyx``.
"""

from __future__ import annotations

from ikecore._fast.record import decode, encode

__all__ = ["decode", "encode"]
