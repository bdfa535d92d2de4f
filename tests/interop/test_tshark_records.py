"""tshark accepts every record ikecore.wireshark writes, and its ESN limitation is as documented.

strongSwan only exercises AES-GCM-16 with 128/256-bit keys and no ESN (kernel-libipsec has no
ESN). Here IKE and ESP packets are sealed with `cryptography` (RFC 5282 / RFC 4106) for the
other ICV lengths and key sizes, and for an ESN SA, written to a pcap with scapy, and decrypted
by tshark with KeyLog's tables.
"""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from interop_tshark import Dissection, dissect
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from ikecore.constants import EncrId, ExchangeType, NotifyType, PayloadType
from ikecore.wireshark import KeyLog

SUITES = [(EncrId.AES_GCM_8, 128, 8), (EncrId.AES_GCM_12, 192, 12), (EncrId.AES_GCM_16, 256, 16)]
INITIATOR, RESPONDER = "192.0.2.1", "192.0.2.2"


def key_and_salt(bits: int, seed: int) -> bytes:
    return bytes((seed + i) % 256 for i in range(bits // 8 + 4))


def seal(key_and_salt: bytes, iv: bytes, aad: bytes, plain: bytes, icv_len: int) -> bytes:
    """AES-GCM with a 4-byte salt and 8-byte IV (RFC 4106 §4); ICV truncated to icv_len."""
    sealed = AESGCM(key_and_salt[:-4]).encrypt(key_and_salt[-4:] + iv, plain, aad)
    return sealed[: len(plain) + icv_len]


def ike_informational(spi_i: bytes, spi_r: bytes, sk_ei: bytes, icv_len: int) -> bytes:
    """INFORMATIONAL request {N(CLONE_IKE_SA_SUPPORTED)} from the initiator, SK sealed per
    RFC 5282 §5.1: AAD = IKE header || SK payload header, plaintext = payloads || pad length."""
    notify = struct.pack("!BBHBBH", 0, 0, 8, 0, 0, NotifyType.CLONE_IKE_SA_SUPPORTED)
    plain = notify + b"\x00"
    iv = bytes(range(8))
    sk_length = 4 + len(iv) + len(plain) + icv_len
    header = spi_i + spi_r + struct.pack(
        "!BBBBII", PayloadType.SK, 0x20, ExchangeType.INFORMATIONAL, 0x08, 2, 28 + sk_length
    )
    sk_header = struct.pack("!BBH", PayloadType.NOTIFY, 0, sk_length)
    return header + sk_header + iv + seal(sk_ei, iv, header + sk_header, plain, icv_len)


def esp_packet(spi: int, seq: int, key: bytes, icv_len: int, esn_high: int | None) -> bytes:
    """Tunnel-mode ESP carrying an ICMP echo (RFC 4303 §2); AAD per RFC 4106 §5:
    SPI || Seq (no ESN) or SPI || Seq-high || Seq-low (ESN)."""
    inner = bytes(IP(src="198.51.100.1", dst="198.51.100.2") / ICMP(type=8, id=1, seq=seq))
    pad_len = (-(len(inner) + 2)) % 4
    plain = inner + bytes(range(1, pad_len + 1)) + bytes([pad_len, 4])  # next header 4: IPv4
    iv = seq.to_bytes(8, "big")
    aad = struct.pack("!II", spi, seq)
    if esn_high is not None:
        aad = struct.pack("!III", spi, esn_high, seq)
    return struct.pack("!II", spi, seq) + iv + seal(key, iv, aad, plain, icv_len)


def udp_frame(payload: bytes, port: int) -> Ether:
    # Explicit MACs: a bare Ether() makes scapy ARP for the destination (2 s each).
    ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return ether / IP(src=INITIATOR, dst=RESPONDER) / UDP(sport=port, dport=port) / Raw(payload)


@pytest.fixture(scope="module")
def decoded(tmp_path_factory: pytest.TempPathFactory) -> Dissection:
    directory = tmp_path_factory.mktemp("records")
    keylog = KeyLog(directory / "keys")
    frames = []
    for n, (encr, bits, icv_len) in enumerate(SUITES, start=1):
        spi_i, spi_r = bytes([n]) * 8, bytes([0x80 + n]) * 8
        sk_ei, sk_er = key_and_salt(bits, n), key_and_salt(bits, 100 + n)
        keylog.add_ike_sa(spi_i, spi_r, encr, bits, sk_ei, sk_er)
        frames.append(udp_frame(ike_informational(spi_i, spi_r, sk_ei, icv_len), 500))
        key = key_and_salt(bits, 50 + n)
        keylog.add_esp_sa(INITIATOR, RESPONDER, 0x100 + n, encr, bits, key)
        frames.append(udp_frame(esp_packet(0x100 + n, 1, key, icv_len, None), 4500))
    # An ESN SA (RFC 4303 §2.2.1), still in the first 2^32 packets: seq-high is 0.
    esn_key = key_and_salt(128, 200)
    keylog.add_esp_sa(INITIATOR, RESPONDER, 0x200, EncrId.AES_GCM_16, 128, esn_key, esn=True)
    frames.append(udp_frame(esp_packet(0x200, 1, esn_key, 16, esn_high=0), 4500))
    pcap = directory / "synthetic.pcap"
    wrpcap(str(pcap), frames)
    return dissect(pcap, directory / "keys")


def test_tshark_decrypts_every_ike_record(decoded: Dissection, interop_case) -> None:
    assert len(decoded.ike) == len(SUITES)
    for frame in decoded.ike:
        assert frame.decrypted and frame.icv_correct is True, frame
        assert frame.payloads == (PayloadType.SK, PayloadType.NOTIFY)
        assert frame.notify_types == (NotifyType.CLONE_IKE_SA_SUPPORTED,)
    interop_case(
        initiator="synthetic (cryptography)", responder="tshark", ike="AES-GCM-8/12/16, "
        "128/192/256-bit", esp=None,
        exercised="tshark decrypts SK payloads with ikecore.wireshark records; N(16432) shown",
        decoder="tshark",
    )


def test_tshark_decrypts_every_esp_record(decoded: Dissection, interop_case) -> None:
    plain = [frame for frame in decoded.esp if frame.spi != 0x200]
    assert [frame.spi for frame in plain] == [0x101, 0x102, 0x103]
    for frame in plain:
        assert frame.icv_good and not frame.icv_bad, frame
        assert (frame.inner_src, frame.inner_dst, frame.icmp_type) == (
            "198.51.100.1", "198.51.100.2", 8
        )
    interop_case(
        initiator="synthetic (cryptography)", responder="tshark", ike=None,
        esp="AES-GCM-8/12/16, 128/192/256-bit",
        exercised="tshark decrypts ESP with ikecore.wireshark records, ICVs good",
        decoder="tshark",
    )


def test_tshark_cannot_verify_esn_icvs(decoded: Dissection, interop_case) -> None:
    """Wireshark 4.0 has no ESN: it decrypts (the keystream ignores the AAD) but computes the
    ICV over SPI || Seq without the high bits, so a correct ESN packet shows as bad."""
    [frame] = [frame for frame in decoded.esp if frame.spi == 0x200]
    assert frame.decrypted and frame.icmp_type == 8
    assert frame.icv_bad and not frame.icv_good
    interop_case(
        initiator="synthetic (cryptography)", responder="tshark", ike=None,
        esp="aes128gcm16-esn", exercised="tshark 4.0 cannot verify ESN ICVs (no ESN support)",
        decoder="tshark",
    )
