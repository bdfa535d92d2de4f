"""Steps shared by every exchange that makes a Child SA (IKE_AUTH, CREATE_CHILD_SA)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikecore.config import TrafficSelector
from ikecore.constants import NotifyType, ProtocolId
from ikecore.errors import RemoteProtocolError
from ikecore.exchanges.base import PayloadKinds, narrow, proposals_for, require_kind
from ikecore.sa import ChildSa
from ikecore.suites import EspTransforms, ProposalSpec, select_proposal
from ikecore.wire import (
    Proposal,
    SecurityAssociation,
    TSi,
    TSr,
    child_keys,
    selectors_from_wire,
)

if TYPE_CHECKING:
    from ikecore.session import IkeSession

__all__ = ["accepted_esp_choice", "make_child", "responder_child_choice"]

# Read in every IKE_AUTH, bound once (an Enum class attribute read takes the slow path of a
# metaclass with __getattr__ on CPython 3.11).
_ESP = ProtocolId.ESP


def make_child(
    session: IkeSession,
    *,
    initiator: bool,
    transforms: EspTransforms,
    spi_in: bytes,
    spi_out: bytes,
    ni: bytes,
    nr: bytes,
    g_ir: bytes | None,
    local_ts: tuple[TrafficSelector, ...],
    remote_ts: tuple[TrafficSelector, ...],
    now: float,
) -> ChildSa:
    """A Child SA record with its keys (RFC 7296 §2.17).

    KEYMAT = prf+(SK_d, Ni | Nr)  or, with PFS,  prf+(SK_d, g^ir (new) | Ni | Nr);
    the keys for initiator-to-responder traffic come first. "Initiator" is the initiator of
    the exchange that creates the Child SA.
    """
    sa = session.sa
    assert sa.keys is not None and sa.transforms is not None
    length = transforms.encr_key_length
    keys = child_keys(sa.transforms.prf, sa.keys.sk_d, ni, nr, length, 0, g_ir)
    key_in, key_out = (keys.encr_r, keys.encr_i) if initiator else (keys.encr_i, keys.encr_r)
    # Positional, the rest by attribute: a class call's keywords go through a dict to
    # __init__ (~2 µs more per Child SA on CPython 3.11).
    child = ChildSa(spi_in, spi_out, initiator, transforms, key_in, key_out, local_ts, remote_ts)
    child.created_at = now
    return child


def responder_child_choice(
    kinds: PayloadKinds,
    esp_proposals: tuple[ProposalSpec, ...],
    local_ts: tuple[TrafficSelector, ...],
    remote_ts: tuple[TrafficSelector, ...],
    *,
    with_dh: bool | None,
    prefer_dh: int | None = None,
) -> tuple[Proposal, EspTransforms, tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]]:
    """The responder's choice of proposal and narrowed selectors (TSi, TSr), §2.7 and §2.9.

    NO_PROPOSAL_CHOSEN / TS_UNACCEPTABLE as RemoteProtocolError when there is none.
    """
    offered = proposals_for(require_kind(kinds, SecurityAssociation), _ESP)
    selection = select_proposal(offered, esp_proposals, with_dh=with_dh, prefer_dh=prefer_dh)
    if selection is None or selection.esp is None:
        raise RemoteProtocolError("no acceptable ESP proposal", NotifyType.NO_PROPOSAL_CHOSEN)
    proposal = offered[selection.index]
    if len(proposal.spi) != 4:
        raise RemoteProtocolError("ESP proposal SPI is not 4 bytes", NotifyType.INVALID_SYNTAX)
    ts_i = selectors_from_wire(require_kind(kinds, TSi).selectors)
    ts_r = selectors_from_wire(require_kind(kinds, TSr).selectors)
    # TSi describes the initiator's side: our remote; TSr our local side.
    narrowed_i = narrow(ts_i, remote_ts)
    narrowed_r = narrow(ts_r, local_ts)
    if not narrowed_i or not narrowed_r:
        raise RemoteProtocolError(
            "traffic selectors outside our policy", NotifyType.TS_UNACCEPTABLE
        )
    return proposal, selection.esp, narrowed_i, narrowed_r


def accepted_esp_choice(
    kinds: PayloadKinds,
    offered: tuple[ProposalSpec, ...],
    our_ts_i: tuple[TrafficSelector, ...],
    our_ts_r: tuple[TrafficSelector, ...],
    *,
    with_dh: bool | None,
) -> tuple[bytes, EspTransforms, tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]]:
    """The initiator's check of the responder's Child SA answer: one proposal from our offer,
    selectors inside what we proposed. Returns (responder's SPI, transforms, TSi, TSr)."""
    sa_payload = require_kind(kinds, SecurityAssociation)
    if len(sa_payload.proposals) != 1:
        raise RemoteProtocolError("several proposals in a response", NotifyType.INVALID_SYNTAX)
    proposal = sa_payload.proposals[0]
    if proposal.protocol_id != _ESP or len(proposal.spi) != 4:
        raise RemoteProtocolError("bad ESP proposal in response", NotifyType.INVALID_SYNTAX)
    selection = select_proposal([proposal], offered, with_dh=with_dh)
    if selection is None or selection.esp is None:
        raise RemoteProtocolError(
            "responder chose what we did not offer", NotifyType.NO_PROPOSAL_CHOSEN
        )
    ts_i = selectors_from_wire(require_kind(kinds, TSi).selectors)
    ts_r = selectors_from_wire(require_kind(kinds, TSr).selectors)
    # The responder may only narrow (§2.9): every returned selector must lie inside ours.
    if narrow(ts_i, our_ts_i) != ts_i or narrow(ts_r, our_ts_r) != ts_r or not ts_i or not ts_r:
        raise RemoteProtocolError("responder widened the selectors", NotifyType.TS_UNACCEPTABLE)
    return proposal.spi, selection.esp, ts_i, ts_r
