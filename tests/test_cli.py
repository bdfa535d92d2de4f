"""``ikecore decode``: hex, raw and captured (pcap, pcapng) IKE messages to a tree or JSON."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest
from ikemsg_vectors import load

from ikecore.cli import main

VEC = load()
SA_INIT = bytes.fromhex(VEC["ike_sa_init"]["message1"])
MOBIKE_4500 = bytes.fromhex(VEC["mobike_on_clone"]["request_udp4500_payload"])
ESP_4500 = bytes.fromhex(VEC["esp_on_clone"]["esp_packet"])


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(src: bytes, dst: bytes, segment: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 1, 0, 64, 17, 0, src, dst)
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + segment


def ipv6(src: bytes, dst: bytes, segment: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(segment), 17, 64, src, dst) + segment


def ethernet(packet: bytes, ethertype: int = 0x0800) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype) + packet


def pcap(linktype: int, frames: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, frame in enumerate(frames):
        out += struct.pack("<IIII", 1700000000 + i, 0, len(frame), len(frame)) + frame
    return out


def pcapng(linktype: int, frames: list[bytes]) -> bytes:
    def block(kind: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        return struct.pack("<II", kind, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", linktype, 0, 65535))
    for frame in frames:
        out += block(6, struct.pack("<IIIII", 0, 0, 0, len(frame), len(frame)) + frame)
    return out


A4, B4 = bytes([198, 51, 100, 7]), bytes([203, 0, 113, 9])
A6, B6 = bytes.fromhex("20010db8" + "00" * 11 + "01"), bytes.fromhex("20010db8" + "00" * 11 + "02")


def capture_frames() -> list[bytes]:
    return [
        ethernet(ipv4(A4, B4, udp(500, 500, SA_INIT))),
        ethernet(ipv4(A4, B4, udp(4500, 4500, b"\xff"))),  # NAT keepalive: skipped
        ethernet(ipv4(A4, B4, udp(4500, 4500, ESP_4500))),  # ESP in UDP: skipped
        ethernet(ipv4(A4, B4, udp(53, 53, b"dns"))),  # not IKE: skipped
        ethernet(ipv6(A6, B6, udp(4500, 4500, MOBIKE_4500)), 0x86DD),
    ]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_decode_hex_file(tmp_path, capsys):
    path = tmp_path / "m.hex"
    hex_text = SA_INIT.hex()
    path.write_text("\n".join(hex_text[i : i + 60] for i in range(0, len(hex_text), 60)))
    code, out, err = run(capsys, "decode", str(path))
    assert code == 0 and err == ""
    assert "IKE_SA_INIT request from the initiator, message ID 0" in out
    assert "ENCR AES_GCM_16 key_length=256" in out
    assert "group: ECP_256 (19)" in out


def test_decode_raw_with_non_esp_marker_and_json(tmp_path, capsys):
    path = tmp_path / "m.bin"
    path.write_bytes(MOBIKE_4500)
    code, out, _ = run(capsys, "decode", "--json", str(path))
    assert code == 0
    (msg,) = json.loads(out)["messages"]
    assert msg["exchange"] == "INFORMATIONAL" and msg["message_id"] == 1
    assert msg["payloads"][0]["payload"] == "SK"
    assert msg["payloads"][0]["first_payload"] == {"value": 41, "name": "NOTIFY"}


@pytest.mark.parametrize("writer", [pcap, pcapng])
def test_decode_capture_finds_ike_on_500_and_4500(tmp_path, capsys, writer):
    path = tmp_path / "c.cap"
    path.write_bytes(writer(1, capture_frames()))
    code, out, _ = run(capsys, "decode", "--json", str(path))
    assert code == 0
    messages = json.loads(out)["messages"]
    assert [m["source"] for m in messages] == [
        "frame 1 198.51.100.7:500 -> 203.0.113.9:500",
        "frame 5 2001:db8::1:4500 -> 2001:db8::2:4500",
    ]
    assert [m["exchange"] for m in messages] == ["IKE_SA_INIT", "INFORMATIONAL"]


def test_decode_raw_ip_capture_tree(tmp_path, capsys):
    path = tmp_path / "raw.pcap"
    path.write_bytes(pcap(101, [ipv4(A4, B4, udp(500, 500, SA_INIT))]))
    code, out, _ = run(capsys, "decode", str(path))
    assert code == 0
    assert out.startswith("# frame 1 198.51.100.7:500 -> 203.0.113.9:500\nIKE_SA_INIT")


def test_decode_malformed_message_fails_with_one_line(tmp_path, capsys):
    path = tmp_path / "bad.bin"
    path.write_bytes(SA_INIT[:-1])
    code, out, err = run(capsys, "decode", str(path))
    assert code == 1
    assert "malformed" in out
    assert err.count("\n") == 1 and "1 of 1 messages malformed" in err


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty input"),
        (b"abc", "odd number of hex digits"),
        (pcap(1, [ethernet(ipv4(A4, B4, udp(53, 53, b"x")))]), "no IKE messages found"),
        (pcap(1, [b"\x00" * 10])[:-3], "pcap record truncated"),
    ],
)
def test_decode_failures_exit_nonzero_with_reason(tmp_path, capsys, content, reason):
    path = tmp_path / "input"
    path.write_bytes(content)
    code, _, err = run(capsys, "decode", str(path))
    assert code == 1
    assert reason in err and err.count("\n") == 1


def test_decode_keylog_is_refused_until_implemented(tmp_path, capsys):
    path = tmp_path / "m.bin"
    path.write_bytes(SA_INIT)
    code, out, err = run(capsys, "decode", "--keylog", str(tmp_path), str(path))
    assert code == 1 and out == ""
    assert "not implemented" in err


def test_decode_missing_file(capsys):
    code, _, err = run(capsys, "decode", "/nonexistent/file")
    assert code == 1 and "cannot read" in err


def test_python_dash_m_reads_stdin(tmp_path):
    # `python -m` puts the working directory first on sys.path: run it away from the source
    # tree, whose ikecore/ has no compiled _fast (DESIGN.md, import rule).
    result = subprocess.run(
        [sys.executable, "-m", "ikecore", "decode", "--json", "-"],
        input=SA_INIT.hex().encode(),
        capture_output=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["messages"][0]["spi_i"] == SA_INIT[:8].hex()
