"""`ikecore initiate` and `ikecore respond`: the engine on real UDP, facing any IKEv2 peer.

Each command is an ``add_arguments(parser)`` / ``run(args) -> exit status`` pair, registered in
the ``ikecore`` command table (`ikecore.cli.COMMANDS`). Exit status 0 on success, 1 with a
one-line reason on stderr on failure; ``--json`` prints the result object on stdout.

ESP traffic without a kernel data path: ``initiate --ping N`` sends N ICMP echo requests
(``--ping-from`` -> ``--ping-to``, tunnel-mode inner IPv4) through the first Child SA and counts
the replies; ``initiate`` always, and ``respond --echo``, answer the echo requests they receive.
``--keylog DIR`` keeps Wireshark's ``ikev2_decryption_table`` and ``esp_sa`` up to date
(`ikecore.wireshark.KeyLog`), for IKE SAs, rekeyed ones and every Child SA.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import signal
import socket
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ikecore.aio import UdpDriver
from ikecore.config import Address, EndpointConfig, Identity, PeerConfig
from ikecore.constants import EncrId, ProtocolId
from ikecore.endpoint import IkeEndpoint
from ikecore.errors import CloneRefused
from ikecore.events import (
    ChildSaEstablished,
    ChildSaFailed,
    ChildSaRekeyed,
    CloneFailed,
    CloneRequestRefused,
    EspPacketReceived,
    Event,
    IkeSaCloned,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaMoved,
    IkeSaRekeyed,
)
from ikecore.sa import ChildSa
from ikecore.session import IkeSession
from ikecore.states import IkeState
from ikecore.suites import parse_proposals
from ikecore.wireshark import KeyLog

__all__ = [
    "INITIATE_HELP",
    "RESPOND_HELP",
    "add_initiate_arguments",
    "add_respond_arguments",
    "echo_reply_for",
    "echo_request",
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
    parser.add_argument("--keylog", metavar="DIR", help="write Wireshark's key tables to DIR")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def add_initiate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--local", required=True, help="local IP[:PORT] (port 500 by default)")
    parser.add_argument("--remote", required=True, help="responder IP[:PORT]")
    parser.add_argument("--remote-id", required=True, help="the responder's identity")
    _common_arguments(parser)
    parser.add_argument("--clone", type=int, default=0, help="clone the IKE SA N times (RFC 7791)")
    parser.add_argument("--hold", type=float, default=0.0, help="keep the SAs S seconds")
    parser.add_argument("--ping", type=int, default=0, help="send N ICMP echoes through ESP")
    parser.add_argument("--ping-from", default="10.0.0.1", help="inner source of the echoes")
    parser.add_argument("--ping-to", default="10.0.0.2", help="inner destination")


def add_respond_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", required=True, help="local IP[:PORT] to serve on")
    _common_arguments(parser)
    parser.add_argument("--count", type=int, default=0, help="exit after N IKE SAs ended")
    parser.add_argument(
        "--max-clones", type=int, default=None, help="clones allowed per peer (RFC 7791 §5.3)"
    )
    parser.add_argument("--echo", action="store_true", help="answer ICMP echoes received")


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


# --- ICMP echo through the Child SA (RFC 792), for ESP traffic without a TUN device ----------

_ICMP = 1
_ECHO_REQUEST, _ECHO_REPLY = 8, 0
_ECHO_ID = 0x1C0F
_ECHO_PAYLOAD = b"ikecore-echo"


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: bytes, dst: bytes, protocol: int, payload: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, protocol, 0, src, dst
    )
    return header[:10] + _checksum(header).to_bytes(2, "big") + header[12:] + payload


def _icmp(kind: int, ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    checksum = _checksum(header + payload)
    return struct.pack("!BBHHH", kind, 0, checksum, ident, seq) + payload


def echo_request(src: str, dst: str, seq: int) -> bytes:
    """An IPv4 ICMP echo request ``src`` -> ``dst`` (tunnel-mode inner packet)."""
    return _ipv4(
        socket.inet_aton(src),
        socket.inet_aton(dst),
        _ICMP,
        _icmp(_ECHO_REQUEST, _ECHO_ID, seq, _ECHO_PAYLOAD),
    )


def _icmp_of(packet: bytes) -> tuple[bytes, bytes, int, int, int, bytes] | None:
    """(src, dst, type, identifier, sequence, data) of an IPv4 ICMP echo packet."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != _ICMP:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if len(packet) < ihl + 8:
        return None
    kind, _, _, ident, seq = struct.unpack_from("!BBHHH", packet, ihl)
    return packet[12:16], packet[16:20], kind, ident, seq, packet[ihl + 8 :]


def echo_reply_for(packet: bytes) -> bytes | None:
    """The echo reply to an echo request (addresses swapped), None for anything else."""
    fields = _icmp_of(packet)
    if fields is None or fields[2] != _ECHO_REQUEST:
        return None
    src, dst, _, ident, seq, data = fields
    return _ipv4(dst, src, _ICMP, _icmp(_ECHO_REPLY, ident, seq, data))


def _is_our_reply(packet: bytes, sender: str) -> bool:
    fields = _icmp_of(packet)
    return (
        fields is not None
        and fields[2] == _ECHO_REPLY
        and fields[3] == _ECHO_ID
        and fields[0] == socket.inet_aton(sender)
    )


# --- the running peer --------------------------------------------------------------------------


class _Peer:
    """One command's endpoint on UDP: events go through `handle` (key log, echo answers)."""

    def __init__(self, endpoint: IkeEndpoint, driver: UdpDriver, keylog_dir: str | None) -> None:
        self.endpoint = endpoint
        self.driver = driver
        self.keylog = None if keylog_dir is None else KeyLog(keylog_dir)
        self.echo_replies_received = 0
        self.echoes_answered = 0
        self.esp_received = 0

    def handle(self, event: Event) -> None:
        if isinstance(event, IkeSaEstablished):
            self._log_ike(event.session)
        elif isinstance(event, IkeSaRekeyed):
            self._log_ike(event.new)
        elif isinstance(event, IkeSaCloned):
            self._log_ike(event.clone)  # its own SPIs and keys (RFC 7791 §5.2)
        elif isinstance(event, IkeSaMoved):
            # MOBIKE: ESP records are per outer address pair; log the new ones.
            for child in event.session.child_sas:
                self._log_child(event.session, child)
        elif isinstance(event, ChildSaEstablished):
            self._log_child(event.session, event.child)
        elif isinstance(event, ChildSaRekeyed):
            self._log_child(event.session, event.new)
        elif isinstance(event, EspPacketReceived):
            self.esp_received += 1
            reply = echo_reply_for(event.data)
            if reply is not None:
                self.endpoint.send_esp(event.child.spi_in, reply, _IPV4, self.driver.now())
                self.echoes_answered += 1
                self.driver.pump()

    def _log_ike(self, session: IkeSession) -> None:
        sa = session.sa
        if self.keylog is None or sa.keys is None or sa.transforms is None:
            return
        self.keylog.add_ike_sa(
            sa.spi_i,
            sa.spi_r,
            EncrId(sa.transforms.encr),
            sa.transforms.key_bits or 256,
            sa.keys.sk_ei,
            sa.keys.sk_er,
        )

    def _log_child(self, session: IkeSession, child: ChildSa) -> None:
        if self.keylog is None:
            return
        sa = session.sa
        local, remote = sa.local_address[0], sa.remote_address[0]
        # KeyLog wants the Child SA initiator's view: its SPI, then the responder's; KEYMAT
        # initiator-to-responder key first (RFC 7296 §2.17).
        if child.initiator:
            ends, spis, keys = (
                (local, remote),
                (child.spi_in, child.spi_out),
                (child.key_out, child.key_in),
            )
        else:
            ends, spis, keys = (
                (remote, local),
                (child.spi_out, child.spi_in),
                (child.key_in, child.key_out),
            )
        self.keylog.add_child_sa(
            ends[0],
            ends[1],
            int.from_bytes(spis[0], "big"),
            int.from_bytes(spis[1], "big"),
            EncrId(child.transforms.encr),
            child.transforms.key_bits or 256,
            keys[0],
            keys[1],
            esn=child.transforms.esn,
        )

    async def wait_for(self, accept: Callable[[Event], bool], deadline: float) -> Event:
        while True:
            remaining = deadline - self.driver.now()
            if remaining <= 0:
                raise _Failure("timed out")
            try:
                event = await self.driver.next_event(timeout=remaining)
            except asyncio.TimeoutError:
                raise _Failure("timed out") from None
            self.handle(event)
            if accept(event):
                return event


async def _start(
    endpoint: IkeEndpoint, address: Address, nat_port: int, args: argparse.Namespace
) -> _Peer:
    driver = UdpDriver(endpoint, [address[0]], ike_port=address[1])
    try:
        await driver.start()
    except OSError as exc:
        raise _Failure(f"cannot bind {address[0]} ports {address[1]}/{nat_port}: {exc}") from None
    return _Peer(endpoint, driver, args.keylog)


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
    runner = await _start(endpoint, local, args.nat_port, args)
    driver = runner.driver
    result: dict[str, Any] = {"established": False, "child_sas": 0, "clones": 0}
    try:
        deadline = driver.now() + args.timeout
        session = endpoint.initiate(peer, driver.now())
        driver.pump()
        first = await runner.wait_for(
            lambda e: isinstance(e, (IkeSaEstablished, IkeSaDeleted)), deadline
        )
        if isinstance(first, IkeSaDeleted):
            raise _Failure(f"IKE SA not established: {first.reason}")
        await runner.wait_for(
            lambda e: isinstance(e, (ChildSaEstablished, ChildSaFailed)), deadline
        )
        result.update(
            established=True,
            child_sas=len(session.child_sas),
            clone_supported_by_peer=session.sa.peer_clone_supported,
            mobike_supported_by_peer=session.sa.peer_mobike_supported,
            clone_refusals=[],
            ike_sa=_spis(session),
        )
        if args.clone:
            outcomes = await _clone(runner, session, args.clone, deadline)
            made = [_spis(c) for c in outcomes if isinstance(c, IkeSession)]
            refusals = [r for r in outcomes if isinstance(r, str)]
            result.update(clones=len(made), clone_refusals=refusals, clone_sas=made)
        if args.ping:
            result["echo_requests"] = args.ping
            result["echo_replies"] = await _ping(runner, session, args, deadline)
        if args.hold > 0:
            # Hold (answering echoes, liveness checks...) unless the peer ends the SA first.
            hold_until = driver.now() + args.hold
            # The peer's Delete may already have been handled while we waited for something
            # else: then there is nothing to hold.
            with contextlib.suppress(_Failure):
                if session.state == IkeState.ESTABLISHED:
                    await runner.wait_for(
                        lambda e: isinstance(e, IkeSaDeleted) and e.session is session,
                        hold_until,
                    )
        # Delete what is left: the IKE SA and any clones (each with its Child SAs).
        for ours in endpoint.sessions:
            if ours.state == IkeState.ESTABLISHED:
                ours.delete(driver.now())
                driver.pump()
                await runner.wait_for(
                    lambda e, s=ours: isinstance(e, IkeSaDeleted) and e.session is s,  # type: ignore[misc]
                    driver.now() + args.timeout,
                )
        result["deleted"] = True
        result["esp_received"] = runner.esp_received
        result["echoes_answered"] = runner.echoes_answered
        return result
    finally:
        driver.close()


async def _clone(
    runner: _Peer, session: IkeSession, count: int, deadline: float
) -> list[IkeSession | str]:
    """Clone ``session`` ``count`` times, one after the other (RFC 7791 §5.2): each entry is
    the clone made or the reason it was refused (by the peer, or locally after its refusal)."""
    outcomes: list[IkeSession | str] = []
    driver = runner.driver
    for _ in range(count):
        try:
            session.request_clone(driver.now())
        except CloneRefused as refused:
            outcomes.append(refused.reason)
            continue
        driver.pump()
        event = await runner.wait_for(
            lambda e: isinstance(e, (IkeSaCloned, CloneFailed)) and _parent(e) is session,
            deadline,
        )
        outcomes.append(event.clone if isinstance(event, IkeSaCloned) else _reason(event))
    return outcomes


def _parent(event: Event) -> IkeSession | None:
    if isinstance(event, IkeSaCloned):
        return event.parent
    return event.session if isinstance(event, CloneFailed) else None


def _reason(event: Event) -> str:
    return event.reason if isinstance(event, CloneFailed) else ""


async def _ping(
    runner: _Peer, session: IkeSession, args: argparse.Namespace, deadline: float
) -> int:
    """ICMP echo requests through the first Child SA; the number of replies."""
    if not session.child_sas:
        raise _Failure("no Child SA to ping through")
    child = session.child_sas[0]
    driver = runner.driver
    for seq in range(args.ping):
        packet = echo_request(args.ping_from, args.ping_to, seq)
        runner.endpoint.send_esp(child.spi_in, packet, _IPV4, driver.now())
    driver.pump()
    replies = 0
    while replies < args.ping:
        try:
            await runner.wait_for(
                lambda e: isinstance(e, EspPacketReceived) and _is_our_reply(e.data, args.ping_to),
                min(deadline, driver.now() + 2.0 + 0.1 * args.ping),
            )
        except _Failure:
            break
        replies += 1
    return replies


async def _respond(args: argparse.Namespace) -> dict[str, Any]:
    listen = _host_port(args.listen, 500)
    if args.max_clones is not None and args.max_clones < 0:
        raise _Failure("--max-clones must be >= 0")
    peer = PeerConfig(
        local_id=Identity.parse(args.local_id),
        psk=_psk(args.psk_file),
        max_clones=args.max_clones,
        **_proposals(args),
    )
    endpoint = IkeEndpoint(
        EndpointConfig(peers=(peer,), ike_proposals=peer.ike_proposals, nat_port=args.nat_port)
    )
    runner = await _start(endpoint, listen, args.nat_port, args)
    driver = runner.driver
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    summary: dict[str, Any] = {"ike_sas": 0, "child_sas": 0, "ended": 0}
    sessions: list[dict[str, Any]] = []
    clone_support: list[bool] = []
    clones = 0
    clone_refusals: list[str] = []

    def account(event: object) -> None:
        nonlocal clones
        if isinstance(event, IkeSaEstablished):
            summary["ike_sas"] += 1
            sessions.append(_spis(event.session))
            clone_support.append(event.session.sa.peer_clone_supported)
        elif isinstance(event, IkeSaCloned):
            clones += 1
            sessions.append(_spis(event.clone))
        elif isinstance(event, CloneRequestRefused):
            clone_refusals.append(event.reason)
        elif isinstance(event, ChildSaEstablished):
            summary["child_sas"] += 1

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
            if isinstance(event, EspPacketReceived) and not args.echo:
                runner.esp_received += 1
            else:
                runner.handle(event)
            account(event)
            if isinstance(event, IkeSaDeleted) and event.reason != "rekeyed":
                summary["ended"] += 1
                if args.count and summary["ended"] >= args.count:
                    break
        # Interrupted (or done): delete what is left and wait briefly for the answers.
        for session in endpoint.sessions:
            if session.state == IkeState.ESTABLISHED:
                session.delete(driver.now())
        driver.pump()
        end = driver.now() + 2.0
        while endpoint.sessions and driver.now() < end:
            try:
                event = await driver.next_event(timeout=end - driver.now())
            except asyncio.TimeoutError:
                break
            runner.handle(event)
            # A signal can stop the loop above with events still queued (an SA established
            # just before it): they count too; our own Deletes are not "ended" by the peer.
            account(event)
        summary.update(
            sessions=sessions,
            clones=clones,
            clone_refusals=clone_refusals,
            clone_supported_by_peer=bool(clone_support) and all(clone_support),
            esp_received=runner.esp_received,
            echoes_answered=runner.echoes_answered,
        )
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
