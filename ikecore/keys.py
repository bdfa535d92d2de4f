"""IKEv2 key derivation: prf, prf+, SKEYSEED, SK_*, rekey/clone, Child SA KEYMAT, PSK AUTH.

RFC 7296 §2.13-2.18 (and RFC 7791, whose clone uses the rekey formulas unchanged). The PRFs and
each whole key schedule run in one call into ``ikecore._fast.prf``: the keyed PRF state is made
once and reused for every prf+ block, and intermediate secrets (SKEYSEED, KEYMAT) stay in native
buffers that are wiped. The results hold the keys as ``bytes``; their repr never shows them.

Byte arguments accept bytes, bytearray or memoryview; bad arguments raise TypeError/ValueError
naming the problem (an unknown PRF id, more than 255 prf+ blocks, SPIs that are not 8 bytes).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ikecore._fast import prf as _prf
from ikecore._fast.prf import ChildKeys, IkeKeys
from ikecore.constants import EncrId, IntegId, PrfId

__all__ = [
    "SUPPORTED_PRFS",
    "ChildKeys",
    "IkeKeys",
    "IkeSuite",
    "child_keys",
    "ike_keys",
    "ike_keys_initial",
    "ike_keys_rekey",
    "prf",
    "prf_plus",
    "psk_auth",
    "shared_suite",
    "skeyseed",
    "skeyseed_rekey",
]

Bytes = bytes | bytearray | memoryview

# The PRFs implemented here (for callers that validate proposals).
SUPPORTED_PRFS = frozenset(
    {
        PrfId.HMAC_SHA1,
        PrfId.AES128_XCBC,
        PrfId.HMAC_SHA2_256,
        PrfId.HMAC_SHA2_384,
        PrfId.HMAC_SHA2_512,
        PrfId.AES128_CMAC,
    }
)

# Encryption key material per ENCR transform, in bytes, as a function of the Key Length attribute.
# AEAD keys carry their salt at the end: RFC 4106 §8.1, RFC 5282 §7.1 (GCM); RFC 7634 §2 (ChaCha20).
_AES_KEY_BITS = frozenset({128, 192, 256})
_GCM = frozenset({EncrId.AES_GCM_8, EncrId.AES_GCM_12, EncrId.AES_GCM_16})
_SALT_LEN = 4

# (ENCR id, Key Length attribute) -> (SK_e length, AEAD?)
_ENCR_KEY_LEN: dict[tuple[int, int | None], tuple[int, bool]] = {
    **{(encr, bits): (bits // 8 + _SALT_LEN, True) for encr in _GCM for bits in _AES_KEY_BITS},
    **{(EncrId.CHACHA20_POLY1305, bits): (32 + _SALT_LEN, True) for bits in (None, 256)},
    **{(EncrId.AES_CBC, bits): (bits // 8, False) for bits in _AES_KEY_BITS},
}
_INTEG_NONE = int(IntegId.NONE)

# Integrity key length per INTEG transform (RFC 7296 §3.3.2, RFC 3566, RFC 4494, RFC 4868 §2.1.1).
_INTEG_KEY_LEN: dict[int, int] = {
    IntegId.HMAC_SHA1_96: 20,
    IntegId.AES_XCBC_96: 16,
    IntegId.AES_CMAC_96: 16,
    IntegId.HMAC_SHA2_256_128: 32,
    IntegId.HMAC_SHA2_384_192: 48,
    IntegId.HMAC_SHA2_512_256: 64,
}


@dataclass(frozen=True, slots=True)
class IkeSuite:
    """The transforms of an IKE SA that decide its key lengths.

    ``encr``: EncrId (AES_GCM_8/12/16, CHACHA20_POLY1305, AES_CBC); ``key_bits``: its Key Length
    attribute (128/192/256 for AES; None or 256 for ChaCha20-Poly1305, which has none);
    ``prf``: PrfId; ``integ``: IntegId, None (or NONE) for AEAD ciphers; ``dh``: DhGroup.
    """

    encr: int
    key_bits: int | None
    prf: int
    integ: int | None = None
    dh: int | None = None
    encr_key_len: int = field(init=False, repr=False, compare=False)
    integ_key_len: int = field(init=False, repr=False, compare=False)
    prf_key_len: int = field(init=False, repr=False, compare=False)
    # the PRF and key lengths, checked once: what the native key schedules read, in one attribute
    _key_schedule: _prf._KeySchedule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # the engine makes a suite for every key derivation: one table look-up when all is well
        encr, bits, integ = self.encr, self.key_bits, self.integ
        if not (
            isinstance(encr, int)
            and isinstance(self.prf, int)
            and (bits is None or isinstance(bits, int))
            and (integ is None or isinstance(integ, int))
            and (self.dh is None or isinstance(self.dh, int))
        ):
            raise self._type_error()
        try:
            encr_key_len, aead = _ENCR_KEY_LEN[encr, bits]
        except KeyError:
            raise _encr_error(encr, bits) from None
        if aead:
            # RFC 5282 §8: an AEAD cipher has no separate integrity transform (SK_ai/SK_ar empty)
            if integ is not None and integ != _INTEG_NONE:
                raise ValueError(
                    f"AEAD cipher {encr!r} takes no integrity transform, got {integ!r}"
                )
            integ_key_len = 0
        elif integ is not None and integ in _INTEG_KEY_LEN:
            integ_key_len = _INTEG_KEY_LEN[integ]
        else:
            raise ValueError(
                f"cipher {encr!r} needs a supported integrity transform, got {integ!r}"
            )
        object.__setattr__(self, "encr_key_len", encr_key_len)
        object.__setattr__(self, "integ_key_len", integ_key_len)
        object.__setattr__(self, "prf_key_len", _prf.output_length(self.prf))
        object.__setattr__(
            self, "_key_schedule", _prf._KeySchedule(self.prf, integ_key_len, encr_key_len)
        )

    def _type_error(self) -> TypeError:
        for name in ("encr", "key_bits", "prf", "integ", "dh"):
            value = getattr(self, name)
            optional = name not in ("encr", "prf")
            if not isinstance(value, int) and not (optional and value is None):
                wanted = "an int or None" if optional else "an int"
                return TypeError(f"IkeSuite.{name} must be {wanted}, not {type(value).__name__}")
        raise AssertionError("called for a suite with a field of a wrong type")


# the native key schedules read _key_schedule straight from an IkeSuite's slot
_prf._register_suite_type(IkeSuite)


def _encr_error(encr: int, bits: int | None) -> ValueError:
    if encr in _GCM:
        return ValueError(f"AES-GCM needs key_bits 128, 192 or 256, got {bits!r}")
    if encr == EncrId.CHACHA20_POLY1305:
        return ValueError(f"ChaCha20-Poly1305 has a 256-bit key, got key_bits {bits!r}")
    if encr == EncrId.AES_CBC:
        return ValueError(f"AES-CBC needs key_bits 128, 192 or 256, got {bits!r}")
    return ValueError(f"unsupported encryption transform {encr!r}")


@functools.lru_cache(maxsize=64)
def shared_suite(
    encr: int, key_bits: int | None, prf: int, integ: int | None = None, dh: int | None = None
) -> IkeSuite:
    """``IkeSuite(encr, key_bits, prf, integ, dh)``, made once per distinct suite and shared (an
    IkeSuite is immutable): the engine derives the keys of every SA with one of a few suites,
    and checking a suite costs more than its key schedule."""
    return IkeSuite(encr, key_bits, prf, integ, dh)


def prf(prf_id: int, key: Bytes, data: Bytes) -> bytes:
    """prf(K, S) (RFC 7296 §2.13); XCBC/CMAC keys follow RFC 4434 / RFC 4615."""
    return _prf.prf(prf_id, key, data)


def prf_plus(prf_id: int, key: Bytes, seed: Bytes, length: int) -> bytes:
    """``length`` bytes of prf+(K, S); ValueError past 255 blocks (RFC 7296 §2.13)."""
    # prf+ (K,S) = T1 | T2 | T3 | T4 | ...
    # T1 = prf (K, S | 0x01);  Tn = prf (K, T(n-1) | S | n)
    return _prf.prf_plus(prf_id, key, seed, length)


def skeyseed(prf_id: int, ni: Bytes, nr: Bytes, g_ir: Bytes) -> bytes:
    """SKEYSEED of an initial IKE SA (RFC 7296 §2.14)."""
    # SKEYSEED = prf(Ni | Nr, g^ir)
    # PRF_AES128_XCBC / PRF_AES128_CMAC: SKEYSEED = prf(Ni[0:8] | Nr[0:8], g^ir)
    return _prf.skeyseed(prf_id, ni, nr, g_ir)


def skeyseed_rekey(old_prf_id: int, sk_d_old: Bytes, g_ir: Bytes, ni: Bytes, nr: Bytes) -> bytes:
    """SKEYSEED of a rekeyed IKE SA or an RFC 7791 clone, with the old SA's PRF (§2.18)."""
    # SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
    return _prf.skeyseed_rekey(old_prf_id, sk_d_old, g_ir, ni, nr)


# The key schedules are the native functions themselves: a Python wrapper would add a frame to
# calls that take about two microseconds. Their docstrings are in _fast/prf.pyx.

# {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
#                   = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)                    (§2.14)
ike_keys = _prf.ike_keys

# SKEYSEED = prf(Ni | Nr, g^ir)   (Ni[0:8] | Nr[0:8] for XCBC/CMAC)             (§2.14)
# {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
#                   = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)
# Same result as ike_keys(suite, skeyseed(suite.prf, ni, nr, g_ir), ni, nr, spi_i, spi_r);
# SKEYSEED itself never becomes a Python object.
ike_keys_initial = _prf.ike_keys_initial

# SKEYSEED = prf_old(SK_d (old), g^ir (new) | Ni | Nr)                          (§2.18)
# {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
#                   = prf+_new(SKEYSEED, Ni | Nr | SPIi | SPIr)
# old_prf_id/sk_d_old belong to the SA being rekeyed or cloned (RFC 7791), suite to the new SA;
# spi_i/spi_r are the new SA's SPIs (the Proposal SPI fields of the exchange).
ike_keys_rekey = _prf.ike_keys_rekey

# KEYMAT = prf+(SK_d, Ni | Nr)                 without PFS                      (§2.17)
# KEYMAT = prf+(SK_d, g^ir (new) | Ni | Nr)    with PFS
# KEYMAT = encr_i | integ_i | encr_r | integ_r (initiator-to-responder SA first)
child_keys = _prf.child_keys


def psk_auth(prf_id: int, psk: Bytes, signed_octets: Bytes) -> bytes:
    """AUTH data of the shared-key method (Auth Method 2, RFC 7296 §2.15)."""
    # AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <InitiatorSignedOctets>)
    return _prf.psk_auth(prf_id, psk, signed_octets)
