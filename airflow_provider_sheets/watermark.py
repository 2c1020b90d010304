"""The watermark: "every row up to and including ``last_row`` is in Kafka", kept in an Airflow Variable."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from airflow_provider_sheets.errors import WatermarkError, WatermarkWriteError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def default_watermark_key(spreadsheet_id: str, sheet_id: int, topic: str) -> str:
    """
    The Variable key used when ``watermark_key`` is not given.

    It names the tab by its numeric id (``gid``), so renaming the tab keeps the watermark.
    """
    return "sheets_to_kafka." + ".".join(
        _UNSAFE.sub("_", str(part)) for part in (spreadsheet_id, f"gid{sheet_id}", topic)
    )


@dataclass
class Watermark:
    """The JSON document stored in the Variable."""

    last_row: int
    spreadsheet_id: str = ""
    sheet_id: int | None = None
    sheet_name: str = ""
    topic: str = ""
    header_hash: str | None = None
    fields: list[str] | None = None
    last_row_hash: str | None = None
    updated_at: str = ""
    dag_id: str | None = None
    run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, key: str, text: str) -> Watermark:
        try:
            data = json.loads(text)
        except ValueError as err:
            raise WatermarkError(
                f"Variable {key!r} does not hold valid JSON ({err}). Fix it to an object such as "
                f'{{"last_row": 1}} (1 = only the header is done), or delete the Variable to start '
                f"from the first data row."
            ) from None
        if isinstance(data, int) and not isinstance(data, bool):
            data = {"last_row": data}
        if not isinstance(data, dict) or not isinstance(data.get("last_row"), int) or data["last_row"] < 0:
            raise WatermarkError(
                f'Variable {key!r} must be a JSON object with a non-negative integer "last_row", got '
                f'{text[:200]!r}. Set it to e.g. {{"last_row": 1}} or delete it to start over.'
            )
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        extra = {k: v for k, v in data.items() if k not in known and k != "extra"}
        extra.update(data.get("extra") or {})
        return cls(**{k: v for k, v in data.items() if k in known}, extra=extra)


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
        return Watermark.from_json(self.key, text)

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
        if stored is None or Watermark.from_json(self.key, stored).last_row != watermark.last_row:
            raise WatermarkWriteError(
                f"the watermark Variable {self.key!r} did not read back as written (last_row "
                f"{watermark.last_row}); another run may be writing it at the same time."
            )
        return watermark
