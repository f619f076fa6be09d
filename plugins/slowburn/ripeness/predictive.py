"""The predictive model: conversion probability learnt from won and lost outcomes.

Two scikit-learn models, both calibrated, both backtested on time: train on older closed leads,
test on newer ones.

* ``naive_bayes``: the frequency model Odoo's predictive lead scoring uses: for every field value,
  how often it came with a win and with a loss (scikit-learn's CategoricalNB, numbers binned).
  Per-lead reasons are each field's log-odds (log P(value | won) - log P(value | lost)).
* ``logistic``: a regularised logistic regression on one-hot categories and scaled counts. Per-lead
  reasons are each field's coefficient x (its value - the average lead's).

Either is calibrated (Platt or isotonic, on the newest fifth of the training window) and used only
when the history is deep enough (by default 1,000 closed leads and 120 wins, as Salesforce's
Einstein lead scoring asks); otherwise the rules model scores and the run says why.

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
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV, calibration_curve
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score
from sklearn.naive_bayes import CategoricalNB

from slowburn.ripeness.config import RipenessConfig
from slowburn.ripeness.reasons import integerize, reasons_json
from slowburn.ripeness.rules import RulesModel, tier_of

log = logging.getLogger(__name__)

FEATURE_SPEC = "v2"
HOUR_NS = 3600 * 10**9
BASELINE_FACTOR = "baseline (average closed lead)"

# (column, label shown in reasons, kind): cat = categorical, count = touches of one kind, bin = 0/1,
# num = continuous.
FIELDS = (
    ("lead_source", "lead source", "cat"),
    ("seniority", "title seniority", "cat"),
    ("country", "country", "cat"),
    ("corporate_email", "corporate email", "bin"),
    ("touch_band", "contacts so far", "cat"),
    ("rep_band", "rep contacts", "cat"),
    ("fast_response", "rep responded within an hour", "bin"),
    ("n_form_fill", "form fills", "count"),
    ("n_pricing_page_view", "pricing page views", "count"),
    ("n_demo_request", "demo requests", "count"),
    ("n_meeting", "meetings", "count"),
    ("n_email_click", "email clicks", "count"),
    ("n_email_open", "email opens", "count"),
    ("n_page_view", "page views", "count"),
    ("n_event_attended", "events attended", "count"),
    ("n_call", "calls", "count"),
    ("n_rep_email", "rep emails", "count"),
    ("engagement", "engagement (decayed)", "num"),
    ("idle_days", "days since last touch", "num"),
    ("bounced", "email bounced", "bin"),
    ("opted_out", "opted out of email", "bin"),
)
FIELD_NAMES = [f[0] for f in FIELDS]
FIELD_LABELS = [f[1] for f in FIELDS]
_TOUCH_BANDS = ([0, 1, 2, 3, 5, 9, 13], ["0", "1", "2", "3-4", "5-8", "9-12", "13+"])
_REP_BANDS = ([0, 1, 2, 3], ["0", "1", "2", "3+"])
_COUNT_BINS = [0, 1, 2, 3]           # naive Bayes: 0, 1, 2, 3+
_ENGAGEMENT_BINS = [0, 1, 3, 7, 15, 30]
_IDLE_BINS = [0, 2, 7, 14, 30, 60, 120]


def _band(values: np.ndarray, edges, labels) -> np.ndarray:
    idx = np.searchsorted(np.asarray(edges), np.asarray(values, dtype=float), side="right") - 1
    return np.asarray(labels, dtype=object)[np.clip(idx, 0, len(labels) - 1)]


def design(attrs: pd.DataFrame, feats: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns (FIELD_NAMES) per lead, from lead_attributes and touch_features."""
    f = attrs.join(feats, how="left")
    touches = f["touches"].fillna(0).to_numpy(dtype=float)
    reps = f["rep_touches"].fillna(0).to_numpy(dtype=float)
    first_rep = pd.to_datetime(f["first_rep_touch_at"], utc=True)
    created = pd.to_datetime(f["created_at"], utc=True)
    fast = ((first_rep - created) <= pd.Timedelta(hours=1)).fillna(False).to_numpy(dtype=bool)
    out = pd.DataFrame(index=f.index)
    out["lead_source"] = f["lead_source"].astype("string").fillna("other").to_numpy(dtype=object)
    out["seniority"] = f["seniority"].astype("string").fillna("none").to_numpy(dtype=object)
    out["country"] = f["country_code"].astype("string").fillna("unknown").to_numpy(dtype=object)
    out["corporate_email"] = f["corporate_email"].to_numpy(dtype=float)
    out["touch_band"] = _band(touches, *_TOUCH_BANDS)
    out["rep_band"] = _band(reps, *_REP_BANDS)
    out["fast_response"] = fast.astype(float)
    for name, _, kind in FIELDS:
        if kind == "count":
            out[name] = f[name].fillna(0).to_numpy(dtype=float)
    out["engagement"] = f["engagement"].fillna(0).to_numpy(dtype=float)
    last = pd.to_datetime(f["last_touch_at"], utc=True)
    idle = (pd.to_datetime(f["cutoff_at"], utc=True) - last).dt.total_seconds() / 86400
    out["idle_days"] = idle.fillna(365.0).clip(0, 365).to_numpy(dtype=float)
    out["bounced"] = f["bounced"].fillna(False).to_numpy(dtype=float)
    opted = f["unsubscribed"].fillna(False).to_numpy(dtype=bool) | f["email_opt_out"].fillna(False).to_numpy(dtype=bool)
    out["opted_out"] = opted.astype(float)
    return out[FIELD_NAMES]


class _FieldModel(BaseEstimator, ClassifierMixin):
    """Shared by both models: a linear score in log-odds that splits into one term per field."""

    def _terms(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

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

    def _finish(self, X: pd.DataFrame):
        self.classes_ = np.array([0, 1])
        self.term_means_ = self._terms(X).mean(axis=0)
        self.baseline_ = float(self.offset_ + self.term_means_.sum())
        return self


def _categories(values: np.ndarray, min_count: int) -> list:
    counts = pd.Series(values).value_counts()
    return sorted(counts[counts >= min_count].index.tolist())


def _codes(values: np.ndarray, cats: list) -> np.ndarray:
    """Index of each value in cats; unknown values get len(cats)."""
    codes = pd.Categorical(np.asarray(values, dtype=object), categories=cats).codes.astype(np.int64)
    codes[codes < 0] = len(cats)
    return codes


class NaiveBayesModel(_FieldModel):
    """Odoo-style frequency model: CategoricalNB over binned fields."""

    def __init__(self, alpha: float = 1.0, min_count: int = 10):
        self.alpha = alpha
        self.min_count = min_count

    def _binned(self, X: pd.DataFrame, name: str, kind: str) -> np.ndarray:
        v = X[name].to_numpy()
        if kind == "count":
            return _band(v, _COUNT_BINS, ["0", "1", "2", "3+"])
        if kind == "num":
            edges = _IDLE_BINS if name == "idle_days" else _ENGAGEMENT_BINS
            return _band(v, edges, [f"{a}+" for a in edges])
        if kind == "bin":
            return np.where(v.astype(float) > 0, "yes", "no").astype(object)
        return v.astype(object)

    def fit(self, X: pd.DataFrame, y):
        y = np.asarray(y, dtype=int)
        self.cats_ = {}
        codes = []
        for name, _, kind in FIELDS:
            v = self._binned(X, name, kind)
            self.cats_[name] = _categories(v, self.min_count)
            codes.append(_codes(v, self.cats_[name]))
        self.nb_ = CategoricalNB(alpha=self.alpha, min_categories=[len(self.cats_[n]) + 1 for n in FIELD_NAMES])
        self.nb_.fit(np.column_stack(codes), y)
        self.llr_ = [lp[1] - lp[0] for lp in self.nb_.feature_log_prob_]
        self.offset_ = float(self.nb_.class_log_prior_[1] - self.nb_.class_log_prior_[0])
        return self._finish(X)

    def _terms(self, X: pd.DataFrame) -> np.ndarray:
        cols = []
        for i, (name, _, kind) in enumerate(FIELDS):
            cols.append(self.llr_[i][_codes(self._binned(X, name, kind), self.cats_[name])])
        return np.column_stack(cols)


class LogisticModel(_FieldModel):
    """L2 logistic regression on one-hot categories and standardised log counts."""

    def __init__(self, C: float = 0.5, min_count: int = 20):
        self.C = C
        self.min_count = min_count

    def _numeric(self, X: pd.DataFrame, name: str, kind: str) -> np.ndarray:
        v = X[name].to_numpy(dtype=float)
        return np.log1p(np.maximum(v, 0)) if kind in ("count", "num") else v

    def fit(self, X: pd.DataFrame, y):
        y = np.asarray(y, dtype=int)
        self.cats_, self.mu_, self.sd_ = {}, {}, {}
        blocks, owner = [], []
        for i, (name, _, kind) in enumerate(FIELDS):
            if kind == "cat":
                cats = _categories(X[name].to_numpy(), self.min_count)
                self.cats_[name] = cats
                codes = _codes(X[name].to_numpy(), cats)
                onehot = np.zeros((len(X), len(cats)))
                known = codes < len(cats)
                onehot[np.flatnonzero(known), codes[known]] = 1.0
                blocks.append(onehot)
                owner += [i] * len(cats)
            else:
                v = self._numeric(X, name, kind)
                self.mu_[name], self.sd_[name] = float(v.mean()), float(v.std() or 1.0)
                blocks.append(((v - self.mu_[name]) / self.sd_[name])[:, None])
                owner.append(i)
        self.lr_ = LogisticRegression(C=self.C, max_iter=2000).fit(np.hstack(blocks), y)
        coef = self.lr_.coef_[0]
        owner = np.array(owner)
        self.weights_ = {}
        for i, (name, _, kind) in enumerate(FIELDS):
            w = coef[owner == i]
            self.weights_[name] = np.r_[w, 0.0] if kind == "cat" else float(w[0])
        self.offset_ = float(self.lr_.intercept_[0])
        return self._finish(X)

    def _terms(self, X: pd.DataFrame) -> np.ndarray:
        cols = []
        for name, _, kind in FIELDS:
            if kind == "cat":
                cols.append(self.weights_[name][_codes(X[name].to_numpy(), self.cats_[name])])
            else:
                cols.append(self.weights_[name] * (self._numeric(X, name, kind) - self.mu_[name]) / self.sd_[name])
        return np.column_stack(cols)


MODEL_CLASSES = {"naive_bayes": NaiveBayesModel, "logistic": LogisticModel}


def fit_calibrated(kind: str, X: pd.DataFrame, y: np.ndarray, method: str, cal_share: float = 0.2):
    """Fit the base model on the older part of (X, y) (rows in time order) and calibrate it on the newer."""
    n = len(X)
    cut = int(round(n * (1 - cal_share)))
    base = MODEL_CLASSES[kind]().fit(X.iloc[:cut], y[:cut])
    calibrated = CalibratedClassifierCV(FrozenEstimator(base), method=method).fit(X.iloc[cut:], y[cut:])
    return base, calibrated


@dataclass
class ScoringModel:
    """A trained, calibrated model with its version and backtest report."""
    kind: str
    version: str
    base: _FieldModel
    calibrated: CalibratedClassifierCV
    tiers: tuple
    report: dict = field(default_factory=dict)

    def probability(self, X: pd.DataFrame) -> np.ndarray:
        return self.calibrated.predict_proba(X)[:, 1]

    def _calibrator(self):
        return self.calibrated.calibrated_classifiers_[0].calibrators[0]

    def score(self, X: pd.DataFrame, chunk: int = 250_000) -> pd.DataFrame:
        """score = round(100 p); reasons: each field's share of (score - baseline), in tenths."""
        parts = [self._score_chunk(X.iloc[i:i + chunk]) for i in range(0, max(len(X), 1), chunk)]
        return pd.concat(parts) if parts else pd.DataFrame()

    def _score_chunk(self, X: pd.DataFrame) -> pd.DataFrame:
        terms = self.base._terms(X)
        z = self.base.offset_ + terms.sum(axis=1)
        calibrator = self._calibrator()
        p = np.clip(calibrator.predict(z), 0.0, 1.0)
        score = np.floor(100 * p + 0.5).astype(np.int64)
        b0 = self.base.baseline_
        p0 = float(np.clip(calibrator.predict(np.array([b0])), 0, 1)[0])
        contrib = terms - self.base.term_means_
        dz = z - b0
        # Points per unit of log-odds: the secant of the calibrated curve from the average lead to this
        # one, or its slope where the two are (almost) equal. Monotone calibration keeps its sign.
        eps = 1e-9
        near = np.abs(dz) < 1e-6
        slope_at = 1000 * (calibrator.predict(z + 1e-4) - calibrator.predict(z - 1e-4)) / 2e-4
        k = np.where(near, slope_at, 1000 * (p - p0) / np.where(near, 1.0, dz + eps * np.sign(dz)))
        real = np.column_stack([np.full(len(X), 1000 * p0), contrib * k[:, None], np.zeros(len(X))])
        real[:, -1] = 10 * score - real.sum(axis=1)  # rounding the probability to a whole score
        tenths = integerize(real, 10 * score)
        return pd.DataFrame({
            "score": score, "tier": tier_of(score, self.tiers), "probability": p,
            "reasons": reasons_json([BASELINE_FACTOR, *FIELD_LABELS, "rounding"], tenths, decimals=1),
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


def fingerprint(closed: pd.DataFrame, cfg: RipenessConfig) -> str:
    h = hashlib.sha1()
    h.update(FEATURE_SPEC.encode())
    h.update(json.dumps(cfg.predictive.model_dump(mode="json"), sort_keys=True).encode())
    h.update(json.dumps(cfg.engagement.model_dump(mode="json"), sort_keys=True).encode())
    h.update(pd.util.hash_pandas_object(closed.reset_index()[["golden_id", "won", "closed_at"]],
                                        index=False).to_numpy().tobytes())
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


def _plots(folder: Path, y: np.ndarray, p: np.ndarray, title: str) -> None:
    import matplotlib
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
    fig.savefig(folder / "calibration.png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = np.linspace(0, 100, 21)
    ax.hist(100 * p[y == 1], bins=bins, alpha=0.6, label="won", color="#4f9a4f")
    ax.hist(100 * p[y == 0], bins=bins, alpha=0.6, label="lost", color="#c0504d")
    ax.set_xlabel("score (100 x probability)")
    ax.set_ylabel("closed leads in the backtest")
    ax.set_title(f"Score distribution: {title}")
    ax.legend()
    fig.savefig(folder / "score_distribution.png", dpi=90, bbox_inches="tight")
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
    """Train on the older closed leads, test on the newer: metrics for every model and for the rules."""
    n = len(ts.y)
    cut = int(round(n * (1 - cfg.predictive.test_share)))
    train, test = slice(0, cut), slice(cut, n)
    y_test = ts.y[test]
    out = {"train": {"n": cut, "positives": int(ts.y[train].sum()),
                     "closed_from": str(ts.closed_at.iloc[0]), "closed_to": str(ts.closed_at.iloc[cut - 1])},
           "test": {"n": n - cut, "positives": int(y_test.sum()),
                    "closed_from": str(ts.closed_at.iloc[cut]), "closed_to": str(ts.closed_at.iloc[-1])},
           "models": {}, "probabilities": {}}
    rules_cal = RulesCalibration(ts.rules_score[train], ts.y[train])
    p_rules = rules_cal.probability(ts.rules_score[test])
    out["models"]["rules"] = metrics(y_test, p_rules, ts.rules_score[test])
    out["probabilities"]["rules"] = p_rules
    for kind in cfg.predictive.models:
        _, calibrated = fit_calibrated(kind, ts.X.iloc[train], ts.y[train], cfg.predictive.calibration)
        p = calibrated.predict_proba(ts.X.iloc[test])[:, 1]
        out["models"][kind] = metrics(y_test, p)
        out["probabilities"][kind] = p
    out["y_test"] = y_test
    return out


def models_dir(home: Path) -> Path:
    return Path(home) / "models"


def _registry(folder: Path) -> list[dict]:
    path = folder / "registry.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def _save_registry(folder: Path, entries: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "registry.json.tmp"
    tmp.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    tmp.replace(folder / "registry.json")


def train_and_store(ts: TrainingSet, cfg: RipenessConfig, as_of: pd.Timestamp, folder: Path,
                    digest: str) -> ScoringModel:
    """Backtest every configured model, refit each on the whole history, store all, return the champion."""
    import joblib

    bt = backtest(ts, cfg)
    y_test = bt["y_test"]
    kinds = list(cfg.predictive.models)
    champion = max(kinds, key=lambda k: (np.nan_to_num(bt["models"][k]["auc"], nan=-1), k == "logistic"))
    entries = [e for e in _registry(folder) if e.get("digest") != digest]
    chosen = None
    tiers = cfg.predictive.tiers.as_tuple()
    for kind in kinds:
        version = f"{kind}-{pd.Timestamp(as_of):%Y%m%d}-{digest}"
        base, calibrated = fit_calibrated(kind, ts.X, ts.y, cfg.predictive.calibration)
        report = {
            "version": version, "kind": kind, "champion": kind == champion, "trained_at": str(as_of),
            "feature_spec": FEATURE_SPEC, "calibration": cfg.predictive.calibration,
            "history": {"closed_leads": int(len(ts.y)), "conversions": int(ts.y.sum())},
            "backtest": {"split": "time: train on the older closed leads, test on the newer (by closed_at)",
                         "train": bt["train"], "test": bt["test"], "metrics": bt["models"][kind],
                         "rules_model_on_same_test": bt["models"]["rules"],
                         "other_models": {k: v for k, v in bt["models"].items() if k not in (kind, "rules")}},
            "fields": FIELD_LABELS,
        }
        target = folder / version
        target.mkdir(parents=True, exist_ok=True)
        model = ScoringModel(kind=kind, version=version, base=base, calibrated=calibrated, tiers=tiers, report=report)
        joblib.dump(model, target / "model.joblib")
        (target / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        _plots(target, y_test, bt["probabilities"][kind], kind)
        entries.append({"version": version, "kind": kind, "champion": kind == champion, "digest": digest,
                        "trained_at": str(as_of), "closed_leads": int(len(ts.y)),
                        "auc": bt["models"][kind]["auc"], "path": str(target)})
        if kind == champion:
            chosen = model
    _save_registry(folder, entries)
    log.info("predictive: trained %s; backtest AUC %s", ", ".join(kinds),
             {k: round(v["auc"], 3) for k, v in bt["models"].items()})
    return chosen


def reusable(folder: Path, cfg: RipenessConfig, as_of: pd.Timestamp, n_closed: int) -> ScoringModel | None:
    """The latest champion trained within reuse_days on a history of similar size, if any."""
    import joblib

    as_of = pd.Timestamp(as_of)
    for e in sorted(_registry(folder), key=lambda e: e["trained_at"], reverse=True):
        if not e.get("champion"):
            continue
        age = (as_of - pd.Timestamp(e["trained_at"])) / pd.Timedelta(days=1)
        similar = abs(e["closed_leads"] - n_closed) <= cfg.predictive.reuse_size_tolerance * max(n_closed, 1)
        path = Path(e["path"]) / "model.joblib"
        if 0 <= age <= cfg.predictive.reuse_days and similar and path.exists():
            model = joblib.load(path)
            if model.report.get("feature_spec") == FEATURE_SPEC and model.kind in cfg.predictive.models:
                model.tiers = cfg.predictive.tiers.as_tuple()
                return model
    return None
