"""The settings a test or benchmark run gets on the local set (no server needed)."""

from pathlib import Path

import pytest

from pipeline.cluster import control, postgres, s3proxy
from pipeline.config import load_settings

INFO = control.ClusterInfo(
    "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094",
    postgres.Server(Path("/nonexistent/postgres"), "127.0.0.1", 5432),
    s3proxy.ObjectStore(Path("/nonexistent/s3"), "127.0.0.1", 9000),
)


def test_a_run_gets_its_own_topics_and_group_on_the_three_brokers() -> None:
    settings = load_settings(None, env=control.kafka_env(INFO, "t1a2b"))
    assert settings.kafka.bootstrap_servers == INFO.bootstrap
    assert settings.topics.replication_factor == 3
    assert settings.topics.plate_reads == "t1a2b.plate-reads"
    assert settings.topics.dlq == "t1a2b.dlq"
    assert settings.ingest.consumer_group == "t1a2b-ingest"


@pytest.mark.parametrize("name", ["", "T1", "1abc", "a-b", "a;drop", "a b", "x" * 41])
def test_a_run_name_that_would_need_quoting_is_refused_before_any_connection(name: str) -> None:
    with pytest.raises(ValueError, match="run name"):
        control.kafka_env(INFO, name)
    with pytest.raises(ValueError, match="run name"):
        control.lake_env(INFO, name)  # the server in INFO does not exist: no connection tried


def test_the_database_folder_is_in_the_state_dir_unless_another_user_runs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres.os, "geteuid", lambda: 1000)
    assert postgres.server_root(tmp_path) == tmp_path.resolve() / "postgres"
    # As root the server runs as anpr-db, which cannot enter a private (0700) state dir.
    monkeypatch.setattr(postgres.os, "geteuid", lambda: 0)
    outside = postgres.server_root(tmp_path)
    assert outside.parent == postgres.SHARED_PARENT
    assert outside != postgres.server_root(tmp_path / "other")  # one folder per state dir
    # A real folder made before (or not as root) stays where it is.
    (tmp_path / "postgres").mkdir()
    assert postgres.server_root(tmp_path) == tmp_path.resolve() / "postgres"


def test_the_sets_settings_give_query_sessions_their_own_login(tmp_path: Path) -> None:
    config = tmp_path / "anpr.toml"
    config.write_text(control.settings_toml(INFO), encoding="utf-8")
    lake = load_settings(config, env={}).lake
    assert lake.catalog == "postgres:host=127.0.0.1 port=5432 user=anpr dbname=anpr_lake"
    assert lake.query_catalog == (
        "postgres:host=127.0.0.1 port=5432 user=anpr_query dbname=anpr_lake"
    )
    assert lake.query_catalog_password_file == Path("/nonexistent/postgres/query-password")
