"""Write-back: scores, queues, owners, follow-up and flag tasks to the CRMs; nurture segments to Mailchimp.

Two halves, kept apart so that each is easy to test:

* :func:`plan_writeback` is pure: the warehouse's state frames (golden_leads, sales_queue, nurture_queue,
  lead_scores, lead_flags) and what was last sent per record go in; a list of :class:`Operation` comes out,
  each with the record it targets and a hash of the state it sets.
* :func:`execute` sends the operations whose hash differs from the record's last logged hash, batch by
  batch. Each acknowledged batch is recorded in ``writeback_log`` (one row per record and payload hash,
  ``latest`` marking the record's current state) in one transaction before the next batch goes out, so a
  re-run sends nothing already sent, and a run that dies mid-way resumes where it stopped. A batch that
  was sent but whose answer was lost is sent again: every write is idempotent (updates by id, upserts by
  a key slowburn owns, Mailchimp PUT by subscriber hash, tag states), so a resend never doubles a record.

What goes where (field names are configurable, see :class:`WritebackConfig`):

* every golden lead in a queue -> its Salesforce Lead/Contact (by the Id in ``source_keys``) and its
  HubSpot contact: score, tier, queue (sales/nurture), segment, respond-by, and the owner when the owner
  id has that CRM's shape. A record that leaves the queues gets its queue fields cleared.
* every sales-queue lead -> one follow-up Task per queue entry (due at respond_by), upserted by
  ``Slowburn_Key__c`` / ``slowburn_key`` so that it exists once whatever happens.
* every flag -> one Task per (lead, flag), upserted the same way.
* every nurture lead with an email that has not opted out -> a Mailchimp member (``status_if_new``, never
  ``status``: unsubscribed and bounced members stay so) tagged with its segment; the previous segment's tag
  is removed, and so is the tag of a lead that left nurture. An opted-out lead is never sent, except that
  one slowburn subscribed earlier is unsubscribed.

Dry-run (``execute(..., dry_run=True)``) sends and logs nothing and reports what would be written.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Protocol

import pandas as pd
import sqlalchemy as sa

log = logging.getLogger(__name__)

__all__ = ["WritebackConfig", "Operation", "plan_writeback", "pending", "execute", "WritebackReport",
           "WritebackStore", "WritebackFailed", "load_inputs", "run_writeback", "SalesforceSink", "HubSpotSink",
           "MailchimpSink"]

ORDER = {("mailchimp", "member"): 0, ("mailchimp", "tags"): 1}
SALESFORCE_OWNER = re.compile(r"^005[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$")
HUBSPOT_OWNER = re.compile(r"^\d+$")
LEAD_FIELDS = ("score", "tier", "queue", "segment", "respond_by", "owner")


class WritebackFailed(RuntimeError):
    """Some records could not be written; everything else was written and logged."""


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class WritebackConfig:
    systems: dict = field(default_factory=lambda: {"salesforce": "salesforce", "hubspot": "hubspot"})
    salesforce_fields: dict = field(default_factory=lambda: {
        "score": "Slowburn_Score__c", "tier": "Slowburn_Tier__c", "queue": "Slowburn_Queue__c",
        "segment": "Slowburn_Segment__c", "respond_by": "Slowburn_Respond_By__c", "owner": "OwnerId"})
    salesforce_task_key: str = "Slowburn_Key__c"
    hubspot_properties: dict = field(default_factory=lambda: {
        "score": "slowburn_score", "tier": "slowburn_tier", "queue": "slowburn_queue",
        "segment": "slowburn_segment", "respond_by": "slowburn_respond_by", "owner": "hubspot_owner_id"})
    hubspot_task_key: str = "slowburn_key"
    mailchimp_list_id: str | None = None
    status_if_new: str = "subscribed"
    tag_prefix: str = "slowburn:"
    follow_up_tasks: bool = True
    flag_tasks: bool = True
    flags: tuple | None = None  # which flags become tasks; None: all
    targets: tuple = ("salesforce", "hubspot", "mailchimp")

    @classmethod
    def from_dict(cls, data: dict | None) -> "WritebackConfig":
        data = dict(data or {})
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"write-back config: unknown key(s) {unknown}; allowed: "
                             f"{sorted(cls.__dataclass_fields__)}")
        for key in ("flags", "targets"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        base = cls()
        for key in ("salesforce_fields", "hubspot_properties", "systems"):
            if key in data:
                data[key] = {**getattr(base, key), **data[key]}
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path | None) -> "WritebackConfig":
        if not path:
            return cls()
        import yaml
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
        return cls.from_dict(doc.get("writeback", doc))


# ---------------------------------------------------------------------------------------------- operations
@dataclass(frozen=True)
class Operation:
    """One write: `action` on `record_key` at `target`. `state` is what the record will hold (hashed);
    `payload` is what goes on the wire (it may also undo the previous state, e.g. an old tag)."""
    target: str
    action: str
    record_key: str
    state: dict
    payload: dict
    golden_id: str | None = None
    depends_on: str | None = None  # a record key of the same target that must have been written first
    payload_hash: str = ""

    def __post_init__(self):
        if not self.payload_hash:
            object.__setattr__(self, "payload_hash", state_hash(self.action, self.state))


def state_hash(action: str, state: dict) -> str:
    text = json.dumps({"a": action, "s": state}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def pending(ops: Iterable[Operation], latest: dict) -> list[Operation]:
    """The operations whose state differs from the last one logged for their record."""
    return [op for op in ops if (latest.get((op.target, op.record_key)) or (None, None, None))[1] != op.payload_hash]


# ---------------------------------------------------------------------------------------------- planning
def plan_writeback(golden: pd.DataFrame, sales: pd.DataFrame, nurture: pd.DataFrame, *,
                   scores: pd.DataFrame | None = None, flags: pd.DataFrame | None = None,
                   previous: dict | None = None, config: WritebackConfig | None = None) -> list[Operation]:
    """Frames in, operations out (no I/O). `previous` maps (target, record_key) to
    (action, payload_hash, state) as last logged; it decides tag removals, queue clearing and unsubscribes."""
    cfg = config or WritebackConfig()
    previous = previous or {}
    ops: list[Operation] = []
    gold = golden.drop_duplicates("golden_id").set_index("golden_id", drop=False)
    score_of = _score_lookup(scores)
    records = _crm_records(gold, cfg)  # golden_id -> {"salesforce": [(sobject, id)], "hubspot": [id]}

    queued: dict[str, dict] = {}
    for row in _rows(sales):
        queued[row["golden_id"]] = {"queue": "sales", "row": row}
    for row in _rows(nurture):
        queued.setdefault(row["golden_id"], {"queue": "nurture", "row": row})

    crm_seen: set[tuple[str, str]] = set()
    for gid, entry in queued.items():
        row, queue = entry["row"], entry["queue"]
        score, tier = score_of.get(gid, (row.get("score"), row.get("tier")))
        values = {"score": _int(score), "tier": _text(tier), "queue": queue,
                  "segment": _text(row.get("segment")) if queue == "nurture" else None,
                  "respond_by": _iso(row.get("respond_by")) if queue == "sales" else None,
                  "owner": _text(row.get("owner_id")) if queue == "sales" else None}
        for sobject, rid in records.get(gid, {}).get("salesforce", []):
            state = _salesforce_fields(values, sobject, cfg)
            ops.append(Operation("salesforce", "update", rid, state, {"attributes": {"type": sobject}, "Id": rid,
                                                                       **state}, gid))
            crm_seen.add(("salesforce", rid))
        for cid in records.get(gid, {}).get("hubspot", []):
            state = _hubspot_properties(values, cfg)
            ops.append(Operation("hubspot", "update", cid, state, {"id": cid, "properties": state}, gid))
            crm_seen.add(("hubspot", cid))
        if queue == "sales" and cfg.follow_up_tasks:
            ops.extend(_follow_up_tasks(gid, row, score, records.get(gid, {}), cfg))

    # Records that left the queues: clear their queue fields once.
    for (target, key), (action, _hash, state) in previous.items():
        if action != "update" or (target, key) in crm_seen or not isinstance(state, dict):
            continue
        if target == "salesforce":
            cleared = {f: None for name, f in cfg.salesforce_fields.items() if name in ("queue", "segment",
                                                                                        "respond_by")}
            if any(state.get(f) is not None for f in cleared):
                sobject = _sobject(key) or "Lead"
                ops.append(Operation("salesforce", "update", key, {**state, **cleared},
                                     {"attributes": {"type": sobject}, "Id": key, **cleared}))
        elif target == "hubspot":
            cleared = {p: "" for name, p in cfg.hubspot_properties.items() if name in ("queue", "segment",
                                                                                       "respond_by")}
            if any(state.get(p) not in (None, "") for p in cleared):
                ops.append(Operation("hubspot", "update", key, {**state, **cleared},
                                     {"id": key, "properties": cleared}))

    if cfg.flag_tasks and flags is not None and len(flags):
        for row in _rows(flags):
            if cfg.flags is not None and row.get("flag") not in cfg.flags:
                continue
            ops.extend(_flag_tasks(row, records.get(row["golden_id"], {}), cfg))

    if cfg.mailchimp_list_id:
        ops.extend(_mailchimp_ops(gold, nurture, previous, cfg))
    return [op for op in ops if op.target in cfg.targets]


def _rows(frame: pd.DataFrame | None) -> list[dict]:
    if frame is None or frame.empty:
        return []
    clean = frame.astype(object).where(frame.notna(), None)
    return clean.to_dict("records")


def _score_lookup(scores: pd.DataFrame | None) -> dict:
    if scores is None or scores.empty:
        return {}
    s = scores.drop_duplicates("golden_id", keep="last")
    return dict(zip(s["golden_id"], zip(s["score"], s["tier"])))


def _crm_records(gold: pd.DataFrame, cfg: WritebackConfig) -> dict:
    systems = cfg.systems
    out: dict[str, dict] = {}
    for gid, keys in zip(gold["golden_id"], gold["source_keys"]):
        if not isinstance(keys, str):
            continue
        found: dict[str, list] = {}
        for key in sorted(keys.split("|")):
            system, _, rid = key.partition(":")
            target = systems.get(system)
            if not rid or target is None:
                continue
            if target == "salesforce":
                sobject = _sobject(rid)
                if sobject in ("Lead", "Contact"):
                    found.setdefault("salesforce", []).append((sobject, rid))
            elif target == "hubspot" and rid.isdigit():
                found.setdefault("hubspot", []).append(rid)
        if found:
            out[gid] = found
    return out


def _sobject(rid: str) -> str | None:
    return {"00Q": "Lead", "003": "Contact"}.get(str(rid)[:3])


def _salesforce_fields(values: dict, sobject: str, cfg: WritebackConfig) -> dict:
    f = cfg.salesforce_fields
    out = {f[name]: values[name] for name in ("score", "tier", "queue", "segment", "respond_by") if f.get(name)}
    owner = values.get("owner")
    if f.get("owner") and owner and SALESFORCE_OWNER.match(owner):
        out[f["owner"]] = owner
    return out


def _hubspot_properties(values: dict, cfg: WritebackConfig) -> dict:
    p = cfg.hubspot_properties
    out = {}
    for name in ("score", "tier", "queue", "segment"):
        if p.get(name):
            out[p[name]] = "" if values[name] is None else str(values[name])
    if p.get("respond_by"):
        # HubSpot property values are strings; "" clears one (null is not a valid value).
        out[p["respond_by"]] = _epoch_ms(values["respond_by"]) or ""
    owner = values.get("owner")
    if p.get("owner") and owner and HUBSPOT_OWNER.match(owner):
        out[p["owner"]] = owner
    return out


def _follow_up_tasks(gid: str, row: dict, score, records: dict, cfg: WritebackConfig) -> list[Operation]:
    queued = pd.Timestamp(row.get("queued_at")) if row.get("queued_at") is not None else None
    key = f"slowburn-followup-{gid}-{queued.strftime('%Y%m%dT%H%M') if queued is not None else 'x'}"
    subject = f"Respond to hot lead (score {_int(score)}) by {_iso(row.get('respond_by')) or 'today'}"
    body = f"slowburn: {_reasons_text(row.get('reasons'))}".strip()
    return _tasks(gid, key, subject[:255], body, row.get("respond_by"), row.get("owner_id"), "High", records, cfg)


def _flag_tasks(row: dict, records: dict, cfg: WritebackConfig) -> list[Operation]:
    gid, flag = row["golden_id"], row.get("flag")
    key = f"slowburn-flag-{gid}-{flag}"
    subject = f"[slowburn] {flag}: {row.get('suggested_action') or 'review'}"[:255]
    body = f"{row.get('reason') or ''}\nEvidence: {row.get('evidence') or ''}".strip()
    priority = "High" if row.get("severity") == "high" else "Normal"
    return _tasks(gid, key, subject, body, None, row.get("owner_id"), priority, records, cfg)


def _tasks(gid, key, subject, body, due, owner, priority, records, cfg) -> list[Operation]:
    ops = []
    sf = records.get("salesforce") or []
    if sf:
        state = {cfg.salesforce_task_key: key, "Subject": subject, "WhoId": sf[0][1], "Status": "Not Started",
                 "Priority": priority, "Description": body[:32000],
                 "ActivityDate": pd.Timestamp(due).strftime("%Y-%m-%d") if due is not None else None}
        if owner and SALESFORCE_OWNER.match(str(owner)):
            state["OwnerId"] = owner
        ops.append(Operation("salesforce", "task", key, state, {"attributes": {"type": "Task"}, **state}, gid))
    hs = records.get("hubspot") or []
    if hs:
        props = {cfg.hubspot_task_key: key, "hs_task_subject": subject, "hs_task_body": body[:65000],
                 "hs_task_status": "NOT_STARTED", "hs_task_priority": priority.upper() if priority != "Normal"
                 else "MEDIUM", "hs_timestamp": _epoch_ms(due) or _epoch_ms(pd.Timestamp.now(tz="UTC").normalize())}
        if owner and HUBSPOT_OWNER.match(str(owner)):
            props["hubspot_owner_id"] = str(owner)
        state = {**props, "contact": hs[0]}
        if due is None:
            state.pop("hs_timestamp")  # flag tasks: "now" at first send; not part of the state
        ops.append(Operation("hubspot", "task", key, state,
                             {"id": key, "idProperty": cfg.hubspot_task_key, "properties": props, "contact": hs[0]},
                             gid))
    return ops


def _mailchimp_ops(gold: pd.DataFrame, nurture: pd.DataFrame, previous: dict, cfg: WritebackConfig) -> list:
    from slowburn.sources.mailchimp import subscriber_hash

    ops: list[Operation] = []
    wanted: set[str] = set()
    cols = [c if c in gold.columns else None for c in ("email", "first_name", "last_name", "email_opt_out")]
    people = {gid: dict(zip(("email", "first_name", "last_name", "email_opt_out"),
                            [None if c is None else v for c, v in zip(cols, vals)]))
              for gid, *vals in zip(gold["golden_id"], *[gold[c] if c else [None] * len(gold) for c in cols])}
    for row in _rows(nurture):
        gid = row["golden_id"]
        g = people.get(gid)
        if g is None:
            continue
        email = _text(g.get("email"))
        if not email or "@" not in email:
            continue
        h = subscriber_hash(email)
        opted_out = bool(row.get("email_opt_out")) or bool(_bool(g.get("email_opt_out"))) or \
            str(row.get("segment") or "").startswith("no_email")
        member_key, tags_key = f"member:{h}", f"tags:{h}"
        before_member = previous.get(("mailchimp", member_key))
        before_tag = (previous.get(("mailchimp", tags_key)) or (None, None, {}))[2] or {}
        if opted_out:
            # Never subscribe; unsubscribe only a member slowburn itself put on the list.
            if before_member and (before_member[2] or {}).get("status") != "unsubscribed":
                state = {"email_address": email, "status": "unsubscribed"}
                ops.append(Operation("mailchimp", "member", member_key, state,
                                     {"email_address": email, "status": "unsubscribed", "unsubscribe": True}, gid))
            if before_tag.get("tag"):
                ops.append(Operation("mailchimp", "tags", tags_key, {"tag": None},
                                     {"hash": h, "tags": [{"name": before_tag["tag"], "status": "inactive"}]}, gid))
                wanted.add(tags_key)
            continue
        if before_member and (before_member[2] or {}).get("status") == "unsubscribed":
            continue  # slowburn unsubscribed this member after an opt-out: never add it back
        merge = {k: v for k, v in (("FNAME", _text(g.get("first_name"))), ("LNAME", _text(g.get("last_name"))))
                 if v}
        state = {"email_address": email, "status_if_new": cfg.status_if_new, "merge_fields": merge}
        ops.append(Operation("mailchimp", "member", member_key, state, dict(state), gid))
        tag = f"{cfg.tag_prefix}{row.get('segment')}"
        tags = [{"name": tag, "status": "active"}]
        if before_tag.get("tag") and before_tag["tag"] != tag:
            tags.append({"name": before_tag["tag"], "status": "inactive"})
        ops.append(Operation("mailchimp", "tags", tags_key, {"tag": tag}, {"hash": h, "tags": tags}, gid,
                             depends_on=member_key))
        wanted.add(tags_key)
    # Leads that left nurture: take their segment tag off.
    for (target, key), (action, _hash, state) in previous.items():
        if target == "mailchimp" and action == "tags" and key not in wanted and (state or {}).get("tag"):
            ops.append(Operation("mailchimp", "tags", key, {"tag": None},
                                 {"hash": key.split(":", 1)[1], "tags": [{"name": state["tag"],
                                                                          "status": "inactive"}]}))
    return ops


def _int(value):
    try:
        return None if value is None or pd.isna(value) else int(value)
    except (TypeError, ValueError):
        return None


def _text(value):
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    text = str(value).strip()
    return text or None


def _bool(value):
    if value is None:
        return False
    try:
        if pd.isna(value):
            return False
    except (TypeError, ValueError):
        pass
    return str(value).lower() in ("true", "1", "yes")


def _iso(value) -> str | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        return None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _epoch_ms(value) -> str | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    if pd.isna(stamp):
        return None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
    return str(int(stamp.value // 1_000_000))


def _reasons_text(reasons) -> str:
    if not reasons:
        return ""
    try:
        items = json.loads(reasons)
    except (TypeError, ValueError):
        return str(reasons)[:1000]
    if isinstance(items, list):
        return "; ".join(f"{r.get('factor')} {r.get('points', 0):+g}" if isinstance(r, dict) else str(r)
                         for r in items[:5])
    return str(items)[:1000]


# ---------------------------------------------------------------------------------------------- sinks
class Sink(Protocol):
    target: str

    def batches(self, action: str, ops: list[Operation]) -> list[list[Operation]]: ...

    def send(self, action: str, ops: list[Operation]) -> dict[str, str]: ...


def _slices(ops, size):
    return [ops[i:i + size] for i in range(0, len(ops), size)]


class SalesforceSink:
    """Updates through sObject Collections (200 a call), or Bulk API 2.0 jobs past 10,000 rows."""
    target = "salesforce"

    def __init__(self, client, config: WritebackConfig | None = None, bulk_job_rows: int = 50_000):
        self.client, self.cfg, self.bulk_job_rows = client, config or WritebackConfig(), bulk_job_rows

    def batches(self, action, ops):
        if len(ops) > self.client.bulk_threshold:
            return _slices(ops, max(self.bulk_job_rows, self.client.bulk_threshold + 1))
        from slowburn.sources.salesforce import COLLECTION_LIMIT
        return _slices(ops, COLLECTION_LIMIT)

    def send(self, action, ops):
        records = [dict(op.payload) for op in ops]
        if action == "update":
            outcome = self.client.update(records)
        else:
            outcome = self.client.upsert("Task", self.cfg.salesforce_task_key, records)
        return _errors_by_key(ops, outcome.ok, outcome.errors)


class HubSpotSink:
    """batch/update for contacts and batch/upsert for tasks (100 a call); tasks get their contact associated."""
    target = "hubspot"

    def __init__(self, client, config: WritebackConfig | None = None):
        self.client, self.cfg = client, config or WritebackConfig()

    def batches(self, action, ops):
        from slowburn.sources.hubspot import BATCH_LIMIT
        return _slices(ops, BATCH_LIMIT)

    def send(self, action, ops):
        if action == "update":
            out = self.client.batch_update("contacts", [op.payload for op in ops])
            return _errors_by_key(ops, out.ok, out.errors)
        inputs = [{k: v for k, v in op.payload.items() if k != "contact"} for op in ops]
        out = self.client.batch_upsert("tasks", inputs)
        pairs = [(str(out.ok[op.record_key]["id"]), op.payload["contact"]) for op in ops
                 if op.record_key in out.ok and op.payload.get("contact")]
        if pairs:
            self.client.associate_tasks(pairs)
        return _errors_by_key(ops, out.ok, out.errors)


class MailchimpSink:
    """Member upserts, unsubscribes and tag changes; through /batches when there are many."""
    target = "mailchimp"

    def __init__(self, client, list_id: str, direct_chunk: int = 100, batches_in_flight: int = 10):
        self.client, self.list_id, self.direct_chunk = client, list_id, direct_chunk
        self.batches_in_flight = batches_in_flight
        self._mode: dict[str, str] = {}

    def batches(self, action, ops):
        if len(ops) > self.client.batch_threshold:
            # One logged unit = several Mailchimp batches submitted together, so waiting for Mailchimp to run
            # them overlaps; a crash resends at most this many operations (idempotently).
            self._mode[action] = "batch"
            return _slices(ops, self.client.batch_size * self.batches_in_flight)
        self._mode[action] = "direct"
        return _slices(ops, self.direct_chunk)

    def send(self, action, ops):
        wire = []
        for op in ops:
            if action == "tags":
                wire.append(self.client.tag_operation(self.list_id, op.payload["hash"], op.payload["tags"]))
            elif op.payload.get("unsubscribe"):
                wire.append(self.client.unsubscribe_operation(self.list_id, op.record_key.split(":", 1)[1]))
            else:
                wire.append(self.client.member_operation(self.list_id, op.payload))
        for w, op in zip(wire, ops):
            w["operation_id"] = op.record_key
        if self._mode.get(action) == "batch":
            outcome = self.client.run_batch(wire)
        else:
            outcome = self.client.run_direct(wire)
        return _errors_by_key(ops, outcome.ok, outcome.errors)


def _errors_by_key(ops, ok: dict, errors: dict) -> dict[str, str]:
    out = {}
    for op in ops:
        key = op.record_key if op.target != "salesforce" or op.action == "task" else op.payload.get("Id")
        if key in errors:
            out[op.record_key] = errors[key]
        elif key not in ok:
            out[op.record_key] = f"{op.target} {op.action} {op.record_key}: no acknowledgement in the answer"
    return out


# ---------------------------------------------------------------------------------------------- the log
class WritebackStore:
    """writeback_log (what was sent where, by payload hash) and writeback_batches (the resume ledger)."""

    def __init__(self, warehouse):
        self.wh = warehouse
        self.engine = warehouse.engine

    def ensure(self) -> None:
        # A warehouse made before write-back grew its columns gets them from migration 0001.
        self.wh.ensure_schema()

    def latest(self) -> dict:
        """(target, record_key) -> (action, payload_hash, state) of every record's current state."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT target, record_key, action, payload_hash, payload FROM writeback_log "
                                        "WHERE latest = :yes AND status = 'sent'"), {"yes": True}).all()
        return {(t, k): (a, h, json.loads(p) if p else None) for t, k, a, h, p in rows}

    def _now(self):
        now = pd.Timestamp.now(tz="UTC")
        return now.strftime("%Y-%m-%dT%H:%M:%S.%f") if self.wh.dialect == "sqlite" else now.to_pydatetime()

    def start_batch(self, run_id, batch_id, target, action, count) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO writeback_batches (batch_id, run_id, target, action, records, status, "
                                 "started_at) VALUES (:b, :r, :t, :a, :n, 'sending', :now)"),
                         {"b": batch_id, "r": run_id, "t": target, "a": action, "n": count, "now": self._now()})

    def fail_batch(self, batch_id, error) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text("UPDATE writeback_batches SET status = 'failed', error = :e, finished_at = :now "
                                 "WHERE batch_id = :b"), {"e": str(error)[:4000], "now": self._now(), "b": batch_id})

    def record_batch(self, run_id, batch_id, ops: list[Operation], errors: dict[str, str]) -> None:
        """Log an acknowledged batch, all in one transaction."""
        now = self._now()
        sent = [op for op in ops if op.record_key not in errors]
        failed = [op for op in ops if op.record_key in errors]
        rows = [{"t": op.target, "k": op.record_key, "h": op.payload_hash, "r": run_id, "now": now,
                 "s": "sent" if op.record_key not in errors else "failed", "a": op.action, "g": op.golden_id,
                 "p": json.dumps(op.state, sort_keys=True, default=str), "l": op.record_key not in errors,
                 "b": batch_id, "e": errors.get(op.record_key)} for op in ops]
        with self.engine.begin() as conn:
            if sent:
                conn.execute(sa.text("UPDATE writeback_log SET latest = :no WHERE target = :t AND record_key = :k "
                                     "AND latest = :yes"),
                             [{"t": op.target, "k": op.record_key, "no": False, "yes": True} for op in sent])
            conn.execute(sa.text("DELETE FROM writeback_log WHERE target = :t AND record_key = :k AND "
                                 "payload_hash = :h"), [{"t": r["t"], "k": r["k"], "h": r["h"]} for r in rows])
            conn.execute(sa.text("INSERT INTO writeback_log (target, record_key, payload_hash, run_id, sent_at, status, "
                                 "action, golden_id, payload, latest, batch_id, error) VALUES (:t, :k, :h, :r, :now, "
                                 ":s, :a, :g, :p, :l, :b, :e)"), rows)
            conn.execute(sa.text("UPDATE writeback_batches SET status = 'done', sent = :s, failed = :f, "
                                 "finished_at = :now WHERE batch_id = :b"),
                         {"s": len(sent), "f": len(failed), "now": now, "b": batch_id})

    def interrupted(self) -> pd.DataFrame:
        """Batches that were being sent when a run stopped (their records are resent on resume)."""
        return self.wh.read("SELECT * FROM writeback_batches WHERE status IN ('sending', 'failed') "
                            "ORDER BY started_at")


# ---------------------------------------------------------------------------------------------- execution
@dataclass
class WritebackReport:
    run_id: str
    dry_run: bool
    planned: int = 0
    already_sent: int = 0
    to_send: int = 0
    sent: int = 0
    failed: list = field(default_factory=list)            # [(target, record_key, error)]
    by_action: dict = field(default_factory=dict)         # "target/action" -> count to send
    skipped_targets: dict = field(default_factory=dict)   # target -> count not sent: no connection
    batches: int = 0
    seconds: float = 0.0
    sample: list = field(default_factory=list)            # dry-run: a few payloads

    def as_dict(self) -> dict:
        out = asdict(self)
        out["failed"] = [{"target": t, "record": k, "error": e} for t, k, e in self.failed[:50]]
        out["failed_count"] = len(self.failed)
        return out


def execute(ops: list[Operation], sinks: dict, store: WritebackStore | None, run_id: str, *,
            dry_run: bool = False, plan_path: str | Path | None = None, latest: dict | None = None,
            max_batches: int | None = None) -> WritebackReport:
    """Send what is not yet logged, one acknowledged batch at a time (see the module docstring).

    `max_batches` stops after that many batches (to test resume). A ConnectorError from a whole batch
    stops the run: earlier batches stay logged, the batch is marked failed in writeback_batches, and the
    next run resends it.
    """
    started = time.perf_counter()
    report = WritebackReport(run_id=run_id, dry_run=dry_run, planned=len(ops))
    if latest is None:
        latest = store.latest() if store is not None else {}
    todo = pending(ops, latest)
    report.already_sent = len(ops) - len(todo)
    report.to_send = len(todo)
    groups: dict[tuple[str, str], list[Operation]] = defaultdict(list)
    for op in todo:
        groups[(op.target, op.action)].append(op)
    report.by_action = {f"{t}/{a}": len(v) for (t, a), v in sorted(groups.items())}
    if plan_path is not None:
        _write_plan(plan_path, todo)
    if dry_run:
        report.sample = [{"target": op.target, "action": op.action, "record": op.record_key, "payload": op.payload}
                         for op in todo[:20]]
        log.info("write-back dry run %s: %d planned, %d already sent, would send %s", run_id, len(ops),
                 report.already_sent, report.by_action)
        report.seconds = round(time.perf_counter() - started, 3)
        return report
    failed_keys: set[tuple[str, str]] = set()
    for (target, action) in sorted(groups, key=lambda g: (g[0], ORDER.get(g, 0), g[1])):
        group = groups[(target, action)]
        sink = sinks.get(target)
        if sink is None:
            report.skipped_targets[target] = report.skipped_targets.get(target, 0) + len(group)
            continue
        blocked = [op for op in group if op.depends_on and (target, op.depends_on) in failed_keys]
        if blocked:
            reason = "not sent: the member upsert it depends on failed in this run"
            for op in blocked:
                report.failed.append((target, op.record_key, reason))
            blocked_keys = {op.record_key for op in blocked}
            group = [op for op in group if op.record_key not in blocked_keys]
        for chunk in sink.batches(action, group):
            if max_batches is not None and report.batches >= max_batches:
                log.warning("write-back %s: stopping after %d batches as asked", run_id, report.batches)
                report.seconds = round(time.perf_counter() - started, 3)
                return report
            batch_id = f"{run_id}/{target}/{action}/{uuid.uuid4().hex[:12]}"
            store.start_batch(run_id, batch_id, target, action, len(chunk))
            try:
                errors = sink.send(action, chunk)
            except Exception as exc:
                store.fail_batch(batch_id, exc)
                from slowburn.sources.http import redact
                raise WritebackFailed(f"write-back {run_id}: {target} {action} batch of {len(chunk)} records "
                                      f"(first {chunk[0].record_key}) failed: {redact(exc)}. {report.sent} records "
                                      f"were written and logged; a re-run resumes from here") from None
            store.record_batch(run_id, batch_id, chunk, errors)
            report.batches += 1
            report.sent += len(chunk) - len(errors)
            for key, error in errors.items():
                failed_keys.add((target, key))
                report.failed.append((target, key, error))
    report.seconds = round(time.perf_counter() - started, 3)
    log.info("write-back %s: %d planned, %d already sent, %d sent, %d failed in %d batches (%.1f s)", run_id,
             len(ops), report.already_sent, report.sent, len(report.failed), report.batches, report.seconds)
    return report


def _write_plan(path, ops) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for op in ops:
            fh.write(json.dumps({"target": op.target, "action": op.action, "record": op.record_key,
                                 "golden_id": op.golden_id, "payload_hash": op.payload_hash, "payload": op.payload},
                                default=str) + "\n")


# ---------------------------------------------------------------------------------------------- glue
def load_inputs(warehouse) -> tuple[dict, str]:
    """The state frames of the last successful run, and that run's id."""
    warehouse.ensure_schema()
    ledger = warehouse.read("SELECT run_id FROM run_ledger WHERE status = 'success' ORDER BY run_id DESC")
    if ledger.empty:
        raise WritebackFailed("write-back: no successful nightly run in the warehouse yet; nothing to write")
    run_id = str(ledger["run_id"].iloc[0])
    frames = {
        "golden": warehouse.read("SELECT golden_id, email, first_name, last_name, email_opt_out, source_keys "
                                 "FROM golden_leads"),
        "sales": warehouse.read_typed("SELECT * FROM sales_queue", datetime_columns=("queued_at", "respond_by")),
        "nurture": warehouse.read_typed("SELECT * FROM nurture_queue", datetime_columns=("next_touch_at",),
                                        bool_columns=("email_opt_out",)),
        "scores": warehouse.read("SELECT golden_id, score, tier FROM lead_scores"),
        "flags": warehouse.flags_at(run_id),
    }
    return frames, run_id


def run_writeback(warehouse_url: str, sinks: dict, config: WritebackConfig | None = None, *, dry_run: bool = False,
                  plan_dir: str | Path | None = None, max_batches: int | None = None) -> WritebackReport:
    """Plan from the warehouse, then execute (or dry-run) against `sinks` (target -> sink)."""
    from slowburn.warehouse import Warehouse

    cfg = config or WritebackConfig()
    wh = Warehouse(warehouse_url)
    store = WritebackStore(wh)
    store.ensure()
    frames, run_id = load_inputs(wh)
    latest = store.latest()
    ops = plan_writeback(frames["golden"], frames["sales"], frames["nurture"], scores=frames["scores"],
                         flags=frames["flags"], previous=latest, config=cfg)
    plan_path = Path(plan_dir) / f"writeback_plan_{run_id}.jsonl" if plan_dir else None
    report = execute(ops, sinks, store, run_id, dry_run=dry_run, plan_path=plan_path, latest=latest,
                     max_batches=max_batches)
    counts = Counter(op.target for op in ops)
    log.info("write-back %s: planned per target %s", run_id, dict(counts))
    return report
