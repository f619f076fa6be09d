"""Prism's generated answers always carry a next-page cursor or a large total, and with a fixed seed the same
cursor every time, so a listing would never end. drain() and Bounded end a listing after a few items, or
where the client refuses a cursor that did not advance (HubSpot's CURSOR_STUCK, raised after the repeated
cursor was sent, and so checked against the spec). Requests and parsing stay the client's own."""
from __future__ import annotations

from itertools import islice

from slowburn.sources.http import ConnectorError


def drain(iterator, items: int = 3) -> list:
    out = []
    try:
        for item in islice(iterator, items):
            out.append(item)
    except ConnectorError as exc:
        if exc.code != "CURSOR_STUCK":
            raise
    return out


class Bounded:
    """The client, with each `iter_*` listing drained to a few items."""

    def __init__(self, client, items: int = 3):
        self._client, self._items = client, items

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name.startswith("iter_") and callable(attr):
            return lambda *args, **kwargs: iter(drain(attr(*args, **kwargs), self._items))
        return attr
