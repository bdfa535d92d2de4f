"""tshark (Wireshark 4.0) as an independent decoder, and a pcap reader for IKE_SA_INIT facts.

`dissect(pcap, key_dir)` runs tshark with WIRESHARK_CONFIG_DIR=key_dir (where
ikecore.wireshark.KeyLog writes `ikev2_decryption_table` and `esp_sa`) and returns one record per
IKE message and per ESP packet: decrypted or not, ICV verdict, inner payload and notify types,
inner IP addresses. tshark's positive ICV verdict ("[correct]") is only in the detailed tree,
so this reads PDML, not `-T fields`.
"""

from __future__ import annotations

import os
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from scapy.contrib.ikev2 import IKEv2
from scapy.layers.inet import IP, UDP
from scapy.utils import rdpcap

IKE_PORTS = (500, 4500)
NON_ESP_MARKER = b"\x00\x00\x00\x00"  # RFC 3948 §2.2
PAYLOAD_SK = 46
EXCHANGE_IKE_SA_INIT = 34
FLAG_RESPONSE = 0x20


@dataclass(frozen=True)
class IkeFrame:
    number: int
    exchange: int
    message_id: int
    is_response: bool
    spi_i: bytes
    spi_r: bytes
    encrypted: bool  # carries an SK payload
    decrypted: bool
    icv_correct: bool | None  # None: no verdict (not encrypted, or no key)
    payloads: tuple[int, ...]  # top-level payload types, the SK payload's inner chain included
    notify_types: tuple[int, ...]


@dataclass(frozen=True)
class EspFrame:
    number: int
    spi: int
    sequence: int
    src: str
    dst: str
    decrypted: bool
    icv_good: bool
    icv_bad: bool
    inner_src: str | None
    inner_dst: str | None
    inner_protocol: int | None
    icmp_type: int | None


@dataclass(frozen=True)
class Dissection:
    ike: tuple[IkeFrame, ...]
    esp: tuple[EspFrame, ...]

    @property
    def encrypted_ike(self) -> tuple[IkeFrame, ...]:
        return tuple(frame for frame in self.ike if frame.encrypted)


def tshark_version() -> str:
    out = subprocess.run(["tshark", "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"TShark \(Wireshark\) (\S+)", out.stdout)
    return match.group(1) if match else out.stdout.splitlines()[0]


def dissect(pcap: Path, key_dir: Path, decode_as: Sequence[str] = ()) -> Dissection:
    """Decrypt ``pcap`` with the key tables in ``key_dir``.

    ``decode_as``: tshark -d rules for IKE on other ports, e.g. "udp.port==1500,isakmp".
    """
    args = [
        "tshark", "-r", str(pcap), "-T", "pdml",
        "-o", "esp.enable_encryption_decode:TRUE",
        "-o", "esp.enable_authentication_check:TRUE",
    ]
    for rule in decode_as:
        args += ["-d", rule]
    env = {**os.environ, "WIRESHARK_CONFIG_DIR": str(key_dir)}
    proc = subprocess.run(args, capture_output=True, env=env, timeout=60, check=False)
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace")
        raise RuntimeError(f"tshark exited {proc.returncode}: {stderr}")
    return parse_pdml(proc.stdout)


def _fields(element: ET.Element, name: str) -> list[ET.Element]:
    return [f for f in element.iter("field") if f.get("name") == name]


def _show(element: ET.Element, name: str) -> str | None:
    found = _fields(element, name)
    return found[0].get("show") if found else None


def _payload_chain(parent: ET.Element) -> tuple[list[int], list[int]]:
    """Payload types and notify types directly under ``parent`` (proposals etc. excluded)."""
    types: list[int] = []
    notifies: list[int] = []
    for child in parent.findall("field"):
        if child.get("name") != "isakmp.typepayload":
            continue
        types.append(int(child.get("show", "-1")))
        notify = [f for f in child.findall("field") if f.get("name") == "isakmp.notify.msgtype"]
        notifies += [int(f.get("show", "-1")) for f in notify]
        if types[-1] == PAYLOAD_SK:
            for decrypted in child.findall("field"):
                if decrypted.get("name") != "isakmp.enc.decrypted":
                    continue
                for contained in decrypted.findall("field"):
                    if contained.get("name") == "isakmp.enc.contained":
                        inner_types, inner_notifies = _payload_chain(contained)
                        types += inner_types
                        notifies += inner_notifies
    return types, notifies


def _ike_frame(number: int, proto: ET.Element) -> IkeFrame:
    types, notifies = _payload_chain(proto)
    icd = _fields(proto, "isakmp.enc.icd")
    verdict: bool | None = None
    if icd:
        showname = icd[0].get("showname", "")
        verdict = True if "[correct]" in showname else False if "[incorrect" in showname else None
    flags = int(_show(proto, "isakmp.flags") or "0", 16)
    return IkeFrame(
        number=number,
        exchange=int(_show(proto, "isakmp.exchangetype") or "-1"),
        message_id=int(_show(proto, "isakmp.messageid") or "-1", 16),
        is_response=bool(flags & FLAG_RESPONSE),
        spi_i=bytes.fromhex((_show(proto, "isakmp.ispi") or "").replace(":", "")),
        spi_r=bytes.fromhex((_show(proto, "isakmp.rspi") or "").replace(":", "")),
        encrypted=PAYLOAD_SK in types,
        decrypted=bool(_fields(proto, "isakmp.enc.decrypted")),
        icv_correct=verdict,
        payloads=tuple(types),
        notify_types=tuple(notifies),
    )


def _esp_frame(number: int, protos: list[ET.Element], index: int) -> EspFrame:
    esp = protos[index]
    outer_ip = [p for p in protos[:index] if p.get("name") == "ip"][-1]
    inner_ip = next((p for p in protos[index + 1:] if p.get("name") == "ip"), None)
    icmp = next((p for p in protos[index + 1:] if p.get("name") == "icmp"), None)
    return EspFrame(
        number=number,
        spi=int(_show(esp, "esp.spi") or "0", 16),
        sequence=int(_show(esp, "esp.sequence") or "0"),
        src=_show(outer_ip, "ip.src") or "",
        dst=_show(outer_ip, "ip.dst") or "",
        decrypted=bool(_fields(esp, "esp.decrypted_data")),
        icv_good=_show(esp, "esp.icv_good") == "1",
        icv_bad=_show(esp, "esp.icv_bad") == "1",
        inner_src=_show(inner_ip, "ip.src") if inner_ip is not None else None,
        inner_dst=_show(inner_ip, "ip.dst") if inner_ip is not None else None,
        inner_protocol=int(_show(inner_ip, "ip.proto") or "-1") if inner_ip is not None else None,
        icmp_type=int(_show(icmp, "icmp.type") or "-1") if icmp is not None else None,
    )


def parse_pdml(pdml: bytes) -> Dissection:
    ike: list[IkeFrame] = []
    esp: list[EspFrame] = []
    for packet in ET.fromstring(pdml).iter("packet"):
        protos = packet.findall("proto")
        frame = next(p for p in protos if p.get("name") == "frame")
        number = int(_show(frame, "frame.number") or "0")
        # Only the outermost IKE or ESP layer: under a wrong key the garbage plaintext's random
        # next header can make tshark dissect a bogus inner ESP or IKE layer.
        for index, proto in enumerate(protos):
            if proto.get("name") == "isakmp":
                ike.append(_ike_frame(number, proto))
                break
            if proto.get("name") == "esp":
                esp.append(_esp_frame(number, protos, index))
                break
    return Dissection(tuple(ike), tuple(esp))


# --- the pcap itself (scapy) --------------------------------------------------------------

@dataclass(frozen=True)
class WireIke:
    """One IKE message as captured (the non-ESP marker removed)."""

    number: int
    src: str
    dst: str
    data: bytes

    @property
    def spi_i(self) -> bytes:
        return self.data[0:8]

    @property
    def spi_r(self) -> bytes:
        return self.data[8:16]

    @property
    def exchange(self) -> int:
        return self.data[18]

    @property
    def is_response(self) -> bool:
        return bool(self.data[19] & FLAG_RESPONSE)


@dataclass(frozen=True)
class SaInit:
    """What an IKE_SA_INIT exchange put in the clear: SPIs and nonces (RFC 7296 §1.2)."""

    spi_i: bytes
    spi_r: bytes
    ni: bytes
    nr: bytes


@dataclass(frozen=True)
class WireEsp:
    """One ESP packet as captured in UDP (RFC 3948): SPI | Seq | IV | ciphertext | ICV."""

    number: int
    src: str
    dst: str
    data: bytes

    @property
    def spi(self) -> int:
        return int.from_bytes(self.data[0:4], "big")


def read_pcap(pcap: Path) -> tuple[list[WireIke], list[WireEsp]]:
    """IKE messages (non-ESP marker removed) and ESP-in-UDP packets, in capture order."""
    ike: list[WireIke] = []
    esp: list[WireEsp] = []
    for number, packet in enumerate(rdpcap(str(pcap)), start=1):
        if UDP not in packet or IP not in packet:
            continue
        udp = packet[UDP]
        if udp.dport not in IKE_PORTS and udp.sport not in IKE_PORTS:
            continue
        data = bytes(udp.payload)
        src, dst = packet[IP].src, packet[IP].dst
        if 4500 in (udp.sport, udp.dport) and not data.startswith(NON_ESP_MARKER):
            esp.append(WireEsp(number, src, dst, data))
        elif 4500 in (udp.sport, udp.dport):
            ike.append(WireIke(number, src, dst, data[4:]))
        else:
            ike.append(WireIke(number, src, dst, data))
    return ike, esp


def ike_messages(pcap: Path) -> list[WireIke]:
    return read_pcap(pcap)[0]


def open_esp_aes_gcm(packet: bytes, key_and_salt: bytes, icv_len: int = 16) -> bytes:
    """Decrypt one ESP packet of an AES-GCM SA without ESN (RFC 4106 §3-§5).

    nonce = salt || 8-byte IV; AAD = SPI || 32-bit sequence number. Returns the plaintext
    with padding, pad length and next header still on. Raises InvalidTag.
    """
    key, salt = key_and_salt[:-4], key_and_salt[-4:]
    iv = packet[8:16]
    return AESGCM(key).decrypt(salt + iv, packet[16:], packet[:8])


def _nonce(data: bytes) -> bytes:
    message = IKEv2(data)
    layer = message.getlayer("IKEv2_Nonce")
    if layer is None:
        raise ValueError("IKE_SA_INIT message without a Nonce payload")
    return bytes(layer.nonce)


def sa_inits(messages: Sequence[WireIke]) -> list[SaInit]:
    """Completed IKE_SA_INIT exchanges in capture order (a response with SPIr set)."""
    requests: dict[bytes, WireIke] = {}
    result = []
    for message in messages:
        if message.exchange != EXCHANGE_IKE_SA_INIT:
            continue
        if not message.is_response:
            requests[message.spi_i] = message  # a retry after INVALID_KE/COOKIE replaces it
        elif message.spi_r != bytes(8) and message.spi_i in requests:
            ni = _nonce(requests[message.spi_i].data)
            result.append(SaInit(message.spi_i, message.spi_r, ni, _nonce(message.data)))
    return result


def open_sk(message: bytes, sk_e: bytes, chacha20_poly1305: bool = False) -> bytes:
    """Decrypt the SK payload of ``message`` with AES-GCM-16 (RFC 5282) or
    ENCR_CHACHA20_POLY1305 (RFC 7634 §3): key = SK_e without its last 4 bytes, salt = those 4;
    nonce = salt || 8-byte IV; AAD = IKE header and SK payload header (RFC 5282 §5.1); ICV 16
    bytes. Returns the inner payloads, padding stripped (RFC 7296 §3.14). Raises InvalidTag
    for a wrong key or a modified message."""
    if message[16] != PAYLOAD_SK:
        raise ValueError("the first payload is not SK")
    key, salt = sk_e[:-4], sk_e[-4:]
    payload_length = int.from_bytes(message[30:32], "big")
    iv = message[32:40]
    body = message[40:28 + payload_length]
    aead = ChaCha20Poly1305(key) if chacha20_poly1305 else AESGCM(key)
    plain = aead.decrypt(salt + iv, body, message[:32])
    pad_length = plain[-1]
    return plain[: len(plain) - 1 - pad_length]


def payload_chain(first_type: int, data: bytes) -> list[tuple[int, bytes]]:
    """(type, body) of each payload of a chain (RFC 7296 §3.2 generic headers)."""
    payloads, next_type, offset = [], first_type, 0
    while next_type != 0:
        length = int.from_bytes(data[offset + 2:offset + 4], "big")
        if length < 4 or offset + length > len(data):
            raise ValueError(f"payload {next_type} at {offset}: bad length {length}")
        payloads.append((next_type, data[offset + 4:offset + length]))
        next_type, offset = data[offset], offset + length
    if offset != len(data):
        raise ValueError(f"{len(data) - offset} bytes after the last payload")
    return payloads


__all__ = [
    "Dissection",
    "EspFrame",
    "IkeFrame",
    "InvalidTag",
    "SaInit",
    "WireEsp",
    "WireIke",
    "dissect",
    "ike_messages",
    "open_esp_aes_gcm",
    "open_sk",
    "payload_chain",
    "read_pcap",
    "sa_inits",
    "tshark_version",
]
