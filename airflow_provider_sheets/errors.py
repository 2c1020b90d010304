r"""Named exceptions; each message says what was wrong and how to fix it.

Errors that a retry cannot fix (a missing tab, a bad argument) derive from
:class:`AirflowFailException`, so Airflow fails the task without burning its retries.

Lower layers state the fact; the caller that knows what a retry or a fix means for it adds that
in its own words (:func:`with_fix`). The pure layer's own exceptions (:class:`RowMappingError`,
``PlanError``, ``PositionFormatError``, ``TimestampError``) are plain ``ValueError``\ s that the
callers turn into these.
"""

from __future__ import annotations

import json
from typing import TypeVar

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_sheets.model.mapping import RowMappingError

__all__ = [
    "DriftError",
    "HeaderError",
    "KafkaConfigError",
    "KafkaPublishError",
    "ProducerFencedError",
    "RowMappingError",
    "SchemaRegistryAccessError",
    "SchemaRegistryRefusal",
    "SheetNotFoundError",
    "SheetsAccessError",
    "SheetsConfigError",
    "SheetsQuotaError",
    "SheetsToKafkaError",
    "WatermarkConflictError",
    "WatermarkError",
    "WatermarkWriteError",
    "with_fix",
]


class SheetsToKafkaError(AirflowException):
    """Base class of every error raised by this provider."""


class SheetsConfigError(AirflowFailException, SheetsToKafkaError):
    """A setting or the sheet's shape is wrong; retrying will not help until it is fixed."""


class SheetNotFoundError(SheetsConfigError):
    """The spreadsheet or the tab does not exist, or is not shared with the account."""


class HeaderError(SheetsConfigError):
    """The header row is missing, blank or unusable."""


class DriftError(SheetsConfigError):
    """The tab changed above the watermark (rows inserted, deleted or edited, or the header changed)."""


class SheetsAccessError(SheetsToKafkaError):
    """A Sheets API request failed after the client's retries."""

    status: int | None = None

    @classmethod
    def from_http_error(cls, err, what: str, spreadsheet_id: str, account: str | None = None) -> SheetsToKafkaError:
        """Translate a googleapiclient ``HttpError`` into an error that names the fix."""
        status = int(getattr(getattr(err, "resp", None), "status", 0) or 0)
        reason = _google_reason(err)
        who = f"the account {account}" if account else "the connection's account"
        if status == 404:
            exc: SheetsToKafkaError = SheetNotFoundError(
                f"spreadsheet {spreadsheet_id!r} was not found (HTTP 404 while trying to {what}). "
                f"Check the id (the part of the sheet's URL between /d/ and /edit) and share the sheet "
                f"with {who}."
            )
        elif status == 403:
            exc = SheetNotFoundError(
                f"permission denied on spreadsheet {spreadsheet_id!r} (HTTP 403 while trying to {what}: "
                f"{reason}). Share the sheet with {who} (Viewer is enough) and make sure the Google "
                f"Sheets API is enabled in its project."
            )
        elif status == 429:
            exc = SheetsQuotaError(
                f"Google Sheets quota exhausted for spreadsheet {spreadsheet_id!r} (HTTP 429 while trying "
                f"to {what}, after the connection's num_retries): {reason}. Poll less often or raise "
                f"num_retries on the connection."
            )
        elif status == 400:
            exc = SheetsConfigError(
                f"the Sheets API rejected a request while trying to {what} on spreadsheet {spreadsheet_id!r}: {reason}"
            )
        else:
            exc = cls(
                f"Sheets API error HTTP {status or '?'} while trying to {what} on spreadsheet "
                f"{spreadsheet_id!r}: {reason}. This is usually transient; the task can be retried."
            )
        exc.status = status  # type: ignore[attr-defined]
        return exc


class SheetsQuotaError(SheetsAccessError):
    """Google answered 429 ``RESOURCE_EXHAUSTED`` even after retries, or the fleet's shared quota could not be taken."""


class KafkaPublishError(SheetsToKafkaError):
    """Records could not be delivered (those not acknowledged were purged)."""


class ProducerFencedError(KafkaPublishError):
    """A newer attempt with the same ``transactional.id`` started; this attempt's transaction is void."""


class KafkaConfigError(SheetsConfigError):
    """The Kafka connection or topic is unusable as configured."""


class SchemaRegistryAccessError(SheetsToKafkaError):
    """The Schema Registry could not be reached or answered an error other than a refusal."""


class SchemaRegistryRefusal(SheetsConfigError):
    """The Schema Registry refused the tab's schema (its compatibility check): nothing was published."""


class WatermarkError(SheetsConfigError):
    """The watermark Variable holds something that cannot be used."""


class WatermarkWriteError(SheetsToKafkaError):
    """The watermark Variable could not be written or did not read back as written."""


class WatermarkConflictError(SheetsToKafkaError):
    """Another run holds the lease on this watermark."""


E = TypeVar("E", bound=BaseException)


def with_fix(err: E, fix: str) -> E:
    """The same error (class and attributes) with what the caller knows appended to its message."""
    amended = type(err)(f"{err} {fix}")
    amended.__dict__.update(err.__dict__)
    return amended


def _google_reason(err) -> str:
    content = getattr(err, "content", b"") or b""
    try:
        body = json.loads(content.decode("utf-8", "replace"))
        error = body.get("error", {})
        if isinstance(error, dict):
            return str(error.get("message") or error.get("status") or "no detail")
        return str(error)
    except (ValueError, AttributeError):
        return getattr(err, "reason", None) or "no detail"
