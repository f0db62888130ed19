"""Settings: one frozen object, read from TOML, then ``ANPR_<SECTION>_<KEY>`` variables, then flags.

Precedence, lowest first: the defaults below, the TOML file (``--config``, else ``anpr.toml``
in the working directory if present), environment variables, command-line flags.

Every environment name is derived here, in one place, from the section and field names:
``[kafka] bootstrap_servers`` is ``ANPR_KAFKA_BOOTSTRAP_SERVERS``, ``[lake] path`` is
``ANPR_LAKE_PATH``, ``[state] dir`` is ``ANPR_STATE_DIR``.

librdkafka settings for a production cluster (TLS, SASL) pass through untouched: the TOML table
``[kafka.client]`` (``"security.protocol" = "SASL_SSL"``), or any other ``ANPR_KAFKA_<NAME>``
variable, where ``<NAME>`` is the librdkafka key upper-cased with dots as underscores
(``ANPR_KAFKA_SASL_PASSWORD`` → ``sasl.password``). Values whose key looks secret are kept in
:class:`Secret` and never printed.

Example::

    settings = load_settings(Path("anpr.toml"), env=os.environ,
                             overrides={"lake.path": "/srv/anpr/lake"})
    settings.kafka.client_config()  # dict for confluent_kafka
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
import zoneinfo
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

# add_months re-exported for pipeline.demo until it imports pipeline.retention itself.
from pipeline.retention import add_months as add_months  # noqa: PLC0414
from pipeline.retention import shortest_span_days

ENV_PREFIX = "ANPR_"
# ANPR_ variables that are not settings: the log level (read before settings load) and the
# container image the deploy files name.
NOT_SETTINGS = frozenset({"ANPR_LOG_LEVEL", "ANPR_IMAGE"})
DEFAULT_CONFIG_FILE = Path("anpr.toml")
LEGAL_RETENTION_MONTHS = 6  # the law: ANPR data at most 6 months after collection
_SECRET_WORDS = ("password", "secret", "key", "token", "credential")
# Who may read what (pipeline/access/views.py builds each role's views).
ROLES = ("analyst", "investigator", "statistics", "dpo")
_CODE = r"[a-z][a-z0-9_]{0,31}"
_USER_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}"


class Secret:
    """A string that prints as ``'********'`` so that it never reaches a log or a terminal."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def is_secret_key(key: str) -> bool:
    """True for librdkafka keys that carry credentials (``sasl.password``, ``ssl.key.pem``...)."""
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    # librdkafka pass-through (security.protocol, sasl.*, ssl.*); secrets held as Secret.
    client: Mapping[str, str | Secret] = field(default_factory=dict)

    def client_config(self) -> dict[str, str]:
        """The librdkafka configuration common to producers, consumers and admin clients."""
        config = {"bootstrap.servers": self.bootstrap_servers}
        for key, value in self.client.items():
            config[key] = value.reveal() if isinstance(value, Secret) else value
        return config


@dataclass(frozen=True)
class TopicSettings:
    plate_reads: str = "anpr.plate-reads"
    passengers: str = "anpr.passengers"
    dlq: str = "anpr.dlq"
    watchlist: str = "anpr.watchlist"
    watchlist_hits: str = "anpr.watchlist-hits"
    # The activity log's head, published by the service (pipeline/access/anchors.py).
    audit_anchors: str = "anpr.audit-anchors"
    partitions: int = 4
    replication_factor: int = 1
    # Topics holding personal data keep it only briefly: the lake is the system of record.
    personal_retention_ms: int = 7 * 24 * 3600 * 1000
    hits_retention_ms: int = 7 * 24 * 3600 * 1000

    def personal_data_topics(self) -> tuple[str, ...]:
        return (self.plate_reads, self.passengers, self.dlq, self.watchlist_hits)


@dataclass(frozen=True)
class LakeSettings:
    """Where the lake lives. The embedded default: a SQLite catalog and the data files under
    ``path``. For several hosts (``docs/adr/0005-beyond-one-machine.md``):
    ``catalog = "postgres:<libpq conninfo without password>"`` and
    ``data_path = "s3://bucket/prefix/"`` with the ``s3_*`` settings; the query service then
    needs ``query_catalog``, a login with ``SELECT`` on DuckLake's schema only (README). Secrets
    come from the environment (``ANPR_LAKE_CATALOG_PASSWORD``,
    ``ANPR_LAKE_QUERY_CATALOG_PASSWORD``, ``ANPR_LAKE_S3_SECRET_ACCESS_KEY``) or from files
    (``*_file``); ``anpr config`` masks them. ``path`` still holds this host's own files
    (maintenance reports)."""

    path: Path = Path("lake")
    catalog: str = ""  # "" = <path>/catalog.sqlite; or "sqlite:<file>", "postgres:<conninfo>"
    catalog_password: Secret | None = None
    catalog_password_file: Path | None = None
    # Query sessions' login to a postgres: catalog ("postgres:<conninfo>"); "" refuses them.
    query_catalog: str = ""
    query_catalog_password: Secret | None = None
    query_catalog_password_file: Path | None = None
    data_path: str = ""  # "" = <path>/data; or a local folder, or s3://bucket/prefix/
    s3_endpoint: str = ""  # host:port of an S3-compatible server; "" = AWS S3
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: Secret | None = None
    s3_secret_access_key_file: Path | None = None
    s3_use_ssl: bool = True
    s3_url_style: str = "vhost"  # "path" for most S3-compatible servers


@dataclass(frozen=True)
class StateSettings:
    dir: Path = Path(".anpr")


@dataclass(frozen=True)
class IngestSettings:
    consumer_group: str = "anpr-ingest"
    # Budgets of one batch (one lake commit): it ends at the first reached, or as soon as the
    # worker has caught up with its partitions. Live traffic thus commits small batches at
    # once, a backlog large ones that spread the commit's fixed cost (ADR 0006).
    # 25k: two batches in flight (one decoded, one written) keep the RSS under 400 MB (ADR 0006).
    batch_size: int = 25_000  # messages
    batch_max_bytes: int = 32 * 1024 * 1024  # message values
    batch_timeout_s: float = 0.5  # seconds from the batch's first message
    max_message_bytes: int = 65_536
    # Vendor payloads carry base64 image crops (dropped at ingest), so they may be larger.
    vendor_max_message_bytes: int = 2 * 1024 * 1024
    future_tolerance_s: float = 300.0
    dedup_window_h: float = 24.0
    passage_window_s: float = 30.0  # reads of one plate at one site this close: one passage
    metrics_port: int = 9464
    sites_registry: Path | None = None  # None: the one shipped, pipeline/data/sites.toml


@dataclass(frozen=True)
class PassengerSettings:
    """``anpr ingest passengers``: passenger and crew lists (JSON or PAXLST) per departure."""

    consumer_group: str = "anpr-ingest-passengers"
    batch_size: int = 500  # messages (manifests) per batch: each holds many people
    batch_timeout_s: float = 0.5
    max_message_bytes: int = 2 * 1024 * 1024
    # A resent (amended) list repeats its people: one row per person per departure within this.
    dedup_window_h: float = 72.0
    metrics_port: int = 9465
    # Data minimisation: person fields stored; any other is null in the lake. Contact details,
    # addresses, seat, baggage and reservation references are never stored (no column).
    # The default is every field that may be dropped (schemas.MINIMISABLE_FIELDS; a test checks).
    kept_fields: tuple[str, ...] = (
        "surname",
        "given_names",
        "date_of_birth",
        "sex",
        "nationality",
        "document_type",
        "document_number",
        "document_issuing_country",
        "vehicle_plate",
    )


@dataclass(frozen=True)
class LiveSettings:
    """``anpr live``: the faust-streaming app (watchlist hits, live traffic, camera silence)."""

    consumer_group: str = "anpr-live"  # also the faust app id: its changelog topics' prefix
    metrics_port: int = 9466
    # Every watchlist entry must expire, at most this many days after it is read.
    watchlist_max_days: int = 90
    batch_size: int = 500  # reads per faust ``take()`` batch
    batch_within_s: float = 0.05  # how long a batch may wait to fill: adds to hit latency
    # How long the broker may hold a fetch that finds no new records. Bounds the stall while
    # the quiet partitions are fetched without the busy ones (pipeline/live/transport.py).
    fetch_max_wait_s: float = 0.1
    # Reads captured longer ago than this are counted but neither matched nor counted as
    # traffic: a new consumer group replaying a week of topic must not page anyone.
    max_read_age_s: float = 3600.0
    hit_dedup_window_s: float = 24 * 3600.0  # how long a hit id is remembered
    # Camera silence: defaults for sites without their own values in the site registry.
    silence_day_s: float = 900.0
    silence_night_s: float = 3600.0
    night_start_hour: int = 22  # local time (timezone below), inclusive
    night_end_hour: int = 6  # exclusive
    timezone: str = "Europe/Oslo"
    check_interval_s: float = 1.0  # silence and expiry checks


@dataclass(frozen=True)
class RetentionSettings:
    months: int = LEGAL_RETENTION_MONTHS
    # Per-table limits in months (TOML ``[retention.tables] passengers = 3``, or
    # ``ANPR_RETENTION_TABLES="passengers=3,plate_reads=6"``); tables not named use ``months``.
    tables: Mapping[str, int] = field(default_factory=dict)

    def months_for(self, table: str) -> int:
        return self.tables.get(table, self.months)


@dataclass(frozen=True)
class MaintainSettings:
    # A UTC day is closed (its statistics may be computed) this long after it ended.
    late_grace_h: float = 2.0
    k_anonymity: int = 5  # statistics cells with a count from 1 to k-1 are suppressed
    # Unreferenced data files younger than this may be an ingest writer's uncommitted batch.
    orphan_grace_s: float = 3600.0
    compact_min_files: int = 2  # a closed day with at least this many files is compacted


@dataclass(frozen=True)
class AccessSettings:
    """``[access]``: roles, purposes, the analyst tier, the pseudonym key and the activity log.

    ``users`` maps a user name to a role (TOML table, or ``ANPR_ACCESS_USERS="ann=analyst,..."``).
    Identity is the OS user unless ``user_flag`` is true, which lets ``--user`` name it (for a
    front end that authenticated the user itself). Paths left empty default under
    ``state.dir/access/``. The key file is created (mode 0600) on first use and never printed.
    """

    users: Mapping[str, str] = field(default_factory=dict)
    reasons: tuple[str, ...] = ("control", "investigation", "intelligence", "dsar")
    case_required_for: tuple[str, ...] = ("investigation", "intelligence", "dsar")
    user_flag: bool = False
    analyst_max_age_days: int = 90
    pseudonym_key_file: Path | None = None
    activity_log: Path | None = None
    log_retention_months: int = 24
    reports_dir: Path | None = None
    # The key of the log's MAC chain (service account only), and how often its head is
    # anchored in topics.audit_anchors: every N entries and every interval.
    audit_key_file: Path | None = None
    anchor_every_entries: int = 20
    anchor_interval_s: float = 60.0


@dataclass(frozen=True)
class ServeSettings:
    """``[serve]``: where the query service (``anpr serve``) listens, and where clients find it.

    Local clients connect to ``socket`` (the service proves who they are from the kernel's peer
    credentials). Remote clients connect to ``remote`` over TLS with a client certificate issued
    by the service's CA (``tls_client_ca``); the certificate's common name is the user name.
    Client-side settings only choose where to connect and what certificate to present: who the
    caller is and what they may read are decided by the service alone.
    """

    socket: Path = Path("anpr.sock")
    tls_listen: str = ""  # service: host:port for remote clients; empty: local socket only
    tls_cert: Path | None = None  # service: its certificate chain (PEM)
    tls_key: Path | None = None  # service: its private key (PEM)
    tls_client_ca: Path | None = None  # service: the CA that issues client certificates
    remote: str = ""  # client: host:port of the service over TLS instead of the socket
    client_cert: Path | None = None  # client: certificate (PEM) with CN = user name
    client_key: Path | None = None  # client: its private key (PEM)
    server_ca: Path | None = None  # client: the CA that signed the service's certificate
    session_max_age_s: float = 30.0  # a pooled query session is rebuilt after this (clock)
    max_request_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    lake: LakeSettings = field(default_factory=LakeSettings)
    state: StateSettings = field(default_factory=StateSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    passengers: PassengerSettings = field(default_factory=PassengerSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    maintain: MaintainSettings = field(default_factory=MaintainSettings)
    live: LiveSettings = field(default_factory=LiveSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)

    def redacted(self) -> dict[str, dict[str, str]]:
        """Every setting as text, secrets masked: safe to print (``anpr config``)."""
        out: dict[str, dict[str, str]] = {}
        for section in dataclasses.fields(self):
            values = getattr(self, section.name)
            out[section.name] = {
                f.name: _show(getattr(values, f.name)) for f in dataclasses.fields(values)
            }
        return out


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(_show(v) for v in value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def load_settings(
    config_file: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    ignore_sections: Collection[str] = (),
) -> Settings:
    """Build the settings; raise :class:`ConfigError` naming the key for any bad value.

    ``overrides`` are flags, keyed ``"section.field"``; a value of None means "not given".
    ``ignore_sections`` keep their defaults whatever the file and environment say (a client
    of the query service ignores ``access``: only the service's configuration sets it).
    """
    env = os.environ if env is None else env
    layers: dict[str, dict[str, Any]] = {}

    path = config_file
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError("--config", f"no such file: {path}") from None
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError("--config", f"{path} is not UTF-8 text (byte {exc.start})") from None
        for section, values in data.items():
            if not isinstance(values, dict):
                raise ConfigError(section, f"{path}: expected a [{section}] table")
            layers.setdefault(section, {}).update(values)

    _apply_env(layers, env)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            section, _, key = dotted.partition(".")
            layers.setdefault(section, {})[key] = value
    for section in ignore_sections:
        layers.pop(section, None)

    settings = _build(layers)
    _check(settings)
    return settings


def _section_types() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def _apply_env(layers: dict[str, dict[str, Any]], env: Mapping[str, str]) -> None:
    sections = _section_types()
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        if name in NOT_SETTINGS:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        known = (
            {f.name for f in dataclasses.fields(sections[section])}
            if section in sections
            else set()
        )
        if key in known and key != "client":
            layers.setdefault(section, {})[key] = value
        elif section == "kafka" and key:
            # Anything else under ANPR_KAFKA_ is a librdkafka key: SASL_PASSWORD → sasl.password
            layers.setdefault("kafka", {}).setdefault("client", {})[key.replace("_", ".")] = value
        else:
            # Refused like an unknown TOML key: a misspelt variable silently doing nothing
            # leaves a setting at its default without anyone noticing.
            raise ConfigError(name, "unknown variable: no such setting (see `anpr config`)")


def _build(layers: Mapping[str, Mapping[str, Any]]) -> Settings:
    sections = _section_types()
    unknown = set(layers) - set(sections)
    if unknown:
        raise ConfigError(sorted(unknown)[0], f"unknown section; known: {', '.join(sections)}")
    built: dict[str, Any] = {}
    for section, cls in sections.items():
        values = layers.get(section, {})
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in names:
                raise ConfigError(
                    f"{section}.{key}", f"unknown setting; known: {', '.join(sorted(names))}"
                )
        kwargs = {k: _coerce(f"{section}.{k}", hints[k], v) for k, v in values.items()}
        built[section] = cls(**kwargs)
    return Settings(**built)


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Turn a TOML value or an environment string into the field's declared type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        if value in ("", None):
            return None
        inner = next(a for a in args if a is not type(None))
        return _coerce(key, inner, value)
    if origin is not None and issubclass(origin, Mapping) and args == (str, str):
        return _plain_mapping(key, value)
    if origin is tuple:
        return _string_tuple(key, value)
    if origin is not None and issubclass(origin, Mapping) and args[1:] == (int,):
        return _int_mapping(key, value)
    if origin is not None and issubclass(origin, Mapping):  # kafka.client
        if not isinstance(value, Mapping):
            raise ConfigError(key, "expected a table of librdkafka settings")
        return {
            str(k): Secret(str(v)) if is_secret_key(str(k)) else str(v) for k, v in value.items()
        }
    try:
        if hint is bool:
            if isinstance(value, str):
                return _parse_bool(value)
            return bool(value)
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if hint is Path:
            return Path(value)
        if hint is Secret:
            if not isinstance(value, str):
                raise ValueError(value)
            return Secret(value)
        if hint is str:
            if not isinstance(value, str):
                raise ValueError(value)
            return value
    except (TypeError, ValueError):
        raise ConfigError(key, f"expected {hint.__name__}, got {value!r}") from None
    raise ConfigError(key, f"unsupported setting type {hint!r}")  # a bug in this module


def _plain_mapping(key: str, value: Any) -> dict[str, str]:
    """A TOML table of strings, or ``"a=x,b=y"`` from an environment variable."""
    if isinstance(value, str):
        pairs = [part.partition("=") for part in value.split(",") if part.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise ConfigError(key, "expected name=value pairs separated by commas")
        return {k.strip(): v.strip() for k, _, v in pairs}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(key, "expected a table of strings")
    return {str(k): v for k, v in value.items()}


def _string_tuple(key: str, value: Any) -> tuple[str, ...]:
    """A TOML array of strings, or a comma-separated environment variable."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, "expected a list of strings")
    return tuple(value)


def _int_mapping(key: str, value: Any) -> dict[str, int]:
    """A TOML table of integers, or ``"name=3,other=2"`` from an environment variable."""
    if isinstance(value, str):
        pairs: list[tuple[str, Any]] = []
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, sep, number = item.partition("=")
            if not sep:
                raise ConfigError(key, f"expected name=number pairs, got {item!r}")
            pairs.append((name.strip(), number.strip()))
        value = dict(pairs)
    if not isinstance(value, Mapping):
        raise ConfigError(key, "expected a table of name = number")
    return {str(k): _coerce(f"{key}.{k}", int, v) for k, v in value.items()}


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(text)


def _check(settings: Settings) -> None:
    """Refuse values that would break the law or the pipeline, before anything runs."""
    months = settings.retention.months
    if not 1 <= months <= LEGAL_RETENTION_MONTHS:
        raise ConfigError(
            "retention.months",
            f"{months} is outside 1..{LEGAL_RETENTION_MONTHS}: ANPR data may be kept at most "
            f"{LEGAL_RETENTION_MONTHS} months after collection",
        )
    for table, table_months in settings.retention.tables.items():
        if not 1 <= table_months <= LEGAL_RETENTION_MONTHS:
            raise ConfigError(
                f"retention.tables.{table}",
                f"{table_months} is outside 1..{LEGAL_RETENTION_MONTHS}: personal data may be "
                f"kept at most {LEGAL_RETENTION_MONTHS} months after collection",
            )
    maintain = settings.maintain
    if maintain.late_grace_h < 0 or maintain.orphan_grace_s < 0:
        raise ConfigError("maintain.late_grace_h", "grace periods cannot be negative")
    if not 1 <= maintain.k_anonymity <= 1000:
        raise ConfigError("maintain.k_anonymity", "must be within 1..1000")
    if maintain.compact_min_files < 2:
        raise ConfigError("maintain.compact_min_files", "must be at least 2")
    topics = settings.topics
    limit_ms = shortest_span_days(months) * 24 * 3600 * 1000
    for key in ("personal_retention_ms", "hits_retention_ms"):
        value = getattr(topics, key)
        if not 0 < value < limit_ms:
            raise ConfigError(
                f"topics.{key}",
                f"{value} ms must be positive and below the retention limit "
                f"({limit_ms} ms = the shortest {months} calendar months): "
                "Kafka must not keep personal data longer than the lake may",
            )
    if topics.partitions < 1 or topics.replication_factor < 1:
        raise ConfigError("topics.partitions", "partitions and replication_factor must be >= 1")
    ingest = settings.ingest
    if ingest.batch_size < 1 or ingest.batch_timeout_s <= 0:
        raise ConfigError("ingest.batch_size", "batch_size must be >= 1 and timeout > 0")
    if ingest.batch_max_bytes < 1024 * 1024:
        raise ConfigError("ingest.batch_max_bytes", "must be at least 1 MiB")
    if not 1024 <= ingest.max_message_bytes <= 16 * 1024 * 1024:
        raise ConfigError("ingest.max_message_bytes", "must be within 1 KiB..16 MiB")
    if not 1.0 <= ingest.passage_window_s <= 600.0:
        raise ConfigError("ingest.passage_window_s", "must be within 1..600 seconds")
    if not ingest.max_message_bytes <= ingest.vendor_max_message_bytes <= 16 * 1024 * 1024:
        raise ConfigError(
            "ingest.vendor_max_message_bytes", "must be within max_message_bytes..16 MiB"
        )
    if not 0 <= ingest.metrics_port <= 65535:
        raise ConfigError("ingest.metrics_port", "must be a TCP port, or 0 to disable")
    _check_access(settings.access, months)
    _check_serve(settings.serve)
    _check_live(settings.live)
    _check_passengers(settings.passengers)


def _check_passengers(passengers: PassengerSettings) -> None:
    if passengers.batch_size < 1 or passengers.batch_timeout_s <= 0:
        raise ConfigError("passengers.batch_size", "batch_size must be >= 1 and timeout > 0")
    if not 1024 <= passengers.max_message_bytes <= 16 * 1024 * 1024:
        raise ConfigError("passengers.max_message_bytes", "must be within 1 KiB..16 MiB")
    if not 1.0 <= passengers.dedup_window_h <= 24 * 31:
        raise ConfigError("passengers.dedup_window_h", "must be within 1..744 hours")
    if not 0 <= passengers.metrics_port <= 65535:
        raise ConfigError("passengers.metrics_port", "must be a TCP port, or 0 to disable")
    known = PassengerSettings().kept_fields  # every minimisable field is kept by default
    unknown = [f for f in passengers.kept_fields if f not in known]
    if unknown:
        raise ConfigError(
            "passengers.kept_fields", f"not person fields: {unknown}; known: {', '.join(known)}"
        )


def _check_live(live: LiveSettings) -> None:
    if not 0 <= live.metrics_port <= 65535:
        raise ConfigError("live.metrics_port", "must be a TCP port, or 0 to disable")
    if not 1 <= live.watchlist_max_days <= 366:
        raise ConfigError("live.watchlist_max_days", "must be within 1..366 days")
    if live.batch_size < 1 or live.batch_within_s <= 0:
        raise ConfigError("live.batch_size", "batch_size must be >= 1 and batch_within_s > 0")
    for key in ("max_read_age_s", "hit_dedup_window_s", "silence_day_s", "silence_night_s"):
        if getattr(live, key) <= 0:
            raise ConfigError(f"live.{key}", "must be a positive number of seconds")
    if not 0.01 <= live.fetch_max_wait_s <= 1.5:
        raise ConfigError("live.fetch_max_wait_s", "must be within 0.01..1.5 seconds")
    if not 0.05 <= live.check_interval_s <= 60:
        raise ConfigError("live.check_interval_s", "must be within 0.05..60 seconds")
    for key in ("night_start_hour", "night_end_hour"):
        if not 0 <= getattr(live, key) <= 23:
            raise ConfigError(f"live.{key}", "must be an hour 0..23")
    try:
        zoneinfo.ZoneInfo(live.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError("live.timezone", f"unknown time zone {live.timezone!r}") from None


def _check_serve(serve: ServeSettings) -> None:
    for key in ("tls_listen", "remote"):
        value = getattr(serve, key)
        if value and not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}", value):
            raise ConfigError(f"serve.{key}", f"expected host:port, got {value!r}")
    if serve.tls_listen and None in (serve.tls_cert, serve.tls_key, serve.tls_client_ca):
        raise ConfigError("serve.tls_listen", "needs tls_cert, tls_key and tls_client_ca")
    if serve.remote and None in (serve.client_cert, serve.client_key, serve.server_ca):
        raise ConfigError("serve.remote", "needs client_cert, client_key and server_ca")
    if not 0 < serve.session_max_age_s <= 300:
        raise ConfigError("serve.session_max_age_s", "must be within 0..300 seconds")
    if not 1024 <= serve.max_request_bytes <= 64 * 1024 * 1024:
        raise ConfigError("serve.max_request_bytes", "must be within 1 KiB..64 MiB")


def _check_access(access: AccessSettings, months: int) -> None:
    for user, role in access.users.items():
        if not re.fullmatch(_USER_NAME, user):
            raise ConfigError("access.users", f"{user!r} is not a plain user name")
        if role not in ROLES:
            raise ConfigError("access.users", f"role {role!r} of {user} is not one of {ROLES}")
    for code in access.reasons:
        if not re.fullmatch(_CODE, code):
            raise ConfigError("access.reasons", f"{code!r}: codes are lower-case words")
    if not access.reasons:
        raise ConfigError("access.reasons", "at least one reason code is needed")
    unknown = set(access.case_required_for) - set(access.reasons)
    if unknown:
        raise ConfigError("access.case_required_for", f"not reason codes: {sorted(unknown)}")
    legal_days = shortest_span_days(months)
    if not 1 <= access.analyst_max_age_days <= legal_days:
        raise ConfigError("access.analyst_max_age_days", f"must be within 1..{legal_days}")
    if not 1 <= access.log_retention_months <= 120:
        raise ConfigError("access.log_retention_months", "must be within 1..120")
    if access.anchor_every_entries < 1:
        raise ConfigError("access.anchor_every_entries", "must be >= 1")
    if not 1 <= access.anchor_interval_s <= 3600:
        raise ConfigError("access.anchor_interval_s", "must be within 1..3600 seconds")
