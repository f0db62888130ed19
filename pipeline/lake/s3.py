"""A small S3 client for what DuckDB's httpfs cannot do: list a prefix, read an object back,
delete one, and ask whether the bucket keeps old versions. AWS signature version 4, standard
library only (one signed GET or DELETE at a time; no multipart, no retries of its own).

DuckLake deletes the files it expires itself (through httpfs); this client is for the purge's
sweep of expired day folders, its verification, and the versioned-bucket check at start.

>>> client = S3Client.for_storage(storage)  # doctest: +SKIP
>>> [o.key for o in client.list("lake/main/plate_reads/year=2026/month=1/")]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from defusedxml import ElementTree

from pipeline.errors import ConfigError, Transient
from pipeline.lake.backend import S3Access, Storage

logger = logging.getLogger(__name__)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3Failed(Transient):
    """The object store answered a request with an error (status and S3 code, no key)."""

    def __init__(self, what: str, status: int, code: str) -> None:
        super().__init__(f"S3 {what}: HTTP {status} {code}".rstrip())
        self.status = status
        self.code = code


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int


def signing_key(secret: str, day: str, region: str) -> bytes:
    """SigV4's derived key for one day, region and the s3 service."""
    key = f"AWS4{secret}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def authorization(
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    payload_sha256: str,
    key_id: str,
    secret: str,
    region: str,
    amz_date: str,
) -> str:
    """The ``Authorization`` header of a request (``headers`` are all signed; they must hold
    ``host``, ``x-amz-date`` and ``x-amz-content-sha256``). ``path`` is already URI-encoded."""
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
    )
    names = sorted(h.lower() for h in headers)
    lower = {k.lower(): " ".join(v.split()) for k, v in headers.items()}
    canonical_headers = "".join(f"{n}:{lower[n]}\n" for n in names)
    signed = ";".join(names)
    request = "\n".join([method, path, canonical_query, canonical_headers, signed, payload_sha256])
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()]
    )
    signature = hmac.new(
        signing_key(secret, amz_date[:8], region), to_sign.encode(), hashlib.sha256
    ).hexdigest()
    return (
        f"AWS4-HMAC-SHA256 Credential={key_id}/{scope},SignedHeaders={signed},Signature={signature}"
    )


def versioning_status(body: bytes) -> str:
    """``Enabled``, ``Suspended`` or ``""`` (never enabled) from a GetBucketVersioning answer."""
    root = ElementTree.fromstring(body)
    for tag in (f"{_NS}Status", "Status"):
        found = root.findtext(tag)
        if found:
            return str(found).strip()
    return ""


def _error_code(body: bytes) -> str:
    try:
        code = ElementTree.fromstring(body).findtext("Code")
    except ElementTree.ParseError:
        return ""
    return code or ""


class S3Client:
    """Signed requests to one bucket of an S3-compatible store."""

    def __init__(self, access: S3Access, bucket: str, *, timeout_s: float = 30.0) -> None:
        self.access = access
        self.bucket = bucket
        self.timeout_s = timeout_s
        region_host = f"s3.{access.region}.amazonaws.com"
        self._host = access.endpoint or region_host
        if access.url_style == "vhost":
            self._host = f"{bucket}.{self._host}"

    @classmethod
    def for_storage(cls, storage: Storage) -> S3Client | None:
        """A client for the lake's bucket, or None for a lake on a local folder."""
        if storage.s3 is None:
            return None
        return cls(storage.s3, storage.data_path.split("/", 3)[2])

    def data_prefix(self, storage: Storage) -> str:
        """The key prefix of the lake's data path (``lake/`` of ``s3://bucket/lake/``)."""
        return storage.data_path.split("/", 3)[3]

    # -- requests -----------------------------------------------------------------------------

    def _request(
        self, method: str, key: str, query: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        query = dict(query or {})
        path = "/" + quote(key, safe="/-_.~")
        if self.access.url_style == "path":
            path = f"/{self.bucket}{path}"
        amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {
            "host": self._host,
            "x-amz-date": amz_date,
            "x-amz-content-sha256": EMPTY_SHA256,
        }
        headers["authorization"] = authorization(
            method=method,
            path=path,
            query=query,
            headers=headers,
            payload_sha256=EMPTY_SHA256,
            key_id=self.access.key_id,
            secret=self.access.secret.reveal(),
            region=self.access.region,
            amz_date=amz_date,
        )
        target = path
        if query:
            target += "?" + "&".join(
                f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query.items()
            )
        conn_type = (
            http.client.HTTPSConnection if self.access.use_ssl else http.client.HTTPConnection
        )
        conn = conn_type(self._host, timeout=self.timeout_s)
        try:
            conn.request(method, target, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except OSError as exc:
            raise S3Failed(f"{method} unreachable ({type(exc).__name__})", 0, "") from exc
        finally:
            conn.close()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (ListObjectsV2, page by page)."""
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, body = self._request("GET", "", query)
            if status != 200:
                raise S3Failed("list", status, _error_code(body))
            root = ElementTree.fromstring(body)
            for item in [*root.iter(f"{_NS}Contents"), *root.iter("Contents")]:
                key = item.findtext(f"{_NS}Key") or item.findtext("Key") or ""
                size = item.findtext(f"{_NS}Size") or item.findtext("Size") or "0"
                yield ObjectInfo(key, int(size))
            truncated = root.findtext(f"{_NS}IsTruncated") or root.findtext("IsTruncated")
            token = (
                root.findtext(f"{_NS}NextContinuationToken")
                or root.findtext("NextContinuationToken")
                or ""
            )
            if truncated != "true" or not token:
                return

    def get(self, key: str) -> bytes:
        """The object's bytes, read back from the store."""
        status, body = self._request("GET", key)
        if status != 200:
            raise S3Failed("get", status, _error_code(body))
        return body

    def delete(self, key: str) -> None:
        """Delete one object (S3 answers 204 whether or not it existed)."""
        status, body = self._request("DELETE", key)
        if status not in (200, 204):
            raise S3Failed("delete", status, _error_code(body))

    def versioning(self) -> str:
        """The bucket's versioning state: ``Enabled``, ``Suspended`` or ``""`` (never enabled,
        or a store without the versioning API, which therefore keeps no versions)."""
        status, body = self._request("GET", "", {"versioning": ""})
        if status == 200:
            return versioning_status(body)
        code = _error_code(body)
        if status == 501 or code == "NotImplemented":
            return ""
        raise S3Failed("get bucket versioning", status, code)


def refuse_versioned_bucket(storage: Storage) -> None:
    """Raise ConfigError (exit 2) when the lake's bucket keeps versions, or refuses to say;
    S3Failed (exit 1) when the store cannot be reached.

    With versioning on, a DELETE leaves the object's data behind as a noncurrent version (or
    hides it behind a delete marker), so no purge could make an expired row unreadable.
    Suspended counts too: the versions made while it was on are still there.
    """
    client = S3Client.for_storage(storage)
    if client is None:
        return
    try:
        state = client.versioning()
    except S3Failed as exc:
        if exc.status == 0 or exc.status >= 500:
            raise  # the store is away or failing: a transient error (exit 1), not a setting
        raise ConfigError(
            "lake.data_path",
            f"cannot tell whether bucket {client.bucket} keeps object versions ({exc}); "
            "allow s3:GetBucketVersioning to the lake's credentials",
        ) from None
    if state:
        raise ConfigError(
            "lake.data_path",
            f"bucket {client.bucket} has object versioning {state}: deleted files would stay "
            "as old versions, so expired data could not be purged. Use a bucket that never "
            "had versioning enabled",
        )
    logger.debug("bucket %s keeps no object versions", client.bucket)
