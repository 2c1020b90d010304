"""
OpenLineage for the operator (the openlineage provider is optional): the tab as the input dataset,
the topic as the output, each with a schema facet from the header, and the rows published.

Naming: the Google Sheet is namespace ``gsheets://<spreadsheet id>``, name the tab's title (what a
person sees; the tab's gid is in the dataset's documentation facet with the sheet's URL); the topic
follows OpenLineage's Kafka naming, namespace ``kafka://<first bootstrap server>``, name the topic.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_sheets.model.typed import BOOLEAN, NUMBERS, TEMPORAL
from airflow_provider_sheets.pipeline.summary import Summary
from airflow_provider_sheets.settings import BatchSettings
from airflow_provider_sheets.transfers.assets import first_bootstrap_server
from airflow_provider_sheets.transfers.links import sheet_url


def _field_type(kind: str | None) -> str:
    if kind in TEMPORAL:
        return str(kind).lower()
    return "number" if kind in NUMBERS else "boolean" if kind == BOOLEAN else "string"


def operator_lineage(settings: BatchSettings, summary: Summary | None) -> Any:
    """The ``OperatorLineage`` of a run (``summary``: ``None`` when it failed)."""
    from airflow.providers.common.compat.openlineage.facet import (
        DocumentationDatasetFacet,
        OutputStatisticsOutputDatasetFacet,
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset

    facets: dict[str, Any] = {}
    sheet_facets: dict[str, Any] = {}
    output_facets: dict[str, Any] = {}
    tab = settings.sheet_name or ""
    if summary is not None:
        kinds = summary.column_types
        fields = [
            SchemaDatasetFacetFields(name=name, type=_field_type(kinds[i] if i < len(kinds) else None))
            for i, name in enumerate(summary.fields)
        ]
        facets["schema"] = SchemaDatasetFacet(fields=fields)
        tab = summary.sheet_name
        url = sheet_url(summary.spreadsheet_id, summary.sheet_id)
        sheet_facets["documentation"] = DocumentationDatasetFacet(description=f"Google Sheet tab {tab!r}: {url}")
        output_facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(rowCount=summary.rows_published)
    sheet = InputDataset(namespace=f"gsheets://{settings.spreadsheet_id}", name=tab, facets={**facets, **sheet_facets})
    topic = OutputDataset(
        namespace=f"kafka://{first_bootstrap_server(settings)}",
        name=settings.topic,
        facets=dict(facets),
        outputFacets=output_facets,
    )
    return OperatorLineage(inputs=[sheet], outputs=[topic])
