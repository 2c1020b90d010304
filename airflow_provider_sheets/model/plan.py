"""Run plans (pure): what a run does, decided from how it started (the decision table is unit-tested).

=====================================  ==================================  =====================
run                                    rows published                      live watermark
=====================================  ==================================  =====================
scheduled                              after the watermark                 moved to the last row
manual, no conf (with or without a     after the watermark                 moved to the last row
logical date)
manual, ``dry_run``                    none (read, map, log a preview)     unchanged
manual, ``full_refresh``               every row from the first data row   set to the last row
manual, ``start_row=N``                rows from N on                      max(old, last row)
``max_rows=M`` (any of the above)      at most M rows                      up to the last one
backfill (``airflow backfill create``)  rows whose timestamp column falls   unchanged
                                       in [data_interval_start,
                                       data_interval_end)
``reconcile`` (scheduled or manual)    rows changed since published, and   set to the last row
                                       tombstones of rows gone
=====================================  ==================================  =====================

Keys and ``sheets.*`` headers are the same in every mode, so a consumer can de-duplicate a row
that a backfill and the live path both published.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone


class PlanError(ValueError):
    """The run's arguments contradict each other or how the run started."""


INCREMENTAL = "incremental"
FULL_REFRESH = "full_refresh"
FROM_ROW = "from_row"
INTERVAL = "interval"
RECONCILE = "reconcile"


@dataclass(frozen=True)
class RunPlan:
    """The decision for one run."""

    run_type: str
    mode: str
    publish: bool
    moves_watermark: bool
    after_row: int | None
    interval: tuple[datetime, datetime] | None
    reason: str


def plan_run(
    run_type: str | None,
    data_interval: tuple[datetime | None, datetime | None] | None,
    *,
    header_row: int = 1,
    dry_run: bool = False,
    full_refresh: bool = False,
    start_row: int | None = None,
    reconcile: bool = False,
) -> RunPlan:
    """
    Decide what a run publishes and whether it moves the live watermark.

    :param run_type: the DAG run's type (``scheduled``, ``manual``, ``backfill``,
        ``asset_triggered``…); ``None`` counts as manual.
    :param data_interval: ``(start, end)``; either may be ``None`` (a manual run without a
        logical date has no interval).
    :param after_row: in the result, the row after which to read; ``None`` means "from the
        watermark".
    """
    kind = (str(run_type or "manual")).split(".")[-1].lower()
    if full_refresh and start_row is not None:
        raise PlanError("full_refresh and start_row cannot be combined: choose one of them")
    if reconcile and (full_refresh or start_row is not None):
        raise PlanError("reconcile reads every row already; it cannot be combined with full_refresh or start_row")
    if start_row is not None and start_row <= header_row:
        raise PlanError(
            f"start_row must be below the header row {header_row} (the first data row is {header_row + 1}), "
            f"got {start_row}"
        )
    publish = not dry_run
    prefix = "dry run: nothing is published; " if dry_run else ""
    if kind == "backfill":
        if full_refresh or start_row is not None or reconcile:
            raise PlanError(
                "a backfill run selects rows by its data interval; full_refresh, start_row and reconcile apply to "
                "scheduled and manual runs only"
            )
        return _backfill(kind, data_interval, header_row, publish, prefix)
    if reconcile:
        done = "; the watermark is set to the last row at the end" if publish else ""
        reason = "reconcile: every row read, the rows changed since published and tombstones of rows gone" + done
        return RunPlan(kind, RECONCILE, publish, publish, header_row, None, prefix + reason)
    if full_refresh:
        done = "; the watermark is set to the last row at the end" if publish else ""
        reason = f"full refresh: every row from row {header_row + 1}{done}"
        return RunPlan(kind, FULL_REFRESH, publish, publish, header_row, None, prefix + reason)
    if start_row is not None:
        reason = f"from row {start_row}" + ("; the watermark never moves backwards" if publish else "")
        return RunPlan(kind, FROM_ROW, publish, publish, start_row - 1, None, prefix + reason)
    return RunPlan(
        kind, INCREMENTAL, publish, publish, None, None, prefix + f"{kind} run: the rows after the watermark"
    )


def _backfill(
    kind: str,
    data_interval: tuple[datetime | None, datetime | None] | None,
    header_row: int,
    publish: bool,
    prefix: str,
) -> RunPlan:
    start, end = data_interval or (None, None)
    if start is None or end is None or end <= start:
        raise PlanError(
            "this backfill run has no data interval, so there is no window to select rows by. Give "
            "the DAG a data-interval schedule, e.g. CronDataIntervalTimetable('*/15 * * * *', "
            "timezone='UTC')."
        )
    window = f"[{start.isoformat()}, {end.isoformat()})"
    reason = f"backfill: rows whose timestamp is in {window}; the live watermark is not touched"
    return RunPlan(kind, INTERVAL, publish, False, header_row, (start, end), prefix + reason)


def transactional_id(plan: RunPlan, dag_id: str, task_id: str, spreadsheet_id: str, sheet_id: int | str) -> str:
    """
    The ``transactional.id`` of an exactly-once run: the same for every attempt of the task on
    this tab, so a new attempt fences an older one still running; a backfill run (which may run
    beside other intervals' runs, and leaves the live watermark alone) adds its data interval.
    """
    tid = f"sheets-to-kafka.{dag_id}.{task_id}.{spreadsheet_id}.gid{sheet_id}"
    if plan.mode == INTERVAL and plan.interval is not None:
        start, end = (moment.astimezone(timezone.utc) for moment in plan.interval)
        tid += f".{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}"
    return tid
