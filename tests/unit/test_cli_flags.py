"""Ingest flags that cannot mean anything are refused before anything connects (exit 2)."""

from __future__ import annotations

import pytest

from pipeline.cli import build_parser


@pytest.mark.parametrize("feed", ["plates", "passengers"])
@pytest.mark.parametrize(
    "flags",
    [
        ["--until-idle", "-5"],
        ["--until-idle", "0"],
        ["--until-idle", "soon"],
        ["--max-messages", "0"],
        ["--max-messages", "-1"],
        ["--max-messages", "1.5"],
    ],
)
def test_meaningless_values_exit_2(
    feed: str, flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["ingest", feed, *flags])
    assert exit_.value.code == 2
    assert flags[0] in capsys.readouterr().err


def test_sensible_values_parse() -> None:
    args = build_parser().parse_args(
        ["ingest", "plates", "--until-idle", "2.5", "--max-messages", "7"]
    )
    assert (args.until_idle, args.max_messages) == (2.5, 7)
