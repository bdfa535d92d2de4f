"""A writer killed with SIGKILL in the middle of a stream of updates and ESP traffic: after the
restart every committed SA is intact and the outbound sequence numbers resume above every
packet that was sent (the reservations, not per-packet writes, guarantee it)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import pytest
from store_fixtures import SHARED_KINDS, make_sa, open_kind

from ikecore.esp import EspOutbound
from ikecore.sa import IkeSa

SAS = 6
BLOCK = 64  # sequence numbers reserved at a time: one store write per 64 packets
PACKETS_PER_UPDATE = 20
_fork = multiprocessing.get_context("fork")


def _writer(kind: str, location: str, write_fd: int, fresh: bool) -> None:
    """Creates (or, after a crash, loads) the SAs, then forever: ESP packets on each SA's
    Child SA, then an update of the IKE SA. Reports each step after it is done."""
    out = os.fdopen(write_fd, "w", buffering=1)
    store = open_kind(kind, location)
    if fresh:
        sas = [make_sa(n, children=1) for n in range(SAS)]
        for sa in sas:
            store.put_ike_sa(sa)
    else:
        loaded = [store.get_ike_sa(*make_sa(n).spis) for n in range(SAS)]
        sas = [sa for sa in loaded if sa is not None]
    senders = []
    for sa in sas:
        (child,) = sa.child_sas.values()
        t = child.transforms
        outbound = EspOutbound(child.spi_out, child.key_out, t.icv_length, t.esn, child.seq_out)
        senders.append([outbound, child.seq_out])
    print("ready", file=out)
    for batch in range(10**9):
        for n, sa in enumerate(sas):
            (child,) = sa.child_sas.values()
            sender = senders[n]
            outbound: EspOutbound = sender[0]
            for _ in range(PACKETS_PER_UPDATE):
                if outbound.seq >= sender[1]:
                    sender[1] = store.reserve_seq(child.spi_in, BLOCK)
                packet = outbound.encapsulate(b"\x45" + bytes(59), 4)
            print(f"sent {n} {int.from_bytes(packet[4:8], 'big')}", file=out)
            child.seq_out = outbound.seq
            if batch % 4:
                continue  # the record is written on IKE changes, not per packet
            sa.next_request_id += 1
            store.put_ike_sa(sa)
            print(f"put {n} {sa.next_request_id}", file=out)


def _run_and_kill(kind: str, location: str, fresh: bool, delay: float) -> list[str]:
    read_fd, write_fd = os.pipe()
    process = _fork.Process(target=_writer, args=(kind, location, write_fd, fresh))
    process.start()
    os.close(write_fd)
    lines: list[str] = []
    with os.fdopen(read_fd) as reader:
        drain = threading.Thread(target=lambda: lines.extend(line.strip() for line in reader))
        drain.start()
        deadline = time.monotonic() + 30
        while "ready" not in lines and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)  # mid-stream
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        process.join(10)
        drain.join(10)
    assert process.exitcode == -signal.SIGKILL
    return lines


def _check_after_crash(kind: str, location: str, lines: list[str]) -> None:
    assert "ready" in lines
    last_sent: dict[int, int] = {}
    last_put: dict[int, int] = {}
    for line in lines:
        word, *numbers = line.split()
        if word == "sent":
            last_sent[int(numbers[0])] = int(numbers[1])
        elif word == "put":
            last_put[int(numbers[0])] = int(numbers[1])
    assert len(last_put) == SAS, "the writer was killed before it got going"
    store = open_kind(kind, location)
    for n in range(SAS):
        original = make_sa(n, children=1)
        sa = store.get_ike_sa(*original.spis)
        assert isinstance(sa, IkeSa), f"SA {n} lost"
        # Intact: keys, addresses, identities exactly as created.
        assert sa.keys == original.keys and sa.remote_id == original.remote_id
        (child,) = sa.child_sas.values()
        (original_child,) = original.child_sas.values()
        assert (child.key_in, child.key_out) == (original_child.key_in, original_child.key_out)
        # Nothing committed is lost: at least the last reported update, at most one more
        # (committed, killed before it was reported).
        assert last_put[n] <= sa.next_request_id <= last_put[n] + 1
        # Outbound ESP resumes above every packet sent.
        t = child.transforms
        resumed = EspOutbound(child.spi_out, child.key_out, t.icv_length, t.esn, child.seq_out)
        next_seq = int.from_bytes(resumed.encapsulate(b"\x45" + bytes(19), 4)[4:8], "big")
        assert next_seq > last_sent[n]
    store.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", SHARED_KINDS)
def test_sigkilled_writer_loses_nothing_committed(kind: str, location: str) -> None:
    lines = _run_and_kill(kind, location, fresh=True, delay=0.4)
    _check_after_crash(kind, location, lines)
    # The restarted writer continues from the store and is killed again.
    lines = _run_and_kill(kind, location, fresh=False, delay=0.3)
    _check_after_crash(kind, location, lines)
