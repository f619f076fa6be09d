"""The ripeness YAML: parsed and validated, with errors that name the key and the allowed values.

RevOps edits include/config/ripeness.yaml (or the file SLOWBURN_RIPENESS points at). A mistake there
must stop the run with a message a person can act on, never score leads with half a config.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from slowburn.contracts import LEAD_SOURCES, LEAD_STAGES, TOUCH_TYPES

# The seeds' source rank: form fills, target-page visits, email engagement, event lists, purchased lists.
SOURCE_RANK = ("form_fill", "target_page", "email", "event", "purchased_list")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MODEL_KINDS = ("naive_bayes", "logistic", "lightgbm")
CALIBRATIONS = ("none", "sigmoid", "isotonic")


class RipenessConfigError(ValueError):
    """The ripeness YAML is invalid. The message names the file, the key and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _allowed(kind: str, values) -> str:
    return f"allowed {kind}: {', '.join(values)}"


class Tiers(_Strict):
    hot: float = Field(70, ge=0, le=100)
    warm: float = Field(45, ge=0, le=100)
    cool: float = Field(25, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self):
        if not self.hot > self.warm > self.cool > 0:
            raise ValueError(f"thresholds must satisfy hot > warm > cool > 0 (got hot={self.hot}, "
                             f"warm={self.warm}, cool={self.cool})")
        return self

    def as_tuple(self) -> tuple[tuple[str, float], ...]:
        return (("hot", self.hot), ("warm", self.warm), ("cool", self.cool), ("cold", 0.0))


def _valid_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from None
    return pattern


class SeniorityLevel(_Strict):
    level: str
    points: float
    pattern: str

    _compiles = field_validator("pattern")(classmethod(lambda cls, v: _valid_regex(v)))


class TargetAccounts(_Strict):
    points: float = Field(10, ge=0)
    domains: tuple[str, ...] = ()


class Countries(_Strict):
    points: dict[str, float] = Field(default_factory=dict)
    other: float = 0

    @field_validator("points")
    @classmethod
    def _iso(cls, v: dict) -> dict:
        bad = [k for k in v if not re.fullmatch(r"[A-Z]{2}", str(k))]
        if bad:
            raise ValueError(f"country keys must be ISO 3166-1 alpha-2 codes like US or GB (got {bad})")
        return v


def _check_keys(v: dict, allowed, kind: str) -> dict:
    bad = [k for k in v if k not in allowed]
    if bad:
        raise ValueError(f"unknown {kind} {bad}; {_allowed(kind + 's', allowed)}")
    return v


class Fit(_Strict):
    weight: float = Field(1.0, ge=0)
    lead_source: dict[str, float]
    title_seniority: tuple[SeniorityLevel, ...] = ()
    corporate_email: float = 5
    company_known: float = 0
    target_accounts: TargetAccounts = TargetAccounts()
    countries: Countries = Countries()

    @field_validator("lead_source")
    @classmethod
    def _sources(cls, v: dict) -> dict:
        _check_keys(v, LEAD_SOURCES, "lead source")
        ranked = [(s, v.get(s, 0.0)) for s in SOURCE_RANK]
        for (a, pa_), (b, pb) in zip(ranked, ranked[1:]):
            if pb > pa_:
                raise ValueError(f"points must follow the source rank {' >= '.join(SOURCE_RANK)} "
                                 f"(got {b}={pb} > {a}={pa_})")
        return v


class Recency(_Strict):
    within_days: float = Field(gt=0)
    points: float


class ContactPattern(_Strict):
    min: int = Field(5, ge=1)
    max: int = Field(12, ge=1)
    points: float = 5

    @model_validator(mode="after")
    def _range(self):
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must be at most max ({self.max})")
        return self


class BuyingStage(_Strict):
    lookback_days: float = Field(90, gt=0)
    demo_request: float = 0
    pricing_page_view: float = 0
    stage: dict[str, float] = Field(default_factory=dict)

    @field_validator("stage")
    @classmethod
    def _stages(cls, v: dict) -> dict:
        return _check_keys(v, LEAD_STAGES, "stage")


class Engagement(_Strict):
    weight: float = Field(1.0, ge=0)
    half_life_days: float = Field(30, gt=0)
    cap: float = Field(40, gt=0)
    touch_points: dict[str, float]
    recency: tuple[Recency, ...] = ()
    contact_pattern: ContactPattern = ContactPattern()
    buying_stage: BuyingStage = BuyingStage()

    @field_validator("touch_points")
    @classmethod
    def _touches(cls, v: dict) -> dict:
        return _check_keys(v, TOUCH_TYPES, "touch type")

    @field_validator("recency")
    @classmethod
    def _windows(cls, v: tuple) -> tuple:
        days = [r.within_days for r in v]
        if len(set(days)) != len(days):
            raise ValueError(f"within_days must be distinct (got {days})")
        return tuple(sorted(v, key=lambda r: r.within_days))


class Negative(_Strict):
    email_bounce: float = Field(-20, le=0)
    unsubscribe: float = Field(-15, le=0)
    competitor: float = Field(-40, le=0)
    competitor_domains: tuple[str, ...] = ()


class Predictive(_Strict):
    enabled: bool = True
    min_leads: int = Field(1000, ge=1)
    min_conversions: int = Field(120, ge=1)
    models: tuple[str, ...] = MODEL_KINDS
    # Calibrations the backtest chooses from (lowest calibration error on the test set wins).
    calibration: tuple[Literal["none", "sigmoid", "isotonic"], ...] = CALIBRATIONS
    test_share: float = Field(0.25, gt=0, lt=1)
    tiers: Tiers = Tiers(hot=90, warm=70, cool=45)

    @field_validator("calibration", mode="before")
    @classmethod
    def _calibrations(cls, v):
        v = (v,) if isinstance(v, str) else v
        if not v:
            raise ValueError(f"list at least one calibration; {_allowed('calibrations', CALIBRATIONS)}")
        return v

    @field_validator("models")
    @classmethod
    def _kinds(cls, v: tuple) -> tuple:
        if not v:
            raise ValueError(f"list at least one model; {_allowed('models', MODEL_KINDS)}")
        bad = [m for m in v if m not in MODEL_KINDS]
        if bad:
            raise ValueError(f"unknown model {bad}; {_allowed('models', MODEL_KINDS)}")
        return v


class Scorecard(_Strict):
    """The transparent tier learnt from history: points per field value from a regularised logistic fit."""
    enabled: bool = True
    min_leads: int = Field(300, ge=50)       # closed leads needed; below this the hand-set points score
    min_conversions: int = Field(50, ge=10)  # wins (and losses) needed
    C: float = Field(0.3, gt=0)              # inverse regularisation strength of the logistic fit


class Retrain(_Strict):
    """When the stored models are retrained. A model is reused while the feature code and this config
    are unchanged, it is younger than max_age_days, and fewer than min_new_outcomes_fraction x its
    training rows have closed (or changed outcome) since; else it is retrained. Retraining nightly
    costs minutes at a million leads and moves every score a little for no new information."""
    max_age_days: float = Field(7, gt=0)
    min_new_outcomes_fraction: float = Field(0.05, ge=0)


class Workday(_Strict):
    start_hour: int = Field(9, ge=0, le=23)
    end_hour: int = Field(17, ge=1, le=24)
    days: tuple[str, ...] = WEEKDAYS[:5]

    @field_validator("days")
    @classmethod
    def _days(cls, v: tuple) -> tuple:
        bad = [d for d in v if d not in WEEKDAYS]
        if bad or not v:
            raise ValueError(f"unknown day {bad}; {_allowed('days', WEEKDAYS)}")
        return v

    @model_validator(mode="after")
    def _span(self):
        if self.start_hour >= self.end_hour:
            raise ValueError(f"start_hour ({self.start_hour}) must be before end_hour ({self.end_hour})")
        return self


class Interest(_Strict):
    interest: str
    pattern: str

    _compiles = field_validator("pattern")(classmethod(lambda cls, v: _valid_regex(v)))


class Routing(_Strict):
    sla_hours: float = Field(1, gt=0)
    workday: Workday = Workday()
    cadence_days: int = Field(14, ge=1)
    cold_cadence_days: int = Field(30, ge=1)
    default_daily_capacity: int = Field(25, ge=0)
    interests: tuple[Interest, ...] = ()


class RipenessConfig(_Strict):
    name: str = "default"
    tiers: Tiers = Tiers()
    fit: Fit
    engagement: Engagement
    negative: Negative = Negative()
    predictive: Predictive = Predictive()
    scorecard: Scorecard = Scorecard()
    retrain: Retrain = Retrain()
    routing: Routing = Routing()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", v):
            raise ValueError("use 1-40 letters, digits, '_', '.' or '-'")
        return v

    @property
    def digest(self) -> str:
        """A short hash of the rules: any edit gives a new model version."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:8]

    @property
    def rules_version(self) -> str:
        return f"rules-{self.name}-{self.digest}"


def default_path() -> Path:
    env = os.environ.get("SLOWBURN_RIPENESS")
    if env:
        return Path(env)
    from slowburn.warehouse import include_dir
    return include_dir() / "config" / "ripeness.yaml"


def parse_config(data, source: str = "ripeness config") -> RipenessConfig:
    """Validate a parsed YAML document; RipenessConfigError lists every problem by key."""
    if not isinstance(data, dict):
        raise RipenessConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return RipenessConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; see include/config/ripeness.yaml for every key)"
            elif err["type"] == "missing":
                msg = "required key is missing"
            elif err["type"] == "literal_error":
                msg = f"got {err.get('input')!r}; {msg.lower()}"
            lines.append(f"  {key}: {msg}")
        raise RipenessConfigError(f"{source} is invalid:\n" + "\n".join(lines)) from None


def load_config(path: str | Path | None = None) -> RipenessConfig:
    path = Path(path) if path else default_path()
    if not path.is_file():
        raise RipenessConfigError(f"{path} not found: set SLOWBURN_RIPENESS to the ripeness YAML "
                                  "(the default is include/config/ripeness.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RipenessConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_config(data, str(path))
