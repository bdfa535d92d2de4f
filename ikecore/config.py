"""Configuration of an endpoint and of the peers it talks to (plain frozen dataclasses).

A `PeerConfig` is what the initiator passes to `IkeEndpoint.initiate` and what a responder
matches an authenticated peer against (by its IDi). `EndpointConfig` holds what is not per
peer: the responder's IKE proposals (they are needed before the peer is known), reliability
timing, the COOKIE threshold and the message-ID window.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from ikecore.constants import IdType, ProtocolId
from ikecore.suites import ProposalSpec, parse_proposals

__all__ = [
    "DEFAULT_ESP_PROPOSALS",
    "DEFAULT_IKE_PROPOSALS",
    "Address",
    "EndpointConfig",
    "Identity",
    "PeerConfig",
    "TrafficSelector",
]

Address = tuple[str, int]
"""(host, UDP port), as the asyncio and socket modules use them."""

DEFAULT_IKE_PROPOSALS = "aes256gcm16-prfsha256-x25519"
DEFAULT_ESP_PROPOSALS = "aes256gcm16"


@dataclass(frozen=True, slots=True)
class Identity:
    """An IKE identity (RFC 7296 §3.5): ID Type and the identification data."""

    type: IdType
    data: bytes

    @classmethod
    def parse(cls, text: str) -> Identity:
        """strongSwan-like: an IP address, ``user@domain`` (RFC822), ``keyid:HEX``, else FQDN."""
        if text.startswith("keyid:"):
            return cls(IdType.KEY_ID, bytes.fromhex(text[len("keyid:") :]))
        if text.startswith("fqdn:"):
            return cls(IdType.FQDN, text[len("fqdn:") :].encode())
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            pass
        else:
            kind = IdType.IPV4_ADDR if address.version == 4 else IdType.IPV6_ADDR
            return cls(kind, address.packed)
        if not text:
            raise ValueError("empty identity")
        if "@" in text:
            return cls(IdType.RFC822_ADDR, text.encode())
        return cls(IdType.FQDN, text.encode())

    def __str__(self) -> str:
        if self.type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
            return str(ipaddress.ip_address(self.data))
        if self.type == IdType.KEY_ID:
            return f"keyid:{self.data.hex()}"
        return self.data.decode(errors="replace")


@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """An address range with an IP protocol and port range (RFC 7296 §3.13.1).

    Addresses are text (what configuration and records hold); the packed forms are computed
    once, so that narrowing and encoding never parse text again.
    """

    start: str
    end: str
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 65535
    packed_start: bytes = field(init=False, repr=False, compare=False)
    packed_end: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        family = socket.AF_INET6 if ":" in self.start else socket.AF_INET
        try:
            low = socket.inet_pton(family, self.start)
            high = socket.inet_pton(family, self.end)
        except OSError:
            raise ValueError(f"bad traffic selector range {self.start} - {self.end}") from None
        object.__setattr__(self, "packed_start", low)
        object.__setattr__(self, "packed_end", high)

    @classmethod
    def from_packed(
        cls,
        start: bytes,
        end: bytes,
        ip_protocol: int = 0,
        start_port: int = 0,
        end_port: int = 65535,
    ) -> TrafficSelector:
        if len(start) not in (4, 16) or len(end) != len(start):
            raise ValueError("packed addresses must both be 4 or 16 bytes")
        family = socket.AF_INET if len(start) == 4 else socket.AF_INET6
        # Filled in directly: the packed forms are already known (no text parsing).
        selector = object.__new__(cls)
        for name, value in (
            ("start", socket.inet_ntop(family, start)),
            ("end", socket.inet_ntop(family, end)),
            ("ip_protocol", ip_protocol),
            ("start_port", start_port),
            ("end_port", end_port),
            ("packed_start", start),
            ("packed_end", end),
        ):
            object.__setattr__(selector, name, value)
        return selector

    @classmethod
    def any(cls, version: int = 4) -> TrafficSelector:
        if version == 4:
            return cls("0.0.0.0", "255.255.255.255")
        return cls("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")

    @classmethod
    def from_network(cls, network: str) -> TrafficSelector:
        net = ipaddress.ip_network(network, strict=False)
        return cls(str(net.network_address), str(net.broadcast_address))

    @property
    def version(self) -> int:
        return 4 if len(self.packed_start) == 4 else 6

    def intersect(self, other: TrafficSelector) -> TrafficSelector | None:
        """The common part of two selectors (RFC 7296 §2.9 narrowing), None if disjoint."""
        if len(self.packed_start) != len(other.packed_start):
            return None
        if self.ip_protocol and other.ip_protocol and self.ip_protocol != other.ip_protocol:
            return None
        # Equal-length big-endian addresses compare as bytes exactly as they do as numbers.
        low = max(self.packed_start, other.packed_start)
        high = min(self.packed_end, other.packed_end)
        port_low = max(self.start_port, other.start_port)
        port_high = min(self.end_port, other.end_port)
        if low > high or port_low > port_high:
            return None
        protocol = self.ip_protocol or other.ip_protocol
        for candidate in (self, other):
            if (
                candidate.packed_start == low
                and candidate.packed_end == high
                and (candidate.ip_protocol, candidate.start_port, candidate.end_port)
                == (protocol, port_low, port_high)
            ):
                return candidate
        return TrafficSelector.from_packed(low, high, protocol, port_low, port_high)


def _ike(text: str) -> tuple[ProposalSpec, ...]:
    return parse_proposals(text, ProtocolId.IKE)


def _esp(text: str) -> tuple[ProposalSpec, ...]:
    return parse_proposals(text, ProtocolId.ESP)


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """One peer: identities, pre-shared key, proposals, addresses and features.

    ``remote_id`` None lets a responder accept any identity that proves the PSK. ``clone``
    announces CLONE_IKE_SA_SUPPORTED (RFC 7791 §5.1) and ``mobike`` MOBIKE_SUPPORTED (RFC 4555).
    ``initial_contact``: an initiator with no other IKE SA to this peer says so with
    INITIAL_CONTACT in IKE_AUTH, and the responder drops its older SAs with our identity (RFC
    7296 §3.10.1). Off by default: it must stay off where the same credentials may be in use
    from several systems at once.
    Automatic maintenance, in seconds (None: only when the application asks): ``ike_rekey_time``
    after an IKE SA is established (or made by a rekey or clone) it is rekeyed,
    ``child_rekey_time`` after a Child SA was made it is rekeyed (RFC 7296 §2.8), and after
    ``dpd_delay`` without an authentic IKE message or ESP packet from the peer a liveness check
    is sent (§1.4; a peer that never answers ends the SA with reason "timeout").
    Hard lifetimes (§2.8 leaves them to local policy): ``ike_lifetime`` after an IKE SA was
    established (or made by a rekey or clone) and ``child_lifetime`` after a Child SA was made,
    the SA is deleted (reason "expired") unless a rekey replaced it first; each must be longer
    than its rekey time, so that the rekey has a chance to happen.

    MOBIKE policy (RFC 4555, used only where MOBIKE is negotiated): ``additional_addresses``
    are our other IP addresses, announced in IKE_AUTH with ADDITIONAL_IP4/IP6_ADDRESS (§3.4;
    later changes go with `IkeSession.announce_addresses`). ``no_nats_allowed`` puts
    NO_NATS_ALLOWED in our first IKE_AUTH request and our address updates and announcements
    (§3.9): a NAT on the path is then refused by the peer with UNEXPECTED_NAT_DETECTED.
    ``return_routability_check`` (the default, §3.7's SHOULD): when the peer moves the SA to a
    new address, the Child SAs follow only once an INFORMATIONAL with COOKIE2 sent there is
    answered.
    """

    local_id: Identity
    psk: bytes = field(repr=False)  # a secret: never in a log
    remote_id: Identity | None = None
    remote_address: Address | None = None
    local_address: Address | None = None
    ike_proposals: tuple[ProposalSpec, ...] = field(
        default_factory=lambda: _ike(DEFAULT_IKE_PROPOSALS)
    )
    esp_proposals: tuple[ProposalSpec, ...] = field(
        default_factory=lambda: _esp(DEFAULT_ESP_PROPOSALS)
    )
    local_ts: tuple[TrafficSelector, ...] = (TrafficSelector.any(),)
    remote_ts: tuple[TrafficSelector, ...] = (TrafficSelector.any(),)
    mobike: bool = True
    clone: bool = True
    max_clones: int | None = None
    initial_contact: bool = False
    ike_rekey_time: float | None = None
    child_rekey_time: float | None = None
    dpd_delay: float | None = None
    ike_lifetime: float | None = None
    child_lifetime: float | None = None
    name: str = ""
    additional_addresses: tuple[str, ...] = ()
    no_nats_allowed: bool = False
    return_routability_check: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.psk, bytes) or not self.psk:
            raise ValueError("psk must be non-empty bytes")
        if any(p.protocol != ProtocolId.IKE for p in self.ike_proposals) or not self.ike_proposals:
            raise ValueError("ike_proposals must be IKE proposals")
        if any(p.protocol != ProtocolId.ESP for p in self.esp_proposals) or not self.esp_proposals:
            raise ValueError("esp_proposals must be ESP proposals")
        if self.max_clones is not None and self.max_clones < 0:
            raise ValueError("max_clones must be >= 0")
        for name in (
            "ike_rekey_time", "child_rekey_time", "dpd_delay", "ike_lifetime", "child_lifetime"
        ):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 seconds (or None)")
        for lifetime, rekey in (("ike_lifetime", "ike_rekey_time"),
                                ("child_lifetime", "child_rekey_time")):
            hard, soft = getattr(self, lifetime), getattr(self, rekey)
            if hard is not None and soft is not None and not hard > soft:
                raise ValueError(f"{lifetime} must be longer than {rekey}")
        if not isinstance(self.additional_addresses, tuple):
            raise TypeError("additional_addresses must be a tuple of IP address strings")
        for address in self.additional_addresses:
            if not isinstance(address, str):
                raise TypeError(f"additional_addresses: {address!r} is not a string")
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"additional_addresses: not an IP address: {address!r}") from None


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """What an endpoint needs beyond its peers.

    Retransmission (RFC 7296 §2.1): the first retransmit after ``retransmit_timeout`` seconds,
    each next one ``retransmit_backoff`` times later, ``retransmit_tries`` retransmissions before
    the SA is given up. ``cookie_threshold``: half-open IKE SAs beyond which the responder
    demands a COOKIE (§2.6), made with a secret that changes every ``cookie_secret_lifetime``
    seconds (cookies of the previous secret are still accepted). ``window_size`` is announced
    with SET_WINDOW_SIZE when above 1 (§2.3). ``nat_detection`` False leaves NAT_DETECTION_*
    out of our IKE_SA_INIT requests (a responder still answers those it receives, §2.23).
    ``esp_seq_block``: outbound ESP sequence numbers reserved in the store at a time (one
    durable write per block, not per packet; a crash or hand-off skips at most that many,
    compare RFC 6311).
    ``fragmentation``: announce IKEV2_FRAGMENTATION_SUPPORTED and, once the peer did too,
    send protected messages whose IP datagram would exceed ``fragment_threshold`` bytes as
    Encrypted Fragments (RFC 7383); None means 576 over IPv4, 1280 over IPv6 (§2.5.1).
    """

    peers: tuple[PeerConfig, ...] = ()
    ike_proposals: tuple[ProposalSpec, ...] = field(
        default_factory=lambda: _ike(DEFAULT_IKE_PROPOSALS)
    )
    window_size: int = 1
    retransmit_timeout: float = 1.0
    retransmit_backoff: float = 2.0
    retransmit_tries: int = 5
    half_open_timeout: float = 30.0
    cookie_threshold: int = 100
    cookie_secret_lifetime: float = 300.0
    nat_port: int = 4500
    nat_detection: bool = True
    esp_seq_block: int = 16384
    fragmentation: bool = True
    fragment_threshold: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.esp_seq_block <= 2**32 - 1:
            raise ValueError("esp_seq_block must lie in 1..2^32 - 1")
        if not 1 <= self.window_size <= 2**16:
            raise ValueError("window_size must lie in 1..65536")
        if self.retransmit_timeout <= 0 or self.retransmit_backoff < 1:
            raise ValueError("retransmit_timeout must be > 0 and retransmit_backoff >= 1")
        # IP, UDP, non-ESP marker, IKE, SKF headers, IV, pad length and a 16-byte ICV, plus
        # at least one byte of data must fit in a fragment.
        if self.fragment_threshold is not None and self.fragment_threshold < 150:
            raise ValueError("fragment_threshold must be >= 150 (bytes of an IP datagram)")
        if not self.cookie_secret_lifetime > 0:
            raise ValueError("cookie_secret_lifetime must be > 0 seconds")
        if self.retransmit_tries < 0 or self.cookie_threshold < 0:
            raise ValueError("retransmit_tries and cookie_threshold must be >= 0")

    def peer_for(self, remote_id: Identity) -> PeerConfig | None:
        """The responder's configuration for an authenticated IDi (exact, then wildcard)."""
        for peer in self.peers:
            if peer.remote_id == remote_id:
                return peer
        for peer in self.peers:
            if peer.remote_id is None:
                return peer
        return None
