"""IKEv2 payloads (RFC 7296 §3.2-§3.16, RFC 7383 §2.5) as frozen, slotted dataclasses.

Decoding and encoding are done by the compiled core (``ikecore._fast.ikemsg``): it builds these
objects directly (filling their slots, the stores ``__init__`` would make) and reads them back
when encoding, so one native call turns a whole payload chain into objects or bytes. The classes
are registered with it by ``ikecore.message`` (``PAYLOAD_CLASSES``).

Conventions:
- Numbers decoded from the wire are plain ints (compare them with the IntEnums of
  ``ikecore.constants``); unknown values are kept, never rejected here.
- ``type`` is the payload type, a plain int: a slot like the other fields (so that reading it
  is as fast), fixed by the class (``init=False``) except in ``UnknownPayload``; ``critical``
  is the received C bit (RFC 7296 §3.2: ignored for known types, sent as given: False by default).
- RESERVED fields are ignored on receipt and sent as zero; a decoded message keeps its exact
  bytes (``IkeMessage.to_bytes``), a re-encoded payload is canonical.
- Field validation happens when encoding (``ValueError``/``TypeError`` for the caller) and when
  decoding (``MalformedMessage`` with the absolute byte offset for the peer).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from dataclasses import dataclass, field

from ikecore.constants import NotifyType, PayloadType, TsType
from ikecore.errors import RemoteProtocolError

__all__ = [
    "Attribute",
    "Authentication",
    "Certificate",
    "CertificateRequest",
    "ConfigAttribute",
    "Configuration",
    "Delete",
    "Eap",
    "Encrypted",
    "EncryptedFragment",
    "IDi",
    "IDr",
    "Identification",
    "KeyExchange",
    "Nonce",
    "Notify",
    "Payload",
    "Proposal",
    "SecurityAssociation",
    "TSi",
    "TSr",
    "TrafficSelector",
    "TrafficSelectors",
    "Transform",
    "UnknownPayload",
    "UnsupportedCriticalPayload",
    "VendorId",
]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsupportedCriticalPayload(RemoteProtocolError):
    """A payload of a type ikecore does not know, with the C bit set (RFC 7296 §2.5).

    The whole message is rejected; if it was a request the response carries
    UNSUPPORTED_CRITICAL_PAYLOAD whose data is the 1-byte ``payload_type``.
    """

    def __init__(self, payload_type: int, offset: int) -> None:
        super().__init__(
            f"unsupported critical payload type {payload_type} (at byte {offset})",
            NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
        )
        self.payload_type = payload_type
        self.offset = offset

    @property
    def notify_data(self) -> bytes:
        return bytes((self.payload_type,))


# --- SA payload (RFC 7296 §3.3) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attribute:
    """A transform attribute other than Key Length (RFC 7296 §3.3.5): an int ``value`` is sent
    in TV form (AF = 1, 2 bytes), a bytes ``value`` in TLV form."""

    type: int
    value: int | bytes


@dataclass(frozen=True, slots=True)
class Transform:
    """RFC 7296 §3.3.2. ``key_length`` is the Key Length attribute (TV, type 14) in bits, sent
    first; the other attributes follow in order (no two of one type, §3.3)."""

    type: int
    id: int
    key_length: int | None = None
    attributes: tuple[Attribute, ...] = ()


@dataclass(frozen=True, slots=True)
class Proposal:
    """RFC 7296 §3.3.1. ``spi`` is empty in IKE_SA_INIT, 8 bytes for IKE, 4 for ESP/AH."""

    number: int
    protocol_id: int
    spi: bytes
    transforms: tuple[Transform, ...]


@dataclass(frozen=True, slots=True)
class SecurityAssociation:
    """SA payload: one or more proposals numbered 1, 2, … (a response: the chosen one)."""

    type: int = field(default=PayloadType.SA.value, init=False, repr=False)
    proposals: tuple[Proposal, ...]
    critical: bool = False


# --- simple payloads ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyExchange:
    """KE payload (RFC 7296 §3.4); the data length is checked for the groups ikecore knows."""

    type: int = field(default=PayloadType.KE.value, init=False, repr=False)
    group: int
    data: bytes
    critical: bool = False


@dataclass(frozen=True, slots=True)
class Identification:
    """IDi/IDr body (RFC 7296 §3.5): IPV4_ADDR must be 4 bytes, IPV6_ADDR 16, data non-empty."""

    type: int = field(init=False, repr=False)  # set by the subclass
    id_type: int
    data: bytes
    critical: bool = False


@dataclass(frozen=True, slots=True)
class IDi(Identification):
    type: int = field(default=PayloadType.IDI.value, init=False, repr=False)


@dataclass(frozen=True, slots=True)
class IDr(Identification):
    type: int = field(default=PayloadType.IDR.value, init=False, repr=False)


@dataclass(frozen=True, slots=True)
class Certificate:
    """CERT payload (RFC 7296 §3.6)."""

    type: int = field(default=PayloadType.CERT.value, init=False, repr=False)
    encoding: int
    data: bytes
    critical: bool = False


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """CERTREQ payload (RFC 7296 §3.7): ``data`` is the Certification Authority field."""

    type: int = field(default=PayloadType.CERTREQ.value, init=False, repr=False)
    encoding: int
    data: bytes
    critical: bool = False


@dataclass(frozen=True, slots=True)
class Authentication:
    """AUTH payload (RFC 7296 §3.8)."""

    type: int = field(default=PayloadType.AUTH.value, init=False, repr=False)
    method: int
    data: bytes
    critical: bool = False


@dataclass(frozen=True, slots=True)
class Nonce:
    """Ni/Nr (RFC 7296 §3.9): 16 to 256 bytes."""

    type: int = field(default=PayloadType.NONCE.value, init=False, repr=False)
    data: bytes
    critical: bool = False


# --- Notify (RFC 7296 §3.10) ----------------------------------------------------------------------

_NOTIFY_VALUE_SIZES: dict[int, tuple[int, int]] = {
    # notify type: (minimum, maximum) data length; checked when decoding and encoding
    NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD: (1, 1),
    NotifyType.INVALID_MESSAGE_ID: (4, 4),
    NotifyType.INVALID_KE_PAYLOAD: (2, 2),
    NotifyType.SET_WINDOW_SIZE: (4, 4),
    NotifyType.NAT_DETECTION_SOURCE_IP: (20, 20),
    NotifyType.NAT_DETECTION_DESTINATION_IP: (20, 20),
    NotifyType.COOKIE: (1, 64),
    NotifyType.ADDITIONAL_IP4_ADDRESS: (4, 4),
    NotifyType.ADDITIONAL_IP6_ADDRESS: (16, 16),
    NotifyType.COOKIE2: (8, 64),
}


@dataclass(frozen=True, slots=True)
class Notify:
    """Notify payload. ``spi`` is empty for notifies about the IKE SA (protocol 0 then).

    ``value`` gives the data typed for the notifies ikecore uses; the data lengths of those are
    checked (``_fast.ikemsg`` holds the same table as ``_NOTIFY_VALUE_SIZES``); the data of any
    other type is kept as received.
    """

    type: int = field(default=PayloadType.NOTIFY.value, init=False, repr=False)
    protocol_id: int
    spi: bytes
    notify_type: int
    data: bytes = b""
    critical: bool = False

    @property
    def is_error(self) -> bool:
        """Types 0-16383 are errors, 16384-65535 status (RFC 7296 §3.10.1)."""
        return self.notify_type < 16384

    @property
    def value(self) -> int | bytes | IpAddress | tuple[int, ...] | None:
        """The data, typed: an int for INVALID_KE_PAYLOAD (the D-H group), SET_WINDOW_SIZE,
        INVALID_MESSAGE_ID and UNSUPPORTED_CRITICAL_PAYLOAD (the payload type); an address for
        ADDITIONAL_IP4/IP6_ADDRESS; the 16-bit hash algorithm ids for SIGNATURE_HASH_ALGORITHMS
        (RFC 7427 §4); bytes for NAT_DETECTION_*, COOKIE, COOKIE2 and unknown types; None for
        the notifies that carry no data (MOBIKE_SUPPORTED, CLONE_IKE_SA, …)."""
        kind = self.notify_type
        if kind in (
            NotifyType.INVALID_KE_PAYLOAD,
            NotifyType.SET_WINDOW_SIZE,
            NotifyType.INVALID_MESSAGE_ID,
            NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
        ):
            return int.from_bytes(self.data, "big")
        if kind == NotifyType.ADDITIONAL_IP4_ADDRESS:
            return ipaddress.IPv4Address(self.data)
        if kind == NotifyType.ADDITIONAL_IP6_ADDRESS:
            return ipaddress.IPv6Address(self.data)
        if kind == NotifyType.SIGNATURE_HASH_ALGORITHMS:
            return tuple(v for (v,) in struct.iter_unpack("!H", self.data))
        if kind in _DATALESS_NOTIFIES:
            return None
        return self.data

    # Constructors for the notifies the engine sends (RFC 7296 §3.10.1, RFC 4555, RFC 7791).
    @classmethod
    def status(cls, notify_type: int, data: bytes = b"") -> Notify:
        """A notify about the IKE SA (protocol 0, no SPI)."""
        return cls(0, b"", notify_type, data)

    @classmethod
    def invalid_ke_payload(cls, group: int) -> Notify:
        return cls(0, b"", NotifyType.INVALID_KE_PAYLOAD, group.to_bytes(2, "big"))

    @classmethod
    def set_window_size(cls, size: int) -> Notify:
        return cls(0, b"", NotifyType.SET_WINDOW_SIZE, size.to_bytes(4, "big"))

    @classmethod
    def additional_address(cls, address: IpAddress) -> Notify:
        kind = (
            NotifyType.ADDITIONAL_IP4_ADDRESS
            if address.version == 4
            else NotifyType.ADDITIONAL_IP6_ADDRESS
        )
        return cls(0, b"", kind, address.packed)

    @classmethod
    def signature_hash_algorithms(cls, algorithms: tuple[int, ...]) -> Notify:
        data = b"".join(a.to_bytes(2, "big") for a in algorithms)
        return cls(0, b"", NotifyType.SIGNATURE_HASH_ALGORITHMS, data)

    @classmethod
    def rekey_sa(cls, protocol_id: int, spi: bytes) -> Notify:
        """REKEY_SA names the Child SA being rekeyed: protocol AH/ESP, its 4-byte SPI."""
        return cls(protocol_id, spi, NotifyType.REKEY_SA)


_DATALESS_NOTIFIES = frozenset(
    {
        NotifyType.INITIAL_CONTACT,
        NotifyType.MOBIKE_SUPPORTED,
        NotifyType.NO_ADDITIONAL_ADDRESSES,
        NotifyType.UPDATE_SA_ADDRESSES,
        NotifyType.IKEV2_FRAGMENTATION_SUPPORTED,
        NotifyType.CLONE_IKE_SA_SUPPORTED,
        NotifyType.CLONE_IKE_SA,
        NotifyType.REKEY_SA,
        NotifyType.USE_TRANSPORT_MODE,
        NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED,
        NotifyType.NON_FIRST_FRAGMENTS_ALSO,
        NotifyType.NO_PROPOSAL_CHOSEN,
        NotifyType.AUTHENTICATION_FAILED,
        NotifyType.TEMPORARY_FAILURE,
        NotifyType.NO_ADDITIONAL_SAS,
        NotifyType.INVALID_SYNTAX,
        NotifyType.TS_UNACCEPTABLE,
    }
)


# --- Delete, Vendor ID ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete payload (RFC 7296 §3.11): IKE = protocol 1, ``spi_size`` 0, no SPIs; ESP/AH =
    protocol 3/2, ``spi_size`` 4, the sender's inbound SPIs."""

    type: int = field(default=PayloadType.DELETE.value, init=False, repr=False)
    protocol_id: int
    spi_size: int
    spis: tuple[bytes, ...] = ()
    critical: bool = False


@dataclass(frozen=True, slots=True)
class VendorId:
    type: int = field(default=PayloadType.VENDOR_ID.value, init=False, repr=False)
    data: bytes
    critical: bool = False


# --- Traffic selectors (RFC 7296 §3.13) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrafficSelector:
    """One selector: ``ts_type`` 7 (IPv4 range, 4-byte addresses) or 8 (IPv6, 16 bytes).
    Ports are not required to be ordered (start 65535 / end 0 means OPAQUE, §3.13.1)."""

    ts_type: int
    ip_protocol: int
    start_port: int
    end_port: int
    start_address: bytes
    end_address: bytes

    @property
    def start(self) -> IpAddress:
        return ipaddress.ip_address(self.start_address)

    @property
    def end(self) -> IpAddress:
        return ipaddress.ip_address(self.end_address)

    @classmethod
    def from_range(
        cls,
        start: IpAddress,
        end: IpAddress,
        ip_protocol: int = 0,
        start_port: int = 0,
        end_port: int = 65535,
    ) -> TrafficSelector:
        if start.version != end.version:
            raise ValueError("traffic selector range mixes IPv4 and IPv6")
        ts_type = TsType.IPV4_ADDR_RANGE if start.version == 4 else TsType.IPV6_ADDR_RANGE
        return cls(ts_type, ip_protocol, start_port, end_port, start.packed, end.packed)


@dataclass(frozen=True, slots=True)
class TrafficSelectors:
    type: int = field(init=False, repr=False)  # set by the subclass
    selectors: tuple[TrafficSelector, ...]
    critical: bool = False


@dataclass(frozen=True, slots=True)
class TSi(TrafficSelectors):
    type: int = field(default=PayloadType.TSI.value, init=False, repr=False)


@dataclass(frozen=True, slots=True)
class TSr(TrafficSelectors):
    type: int = field(default=PayloadType.TSR.value, init=False, repr=False)


# --- Encrypted payloads ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Encrypted:
    """SK payload (RFC 7296 §3.14): ``first_payload`` is the type of the first inner payload
    (the SK payload's Next Payload field); ``data`` is IV ‖ ciphertext ‖ ICV, opened by the
    AEAD core. Always the last payload of a message."""

    type: int = field(default=PayloadType.SK.value, init=False, repr=False)
    first_payload: int
    data: bytes
    critical: bool = False


@dataclass(frozen=True, slots=True)
class EncryptedFragment:
    """SKF payload (RFC 7383 §2.5); ``first_payload`` is 0 in every fragment but the first."""

    type: int = field(default=PayloadType.SKF.value, init=False, repr=False)
    first_payload: int
    fragment_number: int
    total_fragments: int
    data: bytes
    critical: bool = False


# --- CP, EAP, unknown -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigAttribute:
    """RFC 7296 §3.15.1 (the R bit is ignored on receipt and sent as 0)."""

    type: int
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class Configuration:
    """CP payload (RFC 7296 §3.15)."""

    type: int = field(default=PayloadType.CP.value, init=False, repr=False)
    cfg_type: int
    attributes: tuple[ConfigAttribute, ...] = ()
    critical: bool = False


@dataclass(frozen=True, slots=True)
class Eap:
    """EAP payload (RFC 7296 §3.16): the EAP message is Code, Identifier, Length (computed) and
    ``data`` (Type and Type-Data for Request/Response, empty for Success/Failure)."""

    type: int = field(default=PayloadType.EAP.value, init=False, repr=False)
    code: int
    identifier: int
    data: bytes = b""
    critical: bool = False

    @property
    def eap_type(self) -> int | None:
        return self.data[0] if self.data else None


@dataclass(frozen=True, slots=True)
class UnknownPayload:
    """A payload type ikecore does not know, received without the C bit: kept, not used."""

    type: int
    data: bytes
    critical: bool = False


Payload = (
    SecurityAssociation
    | KeyExchange
    | IDi
    | IDr
    | Certificate
    | CertificateRequest
    | Authentication
    | Nonce
    | Notify
    | Delete
    | VendorId
    | TSi
    | TSr
    | Encrypted
    | EncryptedFragment
    | Configuration
    | Eap
    | UnknownPayload
)

def _fixed_type(cls: type) -> int:
    (type_field,) = (f for f in dataclasses.fields(cls) if f.name == "type")
    assert isinstance(type_field.default, int)
    return type_field.default


# The payload type each class stands for (the classes that fix it).
PAYLOAD_TYPE_OF: dict[type, int] = {
    cls: _fixed_type(cls)
    for cls in (
        SecurityAssociation, KeyExchange, IDi, IDr, Certificate, CertificateRequest,
        Authentication, Nonce, Notify, Delete, VendorId, TSi, TSr, Encrypted, EncryptedFragment,
        Configuration, Eap,
    )
}

# Registered with the native core by ikecore.message (with the message classes).
PAYLOAD_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        Attribute, Transform, Proposal, SecurityAssociation, KeyExchange, IDi, IDr, Certificate,
        CertificateRequest, Authentication, Nonce, Notify, Delete, VendorId, TrafficSelector,
        TSi, TSr, Encrypted, EncryptedFragment, ConfigAttribute, Configuration, Eap,
        UnknownPayload,
    )
}
