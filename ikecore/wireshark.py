"""Key export in Wireshark's two decryption tables (opt-in only).

Wireshark (and tshark) read user tables ("UAT") from files named after the table in the
directory given by ``WIRESHARK_CONFIG_DIR``: ``ikev2_decryption_table`` decrypts IKEv2 SK
payloads, ``esp_sa`` decrypts ESP. :class:`KeyLog` keeps both files up to date as SAs come and
go, so ``WIRESHARK_CONFIG_DIR=DIR tshark -r capture.pcap ...`` decrypts what an ikecore
process put on the wire. Nothing is written unless a caller creates a :class:`KeyLog`; the
files hold secrets and are created readable by their owner only.

Record formats (Wireshark 4.0, checked with tshark 4.0.17):

* ``ikev2_decryption_table``: ``ISPI,RSPI,SK_ei,SK_er,"encryption",SK_ai,SK_ar,"integrity"``.
  SPIs and keys are unquoted hex (a quoted SPI is rejected); an AES-GCM SK_e is key‖salt
  (RFC 5282 §7.1); SK_a is empty for an AEAD cipher.
* ``esp_sa``: ``"IPv4","src","dst","0xSPI","encryption","0xkey","auth","0xauth key"``, all
  quoted; an AES-GCM key is key‖salt (RFC 4106 §8.1) and its auth algorithm must be "NULL".

Wireshark 4.0 cannot decrypt ChaCha20-Poly1305 (RFC 7634) in IKEv2 or ESP, nor check ICVs of
ESP SAs with extended sequence numbers (its ESP table has no ESN field, and RFC 4106 §5 puts
the high 32 bits into the AAD). :class:`KeyLog` writes a comment line, without keys, for SAs it
cannot express, so the reason is visible in the file.
"""

from __future__ import annotations

import csv
import ipaddress
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ikecore.constants import EncrId, IntegId

if TYPE_CHECKING:
    from ikecore.sa import ChildSa
    from ikecore.session import IkeSession

__all__ = [
    "ESP_TABLE",
    "IKEV2_TABLE",
    "EspSaKeys",
    "IkeSaKeys",
    "KeyLog",
    "esp_record",
    "ikev2_record",
    "read_key_tables",
    "wireshark_can_decrypt",
]

IKEV2_TABLE = "ikev2_decryption_table"
ESP_TABLE = "esp_sa"

_SALT_LEN = 4  # RFC 4106 §8.1 / RFC 5282 §7.1: 4-byte salt after the AES key
_SPI_IKE_LEN = 8  # RFC 7296 §3.1
_SPI_ESP_MAX = 0xFFFFFFFF  # RFC 4303 §2.1: 32-bit SPI
_AES_KEY_BITS = (128, 192, 256)

# ICV length in octets of the AES-GCM transform IDs (RFC 4106 §8, RFC 5282 §7.1).
_GCM_ICV_LEN = {EncrId.AES_GCM_8: 8, EncrId.AES_GCM_12: 12, EncrId.AES_GCM_16: 16}

_FILE_HEADER = "# Written by ikecore.wireshark.KeyLog: secret keys, do not share.\n"


def wireshark_can_decrypt(encr: EncrId, integ: IntegId = IntegId.NONE, esn: bool = False) -> bool:
    """True when Wireshark 4.0 can decrypt and verify an SA with these transforms.

    ``esn`` only matters for ESP: Wireshark has no ESN support, so it cannot verify the ICV.
    """
    return encr in _GCM_ICV_LEN and integ == IntegId.NONE and not esn


def _check_gcm(encr: EncrId, key_bits: int, integ: IntegId) -> int:
    """Return the ICV length for a supported AES-GCM suite, ValueError naming the problem."""
    if encr not in _GCM_ICV_LEN:
        raise ValueError(f"Wireshark 4.0 cannot decrypt {EncrId(encr).name}: AES-GCM only")
    if integ != IntegId.NONE:
        raise ValueError(f"AES-GCM is an AEAD cipher: integrity must be NONE, not {integ!r}")
    if key_bits not in _AES_KEY_BITS:
        raise ValueError(f"AES key length must be 128, 192 or 256 bits, not {key_bits}")
    return _GCM_ICV_LEN[encr]


def _check_key(name: str, key: bytes, key_bits: int) -> None:
    expected = key_bits // 8 + _SALT_LEN
    if len(key) != expected:
        raise ValueError(
            f"{name} must be the {key_bits}-bit AES key plus its 4-byte salt "
            f"({expected} bytes), got {len(key)}"
        )


def _bytes(name: str, value: bytes | bytearray | memoryview) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes-like, not {type(value).__name__}")
    return bytes(value)


def ikev2_record(
    spi_i: bytes,
    spi_r: bytes,
    encr: EncrId,
    key_bits: int,
    sk_ei: bytes,
    sk_er: bytes,
) -> str:
    """One ``ikev2_decryption_table`` line (no newline) for an IKE SA with an AES-GCM suite.

    ``sk_ei``/``sk_er`` are the RFC 7296 §2.14 keys as derived, i.e. key‖salt for AES-GCM.
    """
    spi_i, spi_r = _bytes("spi_i", spi_i), _bytes("spi_r", spi_r)
    sk_ei, sk_er = _bytes("sk_ei", sk_ei), _bytes("sk_er", sk_er)
    for name, spi in (("spi_i", spi_i), ("spi_r", spi_r)):
        if len(spi) != _SPI_IKE_LEN:
            raise ValueError(f"{name} must be 8 bytes, got {len(spi)}")
    icv_len = _check_gcm(encr, key_bits, IntegId.NONE)
    _check_key("sk_ei", sk_ei, key_bits)
    _check_key("sk_er", sk_er, key_bits)
    encryption = f"AES-GCM-{key_bits} with {icv_len} octet ICV [RFC5282]"
    # Integrity "NONE": an AEAD suite has no integrity transform (RFC 5282 §8).
    spis = f"{spi_i.hex()},{spi_r.hex()}"
    return f'{spis},{sk_ei.hex()},{sk_er.hex()},"{encryption}",,,"NONE [RFC4306]"'


def _address_family(src: str, dst: str) -> str:
    versions = set()
    for name, address in (("src", src), ("dst", dst)):
        if address == "*":
            continue
        try:
            versions.add(ipaddress.ip_address(address).version)
        except ValueError:
            raise ValueError(f"{name} must be an IP address or '*', got {address!r}") from None
    if len(versions) > 1:
        raise ValueError(f"src {src} and dst {dst} are of different address families")
    return "IPv6" if versions == {6} else "IPv4"


def esp_record(
    src: str,
    dst: str,
    spi: int,
    encr: EncrId,
    key_bits: int,
    key: bytes,
) -> str:
    """One ``esp_sa`` line (no newline) for one direction of an AES-GCM Child SA.

    ``src``/``dst`` are the outer addresses of the ESP packets ("*" matches any; with both
    "*" the record is for IPv4). ``key`` is the KEYMAT key‖salt (RFC 4106 §8.1).
    """
    if not isinstance(spi, int) or not 0 < spi <= _SPI_ESP_MAX:
        raise ValueError(f"spi must be a non-zero 32-bit int, got {spi!r}")
    key = _bytes("key", key)
    family = _address_family(src, dst)
    icv_len = _check_gcm(encr, key_bits, IntegId.NONE)
    _check_key("key", key, key_bits)
    encryption = f"AES-GCM with {icv_len} octet ICV [RFC4106]"
    # RFC 4106 §8.3: AES-GCM carries its own ICV; Wireshark wants auth "NULL" for it.
    return f'"{family}","{src}","{dst}","0x{spi:08x}","{encryption}","0x{key.hex()}","NULL",""'


@dataclass(frozen=True, slots=True)
class _EspKeyId:
    src: str
    dst: str
    spi: int


class KeyLog:
    """Keeps ``DIR/ikev2_decryption_table`` and ``DIR/esp_sa`` in step with the SAs.

    Every change rewrites both files atomically (write to a temporary file, then rename), so
    a reader never sees half a table. Records of deleted SAs are kept by default
    (``retain_deleted=True``): a capture still holds their traffic, including the Delete
    exchange itself, and needs their keys to decrypt. A long-running daemon that only wants
    live SAs passes ``retain_deleted=False``.
    """

    def __init__(self, directory: str | os.PathLike[str], *, retain_deleted: bool = True) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.retain_deleted = retain_deleted
        self._ike: dict[tuple[bytes, bytes], str] = {}
        self._esp: dict[_EspKeyId, str] = {}
        self._write()

    @property
    def ikev2_path(self) -> Path:
        return self.directory / IKEV2_TABLE

    @property
    def esp_path(self) -> Path:
        return self.directory / ESP_TABLE

    def add_ike_sa(
        self,
        spi_i: bytes,
        spi_r: bytes,
        encr: EncrId,
        key_bits: int,
        sk_ei: bytes,
        sk_er: bytes,
        integ: IntegId = IntegId.NONE,
    ) -> None:
        """Record an IKE SA (new, rekeyed or cloned: each has its own SPI pair)."""
        spi_i, spi_r = _bytes("spi_i", spi_i), _bytes("spi_r", spi_r)
        if wireshark_can_decrypt(encr, integ):
            line = ikev2_record(spi_i, spi_r, encr, key_bits, sk_ei, sk_er)
        else:
            line = f"# {spi_i.hex()},{spi_r.hex()}: {_suite_name(encr, integ)} not decryptable"
        self._ike[(spi_i, spi_r)] = line
        self._write()

    def remove_ike_sa(self, spi_i: bytes, spi_r: bytes) -> None:
        """The IKE SA was deleted; its record goes only with ``retain_deleted=False``."""
        if not self.retain_deleted:
            self._ike.pop((_bytes("spi_i", spi_i), _bytes("spi_r", spi_r)), None)
            self._write()

    def add_esp_sa(
        self,
        src: str,
        dst: str,
        spi: int,
        encr: EncrId,
        key_bits: int,
        key: bytes,
        integ: IntegId = IntegId.NONE,
        esn: bool = False,
    ) -> None:
        """Record one direction of a Child SA: packets from ``src`` to ``dst`` with ``spi``."""
        if wireshark_can_decrypt(encr, integ):
            line = esp_record(src, dst, spi, encr, key_bits, key)
            if esn:
                # Decrypts (the keystream does not depend on the AAD) but every ICV check
                # fails: Wireshark builds the AAD without the ESN high bits (RFC 4106 §5).
                line = f"# ESN: ICVs will show as bad\n{line}"
        else:
            line = f"# 0x{spi:08x} {src} -> {dst}: {_suite_name(encr, integ)} not decryptable"
        self._esp[_EspKeyId(src, dst, spi)] = line
        self._write()

    def add_child_sa(
        self,
        initiator: str,
        responder: str,
        spi_i: int,
        spi_r: int,
        encr: EncrId,
        key_bits: int,
        encr_i: bytes,
        encr_r: bytes,
        esn: bool = False,
    ) -> None:
        """Record both directions of a Child SA from the Child SA initiator's view.

        ``spi_i`` is the SPI the initiator chose (it receives on it), ``spi_r`` the one the
        responder chose; ``encr_i``/``encr_r`` are the KEYMAT keys of RFC 7296 §2.17 (the
        initiator-to-responder key first). ``initiator``/``responder`` are outer addresses.
        """
        # Initiator -> responder travels under the responder's SPI with the initiator's key.
        self.add_esp_sa(initiator, responder, spi_r, encr, key_bits, encr_i, esn=esn)
        self.add_esp_sa(responder, initiator, spi_i, encr, key_bits, encr_r, esn=esn)

    def add_session(self, session: IkeSession) -> None:
        """An engine IKE SA and each of its Child SAs at their current outer addresses (call
        again after a new Child SA or a MOBIKE move: ESP records are per address pair)."""
        sa = session.sa
        if sa.keys is not None and sa.transforms is not None:
            self.add_ike_sa(
                sa.spi_i, sa.spi_r, EncrId(sa.transforms.encr), sa.transforms.key_bits or 256,
                sa.keys.sk_ei, sa.keys.sk_er,
            )
        for child in sa.child_sas.values():
            self.add_engine_child_sa(session, child)

    def add_engine_child_sa(self, session: IkeSession, child: ChildSa) -> None:
        """One engine Child SA of ``session`` (both directions, current outer addresses)."""
        local, remote = session.sa.local_address[0], session.sa.remote_address[0]
        # add_child_sa takes the Child SA initiator's view; ``key_out`` is what we send with.
        if child.initiator:
            ends, spis, keys = (local, remote), (child.spi_in, child.spi_out), (
                child.key_out, child.key_in)
        else:
            ends, spis, keys = (remote, local), (child.spi_out, child.spi_in), (
                child.key_in, child.key_out)
        self.add_child_sa(
            ends[0], ends[1], int.from_bytes(spis[0], "big"), int.from_bytes(spis[1], "big"),
            EncrId(child.transforms.encr), child.transforms.key_bits or 256, keys[0], keys[1],
            esn=child.transforms.esn,
        )

    def remove_esp_sa(self, src: str, dst: str, spi: int) -> None:
        """One direction of a Child SA was deleted (kept unless ``retain_deleted=False``)."""
        if not self.retain_deleted:
            self._esp.pop(_EspKeyId(src, dst, spi), None)
            self._write()

    def _write(self) -> None:
        _replace(self.ikev2_path, self._ike.values())
        _replace(self.esp_path, self._esp.values())


def _suite_name(encr: int, integ: int) -> str:
    names = []
    for enum, value in ((EncrId, encr), (IntegId, integ)):
        try:
            names.append(enum(value).name)
        except ValueError:
            names.append(f"{enum.__name__}({value})")
    return names[0] if integ == IntegId.NONE else "+".join(names)


def _replace(path: Path, lines: Iterable[str]) -> None:
    """Atomically replace ``path`` with the header and one record per line, mode 0600."""
    text = _FILE_HEADER + "".join(f"{line}\n" for line in lines)
    # mkstemp creates the file with mode 0600: the tables hold secret keys.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as tmp:
            tmp.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# --- reading the tables back (e.g. for `ikecore decode --keylog DIR`) -----------------------

_IKE_GCM_NAME = re.compile(r"AES-GCM-(128|192|256) with (8|12|16) octet ICV \[RFC5282\]")
_ESP_GCM_NAME = re.compile(r"AES-GCM with (8|12|16) octet ICV \[RFC4106\]")
_ICV_ENCR = {icv: encr for encr, icv in _GCM_ICV_LEN.items()}


@dataclass(frozen=True, slots=True)
class IkeSaKeys:
    """One ``ikev2_decryption_table`` record: SK_ei/SK_er are key‖salt."""

    spi_i: bytes
    spi_r: bytes
    encr: EncrId
    key_bits: int
    sk_ei: bytes
    sk_er: bytes


@dataclass(frozen=True, slots=True)
class EspSaKeys:
    """One ``esp_sa`` record: packets from ``src`` to ``dst`` under ``spi``; key is key‖salt."""

    src: str
    dst: str
    spi: int
    encr: EncrId
    key_bits: int
    key: bytes


def _records(path: Path) -> list[tuple[int, list[str]]]:
    if not path.exists():
        return []
    rows = []
    with path.open(encoding="ascii", newline="") as table:
        for number, line in enumerate(table, start=1):
            if line.strip() and not line.startswith("#"):
                rows.append((number, next(csv.reader([line]))))
    return rows


def _hex(path: Path, number: int, text: str) -> bytes:
    try:
        return bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise ValueError(f"{path}:{number}: {text!r} is not hex") from None


def read_key_tables(directory: str | os.PathLike[str]) -> tuple[list[IkeSaKeys], list[EspSaKeys]]:
    """The AES-GCM records of both tables in ``directory`` (missing files: no records).

    Records of algorithms ikecore does not write are skipped; a malformed record raises
    ValueError naming the file and line.
    """
    directory = Path(directory)
    ike: list[IkeSaKeys] = []
    ike_path = directory / IKEV2_TABLE
    for number, fields in _records(ike_path):
        if len(fields) != 8:
            raise ValueError(f"{ike_path}:{number}: {len(fields)} fields, expected 8")
        name = _IKE_GCM_NAME.fullmatch(fields[4])
        if name is None:
            continue
        spi_i, spi_r = _hex(ike_path, number, fields[0]), _hex(ike_path, number, fields[1])
        sk_ei, sk_er = _hex(ike_path, number, fields[2]), _hex(ike_path, number, fields[3])
        encr, key_bits = _ICV_ENCR[int(name.group(2))], int(name.group(1))
        try:
            ikev2_record(spi_i, spi_r, encr, key_bits, sk_ei, sk_er)  # same checks as writing
        except ValueError as exc:
            raise ValueError(f"{ike_path}:{number}: {exc}") from None
        ike.append(IkeSaKeys(spi_i, spi_r, encr, key_bits, sk_ei, sk_er))
    esp: list[EspSaKeys] = []
    esp_path = directory / ESP_TABLE
    for number, fields in _records(esp_path):
        if len(fields) != 8:
            raise ValueError(f"{esp_path}:{number}: {len(fields)} fields, expected 8")
        name = _ESP_GCM_NAME.fullmatch(fields[4])
        if name is None:
            continue
        key = _hex(esp_path, number, fields[5])
        encr, key_bits = _ICV_ENCR[int(name.group(1))], (len(key) - _SALT_LEN) * 8
        try:
            spi = int(fields[3], 16)
            esp_record(fields[1], fields[2], spi, encr, key_bits, key)
        except ValueError as exc:
            raise ValueError(f"{esp_path}:{number}: {exc}") from None
        esp.append(EspSaKeys(fields[1], fields[2], spi, encr, key_bits, key))
    return ike, esp
