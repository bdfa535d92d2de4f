"""IKE datagrams out of pcap and pcapng captures, in pure Python (for ``ikecore decode``).

Reads classic pcap (microsecond and nanosecond, both byte orders) and pcapng (Section Header,
Interface Description, Enhanced and Simple Packet blocks); link types Ethernet (with 802.1Q
tags), BSD loopback, raw IP and Linux cooked (SLL, SLL2); IPv4 and IPv6 (extension headers
skipped); UDP on port 500, and port 4500 where a datagram is IKE only behind the 4-byte
non-ESP marker (RFC 3948 §2.2; a 1-byte 0xFF is a NAT keepalive, anything else ESP).
Fragmented IP packets are skipped (IKE fragmentation happens at the IKE layer, RFC 7383).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["CaptureError", "IkeDatagram", "is_capture", "read_capture"]

IKE_PORTS = (500, 4500)
NON_ESP_MARKER = b"\x00\x00\x00\x00"

_PCAP_MAGICS = {
    b"\xa1\xb2\xc3\xd4": ">",
    b"\xd4\xc3\xb2\xa1": "<",
    b"\xa1\xb2\x3c\x4d": ">",  # nanosecond timestamps
    b"\x4d\x3c\xb2\xa1": "<",
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276


class CaptureError(ValueError):
    """The capture file itself is damaged or of an unsupported kind."""


@dataclass(frozen=True, slots=True)
class IkeDatagram:
    """The IKE message of one captured UDP datagram (the non-ESP marker removed)."""

    frame: int  # 1-based packet number in the capture
    src: tuple[str, int]
    dst: tuple[str, int]
    data: bytes


def is_capture(data: bytes) -> bool:
    """A pcap global header (magic and version 2.4) or a pcapng Section Header Block (block
    type and byte-order magic). Checking more than the magic matters: an IKE SPI may start
    with the same 4 bytes."""
    if data[:4] in _PCAP_MAGICS:
        order = _PCAP_MAGICS[data[:4]]
        return len(data) >= 24 and struct.unpack_from(order + "HH", data, 4) == (2, 4)
    return data[:4] == _PCAPNG_SHB and data[8:12] in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d")


def read_capture(data: bytes) -> list[IkeDatagram]:
    """Every IKE message in a pcap or pcapng capture, in capture order."""
    if not is_capture(data):
        raise CaptureError("not a pcap or pcapng capture")
    frames = _pcapng_frames(data) if data[:4] == _PCAPNG_SHB else _pcap_frames(data)
    found = []
    for number, (linktype, frame) in enumerate(frames, start=1):
        datagram = _ike_in_frame(number, linktype, frame)
        if datagram is not None:
            found.append(datagram)
    return found


def _pcap_frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    order = _PCAP_MAGICS[data[:4]]
    if len(data) < 24:
        raise CaptureError("pcap global header truncated")
    (linktype,) = struct.unpack_from(order + "I", data, 20)
    pos = 24
    while pos < len(data):
        if len(data) - pos < 16:
            raise CaptureError(f"pcap record header truncated at byte {pos}")
        captured, _original = struct.unpack_from(order + "II", data, pos + 8)
        pos += 16
        if captured > len(data) - pos:
            raise CaptureError(f"pcap record truncated at byte {pos}")
        yield linktype & 0xFFFF, data[pos : pos + captured]
        pos += captured


def _pcapng_frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    order = "<"
    linktypes: list[int] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 12:
            raise CaptureError(f"pcapng block truncated at byte {pos}")
        block_type = data[pos : pos + 4]
        if block_type == _PCAPNG_SHB:
            magic = data[pos + 8 : pos + 12]
            if magic == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif magic == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                raise CaptureError(f"pcapng byte-order magic wrong at byte {pos + 8}")
            linktypes = []  # interface numbering restarts in each section
        (kind, length) = struct.unpack_from(order + "II", data, pos)
        if length < 12 or length % 4 or length > len(data) - pos:
            raise CaptureError(f"pcapng block length wrong at byte {pos + 4}")
        body = data[pos + 8 : pos + length - 4]
        if kind == 1:  # Interface Description Block
            linktypes.append(struct.unpack_from(order + "H", body, 0)[0])
        elif kind == 6:  # Enhanced Packet Block
            if len(body) < 20:
                raise CaptureError(f"pcapng packet block truncated at byte {pos}")
            interface, _hi, _lo, captured = struct.unpack_from(order + "IIII", body, 0)
            if interface >= len(linktypes) or captured > len(body) - 20:
                raise CaptureError(f"pcapng packet block inconsistent at byte {pos}")
            yield linktypes[interface], body[20 : 20 + captured]
        elif kind == 3:  # Simple Packet Block: interface 0, captured = block - 16
            if not linktypes:
                raise CaptureError(f"pcapng packet before any interface at byte {pos}")
            yield linktypes[0], body[4:]
        pos += length


def _ike_in_frame(number: int, linktype: int, frame: bytes) -> IkeDatagram | None:
    packet = _ip_packet(linktype, frame)
    if packet is None:
        return None
    udp = _udp_of_ip(packet)
    if udp is None:
        return None
    src, dst, payload = udp
    if src[1] == 4500 or dst[1] == 4500:
        if payload[:4] != NON_ESP_MARKER:
            return None  # ESP in UDP, or a NAT keepalive
        payload = payload[4:]
    elif src[1] != 500 and dst[1] != 500:
        return None
    return IkeDatagram(number, src, dst, payload)


def _ip_packet(linktype: int, frame: bytes) -> bytes | None:
    if linktype == LINKTYPE_ETHERNET:
        pos, ethertype = 14, frame[12:14]
        while ethertype in (b"\x81\x00", b"\x88\xa8"):  # 802.1Q / 802.1ad tags
            ethertype = frame[pos + 2 : pos + 4]
            pos += 4
        return frame[pos:] if ethertype in (b"\x08\x00", b"\x86\xdd") else None
    if linktype == LINKTYPE_NULL:
        return frame[4:]
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return frame
    if linktype == LINKTYPE_LINUX_SLL:
        return frame[16:] if frame[14:16] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype == LINKTYPE_LINUX_SLL2:
        return frame[20:] if frame[0:2] in (b"\x08\x00", b"\x86\xdd") else None
    return None


_IPV6_EXTENSIONS = (0, 43, 60)  # hop-by-hop, routing, destination options


def _udp_of_ip(packet: bytes) -> tuple[tuple[str, int], tuple[str, int], bytes] | None:
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        header_length = (packet[0] & 0x0F) * 4
        total_length = int.from_bytes(packet[2:4], "big")
        flags_fragment = int.from_bytes(packet[6:8], "big")
        if packet[9] != 17 or flags_fragment & 0x3FFF:  # not UDP, or a fragment
            return None
        src_ip = str(ipaddress.IPv4Address(packet[12:16]))
        dst_ip = str(ipaddress.IPv4Address(packet[16:20]))
        segment = packet[header_length:total_length]
    elif version == 6 and len(packet) >= 40:
        next_header, pos = packet[6], 40
        while next_header in _IPV6_EXTENSIONS and len(packet) >= pos + 8:
            next_header, pos = packet[pos], pos + 8 + packet[pos + 1] * 8
        if next_header != 17:
            return None
        src_ip = str(ipaddress.IPv6Address(packet[8:24]))
        dst_ip = str(ipaddress.IPv6Address(packet[24:40]))
        payload_length = int.from_bytes(packet[4:6], "big")
        segment = packet[pos : 40 + payload_length]
    else:
        return None
    if len(segment) < 8:
        return None
    sport, dport, udp_length = struct.unpack_from("!HHH", segment, 0)
    if udp_length < 8 or udp_length > len(segment):
        return None
    return (src_ip, sport), (dst_ip, dport), segment[8:udp_length]
