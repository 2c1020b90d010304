"""
The pure layer: A1 ranges, field names and records, provenance headers, positions, run plans,
timestamps, checks and the reference publish loop. Nothing here imports Airflow, confluent_kafka or
the Google client, and nothing does I/O: every rule is tested with tables (``tests/unit/model``).
"""
