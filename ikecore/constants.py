"""IANA numbers for IKEv2 ("Internet Key Exchange Version 2 (IKEv2) Parameters" registry).

Each enum names the RFC that defines its values. Only what ikecore speaks, or must recognise on
the wire, is listed; unknown values from a peer stay plain ints.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

__all__ = [
    "IKE_HEADER_LENGTH",
    "IKE_VERSION",
    "KEY_PAD_FOR_IKEV2",
    "AuthMethod",
    "ConfigAttributeType",
    "ConfigType",
    "DhGroup",
    "EncrId",
    "EsnId",
    "ExchangeType",
    "HeaderFlag",
    "IdType",
    "IntegId",
    "NotifyType",
    "PayloadType",
    "PrfId",
    "ProtocolId",
    "TransformAttribute",
    "TransformType",
    "TsType",
]

IKE_HEADER_LENGTH = 28  # RFC 7296 §3.1
IKE_VERSION = 0x20  # major 2, minor 0 (RFC 7296 §3.1)
KEY_PAD_FOR_IKEV2 = b"Key Pad for IKEv2"  # RFC 7296 §2.15, 17 octets, no NUL


class ExchangeType(IntEnum):
    """RFC 7296 §3.1; 38 RFC 5723; 43 RFC 9242."""

    IKE_SA_INIT = 34
    IKE_AUTH = 35
    CREATE_CHILD_SA = 36
    INFORMATIONAL = 37
    IKE_SESSION_RESUME = 38
    IKE_INTERMEDIATE = 43


class HeaderFlag(IntFlag):
    """IKE header flags, RFC 7296 §3.1."""

    INITIATOR = 0x08
    VERSION = 0x10
    RESPONSE = 0x20


class PayloadType(IntEnum):
    """RFC 7296 §3.2; 53 (SKF) RFC 7383."""

    NONE = 0
    SA = 33
    KE = 34
    IDI = 35
    IDR = 36
    CERT = 37
    CERTREQ = 38
    AUTH = 39
    NONCE = 40
    NOTIFY = 41
    DELETE = 42
    VENDOR_ID = 43
    TSI = 44
    TSR = 45
    SK = 46
    CP = 47
    EAP = 48
    GSPM = 49
    SKF = 53


class NotifyType(IntEnum):
    """RFC 7296 §3.10.1 unless noted; 0-16383 are errors, 16384-65535 status types."""

    # Error types
    UNSUPPORTED_CRITICAL_PAYLOAD = 1
    INVALID_IKE_SPI = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_SYNTAX = 7
    INVALID_MESSAGE_ID = 9
    INVALID_SPI = 11
    NO_PROPOSAL_CHOSEN = 14
    INVALID_KE_PAYLOAD = 17
    AUTHENTICATION_FAILED = 24
    SINGLE_PAIR_REQUIRED = 34
    NO_ADDITIONAL_SAS = 35
    INTERNAL_ADDRESS_FAILURE = 36
    FAILED_CP_REQUIRED = 37
    TS_UNACCEPTABLE = 38
    INVALID_SELECTORS = 39
    UNACCEPTABLE_ADDRESSES = 40  # RFC 4555
    UNEXPECTED_NAT_DETECTED = 41  # RFC 4555
    TEMPORARY_FAILURE = 43  # RFC 7296 §2.25
    CHILD_SA_NOT_FOUND = 44  # RFC 7296 §2.25
    # Status types
    INITIAL_CONTACT = 16384
    SET_WINDOW_SIZE = 16385
    ADDITIONAL_TS_POSSIBLE = 16386
    IPCOMP_SUPPORTED = 16387
    NAT_DETECTION_SOURCE_IP = 16388
    NAT_DETECTION_DESTINATION_IP = 16389
    COOKIE = 16390
    USE_TRANSPORT_MODE = 16391
    HTTP_CERT_LOOKUP_SUPPORTED = 16392
    REKEY_SA = 16393
    ESP_TFC_PADDING_NOT_SUPPORTED = 16394
    NON_FIRST_FRAGMENTS_ALSO = 16395
    MOBIKE_SUPPORTED = 16396  # RFC 4555
    ADDITIONAL_IP4_ADDRESS = 16397  # RFC 4555
    ADDITIONAL_IP6_ADDRESS = 16398  # RFC 4555
    NO_ADDITIONAL_ADDRESSES = 16399  # RFC 4555
    UPDATE_SA_ADDRESSES = 16400  # RFC 4555
    COOKIE2 = 16401  # RFC 4555
    NO_NATS_ALLOWED = 16402  # RFC 4555
    REDIRECT_SUPPORTED = 16406  # RFC 5685
    REDIRECT = 16407  # RFC 5685
    REDIRECTED_FROM = 16408  # RFC 5685
    IKEV2_FRAGMENTATION_SUPPORTED = 16430  # RFC 7383
    SIGNATURE_HASH_ALGORITHMS = 16431  # RFC 7427
    CLONE_IKE_SA_SUPPORTED = 16432  # RFC 7791 §6
    CLONE_IKE_SA = 16433  # RFC 7791 §6

    @property
    def is_error(self) -> bool:
        return self.value < 16384


class TransformType(IntEnum):
    """RFC 7296 §3.3.2."""

    ENCR = 1
    PRF = 2
    INTEG = 3
    DH = 4
    ESN = 5


class EncrId(IntEnum):
    """Transform Type 1. RFC 7296 §3.3.2; GCM RFC 4106/5282; ChaCha20-Poly1305 RFC 7634."""

    DES3 = 3
    NULL = 11
    AES_CBC = 12
    AES_CTR = 13
    AES_CCM_8 = 14
    AES_CCM_12 = 15
    AES_CCM_16 = 16
    AES_GCM_8 = 18
    AES_GCM_12 = 19
    AES_GCM_16 = 20
    NULL_AUTH_AES_GMAC = 21
    CHACHA20_POLY1305 = 28


class PrfId(IntEnum):
    """Transform Type 2. RFC 7296; 4 RFC 4434; 5-7 RFC 4868; 8 RFC 4615."""

    HMAC_MD5 = 1
    HMAC_SHA1 = 2
    HMAC_TIGER = 3
    AES128_XCBC = 4
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7
    AES128_CMAC = 8


class IntegId(IntEnum):
    """Transform Type 3. RFC 7296; 5 RFC 3566; 8 RFC 4494; 12-14 RFC 4868."""

    NONE = 0
    HMAC_MD5_96 = 1
    HMAC_SHA1_96 = 2
    AES_XCBC_96 = 5
    AES_CMAC_96 = 8
    HMAC_SHA2_256_128 = 12
    HMAC_SHA2_384_192 = 13
    HMAC_SHA2_512_256 = 14


class DhGroup(IntEnum):
    """Transform Type 4. 14-16 RFC 3526; 19-21 RFC 5903; 31-32 RFC 8031."""

    NONE = 0
    MODP_2048 = 14
    MODP_3072 = 15
    MODP_4096 = 16
    ECP_256 = 19
    ECP_384 = 20
    ECP_521 = 21
    CURVE25519 = 31
    CURVE448 = 32


class EsnId(IntEnum):
    """Transform Type 5 (Extended Sequence Numbers), RFC 7296 §3.3.2."""

    NO_ESN = 0
    ESN = 1


class TransformAttribute(IntEnum):
    """RFC 7296 §3.3.5."""

    KEY_LENGTH = 14


class ProtocolId(IntEnum):
    """Security Protocol Identifier, RFC 7296 §3.3.1 (0 in notifies about no SA)."""

    NONE = 0
    IKE = 1
    AH = 2
    ESP = 3


class IdType(IntEnum):
    """RFC 7296 §3.5."""

    IPV4_ADDR = 1
    FQDN = 2
    RFC822_ADDR = 3
    IPV6_ADDR = 5
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11


class AuthMethod(IntEnum):
    """RFC 7296 §3.8; 14 RFC 7427."""

    RSA_SIGNATURE = 1
    SHARED_KEY_MIC = 2
    DSS_SIGNATURE = 3
    ECDSA_SHA256_P256 = 9
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    DIGITAL_SIGNATURE = 14


class TsType(IntEnum):
    """Traffic selector types, RFC 7296 §3.13.1."""

    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8


class ConfigType(IntEnum):
    """CFG types, RFC 7296 §3.15."""

    CFG_REQUEST = 1
    CFG_REPLY = 2
    CFG_SET = 3
    CFG_ACK = 4


class ConfigAttributeType(IntEnum):
    """Configuration attributes, RFC 7296 §3.15.1."""

    INTERNAL_IP4_ADDRESS = 1
    INTERNAL_IP4_NETMASK = 2
    INTERNAL_IP4_DNS = 3
    INTERNAL_IP4_NBNS = 4
    INTERNAL_IP4_DHCP = 6
    APPLICATION_VERSION = 7
    INTERNAL_IP6_ADDRESS = 8
    INTERNAL_IP6_DNS = 10
    INTERNAL_IP6_DHCP = 12
    INTERNAL_IP4_SUBNET = 13
    SUPPORTED_ATTRIBUTES = 14
    INTERNAL_IP6_SUBNET = 15
