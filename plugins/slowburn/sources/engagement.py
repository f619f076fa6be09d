"""Engagement from the marketing tools, as touches: Mailchimp campaign email activity and HubSpot email events.

Two source kinds (sources file, entity touches), both incremental on the time of the activity and deduped on
a stable ``touch_key`` (a hash of vendor, lead, touch type, time and, for clicks, the URL), so a re-read
overlap or a re-run never lands the same touch twice:

* ``mailchimp_activity``: for each campaign sent (to `list_id` when given; on incremental runs, those sent in
  the CAMPAIGN_LOOKBACK before the watermark) ``GET /reports/{campaign_id}/email-activity?since=<watermark -
  overlap>`` gives each member's opens, clicks and bounces, and ``GET /reports/{campaign_id}/unsubscribed``
  the unsubscribes (kept from the watermark on). ``lead_source_id`` is the member id (the MD5 of the
  lowercased email), the `id` a `kind: mailchimp` leads source maps to ``source_id``.
* ``hubspot_email_events``: the specs cover HubSpot's CRM objects, not its marketing-email events API, so the
  events are read where the CRM keeps them: contacts modified since the watermark are found by search on
  ``lastmodifieddate``, then read with ``propertiesWithHistory`` of HubSpot's marketing-email properties.
  Each value ``hs_email_last_open_date`` / ``hs_email_last_click_date`` took is an open / click at that
  time; each rise of the bounce count ``hs_email_bounce`` is a bounce, and each change of ``hs_email_optout``
  to true an unsubscribe, at the time of the change. ``lead_source_id`` is the contact id.

Rows whose time or action cannot be read are landed as they are (validation quarantines them with a
reason), never dropped. Both frames carry the touches contract's columns under their own names, so a source
needs no `columns:` mapping (config defaults it).
"""
from __future__ import annotations

import hashlib
import logging

import pandas as pd

from slowburn.sources.config import ENGAGEMENT_COLUMNS

log = logging.getLogger(__name__)

COLUMNS = ["touch_key", *ENGAGEMENT_COLUMNS, "email", "url"]
CAMPAIGN_LOOKBACK = pd.Timedelta(days=30)
MAILCHIMP_ACTIONS = {"open": "email_open", "click": "email_click", "bounce": "email_bounce"}
HUBSPOT_HISTORY = {"hs_email_last_open_date": "email_open", "hs_email_last_click_date": "email_click",
                   "hs_email_bounce": "email_bounce", "hs_email_optout": "unsubscribe"}


def touch_key(*parts) -> str:
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _utc(value) -> pd.Timestamp | None:
    """A vendor time (ISO 8601 or epoch milliseconds) as UTC; None when it cannot be read."""
    if value in (None, ""):
        return None
    try:
        text = str(value)
        stamp = pd.Timestamp(int(text), unit="ms") if text.isdigit() else pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        return None
    if pd.isna(stamp):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _text_time(value) -> str | None:
    stamp = _utc(value)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if stamp is not None else (
        None if value in (None, "") else str(value))


def _frame(rows: list[dict], what: str) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=COLUMNS)
    before = len(frame)
    frame = frame.drop_duplicates("touch_key").reset_index(drop=True)
    log.info("%s: %d touches (%d repeats of the same touch dropped)", what, len(frame), before - len(frame))
    return frame.astype("string")


def _start(since, overlap_seconds: float) -> pd.Timestamp | None:
    return None if since is None else pd.Timestamp(since) - pd.Timedelta(seconds=overlap_seconds)


# ---------------------------------------------------------------------------------------------- Mailchimp
def mailchimp_activity(client, list_id: str | None, *, since: pd.Timestamp | None = None,
                       overlap_seconds: float = 300.0, lookback: pd.Timedelta = CAMPAIGN_LOOKBACK) -> pd.DataFrame:
    """Opens, clicks, bounces and unsubscribes of the campaigns' recipients since `since` (minus the overlap)."""
    from slowburn.sources.mailchimp import subscriber_hash

    start = _start(since, overlap_seconds)
    rows: list[dict] = []

    def add(campaign, email_id, email, touch_type, when, url=None):
        occurred = _text_time(when)
        rows.append({"touch_key": touch_key("mailchimp", campaign, email_id, touch_type, occurred, url),
                     "source_system": "mailchimp", "lead_source_id": email_id, "email": email,
                     "touch_type": touch_type, "channel": "email", "campaign": campaign, "occurred_at": occurred,
                     "actor": "marketing", "url": url})

    campaigns = client.iter_sent_campaigns(list_id, since_send_time=None if start is None else start - lookback)
    for campaign in campaigns:
        cid = campaign.get("id")
        if not cid:
            continue
        for member in client.iter_email_activity(cid, since=start):
            email = member.get("email_address")
            email_id = member.get("email_id") or (subscriber_hash(email) if email else None)
            for act in member.get("activity") or []:
                action = act.get("action")
                add(cid, email_id, email, MAILCHIMP_ACTIONS.get(action, action), act.get("timestamp"),
                    act.get("url") if action == "click" else None)
        for unsub in client.iter_unsubscribes(cid):
            when = _utc(unsub.get("timestamp"))
            if start is not None and when is not None and when < start:
                continue  # landed by an earlier run
            email = unsub.get("email_address")
            add(cid, unsub.get("email_id") or (subscriber_hash(email) if email else None), email, "unsubscribe",
                unsub.get("timestamp"))
    return _frame(rows, f"mailchimp email activity (list {list_id or 'all'}, since {start})")


def read_mailchimp_activity_source(cfg, since) -> pd.DataFrame:
    from slowburn.sources.hubspot import _since, rate_limit_options
    from slowburn.sources.mailchimp import MailchimpClient

    client = MailchimpClient.from_connection(cfg.connection or "mailchimp_default", base_url=cfg.url,
                                             **rate_limit_options(cfg))
    try:
        return mailchimp_activity(client, cfg.list_id, since=_since(since), overlap_seconds=cfg.overlap_seconds)
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------- HubSpot
def hubspot_email_events(client, *, since: pd.Timestamp | None = None, overlap_seconds: float = 300.0) -> pd.DataFrame:
    """Marketing-email opens, clicks, bounces and unsubscribes of contacts changed since `since`."""
    start = _start(since, overlap_seconds)
    if start is None:
        ids = [rec["id"] for rec in client.iter_objects("contacts", ["email"]) if rec.get("id") is not None]
    else:
        ids = [rec["id"] for rec in client.iter_modified_since("contacts", ["email"], int(start.value // 1_000_000))
               if rec.get("id") is not None]
    rows: list[dict] = []
    for rec in client.read_with_history("contacts", ids, ["email"], HUBSPOT_HISTORY):
        contact = str(rec.get("id"))
        email = (rec.get("properties") or {}).get("email")
        history = rec.get("propertiesWithHistory") or {}
        for prop, touch_type in HUBSPOT_HISTORY.items():
            for when in _events(prop, history.get(prop) or []):
                stamp = _utc(when)
                if start is not None and stamp is not None and stamp < start:
                    continue  # landed by an earlier run
                occurred = _text_time(when)
                rows.append({"touch_key": touch_key("hubspot", contact, touch_type, occurred),
                             "source_system": "hubspot", "lead_source_id": contact, "email": email,
                             "touch_type": touch_type, "channel": "email", "campaign": None,
                             "occurred_at": occurred, "actor": "marketing", "url": None})
    return _frame(rows, f"hubspot email events ({len(ids)} contacts changed since {start})")


def _events(prop: str, entries: list[dict]) -> list:
    """The times of the events one property's history records (see the module docstring)."""
    ordered = sorted((e for e in entries if isinstance(e, dict)),
                     key=lambda e: (_utc(e.get("timestamp")) or pd.Timestamp.min.tz_localize("UTC")))
    if prop in ("hs_email_last_open_date", "hs_email_last_click_date"):
        return list(dict.fromkeys(e.get("value") for e in ordered if e.get("value") not in (None, "")))
    times, previous = [], None
    for e in ordered:
        value = e.get("value")
        if prop == "hs_email_optout":
            on = str(value).lower() == "true"
            if on and previous is not True:
                times.append(e.get("timestamp"))
            previous = on
        else:  # hs_email_bounce: a count; each rise is a bounce
            try:
                count = float(value)
            except (TypeError, ValueError):
                continue
            if count > (previous or 0):
                times.append(e.get("timestamp"))
            previous = count
    return times


def read_hubspot_email_events_source(cfg, since) -> pd.DataFrame:
    from slowburn.sources.hubspot import HubSpotClient, _since, rate_limit_options

    client = HubSpotClient.from_connection(cfg.connection or "hubspot_default", base_url=cfg.url,
                                           **rate_limit_options(cfg))
    try:
        return hubspot_email_events(client, since=_since(since), overlap_seconds=cfg.overlap_seconds)
    finally:
        client.close()
