from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.access.identity import Identity, check_purpose, resolve_identity
from pipeline.config import AccessSettings, load_settings
from pipeline.errors import ConfigError, UsageError
from pipeline.pseudonym import PSEUDONYM, Pseudonymiser

ACCESS = AccessSettings(users={"ann": "analyst", "ivan": "investigator"})


def test_identity_is_the_os_user_unless_the_flag_is_allowed() -> None:
    assert resolve_identity(ACCESS, requested=None, os_user="ann") == Identity("ann", "analyst")
    with pytest.raises(UsageError, match="--user is not allowed"):
        resolve_identity(ACCESS, requested="ivan", os_user="ann")
    allowed = AccessSettings(users=ACCESS.users, user_flag=True)
    assert resolve_identity(allowed, requested="ivan", os_user="ann").role == "investigator"
    with pytest.raises(UsageError, match="no role"):
        resolve_identity(ACCESS, requested=None, os_user="mallory")


def test_reason_and_case_rules() -> None:
    ann, ivan = Identity("ann", "analyst"), Identity("ivan", "investigator")
    with pytest.raises(UsageError, match="--reason is required"):
        check_purpose(ACCESS, ann, reason=None, case=None)
    with pytest.raises(UsageError, match="unknown --reason"):
        check_purpose(ACCESS, ann, reason="curiosity", case=None)
    assert check_purpose(ACCESS, ann, reason="control", case=None).case is None
    with pytest.raises(UsageError, match="reason investigation"):
        check_purpose(ACCESS, ann, reason="investigation", case=None)
    with pytest.raises(UsageError, match="role investigator"):
        check_purpose(ACCESS, ivan, reason="control", case=None)
    with pytest.raises(UsageError, match="--case is"):
        check_purpose(ACCESS, ivan, reason="control", case="x'; DROP")


def test_pseudonyms_are_keyed_stable_and_never_show_the_key(tmp_path: Path) -> None:
    key = tmp_path / "k" / "pseudonym.key"
    one = Pseudonymiser.from_key_file(key)
    assert oct(key.stat().st_mode)[-3:] == "600"
    again = Pseudonymiser.from_key_file(key)
    other = Pseudonymiser(b"another key of 32 bytes........")
    assert one.one("AB12345") == again.one("AB12345") != other.one("AB12345")
    assert PSEUDONYM.fullmatch(one.one("AB12345"))
    assert key.read_text().strip() not in repr(one)
    many = one.many(pa.array(["AB12345", None, "AB12345", "CD1"]))
    assert many.to_pylist() == [one.one("AB12345"), None, one.one("AB12345"), one.one("CD1")]
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        Pseudonymiser.from_key_file(key)


def test_access_settings_from_env_and_their_checks() -> None:
    env = {
        "ANPR_ACCESS_USERS": "ann=analyst, dora=dpo",
        "ANPR_ACCESS_REASONS": "control,dsar",
        "ANPR_ACCESS_CASE_REQUIRED_FOR": "dsar",
    }
    access = load_settings(None, env=env).access
    assert access.users == {"ann": "analyst", "dora": "dpo"}
    assert (access.reasons, access.case_required_for) == (("control", "dsar"), ("dsar",))
    for bad in (
        {"ANPR_ACCESS_USERS": "ann=root"},
        {"ANPR_ACCESS_USERS": "ann"},
        {"ANPR_ACCESS_CASE_REQUIRED_FOR": "nope"},
        {"ANPR_ACCESS_ANALYST_MAX_AGE_DAYS": "200"},  # beyond the legal limit
        {"ANPR_ACCESS_REASONS": "Control!"},
    ):
        with pytest.raises(ConfigError):
            load_settings(None, env=bad)
