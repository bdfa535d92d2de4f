"""The ``ikecore`` command (also ``python -m ikecore``).

Subcommands live in the ``COMMANDS`` table: a name, its help, a function that adds its
arguments and one that runs it and returns the exit status. Every command exits 0 on success
and non-zero with a one-line reason on stderr on failure; ``--json`` puts a machine-readable
result on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from ikecore import _bench, demo, peer_commands
from ikecore.aead import IkeCipher
from ikecore.constants import (
    AuthMethod,
    ConfigAttributeType,
    ConfigType,
    DhGroup,
    EncrId,
    EsnId,
    ExchangeType,
    IdType,
    IntegId,
    NotifyType,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformType,
    TsType,
)
from ikecore.errors import IkeError, IntegrityError, MalformedMessage
from ikecore.message import IkeMessage, parse_message, parse_payload_chain
from ikecore.payloads import (
    ConfigAttribute,
    Encrypted,
    Notify,
    Payload,
    SecurityAssociation,
    TrafficSelectors,
)
from ikecore.pcap import CaptureError, is_capture, read_capture
from ikecore.wireshark import IkeSaKeys, read_key_tables

__all__ = ["COMMANDS", "Command", "CommandError", "main"]


class CommandError(Exception):
    """A failure to report as the one-line reason of a non-zero exit."""


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --- decode ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    """One IKE message to decode and where it came from."""

    label: str
    data: bytes


def _read_source(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror}") from None


def _looks_like_hex(data: bytes) -> bool:
    text = data.strip()
    return bool(text) and all(c in b"0123456789abcdefABCDEF \t\r\n:" for c in text)


def _split_messages(data: bytes, label: str) -> list[_Input]:
    """Raw bytes: one IKE message, or several back to back (split on the header Length).
    A leading non-ESP marker (4 zero bytes, port 4500) is dropped; the Initiator SPI of an
    IKE message is never zero, so the two cannot be confused."""
    if data[:4] == b"\x00\x00\x00\x00":
        data = data[4:]
    found, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos + 24 : pos + 28], "big") if len(data) - pos >= 28 else 0
        if length < 28 or length > len(data) - pos:
            length = len(data) - pos  # not a sequence: decode the rest as one (and say why)
        found.append(_Input(label if pos == 0 and length == len(data) else
                            f"{label} @{pos}", data[pos : pos + length]))
        pos += length
    return found


def _inputs(path: str) -> list[_Input]:
    data = _read_source(path)
    name = "stdin" if path == "-" else path
    if is_capture(data):
        try:
            datagrams = read_capture(data)
        except CaptureError as e:
            raise CommandError(f"{name}: {e}") from None
        return [
            _Input(f"frame {d.frame} {d.src[0]}:{d.src[1]} -> {d.dst[0]}:{d.dst[1]}", d.data)
            for d in datagrams
        ]
    if _looks_like_hex(data):
        text = b"".join(data.split()).replace(b":", b"")
        try:
            data = bytes.fromhex(text.decode("ascii"))
        except ValueError:
            raise CommandError(f"{name}: odd number of hex digits") from None
    if not data:
        raise CommandError(f"{name}: empty input")
    return _split_messages(data, name)


_TRANSFORM_IDS: dict[int, type[IntEnum]] = {
    TransformType.ENCR: EncrId,
    TransformType.PRF: PrfId,
    TransformType.INTEG: IntegId,
    TransformType.DH: DhGroup,
    TransformType.ESN: EsnId,
}

_FIELD_NAMES: dict[str, type[IntEnum]] = {
    "protocol_id": ProtocolId,
    "notify_type": NotifyType,
    "group": DhGroup,
    "id_type": IdType,
    "method": AuthMethod,
    "ts_type": TsType,
    "cfg_type": ConfigType,
    "first_payload": PayloadType,
}


def _name(enum: type[IntEnum], value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return str(value)


def _payload_json(p: Payload) -> dict[str, Any]:
    out: dict[str, Any] = {"payload": _name(PayloadType, p.type)}
    out.update(_jsonable(p))
    return out


def _jsonable(value: Any, field: str = "", owner: Any = None) -> Any:
    """Payload objects as JSON values: bytes as hex, known numbers with their IANA name."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            if f.repr:  # the payload type fixed by the class is shown as "payload"
                out[f.name] = _jsonable(getattr(value, f.name), f.name, value)
        if isinstance(value, Notify):
            typed = value.value
            out["value"] = (
                typed.hex() if isinstance(typed, bytes)
                else list(typed) if isinstance(typed, tuple)
                else typed if typed is None or isinstance(typed, int)
                else str(typed)
            )
        return out
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        enum = _FIELD_NAMES.get(field)
        if field == "id" and owner is not None:
            enum = _TRANSFORM_IDS.get(owner.type)
        elif field == "type" and owner is not None and hasattr(owner, "key_length"):
            enum = TransformType
        elif field == "type" and isinstance(owner, ConfigAttribute):
            enum = ConfigAttributeType
        if enum is not None:
            name = _name(enum, value)
            return value if name == str(value) else {"value": value, "name": name}
    return value


def _describe_payload(p: Payload, indent: str) -> list[str]:
    """Lines of the readable tree for one payload."""
    title = _name(PayloadType, p.type) + (" (critical)" if p.critical else "")
    fields = _jsonable(p)
    lines = [f"{indent}{title}"]
    if isinstance(p, Notify):
        lines[0] += f" {_name(NotifyType, p.notify_type)}"
        if p.spi:
            lines[0] += f" protocol={_name(ProtocolId, p.protocol_id)} spi={p.spi.hex()}"
        if fields["value"] not in (None, ""):
            lines[0] += f" {fields['value']}"
        return lines
    if isinstance(p, SecurityAssociation):
        for proposal in p.proposals:
            spi = proposal.spi.hex() or "-"
            lines.append(f"{indent}  proposal {proposal.number} "
                         f"{_name(ProtocolId, proposal.protocol_id)} spi={spi}")
            for t in proposal.transforms:
                ids = _TRANSFORM_IDS.get(t.type)
                line = f"{indent}    {_name(TransformType, t.type)} "
                line += _name(ids, t.id) if ids else str(t.id)
                if t.key_length is not None:
                    line += f" key_length={t.key_length}"
                for a in t.attributes:
                    shown = a.value.hex() if isinstance(a.value, bytes) else a.value
                    line += f" attr{a.type}={shown}"
                lines.append(line)
        return lines
    if isinstance(p, TrafficSelectors):
        for ts in p.selectors:
            lines.append(f"{indent}  {_name(TsType, ts.ts_type)} protocol={ts.ip_protocol} "
                         f"ports={ts.start_port}-{ts.end_port} {ts.start}-{ts.end}")
        return lines
    fields.pop("critical", None)
    for key, value in fields.items():
        lines.extend(_describe_value(key, value, indent + "  "))
    return lines


def _describe_value(key: str, value: Any, indent: str) -> list[str]:
    if isinstance(value, dict) and set(value) == {"value", "name"}:
        return [f"{indent}{key}: {value['name']} ({value['value']})"]
    if isinstance(value, list):
        lines = [f"{indent}{key}: {len(value)}"]
        for i, item in enumerate(value, start=1):
            if isinstance(item, dict):
                lines.append(f"{indent}  [{i}]")
                for k, v in item.items():
                    lines.extend(_describe_value(k, v, indent + "    "))
            else:
                lines.append(f"{indent}  [{i}] {item}")
        return lines
    if isinstance(value, dict):
        lines = [f"{indent}{key}:"]
        for k, v in value.items():
            lines.extend(_describe_value(k, v, indent + "  "))
        return lines
    return [f"{indent}{key}: {value}"]


def _header_summary(m: IkeMessage) -> dict[str, Any]:
    return {
        "spi_i": m.spi_i.hex(),
        "spi_r": m.spi_r.hex(),
        "exchange": _name(ExchangeType, m.exchange),
        "message_id": m.message_id,
        "is_initiator": m.is_initiator,
        "is_response": m.is_response,
        "version": f"{m.major_version}.{m.minor_version}",
        "length": m.length,
    }


# --- decode --keylog: SK payloads opened with Wireshark's ikev2_decryption_table ------------

_GCM_ICV_LENGTH = {EncrId.AES_GCM_8: 8, EncrId.AES_GCM_12: 12, EncrId.AES_GCM_16: 16}
_SK_HEADER_LENGTH = 4  # RFC 7296 §3.14: generic payload header
_IV_LENGTH = 8  # RFC 5282 §3.1: explicit IV of AES-GCM


def _key_table(directory: str) -> dict[tuple[bytes, bytes], IkeSaKeys]:
    try:
        ike_sas, _ = read_key_tables(directory)
    except (OSError, ValueError) as e:
        raise CommandError(f"--keylog {directory}: {e}") from None
    return {(sa.spi_i, sa.spi_r): sa for sa in ike_sas}


def _decrypt(m: IkeMessage, keys: dict[tuple[bytes, bytes], IkeSaKeys]) -> dict[str, Any] | None:
    """The SK payload's inner chain, opened with the key of the sender's direction: SK_ei for
    messages of the original initiator (I flag), SK_er otherwise (RFC 7296 §2.14).

    None when the message has no SK payload; otherwise ``icv`` is "correct" (with
    ``payloads``), "incorrect", "no key" or "malformed" (with ``error``). Encrypted fragments
    (SKF, RFC 7383) are not reassembled: "fragment".
    """
    encrypted = m.encrypted
    if encrypted is None:
        return None
    if not isinstance(encrypted, Encrypted):
        return {"icv": "fragment"}
    sa = keys.get((m.spi_i, m.spi_r))
    if sa is None:
        return {"icv": "no key"}
    cipher = IkeCipher(sa.sk_ei if m.is_initiator else sa.sk_er, _GCM_ICV_LENGTH[sa.encr])
    sk_offset = len(m.encrypted_aad) - _SK_HEADER_LENGTH
    try:
        first, inner = cipher.open_sk(m.to_bytes(), sk_offset)
    except IntegrityError:
        return {"icv": "incorrect"}
    except MalformedMessage as e:
        return {"icv": "malformed", "error": str(e)}
    try:
        chain = parse_payload_chain(first, inner, sk_offset + _SK_HEADER_LENGTH + _IV_LENGTH)
        return {"icv": "correct", "payloads": list(chain.payloads)}
    except (MalformedMessage, IkeError) as e:
        return {"icv": "correct", "error": f"inner payloads: {e}", "payloads": []}


def _run_decode(args: argparse.Namespace) -> int:
    keys = None if args.keylog is None else _key_table(args.keylog)
    inputs = _inputs(args.file)
    if not inputs:
        raise CommandError(f"no IKE messages found in {args.file}")
    results: list[dict[str, Any]] = []
    failures = 0
    for item in inputs:
        try:
            m = parse_message(item.data)
        except (MalformedMessage, IkeError) as e:
            failures += 1
            offset = getattr(e, "offset", None)
            results.append({"source": item.label, "error": str(e), "offset": offset})
            continue
        result = {
            "source": item.label,
            **_header_summary(m),
            "payloads": [_payload_json(p) for p in m.payloads],
            "_message": m,
        }
        opened = None if keys is None else _decrypt(m, keys)
        if opened is not None:
            result["_decrypted"] = opened
            result["decrypted"] = {
                **{k: v for k, v in opened.items() if k != "payloads"},
                "payloads": [_payload_json(p) for p in opened.get("payloads", [])],
            }
        results.append(result)
    if args.json:
        for r in results:
            r.pop("_message", None)
            r.pop("_decrypted", None)
        json.dump({"messages": results, "malformed": failures}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for r in results:
            _print_tree(r)
    if failures:
        raise CommandError(f"{failures} of {len(results)} messages malformed")
    return 0


def _print_tree(result: dict[str, Any]) -> None:
    print(f"# {result['source']}")
    if "error" in result:
        print(f"  malformed: {result['error']}")
        return
    m: IkeMessage = result["_message"]
    role = "response" if m.is_response else "request"
    side = "initiator" if m.is_initiator else "responder"
    print(f"{_name(ExchangeType, m.exchange)} {role} from the {side}, message ID "
          f"{m.message_id}, {m.length} bytes, version {m.major_version}.{m.minor_version}")
    print(f"  SPIi {m.spi_i.hex()}  SPIr {m.spi_r.hex()}")
    for p in m.payloads:
        for line in _describe_payload(p, "  "):
            print(line)
    opened = result.get("_decrypted")
    if opened is not None:
        detail = f": {opened['error']}" if "error" in opened else ""
        print(f"    decrypted, ICV {opened['icv']}{detail}")
        for p in opened.get("payloads", []):
            for line in _describe_payload(p, "      "):
                print(line)


def _decode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE|-",
        help="hex text, raw message bytes, or a pcap/pcapng capture (UDP 500/4500); - = stdin",
    )
    parser.add_argument(
        "--keylog", metavar="DIR",
        help="decrypt SK payloads with Wireshark's ikev2_decryption_table in DIR (as written "
             "by initiate/respond --keylog; AES-GCM)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


# --- bench ---------------------------------------------------------------------------------------


def _run_bench(args: argparse.Namespace) -> int:
    try:
        return _bench.run(args)
    except _bench.BenchError as e:
        raise CommandError(str(e)) from None


COMMANDS: dict[str, Command] = {
    "decode": Command(
        "decode IKE messages (hex, raw, pcap/pcapng) into a readable tree",
        _decode_arguments,
        _run_decode,
    ),
    "initiate": Command(
        peer_commands.INITIATE_HELP,
        peer_commands.add_initiate_arguments,
        peer_commands.run_initiate,
    ),
    "respond": Command(
        peer_commands.RESPOND_HELP,
        peer_commands.add_respond_arguments,
        peer_commands.run_respond,
    ),
    "demo": Command(demo.DEMO_HELP, demo.add_demo_arguments, demo.run_demo),
    "bench": Command(
        "run the benchmark suite of a source checkout: ikecore against its peers, with progress",
        _bench.add_arguments,
        _run_bench,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ikecore", description="IKEv2 core tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except CommandError as e:
        print(f"ikecore {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ikecore {args.command}: interrupted", file=sys.stderr)
        return 130
