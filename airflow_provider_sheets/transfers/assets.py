"""
The operator's default outlet: the topic as an Asset in the apache-kafka provider's scheme,
``kafka://<first bootstrap server>/<topic>``, reached through an :class:`AssetAlias` so that a run
that published nothing (or a dry run) emits no asset event and wakes no downstream DAG.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.apache.kafka.assets.kafka import create_asset
from airflow.sdk import Asset, AssetAlias

from airflow_provider_sheets.adapters.kafka_config import client_config
from airflow_provider_sheets.pipeline.summary import Summary
from airflow_provider_sheets.settings import BatchSettings


def default_alias(dag_id: str | None, task_id: str) -> AssetAlias:
    """The alias a ``SheetToKafkaOperator`` without ``outlets`` emits its topic's events through."""
    return AssetAlias(f"sheets-to-kafka/{dag_id or 'no-dag'}/{task_id}")


def first_bootstrap_server(settings: BatchSettings) -> str:
    """The first bootstrap server of the ``kafka`` connection: how the kafka provider and OpenLineage name a cluster."""
    servers = str(client_config(settings.kafka_config_id, settings.producer_config).get("bootstrap.servers", ""))
    return servers.split(",")[0].strip()


def topic_asset(settings: BatchSettings) -> Asset:
    """The topic as the kafka provider names it: ``kafka://<first bootstrap server>/<topic>``."""
    return create_asset(server=first_bootstrap_server(settings), topic=settings.topic)


def event_extra(summary: Summary, value_format: str) -> dict[str, Any]:
    """What a downstream DAG learns from the event: where the rows came from and which were published."""
    xcom = summary.as_xcom()
    extra = {name: xcom[name] for name in ("spreadsheet_id", "sheet_id", "sheet_name", "first_row", "last_row")}
    extra.update(
        rows_published=summary.rows_published,
        rows_deleted=summary.rows_deleted,
        watermark_after=summary.watermark_after,
        value_format=value_format,
        run_type=summary.run_type,
        mode=summary.mode,
        backfill=summary.run_type == "backfill",
    )
    if summary.interval is not None:
        extra.update(interval_start=xcom["interval_start"], interval_end=xcom["interval_end"])
    return extra


def known_asset(alias: AssetAlias, uri: str) -> bool:
    """
    Whether the metadata DB holds the asset as one the alias resolves to (an earlier event through
    the alias created it), as the task's supervisor answers; ``False`` when it cannot say (no
    supervisor: not in a task; an Airflow whose Task SDK has no such request).
    """
    try:
        from airflow.sdk.execution_time.comms import AssetsByAliasResult, GetAssetsByAlias
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        found = SUPERVISOR_COMMS.send(GetAssetsByAlias(alias_name=alias.name))
    except Exception:  # noqa: BLE001 - no supervisor to ask, or nothing to ask it with
        return False
    return isinstance(found, AssetsByAliasResult) and any(asset.uri == uri for asset in found.assets)


def emit(context: Any, alias: AssetAlias, settings: BatchSettings, summary: Summary) -> str | None:
    """
    One asset event for the topic through ``alias`` when the run published rows; what the task log
    says of it (``None``: nothing was published, no event).

    A backfill's run emits one only once the alias resolves to the topic's asset in the metadata DB
    (a live run's event through it created the asset): backfill runs run side by side, and the
    Airflow API server, creating an asset from two runs' alias events at once, hits its unique
    index on PostgreSQL and fails the task.
    """
    if summary.dry_run or summary.rows_published == 0:
        return None
    asset = topic_asset(settings)
    if summary.run_type == "backfill" and not known_asset(alias, asset.uri):
        return (
            f"No asset event for {asset.uri} from this backfill run: the asset is not in the metadata DB yet, "
            f"and backfill runs creating it side by side would fail. A live run's event creates it; the "
            f"backfill runs after that emit theirs."
        )
    context["outlet_events"][alias].add(asset, extra=event_extra(summary, settings.value_format))
    return f"Asset event for {asset.uri} through alias {alias.name!r}."
