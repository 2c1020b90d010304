"""The watermark kept in an Airflow Variable, and the tools that set or reset it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow_provider_sheets.errors import WatermarkError, WatermarkWriteError
from airflow_provider_sheets.model.position import PositionFormatError, Watermark


class WatermarkStore:
    """
    Read and write one watermark Variable.

    :param key: the Variable key.
    """

    def __init__(self, key: str) -> None:
        self.key = key

    def get(self) -> Watermark | None:
        """The stored watermark, or ``None`` when the Variable does not exist."""
        from airflow.sdk import Variable

        text = Variable.get(self.key, default=None)
        if text is None:
            return None
        return self._parse(text)

    def _parse(self, text: str) -> Watermark:
        try:
            return Watermark.from_json(text)
        except PositionFormatError as err:
            raise WatermarkError(
                f'Variable {self.key!r} {err}. Set it to an object such as {{"last_row": 1}} (1 = only the header '
                f"is done), or delete the Variable to start from the first data row."
            ) from None

    def set(self, watermark: Watermark) -> Watermark:
        """
        Write the watermark and read it back; raise :class:`WatermarkWriteError` unless it matches.

        Call this only after every record up to ``watermark.last_row`` has been acknowledged.
        """
        from airflow.sdk import Variable

        watermark.updated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        text = watermark.to_json()
        try:
            Variable.set(self.key, text, description="airflow-provider-sheets watermark (last row in Kafka)")
            stored = Variable.get(self.key, default=None)
        except Exception as err:
            raise WatermarkWriteError(
                f"writing the watermark Variable {self.key!r} failed ({type(err).__name__}: {err}). Every "
                f"row up to {watermark.last_row} is in Kafka; the next run re-sends the rows after the "
                f"old watermark with the same keys."
            ) from err
        if stored is None or self._parse(stored).last_row != watermark.last_row:
            raise WatermarkWriteError(
                f"the watermark Variable {self.key!r} did not read back as written (last_row "
                f"{watermark.last_row}); another run may be writing it at the same time."
            )
        return watermark


def set_watermark(key: str, last_row: int, **fields: Any) -> Watermark:
    """Set ``last_row`` (keeping the other fields of an existing watermark, minus its row hash)."""
    if last_row < 1:
        raise WatermarkError(f"last_row must be at least 1 (1 = only the header is done), got {last_row}")
    store = WatermarkStore(key)
    current = store.get()
    watermark = current or Watermark(last_row=last_row)
    watermark.last_row = last_row
    watermark.last_row_hash = None  # the rows behind the new position were not seen by a run
    watermark.recent_rows = None
    for name, value in fields.items():
        setattr(watermark, name, value)
    return store.set(watermark)


def reset_watermark(key: str) -> bool:
    """Delete the watermark Variable (the next run publishes every row); ``False`` if it was absent."""
    from airflow.sdk import Variable

    if WatermarkStore(key).get() is None:
        return False
    Variable.delete(key)
    return True
