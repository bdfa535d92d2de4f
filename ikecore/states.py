"""Every state transition of IKE SAs and Child SAs, as tables (the h11 ``_state.py`` habit).

A state changes only through `ike_transition` / `child_transition`; a (state, trigger) pair that
is not in the table is a protocol error: `LocalProtocolError` when our own API asked for it,
`RemoteProtocolError` (INVALID_SYNTAX, RFC 7296 §2.21) when a peer's message did.

IKE SA life (RFC 7296 §1.2, §1.3.2, §1.4.1, §2.8; RFC 7791 §5.2 for the clone):

    CONNECTING --INIT_DONE--> AUTHENTICATING --AUTH_DONE--> ESTABLISHED
    ESTABLISHED --REKEY_STARTED--> REKEYING --REKEY_ABORTED--> ESTABLISHED
    ESTABLISHED | REKEYING --REKEYED--> REKEYED       (a successor SA took over the Child SAs)
    any live state --DELETE_STARTED--> DELETING --DELETE_DONE--> DELETED
    any live state --DELETE_RECEIVED | FAILED--> DELETED

A clone leaves its parent's state untouched: the clone itself starts out ESTABLISHED, like the
successor of a rekey. Neither is ever visible in the store before it is complete.
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from ikecore.constants import NotifyType
from ikecore.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "CHILD_TRANSITIONS",
    "IKE_TRANSITIONS",
    "ChildState",
    "ChildTrigger",
    "IkeState",
    "IkeTrigger",
    "child_transition",
    "ike_transition",
]


class _Singleton(Enum):
    """Hashed by identity (members are singletons, and equality is identity already): Enum's
    own ``__hash__`` is a Python call, paid twice on every transition-table lookup."""

    __hash__ = object.__hash__


class IkeState(_Singleton):
    CONNECTING = "CONNECTING"
    AUTHENTICATING = "AUTHENTICATING"
    ESTABLISHED = "ESTABLISHED"
    REKEYING = "REKEYING"
    REKEYED = "REKEYED"
    DELETING = "DELETING"
    DELETED = "DELETED"


class IkeTrigger(_Singleton):
    INIT_DONE = "INIT_DONE"
    AUTH_DONE = "AUTH_DONE"
    REKEY_STARTED = "REKEY_STARTED"
    REKEY_ABORTED = "REKEY_ABORTED"
    REKEYED = "REKEYED"
    DELETE_STARTED = "DELETE_STARTED"
    DELETE_DONE = "DELETE_DONE"
    DELETE_RECEIVED = "DELETE_RECEIVED"
    FAILED = "FAILED"


_IKE_LIVE: Final = (
    IkeState.CONNECTING,
    IkeState.AUTHENTICATING,
    IkeState.ESTABLISHED,
    IkeState.REKEYING,
    IkeState.REKEYED,
)

IKE_TRANSITIONS: Final[dict[tuple[IkeState, IkeTrigger], IkeState]] = {
    (IkeState.CONNECTING, IkeTrigger.INIT_DONE): IkeState.AUTHENTICATING,
    (IkeState.AUTHENTICATING, IkeTrigger.AUTH_DONE): IkeState.ESTABLISHED,
    (IkeState.ESTABLISHED, IkeTrigger.REKEY_STARTED): IkeState.REKEYING,
    (IkeState.REKEYING, IkeTrigger.REKEY_ABORTED): IkeState.ESTABLISHED,
    (IkeState.ESTABLISHED, IkeTrigger.REKEYED): IkeState.REKEYED,
    (IkeState.REKEYING, IkeTrigger.REKEYED): IkeState.REKEYED,
    (IkeState.DELETING, IkeTrigger.DELETE_DONE): IkeState.DELETED,
    (IkeState.DELETING, IkeTrigger.DELETE_RECEIVED): IkeState.DELETED,
    (IkeState.DELETING, IkeTrigger.FAILED): IkeState.DELETED,
    **{(state, IkeTrigger.DELETE_STARTED): IkeState.DELETING for state in _IKE_LIVE},
    **{(state, IkeTrigger.DELETE_RECEIVED): IkeState.DELETED for state in _IKE_LIVE},
    **{(state, IkeTrigger.FAILED): IkeState.DELETED for state in _IKE_LIVE},
}


class ChildState(_Singleton):
    INSTALLED = "INSTALLED"
    REKEYING = "REKEYING"
    REKEYED = "REKEYED"
    DELETING = "DELETING"
    DELETED = "DELETED"


class ChildTrigger(_Singleton):
    REKEY_STARTED = "REKEY_STARTED"
    REKEY_ABORTED = "REKEY_ABORTED"
    REKEYED = "REKEYED"
    DELETE_STARTED = "DELETE_STARTED"
    DELETE_DONE = "DELETE_DONE"
    DELETE_RECEIVED = "DELETE_RECEIVED"


_CHILD_LIVE: Final = (ChildState.INSTALLED, ChildState.REKEYING, ChildState.REKEYED)

CHILD_TRANSITIONS: Final[dict[tuple[ChildState, ChildTrigger], ChildState]] = {
    (ChildState.INSTALLED, ChildTrigger.REKEY_STARTED): ChildState.REKEYING,
    (ChildState.REKEYING, ChildTrigger.REKEY_ABORTED): ChildState.INSTALLED,
    (ChildState.INSTALLED, ChildTrigger.REKEYED): ChildState.REKEYED,
    (ChildState.REKEYING, ChildTrigger.REKEYED): ChildState.REKEYED,
    (ChildState.DELETING, ChildTrigger.DELETE_DONE): ChildState.DELETED,
    (ChildState.DELETING, ChildTrigger.DELETE_RECEIVED): ChildState.DELETED,
    **{(state, ChildTrigger.DELETE_STARTED): ChildState.DELETING for state in _CHILD_LIVE},
    **{(state, ChildTrigger.DELETE_RECEIVED): ChildState.DELETED for state in _CHILD_LIVE},
}


def _refuse(what: str, state: Enum, trigger: Enum, *, remote: bool) -> Exception:
    message = f"{what} in state {state.value} cannot take {trigger.value}"
    if remote:
        return RemoteProtocolError(message, NotifyType.INVALID_SYNTAX)
    return LocalProtocolError(message)


def ike_transition(state: IkeState, trigger: IkeTrigger, *, remote: bool = False) -> IkeState:
    """The IKE SA state after ``trigger``; a pair missing from the table is an error."""
    try:
        return IKE_TRANSITIONS[state, trigger]
    except KeyError:
        raise _refuse("IKE SA", state, trigger, remote=remote) from None


def child_transition(
    state: ChildState, trigger: ChildTrigger, *, remote: bool = False
) -> ChildState:
    """The Child SA state after ``trigger``; a pair missing from the table is an error."""
    try:
        return CHILD_TRANSITIONS[state, trigger]
    except KeyError:
        raise _refuse("Child SA", state, trigger, remote=remote) from None
