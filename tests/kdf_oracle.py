"""An independent reference for the IKEv2 PRFs and key schedules, written from the RFCs.

Used only as a differential oracle in tests: HMAC from the standard library (``hmac``), AES-CMAC
from pyca/cryptography, AES-XCBC (RFC 3566 §4) written here on pyca/cryptography's AES-ECB. It
shares no code with ikecore.
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from ikecore import PrfId

HASH_NAMES = {
    PrfId.HMAC_SHA1: "sha1",
    PrfId.HMAC_SHA2_256: "sha256",
    PrfId.HMAC_SHA2_384: "sha384",
    PrfId.HMAC_SHA2_512: "sha512",
}
OUTPUT_LENGTH = {
    PrfId.HMAC_SHA1: 20,
    PrfId.AES128_XCBC: 16,
    PrfId.HMAC_SHA2_256: 32,
    PrfId.HMAC_SHA2_384: 48,
    PrfId.HMAC_SHA2_512: 64,
    PrfId.AES128_CMAC: 16,
}
ALL_PRFS = tuple(OUTPUT_LENGTH)


def _aes_ecb(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def aes_cmac(key: bytes, message: bytes) -> bytes:
    mac = CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


def aes_xcbc_mac(key: bytes, message: bytes) -> bytes:
    """RFC 3566 §4, on a 16-byte key."""
    k1 = _aes_ecb(key, b"\x01" * 16)
    k2 = _aes_ecb(key, b"\x02" * 16)
    k3 = _aes_ecb(key, b"\x03" * 16)
    blocks = [message[i : i + 16] for i in range(0, len(message), 16)] or [b""]
    e = bytes(16)
    for block in blocks[:-1]:
        e = _aes_ecb(k1, bytes(a ^ b for a, b in zip(block, e, strict=True)))
    last = blocks[-1]
    if len(last) == 16:
        last = bytes(a ^ b for a, b in zip(last, k2, strict=True))
    else:
        padded = last + b"\x80" + bytes(15 - len(last))
        last = bytes(a ^ b for a, b in zip(padded, k3, strict=True))
    return _aes_ecb(k1, bytes(a ^ b for a, b in zip(last, e, strict=True)))


def prf(prf_id: int, key: bytes, data: bytes) -> bytes:
    if prf_id in HASH_NAMES:
        return hmac.new(key, data, HASH_NAMES[PrfId(prf_id)]).digest()
    if prf_id == PrfId.AES128_XCBC:
        # RFC 4434 §2: pad a short key with zeros, shorten a long one with XCBC under 0^128
        if len(key) < 16:
            key = key + bytes(16 - len(key))
        elif len(key) > 16:
            key = aes_xcbc_mac(bytes(16), key)
        return aes_xcbc_mac(key, data)
    if prf_id == PrfId.AES128_CMAC:
        # RFC 4615 §3: any key that is not 16 bytes becomes AES-CMAC(0^128, key)
        if len(key) != 16:
            key = aes_cmac(bytes(16), key)
        return aes_cmac(key, data)
    raise ValueError(prf_id)


def prf_plus(prf_id: int, key: bytes, seed: bytes, length: int) -> bytes:
    out = b""
    t = b""
    n = 1
    while len(out) < length:
        t = prf(prf_id, key, t + seed + bytes([n]))
        out += t
        n += 1
    return out[:length]


def skeyseed(prf_id: int, ni: bytes, nr: bytes, g_ir: bytes) -> bytes:
    if prf_id in (PrfId.AES128_XCBC, PrfId.AES128_CMAC):
        return prf(prf_id, ni[:8] + nr[:8], g_ir)
    return prf(prf_id, ni + nr, g_ir)


def split(keymat: bytes, lengths: list[int]) -> list[bytes]:
    parts, offset = [], 0
    for length in lengths:
        parts.append(keymat[offset : offset + length])
        offset += length
    assert offset == len(keymat)
    return parts


def ike_keys(
    prf_id: int,
    seed_key: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    integ_len: int,
    encr_len: int,
) -> list[bytes]:
    p = OUTPUT_LENGTH[PrfId(prf_id)]
    lengths = [p, integ_len, integ_len, encr_len, encr_len, p, p]
    return split(prf_plus(prf_id, seed_key, ni + nr + spi_i + spi_r, sum(lengths)), lengths)
