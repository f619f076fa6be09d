"""The predictive model: conversion probability learnt from won and lost outcomes.

Three models, backtested on time (train on older closed leads, test on newer ones); the best AUC
scores, with the calibration (none, Platt sigmoid or isotonic, fitted on out-of-fold scores of the
training leads) that had the lowest calibration error on the same test:

* ``naive_bayes``: the frequency model Odoo's predictive lead scoring uses (CategoricalNB, numbers
  binned). A field's contribution is its log-odds (log P(value | won) - log P(value | lost)).
* ``logistic``: a regularised logistic regression on one-hot categories, scaled log counts and binned
  custom numbers. A field's contribution is its coefficient terms.
* ``lightgbm``: gradient-boosted trees (LightGBM) on the raw fields, custom attributes included. A
  field's contribution is its exact TreeSHAP value (``pred_contrib``).

For all three a lead's log-odds are exactly the baseline (the average closed lead) plus the sum of
its fields' contributions, which the reasons turn into points of the score.

Features are those of the lead as of a fixed pseudo-random point of its open life, strictly before
its close (see snapshot_times): touches at or after that point never enter a training row, and
neither do fields that record the outcome itself (status, stage). The probability is that of
winning once the lead closes (won vs lost), so the predictive tiers sit higher than the rules'.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import calibration_curve
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.naive_bayes import CategoricalNB

from slowburn.ripeness.config import RipenessConfig
from slowburn.ripeness.reasons import integerize, reasons_json
from slowburn.ripeness.rules import RulesModel, tier_of
from slowburn.workers import available_cores

log = logging.getLogger(__name__)

FEATURE_SPEC = "v3"
BASELINE_FACTOR = "baseline (average closed lead)"


@dataclass(frozen=True)
class FieldSpec:
    """One model input: its column, the words a rep reads, and its kind.

    cat = category, bin = yes/no, count = touches of one kind, num = a non-negative amount,
    anum = a custom number (may be missing, any sign).
    """
    name: str
    label: str
    kind: str


BASE_FIELDS = (
    FieldSpec("lead_source", "lead source", "cat"),
    FieldSpec("source_rank", "lead source rank", "num"),
    FieldSpec("title", "title", "cat"),
    FieldSpec("country", "country", "cat"),
    FieldSpec("corporate_email", "corporate email", "bin"),
    FieldSpec("touch_band", "contacts so far", "cat"),
    FieldSpec("rep_band", "rep contacts", "cat"),
    FieldSpec("fast_response", "rep responded within an hour", "bin"),
    FieldSpec("n_form_fill", "form fills", "count"),
    FieldSpec("n_pricing_page_view", "pricing page views", "count"),
    FieldSpec("n_demo_request", "demo requests", "count"),
    FieldSpec("n_meeting", "meetings", "count"),
    FieldSpec("n_email_click", "email clicks", "count"),
    FieldSpec("n_email_open", "email opens", "count"),
    FieldSpec("n_page_view", "page views", "count"),
    FieldSpec("n_event_attended", "events attended", "count"),
    FieldSpec("n_call", "calls", "count"),
    FieldSpec("n_rep_email", "rep emails", "count"),
    FieldSpec("engagement", "engagement (decayed)", "num"),
    FieldSpec("touch_value", "time or value on touches", "num"),
    FieldSpec("idle_days", "days since last touch", "num"),
    FieldSpec("bounced", "email bounced", "bin"),
    FieldSpec("opted_out", "opted out of email", "bin"),
)
FIELD_LABELS = [f.label for f in BASE_FIELDS]
_TOUCH_BANDS = ([0, 1, 2, 3, 5, 9, 13], ["0", "1", "2", "3-4", "5-8", "9-12", "13+"])
_REP_BANDS = ([0, 1, 2, 3], ["0", "1", "2", "3+"])
_COUNT_BINS = ([0, 1, 2, 3, 5], ["0", "1", "2", "3-4", "5+"])
N_QUANTILE_BINS = 5
MEAN_SAMPLE = 5000


def _band(values: np.ndarray, edges, labels) -> np.ndarray:
    idx = np.searchsorted(np.asarray(edges), np.asarray(values, dtype=float), side="right") - 1
    return np.asarray(labels, dtype=object)[np.clip(idx, 0, len(labels) - 1)]


def design(attrs: pd.DataFrame, feats: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns per lead, from lead_attributes and touch_features (see fields_of)."""
    from slowburn.ripeness.features import ATTRIBUTE_PREFIX

    f = attrs.join(feats, how="left")
    touches = f["touches"].fillna(0).to_numpy(dtype=float)
    reps = f["rep_touches"].fillna(0).to_numpy(dtype=float)
    first_rep = pd.to_datetime(f["first_rep_touch_at"], utc=True)
    created = pd.to_datetime(f["created_at"], utc=True)
    fast = ((first_rep - created) <= pd.Timedelta(hours=1)).fillna(False).to_numpy(dtype=bool)
    out = pd.DataFrame(index=f.index)
    out["lead_source"] = f["lead_source"].astype("string").fillna("other").to_numpy(dtype=object)
    out["source_rank"] = f["source_rank"].fillna(0).to_numpy(dtype=float)
    out["title"] = f["title_class"].astype("string").fillna("none").to_numpy(dtype=object)
    out["country"] = f["country_code"].astype("string").fillna("unknown").to_numpy(dtype=object)
    out["corporate_email"] = f["corporate_email"].to_numpy(dtype=float)
    out["touch_band"] = _band(touches, *_TOUCH_BANDS)
    out["rep_band"] = _band(reps, *_REP_BANDS)
    out["fast_response"] = fast.astype(float)
    for spec in BASE_FIELDS:
        if spec.kind == "count":
            out[spec.name] = f[spec.name].fillna(0).to_numpy(dtype=float)
    out["engagement"] = f["engagement"].fillna(0).to_numpy(dtype=float)
    out["touch_value"] = f["touch_value"].fillna(0).to_numpy(dtype=float)
    last = pd.to_datetime(f["last_touch_at"], utc=True)
    idle = (pd.to_datetime(f["cutoff_at"], utc=True) - last).dt.total_seconds() / 86400
    out["idle_days"] = idle.fillna(365.0).clip(0, 365).to_numpy(dtype=float)
    out["bounced"] = f["bounced"].fillna(False).to_numpy(dtype=float)
    opted = f["unsubscribed"].fillna(False).to_numpy(dtype=bool) | f["email_opt_out"].fillna(False).to_numpy(dtype=bool)
    out["opted_out"] = opted.astype(float)
    for col in attrs.columns:
        if col.startswith(ATTRIBUTE_PREFIX):
            values = attrs[col]
            out[col] = (values.to_numpy(dtype=float) if pd.api.types.is_float_dtype(values)
                        else values.astype("object").where(values.notna(), None).to_numpy(dtype=object))
    return out


def fields_of(X: pd.DataFrame) -> tuple[FieldSpec, ...]:
    """The base fields plus one per custom attribute in X (numbers: anum; anything else: cat)."""
    from slowburn.ripeness.features import ATTRIBUTE_PREFIX

    extra = []
    for col in X.columns:
        if col.startswith(ATTRIBUTE_PREFIX):
            label = col[len(ATTRIBUTE_PREFIX):].replace("_", " ")
            extra.append(FieldSpec(col, label, "anum" if pd.api.types.is_float_dtype(X[col]) else "cat"))
    return BASE_FIELDS + tuple(extra)


def _column(X: pd.DataFrame, spec: FieldSpec) -> np.ndarray:
    """A field's values; a custom attribute the scored leads lack is missing for all of them."""
    if spec.name in X:
        return X[spec.name].to_numpy()
    return np.full(len(X), np.nan if spec.kind == "anum" else None, dtype=float if spec.kind == "anum" else object)


def _categories(values: np.ndarray, min_count: int) -> list:
    counts = pd.Series(values).dropna().value_counts()
    return sorted(counts[counts >= min_count].index.tolist())


def _codes(values: np.ndarray, cats: list) -> np.ndarray:
    """Index of each value in cats; unknown values get len(cats).

    Strings are looked up by an Arrow hash (a Categorical hashes a million Python objects, a second
    per field at a million leads); anything else (numbers, mixed values) the pandas way."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if all(isinstance(c, str) for c in cats):
        try:
            found = pc.index_in(pa.array(values, type=pa.large_string(), from_pandas=True),
                                value_set=pa.array(cats, type=pa.large_string()))
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all strings (None and NaN are fine)
            found = None
        if found is not None:
            return found.fill_null(len(cats)).to_numpy(zero_copy_only=False).astype(np.int64)
    codes = pd.Categorical(np.asarray(values, dtype=object), categories=cats).codes.astype(np.int64)
    codes[codes < 0] = len(cats)
    return codes


def _quantile_edges(v: np.ndarray, bins: int = N_QUANTILE_BINS) -> np.ndarray:
    v = v[~np.isnan(v)]
    if not len(v):
        return np.array([0.0])
    return np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[:-1]))


def _number_words(x: float) -> str:
    if not np.isfinite(x):
        return "?"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


class _FieldModel(BaseEstimator, ClassifierMixin):
    """Shared by every model: log-odds that split exactly into one term per field.

    Subclasses set fields_, offset_ and implement _terms(X) (n x fields) and _fit.
    """

    def fit(self, X: pd.DataFrame, y):
        self.fields_ = fields_of(X)
        self._bands(X)
        self._fit(X, np.asarray(y, dtype=int))
        self.classes_ = np.array([0, 1])
        # The average closed lead's terms. Reasons are exact for any reference point (contributions are
        # measured from it and the baseline moves with it), so a fixed sample of the history is enough;
        # TreeSHAP on every training row would cost more than the fit.
        sample = X if len(X) <= MEAN_SAMPLE else X.sample(MEAN_SAMPLE, random_state=7)
        self.term_means_ = self._terms(sample).mean(axis=0)
        self.baseline_ = float(self.offset_ + self.term_means_.sum())
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return self.offset_ + self._terms(X).sum(axis=1)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(int)

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """Log-odds per field relative to the average training lead; rows sum to z - baseline_."""
        return self._terms(X) - self.term_means_

    # Words: every field's value as a bounded vocabulary ("pricing page views: 2", "time on site: 310-900").
    def _bands(self, X: pd.DataFrame) -> None:
        self.word_edges_ = {}
        self.word_cats_ = {}
        for spec in self.fields_:
            v = _column(X, spec)
            if spec.kind in ("num", "anum"):
                self.word_edges_[spec.name] = _quantile_edges(np.asarray(v, dtype=float))
            elif spec.kind == "cat":
                self.word_cats_[spec.name] = _categories(v, 20)

    def vocabulary(self) -> list[str]:
        """Every phrase value_words can return, in a fixed order."""
        words = [BASELINE_FACTOR, "rounding"]
        for spec in self.fields_:
            words += [f"{spec.label}: {w}" for w in self._field_words(spec)]
        return words

    def _field_words(self, spec: FieldSpec) -> list[str]:
        if spec.kind == "bin":
            return ["no", "yes"]
        if spec.kind == "count":
            return list(_COUNT_BINS[1])
        if spec.kind == "cat":
            return [str(c) for c in self.word_cats_[spec.name]] + ["other", "unknown"]
        edges = self.word_edges_[spec.name]
        ranges = [f"{_number_words(a)}-{_number_words(b)}" for a, b in zip(edges[:-1], edges[1:])]
        return ranges + [f"{_number_words(edges[-1])} or more", "unknown"]

    def value_words(self, X: pd.DataFrame) -> np.ndarray:
        """(n, fields) indexes into vocabulary(): each lead's value of each field, in words."""
        offset = 2
        out = np.zeros((len(X), len(self.fields_)), dtype=np.int64)
        for j, spec in enumerate(self.fields_):
            v = _column(X, spec)
            if spec.kind == "bin":
                idx = (np.asarray(v, dtype=float) > 0).astype(np.int64)
            elif spec.kind == "count":
                idx = np.clip(np.searchsorted(_COUNT_BINS[0], np.asarray(v, dtype=float), side="right") - 1, 0, 4)
            elif spec.kind == "cat":
                cats = self.word_cats_[spec.name]
                idx = _codes(v, cats)
                idx[pd.isna(pd.Series(v, dtype=object)).to_numpy()] = len(cats) + 1
            else:
                edges = self.word_edges_[spec.name]
                num = np.asarray(v, dtype=float)
                idx = np.clip(np.searchsorted(edges, num, side="right") - 1, 0, len(edges) - 1)
                idx[np.isnan(num)] = len(edges)
            out[:, j] = offset + idx
            offset += len(self._field_words(spec))
        return out


class NaiveBayesModel(_FieldModel):
    """Odoo-style frequency model: CategoricalNB over binned fields."""

    def __init__(self, alpha: float = 1.0, min_count: int = 10):
        self.alpha = alpha
        self.min_count = min_count

    def _binned(self, X: pd.DataFrame, spec: FieldSpec) -> np.ndarray:
        v = _column(X, spec)
        if spec.kind == "count":
            return _band(v, *_COUNT_BINS)
        if spec.kind in ("num", "anum"):
            num = np.asarray(v, dtype=float)
            edges = self.edges_[spec.name]
            out = _band(np.nan_to_num(num, nan=edges[0]), edges, [str(i) for i in range(len(edges))])
            return np.where(np.isnan(num), "missing", out).astype(object)
        if spec.kind == "bin":
            return np.where(np.asarray(v, dtype=float) > 0, "yes", "no").astype(object)
        return np.where(pd.isna(pd.Series(v, dtype=object)), "missing", v).astype(object)

    def _fit(self, X: pd.DataFrame, y: np.ndarray):
        self.edges_ = {s.name: _quantile_edges(np.asarray(_column(X, s), dtype=float))
                       for s in self.fields_ if s.kind in ("num", "anum")}
        self.cats_ = {}
        codes = []
        for spec in self.fields_:
            v = self._binned(X, spec)
            self.cats_[spec.name] = _categories(v, self.min_count)
            codes.append(_codes(v, self.cats_[spec.name]))
        self.nb_ = CategoricalNB(alpha=self.alpha, min_categories=[len(self.cats_[s.name]) + 1 for s in self.fields_])
        self.nb_.fit(np.column_stack(codes), y)
        self.llr_ = [lp[1] - lp[0] for lp in self.nb_.feature_log_prob_]
        self.offset_ = float(self.nb_.class_log_prior_[1] - self.nb_.class_log_prior_[0])

    def _terms(self, X: pd.DataFrame) -> np.ndarray:
        return np.column_stack([self.llr_[i][_codes(self._binned(X, s), self.cats_[s.name])]
                                for i, s in enumerate(self.fields_)])


class LogisticModel(_FieldModel):
    """L2 logistic regression on one-hot categories and standardised log counts.

    binned=True one-hot encodes every number by quantile bins too: that is the scorecard, whose
    points per field value then read as a table.
    """

    def __init__(self, C: float = 0.5, min_count: int = 20, binned: bool = False):
        self.C = C
        self.min_count = min_count
        self.binned = binned

    def _as_category(self, spec: FieldSpec) -> bool:
        return spec.kind == "cat" or spec.kind == "anum" or (self.binned and spec.kind in ("num", "count"))

    def _category_values(self, X: pd.DataFrame, spec: FieldSpec) -> np.ndarray:
        v = _column(X, spec)
        if spec.kind == "cat":
            return np.asarray(v, dtype=object)
        if spec.kind == "count":
            return _band(v, *_COUNT_BINS)
        num = np.asarray(v, dtype=float)
        edges = self.edges_[spec.name]
        out = _band(np.nan_to_num(num, nan=edges[0]), edges, [str(i) for i in range(len(edges))])
        return np.where(np.isnan(num), "missing", out).astype(object)

    def _numeric(self, X: pd.DataFrame, spec: FieldSpec) -> np.ndarray:
        v = np.asarray(_column(X, spec), dtype=float)
        return np.log1p(np.maximum(v, 0)) if spec.kind in ("count", "num") else v

    def _fit(self, X: pd.DataFrame, y: np.ndarray):
        self.edges_ = {s.name: _quantile_edges(np.asarray(_column(X, s), dtype=float))
                       for s in self.fields_ if s.kind in ("num", "anum")}
        self.cats_, self.mu_, self.sd_ = {}, {}, {}
        blocks, owner = [], []
        for i, spec in enumerate(self.fields_):
            if self._as_category(spec):
                values = self._category_values(X, spec)
                cats = _categories(values, self.min_count)
                self.cats_[spec.name] = cats
                codes = _codes(values, cats)
                onehot = np.zeros((len(X), len(cats)))
                known = codes < len(cats)
                onehot[np.flatnonzero(known), codes[known]] = 1.0
                blocks.append(onehot)
                owner += [i] * len(cats)
            else:
                v = self._numeric(X, spec)
                self.mu_[spec.name], self.sd_[spec.name] = float(v.mean()), float(v.std() or 1.0)
                blocks.append(((v - self.mu_[spec.name]) / self.sd_[spec.name])[:, None])
                owner.append(i)
        self.lr_ = LogisticRegression(C=self.C, max_iter=3000).fit(np.hstack(blocks), y)
        coef = self.lr_.coef_[0]
        owner = np.array(owner)
        self.weights_ = {}
        for i, spec in enumerate(self.fields_):
            w = coef[owner == i]
            self.weights_[spec.name] = np.r_[w, 0.0] if self._as_category(spec) else float(w[0])
        self.offset_ = float(self.lr_.intercept_[0])

    def _terms(self, X: pd.DataFrame) -> np.ndarray:
        cols = []
        for spec in self.fields_:
            if self._as_category(spec):
                cols.append(self.weights_[spec.name][_codes(self._category_values(X, spec), self.cats_[spec.name])])
            else:
                cols.append(self.weights_[spec.name] * (self._numeric(X, spec) - self.mu_[spec.name])
                            / self.sd_[spec.name])
        return np.column_stack(cols)


def prediction_threads() -> int:
    """Threads for the trees' predictions and TreeSHAP: each row is independent, so the results are the
    same on any count, and a first night's million explanations take half the time on two cores.
    Training stays on one thread (deterministic). SLOWBURN_SCORE_THREADS caps it on shared workers."""
    import os

    wanted = os.environ.get("SLOWBURN_SCORE_THREADS", "").strip()
    if wanted:
        try:
            return max(1, int(wanted))
        except ValueError:
            raise ValueError(f"SLOWBURN_SCORE_THREADS={wanted!r} is not a whole number of threads; "
                             "unset it to use every core this process may run on") from None
    return available_cores()


class LightGBMModel(_FieldModel):
    """Gradient-boosted trees; a field's term is its exact TreeSHAP contribution (pred_contrib)."""

    def __init__(self, n_estimators: int = 150, learning_rate: float = 0.07, num_leaves: int = 15,
                 min_child_samples: int = 40, min_count: int = 20, max_depth: int = 5):
        self.max_depth = max_depth
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.min_count = min_count

    def _frame(self, X: pd.DataFrame) -> pd.DataFrame:
        cols = {}
        for spec in self.fields_:
            v = _column(X, spec)
            if spec.kind == "cat":
                cats = self.cats_[spec.name]
                codes = _codes(v, cats)
                codes[codes == len(cats)] = -1  # rare or unseen values: LightGBM's missing category
                cols[spec.name] = pd.Categorical.from_codes(codes, categories=range(len(cats)) if cats else [0])
            else:
                cols[spec.name] = np.asarray(v, dtype=float)
        return pd.DataFrame(cols, index=X.index)

    def _fit(self, X: pd.DataFrame, y: np.ndarray):
        import lightgbm as lgb

        self.cats_ = {s.name: _categories(_column(X, s), self.min_count) for s in self.fields_ if s.kind == "cat"}
        self.booster_ = lgb.LGBMClassifier(
            n_estimators=self.n_estimators, learning_rate=self.learning_rate, num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples, max_depth=self.max_depth, subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
            reg_lambda=1.0, cat_smooth=20, min_data_per_group=self.min_count, random_state=7, n_jobs=1,
            deterministic=True, force_row_wise=True, verbose=-1,
        ).fit(self._frame(X), y)
        self.splits_ = None  # this fit's trees, read on first use
        # The expected log-odds, the same for every row: the trees' expected values added in tree order,
        # as _contrib adds them.
        contrib = self.booster_.predict(self._frame(X.iloc[:1]), raw_score=True, pred_contrib=True)
        self.offset_ = float(contrib[0, -1])

    def _contrib(self, X: pd.DataFrame) -> np.ndarray:
        """Exact TreeSHAP per lead, tree by tree, once per group of leads that tree cannot tell apart.

        A tree's TreeSHAP values for a lead depend only on which side of each of that tree's splits the
        lead falls (the algorithm walks both branches of splits on fields outside a coalition and the
        lead's own branch inside it), and are zero for fields the tree does not split on. A tree of
        depth 5 splits a few fields at a few thresholds, so a million leads fall into a few hundred
        groups per tree: each tree is explained once per group and its values added to its fields. The
        sums are LightGBM's own pred_contrib up to the order of floating-point additions; explaining
        every lead through all trees was most of a first night's scoring time.
        """
        frame = self._frame(X)
        booster = self.booster_.booster_
        n, width = len(frame), frame.shape[1] + 1
        out = np.zeros((width, n))  # a row per field: each tree adds only to the fields it splits on
        if not n:
            return out.T
        trees = self._tree_splits()
        buckets = _ValueBuckets(frame, trees)
        # The numbers LightGBM makes of a pandas frame (category codes, missing as NaN), made once:
        # converting the frame again for each of the trees cost more than explaining them.
        matrix = np.column_stack([
            np.where(column.cat.codes.to_numpy() < 0, np.nan, column.cat.codes.to_numpy(dtype=float))
            if isinstance(column.dtype, pd.CategoricalDtype) else column.to_numpy(dtype=float)
            for _, column in frame.items()])
        threads = prediction_threads()
        for tree, splits in enumerate(trees):
            group, representative = buckets.groups(splits)
            values = booster.predict(matrix[representative], start_iteration=tree, num_iteration=1,
                                     raw_score=True, pred_contrib=True, num_threads=threads)
            for column in splits:
                out[column] += values[group, column]
            out[-1] += values[0, -1]  # the tree's expected value: the same for every lead
        return out.T

    def _tree_splits(self) -> list[dict[int, np.ndarray | None]]:
        """Per tree, the input columns (by position) it splits on: their thresholds, or None for a
        category. LightGBM's model dump writes thresholds with 17 digits, so they are the trees' doubles
        exactly."""
        if getattr(self, "splits_", None) is None:
            trees = []
            for info in self.booster_.booster_.dump_model()["tree_info"]:
                splits: dict[int, set | None] = {}
                nodes = [info["tree_structure"]]
                while nodes:
                    node = nodes.pop()
                    if "split_feature" in node:
                        column = node["split_feature"]
                        if node["decision_type"] == "<=":
                            splits.setdefault(column, set()).add(float(node["threshold"]))
                        else:
                            splits[column] = None
                        nodes += [node["left_child"], node["right_child"]]
                trees.append({c: None if v is None else np.array(sorted(v), dtype=float)
                              for c, v in sorted(splits.items())})
            self.splits_ = trees
        return self.splits_

    def _terms(self, X: pd.DataFrame) -> np.ndarray:
        return self._contrib(X)[:, :-1]

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The trees' raw log-odds: what the contributions sum to (TreeSHAP is exact), without computing them."""
        return self.booster_.predict(self._frame(X), raw_score=True, num_threads=prediction_threads())


# LightGBM sends values within this distance of zero down a split's default branch when zero is
# its missing value (kZeroThreshold in its sources), so zero's neighbourhood is a bucket of its own.
_LIGHTGBM_ZERO = 1e-35
_ZERO_EDGES = np.array([np.nextafter(-_LIGHTGBM_ZERO, -np.inf), _LIGHTGBM_ZERO])


class _ValueBuckets:
    """Groups of rows that one tree's splits send the same way.

    Each numeric column is bucketed once by every threshold any tree puts on it (a split is
    `value <= threshold`; missing values and zero's neighbourhood apart); a tree's coarser buckets are
    then a lookup from those, so grouping the rows per tree costs a few array operations.
    """

    def __init__(self, frame: pd.DataFrame, trees: list[dict[int, np.ndarray | None]]):
        self.n = len(frame)
        self.codes: dict[int, np.ndarray] = {}  # column -> bucket per row; 0 is missing
        self.edges: dict[int, np.ndarray] = {}
        self.categories: dict[int, int] = {}  # category column -> how many codes (missing included)
        used = sorted({c for splits in trees for c in splits})
        for column in used:
            values = frame.iloc[:, column]
            if isinstance(values.dtype, pd.CategoricalDtype):
                self.codes[column] = values.cat.codes.to_numpy(dtype=np.int64) + 1  # -1: missing
                self.categories[column] = len(values.cat.categories) + 1
                continue
            cuts = [splits[column] for splits in trees if splits.get(column) is not None]
            edges = np.union1d(np.concatenate(cuts) if cuts else np.empty(0), _ZERO_EDGES)
            numbers = values.to_numpy(dtype=float)
            self.codes[column] = np.where(np.isnan(numbers), 0, np.searchsorted(edges, numbers, side="left") + 1)
            self.edges[column] = edges

    def groups(self, splits: dict[int, np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        """(each row's group, a row of each group) for the tree whose splits are `splits`."""
        key = np.zeros(self.n, dtype=np.int64)
        size = 1
        for column, cuts in splits.items():
            codes = self.codes[column]
            if cuts is None:  # a category: its code
                bucket, radix = codes, self.categories[column]
            else:  # how many of this tree's edges lie below the value (edges are a subset of the column's)
                own = np.union1d(cuts, _ZERO_EDGES)
                lookup = np.concatenate([[0, 1], 1 + np.searchsorted(own, self.edges[column], side="right")])
                bucket, radix = lookup[codes], len(own) + 2
            if size * radix >= 2**62:  # renumber before the key could overflow
                key, uniques = pd.factorize(key, sort=False)
                key, size = key.astype(np.int64), len(uniques)
            key = key * radix + bucket
            size *= radix
        group, uniques = pd.factorize(key, sort=False)
        representative = np.empty(len(uniques), dtype=np.int64)
        representative[group] = np.arange(self.n)  # any row of a group will do: they are explained alike
        return group, representative


MODEL_CLASSES = {"naive_bayes": NaiveBayesModel, "logistic": LogisticModel, "lightgbm": LightGBMModel}
MODEL_ORDER = ["logistic", "naive_bayes", "lightgbm"]  # simplest first: kept on a tie
TIE_AUC = 0.002
# Exact TreeSHAP reasons cost about 0.02 ms per lead explained tree by tree (16 s at 800k leads on two
# cores, against a second or two for the linear models), and trees are harder to read: they must earn
# their place by this much AUC.
TREES_MARGIN_AUC = 0.005


def choose_champion(auc: dict[str, float]) -> str:
    """The best backtest AUC; the simpler model when within TIE_AUC, and trees only when TREES_MARGIN_AUC better."""
    score = {k: float(np.nan_to_num(v, nan=-1)) for k, v in auc.items()}
    linear = [k for k in score if k != "lightgbm"]
    if "lightgbm" in score and (not linear or score["lightgbm"] > max(score[k] for k in linear) + TREES_MARGIN_AUC):
        return "lightgbm"
    top = max(score[k] for k in linear)
    return next(k for k in MODEL_ORDER if k in linear and score[k] >= top - TIE_AUC)


# ---------------------------------------------------------------------------------------------- calibration
class Calibrator:
    """Log-odds -> probability: none (the model's own sigmoid), Platt sigmoid, or isotonic.

    Fitted on out-of-fold log-odds, so it sees scores of leads the model was not trained on.
    """

    def __init__(self, method: str):
        self.method = method

    def fit(self, z: np.ndarray, y: np.ndarray) -> "Calibrator":
        if self.method == "sigmoid":
            self.model_ = LogisticRegression(C=1e4).fit(np.asarray(z)[:, None], y)
        elif self.method == "isotonic":
            self.model_ = IsotonicRegression(y_min=1e-4, y_max=1 - 1e-4, out_of_bounds="clip").fit(z, y)
        return self

    def predict(self, z) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        if self.method == "sigmoid":
            return self.model_.predict_proba(z[:, None])[:, 1]
        if self.method == "isotonic":
            return self.model_.predict(z)
        return 1.0 / (1.0 + np.exp(-z))


def out_of_fold_logodds(kind: str, X: pd.DataFrame, y: np.ndarray, folds: int | None = None) -> np.ndarray:
    """Each training lead's log-odds from a model that did not see it: 5 folds, 3 on large histories."""
    from sklearn.model_selection import StratifiedKFold

    folds = folds or (5 if len(y) < 20_000 else 3)
    z = np.zeros(len(y))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=7).split(X, y):
        z[test] = MODEL_CLASSES[kind]().fit(X.iloc[train], y[train]).decision_function(X.iloc[test])
    return z


def fit_model(kind: str, X: pd.DataFrame, y: np.ndarray, methods) -> tuple[_FieldModel, dict]:
    """The model fitted on all of (X, y), and a calibrator per method fitted on out-of-fold log-odds."""
    base = MODEL_CLASSES[kind]().fit(X, y)
    oof = out_of_fold_logodds(kind, X, y) if any(m != "none" for m in methods) else None
    return base, {m: Calibrator(m).fit(oof, y) for m in methods}


@dataclass
class ScoringModel:
    """A trained, calibrated model with its version and backtest report."""
    kind: str
    version: str
    base: _FieldModel
    calibrator: Calibrator
    tiers: tuple
    report: dict = field(default_factory=dict)

    def probability(self, X: pd.DataFrame) -> np.ndarray:
        return np.clip(self.calibrator.predict(self.base.decision_function(X)), 0.0, 1.0)

    def score(self, X: pd.DataFrame, chunk: int = 250_000, reasons: bool = True) -> pd.DataFrame:
        """score = round(100 p); reasons: each field's share of (score - baseline), in tenths.

        reasons=False leaves them out (None) and skips the contributions: for the trees that is a
        plain prediction instead of TreeSHAP, a fraction of the cost.
        """
        if not reasons:
            p = self.probability(X)
            score = np.floor(100 * p + 0.5).astype(np.int64)
            return pd.DataFrame({"score": score, "tier": tier_of(score, self.tiers), "probability": p,
                                 "reasons": None, "model_version": self.version}, index=X.index)
        parts = [self._score_chunk(X.iloc[i:i + chunk]) for i in range(0, max(len(X), 1), chunk)]
        return pd.concat(parts) if parts else pd.DataFrame()

    def explain(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per lead: probability, score and the tenths of a point each factor adds (baseline, fields,
        rounding); the tenths sum to 10 x score exactly."""
        terms = self.base._terms(X)
        z = self.base.offset_ + terms.sum(axis=1)
        cal = self.calibrator
        p = np.clip(cal.predict(z), 0.0, 1.0)
        score = np.floor(100 * p + 0.5).astype(np.int64)
        b0 = self.base.baseline_
        p0 = float(np.clip(cal.predict(np.array([b0])), 0, 1)[0])
        contrib = terms - self.base.term_means_
        dz = z - b0
        # Points per unit of log-odds: the secant of the calibrated curve from the average lead to this
        # one, or its slope where the two are (almost) equal. Monotone calibration keeps its sign.
        near = np.abs(dz) < 1e-6
        slope_at = 1000 * (cal.predict(z + 1e-4) - cal.predict(z - 1e-4)) / 2e-4
        k = np.where(near, slope_at, 1000 * (p - p0) / np.where(near, 1.0, dz))
        real = np.column_stack([np.full(len(X), 1000 * p0), contrib * k[:, None], np.zeros(len(X))])
        real[:, -1] = 10 * score - real.sum(axis=1)  # rounding the probability to a whole score
        return p, score, integerize(real, 10 * score)

    def _score_chunk(self, X: pd.DataFrame) -> pd.DataFrame:
        p, score, tenths = self.explain(X)
        words = self.base.value_words(X)
        names = np.column_stack([np.zeros(len(X), np.int64), words, np.ones(len(X), np.int64)])
        return pd.DataFrame({
            "score": score, "tier": tier_of(score, self.tiers), "probability": p,
            "reasons": reasons_json(self.base.vocabulary(), tenths, decimals=1, name_codes=names),
            "model_version": self.version,
        }, index=X.index)


# ---------------------------------------------------------------------------------------------- history
def closed_leads(outcomes: pd.DataFrame, links: pd.DataFrame) -> pd.DataFrame:
    """One row per golden lead with an outcome: won (any won row) and closed_at (first win, else last loss)."""
    o = outcomes.dropna(subset=["outcome", "closed_at"])
    o = o[o["outcome"].isin(["won", "lost"])]
    keyed = links[["source_system", "source_id", "golden_id"]].drop_duplicates(["source_system", "source_id"])
    o = o.merge(keyed, on=["source_system", "source_id"], how="inner")
    if o.empty:
        return pd.DataFrame({"won": pd.Series(dtype=bool), "closed_at": pd.Series(dtype="datetime64[ns, UTC]")},
                            index=pd.Index([], name="golden_id"))
    o = o.assign(won=o["outcome"] == "won", closed_at=pd.to_datetime(o["closed_at"], utc=True))
    g = o.groupby("golden_id")
    won = g["won"].any()
    first_win = o[o["won"]].groupby("golden_id")["closed_at"].min()
    last_close = g["closed_at"].max()
    closed = first_win.reindex(won.index).fillna(last_close)
    return pd.DataFrame({"won": won, "closed_at": closed}).sort_values("closed_at", kind="stable")


def history_check(closed: pd.DataFrame, cfg: RipenessConfig) -> tuple[bool, str]:
    pc = cfg.predictive
    n, wins = len(closed), int(closed["won"].sum()) if len(closed) else 0
    losses = n - wins
    if not pc.enabled:
        return False, "predictive model disabled in the ripeness config"
    if n < pc.min_leads or wins < pc.min_conversions or losses < pc.min_conversions:
        return False, (f"history too thin for the predictive model: {n} closed leads (need {pc.min_leads}), "
                       f"{wins} conversions (need {pc.min_conversions}); scored with the rules model")
    return True, f"history: {n} closed leads, {wins} conversions"


def _model_config(cfg: RipenessConfig) -> bytes:
    """The config a learnt model depends on: all of it but routing and the retrain policy itself."""
    return json.dumps(cfg.model_dump(mode="json", exclude={"routing", "retrain"}), sort_keys=True).encode()


def fingerprint(ts: "TrainingSet", cfg: RipenessConfig) -> str:
    """What a stored model was trained from: the feature code, the config and the training rows.

    It names the model (its version) for audit. Whether a stored model is reused is decided by
    reuse_policy: a changed history alone does not retrain every night.
    """
    h = hashlib.sha1()
    h.update(FEATURE_SPEC.encode())
    h.update(_model_config(cfg))
    h.update(json.dumps([str(c) + ":" + str(ts.X[c].dtype) for c in ts.X.columns]).encode())
    h.update(pd.util.hash_pandas_object(ts.X.astype({c: "string" for c in ts.X.columns if ts.X[c].dtype == object}),
                                        index=True).to_numpy().tobytes())
    h.update(np.asarray(ts.y, dtype=np.int8).tobytes())
    h.update(ts.closed_at.astype("int64").to_numpy().tobytes())
    return h.hexdigest()[:8]


def model_inputs(X: pd.DataFrame, cfg: RipenessConfig) -> str:
    """What a model depends on besides the history: the feature code, the config and the fields
    (a new custom attribute is a new field). A stored model with other inputs is never reused."""
    h = hashlib.sha1()
    h.update(FEATURE_SPEC.encode())
    h.update(_model_config(cfg))
    h.update(json.dumps([[f.name, f.kind] for f in fields_of(X)]).encode())
    return h.hexdigest()[:8]


# ---------------------------------------------------------------------------------------------- metrics
def top_decile_lift(y: np.ndarray, score: np.ndarray) -> float:
    y = np.asarray(y, dtype=float)
    if len(y) == 0 or y.mean() == 0:
        return float("nan")
    k = max(1, int(np.ceil(0.1 * len(y))))
    top = np.argsort(-np.asarray(score, dtype=float), kind="stable")[:k]
    return float(y[top].mean() / y.mean())


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-count bins: sum of |mean p - rate| weighted by bin size."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if len(y) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    err = 0.0
    for part in np.array_split(order, bins):
        if len(part):
            err += len(part) * abs(p[part].mean() - y[part].mean())
    return float(err / len(y))


def metrics(y: np.ndarray, p: np.ndarray, score: np.ndarray | None = None) -> dict:
    score = p if score is None else score
    both = len(np.unique(y)) == 2
    return {"auc": float(roc_auc_score(y, score)) if both else float("nan"),
            "top_decile_lift": top_decile_lift(y, score),
            "calibration_error": calibration_error(y, p),
            "brier": float(brier_score_loss(y, p)) if both else float("nan"),
            "log_loss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])),
            "n": int(len(y)), "positives": int(np.sum(y))}


class RulesCalibration:
    """Platt scaling of the rules score on history, so the rules model carries a probability too."""

    def __init__(self, scores: np.ndarray, y: np.ndarray):
        self.lr = LogisticRegression(C=100.0).fit(np.asarray(scores, dtype=float)[:, None] / 100, y)

    def probability(self, scores) -> np.ndarray:
        return self.lr.predict_proba(np.asarray(scores, dtype=float)[:, None] / 100)[:, 1]


def _plots(folder, y: np.ndarray, p: np.ndarray, title: str) -> None:
    import matplotlib

    from slowburn import atomic
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if len(np.unique(y)) == 2:
        frac, mean = calibration_curve(y, p, n_bins=10, strategy="quantile")
        ax.plot(mean, frac, "o-", label=title)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed conversion rate")
    ax.set_title(f"Calibration on the backtest: {title}")
    ax.legend(loc="upper left")
    with atomic.replacing(folder / "calibration.png") as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = np.linspace(0, 100, 21)
    ax.hist(100 * p[y == 1], bins=bins, alpha=0.6, label="won", color="#4f9a4f")
    ax.hist(100 * p[y == 0], bins=bins, alpha=0.6, label="lost", color="#c0504d")
    ax.set_xlabel("score (100 x probability)")
    ax.set_ylabel("closed leads in the backtest")
    ax.set_title(f"Score distribution: {title}")
    ax.legend()
    with atomic.replacing(folder / "score_distribution.png") as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- training
@dataclass
class TrainingSet:
    """Closed golden leads in closed_at order with their model input, rules score and label."""
    X: pd.DataFrame
    y: np.ndarray
    closed_at: pd.Series
    rules_score: np.ndarray


def snapshot_times(closed: pd.DataFrame, attrs: pd.DataFrame) -> pd.Series:
    """The moment each closed lead is seen at: a fixed pseudo-random point of its open life.

    Open leads are scored in the middle of their lives, not at their close; a model trained on
    snapshots taken at the close learns what closing looks like (a burst of last touches) instead of
    what ripeness looks like. The fraction comes from a hash of golden_id, so it is reproducible.
    """
    created = pd.to_datetime(attrs["created_at"].reindex(closed.index), utc=True)
    closed_at = closed["closed_at"]
    frac = (pd.util.hash_array(closed.index.to_numpy(dtype=object)) % 10_000) / 10_000.0
    life = (closed_at - created).where(created < closed_at)
    cut = created + life * frac
    return cut.where(cut.notna(), closed_at).rename("snapshot_at")


def training_set(closed: pd.DataFrame, attrs: pd.DataFrame, linked_touches,
                 cfg: RipenessConfig) -> TrainingSet:
    from slowburn.ripeness.features import touch_features

    ids = closed.index
    cut = snapshot_times(closed, attrs)
    feats = touch_features(linked_touches, ids, cut, cfg)
    a = attrs.reindex(ids)
    X = design(a, feats)
    rules = RulesModel(cfg).factor_points(a, feats, cut).sum(axis=1).to_numpy()
    return TrainingSet(X=X, y=closed["won"].to_numpy(dtype=int), closed_at=closed["closed_at"], rules_score=rules)


def backtest(ts: TrainingSet, cfg: RipenessConfig) -> dict:
    """Train on the older closed leads, test on the newer: metrics for every model, calibration and rules.

    Each model's row reports the calibration with the lowest calibration error on the test set (all
    are listed under `calibrations`); `champion` is the model with the best AUC.
    """
    from slowburn.ripeness.scorecard import FittedScorecard

    n = len(ts.y)
    cut = int(round(n * (1 - cfg.predictive.test_share)))
    train, test = slice(0, cut), slice(cut, n)
    y_train, y_test = ts.y[train], ts.y[test]
    out = {"train": {"n": cut, "positives": int(y_train.sum()),
                     "closed_from": str(ts.closed_at.iloc[0]), "closed_to": str(ts.closed_at.iloc[cut - 1])},
           "test": {"n": n - cut, "positives": int(y_test.sum()),
                    "closed_from": str(ts.closed_at.iloc[cut]), "closed_to": str(ts.closed_at.iloc[-1])},
           "models": {}, "probabilities": {}}
    rules_cal = RulesCalibration(ts.rules_score[train], y_train)
    p_rules = rules_cal.probability(ts.rules_score[test])
    out["models"]["rules"] = metrics(y_test, p_rules, ts.rules_score[test])
    out["probabilities"]["rules"] = p_rules
    X_train, X_test = ts.X.iloc[train], ts.X.iloc[test]
    card = FittedScorecard.fit(X_train, y_train, cfg)
    card_train = card.score(X_train, reasons=False)["score"].to_numpy()
    card_test = card.score(X_test, reasons=False)["score"].to_numpy()
    p_card = RulesCalibration(card_train, y_train).probability(card_test)
    out["models"]["scorecard"] = metrics(y_test, p_card, card_test)
    out["probabilities"]["scorecard"] = p_card
    for kind in cfg.predictive.models:
        base, calibrators = fit_model(kind, X_train, y_train, cfg.predictive.calibration)
        z = base.decision_function(X_test)
        options = {m: metrics(y_test, np.clip(c.predict(z), 0, 1), z) for m, c in calibrators.items()}
        best = min(options, key=lambda m: (np.nan_to_num(options[m]["calibration_error"], nan=9), m != "none"))
        out["models"][kind] = {**options[best], "calibration": best,
                               "calibrations": {m: {k: v for k, v in o.items() if k in (
                                   "calibration_error", "brier", "log_loss")} for m, o in options.items()}}
        out["probabilities"][kind] = np.clip(calibrators[best].predict(z), 0, 1)
    out["champion"] = choose_champion({k: out["models"][k]["auc"] for k in cfg.predictive.models})
    out["y_test"] = y_test
    return out


def models_dir(home):
    """The model registry's folder under a slowburn.storage location (a local folder or a URL)."""
    from slowburn import storage
    return storage.location(home) / "models"


def _registry(folder) -> list[dict]:
    path = folder / "registry.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def _save_registry(folder, entries: list[dict]) -> None:
    from slowburn import atomic
    atomic.write_text(folder / "registry.json", json.dumps(entries, indent=2))


def model_folder(folder, entry: dict):
    """A registry entry's model folder: <models>/<version> (its recorded path is for people to read)."""
    return folder / entry["version"]


TRAINING_ROWS = "training_rows.parquet"


def _outcome_keys(ids, won, closed_at) -> np.ndarray:
    """One hash per closed lead's (golden_id, won, closed_at): a new or changed outcome is a new key."""
    at = pd.to_datetime(pd.Series(closed_at).reset_index(drop=True), utc=True).astype("datetime64[ns, UTC]")
    frame = pd.DataFrame({"golden_id": pd.Series(np.asarray(ids, dtype=object)).astype("string"),
                          "won": np.asarray(won, dtype=bool), "closed_at": at.astype("int64")})
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def store_model(folder, model, entry: dict, ts: TrainingSet):
    """Save a trained model (model.joblib), the closed leads it learnt from, and its registry entry.

    entry holds at least version, kind, digest (fingerprint), inputs (model_inputs) and trained_at.
    Returns the model's folder.
    """
    import joblib

    from slowburn import atomic

    target = model_folder(folder, entry)
    with atomic.replacing(target / "model.joblib") as tmp:
        joblib.dump(model, tmp)
    rows = pd.DataFrame({"golden_id": pd.Series(ts.X.index.to_numpy(dtype=object)).astype("string"),
                         "won": ts.y.astype(bool), "closed_at": ts.closed_at.to_numpy()})
    with atomic.replacing(target / TRAINING_ROWS) as tmp:
        rows.to_parquet(tmp, index=False)
    entries = [e for e in _registry(folder) if e.get("digest") != entry["digest"]]
    entries.append({**entry, "closed_leads": int(len(ts.y)), "path": str(target)})
    _save_registry(folder, entries)
    return target


def new_outcomes(folder, entry: dict, closed: pd.DataFrame) -> int:
    """Closed leads in `closed` whose outcome the model did not learn from: new closes, changed outcomes."""
    path = model_folder(folder, entry) / TRAINING_ROWS
    if not path.exists():
        return len(closed)
    with path.open("rb") as fh:
        seen = pd.read_parquet(fh)
    return int((~np.isin(_outcome_keys(closed.index, closed["won"], closed["closed_at"]),
                         _outcome_keys(seen["golden_id"], seen["won"], seen["closed_at"]))).sum())


def reuse_policy(folder, inputs: str, closed: pd.DataFrame, as_of: pd.Timestamp,
                 cfg: RipenessConfig) -> tuple[dict | None, str]:
    """The stored model to reuse tonight (its registry entry), or None; and why, for the log.

    Reused: the newest model trained at or before as_of (never one that saw later history) with the
    same feature code, config and fields, younger than retrain.max_age_days, and fewer new or changed
    outcomes since than retrain.min_new_outcomes_fraction x its training rows. Retraining nightly
    on a history that grew by a few rows costs minutes at scale and changes nothing that matters.
    """
    as_of = pd.Timestamp(as_of)
    r = cfg.retrain
    entries = [e for e in _registry(folder) if "trained_at" in e and pd.Timestamp(e["trained_at"]) <= as_of
               and (model_folder(folder, e) / "model.joblib").exists()]
    if not entries:
        return None, "no stored model trained at or before this run"
    same = [e for e in entries if e.get("inputs") == inputs]
    if not same:
        newest = max(entries, key=lambda e: pd.Timestamp(e["trained_at"]))
        return None, f"the feature code, fields or ripeness config changed since {newest['version']} was trained"
    entry = max(reversed(same), key=lambda e: pd.Timestamp(e["trained_at"]))  # ties: the last stored
    age = (as_of - pd.Timestamp(entry["trained_at"])) / pd.Timedelta(days=1)
    if age >= r.max_age_days:
        return None, f"{entry['version']} is {age:.1f} days old (retrain.max_age_days: {r.max_age_days:g})"
    new = new_outcomes(folder, entry, closed)
    limit = r.min_new_outcomes_fraction * entry["closed_leads"]
    if new >= limit:
        return None, (f"{new:,} new or changed outcomes since {entry['version']} was trained on "
                      f"{entry['closed_leads']:,} closed leads (retrain.min_new_outcomes_fraction: "
                      f"{r.min_new_outcomes_fraction:g}, so {limit:,.0f})")
    return entry, (f"reused {entry['version']}: {age:.1f} days old, {new:,} new or changed outcomes "
                   f"(retrain at {limit:,.0f} or {r.max_age_days:g} days)")


def entry_with_digest(folder, digest: str) -> dict | None:
    """The stored model trained on exactly these rows, config and features: retraining would remake it."""
    for e in reversed(_registry(folder)):
        if e.get("digest") == digest and (model_folder(folder, e) / "model.joblib").exists():
            return e
    return None


def load_model(folder, entry: dict, cfg: RipenessConfig, tiers: tuple):
    """A stored model (ScoringModel or FittedScorecard) with tonight's tiers; None if its feature code is stale."""
    import joblib

    with (model_folder(folder, entry) / "model.joblib").open("rb") as fh:
        model = joblib.load(fh)
    spec = model.report.get("feature_spec") if isinstance(model, ScoringModel) else entry.get("feature_spec")
    if spec != FEATURE_SPEC:
        return None
    model.tiers = tiers
    return model


def _jsonable(bt: dict) -> dict:
    return {k: v for k, v in bt.items() if k not in ("probabilities", "y_test")}


def train_and_store(ts: TrainingSet, cfg: RipenessConfig, as_of: pd.Timestamp, folder,
                    digest: str, inputs: str | None = None) -> ScoringModel:
    """Backtest every configured model and calibration, refit the champion on the whole history, store it."""
    bt = backtest(ts, cfg)
    kind = bt["champion"]
    method = bt["models"][kind]["calibration"]
    version = f"{kind}-{pd.Timestamp(as_of):%Y%m%d}-{digest}"
    base, calibrators = fit_model(kind, ts.X, ts.y, (method,))
    report = {
        "version": version, "kind": kind, "trained_at": str(as_of), "fingerprint": digest,
        "feature_spec": FEATURE_SPEC, "calibration": method,
        "history": {"closed_leads": int(len(ts.y)), "conversions": int(ts.y.sum())},
        "backtest": {"split": "time: train on the older closed leads, test on the newer (by closed_at)",
                     "train": bt["train"], "test": bt["test"], "metrics": bt["models"][kind],
                     "champion": kind, "all_models": bt["models"]},
        "fields": [f.label for f in base.fields_],
    }
    model = ScoringModel(kind=kind, version=version, base=base, calibrator=calibrators[method],
                         tiers=cfg.predictive.tiers.as_tuple(), report=report)
    target = store_model(folder, model, {
        "version": version, "kind": kind, "champion": True, "digest": digest, "inputs": inputs,
        "feature_spec": FEATURE_SPEC, "trained_at": str(as_of), "auc": bt["models"][kind]["auc"],
        "calibration": method}, ts)
    from slowburn import atomic
    atomic.write_text(target / "report.json", json.dumps(report, indent=2, default=float))
    _plots(target, bt["y_test"], bt["probabilities"][kind], f"{kind} ({method})")
    log.info("predictive: champion %s (%s); backtest AUC %s", kind, method,
             {k: round(v["auc"], 3) for k, v in bt["models"].items()})
    return model
