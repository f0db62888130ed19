"""``anpr demo``: the main job in a few minutes, on one machine, from nothing.

The demo is a list of steps (:func:`demo_steps`) run in order over one :class:`Demo` that
collects what each step found:

 1. **Kafka**: start the local broker (reuse it if running; a configured remote cluster is
    used as is), create the topics.
 2. **Watchlist**: a few plates that the simulated traffic will contain (taken from the same
    seeded generator), a few OCR-confusable variants of them, and a few that never pass; sent
    to the compacted ``anpr.watchlist`` topic.
 3. **Live app**: ``anpr live`` as a child process; the demo waits until it has loaded the
    watchlist. Its ``live.max_read_age_s`` is stretched over the simulated days so that the
    replayed traffic counts as current for the watchlist.
 4. **Ferries**: the passenger and crew lists of every departure from a ferry terminal in
    those days, JSON and PAXLST mixed (``--bad-ratio`` of them broken on purpose), built from
    the vehicles the cameras will read leaving on board (the same seeded traffic model).
 5. **Cameras and ingest**: ``anpr ingest plates --until-idle`` and ``anpr ingest passengers
    --until-idle`` as child processes, beside the live app, while the cameras of every vendor
    format send ``--days`` of traffic (road and ferry, ~1 % hostile input) as fast as the
    broker takes it. Progress: reads sent, and each consumer group's committed offsets against
    its topic's end. Then wait for both workers to drain and exit, and for the live app's
    committed offsets to reach the end; then stop the live app (unless ``--keep-running``).
 6. **Maintain**: ``maintain`` once per simulated day, ``as_of`` stepping to the end of each
    day (plus the late-arrival grace), so that traffic statistics appear day by day as the
    nightly job would publish them; then one statistics-only run fast-forwarded past the
    30-day round-trip window so the weeks' trip statistics are published too.
 7. **Summary**, **report**, **queries**: rows per table, people by role and format, rejects
    by feed and reason (read back from the DLQ topic), watchlist hits (read back from the hits
    topic), statistics highlights, retention state; the HTML report (anonymous statistics
    only); three queries to paste, the last one the ferry join an investigator runs.

**Rerunning** continues cleanly on the same state: the broker, topics, lake and consumer
groups are kept, a new seed makes new traffic (new event ids), ingest and live pick up where
their committed offsets are, and statistics of days that changed are recomputed. Counts of
the run (sent, stored, rejected, hits) are measured over this run's offsets only; rows per
table are the lake's totals. ``make clean`` (or removing the lake and ``.anpr``) starts over.

Modules: ``steps`` (steps 1-6 and :func:`run_demo`), ``children`` (the child processes and
what is read back from them), ``summary`` (steps 7-9), ``report`` (the HTML page and its
charts), ``state`` (what the steps share). The package is installed with the ``[demo]`` extra
(matplotlib, for the charts); no ingest worker, live app or access code imports it.
"""

from pipeline.demo.state import DemoOptions
from pipeline.demo.steps import run_demo

__all__ = ["DemoOptions", "run_demo"]
