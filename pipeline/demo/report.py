"""The demo's HTML report: a page of summary tables and three PNG charts.

Only statistics go in: counts per hour and crossing (from ``traffic_stats``, already
k-anonymous), round trips per duration bucket, rejects per reason code, and the summary
numbers. The caller never hands over a plate, an event id or a name, and nothing here reads
the lake; every text is HTML-escaped all the same, since reason codes and site ids travelled
through Kafka.

Charts are drawn with matplotlib's Agg canvas on :class:`~matplotlib.figure.Figure` objects
(no pyplot, no global state, no display). An empty series gives a chart that says "no data"
instead of an exception, so a demo that ingested nothing still gets a readable report.
Every file is written atomically (temp file in the same folder, fsync, ``os.replace``).

Example::

    path = write_report(ReportInputs(title="ANPR demo", generated_at=now, ...), Path("report"))
    print(f"open {path}")
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np

from pipeline.errors import PipelineError
from pipeline.files import write_atomic

try:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
except ModuleNotFoundError as exc:  # an install without the [demo] extra
    raise PipelineError(
        "anpr demo draws its report with matplotlib: install the demo extra "
        "(pip install 'anpr-pipeline[demo]'; make setup does)"
    ) from exc

PASSAGES_PNG: Final = "passages-per-hour.png"
TRIPS_PNG: Final = "round-trip-durations.png"
REJECTS_PNG: Final = "rejects-by-reason.png"
INDEX: Final = "index.html"

_SIZE: Final = (9.0, 4.0)  # inches; at 100 dpi a 900 x 400 PNG
_DPI: Final = 100


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows; statistics only.

    - ``passages_per_hour``: (UTC hour, site id, passages) rows;
    - ``trip_durations``: (duration bucket, round trips) in the order to draw them;
    - ``rejects``: (reason code, messages);
    - ``summary``: (section, item, value) rows, shown as one table per section;
    - ``queries``: (what it shows, the command to paste);
    - ``notes``: short paragraphs under the charts.
    """

    title: str
    generated_at: datetime
    passages_per_hour: Sequence[tuple[datetime, str, int]] = ()
    trip_durations: Sequence[tuple[str, int]] = ()
    rejects: Sequence[tuple[str, int]] = ()
    summary: Sequence[tuple[str, str, str]] = ()
    queries: Sequence[tuple[str, str]] = ()
    notes: Sequence[str] = field(default_factory=tuple)


def write_report(inputs: ReportInputs, out_dir: Path) -> Path:
    """Write ``index.html`` and its three PNG charts into ``out_dir``; return the page's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = (
        (PASSAGES_PNG, "Passages per hour per crossing", passages_chart(inputs.passages_per_hour)),
        (TRIPS_PNG, "Round trips by duration", trips_chart(inputs.trip_durations)),
        (REJECTS_PNG, "Rejected messages by reason", rejects_chart(inputs.rejects)),
    )
    for name, _, png in charts:
        write_atomic(out_dir / name, png)
    page = render_html(inputs, [(name, alt) for name, alt, _ in charts])
    return write_atomic(out_dir / INDEX, page.encode("utf-8"))


# -- charts (pure: data in, PNG bytes out) --------------------------------------------------


def passages_chart(rows: Sequence[tuple[datetime, str, int]], *, lines: int = 6) -> bytes:
    """One line per crossing, passages per UTC hour; the quieter crossings beyond ``lines``
    are summed into one line so that every line keeps its own colour."""
    fig, ax = _figure("Passages per hour per crossing (UTC)")
    by_site: dict[str, dict[datetime, int]] = {}
    for hour, site, passages in rows:
        series = by_site.setdefault(site, {})
        series[hour] = series.get(hour, 0) + int(passages)
    if not any(by_site.values()):
        return _no_data(fig, ax)
    # Busiest crossing first, so the legend reads like a ranking.
    ranked = sorted(by_site, key=lambda s: (-sum(by_site[s].values()), s))
    shown = {site: by_site[site] for site in ranked[:lines]}
    rest = ranked[lines:]
    if len(rest) == 1:
        shown[rest[0]] = by_site[rest[0]]
    elif rest:
        other: dict[datetime, int] = {}
        for site in rest:
            for hour, n in by_site[site].items():
                other[hour] = other.get(hour, 0) + n
        shown[f"{len(rest)} other crossings"] = other
    for label, series in shown.items():
        hours = sorted(series)
        # numpy datetimes (naive UTC): matplotlib picks date ticks for them by itself.
        x = np.array([h.astimezone(UTC).replace(tzinfo=None) for h in hours], "datetime64[s]")
        ax.plot(x, [series[h] for h in hours], label=label, linewidth=1.4)
    ax.set_ylabel("passages")
    ax.legend(fontsize="small", ncols=2, loc="upper left")
    return _png(fig)


def trips_chart(rows: Sequence[tuple[str, int]]) -> bytes:
    """Bars of round trips per duration bucket (an exit and the vehicle's next entry)."""
    fig, ax = _figure("Round trips by duration (exit from Norway to the next entry)")
    rows = [(bucket, int(n)) for bucket, n in rows]
    if not any(n for _, n in rows):
        return _no_data(fig, ax)
    ax.bar([b for b, _ in rows], [n for _, n in rows], color=_colours(len(rows)))
    ax.set_ylabel("round trips")
    return _png(fig)


def rejects_chart(rows: Sequence[tuple[str, int]]) -> bytes:
    """Horizontal bars of rejected messages per reason code, largest on top."""
    fig, ax = _figure("Rejected messages by reason (sent to the DLQ)")
    rows = sorted(((r, int(n)) for r, n in rows if n), key=lambda rn: rn[1])
    if not rows:
        return _no_data(fig, ax)
    ax.barh([r for r, _ in rows], [n for _, n in rows], color=_colours(len(rows)))
    ax.set_xlabel("messages")
    return _png(fig)


def _figure(title: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, loc="left", fontsize="medium")
    ax.grid(axis="both", alpha=0.3)
    return fig, ax


def _colours(n: int) -> list[str]:
    palette = [f"C{i % 10}" for i in range(max(n, 1))]
    return palette[:n]


def _no_data(fig: Figure, ax: Axes) -> bytes:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(
        0.5, 0.5, "no data", ha="center", va="center", fontsize="xx-large", color="0.4",
        transform=ax.transAxes,
    )  # fmt: skip
    return _png(fig)


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


# -- the page -------------------------------------------------------------------------------

_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0 1.5em; }
pre { background: #f5f5f5; padding: 0.6em; overflow-x: auto; white-space: pre-wrap; }
"""


def render_html(inputs: ReportInputs, images: Sequence[tuple[str, str]]) -> str:
    """The page: summary tables per section, the charts, the example queries, the notes."""
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(inputs.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(inputs.title)}</h1>",
        f"<p>Generated {e(inputs.generated_at.isoformat(timespec='seconds'))}. Statistics "
        "only: no plate, name, document number or event id appears in this report.</p>",
    ]
    sections: dict[str, list[tuple[str, str]]] = {}
    for section, item, value in inputs.summary:
        sections.setdefault(section, []).append((item, value))
    for section, items in sections.items():
        parts.append(f"<h2>{e(section)}</h2><table>")
        for item, value in items:
            numeric = value.replace(",", "").replace(".", "").replace("-", "").isdigit()
            cls = ' class="n"' if numeric else ""
            parts.append(f"<tr><th>{e(item)}</th><td{cls}>{e(value)}</td></tr>")
        parts.append("</table>")
    parts.append("<h2>Charts</h2>")
    for name, alt in images:
        parts.append(f'<img src="{e(name)}" alt="{e(alt)}" width="900" height="400">')
    if inputs.queries:
        parts.append("<h2>Try it yourself</h2>")
        for what, command in inputs.queries:
            parts.append(f"<p>{e(what)}</p><pre>{e(command)}</pre>")
    if inputs.notes:
        parts.append("<h2>Notes</h2>")
        parts.extend(f"<p>{e(note)}</p>" for note in inputs.notes)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- files ----------------------------------------------------------------------------------
