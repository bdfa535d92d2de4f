"""ikecore's exceptions, in plain Python so that the compiled core can raise them.

This is a leaf module: it imports nothing from ikecore, because ``ikecore._fast`` imports it.
Local errors are the caller's misuse of the API; remote errors are the peer's protocol
violations and carry the notify type to answer with (RFC 7296 §2.21).
"""

from __future__ import annotations

__all__ = [
    "CloneRefused",
    "IkeError",
    "IntegrityError",
    "LocalProtocolError",
    "MalformedMessage",
    "RemoteProtocolError",
    "ReplayError",
    "SequenceExhausted",
    "StoreError",
    "StoreUnavailable",
    "WriteConflict",
]

CLONE_REFUSAL_REASONS = frozenset({"TEMPORARY_FAILURE", "NO_ADDITIONAL_SAS", "NOT_NEGOTIATED"})


class IkeError(Exception):
    """Base class of every error ikecore raises on purpose."""


class MalformedMessage(IkeError):
    """Bytes that are not a well-formed IKE message, payload, ESP packet or stored record.

    ``offset`` is the byte offset where the problem was found (``None`` when it has none).
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at byte {offset})")
        self.offset = offset


class IntegrityError(IkeError):
    """An ICV did not verify. Deliberately carries no detail about why."""

    def __init__(self) -> None:
        super().__init__("integrity check failed")


class ReplayError(IkeError):
    """An ESP sequence number was already seen or lies left of the replay window."""


class SequenceExhausted(IkeError):
    """The sequence-number or message-ID space is used up; the SA must be rekeyed, never wrapped."""


class LocalProtocolError(IkeError):
    """The caller asked for something the protocol or the SA's state does not allow."""


class RemoteProtocolError(IkeError):
    """The peer broke the protocol; ``notify_type`` is the error notify to answer with."""

    def __init__(self, message: str, notify_type: int) -> None:
        super().__init__(message)
        self.notify_type = notify_type


class CloneRefused(IkeError):
    """An RFC 7791 clone could not be made; ``reason`` says why (RFC 7791 §5.1, §5.3)."""

    def __init__(self, reason: str) -> None:
        if reason not in CLONE_REFUSAL_REASONS:
            raise ValueError(f"unknown clone refusal reason {reason!r}")
        super().__init__(f"clone refused: {reason}")
        self.reason = reason


class StoreError(IkeError):
    """An SA store operation that could not be done (ikecore.store): the base of the two
    below, and itself raised for a store that cannot be used as it is (a SQLite file that is
    not a database or is corrupt, or of a schema this ikecore does not read). A corrupt
    *record* in a sound store is `MalformedMessage`; a record under another store key is
    `IntegrityError`."""


class WriteConflict(StoreError):
    """This store object may not write the SA: another node owns it (it was transferred), or
    another writer changed it since this object read it. Nothing was changed; reload the SA
    (``get_ike_sa``) or let it go."""


class StoreUnavailable(StoreError):
    """The store did not answer (server down or unreachable, a SQLite file that cannot be
    opened or written, a lock held too long, disk I/O trouble) or did not confirm a write on
    its replicas: the change may or may not have been made, so read the SA again before
    writing it (its next put from the old copy raises WriteConflict)."""
