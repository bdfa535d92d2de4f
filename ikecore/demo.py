"""`ikecore demo`: RFC 7791 end to end on loopback UDP, as an ordinary user.

The ``interfaces`` scenario (RFC 7791 §1, App. A): a client with two local addresses and a
gateway, each an `IkeEndpoint` on the asyncio driver with unprivileged ports.

1. IKE_SA_INIT + IKE_AUTH (PSK) from the client's first address, with CLONE_IKE_SA_SUPPORTED
   and MOBIKE_SUPPORTED: the IKE SA and its Child SA (VPN_0).
2. The client clones the IKE SA: CREATE_CHILD_SA {N(CLONE_IKE_SA), SA, Ni, KEi} on the old SA.
3. A Child SA (VPN_1) on the clone.
4. The clone moves to the client's second address with MOBIKE (UPDATE_SA_ADDRESSES); the old
   SA stays on the first.
5. ICMP echo requests through both Child SAs, answered by the gateway: each must arrive, on
   the address of its own IKE SA.
6. Both IKE SAs are deleted.

Every IKE message is printed as it leaves or reaches the client, decrypted with the client's
own keys to name its payloads. Any failed step ends the command with a non-zero status and a
one-line reason. ``--scenario cluster`` (moving a clone to another gateway node, in another
process, through a shared store) is in `ikecore.demo_cluster`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ikecore.aio import UdpDriver
from ikecore.config import Address, EndpointConfig, Identity, PeerConfig, TrafficSelector
from ikecore.constants import ExchangeType, NotifyType
from ikecore.endpoint import Datagram, IkeEndpoint
from ikecore.errors import IkeError
from ikecore.events import (
    ChildSaEstablished,
    ChildSaFailed,
    CloneFailed,
    EspPacketReceived,
    Event,
    IkeSaCloned,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaMoved,
    IkeSaMoveFailed,
)
from ikecore.peer_commands import echo_reply_for, echo_request
from ikecore.sa import ChildSa
from ikecore.session import IkeSession
from ikecore.store import open_store
from ikecore.wire import (
    Authentication,
    Delete,
    IDi,
    IDr,
    IkeMessage,
    KeyExchange,
    Nonce,
    Notify,
    Payload,
    SecurityAssociation,
    TSi,
    TSr,
    ike_cipher,
    open_message,
    parse_message,
)
from ikecore.wireshark import KeyLog

__all__ = ["DEMO_HELP", "add_demo_arguments", "run_demo"]

DEMO_HELP = "clone an IKE SA, add a Child SA to the clone, move it with MOBIKE, send ESP"

GATEWAY_HOST = "127.0.0.1"
CLIENT_HOSTS = ("127.0.0.2", "127.0.0.3")  # the client's two "interfaces"
PINGS_PER_SA = 3
_IPV4 = 4  # ESP Next Header of a tunnelled IPv4 packet
# Inner addresses: VPN_0 (old SA) and VPN_1 (clone) use distinct client-side selectors so
# that each Child SA carries its own traffic (RFC 7791 §1 leaves the SPD to the user).
_GATEWAY_NET = TrafficSelector.from_network("10.1.0.0/24")
_VPN_INNER = {"VPN_0": "10.0.0.1", "VPN_1": "10.0.0.2"}


def gateway_peer(psk: bytes) -> PeerConfig:
    """The gateway's side of both demos (one identity for every cluster node)."""
    return PeerConfig(
        local_id=Identity.parse("gateway.demo"),
        remote_id=Identity.parse("client.demo"),
        psk=psk,
        local_ts=(_GATEWAY_NET,),
        remote_ts=(TrafficSelector.from_network("10.0.0.0/24"),),
        name="client",
    )


def client_peer(psk: bytes, local: Address, gateway: Address) -> PeerConfig:
    """The client's side of both demos: PSK, VPN_0's inner address to the gateway's network."""
    return PeerConfig(
        local_id=Identity.parse("client.demo"),
        remote_id=Identity.parse("gateway.demo"),
        psk=psk,
        remote_address=gateway,
        local_address=local,
        local_ts=(TrafficSelector.from_network(_VPN_INNER["VPN_0"] + "/32"),),
        remote_ts=(_GATEWAY_NET,),
        name="gateway",
    )


class _Failure(Exception):
    """The one-line reason the demo failed."""


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        choices=("interfaces", "cluster"),
        default="interfaces",
        help="interfaces: move the clone to a second local address (default); cluster: to "
        "another gateway node (separate processes sharing the store)",
    )
    parser.add_argument(
        "--store",
        help="the gateways' SA store: memory: (interfaces default), sqlite:PATH (cluster "
        "default: a temporary file) or redis://HOST:PORT/DB",
    )
    parser.add_argument("--timeout", type=float, default=20.0, help="give up after S seconds")
    parser.add_argument("--keylog", metavar="DIR", help="write Wireshark's key tables to DIR")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run_demo(args: argparse.Namespace) -> int:
    try:
        if args.scenario == "cluster":
            from ikecore.demo_cluster import run_cluster_demo

            result = asyncio.run(run_cluster_demo(args))
        else:
            result = asyncio.run(_Demo(args).run())
    except _Failure as failure:
        print(f"ikecore demo: {failure}", file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": False, "error": str(failure)}, sort_keys=True))
        return 1
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        _print_summary(result)
    return 0


def _print_summary(result: dict[str, Any]) -> None:
    print()
    print("summary")
    for key in ("ike_sas", "child_sas", "clones", "moved", "esp_packets_sent", "esp_packets_ok"):
        print(f"  {key}: {result[key]}")
    for name, where in result.get("addresses", {}).items():
        print(f"  {name}: {where}")
    for name, node in result.get("nodes", {}).items():
        print(f"  node {name} ({node['address']}, pid {node['pid']}): serves the {node['serves']}")
    print("  ok: every step passed")


def _free_ports(hosts: tuple[str, ...]) -> tuple[int, int]:
    """An IKE port and a NAT-T port free on every host (the NAT-T port is one number for
    both peers: MOBIKE and NAT-T move IKE there, RFC 4555 §3.3)."""
    for _ in range(50):
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
        ):
            a.bind((hosts[0], 0))
            b.bind((hosts[0], 0))
            ports = (a.getsockname()[1], b.getsockname()[1])
        try:
            for host in hosts:
                for port in ports:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                        probe.bind((host, port))
        except OSError as exc:
            if exc.errno == 99:  # EADDRNOTAVAIL: this system has no such loopback address
                raise _Failure(f"cannot use loopback address {host}: {exc.strerror}") from None
            continue
        return ports
    raise _Failure("no free UDP port pair on the loopback addresses")


# -- the message flow, as the client sees it ----------------------------------------------


def _notify_name(kind: int) -> str:
    try:
        return NotifyType(kind).name
    except ValueError:
        return str(kind)


def payload_names(payloads: list[Payload], request: bool) -> str:
    """``{N(CLONE_IKE_SA), SA, Ni, KEi}``: payloads as RFC 7296 draws them."""
    side = "i" if request else "r"
    names: list[str] = []
    for p in payloads:
        if isinstance(p, Notify):
            names.append(f"N({_notify_name(p.notify_type)})")
        elif isinstance(p, SecurityAssociation):
            names.append("SA")
        elif isinstance(p, KeyExchange):
            names.append(f"KE{side}")
        elif isinstance(p, Nonce):
            names.append(f"N{side}")
        elif isinstance(p, Delete):
            names.append("D")
        else:
            labels = {IDi: "IDi", IDr: "IDr", Authentication: "AUTH", TSi: "TSi", TSr: "TSr"}
            names.append(labels.get(type(p), type(p).__name__))
    return "{" + ", ".join(names) + "}"


@dataclass
class _Flow:
    """Prints and keeps the client's side of the conversation."""

    endpoint: IkeEndpoint
    nat_port: int
    echo: bool
    labels: dict[bytes, str] = field(default_factory=dict)  # by SPIi (the client's)
    child_labels: dict[bytes, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def emit(self, line: str) -> None:
        self.lines.append(line)
        if self.echo:
            print("  " + line, flush=True)

    def datagram(self, data: bytes, src: Address, dst: Address, outgoing: bool) -> None:
        marker = self.nat_port in (src[1], dst[1])
        if marker and data == b"\xff":
            return  # NAT keepalive
        if marker and data[:4] != bytes(4):
            self._esp(data, src, dst, outgoing)
            return
        raw = data[4:] if marker else data
        try:
            message = parse_message(raw)
        except IkeError:
            return
        path = f"{src[0]}:{src[1]} -> {dst[0]}:{dst[1]}"
        label = self._label(message)
        names = self._describe(message, outgoing)
        name = ExchangeType(message.exchange).name
        exchange = f"{name} {names}" if names else name
        where = f"({label} #{message.message_id}, {path})"
        if outgoing:
            self.emit(f"{exchange} -->  {where}")
        else:
            self.emit(f"<-- {exchange}  {where}")

    def _esp(self, data: bytes, src: Address, dst: Address, outgoing: bool) -> None:
        spi = data[:4]
        name = self.child_labels.get(spi, "Child SA")
        text = f"ESP {name} spi {spi.hex()} ({src[0]}:{src[1]} -> {dst[0]}:{dst[1]})"
        self.emit(f"{text} -->" if outgoing else f"<-- {text}")

    def _session(self, message: IkeMessage) -> IkeSession | None:
        for session in self.endpoint.sessions:
            sa = session.sa
            if sa.spi_i == message.spi_i and sa.spi_r in (message.spi_r, bytes(8)):
                return session
        return None

    def _label(self, message: IkeMessage) -> str:
        return self.labels.get(message.spi_i, "IKE SA")

    def _describe(self, message: IkeMessage, outgoing: bool) -> str:
        request = not message.is_response
        if message.exchange == ExchangeType.IKE_SA_INIT:
            return payload_names(list(message.payloads), request)
        session = self._session(message)
        if session is None or session.sa.keys is None or session.sa.transforms is None:
            return "{SK}"
        sa = session.sa
        assert sa.keys is not None and sa.transforms is not None
        # The sender's SK_e: the original initiator's is SK_ei (RFC 7296 §2.14).
        sent_by_initiator = message.is_initiator
        key = sa.keys.sk_ei if sent_by_initiator else sa.keys.sk_er
        cipher = ike_cipher(sa.transforms.encr, key, sa.transforms.icv_length, 0)
        try:
            return payload_names(open_message(cipher, message), request)
        except IkeError:
            return "{SK}"


class _TapDriver(UdpDriver):
    """The client's driver: every datagram in or out goes through the flow printer first,
    and the local address each ESP packet arrived on is remembered (per SPI)."""

    def __init__(self, endpoint: IkeEndpoint, addresses: list[str], ike_port: int) -> None:
        super().__init__(endpoint, addresses, ike_port=ike_port)
        self.flow: _Flow | None = None
        self.esp_arrived_on: dict[bytes, set[str]] = {}

    def received(self, data: bytes, src: Address, dst: Address) -> None:
        if self.flow is not None:
            self.flow.datagram(data, src, dst, outgoing=False)
        nat_port = self.endpoint.config.nat_port
        if nat_port == dst[1] and len(data) > 8 and data[:4] != bytes(4):
            self.esp_arrived_on.setdefault(data[:4], set()).add(dst[0])
        super().received(data, src, dst)

    def _send(self, datagram: Datagram) -> None:
        if self.flow is not None:
            self.flow.datagram(datagram.data, datagram.src, datagram.dst, outgoing=True)
        super()._send(datagram)


@dataclass
class _Gateway:
    """The gateway's event loop: answers echo requests and counts what arrives per IKE SA."""

    driver: UdpDriver
    echo_requests: dict[bytes, int] = field(default_factory=dict)  # by the gateway's IKE SPI
    moved: list[IkeSaMoved] = field(default_factory=list)
    sessions: list[IkeSession] = field(default_factory=list)

    def moved_clone(self, clone: IkeSession) -> IkeSession | None:
        """The gateway's side of ``clone`` once it moved."""
        return next((m.session for m in self.moved if m.session.sa.spis == clone.sa.spis), None)

    async def serve(self) -> None:
        while True:
            event = await self.driver.next_event()
            if isinstance(event, IkeSaEstablished):
                self.sessions.append(event.session)
            elif isinstance(event, IkeSaCloned):
                self.sessions.append(event.clone)
            elif isinstance(event, IkeSaMoved):
                self.moved.append(event)
            elif isinstance(event, EspPacketReceived):
                reply = echo_reply_for(event.data)
                if reply is None:
                    continue
                spi = event.session.sa.local_spi
                self.echo_requests[spi] = self.echo_requests.get(spi, 0) + 1
                self.driver.endpoint.send_esp(event.child.spi_in, reply, _IPV4, self.driver.now())
                self.driver.pump()


class _Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.steps: list[str] = []

    def step(self, text: str) -> None:
        self.steps.append(text)
        if not self.args.json:
            print(f"\n== {text}", flush=True)

    async def run(self) -> dict[str, Any]:
        try:
            # A persistent store seals key material at rest: this run's own random key.
            store = open_store(self.args.store or "memory:", key=os.urandom(32))
        except (ValueError, IkeError) as exc:  # a bad URL, a store error: one line, exit 1
            raise _Failure(f"store {self.args.store}: {exc}") from None
        ike_port, nat_port = _free_ports((GATEWAY_HOST, *CLIENT_HOSTS))
        psk = os.urandom(24).hex().encode()
        gateway = gateway_peer(psk)
        peer = client_peer(psk, (CLIENT_HOSTS[0], ike_port), (GATEWAY_HOST, ike_port))
        gateway_endpoint = IkeEndpoint(
            EndpointConfig(
                peers=(gateway,), ike_proposals=gateway.ike_proposals, nat_port=nat_port
            ),
            store,
        )
        client_endpoint = IkeEndpoint(EndpointConfig(peers=(peer,), nat_port=nat_port))
        gateway_driver = UdpDriver(gateway_endpoint, [GATEWAY_HOST], ike_port=ike_port)
        client = _TapDriver(client_endpoint, list(CLIENT_HOSTS), ike_port)
        flow = _Flow(client_endpoint, nat_port, echo=not self.args.json)
        client.flow = flow
        try:
            await gateway_driver.start()
            await client.start()
        except OSError as exc:
            gateway_driver.close()
            client.close()
            raise _Failure(f"cannot bind the loopback UDP ports: {exc}") from None
        gateway_loop = _Gateway(gateway_driver)
        serving = asyncio.ensure_future(gateway_loop.serve())
        try:
            result = await self._scenario(client, peer, gateway_loop, flow)
        finally:
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            client.close()
            gateway_driver.close()
        return self._report(result, flow, ike_port, nat_port)

    def _report(
        self, result: dict[str, Any], flow: _Flow, ike_port: int, nat_port: int
    ) -> dict[str, Any]:
        """The scenario's result with the message flow, the steps and the ports."""
        result["messages"] = flow.lines
        result["steps"] = self.steps
        result["ports"] = {"ike": ike_port, "nat_t": nat_port}
        return result

    async def _wait(
        self, driver: UdpDriver, accept: Callable[[Event], bool], what: str, deadline: float
    ) -> Event:
        while True:
            remaining = deadline - driver.now()
            if remaining <= 0:
                raise _Failure(f"timed out waiting for {what}")
            try:
                event = await driver.next_event(timeout=remaining)
            except asyncio.TimeoutError:
                raise _Failure(f"timed out waiting for {what}") from None
            if isinstance(event, (IkeSaDeleted, CloneFailed, ChildSaFailed, IkeSaMoveFailed)):
                if not accept(event):
                    raise _Failure(f"{what}: {type(event).__name__} {_why(event)}")
            if accept(event):
                return event

    async def _establish(
        self, client: _TapDriver, peer: PeerConfig, flow: _Flow, deadline: float
    ) -> tuple[IkeSession, ChildSa]:
        """IKE_SA_INIT + IKE_AUTH and the first Child SA (VPN_0); the gateway must have
        announced CLONE_IKE_SA_SUPPORTED."""
        old = client.endpoint.initiate(peer, client.now())
        flow.labels[old.sa.spi_i] = "old SA"
        client.pump()
        await self._wait(client, lambda e: isinstance(e, IkeSaEstablished), "IKE_AUTH", deadline)
        made = await self._wait(
            client, lambda e: isinstance(e, ChildSaEstablished), "the first Child SA", deadline
        )
        assert isinstance(made, ChildSaEstablished)
        flow.child_labels.update({made.child.spi_in: "VPN_0", made.child.spi_out: "VPN_0"})
        if not old.sa.clone_negotiated:
            raise _Failure("the gateway did not announce CLONE_IKE_SA_SUPPORTED")
        return old, made.child

    async def _child_on_clone(
        self, client: _TapDriver, clone: IkeSession, flow: _Flow, deadline: float
    ) -> ChildSa:
        """A Child SA (VPN_1) on the clone."""
        vpn_1 = (TrafficSelector.from_network(_VPN_INNER["VPN_1"] + "/32"),)
        clone.create_child_sa(client.now(), local_ts=vpn_1, remote_ts=(_GATEWAY_NET,))
        client.pump()
        on_clone = await self._wait(
            client,
            lambda e: isinstance(e, (ChildSaEstablished, ChildSaFailed)) and e.session is clone,
            "the Child SA on the clone",
            deadline,
        )
        if not isinstance(on_clone, ChildSaEstablished):
            raise _Failure(f"the Child SA on the clone: {_why(on_clone)}")
        flow.child_labels.update({on_clone.child.spi_in: "VPN_1", on_clone.child.spi_out: "VPN_1"})
        return on_clone.child

    async def _echoes(
        self, client: _TapDriver, children: dict[str, ChildSa], deadline: float
    ) -> tuple[int, dict[bytes, int]]:
        """PINGS_PER_SA echo requests through each named Child SA (VPN_0, VPN_1) and their
        replies: the number sent, and the replies received per inbound SPI."""
        sent = 0
        for name, child in children.items():
            for seq in range(PINGS_PER_SA):
                packet = echo_request(_VPN_INNER[name], "10.1.0.1", seq)
                client.endpoint.send_esp(child.spi_in, packet, _IPV4, client.now())
                sent += 1
        client.pump()
        replies: dict[bytes, int] = {}
        while sum(replies.values()) < sent:
            event = await self._wait(
                client, lambda e: isinstance(e, EspPacketReceived), "the echo replies", deadline
            )
            assert isinstance(event, EspPacketReceived)
            spi = event.child.spi_in
            replies[spi] = replies.get(spi, 0) + 1
        return sent, replies

    async def _delete(
        self, client: _TapDriver, sessions: tuple[IkeSession, ...], deadline: float
    ) -> None:
        """Deletes the IKE SAs one after the other, each answered before the next."""
        for session in sessions:
            session.delete(client.now())
            client.pump()
            await self._wait(
                client,
                lambda e, s=session: isinstance(e, IkeSaDeleted) and e.session is s,  # type: ignore[misc]
                "the Delete",
                deadline,
            )

    async def _scenario(
        self, client: _TapDriver, peer: PeerConfig, gateway: _Gateway, flow: _Flow
    ) -> dict[str, Any]:
        endpoint = client.endpoint
        deadline = client.now() + self.args.timeout

        self.step(f"1. IKE_SA_INIT + IKE_AUTH from {CLIENT_HOSTS[0]} (PSK), Child SA VPN_0")
        old, vpn_0 = await self._establish(client, peer, flow, deadline)

        self.step("2. clone the IKE SA (RFC 7791): CREATE_CHILD_SA with N(CLONE_IKE_SA)")
        old.request_clone(client.now())
        client.pump()
        cloned = await self._wait(
            client, lambda e: isinstance(e, (IkeSaCloned, CloneFailed)), "the clone", deadline
        )
        if not isinstance(cloned, IkeSaCloned):
            raise _Failure(f"clone refused: {_why(cloned)}")
        clone = cloned.clone
        flow.labels[clone.sa.spi_i] = "clone"

        self.step("3. a Child SA (VPN_1) on the clone")
        vpn_1 = await self._child_on_clone(client, clone, flow, deadline)

        self.step(f"4. move the clone to {CLIENT_HOSTS[1]} with MOBIKE; the old SA stays")
        nat_port = endpoint.config.nat_port
        clone.update_addresses((CLIENT_HOSTS[1], nat_port), client.now())
        client.pump()
        await self._wait(
            client,
            lambda e: isinstance(e, (IkeSaMoved, IkeSaMoveFailed)) and e.session is clone,
            "the MOBIKE move",
            deadline,
        )
        # RFC 4555 §3.7: the gateway's side moves once its return routability check of the
        # new address (INFORMATIONAL {N(COOKIE2)} there and back) is answered.
        while (gateway_clone := gateway.moved_clone(clone)) is None and client.now() < deadline:
            await asyncio.sleep(0.01)
        if gateway_clone is None or gateway_clone.sa.remote_address[0] != CLIENT_HOSTS[1]:
            raise _Failure("the gateway did not move the clone")
        gateway_old = next(s for s in gateway.sessions if s.sa.spis == old.sa.spis)
        if gateway_old.sa.remote_address[0] != CLIENT_HOSTS[0]:
            raise _Failure("the old SA moved too")

        if self.args.keylog:
            # Both IKE SAs and their Child SAs, the clone's at its new address.
            keylog = KeyLog(self.args.keylog)
            keylog.add_session(old)
            keylog.add_session(clone)

        self.step(f"5. ICMP echoes through both Child SAs ({PINGS_PER_SA} each way per SA)")
        sent, replies = await self._echoes(client, {"VPN_0": vpn_0, "VPN_1": vpn_1}, deadline)
        checks = {
            "VPN_0": (vpn_0.spi_in, CLIENT_HOSTS[0], gateway_old),
            "VPN_1": (vpn_1.spi_in, CLIENT_HOSTS[1], gateway_clone),
        }
        for name, (spi, host, gateway_session) in checks.items():
            if replies.get(spi) != PINGS_PER_SA:
                raise _Failure(f"{name}: {replies.get(spi, 0)} of {PINGS_PER_SA} replies")
            if gateway.echo_requests.get(gateway_session.sa.local_spi) != PINGS_PER_SA:
                raise _Failure(f"{name}: the gateway did not get every echo request")
            if client.esp_arrived_on.get(spi) != {host}:
                raise _Failure(f"{name}: ESP arrived on {client.esp_arrived_on.get(spi)}")
        esp_ok = sum(replies.values()) + sum(gateway.echo_requests.values())
        result: dict[str, Any] = {
            "ok": True,
            "scenario": "interfaces",
            "ike_sas": len(endpoint.sessions),
            "child_sas": sum(len(s.child_sas) for s in endpoint.sessions),
            "clones": sum(1 for s in endpoint.sessions if s.sa.parent is not None),
            "moved": True,
            "esp_packets_sent": 2 * sent,
            "esp_packets_ok": esp_ok,
            "addresses": {
                "old SA": f"{old.sa.local_address[0]} <-> {old.sa.remote_address[0]}",
                "clone": f"{clone.sa.local_address[0]} <-> {clone.sa.remote_address[0]}",
            },
            "spis": {
                "old SA": [s.hex() for s in old.sa.spis],
                "clone": [s.hex() for s in clone.sa.spis],
            },
        }

        self.step("6. delete both IKE SAs")
        await self._delete(client, (clone, old), deadline)
        return result


def _why(event: Event) -> str:
    for name in ("reason", "notify"):
        value = getattr(event, name, None)
        if value is not None:
            return str(value)
    return ""
