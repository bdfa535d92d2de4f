"""`ikecore initiate` and `ikecore respond`: the engine on real UDP, facing any IKEv2 peer.

Each command is an ``add_arguments(parser)`` / ``run(args) -> exit status`` pair, registered in
the ``ikecore`` command table (`ikecore.cli.COMMANDS`). Exit status 0 on success, 1 with a
one-line reason on stderr on failure; ``--json`` prints the result object on stdout.

ESP traffic for tests without a kernel data path: ``initiate --ping N`` sends N small IPv4
packets through the first Child SA and counts the ones that come back; ``respond --echo``
sends every ESP packet it receives back through the same Child SA.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import signal
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ikecore.aio import UdpDriver
from ikecore.config import Address, EndpointConfig, Identity, PeerConfig
from ikecore.constants import ProtocolId
from ikecore.endpoint import IkeEndpoint
from ikecore.events import (
    ChildSaEstablished,
    ChildSaFailed,
    EspPacketReceived,
    Event,
    IkeSaDeleted,
    IkeSaEstablished,
)
from ikecore.session import IkeSession
from ikecore.states import IkeState
from ikecore.suites import parse_proposals

__all__ = [
    "INITIATE_HELP",
    "RESPOND_HELP",
    "add_initiate_arguments",
    "add_respond_arguments",
    "run_initiate",
    "run_respond",
]

INITIATE_HELP = "establish an IKE SA and a Child SA with a responder, then delete them"
RESPOND_HELP = "answer IKEv2 initiators until interrupted or --count IKE SAs are done"

_IPV4 = 4  # ESP Next Header for a tunnelled IPv4 packet


class _Failure(Exception):
    """The one-line reason of a failed command."""


def _host_port(text: str, default_port: int) -> Address:
    """``IPv4[:PORT]``, ``[IPv6]:PORT`` or a bare IPv6 address."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    try:
        ipaddress.ip_address(host)
        number = int(port) if port else default_port
    except ValueError:
        raise _Failure(f"bad address {text!r}: expected IP[:PORT]") from None
    if not 0 < number < 65536:
        raise _Failure(f"bad port in {text!r}")
    return (host, number)


def _psk(path: str) -> bytes:
    """The PSK file's content: ``0x`` + hex, or the text itself (trailing newline removed)."""
    try:
        text = Path(path).read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise _Failure(f"cannot read PSK file {path}: {exc.strerror}") from None
    if text.startswith(b"0x"):
        try:
            return bytes.fromhex(text[2:].decode())
        except ValueError:
            raise _Failure(f"PSK file {path}: bad hex after 0x") from None
    if not text:
        raise _Failure(f"PSK file {path} is empty")
    return text


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--psk-file", required=True, help="pre-shared key (text, or 0x + hex)")
    parser.add_argument("--local-id", required=True, help="our identity (IP, FQDN, user@host)")
    parser.add_argument("--ike", default="aes256gcm16-prfsha256-x25519", help="IKE proposals")
    parser.add_argument("--esp", default="aes256gcm16", help="ESP proposals")
    parser.add_argument("--nat-port", type=int, default=4500, help="NAT-T port (default 4500)")
    parser.add_argument("--timeout", type=float, default=30.0, help="give up after S seconds")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def add_initiate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--local", required=True, help="local IP[:PORT] (port 500 by default)")
    parser.add_argument("--remote", required=True, help="responder IP[:PORT]")
    parser.add_argument("--remote-id", required=True, help="the responder's identity")
    _common_arguments(parser)
    parser.add_argument("--hold", type=float, default=0.0, help="keep the SAs S seconds")
    parser.add_argument("--ping", type=int, default=0, help="send N ESP packets, count echoes")


def add_respond_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", required=True, help="local IP[:PORT] to serve on")
    _common_arguments(parser)
    parser.add_argument("--count", type=int, default=0, help="exit after N IKE SAs ended")
    parser.add_argument("--echo", action="store_true", help="send received ESP packets back")


def _proposals(args: argparse.Namespace) -> dict[str, Any]:
    try:
        return {
            "ike_proposals": parse_proposals(args.ike, ProtocolId.IKE),
            "esp_proposals": parse_proposals(args.esp, ProtocolId.ESP),
        }
    except ValueError as exc:
        raise _Failure(str(exc)) from None


def _spis(session: IkeSession) -> dict[str, Any]:
    return {
        "spi_i": session.sa.spi_i.hex(),
        "spi_r": session.sa.spi_r.hex(),
        "child_sas": [
            {"spi_in": c.spi_in.hex(), "spi_out": c.spi_out.hex()} for c in session.child_sas
        ],
    }


def _ping_packet(number: int) -> bytes:
    """A minimal IPv4/UDP packet 10.0.0.1 -> 10.0.0.2 carrying its sequence number."""
    payload = b"ikecore-ping" + number.to_bytes(4, "big")
    udp = struct.pack("!HHHH", 40000, 7, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        number & 0xFFFF,
        0,
        64,
        17,
        0,
        bytes([10, 0, 0, 1]),
        bytes([10, 0, 0, 2]),
    )
    checksum = _ip_checksum(header)
    return header[:10] + checksum.to_bytes(2, "big") + header[12:] + udp


def _ip_checksum(header: bytes) -> int:
    total = sum(int.from_bytes(header[i : i + 2], "big") for i in range(0, len(header), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


async def _wait_for(
    driver: UdpDriver, accept: Callable[[Event], bool], deadline: float, seen: list[Event]
) -> Event:
    while True:
        remaining = deadline - driver.now()
        if remaining <= 0:
            raise _Failure("timed out")
        try:
            event = await driver.next_event(timeout=remaining)
        except asyncio.TimeoutError:
            raise _Failure("timed out") from None
        seen.append(event)
        if accept(event):
            return event


async def _initiate(args: argparse.Namespace) -> dict[str, Any]:
    local = _host_port(args.local, 500)
    remote = _host_port(args.remote, 500)
    peer = PeerConfig(
        local_id=Identity.parse(args.local_id),
        remote_id=Identity.parse(args.remote_id),
        psk=_psk(args.psk_file),
        remote_address=remote,
        local_address=local,
        **_proposals(args),
        name="cli",
    )
    endpoint = IkeEndpoint(EndpointConfig(peers=(peer,), nat_port=args.nat_port))
    driver = UdpDriver(endpoint, [local[0]], ike_port=local[1])
    try:
        await driver.start()
    except OSError as exc:
        raise _Failure(f"cannot bind {local[0]} ports {local[1]}/{args.nat_port}: {exc}") from None
    seen: list[Event] = []
    result: dict[str, Any] = {"established": False, "child_sas": 0, "clones": 0}
    try:
        deadline = driver.now() + args.timeout
        session = endpoint.initiate(peer, driver.now())
        driver.pump()
        first = await _wait_for(
            driver, lambda e: isinstance(e, (IkeSaEstablished, IkeSaDeleted)), deadline, seen
        )
        if isinstance(first, IkeSaDeleted):
            raise _Failure(f"IKE SA not established: {first.reason}")
        await _wait_for(
            driver, lambda e: isinstance(e, (ChildSaEstablished, ChildSaFailed)), deadline, seen
        )
        result.update(
            established=True,
            child_sas=len(session.child_sas),
            clone_supported_by_peer=session.sa.peer_clone_supported,
            mobike_supported_by_peer=session.sa.peer_mobike_supported,
            clone_refusals=[],
            ike_sa=_spis(session),
        )
        if args.ping:
            result["esp_sent"], result["esp_received"] = await _ping(
                driver, session, args.ping, deadline, seen
            )
        if args.hold > 0:
            await asyncio.sleep(args.hold)
        if session.state == IkeState.ESTABLISHED:
            session.delete(driver.now())
            driver.pump()
            await _wait_for(
                driver,
                lambda e: isinstance(e, IkeSaDeleted) and e.session is session,
                driver.now() + args.timeout,
                seen,
            )
        result["deleted"] = True
        return result
    finally:
        driver.close()


async def _ping(
    driver: UdpDriver, session: IkeSession, count: int, deadline: float, seen: list[Event]
) -> tuple[int, int]:
    if not session.child_sas:
        raise _Failure("no Child SA to ping through")
    child = session.child_sas[0]
    for number in range(count):
        driver.endpoint.send_esp(child.spi_in, _ping_packet(number), _IPV4, driver.now())
    driver.pump()
    received = 0
    while received < count:
        try:
            await _wait_for(driver, lambda e: isinstance(e, EspPacketReceived), deadline, seen)
        except _Failure:
            break
        received += 1
    return count, received


async def _respond(args: argparse.Namespace) -> dict[str, Any]:
    listen = _host_port(args.listen, 500)
    peer = PeerConfig(
        local_id=Identity.parse(args.local_id), psk=_psk(args.psk_file), **_proposals(args)
    )
    endpoint = IkeEndpoint(
        EndpointConfig(peers=(peer,), ike_proposals=peer.ike_proposals, nat_port=args.nat_port)
    )
    driver = UdpDriver(endpoint, [listen[0]], ike_port=listen[1])
    try:
        await driver.start()
    except OSError as exc:
        raise _Failure(
            f"cannot bind {listen[0]} ports {listen[1]}/{args.nat_port}: {exc}"
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    summary: dict[str, Any] = {"ike_sas": 0, "child_sas": 0, "ended": 0, "esp_echoed": 0}
    sessions: list[dict[str, Any]] = []
    try:
        while not stop.is_set():
            getter = asyncio.ensure_future(driver.next_event())
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if getter not in done:
                getter.cancel()
                break
            event = getter.result()
            if isinstance(event, IkeSaEstablished):
                summary["ike_sas"] += 1
                sessions.append(_spis(event.session))
            elif isinstance(event, ChildSaEstablished):
                summary["child_sas"] += 1
            elif isinstance(event, EspPacketReceived) and args.echo:
                endpoint.send_esp(event.child.spi_in, event.data, event.next_header, driver.now())
                summary["esp_echoed"] += 1
                driver.pump()
            elif isinstance(event, IkeSaDeleted) and event.reason != "rekeyed":
                summary["ended"] += 1
                if args.count and summary["ended"] >= args.count:
                    break
        for session in endpoint.sessions:
            if session.state == IkeState.ESTABLISHED:
                session.delete(driver.now())
        driver.pump()
        end = driver.now() + 2.0
        while endpoint.sessions and driver.now() < end:
            try:
                await driver.next_event(timeout=end - driver.now())
            except asyncio.TimeoutError:
                break
        summary["sessions"] = sessions
        summary["clones"] = 0
        return summary
    finally:
        driver.close()


def _run(coroutine_factory: Callable[[], Any], args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(coroutine_factory())
    except _Failure as failure:
        print(f"ikecore {args.command}: {failure}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": str(failure)}))
        return 1
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


def run_initiate(args: argparse.Namespace) -> int:
    return _run(lambda: _initiate(args), args)


def run_respond(args: argparse.Namespace) -> int:
    return _run(lambda: _respond(args), args)
