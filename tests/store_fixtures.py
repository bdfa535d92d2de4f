"""Helpers of the store tests and benchmarks: SA records, real redis-server processes.

`RedisServer` runs the Debian ``redis-server`` binary on a free loopback port in a temporary
directory (no mocks). A missing binary is a test failure with the install hint, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from ikecore.config import Identity, TrafficSelector
from ikecore.constants import DhGroup, EncrId, PrfId
from ikecore.sa import ChildSa, IkeSa, IkeSaKeys
from ikecore.states import IkeState
from ikecore.store import RedisStore, SaStore, SqliteStore
from ikecore.suites import EspTransforms, IkeTransforms

STORE_KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
STORE_KINDS = ("memory", "sqlite", "redis")
SHARED_KINDS = ("sqlite", "redis")

StoreFactory = Callable[..., SaStore]
"""Opens another store object on the test's store: ``factory(node_id="local", **options)``."""


def ike_spis(n: int) -> tuple[bytes, bytes]:
    return (0x1100000000000000 + n).to_bytes(8, "big"), (0x2200000000000000 + n).to_bytes(8, "big")


def make_sa(n: int, *, children: int = 2, esn: bool = False, peer: str = "") -> IkeSa:
    """A realistic established IKE SA record, distinct for each ``n`` (keys too)."""
    spi_i, spi_r = ike_spis(n)
    secret = n.to_bytes(4, "big")
    keys = IkeSaKeys(
        *(bytes([index]) * 28 + secret for index in range(1, 8))  # 32-byte keys incl. salts
    )
    sa = IkeSa(
        spi_i=spi_i,
        spi_r=spi_r,
        initiator=n % 2 == 0,
        local_address=("198.51.100.1", 500),
        remote_address=(f"192.0.2.{n % 250 + 1}", 4500),
        state=IkeState.ESTABLISHED,
        transforms=IkeTransforms(EncrId.AES_GCM_16, 256, PrfId.HMAC_SHA2_256, DhGroup.CURVE25519),
        keys=keys,
        local_id=Identity.parse("gateway.example"),
        remote_id=Identity.parse(peer or f"client{n}@example.org"),
        peer_name="clients",
        next_request_id=3,
        next_peer_request_id=2,
        sk_iv=2,
        local_clone_supported=True,
        peer_clone_supported=True,
        family=spi_i.hex(),
        created_at=1000.0 + n,
        established_at=1000.5 + n,
    )
    for c in range(children):
        add_child(sa, n * 16 + c + 1, esn=esn)
    return sa


def add_child(sa: IkeSa, number: int, *, esn: bool = False) -> ChildSa:
    spi_in = (0x40000000 + number).to_bytes(4, "big")
    child = ChildSa(
        spi_in=spi_in,
        spi_out=(0x80000000 + number).to_bytes(4, "big"),
        initiator=sa.initiator,
        transforms=EspTransforms(EncrId.AES_GCM_16, 256, esn),
        key_in=bytes([0xA0 + number % 16]) * 32 + spi_in,
        key_out=bytes([0xB0 + number % 16]) * 32 + spi_in,
        local_ts=(TrafficSelector("10.0.0.0", "10.0.0.255"),),
        remote_ts=(TrafficSelector("10.1.0.0", "10.1.0.255", 6, 0, 65535),),
        seq_out=7,
        created_at=1001.0,
    )
    sa.child_sas[spi_in] = child
    return child


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        pytest.fail(
            "redis-server is not installed: the store tests need the Debian package "
            "(`apt-get install redis-server`, in the Makefile's DEB_PACKAGES)",
            pytrace=False,
        )
    return path


class RedisServer:
    """A redis-server process on 127.0.0.1 with its own directory; persistence off."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.port = free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(directory),
                "--save", "",
                "--appendonly", "no",
                "--logfile", str(directory / "redis.log"),
                *extra,
            ],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client.ping():
                    break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (directory / "redis.log").read_text(errors="replace")[-2000:]
                    pytest.fail(f"redis-server did not start on port {self.port}:\n{log}")
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: a node lost without a chance to save or hand over anything."""
        self.client.close()
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


def open_kind(
    kind: str, location: str, *, node_id: str = "local", key: bytes = STORE_KEY, **options: object
) -> SaStore:
    """A store of ``kind`` on ``location`` (a file path for sqlite, a URL for redis)."""
    if kind == "sqlite":
        return SqliteStore(location, key, node_id=node_id)
    if kind == "redis":
        return RedisStore(location, node_id, key, **options)  # type: ignore[arg-type]
    raise ValueError(f"no shared store kind {kind!r}")
