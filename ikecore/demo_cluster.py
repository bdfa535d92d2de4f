"""`ikecore demo --scenario cluster`: RFC 7791 §1's cluster move, three processes on loopback.

A client (127.0.0.1, this process) and two gateway nodes, A (127.0.0.2) and B (127.0.0.3),
each a separate process (``python -m ikecore.demo_cluster node ...``) with its own
`IkeEndpoint` on unprivileged UDP ports, sharing one SA store: by default an embedded SQLite
file in a temporary directory, or the ``redis://`` URL given with ``--store``. The store key
and the PSK reach the nodes in their environment, never on a command line.

1. IKE_SA_INIT + IKE_AUTH (PSK) from the client to node A, Child SA VPN_0.
2. Node A clones the IKE SA (the gateway initiates, RFC 7791 §1).
3. The client makes a Child SA (VPN_1) on the clone, still with node A.
4. Node A hands the clone to node B: ownership moves in the store (compare-and-set) and A
   forgets it. Node B loads it (message IDs, SK IV counter, ESP sequence numbers above A's
   reservations, replay windows) and moves the client to itself with MOBIKE:
   INFORMATIONAL {N(UPDATE_SA_ADDRESSES), N(NAT_DETECTION_*), N(COOKIE2)} from B's address
   (the gateway-side move, docs/CLONE.md).
5. ICMP echo requests through both Child SAs: VPN_0's must be answered by node A, VPN_1's
   by node B (checked by the address the replies come from and by each node's count).
6. Both IKE SAs are deleted: the old one with node A, the clone with node B.

The nodes are driven over their stdin/stdout with one JSON object per line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ikecore.aio import UdpDriver
from ikecore.config import Address, EndpointConfig, PeerConfig
from ikecore.demo import (
    _IPV4,
    _VPN_INNER,
    PINGS_PER_SA,
    _Demo,
    _Failure,
    _Flow,
    _free_ports,
    _TapDriver,
    client_peer,
    gateway_peer,
)
from ikecore.endpoint import IkeEndpoint
from ikecore.errors import IkeError
from ikecore.events import (
    CloneFailed,
    EspPacketReceived,
    IkeSaCloned,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaMoved,
    IkeSaMoveFailed,
)
from ikecore.peer_commands import echo_reply_for, echo_request
from ikecore.session import IkeSession
from ikecore.store import SaStore, open_store

__all__ = ["run_cluster_demo"]

CLIENT_HOST = "127.0.0.1"
NODE_HOSTS = {"A": "127.0.0.2", "B": "127.0.0.3"}
_INSTALLED_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
_KEY_ENV = "IKECORE_DEMO_STORE_KEY"
_PSK_ENV = "IKECORE_DEMO_PSK"
_NODE_START_TIMEOUT = 15.0


def _node_url(base: str, node: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}node={node}"


def _spis_hex(session: IkeSession) -> list[str]:
    return [spi.hex() for spi in session.sa.spis]


# -- a gateway node (a child process) --------------------------------------------------------


@dataclass
class _Node:
    name: str
    host: str
    driver: UdpDriver
    store: SaStore
    echo_requests: int = 0
    cloned: asyncio.Queue[IkeSaCloned | CloneFailed] = field(default_factory=asyncio.Queue)
    moved: asyncio.Queue[IkeSaMoved | IkeSaMoveFailed] = field(default_factory=asyncio.Queue)

    def say(self, **message: Any) -> None:
        print(json.dumps(message, sort_keys=True), flush=True)

    def log(self, text: str) -> None:
        self.say(event="log", text=text)

    async def serve(self) -> None:
        endpoint = self.driver.endpoint
        while True:
            event = await self.driver.next_event()
            if isinstance(event, IkeSaEstablished):
                self.log(f"IKE SA {event.session.sa.spi_i.hex()} established with the client")
            elif isinstance(event, (IkeSaCloned, CloneFailed)):
                self.cloned.put_nowait(event)
            elif isinstance(event, (IkeSaMoved, IkeSaMoveFailed)):
                self.moved.put_nowait(event)
            elif isinstance(event, IkeSaDeleted):
                self.log(f"IKE SA {event.session.sa.spi_i.hex()} deleted ({event.reason})")
            elif isinstance(event, EspPacketReceived):
                reply = echo_reply_for(event.data)
                if reply is not None:
                    self.echo_requests += 1
                    endpoint.send_esp(event.child.spi_in, reply, _IPV4, self.driver.now())
                    self.driver.pump()

    def _session(self, spis: list[str]) -> IkeSession:
        wanted = (bytes.fromhex(spis[0]), bytes.fromhex(spis[1]))
        for session in self.driver.endpoint.sessions:
            if session.sa.spis == wanted:
                return session
        raise _Failure(f"node {self.name} holds no IKE SA {spis}")

    async def command(self, request: dict[str, Any]) -> None:
        endpoint = self.driver.endpoint
        command = request.get("cmd")
        if command == "clone":
            (session,) = [s for s in endpoint.sessions if s.sa.parent is None]
            session.request_clone(self.driver.now())
            self.driver.pump()
            cloned = await asyncio.wait_for(self.cloned.get(), 10.0)
            if not isinstance(cloned, IkeSaCloned):
                raise _Failure(f"clone failed: {cloned.reason}")
            self.say(event="cloned", spis=_spis_hex(cloned.clone))
        elif command == "hand_off":
            session = self._session(request["spis"])
            endpoint.hand_off(session, request["to"])
            self.driver.pump()
            owner = self.store.owner(*session.sa.spis)
            self.say(event="handed_off", owner=owner, sessions=len(endpoint.sessions))
        elif command == "take_over":
            spis = request["spis"]
            session = endpoint.take_over((bytes.fromhex(spis[0]), bytes.fromhex(spis[1])))
            sa = session.sa
            loaded = {
                "next_request_id": sa.next_request_id,
                "next_peer_request_id": sa.next_peer_request_id,
                "esp_seq_out": [child.seq_out for child in sa.child_sas.values()],
            }
            nat_port = endpoint.config.nat_port
            # RFC 4555 §3.5, sent by the gateway (docs/CLONE.md): the client moves the clone.
            session.update_addresses((self.host, nat_port), self.driver.now())
            self.driver.pump()
            moved = await asyncio.wait_for(self.moved.get(), 10.0)
            if not isinstance(moved, IkeSaMoved):
                raise _Failure(f"MOBIKE move refused: notify {moved.notify}")
            self.say(event="moved", loaded=loaded, remote=list(moved.remote))
        elif command == "stats":
            self.say(
                event="stats",
                echo_requests=self.echo_requests,
                sessions=[_spis_hex(s) for s in endpoint.sessions],
            )
        else:
            raise _Failure(f"unknown command {command!r}")


async def _run_node(args: argparse.Namespace) -> int:
    key = bytes.fromhex(os.environ[_KEY_ENV])
    psk = os.environ[_PSK_ENV].encode()
    store = open_store(_node_url(args.store, args.name), key)
    peer = gateway_peer(psk)
    endpoint = IkeEndpoint(
        EndpointConfig(peers=(peer,), ike_proposals=peer.ike_proposals, nat_port=args.nat_port),
        store,
    )
    driver = UdpDriver(endpoint, [args.host], ike_port=args.ike_port)
    await driver.start()
    node = _Node(args.name, args.host, driver, store)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    serving = asyncio.ensure_future(node.serve())
    node.say(event="ready", pid=os.getpid())
    try:
        while line := await reader.readline():
            request = json.loads(line)
            if request.get("cmd") == "quit":
                break
            try:
                await node.command(request)
            except (_Failure, IkeError, asyncio.TimeoutError, ValueError) as exc:
                node.say(event="error", reason=str(exc) or type(exc).__name__)
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        driver.close()
    return 0


# -- the client (this process) and the run ---------------------------------------------------


class _NodeProcess:
    """A node's process and its line protocol; what it logs goes to the flow."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, flow: _Flow) -> None:
        self.name = name
        self.process = process
        self.flow = flow

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        while True:
            try:
                line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
            except asyncio.TimeoutError:
                raise _Failure(f"node {self.name}: no '{event}' in {timeout:.0f} s") from None
            if not line:
                raise _Failure(f"node {self.name} exited: {await self._last_error()}")
            message = json.loads(line)
            if message["event"] == "log":
                self.flow.emit(f"[node {self.name}] {message['text']}")
            elif message["event"] == "error":
                raise _Failure(f"node {self.name}: {message['reason']}")
            elif message["event"] == event:
                return dict(message)

    async def ask(self, timeout: float, event: str, **request: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        await self.process.stdin.drain()
        return await self.expect(event, timeout)

    async def _last_error(self) -> str:
        assert self.process.stderr is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.process.wait(), 5.0)
        text = (await self.process.stderr.read()).decode(errors="replace").strip()
        return text.splitlines()[-1] if text else f"status {self.process.returncode}"

    async def stop(self) -> None:
        if self.process.returncode is None:
            if self.process.stdin is not None:
                with contextlib.suppress(OSError):
                    self.process.stdin.write(b'{"cmd": "quit"}\n')
                    self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 5.0)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()


class _EspSourceDriver(_TapDriver):
    """Also remembers which address each Child SA's ESP came from (the serving node) and
    the sequence numbers it carried (RFC 4303 §2.2), per SPI and sender."""

    def __init__(self, endpoint: IkeEndpoint, addresses: list[str], ike_port: int) -> None:
        super().__init__(endpoint, addresses, ike_port)
        self.esp_from: dict[bytes, set[str]] = {}
        self.esp_seqs: dict[tuple[bytes, str], list[int]] = {}

    def received(self, data: bytes, src: Address, dst: Address) -> None:
        if self.endpoint.config.nat_port == dst[1] and len(data) > 8 and data[:4] != bytes(4):
            self.esp_from.setdefault(data[:4], set()).add(src[0])
            seq = int.from_bytes(data[4:8], "big")
            self.esp_seqs.setdefault((data[:4], src[0]), []).append(seq)
        super().received(data, src, dst)


def _store_label(url: str) -> str:
    """The store without credentials, for the report."""
    if url.startswith("redis"):
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"
    return "sqlite (temporary file)" if url.startswith("sqlite:") else url


class _ClusterDemo(_Demo):
    async def run(self) -> dict[str, Any]:
        base = self.args.store
        if base in ("memory:", "memory://"):
            raise _Failure("the cluster needs a store both nodes share: sqlite:PATH or redis://")
        with tempfile.TemporaryDirectory(prefix="ikecore-cluster-") as directory:
            url = base or f"sqlite:{os.path.join(directory, 'sa.db')}"
            if not url.startswith(("sqlite:", "redis://", "rediss://")):
                raise _Failure(f"unsupported store URL {url!r} (sqlite:PATH or redis://...)")
            return await self._run(url)

    async def _run(self, url: str) -> dict[str, Any]:
        key = os.urandom(32)
        try:
            # This process reads the owners for the report; the nodes write.
            observer = open_store(_node_url(url, "observer"), key)
        except (ValueError, IkeError) as exc:  # a bad URL; the store's own errors
            raise _Failure(f"cannot open the store: {exc}") from None
        try:
            observer.owner(bytes(8), bytes(8))  # does it answer at all?
        except IkeError as exc:
            _close(observer)
            raise _Failure(f"cannot open the store: {exc}") from None
        psk = os.urandom(24).hex()
        ike_port, nat_port = _free_ports((CLIENT_HOST, *NODE_HOSTS.values()))
        peer = client_peer(psk.encode(), (CLIENT_HOST, ike_port), (NODE_HOSTS["A"], ike_port))
        client_endpoint = IkeEndpoint(EndpointConfig(peers=(peer,), nat_port=nat_port))
        client = _EspSourceDriver(client_endpoint, [CLIENT_HOST], ike_port)
        flow = _Flow(client_endpoint, nat_port, echo=not self.args.json)
        client.flow = flow
        env = dict(os.environ, **{_KEY_ENV: key.hex(), _PSK_ENV: psk})
        nodes: dict[str, _NodeProcess] = {}
        try:
            for name, host in NODE_HOSTS.items():
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "ikecore.demo_cluster", "node", "--name", name,
                    "--host", host, "--ike-port", str(ike_port), "--nat-port", str(nat_port),
                    "--store", url,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                    # `python -m` puts the working directory first on sys.path: run the nodes
                    # where the installed ikecore is, so a source checkout (whose ikecore/ has
                    # no compiled _fast) in the user's directory cannot shadow it.
                    cwd=_INSTALLED_PACKAGE_PARENT,
                )  # fmt: skip
                nodes[name] = _NodeProcess(name, process, flow)
            pids = {}
            for name, node in nodes.items():
                pids[name] = (await node.expect("ready", _NODE_START_TIMEOUT))["pid"]
            try:
                await client.start()
            except OSError as exc:
                raise _Failure(f"cannot bind the loopback UDP ports: {exc}") from None
            result = await self._scenario_cluster(client, peer, nodes, flow, observer)
        finally:
            for node in nodes.values():
                await node.stop()
            client.close()
            _close(observer)
        result["nodes"] = {
            name: {"address": NODE_HOSTS[name], "pid": pids[name], **result["nodes"][name]}
            for name in NODE_HOSTS
        }
        result["store"] = _store_label(url)
        return self._report(result, flow, ike_port, nat_port)

    async def _scenario_cluster(
        self,
        client: _EspSourceDriver,
        peer: PeerConfig,
        nodes: dict[str, _NodeProcess],
        flow: _Flow,
        store: SaStore,
    ) -> dict[str, Any]:
        endpoint = client.endpoint
        deadline: float = client.now() + float(self.args.timeout)
        node_a, node_b = nodes["A"], nodes["B"]

        def remaining() -> float:
            return max(deadline - client.now(), 0.1)

        self.step(f"1. IKE_SA_INIT + IKE_AUTH to node A ({NODE_HOSTS['A']}), Child SA VPN_0")
        old, vpn_0 = await self._establish(client, peer, flow, deadline)

        self.step("2. node A clones the IKE SA (RFC 7791): CREATE_CHILD_SA with N(CLONE_IKE_SA)")
        cloned_spis = (await node_a.ask(remaining(), "cloned", cmd="clone"))["spis"]
        cloned = await self._wait(
            client, lambda e: isinstance(e, (IkeSaCloned, CloneFailed)), "the clone", deadline
        )
        if not isinstance(cloned, IkeSaCloned):
            raise _Failure("the client did not get the clone")
        clone = cloned.clone
        if [spi.hex() for spi in clone.sa.spis] != cloned_spis:
            raise _Failure("node A and the client disagree on the clone's SPIs")
        flow.labels[clone.sa.spi_i] = "clone"

        self.step("3. the client makes a Child SA (VPN_1) on the clone with node A; one echo")
        vpn_1 = await self._child_on_clone(client, clone, flow, deadline)
        # One echo through node A first: A reserves a block of sequence numbers for VPN_1.
        packet = echo_request(_VPN_INNER["VPN_1"], "10.1.0.1", 0)
        endpoint.send_esp(vpn_1.spi_in, packet, _IPV4, client.now())
        client.pump()
        await self._wait(
            client, lambda e: isinstance(e, EspPacketReceived), "the echo reply", deadline
        )
        if client.esp_from.get(vpn_1.spi_in) != {NODE_HOSTS["A"]}:
            raise _Failure("VPN_1's first echo was not answered by node A")
        client.esp_from.clear()

        self.step("4. node A hands the clone to node B; B takes it over and moves the client")
        handed = await node_a.ask(
            remaining(), "handed_off", cmd="hand_off", spis=cloned_spis, to="B"
        )
        flow.emit(f"[node A] clone handed to {handed['owner']} (store compare-and-set)")
        moved_on_b = await node_b.ask(remaining(), "moved", cmd="take_over", spis=cloned_spis)
        loaded = moved_on_b["loaded"]
        flow.emit(
            f"[node B] took the clone over: message IDs {loaded['next_request_id']}/"
            f"{loaded['next_peer_request_id']}, ESP continues above {loaded['esp_seq_out']}"
        )
        await self._wait(
            client,
            lambda e: isinstance(e, (IkeSaMoved, IkeSaMoveFailed)) and e.session is clone,
            "the MOBIKE move",
            deadline,
        )
        if clone.sa.remote_address[0] != NODE_HOSTS["B"]:
            raise _Failure(f"the clone is with {clone.sa.remote_address[0]}, not node B")
        if old.sa.remote_address[0] != NODE_HOSTS["A"]:
            raise _Failure("the old SA moved too")
        owners = {
            "old SA": store.owner(*old.sa.spis),
            "clone": store.owner(*clone.sa.spis),
        }
        if owners != {"old SA": "A", "clone": "B"}:
            raise _Failure(f"unexpected owners in the store: {owners}")

        self.step(
            f"5. ICMP echoes: VPN_0 through node A, VPN_1 through node B ({PINGS_PER_SA} each)"
        )
        sent, replies = await self._echoes(client, {"VPN_0": vpn_0, "VPN_1": vpn_1}, deadline)
        stats = {
            name: await node.ask(remaining(), "stats", cmd="stats") for name, node in nodes.items()
        }
        expected = {"VPN_0": (vpn_0.spi_in, "A"), "VPN_1": (vpn_1.spi_in, "B")}
        for name, (spi, node_name) in expected.items():
            if replies.get(spi) != PINGS_PER_SA:
                raise _Failure(f"{name}: {replies.get(spi, 0)} of {PINGS_PER_SA} replies")
            if client.esp_from.get(spi) != {NODE_HOSTS[node_name]}:
                raise _Failure(f"{name}: ESP came from {client.esp_from.get(spi)}")
            before = 1 if node_name == "A" else 0  # the echo on VPN_1 before the hand-off
            if stats[node_name]["echo_requests"] != PINGS_PER_SA + before:
                raise _Failure(f"{name}: node {node_name} did not get every echo request")
        # Node B's sequence numbers on VPN_1 start above the block node A reserved.
        from_a = client.esp_seqs.get((vpn_1.spi_in, NODE_HOSTS["A"]), [])
        from_b = client.esp_seqs.get((vpn_1.spi_in, NODE_HOSTS["B"]), [])
        if not from_a or not from_b or min(from_b) <= max(loaded["esp_seq_out"]):
            raise _Failure(f"VPN_1 sequence numbers: node A {from_a}, node B {from_b}")
        flow.emit(f"VPN_1 ESP sequence numbers: node A {from_a}, node B {sorted(from_b)}")
        result: dict[str, Any] = {
            "ok": True,
            "scenario": "cluster",
            "vpn_1_esp_seq": {"A": from_a, "B": sorted(from_b)},
            "ike_sas": len(endpoint.sessions),
            "child_sas": sum(len(s.child_sas) for s in endpoint.sessions),
            "clones": sum(1 for s in endpoint.sessions if s.sa.parent is not None),
            "moved": True,
            "esp_packets_sent": 2 * (sent + 1),
            # + 1: the reply to the echo through node A before the hand-off.
            "esp_packets_ok": sum(replies.values())
            + 1
            + sum(s["echo_requests"] for s in stats.values()),
            "owners": owners,
            "spis": {"old SA": [s.hex() for s in old.sa.spis], "clone": cloned_spis},
            "nodes": {
                "A": {"serves": "old SA", "echo_requests": stats["A"]["echo_requests"]},
                "B": {
                    "serves": "clone",
                    "echo_requests": stats["B"]["echo_requests"],
                    "loaded": loaded,
                },
            },
        }

        self.step("6. delete both IKE SAs (the clone with node B, the old SA with node A)")
        await self._delete(client, (clone, old), deadline)
        if store.ike_sas():
            raise _Failure("records left in the store after both deletes")
        return result


def _close(store: SaStore) -> None:
    close = getattr(store, "close", None)  # the persistent stores have one
    if close is not None:
        close()


async def run_cluster_demo(args: argparse.Namespace) -> dict[str, Any]:
    """The cluster scenario for `ikecore demo` (raises the demo's one-line failure)."""
    return await _ClusterDemo(args).run()


def _node_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ikecore.demo_cluster")
    sub = parser.add_subparsers(dest="role", required=True)
    node = sub.add_parser("node", help="a gateway node of the cluster demo")
    node.add_argument("--name", required=True)
    node.add_argument("--host", required=True)
    node.add_argument("--ike-port", type=int, required=True)
    node.add_argument("--nat-port", type=int, required=True)
    node.add_argument("--store", required=True)
    return asyncio.run(_run_node(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(_node_main(sys.argv[1:]))
