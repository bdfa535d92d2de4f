"""``ikecore decode``: hex, raw and captured (pcap, pcapng) IKE messages to a tree or JSON."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest
from ikemsg_vectors import inner_chains, load, messages

from ikecore.aead import IkeCipher
from ikecore.cli import main
from ikecore.constants import EncrId, ExchangeType, PayloadType
from ikecore.message import encode_message, parse_payload_chain
from ikecore.payloads import EncryptedFragment
from ikecore.wireshark import KeyLog

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


def _vector_keylog(directory, *, flip: bool = False) -> None:
    """Wireshark's IKE key table for the vectors' first IKE SA and its clone (AES-GCM-256)."""
    log = KeyLog(directory)
    first, clone = VEC["ike_sa_init"], VEC["clone"]
    for spi_i, spi_r, keys in (
        (first["spi_i"], first["spi_r"], first["keys"]),
        (clone["new_spi_i"], clone["new_spi_r"], clone["keys"]),
    ):
        sk_ei = bytearray.fromhex(keys["SK_ei"])
        if flip:
            sk_ei[0] ^= 1
        log.add_ike_sa(bytes.fromhex(spi_i), bytes.fromhex(spi_r), EncrId.AES_GCM_16, 256,
                       bytes(sk_ei), bytes.fromhex(keys["SK_er"]))


ENCRYPTED = [v for v in messages() if v.name not in ("ike_sa_init.message1",
                                                     "ike_sa_init.message2")]


def test_decode_keylog_opens_every_sk_payload_of_the_vectors(tmp_path, capsys):
    """Each message's inner payloads, decrypted with the key of its sender's direction, are
    the vector's plaintext inner chain (parsed independently here)."""
    _vector_keylog(tmp_path)
    path = tmp_path / "messages.bin"
    path.write_bytes(b"".join(v.data for v in ENCRYPTED))
    code, out, _ = run(capsys, "decode", "--json", "--keylog", str(tmp_path), str(path))
    assert code == 0
    decoded = json.loads(out)["messages"]
    chains = {c.name: c for c in inner_chains()}
    assert len(decoded) == len(ENCRYPTED) >= 6
    for vector, message in zip(ENCRYPTED, decoded, strict=True):
        assert message["decrypted"]["icv"] == "correct", vector.name
        chain = chains[vector.name]
        expected = parse_payload_chain(chain.first_type, chain.inner)
        assert [p["payload"] for p in message["decrypted"]["payloads"]] == [
            PayloadType(t).name for t in expected.payload_types
        ]
    notifies = [p["notify_type"] for m in decoded for p in m["decrypted"]["payloads"]
                if p["payload"] == "NOTIFY"]
    assert {"value": 16432, "name": "CLONE_IKE_SA_SUPPORTED"} in notifies
    assert {"value": 16433, "name": "CLONE_IKE_SA"} in notifies


def test_decode_keylog_tree_and_bad_keys(tmp_path, capsys):
    """A wrong SK_ei fails exactly the initiator's messages; an SA not in the table is "no
    key"; cleartext messages are unaffected; the tree shows the inner payloads."""
    _vector_keylog(tmp_path, flip=True)
    message3 = bytes.fromhex(VEC["ike_auth"]["message3"])
    message4 = bytes.fromhex(VEC["ike_auth"]["message4"])
    path = tmp_path / "m.bin"
    path.write_bytes(SA_INIT + message3 + message4)
    code, out, _ = run(capsys, "decode", "--json", "--keylog", str(tmp_path), str(path))
    assert code == 0
    first, request, response = json.loads(out)["messages"]
    assert "decrypted" not in first
    assert request["decrypted"] == {"icv": "incorrect", "payloads": []}
    assert response["decrypted"]["icv"] == "correct"
    code, out, _ = run(capsys, "decode", "--keylog", str(tmp_path / "none"), str(path))
    assert code == 0
    assert out.count("decrypted, ICV no key") == 2
    _vector_keylog(tmp_path / "good")
    code, out, _ = run(capsys, "decode", "--keylog", str(tmp_path / "good"), str(path))
    assert code == 0 and out.count("decrypted, ICV correct") == 2
    assert "      IDI" in out and "      NOTIFY CLONE_IKE_SA_SUPPORTED" in out


def test_decode_keylog_rejects_a_malformed_table(tmp_path, capsys):
    (tmp_path / "ikev2_decryption_table").write_text('00,11,"AES-GCM-128 with 16 octet ICV"\n')
    path = tmp_path / "m.bin"
    path.write_bytes(SA_INIT)
    code, out, err = run(capsys, "decode", "--keylog", str(tmp_path), str(path))
    assert code == 1 and out == ""
    assert "ikev2_decryption_table:1" in err and err.count("\n") == 1


def test_decode_missing_file(capsys):
    code, _, err = run(capsys, "decode", "/nonexistent/file")
    assert code == 1 and "cannot read" in err


def test_python_dash_m_reads_stdin(tmp_path):
    # `python -m` puts the working directory first on sys.path: run it away from the source
    # tree, whose ikecore/ has no compiled _fast (DESIGN.md, import rule).
    result = subprocess.run(
        [sys.executable, "-I", "-m", "ikecore", "decode", "--json", "-"],
        input=SA_INIT.hex().encode(),
        capture_output=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["messages"][0]["spi_i"] == SA_INIT[:8].hex()


def test_decode_keylog_names_encrypted_fragments_without_opening_them(tmp_path, capsys):
    """RFC 7383 fragments are not reassembled: an SKF payload is reported as "fragment"."""
    first = VEC["ike_sa_init"]
    _vector_keylog(tmp_path)
    spi_i, spi_r = bytes.fromhex(first["spi_i"]), bytes.fromhex(first["spi_r"])
    cipher = IkeCipher(bytes.fromhex(first["keys"]["SK_ei"]), 16)
    prefix = encode_message(spi_i, spi_r, ExchangeType.IKE_AUTH, 1,
                            [EncryptedFragment(PayloadType.IDI, 1, 2, bytes(40))],
                            initiator=True, response=False)[:28]  # the header
    message = cipher.seal_skf(prefix, PayloadType.IDI, 1, 2, b"\x00" * 40)
    path = tmp_path / "fragment.bin"
    path.write_bytes(message)
    code, out, _ = run(capsys, "decode", "--json", "--keylog", str(tmp_path), str(path))
    assert code == 0
    [decoded] = json.loads(out)["messages"]
    assert decoded["payloads"][0]["payload"] == "SKF"
    assert decoded["decrypted"] == {"icv": "fragment", "payloads": []}
