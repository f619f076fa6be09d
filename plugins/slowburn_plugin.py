"""The slowburn AirflowPlugin. Kept light: Airflow imports every plugin file in every process."""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class SlowburnPlugin(AirflowPlugin):
    name = "slowburn"
    macros = []
