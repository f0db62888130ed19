"""Where a lake's catalog and data files live: the embedded default (SQLite and a local folder)
or PostgreSQL and S3-compatible object storage, chosen by ``[lake]`` settings.

Everything that ends up inside the ATTACH and CREATE SECRET statements (which take no
parameters) is checked against a strict pattern first; a password or secret key never appears
in the ATTACH text, which DuckDB repeats in its error messages: it travels in a DuckDB secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.config import LakeSettings, Secret
from pipeline.errors import ConfigError

CATALOG_SECRET_NAME = "anpr_lake_catalog"  # noqa: S105 (a DuckDB secret's name)
METADATA_SCHEMA = "public"  # where DuckLake keeps its tables in a PostgreSQL catalog
S3_SECRET_NAME = "anpr_lake_s3"  # noqa: S105 (a name, not the secret)

_CONNINFO = re.compile(r"[A-Za-z0-9_.=/ :@-]+")
_S3_URL = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9_.=/-]*)?")
_ENDPOINT = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_WORD = re.compile(r"[A-Za-z0-9_.-]+")
_SECRET_TEXT = re.compile(r"[A-Za-z0-9_.~+/=!#%^*-]+")
_LOCAL_PATH = re.compile(r"[\w./@+=,: -]+")


@dataclass(frozen=True)
class S3Access:
    """An S3-compatible endpoint and the credentials for it."""

    endpoint: str  # host:port; "" for AWS S3
    region: str
    key_id: str
    secret: Secret
    use_ssl: bool
    url_style: str  # "vhost" or "path"


@dataclass(frozen=True)
class Storage:
    """A lake's catalog database (``sqlite:<file>`` or ``postgres:<conninfo>``) and data path
    (a local folder or ``s3://bucket/prefix/``, always ending in ``/``)."""

    catalog: str
    data_path: str
    catalog_password: Secret | None = None
    s3: S3Access | None = None
    # Query sessions' login to a PostgreSQL catalog (see for_queries); catalog and
    # catalog_password are that login's when query_login is set.
    query_catalog: str = ""
    query_password: Secret | None = None
    query_login: bool = False

    @classmethod
    def embedded(cls, path: Path) -> Storage:
        """The default: ``path/catalog.sqlite`` and ``path/data/``."""
        path = path.absolute()
        return cls(f"sqlite:{path / 'catalog.sqlite'}", f"{path / 'data'}/")

    @classmethod
    def from_settings(cls, lake: LakeSettings) -> Storage:
        """The storage ``[lake]`` describes; secrets are read from their files here."""
        base = cls.embedded(lake.path)
        catalog = lake.catalog or base.catalog
        data_path = lake.data_path or base.data_path
        if catalog.startswith("sqlite:"):
            catalog = f"sqlite:{_local(catalog.removeprefix('sqlite:'), 'lake.catalog')}"
        elif catalog.startswith("postgres:"):
            _check_conninfo(catalog, "catalog")
        else:
            raise ConfigError("lake.catalog", "expected sqlite:<file> or postgres:<conninfo>")
        password = _secret(lake.catalog_password, lake.catalog_password_file, "catalog_password")
        query = lake.query_catalog
        if query and not catalog.startswith("postgres:"):
            raise ConfigError("lake.query_catalog", "is for a postgres: catalog only")
        if query and not query.startswith("postgres:"):
            raise ConfigError("lake.query_catalog", "expected postgres:<conninfo>")
        if query:
            _check_conninfo(query, "query_catalog")
        query_password = _secret(
            lake.query_catalog_password, lake.query_catalog_password_file, "query_catalog_password"
        )
        s3 = None
        if data_path.startswith("s3://"):
            data_path = data_path.rstrip("/") + "/"
            if not _S3_URL.fullmatch(data_path):
                raise ConfigError("lake.data_path", "expected s3://bucket/prefix/")
            s3 = _s3_access(lake)
        else:
            data_path = f"{_local(data_path, 'lake.data_path')}/"
        return cls(catalog, data_path, password, s3, query, query_password)

    def for_queries(self) -> Storage:
        """This storage as a query session logs in to it: on a PostgreSQL catalog as
        ``lake.query_catalog`` (``SELECT`` on DuckLake's schema only: the pipeline's login
        reaches the activity log's schema and may write, ADR 0008), never as ``catalog``;
        ConfigError (exit 2) where no such login is configured. An embedded catalog has no
        logins: unchanged."""
        if self.kind != "postgres" or self.query_login:
            return self
        if not self.query_catalog:
            raise ConfigError(
                "lake.query_catalog",
                "a postgres: catalog needs a separate login for query sessions, with SELECT "
                "on DuckLake's schema public only (README: a login for query sessions)",
            )
        return replace(
            self,
            catalog=self.query_catalog,
            catalog_password=self.query_password,
            query_login=True,
        )

    @property
    def kind(self) -> str:
        """``sqlite`` or ``postgres``."""
        return self.catalog.split(":", 1)[0]

    @property
    def sqlite_file(self) -> Path | None:
        return Path(self.catalog.removeprefix("sqlite:")) if self.kind == "sqlite" else None

    @property
    def local_data(self) -> Path | None:
        """The data folder when it is on this host's file system."""
        return None if self.s3 is not None else Path(self.data_path)

    @property
    def extensions(self) -> tuple[str, ...]:
        """The DuckDB extensions an attach needs."""
        names = ["ducklake", "sqlite" if self.kind == "sqlite" else "postgres"]
        if self.s3 is not None:
            names.append("httpfs")
        return tuple(names)

    @classmethod
    def existing(cls, settings: LakeSettings) -> Storage:
        """The lake's storage; ConfigError (exit 2) where no lake was created yet."""
        storage = cls.from_settings(settings)
        if not storage.exists():
            raise ConfigError(
                "lake.path", f"no lake at {settings.path} yet: ingest something first"
            )
        return storage

    def exists(self) -> bool:
        """False only when an embedded catalog file is missing (a server catalog is created on
        first attach, so it always counts as there)."""
        sqlite = self.sqlite_file
        return sqlite is None or sqlite.exists()

    def secrets_sql(self) -> list[str]:
        """CREATE SECRET statements to run before the attach (values checked, never logged)."""
        out = []
        if self.kind == "postgres":
            password = "" if self.catalog_password is None else self.catalog_password.reveal()
            if not _SECRET_TEXT.fullmatch(password or "x"):
                key = "query_catalog_password" if self.query_login else "catalog_password"
                raise ConfigError(f"lake.{key}", "holds a character we do not accept")
            out.append(
                f"CREATE OR REPLACE SECRET {CATALOG_SECRET_NAME} (TYPE postgres"
                + (f", PASSWORD '{password}'" if password else "")
                + ")"
            )
        if self.s3 is not None:
            s3 = self.s3
            bucket = self.data_path.split("/", 3)[2]
            out.append(
                f"CREATE OR REPLACE SECRET {S3_SECRET_NAME} (TYPE s3, KEY_ID '{s3.key_id}', "
                f"SECRET '{s3.secret.reveal()}', REGION '{s3.region}', "
                f"URL_STYLE '{s3.url_style}', USE_SSL {'true' if s3.use_ssl else 'false'}"
                + (f", ENDPOINT '{s3.endpoint}'" if s3.endpoint else "")
                + f", SCOPE 's3://{bucket}/')"
            )
        return out

    def attach_sql(self, name: str, *, read_only: bool) -> str:
        """ATTACH the lake as ``name`` (a constant identifier of the caller's)."""
        options = [f"DATA_PATH '{self.data_path}'"]
        if self.s3 is None:
            # The catalog remembers the data path it was created with, as an absolute path;
            # data file paths are relative to it. Overriding it (for this session only) with
            # the configured folder keeps a copied or restored lake readable.
            options.append("OVERRIDE_DATA_PATH true")
        if self.kind == "postgres":
            # DuckDB would otherwise load every schema of the catalog database, and any
            # connection could name ``__ducklake_metadata_<name>.<schema>.<table>``: only
            # DuckLake's own schema (the postgres extension's default) is attached, so the
            # activity log's schema (:mod:`pipeline.access.logstore`) has no name here
            # (``postgres_query`` runs any SQL as the login: query sessions use one without
            # that schema, :meth:`for_queries`).
            options.append(
                f"METADATA_PARAMETERS MAP {{'SCHEMA': '{METADATA_SCHEMA}', "
                f"'SECRET': '{CATALOG_SECRET_NAME}'}}"
            )
        if read_only:
            options.append("READ_ONLY")
        return f"ATTACH 'ducklake:{self.catalog}' AS {name} ({', '.join(options)})"


def _check_conninfo(catalog: str, key: str) -> None:
    conninfo = catalog.removeprefix("postgres:")
    if not _CONNINFO.fullmatch(conninfo) or "password" in conninfo.lower():
        raise ConfigError(
            f"lake.{key}",
            "postgres: conninfo may hold only key=value words (host, port, user, "
            f"dbname, sslmode...); the password goes in lake.{key}_password or "
            f"lake.{key}_password_file",
        )


def _local(text: str, key: str) -> Path:
    path = Path(text).absolute()
    if not _LOCAL_PATH.fullmatch(str(path)):
        raise ConfigError(key, "path may only hold letters, digits, space and ./@+=,:_-")
    return path


def _secret(value: Secret | None, file: Path | None, key: str) -> Secret | None:
    if value is not None:
        return value
    if file is None:
        return None
    try:
        return Secret(file.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ConfigError(f"lake.{key}_file", f"cannot read {file}: {exc.strerror}") from None


def _s3_access(lake: LakeSettings) -> S3Access:
    secret = _secret(
        lake.s3_secret_access_key, lake.s3_secret_access_key_file, "s3_secret_access_key"
    )
    if secret is None or not lake.s3_access_key_id:
        raise ConfigError("lake.s3_access_key_id", "an s3:// data path needs credentials")
    checks: Mapping[str, tuple[str, re.Pattern[str]]] = {
        "s3_endpoint": (lake.s3_endpoint or "x", _ENDPOINT),
        "s3_region": (lake.s3_region, _WORD),
        "s3_access_key_id": (lake.s3_access_key_id, _WORD),
        "s3_secret_access_key": (secret.reveal(), _SECRET_TEXT),
    }
    for key, (text, pattern) in checks.items():
        if not pattern.fullmatch(text):
            raise ConfigError(f"lake.{key}", "holds a character we do not accept")
    if lake.s3_url_style not in {"vhost", "path"}:
        raise ConfigError("lake.s3_url_style", "expected vhost or path")
    return S3Access(
        lake.s3_endpoint,
        lake.s3_region,
        lake.s3_access_key_id,
        secret,
        lake.s3_use_ssl,
        lake.s3_url_style,
    )
