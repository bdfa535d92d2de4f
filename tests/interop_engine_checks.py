"""Checks shared by the interop tests that put the ikecore engine on the wire.

The engine peer (tests/interop_engine_peer.py) reports every IKE SA and Child SA it made with
its keys; these functions hold them against the keys strongSwan logged (`parse_keys` of its
charon.log) and against tshark's reading of the capture.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interop_engine_peer import EnginePeer
from interop_peers import (
    INITIATOR_ID,
    PSK,
    RESPONDER_ID,
    ChildConfig,
    LoggedKeys,
    NetnsPair,
    StrongSwan,
)
from interop_tshark import Dissection, dissect

from ikecore.constants import ExchangeType, PayloadType

NO_PROPOSAL_CHOSEN = 14  # RFC 7296 §3.10.1

# Child SAs and the inner address pair (index into NetnsPair.inner) each one uses.
CHILDREN = (
    ("esp128", "aes128gcm16", 0),
    ("esp256", "aes256gcm16", 1),
    ("esp128esn", "aes128gcm16-esn", 2),
    ("esp256esn", "aes256gcm16-esn", 3),
)


def children_config(pair: NetnsPair, *, initiator: bool) -> list[ChildConfig]:
    configs = []
    for name, esp, index in CHILDREN:
        inner_i, inner_r = pair.inner(index)
        local, remote = (inner_i, inner_r) if initiator else (inner_r, inner_i)
        configs.append(ChildConfig(name, f"{local}/32", f"{remote}/32", esp))
    return configs


def engine_args(role: str, pair: NetnsPair, workdir: Path, ike: str, esp: str) -> list[str]:
    psk = workdir / "psk"
    psk.write_text(PSK)
    common = ["--psk-file", str(psk), "--ike", ike, "--esp", esp,
              "--keylog", str(workdir / "keys")]
    if role == "initiator":
        inner_i, inner_r = pair.inner(0)
        return ["--role", "initiator", "--local", pair.initiator_addr,
                "--remote", pair.responder_addr, "--local-id", INITIATOR_ID,
                "--remote-id", RESPONDER_ID, "--local-ts", f"{inner_i}/32",
                "--remote-ts", f"{inner_r}/32", *common]
    return ["--role", "responder", "--local", pair.responder_addr, "--local-id", RESPONDER_ID,
            *common]


@dataclass
class Steps:
    """What each step of a scenario answered; a failed step is kept, not raised, so that one
    broken exchange fails its own test and not the whole scenario."""

    answers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def run(self, name: str, peer: EnginePeer, op: str, **fields: Any) -> dict[str, Any]:
        started = time.monotonic()
        answer = peer.step(op, **fields)
        answer["elapsed_s"] = round(time.monotonic() - started, 3)
        self.answers[name] = answer
        return answer

    def note(self, name: str, **result: Any) -> dict[str, Any]:
        self.answers[name] = {"ok": True, **result}
        return self.answers[name]

    def failed(self, name: str, error: str) -> None:
        self.answers[name] = {"ok": False, "error": error}

    def ok(self, name: str) -> dict[str, Any]:
        """The step's answer; AssertionError with its reason if it failed or never ran."""
        answer = self.answers.get(name)
        assert answer is not None, f"step {name!r} did not run (an earlier step failed)"
        assert answer["ok"], f"step {name!r}: {answer.get('error')}"
        return answer


def wait_for_log(
    strongswan: StrongSwan, offset: int, accept: Callable[[str], bool], timeout: float
) -> str:
    """charon's log since ``offset`` once ``accept`` likes it (or as it is at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        text = strongswan.log_since(offset)
        if accept(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def ike_key_mismatches(engine_ike_sas: Sequence[dict[str, Any]], logged: LoggedKeys) -> list[str]:
    """Every IKE SA the engine made must have a key set in charon's log with all seven SK_*
    equal (found by SK_d, which is unique per SA). Returns what did not match."""
    problems = []
    by_sk_d = {keys.sk_d.hex(): keys for keys in logged.ike}
    for record in engine_ike_sas:
        ours = record["keys"]
        spis = f"{record['spi_i']}:{record['spi_r']}"
        theirs = by_sk_d.get(ours["sk_d"])
        if theirs is None:
            problems.append(f"IKE SA {spis}: SK_d {ours['sk_d']} not in strongSwan's log")
            continue
        for name in ("sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"):
            if getattr(theirs, name).hex() != ours[name]:
                problems.append(f"IKE SA {spis}: {name} differs")
    return problems


def child_key_mismatches(
    engine_child_sas: Sequence[dict[str, Any]], logged: LoggedKeys
) -> list[str]:
    """Every Child SA the engine made must be in charon's log under the same SPIs (our inbound
    SPI is its outbound one) with the same KEYMAT: "encryption initiator key" is the key of
    the direction from the exchange's initiator (RFC 7296 §2.17)."""
    problems = []
    for record in engine_child_sas:
        spi_in, spi_out = int(record["spi_in"], 16), int(record["spi_out"], 16)
        found = [c for c in logged.children
                 if (c.outbound_spi, c.inbound_spi) == (spi_in, spi_out)]
        if len(found) != 1:
            problems.append(f"Child SA {record['spi_in']}: {len(found)} logged with its SPIs")
            continue
        theirs = found[0]
        key_in, key_out = record["keys"]["key_in"], record["keys"]["key_out"]
        if record["initiator"]:
            expected = (key_out, key_in)
        else:
            expected = (key_in, key_out)
        if (theirs.encr_i.hex(), theirs.encr_r.hex()) != expected:
            problems.append(f"Child SA {record['spi_in']}: KEYMAT differs")
    return problems


def tshark_problems(dissection: Dissection) -> list[str]:
    """Every encrypted IKE message decrypted with a correct ICV, every ESP packet's ICV good."""
    problems = []
    for frame in dissection.encrypted_ike:
        if not frame.decrypted or frame.icv_correct is not True:
            problems.append(f"IKE frame {frame.number}: decrypted={frame.decrypted} "
                            f"icv={frame.icv_correct}")
    for esp in dissection.esp:
        if not (esp.decrypted and esp.icv_good) or esp.icv_bad:
            problems.append(f"ESP frame {esp.number} SPI {esp.spi:08x}: icv_good={esp.icv_good}")
    return problems


def flip_key_tables(source: Path, target: Path) -> None:
    """Copy Wireshark's key tables with one bit of every key's first byte flipped, for the
    check that tshark then flags every ICV."""
    target.mkdir(parents=True, exist_ok=True)
    ike = (source / "ikev2_decryption_table").read_text().splitlines()
    out = []
    for line in ike:
        if line.startswith("#") or not line.strip():
            out.append(line)
            continue
        fields = line.split(",")
        for index in (2, 3):  # SK_ei, SK_er (unquoted hex)
            fields[index] = _flip_hex(fields[index])
        out.append(",".join(fields))
    (target / "ikev2_decryption_table").write_text("\n".join(out) + "\n")
    esp = (source / "esp_sa").read_text().splitlines()
    out = []
    for line in esp:
        if line.startswith("#") or not line.strip():
            out.append(line)
            continue
        fields = line.split(",")
        fields[5] = '"' + _flip_hex(fields[5].strip('"')) + '"'  # "0x<key||salt>"
        out.append(",".join(fields))
    (target / "esp_sa").write_text("\n".join(out) + "\n")


def _flip_hex(text: str) -> str:
    """The same hex text with the first key byte's low bit flipped."""
    prefix = "0x" if text.startswith("0x") else ""
    digits = text.removeprefix("0x")
    first = int(digits[:2], 16) ^ 0x01
    return f"{prefix}{first:02x}{digits[2:]}"


def decode_keylog(pcap: Path, keys_dir: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-I", "-m", "ikecore", "decode", "--json", "--keylog", str(keys_dir),
         str(pcap)], capture_output=True, text=True, check=True, timeout=60).stdout
    messages: list[dict[str, Any]] = json.loads(out)["messages"]
    return messages


def _types(payloads: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    types, notifies = [], []
    for payload in payloads:
        types.append(PayloadType[payload["payload"]].value)
        if "notify_type" in payload:
            value = payload["notify_type"]
            notifies.append(value["value"] if isinstance(value, dict) else value)
    return types, notifies


def decode_matches_tshark(pcap: Path, keys_dir: Path) -> list[str]:
    """Per IKE message: the same exchange, message ID, payload types (outer, then the SK
    payload's inner chain) and notify types in `ikecore decode --keylog` and tshark."""
    decoded = decode_keylog(pcap, keys_dir)
    dissection = dissect(pcap, keys_dir)
    problems = []
    if len(decoded) != len(dissection.ike):
        return [f"{len(decoded)} messages decoded, tshark saw {len(dissection.ike)}"]
    for ours, frame in zip(decoded, dissection.ike, strict=True):
        types, notifies = _types(ours["payloads"])
        if "decrypted" in ours:
            if ours["decrypted"]["icv"] != "correct":
                problems.append(f"frame {frame.number}: decode says ICV {ours['decrypted']}")
            inner_types, inner_notifies = _types(ours["decrypted"]["payloads"])
            types += inner_types
            notifies += inner_notifies
        mine = (ExchangeType[ours["exchange"]].value, ours["message_id"], ours["is_response"],
                tuple(types), tuple(notifies))
        tsharks = (frame.exchange, frame.message_id, frame.is_response, frame.payloads,
                   frame.notify_types)
        if mine != tsharks:
            problems.append(f"frame {frame.number}: decode {mine} != tshark {tsharks}")
    return problems
