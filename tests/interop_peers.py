"""Real peers for the interop suite: network namespaces, strongSwan (charon-systemd), tcpdump.

Everything runs inside network namespaces this module creates (names unique per test run) and
deletes again; only processes started here are ever signalled. Facts used (see the runbook
../shared/interop.md): charon-systemd reads all of its configuration from the file named by
STRONGSWAN_CONF and must never start without it; kernel-libipsec gives userspace ESP (the
kernel here has no ESP), forces UDP encapsulation (NAT-T to port 4500) and needs inner
addresses separate from the IKE peers' own; `append = no` and ike/chd level 4 make charon log
its derived keys as hex dumps; swanctl.conf takes one `key = value` per line.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CHARON = "/usr/sbin/charon-systemd"
REQUIRED_TOOLS = ("ip", "swanctl", "tcpdump", "tshark", CHARON)
DEBIAN_PACKAGES = (
    "charon-systemd strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins "
    "libstrongswan-extra-plugins tshark tcpdump iproute2"
)
# One token per test run (the test process's PID): names never collide with another run, and
# a namespace left by a run that was killed can be recognised as stale.
RUN_TOKEN = str(os.getpid())
_OUR_NETNS = re.compile(r"^ikc(\d+)[a-z]-[ir]$")

# The two-namespace layout: veth between the IKE peers, inner addresses on lo for the tunnels.
INITIATOR_ADDR = "192.0.2.1"
RESPONDER_ADDR = "192.0.2.2"
PSK = "interop-test-psk-0123456789"
INITIATOR_ID = "init@ikecore.test"
RESPONDER_ID = "resp@ikecore.test"

# The matrix of issue 8: IKE proposals of the groups and ciphers ikecore supports, and ESP
# proposals each on its own Child SA (own inner address pair, so the responder picks the child
# config by traffic selector).
IKE_PROPOSALS = (
    "aes128gcm16-prfsha256-x25519",
    "aes256gcm16-prfsha384-ecp384",
    "aes256gcm16-prfsha256-modp2048",
    "chacha20poly1305-prfsha256-x25519",
)
ESP_CHILDREN = (
    ("esp128", "aes128gcm16"),
    ("esp256", "aes256gcm16"),
    ("esp128esn", "aes128gcm16-esn"),
    ("esp256esn", "aes256gcm16-esn"),
    ("esp128either", "aes128gcm16-esn-noesn"),  # ESN or not: strongSwan still picks ESN
)

STOP_TIMEOUT = 5.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class InteropSetupError(RuntimeError):
    """The machine cannot run the interop suite; the message says what to install or fix."""


def environment_problem() -> str | None:
    """Why the interop suite cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the interop suite needs root (network namespaces, raw sockets); CI runs as root"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return (
            f"missing {', '.join(missing)}: install the Debian packages {DEBIAN_PACKAGES} "
            "(`make deps` does)"
        )
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing: strongSwan's kernel-libipsec needs a TUN device"
    return None


def run(
    args: Sequence[str],
    *,
    timeout: float = 20.0,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short command; on failure raise with its output, which tells what went wrong."""
    proc = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and proc.returncode != 0:
        raise InteropSetupError(
            f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        )
    return proc


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Signal a process we started, wait STOP_TIMEOUT s, then SIGKILL it. Returns its status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
    return proc.returncode


def _die_with_test_process() -> None:
    """Popen preexec_fn: the child gets SIGTERM when the test process dies, even by SIGKILL
    (prctl PR_SET_PDEATHSIG survives the exec of `ip netns exec` and of the daemon)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Netns:
    name: str

    def exec_args(self) -> list[str]:
        """Prefix that runs a command inside the namespace (`ip` execs it: same PID)."""
        return ["ip", "netns", "exec", self.name]

    def run(self, args: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return run([*self.exec_args(), *args], **kwargs)  # type: ignore[arg-type]

    def popen(
        self, args: Sequence[str], *, stdout: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with stdout.open("wb") as out:
            return subprocess.Popen(
                [*self.exec_args(), *args], stdout=out, stderr=subprocess.STDOUT, env=env,
                preexec_fn=_die_with_test_process,
            )


def remove_stale_namespaces() -> list[str]:
    """Delete namespaces of earlier runs of this suite that were killed before their teardown
    (creating process gone, no process left inside). Returns the names deleted."""
    removed = []
    for line in run(["ip", "netns", "list"]).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _OUR_NETNS.match(name)
        if match is None or Path(f"/proc/{int(match.group(1))}").exists():
            continue
        if run(["ip", "netns", "pids", name], check=False).stdout.strip():
            continue  # something still runs in it: not ours to judge
        run(["ip", "netns", "del", name], check=False)
        removed.append(name)
    return removed


@dataclass
class NetnsPair:
    """Two namespaces joined by a veth pair: initiator 192.0.2.1, responder 192.0.2.2.

    ``inner_pairs`` pairs of tunnel addresses (198.51.100.1/.2, .3/.4, ...) sit on lo, the
    initiator's odd, the responder's even: traffic selectors must not contain the IKE peers'
    own addresses (kernel-libipsec would route its own ESP-in-UDP into the tunnel).
    """

    tag: str
    inner_pairs: int = len(ESP_CHILDREN)
    initiator: Netns = field(init=False)
    responder: Netns = field(init=False)
    initiator_if: str = field(init=False)
    responder_if: str = field(init=False)
    initiator_addr: str = INITIATOR_ADDR
    responder_addr: str = RESPONDER_ADDR

    def __post_init__(self) -> None:
        base = f"ikc{RUN_TOKEN}{self.tag}"
        self.initiator = Netns(f"{base}-i")
        self.responder = Netns(f"{base}-r")
        # Interface names are limited to 15 characters.
        self.initiator_if = f"ik{RUN_TOKEN}{self.tag}i"[:15]
        self.responder_if = f"ik{RUN_TOKEN}{self.tag}r"[:15]

    def inner(self, index: int) -> tuple[str, str]:
        """The (initiator, responder) tunnel addresses of pair ``index`` (0-based)."""
        return f"198.51.100.{2 * index + 1}", f"198.51.100.{2 * index + 2}"

    def create(self) -> None:
        for ns in (self.initiator, self.responder):
            try:
                run(["ip", "netns", "add", ns.name])
            except InteropSetupError as exc:
                raise InteropSetupError(f"cannot create network namespace: {exc}") from None
            # No IPv6: link-local addresses appearing later make charon send MOBIKE updates.
            ns.run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            ns.run(["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
            ns.run(["ip", "link", "set", "lo", "up"])
        run(["ip", "link", "add", self.initiator_if, "type", "veth", "peer", "name",
             self.responder_if])
        for ns, ifname, addr in (
            (self.initiator, self.initiator_if, self.initiator_addr),
            (self.responder, self.responder_if, self.responder_addr),
        ):
            run(["ip", "link", "set", ifname, "netns", ns.name])
            ns.run(["ip", "addr", "add", f"{addr}/24", "dev", ifname])
            ns.run(["ip", "link", "set", ifname, "up"])
        for index in range(self.inner_pairs):
            inner_i, inner_r = self.inner(index)
            self.initiator.run(["ip", "addr", "add", f"{inner_i}/32", "dev", "lo"])
            self.responder.run(["ip", "addr", "add", f"{inner_r}/32", "dev", "lo"])

    def delete(self) -> None:
        """Delete both namespaces (the veth pair goes with them); never raises."""
        for ns in (self.initiator, self.responder):
            run(["ip", "netns", "del", ns.name], check=False)


# --- strongSwan configuration -------------------------------------------------------------

@dataclass(frozen=True)
class ChildConfig:
    name: str
    local_ts: str
    remote_ts: str
    esp_proposals: str  # strongSwan syntax, e.g. "aes128gcm16" or "aes128gcm16-esn"


@dataclass(frozen=True)
class ConnectionConfig:
    name: str
    local_addrs: str
    remote_addrs: str
    proposals: Sequence[str]
    local_id: str
    remote_id: str
    children: Sequence[ChildConfig]
    remote_port: int | None = None
    dpd_delay: str | None = None  # e.g. "1s": charon checks liveness after that much silence


def swanctl_conf(connections: Sequence[ConnectionConfig], psk: str = PSK) -> str:
    """swanctl.conf text: one `key = value` per line (two on a line are read as one value)."""
    lines = ["connections {"]
    ids: set[str] = set()
    for conn in connections:
        ids.update((conn.local_id, conn.remote_id))
        lines += [
            f"  {conn.name} {{",
            "    version = 2",
            f"    local_addrs = {conn.local_addrs}",
            f"    remote_addrs = {conn.remote_addrs}",
            f"    proposals = {', '.join(conn.proposals)}",
            "    childless = allow",
        ]
        if conn.remote_port is not None:
            lines.append(f"    remote_port = {conn.remote_port}")
        if conn.dpd_delay is not None:
            lines.append(f"    dpd_delay = {conn.dpd_delay}")
        lines += [
            "    local {", "      auth = psk", f"      id = {conn.local_id}", "    }",
            "    remote {", "      auth = psk", f"      id = {conn.remote_id}", "    }",
            "    children {",
        ]
        for child in conn.children:
            lines += [
                f"      {child.name} {{",
                f"        local_ts = {child.local_ts}",
                f"        remote_ts = {child.remote_ts}",
                f"        esp_proposals = {child.esp_proposals}",
                "      }",
            ]
        lines += ["    }", "  }"]
    lines += ["}", "secrets {", "  ike-psk {"]
    lines += [f"    id-{n} = {ident}" for n, ident in enumerate(sorted(ids), start=1)]
    lines += [f'    secret = "{psk}"', "  }", "}", ""]
    return "\n".join(lines)


PLUGINS = (
    "random nonce openssl pem pkcs1 x509 pubkey aes sha1 sha2 hmac gcm chapoly kdf curve25519 "
    "kernel-libipsec kernel-netlink socket-default vici"
)


def strongswan_conf(
    workdir: Path, port: int = 500, port_nat_t: int = 4500, fragment_size: int = 0
) -> str:
    """Private strongswan.conf: own vici socket and key log in ``workdir``, nothing in /etc.
    ``fragment_size``: largest IP datagram of a sent IKE fragment (0: strongSwan's default)."""
    return f"""charon {{
  fragment_size = {fragment_size}
  load_modular = no
  load = {PLUGINS}
  port = {port}
  port_nat_t = {port_nat_t}
  install_routes = no
  install_virtual_ip = no
  retransmit_tries = 2
  retransmit_timeout = 1.0
  plugins {{
    vici {{
      socket = unix://{workdir}/charon.vici
    }}
  }}
  filelog {{
    main {{
      path = {workdir}/charon.log
      append = no
      default = 1
      ike = 4
      chd = 4
      cfg = 2
      enc = 1
      flush_line = yes
      time_format = %H:%M:%S
    }}
  }}
  syslog {{
    daemon {{
      default = -1
    }}
  }}
}}
charon-systemd {{
  journal {{
    default = -1
  }}
}}
"""


def connection_name(ike_proposal: str) -> str:
    return "ike-" + ike_proposal


class StrongSwan:
    """One charon-systemd in a namespace, driven through swanctl on its private vici socket."""

    def __init__(self, netns: Netns, workdir: Path, fragment_size: int = 0) -> None:
        self.netns = netns
        self.workdir = workdir
        self.fragment_size = fragment_size
        self.log_path = workdir / "charon.log"
        self.vici = workdir / "charon.vici"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "strongswan.conf"
        conf.write_text(strongswan_conf(self.workdir, fragment_size=self.fragment_size))
        env = {**os.environ, "STRONGSWAN_CONF": str(conf)}
        self.proc = self.netns.popen([CHARON], stdout=self.workdir / "stdout.log", env=env)
        deadline = time.monotonic() + 10.0
        while not self.vici.exists():
            if self.proc.poll() is not None:
                out = (self.workdir / "stdout.log").read_text(errors="replace")
                raise InteropSetupError(f"charon-systemd exited {self.proc.returncode}:\n{out}")
            if time.monotonic() > deadline:
                raise InteropSetupError(f"charon-systemd made no vici socket at {self.vici}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM (charon sends its Deletes and exits), SIGKILL after a timeout."""
        if self.proc is not None:
            stop_process(self.proc)

    def swanctl(self, *args: str, check: bool = True, timeout: float = 30.0) -> str:
        proc = self.netns.run(
            ["swanctl", *args, "--uri", f"unix://{self.vici}"], check=check, timeout=timeout
        )
        return proc.stdout + proc.stderr

    def load(self, connections: Sequence[ConnectionConfig]) -> None:
        path = self.workdir / "swanctl.conf"
        path.write_text(swanctl_conf(connections))
        out = self.swanctl("--load-all", "--file", str(path))
        if f"successfully loaded {len(connections)} connections" not in out:
            raise InteropSetupError(f"swanctl rejected {path}:\n{out}")

    def initiate(self, child: str, ike: str | None = None) -> tuple[bool, str]:
        """Bring up ``child`` (and its IKE SA if none is up). Returns (success, output)."""
        args = ["--initiate", "--child", child, "--timeout", "10"]
        if ike is not None:
            args += ["--ike", ike]
        proc = self.netns.run(
            ["swanctl", *args, "--uri", f"unix://{self.vici}"], check=False, timeout=20
        )
        return proc.returncode == 0, proc.stdout + proc.stderr

    def terminate_ike(self, ike: str) -> str:
        return self.swanctl("--terminate", "--ike", ike, "--timeout", "10")

    def list_sas(self) -> str:
        return self.swanctl("--list-sas")

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")


def strongswan_version() -> str:
    """The installed strongSwan, e.g. "5.9.8-5+deb12u6" (Debian package version)."""
    return run(["dpkg-query", "-W", "-f", "${Version}", "charon-systemd"]).stdout.strip()


# --- charon's key log ---------------------------------------------------------------------

# "09:18:52 16[IKE] Sk_ei secret => 20 bytes @ 0x55e788a1e980"
_DUMP_HEAD = re.compile(r"^\S+ (\d+)\[(\w+)\] (.+?) => (\d+) bytes @ 0x[0-9a-f]+$")
# "09:18:52 16[IKE]   16: 1D 1E EC 80                 ...."  (hex area: 16 x "XX ")
_DUMP_ROW = re.compile(r"^\S+ (\d+)\[(\w+)\]\s+(\d+): (.*)$")
_SPI_LINE = re.compile(r"^\S+ (\d+)\[CHD\]\s+SPI 0x([0-9a-f]{8}), src (\S+) dst (\S+)$")
# A rekey's responder installs the inbound SA and only "registers" the outbound one, which it
# adds later, once the old SA is deleted (RFC 7296 §2.8), possibly on another thread.
_DIRECTION = re.compile(r"^\S+ (\d+)\[CHD\] (?:adding|registering) (inbound|outbound) ESP SA$")
_CHILD_UP = re.compile(
    r"^\S+ (\d+)\[IKE\] (inbound |outbound )?CHILD_SA (\S+)\{\d+\} established with SPIs "
    r"([0-9a-f]{8})_i ([0-9a-f]{8})_o"
)
_IKE_LABELS = {
    "shared Diffie Hellman secret": "g_ir",
    "SKEYSEED": "skeyseed",
    "Sk_d secret": "sk_d",
    "Sk_ai secret": "sk_ai",
    "Sk_ar secret": "sk_ar",
    "Sk_ei secret": "sk_ei",
    "Sk_er secret": "sk_er",
    "Sk_pi secret": "sk_pi",
    "Sk_pr secret": "sk_pr",
}
_CHILD_LABELS = {
    "encryption initiator key": "encr_i",
    "encryption responder key": "encr_r",
    "integrity initiator key": "integ_i",
    "integrity responder key": "integ_r",
}


@dataclass(frozen=True)
class HexDump:
    thread: str
    label: str
    data: bytes


def hex_dumps(log: str) -> Iterator[tuple[int, HexDump | str]]:
    """Yield (line number, HexDump) for every dump and (line number, line) for other lines."""
    lines = log.splitlines()
    i = 0
    while i < len(lines):
        head = _DUMP_HEAD.match(lines[i])
        if head is None:
            yield i, lines[i]
            i += 1
            continue
        thread, label, size = head.group(1), head.group(3), int(head.group(4))
        data = bytearray()
        start = i
        i += 1
        while len(data) < size and i < len(lines):
            row = _DUMP_ROW.match(lines[i])
            if row is None or row.group(1) != thread:
                break
            data += bytes.fromhex(row.group(4)[:48])
            i += 1
        if len(data) != size:
            raise ValueError(f"charon log line {start + 1}: {label} dump has {len(data)}/{size}")
        yield start, HexDump(thread, label, bytes(data))


@dataclass(frozen=True)
class LoggedIkeKeys:
    """One IKE SA's secrets as charon logged them (RFC 7296 §2.14 names)."""

    g_ir: bytes
    skeyseed: bytes
    sk_d: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes
    sk_ai: bytes = b""
    sk_ar: bytes = b""


@dataclass
class LoggedChildKeys:
    """One Child SA's KEYMAT and SPIs as one side logged them."""

    encr_i: bytes
    encr_r: bytes
    integ_i: bytes = b""
    integ_r: bytes = b""
    inbound_spi: int | None = None
    inbound_src: str = ""
    inbound_dst: str = ""
    outbound_spi: int | None = None
    outbound_src: str = ""
    outbound_dst: str = ""
    name: str | None = None  # set when charon logged the Child SA as established


@dataclass
class LoggedKeys:
    ike: list[LoggedIkeKeys]
    children: list[LoggedChildKeys]

    def child(self, name: str) -> LoggedChildKeys:
        found = [c for c in self.children if c.name == name]
        if len(found) != 1:
            raise LookupError(f"{len(found)} established Child SAs named {name!r} in the log")
        return found[0]


def parse_keys(log: str) -> LoggedKeys:
    """Key sets in log order. Child SA keys get their SPIs and, once installed, their name."""
    ike: list[LoggedIkeKeys] = []
    children: list[LoggedChildKeys] = []
    ike_parts: dict[str, bytes] = {}
    child_parts: dict[str, bytes] = {}
    # Per charon thread: the Child SA being installed and the direction of the next SPI line.
    installing: dict[str, tuple[LoggedChildKeys, str]] = {}
    for _, item in hex_dumps(log):
        if isinstance(item, HexDump):
            if item.label in _IKE_LABELS:
                if item.label == "shared Diffie Hellman secret":
                    ike_parts = {}
                ike_parts[_IKE_LABELS[item.label]] = item.data
                if item.label == "Sk_pr secret":
                    ike.append(LoggedIkeKeys(**ike_parts))
                    ike_parts = {}
            elif item.label in _CHILD_LABELS:
                child_parts[_CHILD_LABELS[item.label]] = item.data
            continue
        direction = _DIRECTION.match(item)
        if direction is not None:
            thread = direction.group(1)
            if child_parts:  # the keys just logged belong to this installation
                children.append(LoggedChildKeys(**child_parts))
                child_parts = {}
                installing[thread] = (children[-1], "")
            if thread in installing:
                installing[thread] = (installing[thread][0], direction.group(2))
            continue
        spi_line = _SPI_LINE.match(item)
        if spi_line is not None and spi_line.group(1) in installing:
            keys, which = installing[spi_line.group(1)]
            spi, src, dst = int(spi_line.group(2), 16), spi_line.group(3), spi_line.group(4)
            if which == "inbound":
                keys.inbound_spi, keys.inbound_src, keys.inbound_dst = spi, src, dst
            else:
                keys.outbound_spi, keys.outbound_src, keys.outbound_dst = spi, src, dst
            continue
        up = _CHILD_UP.match(item)
        if up is not None:
            installing.pop(up.group(1), None)  # this thread's installation is complete
            inbound, outbound = int(up.group(4), 16), int(up.group(5), 16)
            for keys in children:
                if keys.inbound_spi == inbound and keys.outbound_spi == outbound:
                    keys.name = up.group(3)
    return LoggedKeys(ike, children)


# --- traffic ------------------------------------------------------------------------------

class Capture:
    """tcpdump on one interface of a namespace; --immediate-mode or the last packets are lost."""

    def __init__(self, netns: Netns, interface: str, path: Path) -> None:
        self.path = path
        self._log = path.with_suffix(".tcpdump.log")
        self._proc = netns.popen(
            ["tcpdump", "-i", interface, "-n", "-U", "--immediate-mode", "-w", str(path), "udp"],
            stdout=self._log,
        )
        deadline = time.monotonic() + 10.0
        while "listening on" not in self._log.read_text(errors="replace"):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                stop_process(self._proc)
                raise InteropSetupError(f"tcpdump did not start:\n{self._log.read_text()}")
            time.sleep(0.01)

    def stop(self) -> Path:
        """Stop tcpdump (it writes out what it holds on SIGTERM) and return the pcap path."""
        stop_process(self._proc)
        return self.path


ICMP_HELPER = Path(__file__).with_name("interop_icmp.py")


def icmp_echo(netns: Netns, src: str, dst: str, count: int = 2) -> int:
    """Send ``count`` ICMP echo requests src -> dst inside ``netns``; return replies received.

    No ping binary on a minimal Debian: a raw socket in a helper process does it.
    """
    out = netns.run([sys.executable, str(ICMP_HELPER), src, dst, str(count)], timeout=30).stdout
    return int(out.strip())


@dataclass
class StrongSwanPair:
    """strongSwan initiator in ``netns.initiator``, strongSwan responder in ``netns.responder``."""

    netns: NetnsPair
    initiator: StrongSwan
    responder: StrongSwan
