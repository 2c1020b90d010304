"""
Adapters: the only modules that talk to Kafka (:mod:`.kafka_config`, :mod:`.publisher`,
:mod:`.state_topic`) and to Airflow Variables (:mod:`.variable_store`, :mod:`.lease`). The Sheets
API's adapter is the public :mod:`airflow_provider_sheets.hooks.sheets`.
"""
