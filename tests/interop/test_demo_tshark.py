"""`ikecore demo` (the RFC 7791 scenario) captured and read back by tshark and decode --keylog.

The demo (the package's default proposals) runs inside a namespace of its own (so the capture
on its loopback holds nothing else) with ``--keylog``; tcpdump captures lo. The demo picks free
unprivileged ports, which
are mapped to 500/4500 in a copy of the capture so that both decoders find IKE and ESP-in-UDP
by their standard ports (the UDP checksum is cleared, which IPv4 allows).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from interop_engine_checks import decode_matches_tshark, flip_key_tables, tshark_problems
from interop_peers import Capture, NetnsPair
from interop_tshark import Dissection, dissect
from scapy.layers.inet import UDP
from scapy.utils import rdpcap, wrpcap

from ikecore.config import DEFAULT_ESP_PROPOSALS, DEFAULT_IKE_PROPOSALS
from ikecore.constants import ExchangeType, NotifyType

DEMO_ESP_PACKETS = 12  # 3 echoes each way through each of the two Child SAs
CLIENT_INNER = {"10.0.0.1", "10.0.0.2"}
GATEWAY_INNER = "10.1.0.1"


@dataclass
class DemoRun:
    result: dict[str, Any]
    pcap: Path
    keys_dir: Path
    workdir: Path


def standard_ports(pcap: Path, ike_port: int, nat_port: int, out: Path) -> Path:
    """A copy of ``pcap`` with the demo's IKE and NAT-T ports renumbered 500 and 4500."""
    mapping = {ike_port: 500, nat_port: 4500}
    packets = rdpcap(str(pcap))
    for packet in packets:
        if UDP in packet:
            udp = packet[UDP]
            udp.sport = mapping.get(udp.sport, udp.sport)
            udp.dport = mapping.get(udp.dport, udp.dport)
            udp.chksum = 0  # RFC 768: no checksum (the payload is unchanged)
    wrpcap(str(out), packets)
    return out


@pytest.fixture(scope="module")
def demo_run(
    netns_pair_factory: Callable[[str], NetnsPair], tmp_path_factory: pytest.TempPathFactory
) -> DemoRun:
    netns = netns_pair_factory("d").initiator
    workdir = tmp_path_factory.mktemp("demo")
    capture = Capture(netns, "lo", workdir / "demo-lo.pcap")
    try:
        proc = netns.run([sys.executable, "-I", "-m", "ikecore", "demo", "--json", "--keylog",
                          str(workdir / "keys")], check=False, timeout=60)
    finally:
        raw = capture.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    pcap = standard_ports(raw, result["ports"]["ike"], result["ports"]["nat_t"],
                          workdir / "demo.pcap")
    return DemoRun(result, pcap, workdir / "keys", workdir)


def _notified(dissection: Dissection, exchange: int, notify: int, *, response: bool) -> int:
    return sum(1 for f in dissection.ike if f.exchange == exchange
               and f.is_response == response and notify in f.notify_types)


def test_tshark_decrypts_the_demo_with_its_keylog(
    demo_run: DemoRun, interop_case: Callable[..., None]
) -> None:
    result = demo_run.result
    assert result["ok"] and result["clones"] == 1 and result["moved"]
    dissection = dissect(demo_run.pcap, demo_run.keys_dir)
    ike_lines = [line for line in result["messages"] if "ESP" not in line]
    assert len(dissection.ike) == len(ike_lines)  # each message captured once
    assert tshark_problems(dissection) == []
    assert len(dissection.encrypted_ike) == len(dissection.ike) - 2
    # Inner payloads where the demo put them (RFC 7791 §5.1-5.2, RFC 4555 §3.5).
    for response in (False, True):
        assert _notified(dissection, ExchangeType.IKE_AUTH, NotifyType.CLONE_IKE_SA_SUPPORTED,
                         response=response) == 1
    assert _notified(dissection, ExchangeType.CREATE_CHILD_SA, NotifyType.CLONE_IKE_SA,
                     response=False) == 1
    assert _notified(dissection, ExchangeType.INFORMATIONAL, NotifyType.UPDATE_SA_ADDRESSES,
                     response=False) == 1
    spis = {tuple(bytes.fromhex(s) for s in pair) for pair in result["spis"].values()}
    assert {(f.spi_i, f.spi_r) for f in dissection.encrypted_ike} == spis
    # ESP: every packet decrypted to the ICMP echo the demo sent, the clone's from its new
    # address.
    assert len(dissection.esp) == DEMO_ESP_PACKETS
    for esp in dissection.esp:
        client, gateway = ((esp.inner_src, esp.inner_dst) if esp.icmp_type == 8
                           else (esp.inner_dst, esp.inner_src))
        assert client in CLIENT_INNER and gateway == GATEWAY_INNER, esp
    moved = result["addresses"]["clone"].split()[0]
    assert sum(moved in (e.src, e.dst) for e in dissection.esp) == DEMO_ESP_PACKETS // 2
    interop_case(initiator="ikecore demo", responder="ikecore demo",
                 ike=DEFAULT_IKE_PROPOSALS, esp=DEFAULT_ESP_PROPOSALS, decoder="tshark",
                 exercised="`ikecore demo` (clone, Child SA on the clone, MOBIKE move, ESP): "
                           "tshark decrypts every message and packet with its --keylog, ICVs "
                           "correct, 16432/16433/16400 and the inner ICMP where sent")


def test_one_wrong_key_byte_flags_every_icv_of_the_demo(
    demo_run: DemoRun, interop_case: Callable[..., None]
) -> None:
    flip_key_tables(demo_run.keys_dir, demo_run.workdir / "wrong")
    dissection = dissect(demo_run.pcap, demo_run.workdir / "wrong")
    assert len(dissection.encrypted_ike) >= 10
    assert all(f.icv_correct is False for f in dissection.encrypted_ike)
    assert not any(e.icv_good for e in dissection.esp)
    assert sum(e.icv_bad for e in dissection.esp) >= len(dissection.esp) // 2
    interop_case(initiator="ikecore demo", responder="ikecore demo",
                 ike=DEFAULT_IKE_PROPOSALS, esp=DEFAULT_ESP_PROPOSALS, decoder="tshark",
                 exercised="one wrong key byte: tshark flags every ICV")


def test_decode_keylog_reads_the_demo_as_tshark_does(
    demo_run: DemoRun, interop_case: Callable[..., None]
) -> None:
    assert decode_matches_tshark(demo_run.pcap, demo_run.keys_dir) == []
    interop_case(initiator="ikecore demo", responder="ikecore demo",
                 ike=DEFAULT_IKE_PROPOSALS, esp=DEFAULT_ESP_PROPOSALS, decoder="tshark",
                 exercised="`ikecore decode --keylog` = tshark (payload and notify types)")
