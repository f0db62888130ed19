import io
import os
import pwd
import socket

import pyarrow as pa
import pytest

from pipeline.service.peers import unix_peer
from pipeline.service.wire import (
    Reply,
    WireError,
    read_frame,
    read_reply,
    request,
    write_frame,
    write_reply,
)


def test_a_reply_with_a_table_and_the_next_frame_share_one_stream() -> None:
    table = pa.table({"site_id": ["NO-SVINESUND", "NO-ORJE"] * 70_000, "reads": range(140_000)})
    buffer = io.BytesIO()
    write_reply(buffer, Reply(0, table=table))
    write_reply(buffer, Reply(2, error="query refused: files are not views"))
    buffer.seek(0)
    first = read_reply(buffer)
    assert first.ok
    assert first.table is not None
    assert first.table.equals(table)
    second = read_reply(buffer)
    assert (second.exit, second.error, second.table) == (
        2,
        "query refused: files are not views",
        None,
    )
    assert read_frame(buffer, 1024) is None  # a clean end after the last reply


def test_frames_over_the_limit_cut_short_or_not_json_are_refused() -> None:
    buffer = io.BytesIO()
    write_frame(buffer, request("query", sql="SELECT " + "1," * 1000 + "1"))
    with pytest.raises(WireError, match="over the limit"):
        read_frame(io.BytesIO(buffer.getvalue()), 100)
    with pytest.raises(WireError, match="mid-frame"):
        read_frame(io.BytesIO(buffer.getvalue()[:20]), 1 << 20)
    with pytest.raises(WireError, match="not UTF-8 JSON"):
        read_frame(io.BytesIO(b"\x00\x00\x00\x02\xff\xfe"), 1 << 20)
    with pytest.raises(WireError, match="not a JSON object"):
        read_frame(io.BytesIO(b"\x00\x00\x00\x02[]"), 1 << 20)


def test_the_local_peer_is_the_kernels_uid_not_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOGNAME", "dpo-impostor")
    monkeypatch.setenv("USER", "dpo-impostor")
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        peer = unix_peer(right)
    assert peer.user == pwd.getpwuid(os.getuid()).pw_name
    assert peer.via == "unix"
    assert f"uid={os.getuid()}" in peer.detail
