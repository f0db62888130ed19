"""The S3 client's request signing and its reading of GetBucketVersioning answers, against
published AWS material; the versioned-bucket refusal end to end against a local HTTP server
that answers like a versioned AWS bucket (no S3 server we can run here keeps versions)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from pipeline.config import Secret
from pipeline.errors import ConfigError
from pipeline.lake.backend import S3Access, Storage
from pipeline.lake.s3 import (
    EMPTY_SHA256,
    S3Failed,
    authorization,
    refuse_versioned_bucket,
    versioning_status,
)
from pipeline.lake.sqlite_child import pick_extremes

# The example credentials of AWS's S3 API Reference, "Signature Calculations for the
# Authorization Header: Transferring Payload in a Single Chunk (AWS Signature Version 4)",
# section "Examples: Signature Calculations" (sig-v4-header-based-auth).
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
HOST = "examplebucket.s3.amazonaws.com"

# Real answers to GET /?versioning. Enabled: the response body Backblaze B2's S3 API docs
# recorded ("S3 Get Bucket Versioning", example response, served with AWS's namespace).
# Suspended and never enabled: the forms AWS's S3 API Reference (GetBucketVersioning) gives,
# with the namespace every S3 answer carries; a bucket that never had versioning answers an
# empty VersioningConfiguration.
ENABLED = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">\n'
    b"    <Status>Enabled</Status>\n"
    b"</VersioningConfiguration>"
)
SUSPENDED = (
    b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Status>Suspended</Status></VersioningConfiguration>"
)
NEVER = b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>'
# What S3Proxy 2.6.0's filesystem backend answers (seen here): no versioning API at all.
NOT_IMPLEMENTED = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NotImplemented</Code><Message>A "
    b"header you provided implies functionality that is not implemented.</Message>"
    b"<RequestId>4442587FB7D0A2F9</RequestId></Error>"
)


@pytest.mark.parametrize(
    ("path", "query", "extra", "signature"),
    [
        # "Example: GET Object" (the first 10 bytes of test.txt).
        (
            "/test.txt",
            {},
            {"Range": "bytes=0-9"},
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        ),
        # "Example: GET Bucket (List Objects)": query parameters sorted and encoded.
        (
            "/",
            {"prefix": "J", "max-keys": "2"},
            {},
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
    ],
)
def test_signature_matches_the_aws_examples(
    path: str, query: dict[str, str], extra: dict[str, str], signature: str
) -> None:
    auth = authorization(
        method="GET",
        path=path,
        query=query,
        headers={
            "Host": HOST,
            **extra,
            "x-amz-content-sha256": EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
        },
        payload_sha256=EMPTY_SHA256,
        key_id=KEY_ID,
        secret=SECRET,
        region="us-east-1",
        amz_date="20130524T000000Z",
    )
    signed = ";".join(sorted(["host", *(h.lower() for h in extra), "x-amz-content-sha256"]))
    assert auth == (
        f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20130524/us-east-1/s3/aws4_request,"
        f"SignedHeaders={signed};x-amz-date,Signature={signature}"
    )


@pytest.mark.parametrize(
    ("body", "state"), [(ENABLED, "Enabled"), (SUSPENDED, "Suspended"), (NEVER, "")]
)
def test_versioning_status_is_read_from_the_answer(body: bytes, state: str) -> None:
    assert versioning_status(body) == state


class _Bucket(BaseHTTPRequestHandler):
    answer: tuple[int, bytes] = (200, NEVER)
    seen: list[str] = []  # noqa: RUF012 (one test at a time writes it)

    def do_GET(self) -> None:
        type(self).seen.append(f"{self.path} {self.headers.get('authorization', '')[:16]}")
        status, body = self.answer
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def bucket() -> Iterator[tuple[str, type[_Bucket]]]:
    handler = type("Bucket", (_Bucket,), {"seen": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _storage(endpoint: str) -> Storage:
    access = S3Access(endpoint, "us-east-1", "anpr-test", Secret("s3cret"), False, "path")
    return Storage("postgres:host=127.0.0.1 dbname=none", "s3://anpr-lake/lake/", None, access)


@pytest.mark.parametrize(("body", "word"), [(ENABLED, "Enabled"), (SUSPENDED, "Suspended")])
def test_a_versioned_bucket_is_refused(
    bucket: tuple[str, type[_Bucket]], body: bytes, word: str
) -> None:
    endpoint, handler = bucket
    handler.answer = (200, body)
    with pytest.raises(ConfigError, match=f"versioning {word}") as caught:
        refuse_versioned_bucket(_storage(endpoint))
    assert caught.value.key == "lake.data_path"
    # The request was a signed GET /<bucket>?versioning=.
    assert handler.seen == ["/anpr-lake/?versioning= AWS4-HMAC-SHA256"]


@pytest.mark.parametrize(("status", "body"), [(200, NEVER), (501, NOT_IMPLEMENTED)])
def test_a_bucket_without_versions_passes(
    bucket: tuple[str, type[_Bucket]], status: int, body: bytes
) -> None:
    endpoint, handler = bucket
    handler.answer = (status, body)
    refuse_versioned_bucket(_storage(endpoint))
    assert len(handler.seen) == 1


def test_a_bucket_that_will_not_say_is_refused(bucket: tuple[str, type[_Bucket]]) -> None:
    endpoint, handler = bucket
    handler.answer = (403, b"<Error><Code>AccessDenied</Code></Error>")
    with pytest.raises(ConfigError, match="GetBucketVersioning"):
        refuse_versioned_bucket(_storage(endpoint))


def test_a_store_that_cannot_be_reached_is_a_transient_failure() -> None:
    with pytest.raises(S3Failed, match="unreachable"):
        refuse_versioned_bucket(_storage("127.0.0.1:1"))


def test_anpr_maintain_stops_with_one_line_and_exit_2(
    bucket: tuple[str, type[_Bucket]], tmp_path: Path
) -> None:
    endpoint, handler = bucket
    handler.answer = (200, ENABLED)
    (tmp_path / "secret").write_text("s3cret")
    env = {
        "ANPR_LAKE_PATH": str(tmp_path / "lake"),
        "ANPR_STATE_DIR": str(tmp_path / "state"),
        "ANPR_LAKE_CATALOG": "postgres:host=127.0.0.1 port=1 dbname=none",
        "ANPR_LAKE_DATA_PATH": "s3://anpr-lake/lake/",
        "ANPR_LAKE_S3_ENDPOINT": endpoint,
        "ANPR_LAKE_S3_ACCESS_KEY_ID": "anpr-test",
        "ANPR_LAKE_S3_SECRET_ACCESS_KEY_FILE": str(tmp_path / "secret"),
        "ANPR_LAKE_S3_USE_SSL": "false",
        "ANPR_LAKE_S3_URL_STYLE": "path",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "maintain", "--no-topic-check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("anpr: error: lake.data_path: bucket anpr-lake has object ")


def test_pick_extremes_orders_numbers_as_numbers_and_text_as_bytes() -> None:
    rows = [
        (1, 1, 10, "9", "10", "int64"),
        (1, 1, 11, "-2", "3", "int64"),
        (1, 2, 10, "B", "Z", "varchar"),
        (1, 2, 11, "AB", "ZA", "varchar"),
        (2, 1, None, None, None, "varchar"),
    ]
    assert pick_extremes(rows) == [
        {"table": 1, "column": 1, "low": 11, "high": 10},
        {"table": 1, "column": 2, "low": 11, "high": 11},
        {"table": 2, "column": 1, "low": None, "high": None},
    ]
