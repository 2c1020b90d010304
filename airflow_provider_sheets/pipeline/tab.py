"""A tab's mapper and the checks of a Variable watermark against the tab, with the fixes the Airflow shells give."""

from __future__ import annotations

from typing import Any

from airflow_provider_sheets.errors import HeaderError, SheetsConfigError, WatermarkError
from airflow_provider_sheets.model import checks
from airflow_provider_sheets.model.mapping import RowMapper
from airflow_provider_sheets.model.sheet import SheetInfo


def mapper_for(header: list[Any], header_row: int, info: SheetInfo, key_column: str | None, setting: str) -> RowMapper:
    """
    The tab's :class:`RowMapper`, or an error naming the fix.

    :param setting: how the user sets the header row (``header_row`` or ``--header-row``).
    """
    if not any(cell not in ("", None) for cell in header):
        raise HeaderError(
            f"the header row {header_row} of tab {info.title!r} is empty. Put the field names (for a "
            f"Google Form: the question titles) in row {header_row}, or set {setting}."
        )
    try:
        return RowMapper(header, key_column)
    except ValueError as err:
        raise SheetsConfigError(f"tab {info.title!r}: {err}") from None


def check_watermark(
    key: str | None, last_row: int, header_row: int | None = None, info: SheetInfo | None = None
) -> None:
    """
    Raise :class:`WatermarkError` when the Variable ``key``'s ``last_row`` is above ``header_row``,
    or past the end of the tab ``info``: rows were deleted (each check only when its argument is given).
    """
    where = f"the watermark Variable {key!r}" if key else "the watermark"
    above = checks.above_header(last_row, header_row) if header_row is not None else None
    if above is not None:
        raise WatermarkError(f"{where} {above}; set it to {header_row} or more.")
    beyond = checks.beyond_tab(last_row, info) if info is not None else None
    if beyond is not None:
        raise WatermarkError(
            f"{where} {beyond}. Check the topic, then set the Variable's last_row to the last row already "
            f"published (or delete it to republish all)."
        )
