from pathlib import Path

import pytest

from pipeline.config import Secret, load_settings
from pipeline.errors import ConfigError
from pipeline.schemas import MINIMISABLE_FIELDS


def test_defaults_without_file_or_env() -> None:
    s = load_settings(None, env={})
    assert s.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert s.lake.path == Path("lake")
    assert s.retention.months == 6
    assert s.topics.personal_retention_ms == 7 * 24 * 3600 * 1000


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "anpr.toml"
    config.write_text('[lake]\npath = "/from/file"\n[ingest]\nbatch_size = 100\n')
    s = load_settings(config, env={})
    assert s.lake.path == Path("/from/file")
    assert s.ingest.batch_size == 100
    s = load_settings(config, env={"ANPR_LAKE_PATH": "/from/env", "ANPR_INGEST_BATCH_SIZE": "7"})
    assert s.lake.path == Path("/from/env")
    assert s.ingest.batch_size == 7
    s = load_settings(
        config, env={"ANPR_LAKE_PATH": "/from/env"}, overrides={"lake.path": "/from/flag"}
    )
    assert s.lake.path == Path("/from/flag")


def test_state_dir_env_name() -> None:
    assert load_settings(None, env={"ANPR_STATE_DIR": "/tmp/x"}).state.dir == Path("/tmp/x")


def test_librdkafka_settings_pass_through_and_secrets_are_masked(tmp_path: Path) -> None:
    config = tmp_path / "anpr.toml"
    config.write_text('[kafka.client]\n"security.protocol" = "SASL_SSL"\n')
    s = load_settings(
        config,
        env={"ANPR_KAFKA_SASL_PASSWORD": "hunter2", "ANPR_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
    )
    client = s.kafka.client_config()
    assert client["security.protocol"] == "SASL_SSL"
    assert client["sasl.password"] == "hunter2"
    assert client["sasl.mechanism"] == "SCRAM-SHA-512"
    assert isinstance(s.kafka.client["sasl.password"], Secret)
    shown = repr(s) + str(s.redacted())
    assert "hunter2" not in shown
    assert "SCRAM-SHA-512" in shown


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ANPR_RETENTION_MONTHS": "7"}, "retention.months"),
        ({"ANPR_RETENTION_MONTHS": "0"}, "retention.months"),
        (
            {"ANPR_TOPICS_PERSONAL_RETENTION_MS": str(182 * 86_400_000)},
            "topics.personal_retention_ms",
        ),
        ({"ANPR_TOPICS_PERSONAL_RETENTION_MS": "-1"}, "topics.personal_retention_ms"),
        ({"ANPR_INGEST_BATCH_SIZE": "many"}, "ingest.batch_size"),
        ({"ANPR_INGEST_BATCH_SIZE": "1.5"}, "ingest.batch_size"),
        ({"ANPR_RETENTION_TABLES": "passengers=7"}, "retention.tables.passengers"),
        ({"ANPR_RETENTION_TABLES": "passengers"}, "retention.tables"),
        ({"ANPR_MAINTAIN_K_ANONYMITY": "0"}, "maintain.k_anonymity"),
        ({"ANPR_LIVE_WATCHLIST_MAX_DAYS": "0"}, "live.watchlist_max_days"),
        ({"ANPR_LIVE_METRICS_PORT": "70000"}, "live.metrics_port"),
        ({"ANPR_LIVE_SILENCE_NIGHT_S": "0"}, "live.silence_night_s"),
        ({"ANPR_LIVE_NIGHT_START_HOUR": "24"}, "live.night_start_hour"),
        ({"ANPR_LIVE_TIMEZONE": "Mars/Olympus"}, "live.timezone"),
        ({"ANPR_LIVE_FETCH_MAX_WAIT_S": "2"}, "live.fetch_max_wait_s"),
    ],
)
def test_illegal_values_are_refused_with_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env=env)
    assert info.value.key == key


def test_unknown_keys_and_sections_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "anpr.toml"
    config.write_text("[lake]\npth = 'typo'\n")
    with pytest.raises(ConfigError, match=r"lake\.pth"):
        load_settings(config, env={})
    config.write_text("[laek]\npath = 'typo'\n")
    with pytest.raises(ConfigError, match="laek"):
        load_settings(config, env={})


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[lake\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, env={})


def test_per_table_retention_from_toml_and_env(tmp_path: Path) -> None:
    config = tmp_path / "anpr.toml"
    config.write_text("[retention]\nmonths = 5\n[retention.tables]\npassengers = 2\n")
    s = load_settings(config, env={})
    assert (s.retention.months_for("passengers"), s.retention.months_for("plate_reads")) == (2, 5)
    s = load_settings(None, env={"ANPR_RETENTION_TABLES": "plate_reads=4, passengers=3"})
    assert dict(s.retention.tables) == {"plate_reads": 4, "passengers": 3}


def test_passenger_settings_defaults_and_env_override() -> None:
    s = load_settings(None, env={})
    p = s.passengers
    assert (p.consumer_group, p.metrics_port, p.max_message_bytes) == (
        "anpr-ingest-passengers",
        9465,
        2 * 1024 * 1024,
    )
    assert p.dedup_window_h == 72.0
    assert p.kept_fields == MINIMISABLE_FIELDS  # every droppable field is kept by default
    s = load_settings(
        None,
        env={
            "ANPR_PASSENGERS_KEPT_FIELDS": "surname, vehicle_plate",
            "ANPR_PASSENGERS_MAX_MESSAGE_BYTES": "4096",
            "ANPR_PASSENGERS_CONSUMER_GROUP": "g2",
        },
    )
    assert s.passengers.kept_fields == ("surname", "vehicle_plate")
    assert (s.passengers.max_message_bytes, s.passengers.consumer_group) == (4096, "g2")


def test_passenger_settings_from_toml(tmp_path: Path) -> None:
    config = tmp_path / "anpr.toml"
    config.write_text('[passengers]\nkept_fields = ["vehicle_plate"]\ndedup_window_h = 24\n')
    s = load_settings(config, env={})
    assert s.passengers.kept_fields == ("vehicle_plate",)
    assert s.passengers.dedup_window_h == 24.0


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ANPR_PASSENGERS_KEPT_FIELDS": "surname,email"}, "passengers.kept_fields"),
        ({"ANPR_PASSENGERS_KEPT_FIELDS": "seat"}, "passengers.kept_fields"),
        ({"ANPR_PASSENGERS_MAX_MESSAGE_BYTES": "100"}, "passengers.max_message_bytes"),
        ({"ANPR_PASSENGERS_METRICS_PORT": "70000"}, "passengers.metrics_port"),
        ({"ANPR_PASSENGERS_DEDUP_WINDOW_H": "0"}, "passengers.dedup_window_h"),
    ],
)
def test_bad_passenger_settings_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env=env)
    assert info.value.key == key


@pytest.mark.parametrize("name", ["ANPR_LAKE_PATHS", "ANPR_ACESS_USERS", "ANPR_STATE", "ANPR_X"])
def test_unknown_anpr_variables_are_refused_like_unknown_toml_keys(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(None, env={name: "x"})


def test_variables_that_are_not_settings_and_librdkafka_keys_pass() -> None:
    env = {"ANPR_LOG_LEVEL": "DEBUG", "ANPR_IMAGE": "anpr:1", "ANPR_KAFKA_SASL_MECHANISM": "X"}
    assert load_settings(None, env=env).kafka.client["sasl.mechanism"] == "X"


def test_a_config_that_is_a_folder_or_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path, env={})
    latin = tmp_path / "anpr.toml"
    latin.write_bytes(b'[lake]\npath = "/tmp/l\xe6ke"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(latin, env={})
