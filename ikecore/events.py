"""Events the endpoint hands to its user through `IkeEndpoint.next_event()`.

Frozen, slotted dataclasses that carry meaning (STYLE.md §4). They name the session (for
further calls such as ``session.create_child_sa``) and the SA records concerned; ``reason``
strings are short and stable, and ``notify`` is the notify type a peer sent, when there was one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ikecore.config import Address
from ikecore.sa import ChildSa

if TYPE_CHECKING:
    from ikecore.session import IkeSession

__all__ = [
    "ChildSaDeleted",
    "ChildSaEstablished",
    "ChildSaFailed",
    "ChildSaRekeyed",
    "CloneFailed",
    "CloneRequestRefused",
    "EspPacketReceived",
    "Event",
    "IkeSaCloned",
    "IkeSaDeleted",
    "IkeSaEstablished",
    "IkeSaMoveFailed",
    "IkeSaMoved",
    "IkeSaRekeyFailed",
    "IkeSaRekeyed",
    "LivenessChecked",
    "PeerAddressesChanged",
    "ReturnRoutabilityFailed",
]


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every event."""


@dataclass(frozen=True, slots=True)
class IkeSaEstablished(Event):
    """IKE_SA_INIT and IKE_AUTH completed; the peer is authenticated."""

    session: IkeSession

    # Made in every handshake: stored through the slot's member descriptor (the generated
    # __init__ of a frozen dataclass calls object.__setattr__, about twice the cost).
    def __init__(self, session: IkeSession) -> None:
        _set_established_session(self, session)


_set_established_session = IkeSaEstablished.__dict__["session"].__set__


@dataclass(frozen=True, slots=True)
class IkeSaDeleted(Event):
    """The IKE SA is gone (with its Child SAs).

    ``reason``: "deleted_locally", "deleted_by_peer", "rekeyed", "timeout", "expired",
    "authentication_failed", "no_proposal_chosen", "failed". ``notify`` is the peer's error
    notify that ended it, if any.
    """

    session: IkeSession
    reason: str
    notify: int | None = None


@dataclass(frozen=True, slots=True)
class IkeSaRekeyed(Event):
    """RFC 7296 §2.8: ``new`` replaces ``old``; the Child SAs moved to ``new``."""

    old: IkeSession
    new: IkeSession


@dataclass(frozen=True, slots=True)
class IkeSaRekeyFailed(Event):
    """The IKE SA rekey was refused (``notify``: TEMPORARY_FAILURE, NO_PROPOSAL_CHOSEN, ...);
    the SA stays as it was."""

    session: IkeSession
    notify: int | None


@dataclass(frozen=True, slots=True)
class IkeSaCloned(Event):
    """RFC 7791: ``clone`` was made from ``parent``, which keeps its Child SAs."""

    parent: IkeSession
    clone: IkeSession


@dataclass(frozen=True, slots=True)
class CloneFailed(Event):
    """RFC 7791 §5.3: the clone was refused ("TEMPORARY_FAILURE", "NO_ADDITIONAL_SAS", ...)."""

    session: IkeSession
    reason: str


@dataclass(frozen=True, slots=True)
class CloneRequestRefused(Event):
    """We refused the peer's clone of this SA (RFC 7791 §5.1/§5.3); ``reason`` is the notify
    we answered with ("NO_ADDITIONAL_SAS", "TEMPORARY_FAILURE", "NO_PROPOSAL_CHOSEN", ...)."""

    session: IkeSession
    reason: str


@dataclass(frozen=True, slots=True)
class ChildSaEstablished(Event):
    """A Child SA is installed: ``child`` has its SPIs, keys and traffic selectors."""

    session: IkeSession
    child: ChildSa

    # As IkeSaEstablished's, made in every handshake.
    def __init__(self, session: IkeSession, child: ChildSa) -> None:
        _set_child_session(self, session)
        _set_child(self, child)


_set_child_session = ChildSaEstablished.__dict__["session"].__set__
_set_child = ChildSaEstablished.__dict__["child"].__set__


@dataclass(frozen=True, slots=True)
class ChildSaFailed(Event):
    """A Child SA could not be made; ``notify`` is the peer's error (e.g. TS_UNACCEPTABLE)."""

    session: IkeSession
    notify: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class ChildSaRekeyed(Event):
    """RFC 7296 §2.8: ``new`` replaced ``old`` (``old`` is deleted)."""

    session: IkeSession
    old: ChildSa
    new: ChildSa


@dataclass(frozen=True, slots=True)
class ChildSaDeleted(Event):
    """The Child SA is gone (deleted by us, by the peer, or with its IKE SA); ``reason`` is
    "expired" when its hard lifetime (`PeerConfig.child_lifetime`) ran out."""

    session: IkeSession
    child: ChildSa
    reason: str


@dataclass(frozen=True, slots=True)
class LivenessChecked(Event):
    """An empty INFORMATIONAL (RFC 7296 §1.4) was answered."""

    session: IkeSession


@dataclass(frozen=True, slots=True)
class EspPacketReceived(Event):
    """An ESP packet of ``child`` decrypted and passed the replay check."""

    session: IkeSession
    child: ChildSa
    next_header: int
    data: bytes


@dataclass(frozen=True, slots=True)
class IkeSaMoved(Event):
    """RFC 4555 §3.5: the IKE SA (and with it its Child SAs) now uses these addresses; on the
    initiator once UPDATE_SA_ADDRESSES was answered, on the responder when it arrived."""

    session: IkeSession
    local: Address
    remote: Address


@dataclass(frozen=True, slots=True)
class IkeSaMoveFailed(Event):
    """The peer refused UPDATE_SA_ADDRESSES (``notify``, e.g. UNACCEPTABLE_ADDRESSES); the SA
    went back to its previous addresses."""

    session: IkeSession
    notify: int


@dataclass(frozen=True, slots=True)
class ReturnRoutabilityFailed(Event):
    """RFC 4555 §3.7: the peer moved the SA to ``remote`` but the check sent there (an
    INFORMATIONAL with COOKIE2) was never answered; the IKE SA and its Child SAs stay on the
    previous addresses, ``local`` and ``previous``."""

    session: IkeSession
    remote: Address
    local: Address
    previous: Address


@dataclass(frozen=True, slots=True)
class PeerAddressesChanged(Event):
    """RFC 4555 §3.6: the peer's address set (the request's source address first, then its
    ADDITIONAL_IP4/IP6_ADDRESS list; just the source with NO_ADDITIONAL_ADDRESSES)."""

    session: IkeSession
    addresses: tuple[str, ...]
