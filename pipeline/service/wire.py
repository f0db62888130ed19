"""The wire format: length-prefixed JSON frames, and an Arrow IPC stream after a reply that
says so.

One connection carries any number of exchanges, one after the other::

    client → service   frame: {"v": 1, "op": "query", "args": {...}}
    service → client   frame: {"ok": true, "exit": 0, "out": "", "arrow": true, ...}
    service → client   (only if "arrow") one Arrow IPC stream: schema, batches, end marker

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON. The Arrow stream
delimits itself, so the next frame starts right after its end marker.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

import pyarrow as pa

from pipeline.errors import UsageError

VERSION = 1
_LENGTH = struct.Struct(">I")
REPLY_LIMIT = 16 * 1024 * 1024  # a reply header never carries rows, only short text


class WireError(Exception):
    """The other end broke the protocol, or went away mid-frame."""


@dataclass(frozen=True)
class Reply:
    """What the service answered: an exit code, text for stdout and stderr, maybe a table."""

    exit: int
    out: str = ""
    error: str | None = None
    table: pa.Table | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit == 0 and self.error is None


def write_frame(stream: BinaryIO, message: Mapping[str, Any]) -> None:
    payload = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    stream.write(_LENGTH.pack(len(payload)) + payload)


def read_frame(stream: BinaryIO, limit: int) -> dict[str, Any] | None:
    """The next frame as a dict; None at a clean end of stream (before a frame)."""
    head = _read_exactly(stream, _LENGTH.size, eof_ok=True)
    if head is None:
        return None
    (length,) = _LENGTH.unpack(head)
    if length > limit:
        raise WireError(f"frame of {length} bytes is over the limit of {limit}")
    body = _read_exactly(stream, length, eof_ok=False)
    assert body is not None  # eof_ok=False raises instead
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WireError("frame is not UTF-8 JSON") from None
    if not isinstance(message, dict):
        raise WireError("frame is not a JSON object")
    return message


def _read_exactly(stream: BinaryIO, size: int, *, eof_ok: bool) -> bytes | None:
    chunks: list[bytes] = []
    missing = size
    while missing:
        chunk = stream.read(missing)
        if not chunk:
            if eof_ok and missing == size:
                return None
            raise WireError("connection closed mid-frame")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def write_reply(stream: BinaryIO, reply: Reply) -> None:
    """The reply frame, then the table as an Arrow IPC stream if there is one."""
    header: dict[str, Any] = {
        "ok": reply.ok,
        "exit": reply.exit,
        "out": reply.out,
        "error": reply.error,
        "arrow": reply.table is not None,
        **reply.extra,
    }
    write_frame(stream, header)
    if reply.table is not None:
        with pa.ipc.new_stream(stream, reply.table.schema) as writer:
            for batch in reply.table.to_batches(max_chunksize=64 * 1024):
                writer.write_batch(batch)
    stream.flush()


def read_reply(stream: BinaryIO) -> Reply:
    header = read_frame(stream, REPLY_LIMIT)
    if header is None:
        raise WireError("the service closed the connection without a reply")
    table = pa.ipc.open_stream(stream).read_all() if header.get("arrow") else None
    known = {"ok", "exit", "out", "error", "arrow"}
    return Reply(
        exit=int(header.get("exit", 1)),
        out=str(header.get("out") or ""),
        error=header.get("error"),
        table=table,
        extra={k: v for k, v in header.items() if k not in known},
    )


def request(op: str, **args: Any) -> dict[str, Any]:
    return {"v": VERSION, "op": op, "args": args}


def stream_of(sock: socket.socket) -> BinaryIO:
    """A buffered binary stream over a connected socket (plain or TLS)."""
    return cast(BinaryIO, sock.makefile("rwb", buffering=256 * 1024))


def text_arg(args: Mapping[str, Any], key: str) -> str:
    """A request argument that must be non-empty text (else a usage error naming it)."""
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise UsageError(f"{key.replace('_', '-')} is required")
    return value


def optional_arg(args: Mapping[str, Any], key: str) -> str | None:
    """A request argument that is text or absent."""
    value = args.get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{key.replace('_', '-')} must be text")
    return value
