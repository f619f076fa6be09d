"""What a rep reads before calling: reasons in words, owners by name, the lead's local time.

Pure functions over small frames (one page of a queue or a review), shared by the auditors' view
and the weekly review. Score reasons are rendered from their structure (a list of objects with a
factor or feature name and points or a contribution; any other keys are shown as they are), so a
model that adds fields to its reasons still reads.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pandas as pd

# ---------------------------------------------------------------------------------------------- reasons
_NAME_KEYS = ("factor", "feature", "name", "signal")
_POINT_KEYS = ("points", "contribution", "weight")


def reason_items(text) -> list[dict]:
    """The score reasons as a list of objects (the structured JSON twin); [] when missing or unreadable."""
    if text is None or (isinstance(text, float) and pd.isna(text)):
        return []
    if isinstance(text, list):
        return [r for r in text if isinstance(r, dict)]
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return []
    if isinstance(data, dict):
        data = [{"factor": k, "points": v} for k, v in data.items()]
    return [r for r in data if isinstance(r, dict)] if isinstance(data, list) else []


def _number(v) -> str:
    return f"{v:+g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def reason_phrase(item: dict) -> str:
    """One reason in words: "pricing page view +12" (name humanised, points signed, extras in brackets)."""
    name = next((str(item[k]) for k in _NAME_KEYS if k in item), None)
    points = next((item[k] for k in _POINT_KEYS if k in item), None)
    extras = [f"{k.replace('_', ' ')} {v}" for k, v in item.items()
              if k not in _NAME_KEYS + _POINT_KEYS and v not in (None, "", [], {})]
    text = (name or "reason").replace("_", " ").replace(":", ": ")
    if points is not None:
        text += " " + _number(points)
    return text + (f" ({', '.join(extras)})" if extras else "")


def reasons_in_words(text, n: int = 3) -> str:
    """The top n score reasons as one line: "demo request +25, lead source +20, recency +10"."""
    return ", ".join(reason_phrase(r) for r in reason_items(text)[:n])


def evidence_in_words(text) -> str:
    """A flag's evidence object as "key: value; ..." (nested values as compact JSON)."""
    try:
        data = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return str(text)
    if not isinstance(data, dict):
        return "" if data is None else str(data)
    parts = []
    for k, v in data.items():
        if v is None or v == []:
            continue
        v = ", ".join(map(str, v)) if isinstance(v, list) else v
        parts.append(f"{k.replace('_', ' ')}: {v}")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------- touches
def _ago(days: float) -> str:
    if days < 1:
        return f"{max(int(days * 24), 1)} h ago"
    d = int(days)
    return "yesterday" if d == 1 else f"{d} days ago"


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def touch_story(touches: pd.DataFrame, now: pd.Timestamp) -> dict[str, str]:
    """Per golden_id, what the lead did lately, in words: "requested a demo 2 days ago; 3 pricing
    views this week; last rep contact 5 days ago". `touches`: golden_id, touch_type, occurred_at
    (only the leads to describe; older than 90 days is ignored)."""
    if touches is None or touches.empty:
        return {}
    now = pd.Timestamp(now)
    t = touches.assign(at=pd.to_datetime(touches["occurred_at"], utc=True))
    t = t[(t["at"] <= now) & (t["at"] > now - pd.Timedelta(days=90))]
    t = t.assign(days=(now - t["at"]) / pd.Timedelta(days=1))
    out = {}
    for gid, g in t.groupby(t["golden_id"].astype("string"), sort=False):
        kinds = g.groupby("touch_type")["days"]
        latest, week = kinds.min().to_dict(), g[g["days"] < 7]["touch_type"].value_counts().to_dict()
        month = g[g["days"] < 30]["touch_type"].value_counts().to_dict()
        parts = []
        for kind, verb in (("demo_request", "requested a demo"), ("meeting", "met a rep"),
                           ("form_fill", "filled in a form"), ("event_attended", "attended an event")):
            if kind in latest:
                parts.append(f"{verb} {_ago(latest[kind])}")
        for kind, noun, plural in (("pricing_page_view", "pricing view", None), ("page_view", "page view", None),
                                   ("email_click", "email click", None)):
            if week.get(kind):
                parts.append(f"{_plural(week[kind], noun, plural)} this week")
            elif month.get(kind):
                parts.append(f"{_plural(month[kind], noun, plural)} in 30 days")
        rep = [latest[k] for k in ("call", "rep_email", "meeting") if k in latest]
        parts.append(f"last rep contact {_ago(min(rep))}" if rep else "no rep contact in 90 days")
        for kind, words in (("email_bounce", "email bounced"), ("unsubscribe", "unsubscribed")):
            if kind in latest:
                parts.append(f"{words} {_ago(latest[kind])}")
        out[str(gid)] = "; ".join(parts)
    return out


# ---------------------------------------------------------------------------------------------- owners
def owner_labels(owner_ids: pd.Series, owners: pd.DataFrame) -> pd.Series:
    """Each owner as a person reads it: the rep's name, "Gone Rep (left 2026-06-01)" for a rep who left,
    "O9 (not in the owners table)" for an id nobody knows, "(no owner)" for none."""
    ids = owner_ids.astype("string")
    o = owners.drop_duplicates("owner_id").set_index(owners.drop_duplicates("owner_id")["owner_id"].astype("string"))
    name = ids.map(o["name"].astype("string")) if "name" in o else pd.Series(pd.NA, index=ids.index, dtype="string")
    name = name.astype("string").fillna(ids)
    active = o["active"].astype("boolean") if "active" in o else pd.Series(True, index=o.index, dtype="boolean")
    left = pd.to_datetime(o["deactivated_at"], utc=True) if "deactivated_at" in o else pd.Series(pd.NaT, index=o.index)
    gone = (~active.fillna(True)) | left.notna()
    left_text = left.dt.strftime(" (left %Y-%m-%d)").fillna(" (inactive)")
    suffix = ids.map(left_text.where(gone, "")).astype("string")
    label = (name + suffix.fillna(" (not in the owners table)")).astype("string")
    return label.mask(ids.isna(), "(no owner)")


# ---------------------------------------------------------------------------------------------- time zones
@lru_cache(maxsize=1)
def _zones_by_country() -> dict[str, list[str]]:
    import tzdata

    out: dict[str, list[str]] = {}
    text = (Path(tzdata.__file__).parent / "zoneinfo" / "zone.tab").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            cc, _, zone = line.split("\t")[:3]
            out.setdefault(cc, []).append(zone)
    return out


US_STATE_ZONES = {
    **dict.fromkeys("CT DE FL GA IN KY ME MD MA MI NH NJ NY NC OH PA RI SC VT VA WV DC".split(), "America/New_York"),
    **dict.fromkeys("AL AR IL IA KS LA MN MS MO NE ND OK SD TN TX WI".split(), "America/Chicago"),
    **dict.fromkeys("CO ID MT NM UT WY".split(), "America/Denver"), "AZ": "America/Phoenix",
    **dict.fromkeys("CA NV OR WA".split(), "America/Los_Angeles"), "AK": "America/Anchorage",
    "HI": "Pacific/Honolulu",
}


# Where a country spans several zones and nothing narrower is known: where most of its people live.
MAIN_ZONE = {"US": "America/New_York", "CA": "America/Toronto", "MX": "America/Mexico_City", "BR": "America/Sao_Paulo",
             "AR": "America/Argentina/Buenos_Aires", "CL": "America/Santiago", "AU": "Australia/Sydney",
             "NZ": "Pacific/Auckland", "DE": "Europe/Berlin", "ES": "Europe/Madrid", "PT": "Europe/Lisbon",
             "RU": "Europe/Moscow", "CN": "Asia/Shanghai", "ID": "Asia/Jakarta", "KZ": "Asia/Almaty",
             "UA": "Europe/Kyiv", "MY": "Asia/Kuala_Lumpur", "CD": "Africa/Kinshasa", "EC": "America/Guayaquil"}


def lead_timezone(phone_e164, country_code, state=None) -> tuple[str | None, str]:
    """(IANA zone, how it was found): the phone number's zone when it names one, else the US state's,
    else the country's when it has one zone, else the country's main zone ("country, approx.")."""
    import phonenumbers
    from phonenumbers import timezone as phone_tz

    if isinstance(phone_e164, str) and phone_e164:
        try:
            zones = [z for z in phone_tz.time_zones_for_number(phonenumbers.parse(phone_e164)) if z != "Etc/Unknown"]
        except phonenumbers.NumberParseException:
            zones = []
        if len(zones) == 1:
            return zones[0], "phone"
    cc = country_code.upper() if isinstance(country_code, str) else None
    if cc == "US" and isinstance(state, str) and state.strip().upper() in US_STATE_ZONES:
        return US_STATE_ZONES[state.strip().upper()], "state"
    zones = _zones_by_country().get(cc or "", [])
    if len(zones) == 1:
        return zones[0], "country"
    if zones:
        return MAIN_ZONE.get(cc, zones[0]), "country, approx."
    return None, "unknown"


def local_time(zone: str | None, now: pd.Timestamp) -> str | None:
    """The wall-clock time in the zone: "Tue 09:14 (UTC-08:00)"."""
    if not zone:
        return None
    t = pd.Timestamp(now).tz_convert(zone)
    offset = t.strftime("%z")
    return f"{t.strftime('%a %H:%M')} (UTC{offset[:3]}:{offset[3:]})"
