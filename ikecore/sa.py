"""IKE SA and Child SA records: plain, serializable state.

These records are everything a store keeps (DESIGN.md, issue "SA stores"): a session can be
rebuilt from an `IkeSa` alone, on this process after a restart or on another cluster node.
That includes the responses the peer may still retransmit a request for (RFC 7296 §2.1, §2.2:
a retransmission is answered from them, never processed twice, on whichever node serves the
SA). Transient things (retransmission timers, exchanges in flight, native cipher objects) live
in `IkeSession` and are rebuilt from the record.

`to_dict` gives JSON-compatible values (bytes as hex) with the key material in its own
``"keys"`` entry, so that a store can seal exactly that part at rest; `from_dict` is its
inverse and raises `MalformedMessage` for a record it cannot read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ikecore.config import Address, Identity, TrafficSelector
from ikecore.constants import IdType
from ikecore.errors import MalformedMessage
from ikecore.states import ChildState, IkeState
from ikecore.suites import EspTransforms, IkeTransforms

__all__ = ["CachedResponse", "ChildSa", "IkeSa", "IkeSaKeys", "SpiPair"]

SpiPair = tuple[bytes, bytes]
"""(SPIi, SPIr) of an IKE SA, 8 bytes each, as in the IKE header."""

CachedResponse = tuple[bytes, tuple[bytes, ...]]
"""(request, messages): a peer request as received (a retransmission is the same bytes) and
our response to it, one message or its Encrypted Fragment messages (RFC 7383)."""


@dataclass(slots=True, repr=False)
class IkeSaKeys:
    """RFC 7296 §2.14: SK_d, SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr (GCM keys with salt).

    Its repr shows key lengths only, so that no log ever carries a key.
    """

    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes

    def __repr__(self) -> str:
        lengths = ", ".join(f"{name}=<{len(getattr(self, name))} bytes>" for name in self.__slots__)
        return f"IkeSaKeys({lengths})"

    def to_dict(self) -> dict[str, str]:
        return {name: getattr(self, name).hex() for name in self.__slots__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IkeSaKeys:
        return cls(**{name: bytes.fromhex(data[name]) for name in cls.__slots__})


@dataclass(slots=True)
class ChildSa:
    """An ESP Child SA. ``spi_in`` is the SPI we chose (the peer sends with it).

    ``initiator`` is our role in the exchange that created it (KEYMAT order, RFC 7296 §2.17).
    ``seq_out`` is the last outbound ESP sequence number handed out (a high-water mark: it
    never goes back, so an IV is never reused). ``replay_highest`` / ``replay_bitmap`` are the
    inbound anti-replay window as last saved (RFC 4303 §3.4.3: the highest sequence number
    received, bit i = that number - i received), so a node that takes the SA over keeps
    rejecting replays of what was received before the hand-off.
    """

    spi_in: bytes
    spi_out: bytes
    initiator: bool
    transforms: EspTransforms
    key_in: bytes = field(repr=False)  # never in a log
    key_out: bytes = field(repr=False)
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    state: ChildState = ChildState.INSTALLED
    seq_out: int = 0
    replay_highest: int = 0
    replay_bitmap: int = 0
    created_at: float = 0.0
    rekeyed_from: bytes | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "spi_in": self.spi_in.hex(),
            "spi_out": self.spi_out.hex(),
            "initiator": self.initiator,
            "transforms": _esp_to_dict(self.transforms),
            "keys": {"key_in": self.key_in.hex(), "key_out": self.key_out.hex()},
            "local_ts": [_ts_to_list(ts) for ts in self.local_ts],
            "remote_ts": [_ts_to_list(ts) for ts in self.remote_ts],
            "state": self.state.value,
            "seq_out": self.seq_out,
            "replay_highest": self.replay_highest,
            "replay_bitmap": self.replay_bitmap,
            "created_at": self.created_at,
            "rekeyed_from": None if self.rekeyed_from is None else self.rekeyed_from.hex(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChildSa:
        try:
            return cls(
                spi_in=bytes.fromhex(data["spi_in"]),
                spi_out=bytes.fromhex(data["spi_out"]),
                initiator=bool(data["initiator"]),
                transforms=EspTransforms(**data["transforms"]),
                key_in=bytes.fromhex(data["keys"]["key_in"]),
                key_out=bytes.fromhex(data["keys"]["key_out"]),
                local_ts=tuple(TrafficSelector(*ts) for ts in data["local_ts"]),
                remote_ts=tuple(TrafficSelector(*ts) for ts in data["remote_ts"]),
                state=ChildState(data["state"]),
                seq_out=int(data["seq_out"]),
                replay_highest=int(data["replay_highest"]),
                replay_bitmap=int(data["replay_bitmap"]),
                created_at=float(data["created_at"]),
                rekeyed_from=_opt_bytes(data["rekeyed_from"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedMessage(f"unreadable Child SA record: {exc}") from None


@dataclass(slots=True)
class IkeSa:
    """An IKE SA. ``initiator`` is True on the original initiator (it sets the I flag).

    Message IDs (RFC 7296 §2.3): ``next_request_id`` is the ID of our next request;
    ``next_peer_request_id`` the lowest ID of the peer's not yet answered. ``peer_window`` is
    what the peer allows us in flight (its SET_WINDOW_SIZE), ``local_window`` what we announced.
    ``sk_iv`` is the last explicit IV used by our SK payloads under our current key (a counter,
    never reused). ``parent`` links a clone to the SA it was cloned from (RFC 7791) and
    ``family`` names the first SA of the whole clone family (RFC 7791 §8 limits, accounting).

    MOBIKE (RFC 4555), kept with the SA so that a node taking it over or restarting knows it:
    ``peer_addresses`` is the peer's announced address set (§3.4, §3.6; empty until it
    announced any), ``mobike_update_id`` the message ID of the last UPDATE_SA_ADDRESSES acted
    on (older ones are answered but ignored, §3.5; -1: none yet), ``nat_seen_as`` the
    NAT_DETECTION_DESTINATION_IP of the peer's last answer to our UPDATE_SA_ADDRESSES (§3.8;
    empty: none yet), ``mobike_initiator`` True on RFC 4555's "initiator": the end that
    initiated the first IKE SA "in a series of possibly several rekeyed IKE_SAs" (§1.3). Unlike
    ``initiator`` (the I flag, RFC 7296's original initiator, which an IKE SA rekey gives to the
    rekey's initiator), it never changes along the series, nor for a clone (docs/CLONE.md); it
    decides who chooses the addresses of the IPsec SAs (§2.1, §3.5) and who checks NAT
    mappings (§3.8).

    ``responses`` is the response cache (RFC 7296 §2.1, §2.2), by message ID: our responses
    to the peer's requests one window below ``next_peer_request_id`` and up, a retransmission
    of which is answered with the same bytes. Those at or above ``next_peer_request_id`` are
    the requests answered ahead of a lower one still open (a window > 1). None until the
    first request is answered (an SA that never answers one has no container for it).
    """

    spi_i: bytes
    spi_r: bytes
    initiator: bool
    local_address: Address
    remote_address: Address
    state: IkeState = IkeState.CONNECTING
    transforms: IkeTransforms | None = None
    keys: IkeSaKeys | None = None
    local_id: Identity | None = None
    remote_id: Identity | None = None
    peer_name: str = ""
    next_request_id: int = 0
    next_peer_request_id: int = 0
    peer_window: int = 1
    local_window: int = 1
    sk_iv: int = 0
    local_clone_supported: bool = False
    peer_clone_supported: bool = False
    local_mobike_supported: bool = False
    peer_mobike_supported: bool = False
    peer_fragmentation_supported: bool = False
    local_behind_nat: bool = False
    remote_behind_nat: bool = False
    peer_addresses: tuple[str, ...] = ()
    mobike_update_id: int = -1
    nat_seen_as: bytes = b""
    mobike_initiator: bool = False
    parent: SpiPair | None = None
    family: str = ""
    rekeyed_from: SpiPair | None = None
    created_at: float = 0.0
    established_at: float | None = None
    child_sas: dict[bytes, ChildSa] = field(default_factory=dict)
    responses: dict[int, CachedResponse] | None = None

    @property
    def spis(self) -> SpiPair:
        return (self.spi_i, self.spi_r)

    @property
    def local_spi(self) -> bytes:
        return self.spi_i if self.initiator else self.spi_r

    @property
    def clone_negotiated(self) -> bool:
        """RFC 7791 §5.1: cloning is allowed only if both peers sent CLONE_IKE_SA_SUPPORTED."""
        return self.local_clone_supported and self.peer_clone_supported

    def to_dict(self) -> dict[str, Any]:
        return {
            "spi_i": self.spi_i.hex(),
            "spi_r": self.spi_r.hex(),
            "initiator": self.initiator,
            "local_address": list(self.local_address),
            "remote_address": list(self.remote_address),
            "state": self.state.value,
            "transforms": None if self.transforms is None else _ike_to_dict(self.transforms),
            "keys": None if self.keys is None else self.keys.to_dict(),
            "local_id": _id_to_list(self.local_id),
            "remote_id": _id_to_list(self.remote_id),
            "peer_name": self.peer_name,
            "next_request_id": self.next_request_id,
            "next_peer_request_id": self.next_peer_request_id,
            "peer_window": self.peer_window,
            "local_window": self.local_window,
            "sk_iv": self.sk_iv,
            "local_clone_supported": self.local_clone_supported,
            "peer_clone_supported": self.peer_clone_supported,
            "local_mobike_supported": self.local_mobike_supported,
            "peer_mobike_supported": self.peer_mobike_supported,
            "peer_fragmentation_supported": self.peer_fragmentation_supported,
            "local_behind_nat": self.local_behind_nat,
            "remote_behind_nat": self.remote_behind_nat,
            "peer_addresses": list(self.peer_addresses),
            "mobike_update_id": self.mobike_update_id,
            "nat_seen_as": self.nat_seen_as.hex(),
            "mobike_initiator": self.mobike_initiator,
            "parent": None if self.parent is None else [s.hex() for s in self.parent],
            "family": self.family,
            "rekeyed_from": None
            if self.rekeyed_from is None
            else [s.hex() for s in self.rekeyed_from],
            "created_at": self.created_at,
            "established_at": self.established_at,
            "child_sas": [child.to_dict() for child in self.child_sas.values()],
            "responses": None
            if self.responses is None
            else [
                [message_id, request.hex(), [raw.hex() for raw in messages]]
                for message_id, (request, messages) in self.responses.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IkeSa:
        try:
            children = [ChildSa.from_dict(c) for c in data["child_sas"]]
            return cls(
                spi_i=bytes.fromhex(data["spi_i"]),
                spi_r=bytes.fromhex(data["spi_r"]),
                initiator=bool(data["initiator"]),
                local_address=_address(data["local_address"]),
                remote_address=_address(data["remote_address"]),
                state=IkeState(data["state"]),
                transforms=None
                if data["transforms"] is None
                else IkeTransforms(**data["transforms"]),
                keys=None if data["keys"] is None else IkeSaKeys.from_dict(data["keys"]),
                local_id=_id_from_list(data["local_id"]),
                remote_id=_id_from_list(data["remote_id"]),
                peer_name=str(data["peer_name"]),
                next_request_id=int(data["next_request_id"]),
                next_peer_request_id=int(data["next_peer_request_id"]),
                peer_window=int(data["peer_window"]),
                local_window=int(data["local_window"]),
                sk_iv=int(data["sk_iv"]),
                local_clone_supported=bool(data["local_clone_supported"]),
                peer_clone_supported=bool(data["peer_clone_supported"]),
                local_mobike_supported=bool(data["local_mobike_supported"]),
                peer_mobike_supported=bool(data["peer_mobike_supported"]),
                peer_fragmentation_supported=bool(data["peer_fragmentation_supported"]),
                local_behind_nat=bool(data["local_behind_nat"]),
                remote_behind_nat=bool(data["remote_behind_nat"]),
                peer_addresses=tuple(str(address) for address in data["peer_addresses"]),
                mobike_update_id=int(data["mobike_update_id"]),
                nat_seen_as=bytes.fromhex(data["nat_seen_as"]),
                mobike_initiator=bool(data["mobike_initiator"]),
                parent=_opt_pair(data["parent"]),
                family=str(data["family"]),
                rekeyed_from=_opt_pair(data["rekeyed_from"]),
                created_at=float(data["created_at"]),
                established_at=None
                if data["established_at"] is None
                else float(data["established_at"]),
                child_sas={child.spi_in: child for child in children},
                # Absent from a dict written before the cache was kept: none.
                responses=_responses_from_list(data.get("responses")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedMessage(f"unreadable IKE SA record: {exc}") from None


def _ike_to_dict(t: IkeTransforms) -> dict[str, Any]:
    return {"encr": t.encr, "key_bits": t.key_bits, "prf": t.prf, "dh": t.dh}


def _esp_to_dict(t: EspTransforms) -> dict[str, Any]:
    return {"encr": t.encr, "key_bits": t.key_bits, "esn": t.esn, "dh": t.dh}


def _ts_to_list(ts: TrafficSelector) -> list[Any]:
    return [ts.start, ts.end, ts.ip_protocol, ts.start_port, ts.end_port]


def _id_to_list(identity: Identity | None) -> list[Any] | None:
    return None if identity is None else [int(identity.type), identity.data.hex()]


def _id_from_list(data: list[Any] | None) -> Identity | None:
    return None if data is None else Identity(IdType(data[0]), bytes.fromhex(data[1]))


def _address(data: list[Any]) -> Address:
    host, port = data
    return (str(host), int(port))


def _opt_bytes(data: str | None) -> bytes | None:
    return None if data is None else bytes.fromhex(data)


def _responses_from_list(data: list[Any] | None) -> dict[int, CachedResponse] | None:
    if data is None:
        return None
    return {
        int(message_id): (bytes.fromhex(request), tuple(bytes.fromhex(raw) for raw in messages))
        for message_id, request, messages in data
    }


def _opt_pair(data: list[str] | None) -> SpiPair | None:
    if data is None:
        return None
    first, second = data
    return (bytes.fromhex(first), bytes.fromhex(second))
