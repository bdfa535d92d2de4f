"""Transform sets: strongSwan proposal strings, proposal selection and key lengths.

A configured proposal is a set of acceptable transforms per transform type (RFC 7296 §3.3).
`parse_proposals` reads strongSwan's syntax (`aes256gcm16-prfsha256-x25519`,
ESP `aes128gcm16-esn`; several proposals separated by commas). `select_proposal` is the
responder's choice (RFC 7296 §2.7): the first of the initiator's proposals it accepts, one
transform of each type. `IkeTransforms` / `EspTransforms` are the negotiated result and know
their key lengths (RFC 5282 §7.1, RFC 4106 §8.1, RFC 7634 §2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from ikecore.cache import BoundedCache
from ikecore.constants import DhGroup, EncrId, EsnId, PrfId, ProtocolId, TransformType
from ikecore.dh import SUPPORTED_GROUPS

__all__ = [
    "EspTransforms",
    "IkeTransforms",
    "ProposalSpec",
    "Selection",
    "Transform",
    "encr_key_length",
    "icv_length",
    "parse_proposals",
    "select_proposal",
]

# AEAD ciphers only (RFC 5282, RFC 7634): no INTEG transform is ever proposed with them.
_GCM_ICV: Final[dict[int, int]] = {
    EncrId.AES_GCM_8: 8,
    EncrId.AES_GCM_12: 12,
    EncrId.AES_GCM_16: 16,
}
_AEAD_SALT: Final = 4  # RFC 4106 §8.1 / RFC 5282 §7.1 (GCM), RFC 7634 §2 (ChaCha20-Poly1305)
_GCM_KEY_BITS: Final = frozenset({128, 192, 256})
_PRFS: Final = frozenset({PrfId.HMAC_SHA2_256, PrfId.HMAC_SHA2_384, PrfId.HMAC_SHA2_512})


def icv_length(encr: int) -> int:
    """ICV length of an AEAD transform."""
    if encr in _GCM_ICV:
        return _GCM_ICV[encr]
    if encr == EncrId.CHACHA20_POLY1305:
        return 16
    raise ValueError(f"unsupported encryption transform {encr}")


def encr_key_length(encr: int, key_bits: int | None) -> int:
    """Key material taken from prf+ / KEYMAT: cipher key plus the 4-byte salt."""
    if encr in _GCM_ICV:
        if key_bits not in _GCM_KEY_BITS:
            raise ValueError(f"AES-GCM needs a Key Length of 128, 192 or 256, not {key_bits}")
        return key_bits // 8 + _AEAD_SALT
    if encr == EncrId.CHACHA20_POLY1305:
        # RFC 7634 §2: fixed 256-bit key, no Key Length attribute.
        if key_bits is not None:
            raise ValueError("ChaCha20-Poly1305 takes no Key Length attribute")
        return 32 + _AEAD_SALT
    raise ValueError(f"unsupported encryption transform {encr}")


@dataclass(frozen=True, slots=True)
class Transform:
    """One transform: type, id and (for variable-key ciphers) the Key Length in bits."""

    type: int
    id: int
    key_length: int | None = None


class TransformLike(Protocol):
    @property
    def type(self) -> int: ...
    @property
    def id(self) -> int: ...
    @property
    def key_length(self) -> int | None: ...


class ProposalLike(Protocol):
    @property
    def transforms(self) -> Sequence[TransformLike]: ...


@dataclass(frozen=True, slots=True)
class ProposalSpec:
    """A configured proposal: the acceptable transforms of each type, in preference order."""

    protocol: ProtocolId
    transforms: tuple[Transform, ...]
    # (type, id, key length) of every transform: what selection looks up, made once.
    acceptable: frozenset[tuple[int, int, int | None]] = field(
        init=False, repr=False, compare=False
    )
    # The key exchange groups ikecore can do, in preference order: what every IKE_SA_INIT,
    # rekey and clone request picks its group from, made once.
    supported_groups: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = frozenset((t.type, t.id, t.key_length) for t in self.transforms)
        object.__setattr__(self, "acceptable", keys)
        groups = tuple(
            t.id for t in self.transforms if t.type == TransformType.DH and t.id in SUPPORTED_GROUPS
        )
        object.__setattr__(self, "supported_groups", groups)

    def of_type(self, transform_type: int) -> tuple[Transform, ...]:
        return tuple(t for t in self.transforms if t.type == transform_type)


@dataclass(frozen=True, slots=True)
class IkeTransforms:
    """The transforms negotiated for an IKE SA."""

    encr: int
    key_bits: int | None
    prf: int
    dh: int

    @property
    def encr_key_length(self) -> int:
        return encr_key_length(self.encr, self.key_bits)

    @property
    def icv_length(self) -> int:
        return icv_length(self.encr)

    def transforms(self) -> tuple[Transform, ...]:
        return (
            Transform(TransformType.ENCR, self.encr, self.key_bits),
            Transform(TransformType.PRF, self.prf),
            Transform(TransformType.DH, self.dh),
        )


@dataclass(frozen=True, slots=True)
class EspTransforms:
    """The transforms negotiated for an ESP Child SA; ``dh`` is 0 without PFS."""

    encr: int
    key_bits: int | None
    esn: bool
    dh: int = DhGroup.NONE

    @property
    def encr_key_length(self) -> int:
        return encr_key_length(self.encr, self.key_bits)

    @property
    def icv_length(self) -> int:
        return icv_length(self.encr)

    def transforms(self) -> tuple[Transform, ...]:
        chosen = [Transform(TransformType.ENCR, self.encr, self.key_bits)]
        if self.dh != DhGroup.NONE:
            chosen.append(Transform(TransformType.DH, self.dh))
        chosen.append(Transform(TransformType.ESN, EsnId.ESN if self.esn else EsnId.NO_ESN))
        return tuple(chosen)


_ENCR_TOKENS: Final = {
    "chacha20poly1305": (EncrId.CHACHA20_POLY1305, None),
    **{
        f"aes{bits}gcm{icv}": (encr, bits)
        for bits in (128, 192, 256)
        for icv, encr in ((8, EncrId.AES_GCM_8), (12, EncrId.AES_GCM_12), (16, EncrId.AES_GCM_16))
    },
    # strongSwan: "aes256gcm" without an ICV size means the 16-byte ICV.
    **{f"aes{bits}gcm": (EncrId.AES_GCM_16, bits) for bits in (128, 192, 256)},
}
_PRF_TOKENS: Final = {
    "prfsha256": PrfId.HMAC_SHA2_256,
    "prfsha384": PrfId.HMAC_SHA2_384,
    "prfsha512": PrfId.HMAC_SHA2_512,
}
_DH_TOKENS: Final = {
    "modp2048": DhGroup.MODP_2048,
    "ecp256": DhGroup.ECP_256,
    "ecp384": DhGroup.ECP_384,
    "ecp521": DhGroup.ECP_521,
    "x25519": DhGroup.CURVE25519,
    "curve25519": DhGroup.CURVE25519,
}
_ESN_TOKENS: Final = {"esn": EsnId.ESN, "noesn": EsnId.NO_ESN}


def _append(found: list[Transform], transform: Transform) -> None:
    if transform not in found:
        found.append(transform)


def _parse_one(text: str, protocol: ProtocolId) -> ProposalSpec:
    found: list[Transform] = []
    for token in text.strip().lower().split("-"):
        if token in _ENCR_TOKENS:
            encr, bits = _ENCR_TOKENS[token]
            _append(found, Transform(TransformType.ENCR, encr, bits))
        elif token in _PRF_TOKENS and protocol == ProtocolId.IKE:
            _append(found, Transform(TransformType.PRF, _PRF_TOKENS[token]))
        elif token in _DH_TOKENS:
            _append(found, Transform(TransformType.DH, _DH_TOKENS[token]))
        elif token in _ESN_TOKENS and protocol == ProtocolId.ESP:
            _append(found, Transform(TransformType.ESN, _ESN_TOKENS[token]))
        else:
            raise ValueError(f"unknown or misplaced algorithm {token!r} in proposal {text!r}")
    spec = ProposalSpec(protocol, tuple(found))
    if not spec.of_type(TransformType.ENCR):
        raise ValueError(f"proposal {text!r} names no encryption algorithm")
    if protocol == ProtocolId.IKE:
        if not spec.of_type(TransformType.PRF):
            raise ValueError(f"IKE proposal {text!r} names no PRF")
        if not spec.of_type(TransformType.DH):
            raise ValueError(f"IKE proposal {text!r} names no key exchange group")
    elif not spec.of_type(TransformType.ESN):
        # strongSwan's default for ESP: no extended sequence numbers.
        spec = ProposalSpec(protocol, (*found, Transform(TransformType.ESN, EsnId.NO_ESN)))
    return spec


def parse_proposals(text: str, protocol: ProtocolId = ProtocolId.IKE) -> tuple[ProposalSpec, ...]:
    """strongSwan proposal syntax: proposals separated by ',', algorithms by '-'."""
    if protocol not in (ProtocolId.IKE, ProtocolId.ESP):
        raise ValueError(f"proposals are for IKE or ESP, not protocol {protocol}")
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise ValueError("empty proposal string")
    return tuple(_parse_one(part, protocol) for part in parts)


@dataclass(frozen=True, slots=True)
class Selection:
    """The responder's choice: index of the accepted received proposal and its transforms.

    Shared between the selections that give the same answer (see `select_proposal`)."""

    index: int
    ike: IkeTransforms | None = None
    esp: EspTransforms | None = None


# Plain ints: comparing with an IntEnum member costs an attribute lookup each time.
_ENCR: Final = int(TransformType.ENCR)
_PRF: Final = int(TransformType.PRF)
_DH: Final = int(TransformType.DH)
_ESN: Final = int(TransformType.ESN)
# Likewise for the other members read per selection (an Enum class attribute read takes the
# slow path of a metaclass with __getattr__ on CPython 3.11).
_IKE: Final = int(ProtocolId.IKE)
_NO_ESN: Final = int(EsnId.NO_ESN)
_WITH_ESN: Final = int(EsnId.ESN)
_NO_DH: Final = DhGroup.NONE  # stored in EspTransforms.dh: the member itself

_KNOWN_TYPES: Final = {
    ProtocolId.IKE: frozenset(
        {TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.DH}
    ),
    ProtocolId.ESP: frozenset(
        {TransformType.ENCR, TransformType.INTEG, TransformType.DH, TransformType.ESN}
    ),
}


_Key = tuple[int, int, "int | None"]


def _first_accepted(offered: list[_Key], acceptable: frozenset[_Key]) -> dict[int, _Key | None]:
    """Per offered transform type, the first offered transform of it that we accept, or None
    when we accept none of that type (one pass over the proposal, not one per type)."""
    first: dict[int, _Key | None] = {}
    for key in offered:
        if first.get(key[0]) is None:
            first[key[0]] = key if key in acceptable else None
    return first


def _choose_dh(
    offered: list[_Key],
    first: dict[int, _Key | None],
    acceptable: frozenset[_Key],
    prefer_dh: int | None,
) -> int | None:
    # The group of the KE payload wins when both sides accept it, which avoids an
    # INVALID_KE_PAYLOAD round trip (RFC 7296 §1.2).
    if prefer_dh is not None and (_DH, prefer_dh, None) in acceptable:
        for transform_type, transform_id, _ in offered:
            if transform_type == _DH and transform_id == prefer_dh:
                return prefer_dh
    chosen = first.get(_DH)
    return None if chosen is None else chosen[1]


# The negotiated results are immutable and can only be made of transforms our configuration
# accepts, so one object per distinct choice is shared (a frozen dataclass costs a
# microsecond to build, and a choice is made in every exchange that creates an SA).
_ike_choices: dict[tuple[int, int | None, int, int], IkeTransforms] = {}
_esp_choices: dict[tuple[int, int | None, bool, int], EspTransforms] = {}


def _select_ike(
    offered: list[_Key], acceptable: frozenset[_Key], prefer_dh: int | None
) -> IkeTransforms | None:
    first = _first_accepted(offered, acceptable)
    encr, prf = first.get(_ENCR), first.get(_PRF)
    # AEAD only: an offered INTEG transform belongs to some other cipher of the proposal and
    # is not selected (RFC 5282 §8: no integrity transform with an AEAD cipher).
    if encr is None or prf is None:
        return None
    dh = _choose_dh(offered, first, acceptable, prefer_dh)
    if dh is None:
        return None
    key = (encr[1], encr[2], prf[1], dh)
    choice = _ike_choices.get(key)
    if choice is None:
        choice = _ike_choices[key] = IkeTransforms(*key)
    return choice


def _select_esp(
    offered: list[_Key],
    acceptable: frozenset[_Key],
    with_dh: bool | None,
    prefer_dh: int | None,
) -> EspTransforms | None:
    first = _first_accepted(offered, acceptable)
    encr = first.get(_ENCR)
    if encr is None:
        return None
    if _ESN in first:
        esn = first[_ESN]
        if esn is None:
            return None
        esn_id = esn[1]
    elif (_ESN, _NO_ESN, None) in acceptable:
        # A missing ESN transform is read as "no ESN" (what every peer in the field means).
        esn_id = _NO_ESN
    else:
        return None
    dh_id: int = _NO_DH
    if with_dh:
        # CREATE_CHILD_SA with KE: the group must be one we accept (RFC 7296 §1.3.1).
        chosen = _choose_dh(offered, first, acceptable, prefer_dh)
        if chosen is None:
            return None
        dh_id = chosen
    elif with_dh is False:
        # No KE payload sent: the offer must allow NONE, or it asked for PFS we cannot do.
        groups = {
            transform_id for transform_type, transform_id, _ in offered if transform_type == _DH
        }
        if groups - {_NO_DH} and _NO_DH not in groups:
            return None
    key = (encr[1], encr[2], esn_id == _WITH_ESN, dh_id)
    choice = _esp_choices.get(key)
    if choice is None:
        choice = _esp_choices[key] = EspTransforms(*key)
    return choice


def select_proposal(
    received: Sequence[ProposalLike],
    ours: Sequence[ProposalSpec],
    *,
    with_dh: bool | None = None,
    prefer_dh: int | None = None,
) -> Selection | None:
    """RFC 7296 §2.7: the first received proposal that one of ours accepts; None if none.

    For ESP, ``with_dh`` says whether the request carried a KE payload (True), none (False),
    or whether D-H transforms are ignored altogether (None: the Child SA of IKE_AUTH, §1.2).
    A proposal with a transform type we do not know is rejected whole (RFC 7296 §3.3.6).
    ``prefer_dh`` is the group of the received KE payload: chosen when acceptable. The caller
    passes only proposals of the protocol it negotiates; ``Selection.index`` points into them.
    """
    if not isinstance(ours, tuple):
        # may change: nothing to remember
        return _select(_offered_keys(received), ours, with_dh, prefer_dh)
    # The cache key, flat (it is made for every SA payload received; a tuple per transform
    # and per proposal would cost a third more): the options, then per received proposal its
    # transform count and each transform's type, id and key length.
    flat: list[int | bool | None] = [id(ours), with_dh, prefer_dh]
    for proposal in received:
        flat.append(len(proposal.transforms))
        for t in proposal.transforms:
            flat += (t.type, t.id, t.key_length)
    key = tuple(flat)
    known = _selections.get(key, ours)
    if known is not None:
        return known
    selection = _select(_offered_keys(received), ours, with_dh, prefer_dh)
    if selection is None:
        return None  # NO_PROPOSAL_CHOSEN: nothing worth keeping
    return _selections.put(key, selection, ours)


# The answers of `select_proposal` per (our proposals: a tuple of frozen specs, found by
# identity and held so the id stays its own; the offered transforms; the options): a pure
# function of both, and a gateway hears the same few offers from every peer (a choice costs
# microseconds, the lookup a fraction). Emptied when full: offers come from anyone.
_selections: BoundedCache[Selection] = BoundedCache()


def _offered_keys(received: Sequence[ProposalLike]) -> tuple[tuple[_Key, ...], ...]:
    return tuple([tuple([(t.type, t.id, t.key_length) for t in p.transforms]) for p in received])


def _select(
    offers: tuple[tuple[_Key, ...], ...],
    ours: Sequence[ProposalSpec],
    with_dh: bool | None,
    prefer_dh: int | None,
) -> Selection | None:
    for index, offer in enumerate(offers):
        offered = list(offer)
        offered_types = {key[0] for key in offered}
        for spec in ours:
            if not offered_types <= _KNOWN_TYPES[spec.protocol]:
                continue
            if spec.protocol == _IKE:
                ike = _select_ike(offered, spec.acceptable, prefer_dh)
                if ike is not None and ike.dh in SUPPORTED_GROUPS:
                    return Selection(index, ike=ike)
            else:
                esp = _select_esp(offered, spec.acceptable, with_dh, prefer_dh)
                if esp is not None:
                    return Selection(index, esp=esp)
    return None
