"""The slowburn AirflowPlugin. Kept light: Airflow imports every plugin in every process.

Registered once, by whichever way slowburn is installed: the `airflow.plugins` entry point of the
installed distribution (pyproject.toml), or else plugins/slowburn_plugin.py in the plugins folder.

It mounts the auditors' view (slowburn.airflow.webapp) at /slowburn inside the Airflow API server
and adds a nav link to it. The FastAPI app is built on the first request, so importing this file
does not import pandas, GX or Airflow's API security module.
"""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/slowburn"


class LazyAuditorsApp:
    """An ASGI app that builds slowburn.airflow.webapp.create_app() on its first request."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self._app = None

    @property
    def app(self):
        if self._app is None:
            from slowburn.airflow.webapp import create_app
            self._app = create_app(**self.kwargs)
        return self._app

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


auditors_app = LazyAuditorsApp()


class SlowburnPlugin(AirflowPlugin):
    name = "slowburn"
    macros = []
    fastapi_apps = [{"app": auditors_app, "url_prefix": URL_PREFIX, "name": "slowburn auditors' view"}]
    external_views = [{
        "name": "Lead hygiene audit",
        "href": f"{URL_PREFIX}/",
        "destination": "nav",
        "category": "browse",
        "url_route": "slowburn-audit",
    }]
