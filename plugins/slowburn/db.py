"""One place that turns a database URL into a SQLAlchemy engine.

SQLAlchemy 2.1 maps a bare ``postgresql://`` URL to the psycopg (3) driver, but slowburn ships
psycopg2 (``psycopg2-binary``); a bare URL therefore gets the psycopg2 driver here. URLs that name
a driver (``postgresql+psycopg://``, ``sqlite:///...``) are passed through unchanged.
"""
from __future__ import annotations

import weakref

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

__all__ = ["create_engine", "dispose_engines", "resolve_url"]

_DEFAULT_DRIVERS = {"postgresql": "postgresql+psycopg2"}


def resolve_url(url: str | URL) -> URL:
    """The URL with the project's default driver filled in for a bare backend name."""
    parsed = make_url(url)
    driver = _DEFAULT_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


_engines: weakref.WeakSet = weakref.WeakSet()


def create_engine(url: str | URL, **kw) -> sa.Engine:
    """sqlalchemy.create_engine, with a bare ``postgresql://`` URL mapped to psycopg2."""
    engine = sa.create_engine(resolve_url(url), **kw)
    _engines.add(engine)
    return engine


def dispose_engines() -> None:
    """Close every pooled connection this process opened (SQLite then checkpoints and removes its
    write-ahead log, as a normal interpreter exit would)."""
    for engine in list(_engines):
        engine.dispose()
