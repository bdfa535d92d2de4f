"""The ikecore engine as one side of an interop pair, driven step by step by a test.

    python interop_engine_peer.py --role initiator|responder --local IP [--remote IP] ...

runs `IkeEndpoint` on `UdpDriver` (real UDP 500/4500) inside a test's network namespace and
takes one JSON command per line on stdin, answering each with one JSON line on stdout. The
test interleaves these steps with what it makes the other peer do (swanctl), so each exchange
can be started from either side at a known moment:

    {"op": "initiate"}                       IKE SA + first Child SA (initiator role)
    {"op": "create_child", "esp": P, "local_ts": NET, "remote_ts": NET}
    {"op": "ping", "spi_in": HEX, "src": IP, "dst": IP, "count": N}   ICMP echo through ESP
    {"op": "rekey_child", "spi_in": HEX} / {"op": "rekey_ike"} / {"op": "liveness"}
        (rekeys with "nowait": true return once the request is sent)
    {"op": "hold"} / {"op": "held", "count": N, "exchange": T} / {"op": "release"}
        keep arriving datagrams from the endpoint / wait until N IKE messages of exchange
        type T (default CREATE_CHILD_SA) are kept / deliver them all, in order: makes both
        peers' requests cross on the wire (rekey collisions, RFC 7296 §2.8.1-2)
    {"op": "delete_child", "spi_in": HEX} / {"op": "delete"}
    {"op": "clone"}                          RFC 7791 request_clone on the current IKE SA
    {"op": "move", "local": IP}              RFC 4555 update_addresses (MOBIKE)
    {"op": "wait", "event": NAME, "since": N, "match": {...}}  an event the peer caused
    {"op": "state"}                          every SA made so far, with its keys; counters
    {"op": "quit"}

ikecore has no TUN device, so ESP traffic is made here: `ping` sends ICMP echo requests as
inner IPv4 packets through a Child SA and counts the replies; echo requests that arrive
through any Child SA are answered. Every event is numbered; answers carry ``events`` (how many
so far) so that a later `wait` looks only at what happened after a step. ``--keylog DIR``
keeps Wireshark's key tables (`ikecore.wireshark.KeyLog`) for every IKE and Child SA. Steps
act on the current IKE SA (the newest after rekeys) or, with ``"on": "clone"``, on the newest
clone.

`EnginePeer` is the test-side client: it starts the script in a namespace and sends commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ikecore.aio import UdpDriver
from ikecore.config import Address, EndpointConfig, Identity, PeerConfig, TrafficSelector
from ikecore.constants import ProtocolId
from ikecore.endpoint import IkeEndpoint
from ikecore.errors import CloneRefused, LocalProtocolError
from ikecore.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    ChildSaRekeyed,
    CloneFailed,
    EspPacketReceived,
    Event,
    IkeSaCloned,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaMoved,
    IkeSaRekeyed,
    LivenessChecked,
)
from ikecore.peer_commands import echo_reply_for, echo_request
from ikecore.sa import ChildSa
from ikecore.session import IkeSession
from ikecore.suites import parse_proposals
from ikecore.wireshark import KeyLog

IPV4_NEXT_HEADER = 4  # RFC 4303: ESP Next Header of a tunnelled IPv4 packet
ICMP = 1
ECHO_REPLY = 0


class HoldingDriver(UdpDriver):
    """`UdpDriver` that can keep what arrives from the endpoint for a while, in order."""

    def __init__(self, endpoint: IkeEndpoint, addresses: Sequence[str]) -> None:
        super().__init__(endpoint, addresses)
        self.held: list[tuple[bytes, Address, Address]] | None = None
        self.after_datagram: Callable[[], None] | None = None

    def received(self, data: bytes, src: Address, dst: Address) -> None:
        if self.held is not None:
            self.held.append((data, src, dst))
        else:
            super().received(data, src, dst)
            if self.after_datagram is not None:
                self.after_datagram()

    def held_exchanges(self, exchange: int) -> int:
        """Held IKE messages (behind the non-ESP marker on 4500) of one exchange type."""
        count = 0
        for data, _, dst in self.held or ():
            if dst[1] == self.endpoint.config.nat_port:
                if data[:4] != bytes(4):
                    continue  # ESP
                data = data[4:]
            if len(data) >= 28 and data[18] == exchange:  # RFC 7296 §3.1: Exchange Type
                count += 1
        return count

    def release(self) -> int:
        held, self.held = self.held or [], None
        for data, src, dst in held:
            self.received(data, src, dst)
        return len(held)


class StepFailed(Exception):
    """A command could not be carried out; its message goes back to the test."""


def _describe(event: Event) -> dict[str, Any]:
    """A JSON view of an event: its name and the SPIs it concerns."""
    out: dict[str, Any] = {"event": type(event).__name__}
    for name in ("reason", "notify"):
        if hasattr(event, name):
            value = getattr(event, name)
            out[name] = int(value) if isinstance(value, int) else value
    for name in ("child", "old", "new"):
        value = getattr(event, name, None)
        if isinstance(value, ChildSa):
            out[name] = value.spi_in.hex()
        elif isinstance(value, IkeSession):
            out[name] = value.sa.spi_i.hex() + ":" + value.sa.spi_r.hex()
    session = getattr(event, "session", None)
    if isinstance(session, IkeSession):
        out["ike_sa"] = session.sa.spi_i.hex() + ":" + session.sa.spi_r.hex()
    return out


class EngineHarness:
    """The endpoint, its driver, the events seen so far and what the test asks for."""

    def __init__(self, args: argparse.Namespace) -> None:
        psk = Path(args.psk_file).read_bytes().rstrip(b"\n")
        self.peer = PeerConfig(
            local_id=Identity.parse(args.local_id),
            remote_id=None if args.remote_id is None else Identity.parse(args.remote_id),
            psk=psk,
            remote_address=None if args.remote is None else (args.remote, 500),
            local_address=(args.local, 500),
            ike_proposals=parse_proposals(args.ike, ProtocolId.IKE),
            esp_proposals=parse_proposals(args.esp, ProtocolId.ESP),
            local_ts=tuple(TrafficSelector.from_network(n) for n in args.local_ts),
            remote_ts=tuple(TrafficSelector.from_network(n) for n in args.remote_ts),
            max_clones=args.max_clones,
            name="interop",
        )
        self.endpoint = IkeEndpoint(
            EndpointConfig(
                peers=(self.peer,),
                ike_proposals=self.peer.ike_proposals,
                fragment_threshold=args.fragment_threshold,
            )
        )
        self.driver = HoldingDriver(self.endpoint, [args.local, *args.extra_local])
        self.keylog = None if args.keylog is None else KeyLog(args.keylog)
        self.events: list[Event] = []
        self.arrived = asyncio.Event()
        self.session: IkeSession | None = None
        self.clone: IkeSession | None = None
        # Every IKE SA and Child SA as it was when made (keys included), for key comparison.
        self.ike_sas: list[dict[str, Any]] = []
        self._recorded: set[tuple[bytes, bytes]] = set()
        self.driver.after_datagram = self._record_sessions
        self.child_sas: list[dict[str, Any]] = []
        self.echoes_answered = 0
        self.echo_replies: dict[str, int] = {}  # our inbound SPI -> echo replies received

    # -- events ---------------------------------------------------------------------------

    async def consume(self) -> None:
        while True:
            event = await self.driver.next_event()
            self._handle(event)
            self.events.append(event)
            self.arrived.set()
            self.arrived = asyncio.Event()

    def _handle(self, event: Event) -> None:
        if isinstance(event, IkeSaEstablished):
            self.session = event.session
            self._record_ike(event.session)
        elif isinstance(event, IkeSaRekeyed):
            self.session = event.new
            self._record_ike(event.new)
        elif isinstance(event, IkeSaCloned):
            self.clone = event.clone
            self._record_ike(event.clone)
        elif isinstance(event, IkeSaMoved) and self.keylog is not None:
            self.keylog.add_session(event.session)  # ESP now flows between the new addresses
        elif isinstance(event, ChildSaEstablished):
            self._record_child(event.session, event.child)
        elif isinstance(event, ChildSaRekeyed):
            self._record_child(event.session, event.new)
        elif isinstance(event, IkeSaDeleted) and event.session is self.session:
            self.session = None
        elif isinstance(event, IkeSaDeleted) and event.session is self.clone:
            self.clone = None
        elif isinstance(event, EspPacketReceived):
            reply = echo_reply_for(event.data)
            if reply is not None:
                self.endpoint.send_esp(
                    event.child.spi_in, reply, IPV4_NEXT_HEADER, self.driver.now()
                )
                self.echoes_answered += 1
                self.driver.pump()
            elif _is_echo_reply(event.data):
                spi = event.child.spi_in.hex()
                self.echo_replies[spi] = self.echo_replies.get(spi, 0) + 1

    def _record_sessions(self) -> None:
        """After every datagram: an SA may live between two events (a rekey collision's
        redundant SA gets no event but carries its own Delete on the wire)."""
        for each in self.endpoint.sessions:
            sa = each.sa  # established (not half-open: IKE_AUTH still to settle its record)
            if sa.established_at is not None and sa.spis not in self._recorded:
                self._record_ike(each)

    def _record_ike(self, session: IkeSession) -> None:
        # The SA the event names, and any other the endpoint holds keys for.
        for each in (session, *self.endpoint.sessions):
            sa = each.sa
            if sa.keys is None or sa.established_at is None or sa.spis in self._recorded:
                continue
            self._recorded.add(sa.spis)
            record = sa.to_dict()
            record.pop("child_sas")
            record["announced"] = each is session
            self.ike_sas.append(record)
            if self.keylog is not None:
                self.keylog.add_session(each)

    def _record_child(self, session: IkeSession, child: ChildSa) -> None:
        record = child.to_dict()
        record["ike_sa"] = session.sa.spi_i.hex() + ":" + session.sa.spi_r.hex()
        self.child_sas.append(record)
        if self.keylog is not None:
            self.keylog.add_engine_child_sa(session, child)

    async def wait_for(
        self, accept: Callable[[Event], bool], since: int, timeout: float
    ) -> Event:
        deadline = self.driver.now() + timeout
        seen = since
        while True:
            for event in self.events[seen:]:
                if accept(event):
                    return event
            seen = len(self.events)
            remaining = deadline - self.driver.now()
            if remaining <= 0:
                names = [type(e).__name__ for e in self.events[since:]]
                raise StepFailed(f"timed out; events since step: {names}")
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    # -- commands -------------------------------------------------------------------------

    def _current(self, which: str = "main") -> IkeSession:
        session = self.clone if which == "clone" else self.session
        if session is None:
            raise StepFailed(f"no established IKE SA ({which})")
        return session

    def _child(self, spi_in: str, which: str = "main") -> bytes:
        spi = bytes.fromhex(spi_in)
        if spi not in self._current(which).sa.child_sas:
            raise StepFailed(f"no Child SA {spi_in} on the current IKE SA")
        return spi

    async def step(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command["op"]
        which = command.get("on", "main")
        timeout = float(command.get("timeout", 10.0))
        since = len(self.events)
        now = self.driver.now()
        result: dict[str, Any] = {}
        if op == "initiate":
            session = self.endpoint.initiate(self.peer, now)
            self.driver.pump()
            first = await self.wait_for(
                lambda e: isinstance(e, (IkeSaEstablished, IkeSaDeleted)), since, timeout)
            if isinstance(first, IkeSaDeleted):
                raise StepFailed(f"IKE SA not established: {first.reason} {first.notify}")
            child = await self.wait_for(
                lambda e: isinstance(e, (ChildSaEstablished, ChildSaFailed)), since, timeout)
            result["child"] = _describe(child)
            result["ike_sa"] = session.sa.spi_i.hex() + ":" + session.sa.spi_r.hex()
        elif op == "create_child":
            session = self._current(which)
            session.create_child_sa(
                now,
                esp_proposals=parse_proposals(command["esp"], ProtocolId.ESP),
                local_ts=(TrafficSelector.from_network(command["local_ts"]),),
                remote_ts=(TrafficSelector.from_network(command["remote_ts"]),),
            )
            self.driver.pump()
            done = await self.wait_for(
                lambda e: isinstance(e, (ChildSaEstablished, ChildSaFailed))
                and e.session is session, since, timeout)
            result["child"] = _describe(done)
        elif op == "ping":
            spi = self._child(command["spi_in"], which)
            before = self.echo_replies.get(spi.hex(), 0)
            count = int(command["count"])
            deadline = self.driver.now() + timeout
            sent = 0
            # Like ping(8), the echoes still unanswered after a second go again: right after a
            # rekey the peer may not have installed its new inbound SA yet (strongSwan installs
            # it after the exchange; on a loaded machine that can take a moment).
            while (missing := count - (self.echo_replies.get(spi.hex(), 0) - before)) > 0:
                if self.driver.now() > deadline:
                    break
                for _ in range(missing):
                    packet = echo_request(command["src"], command["dst"], sent)
                    self.endpoint.send_esp(spi, packet, IPV4_NEXT_HEADER, self.driver.now())
                    sent += 1
                self.driver.pump()
                resend_at = min(self.driver.now() + 1.0, deadline)
                while self.echo_replies.get(spi.hex(), 0) - before < count:
                    if self.driver.now() >= resend_at:
                        break
                    try:
                        await asyncio.wait_for(self.arrived.wait(), resend_at - self.driver.now())
                    except asyncio.TimeoutError:
                        break
            result["replies"] = min(self.echo_replies.get(spi.hex(), 0) - before, count)
            result["echoes_sent"] = sent
        elif op == "rekey_child":
            session = self._current(which)
            spi = self._child(command["spi_in"], which)
            session.rekey_child_sa(spi, now)
            self.driver.pump()
            if not command.get("nowait"):
                done = await self.wait_for(
                    lambda e: isinstance(e, (ChildSaRekeyed, ChildSaFailed)), since, timeout)
                result["child"] = _describe(done)
        elif op == "rekey_ike":
            self._current(which).rekey(now)
            self.driver.pump()
            if not command.get("nowait"):
                done = await self.wait_for(lambda e: isinstance(e, IkeSaRekeyed), since, timeout)
                result["rekeyed"] = _describe(done)
        elif op == "hold":
            self.driver.held = []
        elif op == "held":
            # Wait for ``count`` held IKE messages of exchange type ``exchange`` (default
            # CREATE_CHILD_SA): a liveness check arriving meanwhile does not count.
            exchange = int(command.get("exchange", 36))
            deadline = self.driver.now() + timeout
            while self.driver.held_exchanges(exchange) < int(command["count"]):
                if self.driver.now() > deadline:
                    raise StepFailed(f"held only {self.driver.held_exchanges(exchange)}")
                await asyncio.sleep(0.01)
            result["held"] = len(self.driver.held or ())
        elif op == "release":
            result["released"] = self.driver.release()
        elif op == "liveness":
            session = self._current(which)
            session.check_liveness(now)
            self.driver.pump()
            await self.wait_for(
                lambda e: isinstance(e, LivenessChecked) and e.session is session, since, timeout)
        elif op == "delete_child":
            session = self._current(which)
            spi = self._child(command["spi_in"], which)
            session.delete_child_sa(spi, now)
            self.driver.pump()
            done = await self.wait_for(
                lambda e: isinstance(e, ChildSaDeleted) and e.child.spi_in == spi, since, timeout)
            result["deleted"] = _describe(done)
        elif op == "delete":
            session = self._current(which)
            session.delete(now)
            self.driver.pump()
            done = await self.wait_for(
                lambda e: isinstance(e, IkeSaDeleted) and e.session is session, since, timeout)
            result["deleted"] = _describe(done)
        elif op == "clone":
            result.update(await self._clone(since, timeout))
        elif op == "move":
            session = self._current(which)
            session.update_addresses((command["local"], self.endpoint.config.nat_port), now)
            self.driver.pump()
            done = await self.wait_for(
                lambda e: isinstance(e, IkeSaMoved) and e.session is session, since, timeout)
            result["moved"] = {"local": list(session.sa.local_address),
                               "remote": list(session.sa.remote_address)}
        elif op == "wait":
            # The first event named ``event`` since event number ``since`` whose description
            # has every item of ``match`` (e.g. {"old": SPI} or {"reason": "deleted_by_peer"}).
            name, match = command["event"], command.get("match", {})
            start = int(command.get("since", since))
            done = await self.wait_for(
                lambda e: type(e).__name__ == name
                and all(_describe(e).get(k) == v for k, v in match.items()),
                start, timeout)
            result["found"] = _describe(done)
        elif op == "state":
            result.update(self.state())
        else:
            raise StepFailed(f"unknown op {op!r}")
        return result

    async def _clone(self, since: int, timeout: float) -> dict[str, Any]:
        """RFC 7791 §5.1: refused locally (nothing sent) unless both peers announced support."""
        session = self._current("main")
        request_clone = getattr(session, "request_clone", None)
        if request_clone is None:
            raise StepFailed("the engine has no IkeSession.request_clone yet")
        sent_before = self.driver.sent
        try:
            request_clone(self.driver.now())
        except CloneRefused as refusal:
            self.driver.pump()
            return {"refused": refusal.reason, "datagrams_sent": self.driver.sent - sent_before}
        except LocalProtocolError as exc:
            return {"refused": f"LocalProtocolError: {exc}"}
        self.driver.pump()
        done = await self.wait_for(
            lambda e: isinstance(e, (IkeSaCloned, CloneFailed)), since, timeout)
        outcome = _describe(done)
        if isinstance(done, IkeSaCloned):
            outcome["clone"] = done.clone.sa.spi_i.hex() + ":" + done.clone.sa.spi_r.hex()
        return {"outcome": outcome, "datagrams_sent": self.driver.sent - sent_before}

    def state(self) -> dict[str, Any]:
        current = self.session
        return {
            "ike_sas": self.ike_sas,
            "child_sas": self.child_sas,
            "current": None if current is None else {
                "spis": current.sa.spi_i.hex() + ":" + current.sa.spi_r.hex(),
                "state": current.state.value,
                "children": [c.spi_in.hex() for c in current.child_sas],
                "peer_clone_supported": current.sa.peer_clone_supported,
                "local_clone_supported": current.sa.local_clone_supported,
                "integrity_failures": current.integrity_failures,
                "remote_address": list(current.sa.remote_address),
            },
            "event_log": [
                _describe(e) for e in self.events if not isinstance(e, EspPacketReceived)
            ],
            "esp_received": sum(isinstance(e, EspPacketReceived) for e in self.events),
            "esp_dropped": self.endpoint.esp_dropped,
            "echoes_answered": self.echoes_answered,
            "malformed": self.endpoint.malformed,
        }


def _is_echo_reply(packet: bytes) -> bool:
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != ICMP:
        return False
    return packet[(packet[0] & 0x0F) * 4] == ECHO_REPLY


async def _serve(args: argparse.Namespace) -> None:
    harness = EngineHarness(args)
    await harness.driver.start()
    consumer = asyncio.ensure_future(harness.consume())
    loop = asyncio.get_running_loop()
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line or not line.strip():
                break
            command = json.loads(line)
            if command["op"] == "quit":
                break
            try:
                answer = {"ok": True, **await harness.step(command)}
            except (StepFailed, LocalProtocolError, ValueError) as exc:
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            answer["events"] = len(harness.events)
            print(json.dumps(answer), flush=True)
    finally:
        consumer.cancel()
        harness.driver.close()


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("initiator", "responder"), required=True)
    parser.add_argument("--local", required=True)
    parser.add_argument("--remote")
    parser.add_argument("--local-id", required=True)
    parser.add_argument("--remote-id")
    parser.add_argument("--psk-file", required=True)
    parser.add_argument("--ike", required=True)
    parser.add_argument("--esp", required=True)
    parser.add_argument("--local-ts", nargs="+", default=["0.0.0.0/0"])
    parser.add_argument("--remote-ts", nargs="+", default=["0.0.0.0/0"])
    parser.add_argument("--keylog")
    parser.add_argument("--extra-local", nargs="*", default=[], help="more addresses to bind")
    parser.add_argument("--max-clones", type=int, default=None)
    parser.add_argument("--fragment-threshold", type=int, default=None,
                        help="IKE fragmentation threshold, bytes of IP datagram (RFC 7383)")
    asyncio.run(_serve(parser.parse_args(argv)))
    return 0


# --- the test side ---------------------------------------------------------------------------

class EnginePeer:
    """`interop_engine_peer.py` in a namespace; `step` sends one command and returns the answer.

    ``netns_prefix`` is the command prefix that enters the namespace (``ip netns exec NS``);
    ``preexec_fn`` makes the child die with the test process.
    """

    def __init__(
        self,
        netns_prefix: Sequence[str],
        args: Sequence[str],
        log: Path,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [*netns_prefix, sys.executable, str(Path(__file__)), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            preexec_fn=preexec_fn, text=True, bufsize=1,
        )
        self.log_path = log
        ready = self._read()
        if not ready.get("ready"):
            raise RuntimeError(f"engine peer did not start: {ready}")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(5)
            raise RuntimeError(
                f"engine peer exited {self.proc.returncode}:\n{self.log_path.read_text()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def step(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one command; the answer (``ok`` False with ``error`` when it failed)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def must(self, op: str, **fields: Any) -> dict[str, Any]:
        """`step`, raising AssertionError with the harness's reason when it failed."""
        answer = self.step(op, **fields)
        assert answer["ok"], f"{op} {fields}: {answer.get('error')}"
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
