"""A tests-only reference for ESP (RFC 4303/4106/7634) and the IKE SK payload (RFC 5282) on
pyca/cryptography, written straight from the RFC text, for differential tests."""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305


def reference_seal(algorithm: str, keymat: bytes, iv: bytes, aad: bytes, plaintext: bytes,
                   icv_len: int) -> bytes:
    """ciphertext | ICV; a truncated GCM ICV is the leftmost bytes of the tag (RFC 4106 §3)."""
    nonce = keymat[-4:] + iv
    if algorithm == "aes-gcm":
        sealed = AESGCM(keymat[:-4]).encrypt(nonce, plaintext, aad)
    else:
        sealed = ChaCha20Poly1305(keymat[:-4]).encrypt(nonce, plaintext, aad)
    return sealed[: len(plaintext) + icv_len]


def reference_open(algorithm: str, keymat: bytes, iv: bytes, aad: bytes, data: bytes,
                   icv_len: int) -> bytes | None:
    """The plaintext, or None when the ICV does not verify. cryptography only checks full
    16-byte tags, so a truncated ICV is checked by re-encrypting (GCM is a stream cipher:
    the keystream XOR gives the plaintext, then the tag is recomputed)."""
    nonce = keymat[-4:] + iv
    ciphertext, icv = data[: len(data) - icv_len], data[len(data) - icv_len :]
    if icv_len == 16:
        cipher = AESGCM(keymat[:-4]) if algorithm == "aes-gcm" else ChaCha20Poly1305(keymat[:-4])
        try:
            return cipher.decrypt(nonce, data, aad)
        except InvalidTag:
            return None
    keystream_check = AESGCM(keymat[:-4]).encrypt(nonce, bytes(len(ciphertext)), b"")
    plaintext = bytes(a ^ b for a, b in zip(ciphertext, keystream_check, strict=False))
    expected = AESGCM(keymat[:-4]).encrypt(nonce, plaintext, aad)
    return plaintext if expected[len(plaintext) : len(plaintext) + icv_len] == icv else None


def esp_aad(spi: bytes, seq: int, esn: bool) -> bytes:
    # RFC 4106 §5: SPI | Seq (32) or SPI | Seq high | Seq low with ESN.
    if esn:
        return spi + struct.pack(">Q", seq)
    return spi + struct.pack(">I", seq & 0xFFFFFFFF)


def reference_esp_packet(algorithm: str, keymat: bytes, spi: bytes, seq: int, esn: bool,
                         iv: bytes, payload: bytes, next_header: int, icv_len: int) -> bytes:
    """RFC 4303 §2: padding 1, 2, 3, ... up to a 4-byte boundary after Pad Length | NH."""
    pad_len = -(len(payload) + 2) % 4
    plaintext = payload + bytes(range(1, pad_len + 1)) + bytes([pad_len, next_header])
    header = spi + struct.pack(">I", seq & 0xFFFFFFFF) + iv
    return header + reference_seal(algorithm, keymat, iv, esp_aad(spi, seq, esn), plaintext,
                                   icv_len)


def reference_esp_open(algorithm: str, keymat: bytes, packet: bytes, seq: int, esn: bool,
                       icv_len: int) -> tuple[int, bytes] | None:
    """(next_header, payload) given the full 64-bit sequence number; None if it fails."""
    plaintext = reference_open(algorithm, keymat, packet[8:16], esp_aad(packet[:4], seq, esn),
                               packet[16:], icv_len)
    if plaintext is None or len(plaintext) < 2:
        return None
    pad_len, next_header = plaintext[-2], plaintext[-1]
    if pad_len + 2 > len(plaintext):
        return None
    payload = plaintext[: len(plaintext) - 2 - pad_len]
    if plaintext[len(payload) : len(payload) + pad_len] != bytes(range(1, pad_len + 1)):
        return None
    return next_header, payload


def reference_sk_message(algorithm: str, keymat: bytes, prefix: bytes, next_payload: int,
                         inner: bytes, iv: bytes, icv_len: int, pad_length: int = 0,
                         fragment: tuple[int, int] | None = None) -> bytes:
    """RFC 5282 §5.1 / RFC 7383 §2.5: AAD = IKE header (+ prior payloads) + SK/SKF header."""
    plaintext = inner + bytes(pad_length) + bytes([pad_length])
    extra = b"" if fragment is None else struct.pack(">HH", *fragment)
    payload_len = 4 + len(extra) + 8 + len(plaintext) + icv_len
    total = len(prefix) + payload_len
    header = prefix[:24] + struct.pack(">I", total) + prefix[28:]
    aad = header + struct.pack(">BBH", next_payload, 0, payload_len) + extra
    return aad + iv + reference_seal(algorithm, keymat, iv, aad, plaintext, icv_len)


def reference_sk_open(algorithm: str, keymat: bytes, message: bytes, offset: int,
                      icv_len: int, header_len: int = 4) -> bytes | None:
    aad = message[: offset + header_len]
    iv = message[offset + header_len : offset + header_len + 8]
    plaintext = reference_open(algorithm, keymat, iv, aad, message[offset + header_len + 8 :],
                               icv_len)
    if plaintext is None:
        return None
    return plaintext[: len(plaintext) - 1 - plaintext[-1]]
