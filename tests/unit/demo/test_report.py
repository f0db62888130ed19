"""The demo report: charts that show something, a page that references them, escaped text."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from PIL import Image

from pipeline.demo.report import (
    INDEX,
    PASSAGES_PNG,
    REJECTS_PNG,
    TRIPS_PNG,
    ReportInputs,
    passages_chart,
    rejects_chart,
    render_html,
    trips_chart,
    write_report,
)

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def _image(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image.convert("RGB")


def _ink(png: bytes) -> tuple[float, int]:
    """Share of non-white pixels, and how many distinct strong colours there are."""
    image = _image(png)
    raw = image.tobytes()
    pixels = list(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
    ink = sum(1 for p in pixels if p != (255, 255, 255)) / len(pixels)
    # Saturated colours only (lines and bars, not grey text or grid), quantised.
    strong = {(r // 32, g // 32, b // 32) for r, g, b in pixels if max(r, g, b) - min(r, g, b) > 80}
    return ink, len(strong)


def _inputs(**changes: object) -> ReportInputs:
    base: dict[str, object] = {
        "title": "ANPR demo",
        "generated_at": T0,
        "passages_per_hour": [
            (T0 + timedelta(hours=h), site, 10 + (h * k) % 37)
            for h in range(72)
            for k, site in enumerate(("NO-SVINESUND", "NO-ORJE", "NO-MAGNOR"), start=1)
        ],
        "trip_durations": [("lt3h", 40), ("3-6h", 25), ("6-24h", 12), ("1-3d", 6)],
        "rejects": [("malformed_json", 30), ("unknown_site", 12), ("future_timestamp", 5)],
        "summary": [("Lake", "plate_reads rows", "12,345"), ("Lake", "rejected", "123")],
        "queries": [("Reads per crossing", 'anpr query --reason control "SELECT 1"')],
        "notes": ["Statistics only."],
    }
    base.update(changes)
    return ReportInputs(**base)  # type: ignore[arg-type]


def test_charts_are_real_pngs_with_several_colours() -> None:
    inputs = _inputs()
    for png in (
        passages_chart(inputs.passages_per_hour),
        trips_chart(inputs.trip_durations),
        rejects_chart(inputs.rejects),
    ):
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert _image(png).size == (900, 400)
        ink, colours = _ink(png)
        assert ink > 0.03, "a chart of data should not be almost blank"
        assert colours >= 3, "one colour per crossing / bar"


def test_empty_inputs_give_a_no_data_chart_not_a_crash() -> None:
    full_ink, _ = _ink(trips_chart([("lt3h", 40), ("3-6h", 25), ("6-24h", 12)]))
    for png in (passages_chart([]), trips_chart([("lt3h", 0)]), rejects_chart([])):
        image = _image(png)
        assert image.size == (900, 400)
        ink, colours = _ink(png)
        assert 0 < ink < full_ink  # the title and "no data", no bars
        assert colours == 0


def test_write_report_writes_the_page_and_the_three_charts(tmp_path: Path) -> None:
    page = write_report(_inputs(), tmp_path / "report")
    assert page == tmp_path / "report" / INDEX
    text = page.read_text(encoding="utf-8")
    for name in (PASSAGES_PNG, TRIPS_PNG, REJECTS_PNG):
        assert f'src="{name}"' in text
        assert (page.parent / name).read_bytes().startswith(b"\x89PNG")
    assert "12,345" in text
    assert "anpr query --reason control" in text
    # Atomic writes leave no temp files behind.
    assert sorted(p.name for p in page.parent.iterdir()) == sorted(
        [INDEX, PASSAGES_PNG, TRIPS_PNG, REJECTS_PNG]
    )


def test_rewriting_replaces_the_files(tmp_path: Path) -> None:
    write_report(_inputs(title="first"), tmp_path)
    page = write_report(_inputs(title="second", rejects=[]), tmp_path)
    text = page.read_text(encoding="utf-8")
    assert "second" in text
    assert "first" not in text


def test_every_text_is_escaped() -> None:
    hostile = "<script>alert(1)</script>"
    text = render_html(
        _inputs(
            title=hostile,
            summary=[(hostile, hostile, hostile)],
            queries=[(hostile, f"anpr query \"SELECT '{hostile}'\"")],
            notes=[hostile],
        ),
        [('x".png', hostile)],
    )
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    assert 'src="x&quot;.png"' in text
    # Only our own tags: nothing from the inputs became markup.
    tags = set(re.findall(r"<([a-z0-9!]+)", text))
    assert tags <= {"!doctype", "html", "head", "meta", "title", "style", "body", "h1", "h2",
                    "p", "table", "tr", "th", "td", "img", "pre"}  # fmt: skip


def test_passages_of_one_site_and_hour_add_up() -> None:
    # Two rows for the same site and hour (entry and exit) are one point, not a zig-zag:
    # the chart of the summed rows equals the chart of the sum.
    split = passages_chart([(T0, "NO-ORJE", 3), (T0, "NO-ORJE", 4), (T0 + timedelta(hours=1),
                            "NO-ORJE", 5)])  # fmt: skip
    summed = passages_chart([(T0, "NO-ORJE", 7), (T0 + timedelta(hours=1), "NO-ORJE", 5)])
    assert _image(split).tobytes() == _image(summed).tobytes()


def test_many_crossings_keep_distinct_colours_by_summing_the_quiet_ones() -> None:
    sites = [f"NO-SITE{n:02d}" for n in range(13)]
    rows = [
        (T0 + timedelta(hours=h), site, (n + 1) * 10 + h % 5)
        for h in range(24)
        for n, site in enumerate(sites)
    ]
    six = passages_chart(rows, lines=6)
    _, colours = _ink(six)
    assert colours >= 6
    # Summing the 7 quietest crossings into one line changes the picture (fewer lines).
    assert _image(six).tobytes() != _image(passages_chart(rows, lines=13)).tobytes()
