"""Key exchange groups for IKEv2 (Transform Type 4) through `cryptography`.

Groups 14 (2048-bit MODP, RFC 3526 §3), 19/20/21 (random ECP, RFC 5903) and 31 (Curve25519,
RFC 8031). Received public values are checked as RFC 6989 requires before any use; a value that
fails raises ``RemoteProtocolError`` carrying INVALID_SYNTAX, and the exchange decides what that
means (drop in IKE_SA_INIT, answer INVALID_SYNTAX in a CREATE_CHILD_SA request: RFC 6989 §2.5).

Encodings (RFC 7296 §3.4, RFC 5903 §7, RFC 8031 §2):
- MODP: KE data and g^ir are big-endian, left-padded with zeros to the modulus length.
- ECP: KE data is x | y (fixed length each); g^ir is the x-coordinate only.
- Curve25519: 32-byte little-endian u-coordinates; g^ir is the X25519 output.

``private`` lets tests and the vector replays inject a fixed private key; production code never
passes it.
"""

from __future__ import annotations

from typing import Final, Protocol

from cryptography.hazmat.primitives.asymmetric import dh, ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ikecore.constants import DhGroup, NotifyType
from ikecore.errors import RemoteProtocolError

__all__ = ["SUPPORTED_GROUPS", "KeyExchange", "ke_data_length", "key_exchange"]

# RFC 3526 §3: p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }, generator 2.
_MODP_2048_PRIME: Final = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
_MODP_2048_BYTES: Final = 256

_ECP_CURVES: Final[dict[int, tuple[ec.EllipticCurve, int]]] = {
    DhGroup.ECP_256: (ec.SECP256R1(), 32),
    DhGroup.ECP_384: (ec.SECP384R1(), 48),
    DhGroup.ECP_521: (ec.SECP521R1(), 66),
}

_ECDH: Final = ec.ECDH()

SUPPORTED_GROUPS: Final = frozenset(
    {DhGroup.MODP_2048, DhGroup.ECP_256, DhGroup.ECP_384, DhGroup.ECP_521, DhGroup.CURVE25519}
)

_modp_parameters: dh.DHParameters | None = None


def _modp_2048() -> dh.DHParameters:
    global _modp_parameters
    if _modp_parameters is None:
        _modp_parameters = dh.DHParameterNumbers(_MODP_2048_PRIME, 2).parameters()
    return _modp_parameters


def _invalid(group: int, why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"bad KE value for group {group}: {why}", NotifyType.INVALID_SYNTAX)


def ke_data_length(group: int) -> int:
    """Length of the KE payload's data for ``group`` (RFC 7296 §3.4)."""
    if group == DhGroup.MODP_2048:
        return _MODP_2048_BYTES
    if group in _ECP_CURVES:
        return 2 * _ECP_CURVES[group][1]
    if group == DhGroup.CURVE25519:
        return 32
    raise ValueError(f"unsupported key exchange group {group}")


class KeyExchange(Protocol):
    """One side of one key exchange: our public value, then g^ir from the peer's."""

    @property
    def group(self) -> int: ...

    @property
    def public_data(self) -> bytes: ...

    def shared_secret(self, peer_data: bytes) -> bytes:
        """g^ir for the peer's KE data; RemoteProtocolError(INVALID_SYNTAX) if it fails RFC 6989."""
        ...


class _ModpExchange:
    __slots__ = ("_key", "public_data")

    group = DhGroup.MODP_2048

    def __init__(self, private: bytes | None) -> None:
        parameters = _modp_2048()
        if private is None:
            self._key = parameters.generate_private_key()
        else:
            x = int.from_bytes(private, "big")
            if not 1 < x < _MODP_2048_PRIME - 1:
                raise ValueError("group 14 private value must lie in (1, p-1)")
            y = pow(2, x, _MODP_2048_PRIME)
            numbers = dh.DHPrivateNumbers(x, dh.DHPublicNumbers(y, parameters.parameter_numbers()))
            self._key = numbers.private_key()
        y = self._key.public_key().public_numbers().y
        self.public_data = y.to_bytes(_MODP_2048_BYTES, "big")

    def shared_secret(self, peer_data: bytes) -> bytes:
        if len(peer_data) != _MODP_2048_BYTES:
            raise _invalid(self.group, f"length {len(peer_data)}, expected {_MODP_2048_BYTES}")
        y = int.from_bytes(peer_data, "big")
        # RFC 6989 §2.1: for a safe-prime group, 1 < y < p-1 is the whole membership test.
        if not 1 < y < _MODP_2048_PRIME - 1:
            raise _invalid(self.group, "public value outside (1, p-1)")
        peer = dh.DHPublicNumbers(y, _modp_2048().parameter_numbers()).public_key()
        try:
            secret = self._key.exchange(peer)
        except ValueError:
            raise _invalid(self.group, "key agreement failed") from None
        # RFC 7296 §2.14: g^ir is zero-padded to the modulus length.
        return secret.rjust(_MODP_2048_BYTES, b"\x00")


class _EcpExchange:
    __slots__ = ("_coordinate", "_curve", "_key", "group", "public_data")

    def __init__(self, group: int, private: bytes | None) -> None:
        self.group = group
        self._curve, self._coordinate = _ECP_CURVES[group]
        if private is None:
            self._key = ec.generate_private_key(self._curve)
        else:
            self._key = ec.derive_private_key(int.from_bytes(private, "big"), self._curve)
        # RFC 5903 §7: KE data = x | y, each left-padded to the coordinate length: the
        # uncompressed X9.62 point (SEC 1 §2.3.3) without its 0x04 prefix.
        point = self._key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        self.public_data = point[1:]

    def shared_secret(self, peer_data: bytes) -> bytes:
        if len(peer_data) != 2 * self._coordinate:
            raise _invalid(self.group, f"length {len(peer_data)}, expected {2 * self._coordinate}")
        try:
            # RFC 6989 §2.3: the point must be on the curve; from_encoded_point checks exactly
            # that (and refuses the point at infinity, which has no x | y encoding).
            peer = ec.EllipticCurvePublicKey.from_encoded_point(self._curve, b"\x04" + peer_data)
            # RFC 5903 §7: g^ir is the x-coordinate of the shared point.
            return self._key.exchange(_ECDH, peer)
        except ValueError:
            raise _invalid(self.group, "not a point of the curve") from None


class _X25519Exchange:
    __slots__ = ("_key", "public_data")

    group = DhGroup.CURVE25519

    def __init__(self, private: bytes | None) -> None:
        if private is None:
            self._key = x25519.X25519PrivateKey.generate()
        else:
            if len(private) != 32:
                raise ValueError("Curve25519 private value must be 32 bytes")
            self._key = x25519.X25519PrivateKey.from_private_bytes(private)
        self.public_data = self._key.public_key().public_bytes_raw()

    def shared_secret(self, peer_data: bytes) -> bytes:
        if len(peer_data) != 32:
            raise _invalid(self.group, f"length {len(peer_data)}, expected 32")
        # RFC 8031 §3.2: non-canonical u values are accepted (X25519 masks the top bit);
        # an all-zero result (a small-order point) is refused, as RFC 7748 §6.1 allows.
        try:
            return self._key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_data))
        except ValueError:
            raise _invalid(self.group, "small-order point") from None


def key_exchange(group: int, private: bytes | None = None) -> KeyExchange:
    """A fresh key pair for ``group`` (or the injected ``private`` value, big-endian for MODP
    and ECP, the raw 32 bytes for Curve25519). ValueError for an unsupported group."""
    if group == DhGroup.MODP_2048:
        return _ModpExchange(private)
    if group in _ECP_CURVES:
        return _EcpExchange(group, private)
    if group == DhGroup.CURVE25519:
        return _X25519Exchange(private)
    raise ValueError(f"unsupported key exchange group {group}")
