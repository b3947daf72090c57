"""The health model as a CS ops person writes it in YAML, validated by pydantic.

Shapes here are the *syntax*; `metrics.definitions` resolves tables, columns and references.
"""

from __future__ import annotations

import hashlib
import json
import typing as t

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from accounthealth.config.durations import parse_days
from accounthealth.config.playbooks import DEFAULT_PLAYBOOKS, OverridePolicy, Playbooks

METRIC_KINDS = (
    "count",
    "distinct",
    "sum",
    "avg",
    "latest",
    "days_since",
    "exists",
    "attribute",
    "ratio",
    "change",
)
SCORE_FUNCTIONS = ("linear", "bands", "percentile", "boolean")


def _exactly_one(model: BaseModel, options: tuple[str, ...], what: str) -> str:
    """The one option set on ``model``; a clear error when none or several are."""
    given = [k for k in options if getattr(model, k) is not None]
    if len(given) != 1:
        raise ValueError(
            f"give exactly one {what} ({', '.join(options)}), "
            f"got {len(given)}: {', '.join(given) or 'none'}"
        )
    return given[0]


Days = t.Annotated[int, BeforeValidator(parse_days)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _number(value: t.Any) -> float:
    """Band thresholds may be written 10, 0.5 or '-20%'."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number such as 10, 0.5 or '-20%', got {value!r}") from None


class Linear(Strict):
    """0 at ``bad``, 100 at ``good``, straight line between, clipped; bad > good inverts it."""

    bad: float
    good: float

    @field_validator("bad", "good", mode="before")
    @classmethod
    def _num(cls, v: t.Any) -> float:
        return _number(v)

    @model_validator(mode="after")
    def _distinct(self) -> Linear:
        if self.bad == self.good:
            raise ValueError("'bad' and 'good' must differ")
        return self


class Percentile(Strict):
    """Rank within a cohort of peers on the same date: 100 = best of the cohort."""

    within: t.Literal["all", "segment", "tenure", "plan", "owner"] = "all"
    higher_is_better: bool = True
    tenure_buckets: tuple[int, ...] = (90, 180, 365, 730)


class BooleanScore(Strict):
    """Score for a true and a false value."""

    true: float = Field(100, ge=0, le=100, alias="true")
    false: float = Field(0, ge=0, le=100, alias="false")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _yaml_bools(cls, data: t.Any) -> t.Any:
        # YAML reads the keys `true:`/`false:` as booleans.
        if isinstance(data, dict):
            return {
                ("true" if k is True else "false" if k is False else k): v for k, v in data.items()
            }
        return data


class ScoreSpec(Strict):
    """Exactly one scoring function."""

    linear: Linear | None = None
    bands: dict[float, float] | None = None
    percentile: Percentile | None = None
    boolean: BooleanScore | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: t.Any) -> t.Any:
        if data == "boolean":
            return {"boolean": {}}
        if data == "percentile":
            return {"percentile": {}}
        if isinstance(data, dict) and isinstance(data.get("bands"), dict):
            bands = {}
            for k, v in data["bands"].items():
                bands[_number(k)] = _number(v)
            return {**data, "bands": bands}
        return data

    @model_validator(mode="after")
    def _one(self) -> ScoreSpec:
        _exactly_one(self, SCORE_FUNCTIONS, "scoring function")
        if self.bands is not None:
            if not self.bands:
                raise ValueError("'bands' needs at least one threshold: score pair")
            for score in self.bands.values():
                if not 0 <= score <= 100:
                    raise ValueError(f"band scores must be between 0 and 100, got {score}")
        return self

    @property
    def function(self) -> str:
        return next(f for f in SCORE_FUNCTIONS if getattr(self, f) is not None)


class DefaultScore(Strict):
    default: float = Field(ge=0, le=100)


MissingPolicy = t.Literal["redistribute", "unknown"] | DefaultScore

Ref = t.Union[str, "MetricSpec"]


class MetricSpec(Strict):
    """One metric: exactly one kind key, its options, and (when scored) a scoring function."""

    count: str | None = None
    distinct: str | None = None
    sum: str | None = None
    avg: str | None = None
    latest: str | None = None
    days_since: str | None = None
    exists: str | None = None
    attribute: str | None = None
    ratio: tuple[Ref, Ref] | None = None
    change: Ref | None = None

    where: str | None = None
    window: Days | None = None
    active: bool = False
    time: str | None = None
    until: str | None = None

    score: ScoreSpec | None = None
    missing: MissingPolicy = "redistribute"
    weight: float = Field(1.0, gt=0)
    label: str | None = None
    description: str | None = None
    format: t.Literal["number", "percent", "days", "money", "yes_no"] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> MetricSpec:
        _exactly_one(self, METRIC_KINDS, "metric kind")
        if self.active and self.window is not None:
            raise ValueError("'active' (rows open on the date) and 'window' exclude each other")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in METRIC_KINDS if getattr(self, k) is not None)

    def display_label(self, name: str) -> str:
        """How explanations name the metric: its label, else its name in words."""
        return self.label or name.replace("_", " ")

    @property
    def display_format(self) -> str:
        """How explanations print the value: the given format, else one suited to the kind."""
        defaults = {"change": "percent", "days_since": "days", "exists": "yes_no"}
        return self.format or defaults.get(self.kind, "number")


class Component(Strict):
    """A group of metrics with a weight in the overall score."""

    weight: float = Field(gt=0)
    label: str | None = None
    description: str | None = None
    metrics: dict[str, MetricSpec]

    @field_validator("metrics")
    @classmethod
    def _non_empty(cls, v: dict[str, MetricSpec]) -> dict[str, MetricSpec]:
        if not v:
            raise ValueError("a component needs at least one metric")
        for name, spec in v.items():
            if spec.score is None:
                raise ValueError(
                    f"metric '{name}' needs a 'score:' function to count in a component"
                )
        return v


# A score this close below a tier bound reaches it: a weighted mean can land on 69.99999999999999
# where the arithmetic says 70, and float noise must not decide a tier.
TIER_TOLERANCE = 1e-9


class Tier(Strict):
    name: str
    min: float = Field(ge=0, le=100)


DEFAULT_TIERS = (Tier(name="Green", min=70), Tier(name="Yellow", min=40), Tier(name="Red", min=0))


def _tiers(value: t.Any) -> t.Any:
    """Accept {green: 70, yellow: 40} as well as a list of {name, min}."""
    if isinstance(value, dict):
        tiers = [{"name": str(k).capitalize(), "min": v} for k, v in value.items()]
        if all(float(tier["min"]) > 0 for tier in tiers):
            tiers.append({"name": "Red", "min": 0})
        return tiers
    return value


def _check_tiers(tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
    ordered = tuple(sorted(tiers, key=lambda tier: -tier.min))
    if ordered[-1].min != 0:
        raise ValueError("the lowest tier must start at 0 so that every score has a tier")
    names = [tier.name for tier in ordered]
    if len(set(names)) != len(names) or len({tier.min for tier in ordered}) != len(ordered):
        raise ValueError("tier names and lower bounds must be unique")
    return ordered


Tiers = t.Annotated[tuple[Tier, ...], BeforeValidator(_tiers), AfterValidator(_check_tiers)]


class TrendTiers(Strict):
    """The optional 4-tier model: split one middle tier into Stable and Declining by trend."""

    split: str = "Yellow"
    stable: str = "Stable"
    declining: str = "Declining"
    days: Days = 30
    drop: float = Field(5, gt=0, description="points lost over `days` that make it Declining")


class Renewal(Strict):
    """Renewal proximity: within ``within_days`` of renewal, the risk (100 - score) is multiplied
    by up to ``1 + amplify`` (linearly, reaching the maximum on the renewal date)."""

    within_days: Days = 90
    amplify: float = Field(0.5, ge=0, le=3)


class ChurnProbability(Strict):
    """A churn probability beside every score: P(churn within ``horizon`` days) =
    logistic(intercept + slope x score), fitted by `accounthealth calibrate` on outcomes up to
    ``fitted_until``. A higher score must not mean more churn, so slope is at most 0."""

    horizon: Days = 90
    intercept: float
    slope: float = Field(le=0)
    fitted_until: str | None = None


class Rollup(Strict):
    """How a parent account's score is made from its children's."""

    method: t.Literal["mean", "arr_weighted"] = "arr_weighted"
    include_parent: bool = True


class Segment(Strict):
    """A segment with its own weights, components, tiers or renewal settings."""

    when: str
    description: str | None = None
    # Above 0, as a component's own weight: a segment whose weights summed to 0 divided by it.
    weights: dict[str, t.Annotated[float, Field(gt=0)]] = Field(default_factory=dict)
    components: dict[str, Component | None] = Field(default_factory=dict)
    tiers: Tiers | None = None
    renewal: Renewal | None = None


class HealthModel(Strict):
    """The whole health model."""

    name: str = "health"
    description: str | None = None
    tiers: Tiers = DEFAULT_TIERS
    trend_tiers: TrendTiers | None = None
    trends: tuple[int, ...] = (7, 30, 90)
    renewal: Renewal | None = None
    rollup: Rollup | None = None
    churn_probability: ChurnProbability | None = None
    signals: dict[str, MetricSpec] = Field(default_factory=dict)
    components: dict[str, Component]
    segments: dict[str, Segment] = Field(default_factory=dict)
    playbooks: Playbooks | None = Field(
        None, description="rules that act on health changes (absent: the default playbooks)"
    )
    overrides: OverridePolicy = OverridePolicy()

    @field_validator("components")
    @classmethod
    def _non_empty(cls, v: dict[str, Component]) -> dict[str, Component]:
        if not v:
            raise ValueError("the model needs at least one component")
        return v

    @model_validator(mode="after")
    def _names(self) -> HealthModel:
        if self.trend_tiers and self.trend_tiers.split not in {tier.name for tier in self.tiers}:
            raise ValueError(
                f"trend_tiers.split names tier '{self.trend_tiers.split}', which is not one of "
                f"the tiers: {', '.join(tier.name for tier in self.tiers)}"
            )
        return self

    def version(self) -> str:
        """A fingerprint of everything that changes scores; descriptions and labels excluded,
        and so are playbooks and the override policy, which act on scores without changing
        them."""
        payload = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        payload = {k: v for k, v in payload.items() if k not in ("playbooks", "overrides")}
        return _fingerprint(_strip_metadata(payload))

    def effective_playbooks(self) -> Playbooks:
        """The model's playbooks, or the default ones when it has no `playbooks:` section."""
        return self.playbooks or Playbooks.model_validate(DEFAULT_PLAYBOOKS)

    def playbooks_version(self) -> str:
        """A fingerprint of the playbooks in force (recorded with every rule firing)."""
        return _fingerprint(self.effective_playbooks().model_dump(mode="json", by_alias=True))


def _fingerprint(payload: t.Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


_METADATA_KEYS = {"description", "label", "format"}


def _strip_metadata(value: t.Any, top: bool = True) -> t.Any:
    if isinstance(value, dict):
        return {
            k: _strip_metadata(v, top=False)
            for k, v in value.items()
            if k not in _METADATA_KEYS and not (top and k == "name")
        }
    if isinstance(value, list):
        return [_strip_metadata(v, top=False) for v in value]
    return value


MetricSpec.model_rebuild()
