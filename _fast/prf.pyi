# IKEv2 PRFs, prf+ and key schedules (RFC 7296 §2.13-2.18); ikecore.keys is the public API.
# Byte arguments accept bytes, bytearray or memoryview; PRF ids are PrfId values 2, 4, 5-8.
# The key-schedule functions build ``result_type`` instances (the frozen slotted dataclasses
# of ikecore.keys) and fill their slots directly.

from typing import TypeAlias, TypeVar

Buffer: TypeAlias = bytes | bytearray | memoryview
_R = TypeVar("_R")

def output_length(prf_id: int) -> int: ...
def prf(prf_id: int, key: Buffer, data: Buffer) -> bytes: ...
def prf_plus(prf_id: int, key: Buffer, seed: Buffer, length: int) -> bytes: ...
def skeyseed(prf_id: int, ni: Buffer, nr: Buffer, g_ir: Buffer) -> bytes: ...
def skeyseed_rekey(
    old_prf_id: int, sk_d_old: Buffer, g_ir: Buffer, ni: Buffer, nr: Buffer
) -> bytes: ...
def ike_keys(
    result_type: type[_R],
    prf_id: int,
    skeyseed: Buffer,
    ni: Buffer,
    nr: Buffer,
    spi_i: Buffer,
    spi_r: Buffer,
    integ_key_len: int,
    encr_key_len: int,
) -> _R: ...
def ike_sa_init_keys(
    result_type: type[_R],
    prf_id: int,
    ni: Buffer,
    nr: Buffer,
    g_ir: Buffer,
    spi_i: Buffer,
    spi_r: Buffer,
    integ_key_len: int,
    encr_key_len: int,
) -> _R: ...
def ike_sa_rekey_keys(
    result_type: type[_R],
    old_prf_id: int,
    sk_d_old: Buffer,
    prf_id: int,
    g_ir: Buffer,
    ni: Buffer,
    nr: Buffer,
    spi_i: Buffer,
    spi_r: Buffer,
    integ_key_len: int,
    encr_key_len: int,
) -> _R: ...
def child_keys(
    result_type: type[_R],
    prf_id: int,
    sk_d: Buffer,
    ni: Buffer,
    nr: Buffer,
    encr_key_len: int,
    integ_key_len: int,
    g_ir: Buffer | None = None,
) -> _R: ...
def psk_auth(prf_id: int, psk: Buffer, signed_octets: Buffer) -> bytes: ...
