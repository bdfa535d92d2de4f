"""ICMP echo through a tunnel: `python interop_icmp.py SRC DST COUNT` prints the reply count.

Run inside a network namespace by tests/interop_peers.icmp_echo (Debian's minimal images have
no ping). Each echo request waits up to 2 s for its reply (RFC 792 echo / echo reply).
"""

from __future__ import annotations

import socket
import struct
import sys

ECHO_REQUEST = 8
ECHO_REPLY = 0
IDENTIFIER = 0x1C0E
PAYLOAD = b"ikecore-interop-echo"


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo(src: str, dst: str, count: int) -> int:
    replies = 0
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.bind((src, 0))
        sock.settimeout(2.0)
        for seq in range(count):
            header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, IDENTIFIER, seq)
            csum = checksum(header + PAYLOAD)
            sock.sendto(struct.pack("!BBHHH", ECHO_REQUEST, 0, csum, IDENTIFIER, seq) + PAYLOAD,
                        (dst, 0))
            try:
                while True:
                    packet, (peer, _) = sock.recvfrom(2048)
                    ihl = (packet[0] & 0x0F) * 4
                    kind, _, _, ident, reply_seq = struct.unpack("!BBHHH", packet[ihl:ihl + 8])
                    if (peer, kind, ident, reply_seq) == (dst, ECHO_REPLY, IDENTIFIER, seq):
                        replies += 1
                        break
            except TimeoutError:
                pass
    return replies


if __name__ == "__main__":
    print(echo(sys.argv[1], sys.argv[2], int(sys.argv[3])))
