"""UDP encapsulation of IKE and ESP for NAT traversal (RFC 3948, RFC 7296 §2.23).

On UDP port 4500 three kinds of datagram share the socket, told apart by the first bytes of
the UDP payload (RFC 3948 §2.2, §2.3):

* ``00 00 00 00`` (the non-ESP marker) then an IKE message; the marker is not part of the
  message (not in its Length, AAD or ICV);
* anything else with a non-zero SPI: an ESP packet directly after the UDP header;
* the single byte ``FF``: a NAT-keepalive, to be ignored (never a liveness proof).

Pure Python: these run once per datagram around the compiled ESP/IKE code, not per byte.
"""

from __future__ import annotations

import enum
import struct

from ikecore.errors import MalformedMessage

__all__ = [
    "IKE_PORT",
    "NATT_PORT",
    "NAT_KEEPALIVE",
    "NON_ESP_MARKER",
    "DatagramKind",
    "add_non_esp_marker",
    "classify_natt_payload",
    "udp_decapsulate",
    "udp_encapsulate",
    "udp_header",
]

IKE_PORT = 500
NATT_PORT = 4500
NON_ESP_MARKER = b"\x00\x00\x00\x00"
NAT_KEEPALIVE = b"\xff"  # RFC 3948 §2.3: one octet, 0xFF
UDP_HEADER_LEN = 8
ESP_HEADER_LEN = 8  # SPI | Sequence Number


class DatagramKind(enum.Enum):
    IKE = "ike"
    ESP = "esp"
    KEEPALIVE = "keepalive"


def classify_natt_payload(payload: bytes | bytearray | memoryview) -> tuple[DatagramKind, bytes]:
    """Sorts the UDP payload of a port-4500 datagram. Returns the kind and the IKE message
    (marker removed), the ESP packet, or b"" for a keepalive. MalformedMessage (with the
    offset) for anything that is none of the three."""
    data = bytes(payload)
    if data == NAT_KEEPALIVE:
        return DatagramKind.KEEPALIVE, b""
    if len(data) < ESP_HEADER_LEN:
        # shorter than an ESP header, and a marker needs an IKE message after it
        raise MalformedMessage("UDP payload too short for ESP or marked IKE", len(data))
    if data[:4] == NON_ESP_MARKER:
        return DatagramKind.IKE, data[4:]
    return DatagramKind.ESP, data


def add_non_esp_marker(ike_message: bytes | bytearray | memoryview) -> bytes:
    """The UDP payload that carries an IKE message on port 4500 (RFC 3948 §2.2)."""
    return NON_ESP_MARKER + bytes(ike_message)


def _check_port(port: int) -> None:
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port must be 0..65535, got {port}")


def udp_header(source_port: int, destination_port: int, payload_len: int) -> bytes:
    """An 8-byte UDP header with checksum 0: for IPv4, UDP-encapsulated ESP SHOULD carry a
    zero checksum (RFC 3948 §2.1); IPv6 needs a real checksum, which the IP layer adds."""
    _check_port(source_port)
    _check_port(destination_port)
    length = UDP_HEADER_LEN + payload_len
    if not 0 <= payload_len or length > 0xFFFF:
        raise ValueError(f"UDP payload of {payload_len} bytes does not fit")
    return struct.pack(">HHHH", source_port, destination_port, length, 0)


def udp_encapsulate(payload: bytes | bytearray | memoryview, source_port: int = NATT_PORT,
                    destination_port: int = NATT_PORT) -> bytes:
    """UDP header | payload (an ESP packet, a marked IKE message or a keepalive)."""
    data = bytes(payload)
    return udp_header(source_port, destination_port, len(data)) + data


def udp_decapsulate(datagram: bytes | bytearray | memoryview) -> tuple[int, int, bytes]:
    """(source port, destination port, payload) of a UDP datagram. The checksum is not
    verified: RFC 3948 §3.1.2 says it MUST NOT be relied upon for encapsulated ESP."""
    data = bytes(datagram)
    if len(data) < UDP_HEADER_LEN:
        raise MalformedMessage("truncated UDP header", len(data))
    source_port, destination_port, length, _checksum = struct.unpack_from(">HHHH", data)
    if not UDP_HEADER_LEN <= length <= len(data):
        raise MalformedMessage("UDP Length does not match the datagram", 4)
    return source_port, destination_port, data[UDP_HEADER_LEN:length]
