"""The slowburn AirflowPlugin for a plugins-folder install (`make demo`, docker-compose's ./plugins mount).

The plugin itself lives in slowburn.airflow.plugin. When an installed slowburn distribution already
registers it through its `airflow.plugins` entry point (pip install slowburn, the Docker image, an
editable install), this file defines no plugin: Airflow would otherwise load it twice and report
"Plugin 'slowburn' already registered" as an import error.
"""
from __future__ import annotations

from importlib.metadata import entry_points

PLUGIN_ENTRY_POINT = "slowburn.airflow.plugin:SlowburnPlugin"


def registered_by_entry_point() -> bool:
    return any(ep.value.replace(" ", "") == PLUGIN_ENTRY_POINT for ep in entry_points(group="airflow.plugins"))


if not registered_by_entry_point():
    from slowburn.airflow.plugin import SlowburnPlugin, auditors_app  # noqa: F401  (found by Airflow's loader)
