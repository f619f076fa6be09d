"""Touch facts per source lead, carried from night to night, so a night reads its own touches and
not the whole history.

A night's touch features are sums, maxima and an exponentially decayed sum over every touch a lead
ever had (features.touch_features); all of them can be updated with tonight's touches alone
(features.merge_facts). The rollup keeps, per (source_system, lead_source_id): the facts as of the
night it was made, the 64-bit hashes of every touch key it counted (a file drop that re-sends old
events must not count them twice), and the touches dated after that night (they count once their
moment has come). Keyed by source lead, not golden lead, so merges and splits cost nothing.

Whether to trust a stored rollup is the caller's business (pipeline: only the copy a loaded run's
token proves); `basis` says which engagement settings it was decayed with, and any change of them
rebuilds it from the whole history.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from slowburn.arrowkeys import joined, positions, strings
from slowburn.contracts import TOUCH_TYPES
from slowburn.ripeness.config import RipenessConfig
from slowburn.ripeness.features import (
    _FACT_FIELDS, _TYPE_INDEX, NAT, NS_PER_DAY, TouchFacts, _decay, _ns, features_of, merge_facts,
    touch_facts,
)

KEY = ["source_system", "lead_source_id"]
TOUCH_KEY = ["source_system", "lead_source_id", "touch_type", "occurred_at"]  # one event, however often sent
TOUCH_COLUMNS = TOUCH_KEY + ["campaign", "value"]
ROLLUP_FILES = ("touch_rollup", "touch_rollup_seen", "touch_rollup_pending")  # TouchRollup.frames()


def basis(cfg: RipenessConfig) -> str:
    """What the stored rollup depends on: points per touch type, half-life, touch types, the hash."""
    eng = cfg.engagement
    # The seen hashes are pandas' (touch_hashes): another pandas version might hash differently.
    text = json.dumps({"points": dict(sorted(eng.touch_points.items())), "half_life_days": eng.half_life_days,
                       "types": list(TOUCH_TYPES), "hashes": f"pandas {pd.__version__}"}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def touch_hashes(touches: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each touch's key (TOUCH_KEY). Two different events share one with odds of about
    one in 10^8 a night at a million leads; such an event would be taken for a re-sent one."""
    canon = pd.DataFrame({"s": _categorical(touches["source_system"]),
                          "l": _categorical(touches["lead_source_id"]),
                          "t": _categorical(touches["touch_type"]),
                          "o": _ns(touches["occurred_at"])})
    return pd.util.hash_pandas_object(canon, index=False).to_numpy(dtype=np.uint64)


def _categorical(values: pd.Series) -> pd.Categorical:
    """The values as text in a Categorical made by Arrow's dictionary encoding. pandas hashes a
    Categorical's categories once, not every row's string, and the hashes are those of the text."""
    encoded = pc.dictionary_encode(strings(values))
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return pd.Categorical.from_codes(codes, categories=pd.Index(encoded.dictionary.to_pylist(), dtype=object))


@dataclass
class TouchRollup:
    keys: pd.DataFrame  # source_system, lead_source_id (unique)
    facts: TouchFacts  # per row of keys, engagement at `as_of`
    seen: np.ndarray  # sorted uint64 hashes of every touch counted or pending
    pending: pd.DataFrame  # TOUCH_COLUMNS of touches dated after as_of
    as_of: pd.Timestamp
    basis: str | None  # None: holds no engagement yet (no touch so far), so any settings suit it

    # ------------------------------------------------------------------ building and folding
    @classmethod
    def build(cls, touches: pd.DataFrame, as_of, cfg: RipenessConfig) -> "TouchRollup":
        """From the whole touch history (a first night, or a stored rollup that cannot be used)."""
        return cls._empty(touches.iloc[:0], pd.Timestamp(as_of), basis(cfg)).fold(touches, as_of, cfg)

    @classmethod
    def _empty(cls, pending: pd.DataFrame, as_of: pd.Timestamp, made_with: str | None) -> "TouchRollup":
        return cls(pd.DataFrame({k: pd.Series(dtype="string") for k in KEY}), _no_facts(), np.array([], np.uint64),
                   pending[TOUCH_COLUMNS], as_of, made_with)

    def fold(self, touches: pd.DataFrame, as_of, cfg: RipenessConfig) -> "TouchRollup":
        """This rollup plus `touches` (tonight's), as of `as_of` (not before the rollup's own)."""
        as_of = pd.Timestamp(as_of)
        if as_of < self.as_of:
            raise ValueError(f"a touch rollup made as of {self.as_of} cannot be rolled back to {as_of}")
        if self.basis not in (None, basis(cfg)):
            raise ValueError("the touch rollup was decayed with other engagement settings; build it again")
        touches = touches[TOUCH_COLUMNS]
        usable = (touches["touch_type"].isin(list(TOUCH_TYPES)).to_numpy()
                  & (_ns(touches["occurred_at"]) != NAT) & touches["lead_source_id"].notna().to_numpy()
                  & touches["source_system"].notna().to_numpy())
        touches = touches[usable]
        hashes = touch_hashes(touches)
        fresh = ~_sorted_contains(self.seen, hashes)
        fresh &= ~pd.Series(hashes).duplicated().to_numpy()  # the same event twice tonight
        touches, hashes = touches[fresh], hashes[fresh]
        seen = np.sort(np.concatenate([self.seen, hashes])) if len(hashes) else self.seen  # no repeats: see above
        waiting = pd.concat([self.pending, touches], ignore_index=True) if len(self.pending) else touches
        occurred = _ns(waiting["occurred_at"])
        due = occurred <= as_of.value
        now, pending, occurred = waiting[due], waiting[~due].reset_index(drop=True), occurred[due]
        # Tonight's source leads: those stored keep their position, new ones are appended.
        stored = len(self.keys)
        now_keys = joined(now["source_system"], now["lead_source_id"])
        group = (positions(now_keys, joined(self.keys["source_system"], self.keys["lead_source_id"]))
                 if stored else np.full(len(now), -1, dtype=np.int64))
        unknown = np.flatnonzero(group < 0)
        first = np.array([], dtype=np.int64)
        if len(unknown):
            enc = pc.dictionary_encode(now_keys.take(pa.array(unknown)))
            codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            group[unknown] = stored + codes
            # Codes are given in order of first appearance: a key's first row is where the code is new.
            first = np.flatnonzero(np.r_[True, codes[1:] > np.maximum.accumulate(codes)[:-1]])
        n = stored + len(first)
        keys = pd.concat([self.keys, now[KEY].iloc[unknown[first]].astype("string")], ignore_index=True)
        # Every stored lead's engagement decays to tonight; only tonight's leads are merged.
        present = np.zeros(n, dtype=bool)
        present[group] = True
        touched = np.flatnonzero(present)
        local = (np.cumsum(present) - 1)[group]  # a lead's position among the touched ones
        ref = np.full(len(touched), as_of.value, dtype=np.int64)
        types = now["touch_type"].map(_TYPE_INDEX).to_numpy(dtype=np.int64)
        value = pd.to_numeric(now["value"], errors="coerce").astype(float).fillna(0.0).to_numpy()
        campaign = now["campaign"].astype("object").where(now["campaign"].notna(), None).to_numpy(dtype=object)
        tonight = touch_facts(local, len(touched), occurred, types, campaign, value, ref, cfg)
        before = touched[touched < stored]
        if len(before):
            both = _concat_facts(self.facts.take(before), tonight)
            merged = merge_facts(both, np.concatenate([np.searchsorted(touched, before), np.arange(len(touched))]),
                                 len(touched), ref, cfg)
        else:  # no touched lead has stored facts (a first night): tonight's are the merged ones
            merged = tonight
        facts = _extended(_decayed(self.facts, as_of.value, cfg), n, as_of.value)
        for f in _FACT_FIELDS:
            getattr(facts, f)[touched] = getattr(merged, f)
        return TouchRollup(keys, facts, seen, pending, as_of, basis(cfg))

    # ------------------------------------------------------------------ features
    def features(self, links: pd.DataFrame, golden_ids, cfg: RipenessConfig) -> pd.DataFrame:
        """touch_features as of the rollup's moment for these golden leads, through `links`."""
        index = pd.Index(golden_ids, name="golden_id")
        link_keys = joined(links["source_system"], links["source_id"])
        link_golden = positions(links["golden_id"], pd.Series(index))
        row = positions(joined(self.keys["source_system"], self.keys["lead_source_id"]), link_keys)
        group = (np.where(row >= 0, link_golden[np.maximum(row, 0)], -1) if len(link_golden)
                 else np.full(len(row), -1, dtype=np.int64))
        ref = np.full(len(index), self.as_of.value, dtype=np.int64)
        return features_of(merge_facts(self.facts, group, len(index), ref, cfg), index, cfg)

    # ------------------------------------------------------------------ storage as three frames
    def frames(self) -> dict[str, pd.DataFrame]:
        f = self.facts
        table = self.keys.copy()
        for i, t in enumerate(TOUCH_TYPES):
            table[f"n_{t}"] = f.counts[:, i]
        for i, t in enumerate(TOUCH_TYPES):
            table[f"last_{t}"] = f.last[:, i]
        table = table.assign(first_rep=f.first_rep, touch_value=f.value, engagement=f.engagement,
                             named_at=f.named_at, campaign=pd.Series(f.campaign, dtype="string"),
                             as_of=self.as_of.value, basis=self.basis)
        return dict(zip(ROLLUP_FILES, (table, pd.DataFrame({"hash": self.seen.view(np.int64)}),
                                       self.pending.reset_index(drop=True))))

    @classmethod
    def from_frames(cls, table: pd.DataFrame, seen: pd.DataFrame, pending: pd.DataFrame) -> "TouchRollup":
        hashes = np.sort(seen["hash"].to_numpy(dtype=np.int64).view(np.uint64))
        if not len(table):  # no touch due yet: nothing decayed (any settings suit it), and all it saw waits
            if not np.array_equal(hashes, np.sort(touch_hashes(pending[TOUCH_COLUMNS]))):
                raise ValueError("a touch rollup without source leads whose seen touches are not its pending "
                                 "ones; build it from the history")
            empty = cls._empty(pending, pd.Timestamp(0, tz="UTC"), None)
            empty.seen = hashes
            return empty
        as_of = pd.Timestamp(int(table["as_of"].iloc[0]), tz="UTC")
        n = len(table)
        facts = TouchFacts(
            counts=table[[f"n_{t}" for t in TOUCH_TYPES]].to_numpy(dtype=np.int64),
            last=table[[f"last_{t}" for t in TOUCH_TYPES]].to_numpy(dtype=np.int64),
            first_rep=table["first_rep"].to_numpy(dtype=np.int64), value=table["touch_value"].to_numpy(dtype=float),
            engagement=table["engagement"].to_numpy(dtype=float), ref=np.full(n, as_of.value, dtype=np.int64),
            named_at=table["named_at"].to_numpy(dtype=np.int64),
            campaign=table["campaign"].astype("object").where(table["campaign"].notna(), None).to_numpy(dtype=object))
        return cls(table[KEY].astype("string").reset_index(drop=True), facts, hashes, pending[TOUCH_COLUMNS],
                   as_of, str(table["basis"].iloc[0]))


def _no_facts() -> TouchFacts:
    k = len(TOUCH_TYPES)
    empty = np.array([], dtype=np.int64)
    return TouchFacts(np.zeros((0, k), np.int64), np.zeros((0, k), np.int64), empty, np.array([], float),
                      np.array([], float), empty, empty, np.array([], dtype=object))


def _concat_facts(a: TouchFacts, b: TouchFacts) -> TouchFacts:
    return TouchFacts(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in _FACT_FIELDS))


def _decayed(facts: TouchFacts, ref: int, cfg: RipenessConfig) -> TouchFacts:
    """The same facts with engagement decayed to `ref` (a copy)."""
    age_days = (ref - facts.ref) / NS_PER_DAY
    return TouchFacts(facts.counts.copy(), facts.last.copy(), facts.first_rep.copy(), facts.value.copy(),
                      facts.engagement * _decay(cfg, age_days), np.full(len(facts), ref, dtype=np.int64),
                      facts.named_at.copy(), facts.campaign.copy())


def _extended(facts: TouchFacts, n: int, ref: int) -> TouchFacts:
    """`facts` followed by rows of leads without touches, up to n rows."""
    extra = n - len(facts)
    if not extra:
        return facts
    k = len(TOUCH_TYPES)
    blank = TouchFacts(np.zeros((extra, k), np.int64), np.full((extra, k), NAT, np.int64),
                       np.full(extra, NAT, np.int64), np.zeros(extra), np.zeros(extra),
                       np.full(extra, ref, np.int64), np.full(extra, NAT, np.int64),
                       np.full(extra, None, dtype=object))
    return _concat_facts(facts, blank)


def _sorted_contains(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    if not len(sorted_values) or not len(values):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return sorted_values[at] == values
