"""Small bounded caches for the immutable objects the engine makes again and again from values
that repeat: payloads made from configuration, the choices and identities a gateway hears from
every peer. Some keys come from peers, so each cache holds at most ``size`` entries and is
emptied when full (a refill costs what the cache saves, nothing more)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedCache", "IdentityCache"]

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[V]):
    """Values by key, at most ``size`` of them. ``pinned`` is an object whose ``id()`` is part
    of the key: the entry holds it, so that id stays its own, and a hit needs the same object
    (hashing a tuple of dataclasses would run each one's Python ``__hash__``)."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._entries: dict[Hashable, tuple[object, V]] = {}

    def get(self, key: Hashable, pinned: object = None) -> V | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] is pinned:
            return entry[1]
        return None

    def put(self, key: Hashable, value: V, pinned: object = None) -> V:
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[key] = (pinned, value)
        return value


class IdentityCache(BoundedCache[V], Generic[K, V]):
    """``make(key)`` per configuration object, found by the object's identity."""

    def __init__(self, make: Callable[[K], V], size: int = 256) -> None:
        super().__init__(size)
        self._make = make

    def __call__(self, key: K) -> V:
        entry = self._entries.get(id(key))  # `get`, inlined: this runs several times a message
        if entry is not None and entry[0] is key:
            return entry[1]
        return self.put(id(key), self._make(key), key)
