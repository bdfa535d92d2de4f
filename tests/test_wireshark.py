"""ikecore.wireshark: record formats, argument checks and KeyLog's files.

The formats are Wireshark 4.0's (checked against tshark 4.0.17 in tests/interop, which
decrypts real strongSwan traffic with these records). Here: exact text, bad arguments, and
that KeyLog keeps both files in step with add/remove, atomically, readable by the owner only.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ikecore.constants import EncrId, IntegId
from ikecore.wireshark import (
    ESP_TABLE,
    IKEV2_TABLE,
    EspSaKeys,
    IkeSaKeys,
    KeyLog,
    esp_record,
    ikev2_record,
    read_key_tables,
    wireshark_can_decrypt,
)

SPI_I = bytes.fromhex("0102030405060708")
SPI_R = bytes.fromhex("1112131415161718")
KEY128 = bytes(range(16)) + bytes.fromhex("a0a1a2a3")  # key || salt
KEY128_R = bytes(range(16, 32)) + bytes.fromhex("b0b1b2b3")
KEY256 = bytes(range(32)) + bytes.fromhex("c0c1c2c3")


def records(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def test_ikev2_record_matches_wireshark_format() -> None:
    assert ikev2_record(SPI_I, SPI_R, EncrId.AES_GCM_16, 128, KEY128, KEY128_R) == (
        "0102030405060708,1112131415161718,"
        "000102030405060708090a0b0c0d0e0fa0a1a2a3,101112131415161718191a1b1c1d1e1fb0b1b2b3,"
        '"AES-GCM-128 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"'
    )


@pytest.mark.parametrize(
    ("encr", "bits", "name"),
    [
        (EncrId.AES_GCM_8, 128, "AES-GCM-128 with 8 octet ICV [RFC5282]"),
        (EncrId.AES_GCM_12, 192, "AES-GCM-192 with 12 octet ICV [RFC5282]"),
        (EncrId.AES_GCM_16, 256, "AES-GCM-256 with 16 octet ICV [RFC5282]"),
    ],
)
def test_ikev2_record_names_icv_and_key_length(encr: EncrId, bits: int, name: str) -> None:
    key = bytes(bits // 8 + 4)
    assert f'"{name}"' in ikev2_record(SPI_I, SPI_R, encr, bits, key, key)


def test_esp_record_matches_wireshark_format() -> None:
    assert esp_record("192.0.2.1", "192.0.2.2", 0xC0DE, EncrId.AES_GCM_16, 128, KEY128) == (
        '"IPv4","192.0.2.1","192.0.2.2","0x0000c0de","AES-GCM with 16 octet ICV [RFC4106]",'
        '"0x000102030405060708090a0b0c0d0e0fa0a1a2a3","NULL",""'
    )


def test_esp_record_ipv6_and_wildcards() -> None:
    assert esp_record("2001:db8::1", "*", 1, EncrId.AES_GCM_8, 256, KEY256).startswith(
        '"IPv6","2001:db8::1","*","0x00000001","AES-GCM with 8 octet ICV [RFC4106]"'
    )
    assert esp_record("*", "*", 1, EncrId.AES_GCM_16, 256, KEY256).startswith('"IPv4","*","*"')


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encr": EncrId.CHACHA20_POLY1305}, "CHACHA20_POLY1305"),
        ({"encr": EncrId.AES_CBC}, "AES_CBC"),
        ({"bits": 160}, "128, 192 or 256"),
        ({"sk_ei": KEY128[:16]}, "sk_ei must be the 128-bit AES key plus its 4-byte salt"),
        ({"sk_er": KEY256}, "sk_er"),
        ({"spi_i": SPI_I[:4]}, "spi_i must be 8 bytes"),
    ],
)
def test_ikev2_record_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "spi_i": SPI_I, "spi_r": SPI_R, "encr": EncrId.AES_GCM_16, "bits": 128,
        "sk_ei": KEY128, "sk_er": KEY128_R,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ikev2_record(args["spi_i"], args["spi_r"], args["encr"], args["bits"],  # type: ignore[arg-type]
                     args["sk_ei"], args["sk_er"])  # type: ignore[arg-type]


def test_records_reject_non_bytes_keys() -> None:
    with pytest.raises(TypeError, match="sk_ei must be bytes-like"):
        ikev2_record(SPI_I, SPI_R, EncrId.AES_GCM_16, 128, KEY128.hex(), KEY128)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be bytes-like"):
        esp_record("192.0.2.1", "192.0.2.2", 1, EncrId.AES_GCM_16, 128, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("src", "dst", "spi", "message"),
    [
        ("192.0.2.1", "192.0.2.2", 0, "non-zero 32-bit"),
        ("192.0.2.1", "192.0.2.2", 1 << 32, "non-zero 32-bit"),
        ("gateway", "192.0.2.2", 1, "src must be an IP address"),
        ("192.0.2.1", "2001:db8::2", 1, "different address families"),
    ],
)
def test_esp_record_rejects_bad_arguments(src: str, dst: str, spi: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        esp_record(src, dst, spi, EncrId.AES_GCM_16, 128, KEY128)


def test_wireshark_can_decrypt() -> None:
    assert wireshark_can_decrypt(EncrId.AES_GCM_16)
    assert not wireshark_can_decrypt(EncrId.AES_GCM_16, esn=True)
    assert not wireshark_can_decrypt(EncrId.CHACHA20_POLY1305)
    assert not wireshark_can_decrypt(EncrId.AES_CBC, IntegId.HMAC_SHA2_256_128)


def test_keylog_creates_private_empty_tables(tmp_path: Path) -> None:
    keylog = KeyLog(tmp_path / "keys")
    assert keylog.ikev2_path == tmp_path / "keys" / IKEV2_TABLE
    assert keylog.esp_path == tmp_path / "keys" / ESP_TABLE
    for path in (keylog.ikev2_path, keylog.esp_path):
        assert records(path) == []
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700


def test_keylog_tracks_sas(tmp_path: Path) -> None:
    keylog = KeyLog(tmp_path, retain_deleted=False)
    keylog.add_ike_sa(SPI_I, SPI_R, EncrId.AES_GCM_16, 128, KEY128, KEY128_R)
    keylog.add_ike_sa(SPI_R, SPI_I, EncrId.AES_GCM_16, 128, KEY128_R, KEY128)  # e.g. a clone
    keylog.add_child_sa("192.0.2.1", "192.0.2.2", 0x1111, 0x2222, EncrId.AES_GCM_16, 128,
                        KEY128, KEY128_R)
    assert [line.split(",")[0] for line in records(keylog.ikev2_path)] == [
        SPI_I.hex(), SPI_R.hex()
    ]
    # Initiator -> responder under the responder's SPI with the initiator's key, and back.
    assert records(keylog.esp_path) == [
        esp_record("192.0.2.1", "192.0.2.2", 0x2222, EncrId.AES_GCM_16, 128, KEY128),
        esp_record("192.0.2.2", "192.0.2.1", 0x1111, EncrId.AES_GCM_16, 128, KEY128_R),
    ]
    keylog.remove_ike_sa(SPI_I, SPI_R)
    keylog.remove_esp_sa("192.0.2.1", "192.0.2.2", 0x2222)
    assert [line.split(",")[0] for line in records(keylog.ikev2_path)] == [SPI_R.hex()]
    assert records(keylog.esp_path) == [
        esp_record("192.0.2.2", "192.0.2.1", 0x1111, EncrId.AES_GCM_16, 128, KEY128_R)
    ]
    # No temporary files left behind by the atomic rewrites.
    assert sorted(p.name for p in tmp_path.iterdir()) == [ESP_TABLE, IKEV2_TABLE]


def test_keylog_retains_deleted_sas_by_default(tmp_path: Path) -> None:
    keylog = KeyLog(tmp_path)
    keylog.add_ike_sa(SPI_I, SPI_R, EncrId.AES_GCM_16, 128, KEY128, KEY128_R)
    keylog.add_esp_sa("192.0.2.1", "192.0.2.2", 7, EncrId.AES_GCM_16, 128, KEY128)
    keylog.remove_ike_sa(SPI_I, SPI_R)
    keylog.remove_esp_sa("192.0.2.1", "192.0.2.2", 7)
    assert len(records(keylog.ikev2_path)) == 1
    assert len(records(keylog.esp_path)) == 1


def test_keylog_replaces_a_record_for_the_same_sa(tmp_path: Path) -> None:
    keylog = KeyLog(tmp_path)
    keylog.add_esp_sa("192.0.2.1", "192.0.2.2", 7, EncrId.AES_GCM_16, 128, KEY128)
    keylog.add_esp_sa("192.0.2.1", "192.0.2.2", 7, EncrId.AES_GCM_16, 128, KEY128_R)
    assert records(keylog.esp_path) == [
        esp_record("192.0.2.1", "192.0.2.2", 7, EncrId.AES_GCM_16, 128, KEY128_R)
    ]


def test_keylog_comments_what_wireshark_cannot_decrypt(tmp_path: Path) -> None:
    keylog = KeyLog(tmp_path)
    chacha_key = bytes(36)
    keylog.add_ike_sa(SPI_I, SPI_R, EncrId.CHACHA20_POLY1305, 256, chacha_key, chacha_key)
    keylog.add_esp_sa("192.0.2.1", "192.0.2.2", 7, EncrId.CHACHA20_POLY1305, 256, chacha_key)
    keylog.add_esp_sa("192.0.2.1", "192.0.2.2", 8, EncrId.AES_GCM_16, 128, KEY128, esn=True)
    ike_text, esp_text = keylog.ikev2_path.read_text(), keylog.esp_path.read_text()
    assert records(keylog.ikev2_path) == []
    assert f"{SPI_I.hex()},{SPI_R.hex()}: CHACHA20_POLY1305 not decryptable" in ike_text
    assert "0x00000007 192.0.2.1 -> 192.0.2.2: CHACHA20_POLY1305 not decryptable" in esp_text
    # The comment lines carry no key material.
    assert chacha_key.hex() not in ike_text + esp_text
    # ESN: the record is written (decryption works) with a warning about the ICV verdicts.
    assert "# ESN: ICVs will show as bad" in esp_text
    assert records(keylog.esp_path) == [
        esp_record("192.0.2.1", "192.0.2.2", 8, EncrId.AES_GCM_16, 128, KEY128)
    ]


def test_keylog_rejects_bad_keys_without_touching_the_files(tmp_path: Path) -> None:
    keylog = KeyLog(tmp_path)
    keylog.add_ike_sa(SPI_I, SPI_R, EncrId.AES_GCM_16, 128, KEY128, KEY128_R)
    before = keylog.ikev2_path.read_text()
    with pytest.raises(ValueError, match="sk_er"):
        keylog.add_ike_sa(SPI_R, SPI_I, EncrId.AES_GCM_16, 128, KEY128, KEY128_R[:-1])
    assert keylog.ikev2_path.read_text() == before


def test_read_key_tables_round_trips_keylog(tmp_path: Path) -> None:
    keylog = KeyLog(tmp_path)
    keylog.add_ike_sa(SPI_I, SPI_R, EncrId.AES_GCM_16, 128, KEY128, KEY128_R)
    keylog.add_ike_sa(SPI_R, SPI_I, EncrId.AES_GCM_8, 256, KEY256, KEY256)
    keylog.add_ike_sa(SPI_I, SPI_I, EncrId.CHACHA20_POLY1305, 256, bytes(36), bytes(36))
    keylog.add_child_sa("192.0.2.1", "192.0.2.2", 0x1111, 0x2222, EncrId.AES_GCM_12, 256,
                        KEY256, KEY256)
    keylog.add_esp_sa("2001:db8::1", "*", 9, EncrId.AES_GCM_16, 128, KEY128, esn=True)
    ike, esp = read_key_tables(tmp_path)
    assert ike == [
        IkeSaKeys(SPI_I, SPI_R, EncrId.AES_GCM_16, 128, KEY128, KEY128_R),
        IkeSaKeys(SPI_R, SPI_I, EncrId.AES_GCM_8, 256, KEY256, KEY256),
    ]
    assert esp == [
        EspSaKeys("192.0.2.1", "192.0.2.2", 0x2222, EncrId.AES_GCM_12, 256, KEY256),
        EspSaKeys("192.0.2.2", "192.0.2.1", 0x1111, EncrId.AES_GCM_12, 256, KEY256),
        EspSaKeys("2001:db8::1", "*", 9, EncrId.AES_GCM_16, 128, KEY128),
    ]


def test_read_key_tables_skips_other_algorithms_and_missing_files(tmp_path: Path) -> None:
    assert read_key_tables(tmp_path) == ([], [])
    (tmp_path / IKEV2_TABLE).write_text(
        "# This file is automatically generated, DO NOT MODIFY.\n"
        f'{SPI_I.hex()},{SPI_R.hex()},00,00,"AES-CBC-128 [RFC3602]",00,00,'
        '"HMAC_SHA2_256_128 [RFC4868]"\n'
    )
    (tmp_path / ESP_TABLE).write_text(
        '"IPv4","*","*","0x00000001","AES-CBC [RFC3602]","0x00","HMAC-SHA-1-96 [RFC2404]","0x00"\n'
    )
    assert read_key_tables(tmp_path) == ([], [])


@pytest.mark.parametrize(
    ("table", "line", "message"),
    [
        (IKEV2_TABLE, "0102,0304", "2 fields, expected 8"),
        (IKEV2_TABLE, 'zz,{r},{k},{k},"AES-GCM-128 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"',
         "'zz' is not hex"),
        (IKEV2_TABLE, '{i},{r},{k},00,"AES-GCM-128 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"',
         "sk_er must be the 128-bit AES key"),
        (ESP_TABLE, '"IPv4","192.0.2.1","192.0.2.2","0xnope","AES-GCM with 16 octet ICV [RFC4106]",'
         '"0x{k}","NULL",""', "invalid literal"),
        (ESP_TABLE, '"IPv4","192.0.2.1","192.0.2.2","0x00000001","AES-GCM with 16 octet ICV '
         '[RFC4106]","0x00112233","NULL",""', "AES key length must be 128, 192 or 256"),
    ],
)
def test_read_key_tables_names_the_bad_line(
    tmp_path: Path, table: str, line: str, message: str
) -> None:
    text = line.format(i=SPI_I.hex(), r=SPI_R.hex(), k=KEY128.hex())
    (tmp_path / table).write_text(f"# header\n{text}\n")
    with pytest.raises(ValueError, match=message) as raised:
        read_key_tables(tmp_path)
    assert f"{table}:2:" in str(raised.value)


def test_add_session_logs_an_engine_sa_so_that_its_messages_and_esp_open(tmp_path: Path) -> None:
    """Both endpoints of an in-memory engine pair log their session; the tables read back
    give the SA's SK keys, and the ESP key of each direction opens (independently, with
    `cryptography`) the packet the engine sent that way."""
    from engine_harness import INITIATOR_HOST, RESPONDER_HOST, drain, pair
    from interop_tshark import open_esp_aes_gcm

    from ikecore.events import IkeSaEstablished

    initiator, responder, peer, net = pair(esp="aes128gcm16")
    session = initiator.initiate(peer, 0.0)
    net.run(0.0)
    drain(initiator)
    [theirs] = [e.session for e in drain(responder) if isinstance(e, IkeSaEstablished)]
    for side, name in ((session, "i"), (theirs, "r")):
        KeyLog(tmp_path / name).add_session(side)
    tables = [read_key_tables(tmp_path / name) for name in ("i", "r")]
    assert tables[0] == tables[1]  # both ends describe the same SAs the same way
    [ike], esp = tables[0]
    sa = session.sa
    assert sa.keys is not None
    assert (ike.spi_i, ike.spi_r, ike.sk_ei, ike.sk_er) == (
        sa.spi_i, sa.spi_r, sa.keys.sk_ei, sa.keys.sk_er)
    by_direction = {(e.src, e.dst): e for e in esp}
    assert set(by_direction) == {(INITIATOR_HOST, RESPONDER_HOST), (RESPONDER_HOST, INITIATOR_HOST)}
    [mine] = session.child_sas
    [peers] = theirs.child_sas
    for endpoint, child, src, dst in ((initiator, mine, INITIATOR_HOST, RESPONDER_HOST),
                                      (responder, peers, RESPONDER_HOST, INITIATOR_HOST)):
        endpoint.send_esp(child.spi_in, b"inner packet", 4, 0.0)
        [datagram] = endpoint.datagrams_to_send(0.0)
        record = by_direction[(src, dst)]
        assert (record.encr, record.key_bits) == (EncrId.AES_GCM_16, 128)
        assert record.spi == int.from_bytes(datagram.data[:4], "big")
        assert open_esp_aes_gcm(datagram.data, record.key).startswith(b"inner packet")
