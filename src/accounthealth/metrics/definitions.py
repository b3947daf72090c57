"""Resolve the health model's metric specs into definitions the compute layer evaluates.

This is where table, column and metric names are checked (with 'did you mean' hints) and where
named references (`ratio: [active_users, licensed_seats]`) are followed.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field, replace

from accounthealth.config.loader import LoadedModel
from accounthealth.config.model import (
    Component,
    DefaultScore,
    HealthModel,
    MetricSpec,
    Renewal,
    ScoreSpec,
    Tier,
)
from accounthealth.errors import ConfigError, did_you_mean
from accounthealth.metrics.filters import Filter, parse_filter
from accounthealth.sources.schema import DATE, DERIVED_FACTS, TABLES, TIMESTAMP

AGGREGATES = ("count", "distinct", "sum", "avg", "latest", "days_since", "exists")
# Kinds that need a value column, and the types that column may have.
_VALUE_COLUMN = {"distinct": None, "sum": "numeric", "avg": "numeric", "latest": "numeric"}


@dataclass(frozen=True)
class Aggregate:
    """An aggregate of one table's rows known on the as-of date.

    ``window`` days back (None = all history); ``offset`` shifts the window further back (the
    previous window of a `change`); ``active`` keeps rows open on the date (start <= date and
    end empty or after it) instead of a window.
    """

    kind: str
    table: str
    column: str | None
    time: str
    where: Filter | None = None
    window: int | None = None
    offset: int = 0
    active: bool = False
    until: str | None = None


@dataclass(frozen=True)
class Attribute:
    """A column of the account (segment, licensed_seats, ...) or a derived fact (arr, ...)."""

    name: str


@dataclass(frozen=True)
class Ratio:
    numerator: Definition
    denominator: Definition


@dataclass(frozen=True)
class Change:
    """Relative change of ``base`` over its window versus the window before it."""

    current: Definition
    previous: Definition


Definition = Aggregate | Attribute | Ratio | Change


def leaves(defn: Definition) -> list[Aggregate | Attribute]:
    """The aggregates and attributes a definition is computed from."""
    if isinstance(defn, Ratio):
        return leaves(defn.numerator) + leaves(defn.denominator)
    if isinstance(defn, Change):
        return leaves(defn.current) + leaves(defn.previous)
    return [defn]


def _shift(defn: Definition, days: int, where: str) -> Definition:
    if isinstance(defn, Aggregate):
        return replace(defn, offset=defn.offset + days)
    if isinstance(defn, Ratio):
        return Ratio(_shift(defn.numerator, days, where), _shift(defn.denominator, days, where))
    if isinstance(defn, Change):
        return Change(_shift(defn.current, days, where), _shift(defn.previous, days, where))
    if isinstance(defn, Attribute):
        return defn  # attributes are not time-versioned: compared with themselves.
    raise AssertionError(defn)


def _window_of(defn: Definition) -> int | None:
    windows = [leaf.window for leaf in leaves(defn) if isinstance(leaf, Aggregate) and leaf.window]
    return max(windows) if windows else None


@dataclass(frozen=True)
class Metric:
    """A scored metric in a component."""

    name: str
    component: str
    definition: Definition
    spec: MetricSpec
    score: ScoreSpec
    weight: float
    missing: str | DefaultScore

    @property
    def label(self) -> str:
        return self.spec.display_label(self.name)

    @property
    def format(self) -> str:
        return self.spec.display_format


@dataclass(frozen=True)
class ScoredComponent:
    name: str
    weight: float
    label: str
    metrics: tuple[Metric, ...]


@dataclass(frozen=True)
class ScoringModel:
    """The model one segment of accounts is scored with (the default model has no filter)."""

    segment: str
    when: Filter | None
    components: tuple[ScoredComponent, ...]
    tiers: tuple[Tier, ...]
    renewal: Renewal | None

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return tuple(m for c in self.components for m in c.metrics)


@dataclass(frozen=True)
class ResolvedModel:
    """The health model with every name resolved: one scoring model per segment, default last."""

    model: HealthModel
    version: str
    segments: tuple[ScoringModel, ...]
    account_columns: tuple[str, ...] = field(default=())

    @property
    def lookback_days(self) -> int:
        """How far back the model reads from an as-of date (its longest window and offset)."""
        spans = [
            (leaf.window or 0) + leaf.offset
            for metric in self.metrics.values()
            for leaf in leaves(metric.definition)
            if isinstance(leaf, Aggregate)
        ]
        return max(spans, default=0)

    @property
    def metrics(self) -> dict[str, Metric]:
        """Every metric of every segment by name (same name, same definition across segments
        unless a segment redefines it: then the segment-qualified name is used)."""
        out: dict[str, Metric] = {}
        for seg in self.segments:
            for metric in seg.metrics:
                out.setdefault(metric.name, metric)
        return out


class _Resolver:
    def __init__(self, loaded: LoadedModel, account_columns: t.Sequence[str]) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.account_columns = tuple(account_columns)
        # Each filter parsed once however many segments' metrics use it: parsing one took
        # 0.13 ms, and the demo model's five scoring models parsed 45 at every run's start.
        self._filters: dict[tuple[str, str], Filter] = {}

    def where(self, *path: str | int) -> str:
        return self.loaded.where(*path)

    def table_columns(self, table: str) -> tuple[str, ...]:
        if table == "accounts":
            return tuple(dict.fromkeys((*TABLES["accounts"].column_names, *self.account_columns)))
        return TABLES[table].column_names

    def spec(
        self,
        spec: MetricSpec,
        path: tuple[str | int, ...],
        named: t.Mapping[str, tuple[MetricSpec, tuple[str | int, ...]]],
        stack: tuple[str, ...] = (),
    ) -> Definition:
        kind = spec.kind
        value = getattr(spec, kind)
        if kind in AGGREGATES:
            return self.aggregate(kind, value, spec, path)
        if kind == "attribute":
            return self.attribute(value, (*path, "attribute"))
        if kind == "ratio":
            return Ratio(
                self.ref(value[0], (*path, "ratio", 0), named, stack),
                self.ref(value[1], (*path, "ratio", 1), named, stack),
            )
        base = self.ref(value, (*path, "change"), named, stack)
        window = _window_of(base)
        if window is None:
            raise ConfigError(
                "'change' compares a window with the one before it, but its metric has no window",
                where=self.where(*path, "change"),
                fix="give the metric a window, e.g. change: {count: events, window: 28d}",
            )
        return Change(base, _shift(base, window, self.where(*path)))

    def ref(
        self,
        ref: str | MetricSpec,
        path: tuple[str | int, ...],
        named: t.Mapping[str, tuple[MetricSpec, tuple[str | int, ...]]],
        stack: tuple[str, ...],
    ) -> Definition:
        if isinstance(ref, MetricSpec):
            return self.spec(ref, path, named, stack)
        if ref in stack:
            raise ConfigError(
                f"metric '{ref}' refers to itself through {' -> '.join((*stack, ref))}",
                where=self.where(*path),
                fix="break the cycle",
            )
        if ref in named:
            spec, spec_path = named[ref]
            return self.spec(spec, spec_path, named, (*stack, ref))
        if ref in self.attribute_names():
            return Attribute(ref)
        raise ConfigError(
            f"unknown metric, signal or account attribute '{ref}'",
            where=self.where(*path),
            fix=did_you_mean(ref, [*named, *self.attribute_names()]),
        )

    def attribute_names(self) -> list[str]:
        return [*self.table_columns("accounts"), *DERIVED_FACTS]

    def attribute(self, name: str, path: tuple[str | int, ...]) -> Attribute:
        name = name.removeprefix("accounts.")
        if name not in self.attribute_names():
            raise ConfigError(
                f"unknown account attribute '{name}'",
                where=self.where(*path),
                fix=did_you_mean(name, self.attribute_names()),
            )
        return Attribute(name)

    def aggregate(
        self, kind: str, value: str, spec: MetricSpec, path: tuple[str | int, ...]
    ) -> Aggregate:
        at = self.where(*path, kind)
        table_name, _, column = value.partition(".")
        if table_name not in TABLES:
            raise ConfigError(
                f"unknown table '{table_name}' in {kind}: {value}",
                where=at,
                fix=did_you_mean(table_name, TABLES),
            )
        table = TABLES[table_name]
        columns = self.table_columns(table_name)

        def check_column(name: str, where: str, types: t.Collection[str] | None = None) -> str:
            if name not in columns:
                raise ConfigError(
                    f"table '{table_name}' has no column '{name}'",
                    where=where,
                    fix=did_you_mean(name, columns),
                )
            if types and name in table.column_names and table.column(name).type not in types:
                raise ConfigError(
                    f"column '{table_name}.{name}' is {table.column(name).type}, "
                    f"not one of {', '.join(types)}",
                    where=where,
                    fix="pick a column of the right type",
                )
            return name

        time = table.time
        if kind in _VALUE_COLUMN:
            if not column:
                raise ConfigError(
                    f"'{kind}' needs a table and a column, like {kind}: {table_name}.<column>",
                    where=at,
                    fix=f"columns of {table_name}: {', '.join(columns)}",
                )
            numeric = ("int64", "float64", "boolean")
            check_column(column, at, numeric if _VALUE_COLUMN[kind] else None)
        elif kind == "days_since" and column:
            time = check_column(column, at, (DATE, TIMESTAMP))
        elif column:
            raise ConfigError(
                f"'{kind}' takes a table, not a column: {kind}: {table_name}",
                where=at,
                fix=f"write {kind}: {table_name} and filter rows with where:",
            )
        if spec.time:
            time = check_column(spec.time, self.where(*path, "time"), (DATE, TIMESTAMP))
        until = None
        if spec.active:
            until = spec.until or table.end
            if until is None:
                raise ConfigError(
                    f"'active' needs an end column, and table '{table_name}' has none by default",
                    where=self.where(*path, "active"),
                    fix="name the column that closes a row with until: <column>",
                )
            check_column(until, self.where(*path, "until"), (DATE, TIMESTAMP))
        elif spec.until:
            raise ConfigError(
                "'until' only applies to active rows",
                where=self.where(*path, "until"),
                fix="add active: true, or remove until:",
            )
        where = None
        if spec.where:
            # A filter that does not parse, or names an unknown column, raises the first time.
            key = (spec.where, table_name)
            if key not in self._filters:
                self._filters[key] = parse_filter(spec.where, columns, self.where(*path, "where"))
            where = self._filters[key]
        return Aggregate(
            kind=kind,
            table=table_name,
            column=column or None,
            time=time,
            where=where,
            window=spec.window,
            active=spec.active,
            until=until,
        )

    def scoring_model(
        self,
        segment: str,
        when: Filter | None,
        components: dict[str, tuple[Component, tuple[str | int, ...]]],
        weights: dict[str, float],
        tiers: tuple[Tier, ...],
        renewal: Renewal | None,
    ) -> ScoringModel:
        named: dict[str, tuple[MetricSpec, tuple[str | int, ...]]] = {
            name: (spec, ("signals", name)) for name, spec in self.model.signals.items()
        }
        for component, cpath in components.values():
            for mname, spec in component.metrics.items():
                if mname in named and named[mname][1][0] != "signals":
                    raise ConfigError(
                        f"metric name '{mname}' is used twice",
                        where=self.where(*cpath, "metrics", mname),
                        fix="give each metric a unique name",
                    )
                named[mname] = (spec, (*cpath, "metrics", mname))
        scored = []
        for cname, (component, cpath) in components.items():
            metrics = []
            for mname, spec in component.metrics.items():
                mpath = (*cpath, "metrics", mname)
                defn = self.spec(spec, mpath, named, (mname,))
                assert spec.score is not None  # Component validation requires it
                if spec.score.boolean is None and spec.kind == "exists":
                    raise ConfigError(
                        "an 'exists' metric is yes/no: score it with 'score: boolean'",
                        where=self.where(*mpath, "score"),
                        fix="use score: boolean, or {boolean: {true: 0, false: 100}} to invert",
                    )
                metrics.append(
                    Metric(mname, cname, defn, spec, spec.score, spec.weight, spec.missing)
                )
            scored.append(
                ScoredComponent(
                    cname,
                    weights.get(cname, component.weight),
                    component.label or cname.replace("_", " "),
                    tuple(metrics),
                )
            )
        return ScoringModel(segment, when, tuple(scored), tiers, renewal)


def population_columns(account_columns: t.Sequence[str]) -> tuple[str, ...]:
    """Columns a segment `when:` filter may use: account columns and derived facts."""
    return tuple(
        dict.fromkeys((*TABLES["accounts"].column_names, *account_columns, *DERIVED_FACTS))
    )


# The name of the model that scores the accounts no segment's condition matches.
DEFAULT_SEGMENT = "default"


def resolve(loaded: LoadedModel, account_columns: t.Sequence[str] = ()) -> ResolvedModel:
    """Check every name in the model and build one scoring model per segment."""
    resolver = _Resolver(loaded, account_columns)
    model = loaded.model
    base = {name: (c, ("components", name)) for name, c in model.components.items()}
    segments = []
    for seg_name, seg in model.segments.items():
        path = ("segments", seg_name)
        if seg_name == DEFAULT_SEGMENT:
            raise ConfigError(
                f"a segment cannot be named '{DEFAULT_SEGMENT}'",
                where=loaded.where(*path),
                fix=f"rename it: '{DEFAULT_SEGMENT}' is the model of accounts no segment matches",
            )
        when = parse_filter(
            seg.when, population_columns(account_columns), loaded.where(*path, "when")
        )
        components = dict(base)
        for cname, component in seg.components.items():
            if component is None:
                components.pop(cname, None)
            else:
                components[cname] = (component, (*path, "components", cname))
        for cname in seg.weights:
            if cname not in components:
                raise ConfigError(
                    f"segment '{seg_name}' sets a weight for unknown component '{cname}'",
                    where=loaded.where(*path, "weights", cname),
                    fix=did_you_mean(cname, components),
                )
        if not components:
            raise ConfigError(
                f"segment '{seg_name}' removes every component",
                where=loaded.where(*path),
                fix="keep at least one component",
            )
        segments.append(
            resolver.scoring_model(
                seg_name,
                when,
                components,
                seg.weights,
                seg.tiers or model.tiers,
                seg.renewal or model.renewal,
            )
        )
    segments.append(
        resolver.scoring_model(DEFAULT_SEGMENT, None, base, {}, model.tiers, model.renewal)
    )
    return ResolvedModel(model, model.version(), tuple(segments), tuple(account_columns))
