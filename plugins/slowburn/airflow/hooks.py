"""Hooks: turn Airflow Connections into the plain clients and URLs the core uses."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from airflow.sdk import BaseHook

log = logging.getLogger(__name__)

_DRIVERS = {"postgres": "postgresql+psycopg2", "postgresql": "postgresql+psycopg2", "sqlite": "sqlite",
            "mysql": "mysql+pymysql"}
WAREHOUSE_CONN_TYPE = "slowburn_warehouse"


class SlowburnWarehouseHook(BaseHook):
    """The warehouse as a SQLAlchemy URL, from the `slowburn_warehouse` Connection.

    The Connection's extra may carry `sqlalchemy_url`; otherwise the URL is built from its type,
    host, login, password, port and schema. Its type is `slowburn_warehouse` (the form of the
    provider, extra `dialect` picks postgresql or sqlite) or, as before, `postgres`, `sqlite` or
    any type whose extra has `sqlalchemy_url`. Without the Connection, the embedded default is a
    SQLite file under SLOWBURN_HOME, so a laptop run needs no set-up.
    """

    conn_name_attr = "slowburn_conn_id"
    default_conn_name = "slowburn_warehouse"
    conn_type = WAREHOUSE_CONN_TYPE
    hook_name = "slowburn warehouse"

    def __init__(self, slowburn_conn_id: str = default_conn_name):
        super().__init__()
        self.slowburn_conn_id = slowburn_conn_id

    def sqlalchemy_url(self) -> str:
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            conn = self.get_connection(self.slowburn_conn_id)
        except AirflowNotFoundException:
            from slowburn.pipeline import default_warehouse_url
            url = default_warehouse_url(Path(os.environ.get("SLOWBURN_HOME", ".slowburn")))
            log.info("connection %s not defined; using the embedded SQLite warehouse", self.slowburn_conn_id)
            return url
        return connection_url(conn.conn_type, conn.host, conn.login, conn.password, conn.port, conn.schema,
                              conn.extra)


def connection_url(conn_type, host, login, password, port, schema, extra) -> str:
    """Build a SQLAlchemy URL from Connection fields (kept separate so it is testable without Airflow)."""
    import sqlalchemy as sa

    extras = json.loads(extra) if isinstance(extra, str) and extra else (extra or {})
    if extras.get("sqlalchemy_url"):
        return extras["sqlalchemy_url"]
    conn_type = (conn_type or "").lower()
    if conn_type == WAREHOUSE_CONN_TYPE:
        dialect = extras.get("dialect") or "postgresql"
        driver = _DRIVERS.get(str(dialect).lower())
        if driver is None:
            raise ValueError(f"{WAREHOUSE_CONN_TYPE} connection: extra dialect {dialect!r} is not supported; "
                             "use postgresql or sqlite, or put a full URL in the extra as sqlalchemy_url")
    else:
        driver = _DRIVERS.get(conn_type)
    if driver is None:
        raise ValueError(f"connection type {conn_type!r} is not a supported warehouse; use {WAREHOUSE_CONN_TYPE}, "
                         "postgres or sqlite, or put a full URL in the connection's extra as sqlalchemy_url")
    if driver == "sqlite":
        return f"sqlite:///{host}"
    return sa.URL.create(driver, username=login, password=password, host=host, port=port,
                         database=schema).render_as_string(hide_password=False)


def artifacts_location(url: str | None = None, conn_id: str | None = None):
    """Where the run folders and models live, for RunContext(artifacts=...); None means SLOWBURN_HOME.

    `url` defaults to $SLOWBURN_ARTIFACTS and `conn_id` to $SLOWBURN_ARTIFACTS_CONN_ID. With a connection
    the location is Airflow's ObjectStoragePath(url, conn_id=...): Airflow builds the fsspec filesystem
    from the Connection through the provider of the URL's scheme (s3: apache-airflow-providers-amazon[s3fs],
    an `aws` Connection whose extra may set endpoint_url), so no credentials pass through slowburn.
    Without one, the URL is opened as the CLI opens it (fsspec options in $SLOWBURN_ARTIFACTS_OPTIONS).
    """
    from slowburn import storage

    url = url or os.environ.get("SLOWBURN_ARTIFACTS")
    conn_id = conn_id or os.environ.get("SLOWBURN_ARTIFACTS_CONN_ID")
    if not url:
        return None
    if conn_id:
        from airflow.sdk import ObjectStoragePath
        return storage.location(ObjectStoragePath(url, conn_id=conn_id))
    return storage.location(url, storage.options_from_env())
