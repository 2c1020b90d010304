"""Apache Airflow provider: Google Sheets (Forms responses) to Kafka, in batches, with a watermark."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Provider metadata read by Airflow's ``ProvidersManager`` (``airflow providers list``)."""
    return {
        "package-name": "airflow-provider-sheets",
        "name": "Google Sheets to Kafka",
        "description": "Publish Google Sheets rows (e.g. Google Forms responses) to Kafka in batches, "
        "with a row watermark in an Airflow Variable.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Google Sheets to Kafka",
                "external-doc-url": "https://developers.google.com/sheets/api",
                "tags": ["google", "kafka"],
            }
        ],
        "operators": [
            {
                "integration-name": "Google Sheets to Kafka",
                "python-modules": ["airflow_provider_sheets.transfers.sheet_to_kafka"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Google Sheets to Kafka",
                "python-modules": ["airflow_provider_sheets.sensors.sheet_rows"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Google Sheets to Kafka",
                "python-modules": ["airflow_provider_sheets.triggers.sheet_rows"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Google Sheets to Kafka",
                "python-modules": ["airflow_provider_sheets.hooks.sheets", "airflow_provider_sheets.hooks.registry"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "schema_registry",
                "hook-class-name": "airflow_provider_sheets.hooks.registry.SchemaRegistryHook",
            }
        ],
        "extra-links": [
            "airflow_provider_sheets.transfers.links.GoogleSheetLink",
            "airflow_provider_sheets.transfers.links.TopicLink",
        ],
        "config": {
            "sheets_to_kafka": {
                "description": "Settings of the Google Sheets to Kafka provider.",
                "options": {
                    "kafka_ui_topic_url": {
                        "description": "The URL of a topic's page in your Kafka UI, with {topic} where the topic's "
                        "name goes; the operator's and the sensor's Topic link. Empty: no Topic link.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "http://kafka-ui:8080/ui/clusters/local/all-topics/{topic}",
                        "default": "",
                    },
                    "quota_redis_url": {
                        "description": "A Redis URL (e.g. the Celery broker's Redis, another database number) "
                        "where every task of every worker counts its Sheets read requests in one sliding window "
                        "per Google principal, so that a fleet keeps to sheets_quota_per_minute together. Empty: "
                        "each task process paces its own requests. The redis package must be installed "
                        "(airflow-provider-sheets[fleet]).",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "redis://redis:6379/1",
                        "default": "",
                        "sensitive": True,
                    },
                },
            }
        },
        "transfers": [
            {
                "source-integration-name": "Google Sheets to Kafka",
                "target-integration-name": "Google Sheets to Kafka",
                "python-module": "airflow_provider_sheets.transfers.sheet_to_kafka",
            }
        ],
    }
