"""Lake backends chosen by configuration: what reaches ATTACH and CREATE SECRET, what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_settings
from pipeline.errors import ConfigError
from pipeline.lake.backend import Storage


def _storage(env: dict[str, str]) -> Storage:
    return Storage.from_settings(load_settings(env=env).lake)


def test_the_default_is_the_embedded_lake_as_before(tmp_path: Path) -> None:
    storage = _storage({"ANPR_LAKE_PATH": str(tmp_path / "lake")})
    assert storage == Storage.embedded(tmp_path / "lake")
    assert storage.sqlite_file == tmp_path / "lake" / "catalog.sqlite"
    assert storage.local_data == tmp_path / "lake" / "data"
    assert storage.extensions == ("ducklake", "sqlite")
    assert storage.secrets_sql() == []
    assert storage.attach_sql("lake", read_only=False) == (
        f"ATTACH 'ducklake:sqlite:{tmp_path}/lake/catalog.sqlite' AS lake "
        f"(DATA_PATH '{tmp_path}/lake/data/', OVERRIDE_DATA_PATH true)"
    )


def test_postgres_and_s3_keep_every_secret_out_of_the_attach_text(tmp_path: Path) -> None:
    key_file = tmp_path / "s3-secret"
    key_file.write_text("s3cr3t-From-File\n", encoding="utf-8")
    env = {
        "ANPR_LAKE_CATALOG": "postgres:host=db.example port=5432 user=anpr dbname=anpr_lake",
        "ANPR_LAKE_CATALOG_PASSWORD": "pg-Pass-123",
        "ANPR_LAKE_DATA_PATH": "s3://anpr-lake/prod",
        "ANPR_LAKE_S3_ENDPOINT": "objects.example:9000",
        "ANPR_LAKE_S3_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "ANPR_LAKE_S3_SECRET_ACCESS_KEY_FILE": str(key_file),
        "ANPR_LAKE_S3_URL_STYLE": "path",
    }
    storage = _storage(env)
    assert storage.kind == "postgres"
    assert storage.sqlite_file is None
    assert storage.local_data is None
    assert storage.data_path == "s3://anpr-lake/prod/"
    assert storage.extensions == ("ducklake", "postgres", "httpfs")
    attach = storage.attach_sql("lake", read_only=True)
    assert "pg-Pass-123" not in attach
    assert "s3cr3t" not in attach
    assert "METADATA_PARAMETERS MAP {'SCHEMA': 'public', 'SECRET': 'anpr_lake_catalog'}" in attach
    assert attach.endswith("READ_ONLY)")
    secrets = " ".join(storage.secrets_sql())
    assert "PASSWORD 'pg-Pass-123'" in secrets
    assert "SECRET 's3cr3t-From-File'" in secrets  # read from the file, stripped
    assert "ENDPOINT 'objects.example:9000'" in secrets
    assert "SCOPE 's3://anpr-lake/'" in secrets
    # anpr config never shows either secret.
    shown = str(load_settings(env=env).redacted()["lake"])
    assert "pg-Pass-123" not in shown


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ANPR_LAKE_CATALOG": "postgres:host=x password=p"}, "lake.catalog"),
        ({"ANPR_LAKE_CATALOG": "postgres:host=x'; DROP"}, "lake.catalog"),
        ({"ANPR_LAKE_CATALOG": "mysql:host=x"}, "lake.catalog"),
        ({"ANPR_LAKE_DATA_PATH": "s3://Bad_Bucket/x"}, "lake.data_path"),
        ({"ANPR_LAKE_DATA_PATH": "s3://bucket/p"}, "lake.s3_access_key_id"),
        (
            {
                "ANPR_LAKE_DATA_PATH": "s3://bucket/p",
                "ANPR_LAKE_S3_ACCESS_KEY_ID": "k",
                "ANPR_LAKE_S3_SECRET_ACCESS_KEY": "it's",
            },
            "lake.s3_secret_access_key",
        ),
        (
            {
                "ANPR_LAKE_CATALOG": "postgres:host=x",
                "ANPR_LAKE_CATALOG_PASSWORD_FILE": "/nonexistent/anpr/pw",
            },
            "lake.catalog_password_file",
        ),
        (
            {"ANPR_LAKE_CATALOG": "postgres:host=x", "ANPR_LAKE_QUERY_CATALOG": "host=x"},
            "lake.query_catalog",
        ),
        (
            {
                "ANPR_LAKE_CATALOG": "postgres:host=x",
                "ANPR_LAKE_QUERY_CATALOG": "postgres:host=x password=p",
            },
            "lake.query_catalog",
        ),
        ({"ANPR_LAKE_QUERY_CATALOG": "postgres:host=x user=q"}, "lake.query_catalog"),
        (
            {
                "ANPR_LAKE_CATALOG": "postgres:host=x",
                "ANPR_LAKE_QUERY_CATALOG_PASSWORD_FILE": "/nonexistent/anpr/pw",
            },
            "lake.query_catalog_password_file",
        ),
    ],
)
def test_values_that_would_reach_sql_unchecked_are_refused(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _storage(env)
    assert caught.value.key == key


def test_an_existing_lake_is_required_with_one_message(tmp_path: Path) -> None:
    settings = load_settings(env={"ANPR_LAKE_PATH": str(tmp_path / "lake")}).lake
    with pytest.raises(ConfigError) as caught:
        Storage.existing(settings)
    assert (caught.value.key, str(caught.value)) == (
        "lake.path",
        f"lake.path: no lake at {tmp_path / 'lake'} yet: ingest something first",
    )
    (tmp_path / "lake").mkdir()
    (tmp_path / "lake" / "catalog.sqlite").touch()
    assert Storage.existing(settings) == Storage.embedded(tmp_path / "lake")


def test_query_sessions_log_in_as_the_query_login_never_the_pipelines(tmp_path: Path) -> None:
    env = {
        "ANPR_LAKE_CATALOG": "postgres:host=db.example user=anpr dbname=anpr_lake",
        "ANPR_LAKE_CATALOG_PASSWORD": "pg-Pass-123",
        "ANPR_LAKE_QUERY_CATALOG": "postgres:host=db.example user=anpr_query dbname=anpr_lake",
        "ANPR_LAKE_QUERY_CATALOG_PASSWORD": "query-Pass-456",
    }
    storage = _storage(env)
    assert storage.catalog == "postgres:host=db.example user=anpr dbname=anpr_lake"
    query = storage.for_queries()
    assert query.catalog == "postgres:host=db.example user=anpr_query dbname=anpr_lake"
    assert query.query_login
    assert query.for_queries() == query
    assert "user=anpr_query" in query.attach_sql("lake", read_only=True)
    secrets = " ".join(query.secrets_sql())
    assert "PASSWORD 'query-Pass-456'" in secrets
    assert "pg-Pass-123" not in secrets
    assert "query-Pass-456" not in str(load_settings(env=env).redacted()["lake"])
    # Without one, a PostgreSQL catalog has no login for queries: refused, never the pipeline's.
    del env["ANPR_LAKE_QUERY_CATALOG"]
    with pytest.raises(ConfigError) as caught:
        _storage(env).for_queries()
    assert caught.value.key == "lake.query_catalog"
    # An embedded catalog has no logins.
    embedded = _storage({"ANPR_LAKE_PATH": str(tmp_path / "lake")})
    assert embedded.for_queries() is embedded
