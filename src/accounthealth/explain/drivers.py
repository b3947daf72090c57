"""Contributions of each component and metric, and drivers of change between two dates.

Contributions are in score points and add up to the score before renewal proximity, so a change
in the score splits exactly into changes of component contributions plus the renewal term.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import typing as t
from dataclasses import dataclass, field

import pandas as pd

from accounthealth.config.model import HealthModel
from accounthealth.engine.base import Engine
from accounthealth.errors import NotFoundError
from accounthealth.sources.schema import TABLES
from accounthealth.store.scores import current


@dataclass(frozen=True)
class MetricPart:
    name: str
    label: str
    format: str
    value: float | None
    score: float | None
    present: bool
    share: float
    contribution: float


@dataclass(frozen=True)
class ComponentPart:
    name: str
    label: str
    score: float | None
    share: float
    contribution: float
    metrics: tuple[MetricPart, ...]


@dataclass(frozen=True)
class Change:
    """Score movement since an earlier date, split by component."""

    since: dt.date
    before: float | None
    after: float | None
    by_component: dict[str, float]
    sentence: str


@dataclass(frozen=True)
class Explanation:
    account_id: str
    name: str | None
    as_of: dt.date
    model_version: str
    score: float | None
    own_score: float | None
    base_score: float | None
    renewal_adjustment: float
    tier: str | None
    coverage: float
    segment_model: str
    arr: float | None
    days_to_renewal: int | None
    rollup_children: int
    components: tuple[ComponentPart, ...]
    changes: tuple[Change, ...] = ()
    freshness: dict[str, dt.date | None] = field(default_factory=dict)
    churn_probability: float | None = None
    override: dict[str, t.Any] | None = None

    def summary(self) -> str:
        """The change sentences, one per line."""
        return "\n".join(c.sentence for c in self.changes)

    def risk_factors(self, top: int = 3) -> list[tuple[str, float]]:
        """The components that cost the score the most points (share x (100 - score)): what
        drives the churn risk, biggest first."""
        lost = [
            (c.label, c.share * (100 - c.score)) for c in self.components if c.score is not None
        ]
        return sorted((x for x in lost if x[1] > 0.05), key=lambda x: -x[1])[:top]


def format_value(value: float | None, fmt: str) -> str:
    """A metric value as a CSM would read it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "no data"
    if fmt == "percent":
        return f"{value * 100:+.0f}%"
    if fmt == "days":
        return "1 day" if round(value) == 1 else f"{value:.0f} days"
    if fmt == "yes_no":
        return "yes" if value else "no"
    if fmt == "money":
        return f"{value:,.0f}"
    if float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.2f}"


def _labels(engine: Engine, version: str) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """Component labels and metric (label, format) for a model version, from its stored
    definition, so old history is described with the words of the model that produced it."""
    rows = engine.sql("SELECT definition FROM model_versions WHERE model_version = ?", [version])
    if not rows:
        return {}, {}
    model = HealthModel.model_validate(json.loads(rows[0][0]))
    comps: dict[str, str] = {}
    metrics: dict[str, tuple[str, str]] = {}
    all_components = [model.components] + [
        {k: v for k, v in s.components.items() if v is not None} for s in model.segments.values()
    ]
    for components in all_components:
        for cname, comp in components.items():
            comps.setdefault(cname, comp.label or cname.replace("_", " "))
            for mname, spec in comp.metrics.items():
                metrics.setdefault(mname, (spec.display_label(mname), spec.display_format))
    return comps, metrics


def _in_order(frame: pd.DataFrame, column: str, names: t.Iterable[str]) -> pd.DataFrame:
    """``frame`` with its rows in the order of ``names`` by ``column`` (others last)."""
    rank = {name: i for i, name in enumerate(names)}
    return frame.sort_values(column, key=lambda c: c.map(rank), kind="stable", na_position="last")


def _parts(
    engine: Engine, account_id: str, as_of: dt.date, version: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    comps = engine.table("component_scores")
    mets = engine.table("metric_values")
    c = engine.execute(
        comps.filter(
            (comps.account_id == account_id)
            & (comps.as_of == as_of)
            & (comps.model_version == version)
        )
    )
    m = engine.execute(
        mets.filter(
            (mets.account_id == account_id)
            & (mets.as_of == as_of)
            & (mets.model_version == version)
        )
    )
    return c, m


def _num(value: t.Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return None
    return float(value)


def _points(delta: float) -> str:
    return f"{delta:+.0f}"


def _change(
    engine: Engine,
    now: pd.Series,
    now_parts: tuple[pd.DataFrame, pd.DataFrame],
    then: pd.Series,
    labels: tuple[dict[str, str], dict[str, tuple[str, str]]],
) -> Change:
    comp_labels, metric_labels = labels
    account_id, since = now["account_id"], then["as_of"]
    c_now, m_now = now_parts
    c_then, m_then = _parts(engine, account_id, since, then["model_version"])
    comp_now = dict(zip(c_now["component"], c_now["score"], strict=True))
    comp_then = dict(zip(c_then["component"], c_then["score"], strict=True))
    contrib_now = dict(zip(c_now["component"], c_now["contribution"], strict=True))
    contrib_then = dict(zip(c_then["component"], c_then["contribution"], strict=True))
    by_component = {
        k: contrib_now.get(k, 0.0) - contrib_then.get(k, 0.0)
        for k in dict.fromkeys([*contrib_now, *contrib_then])
    }
    before, after = _num(then["score"]), _num(now["score"])
    since_text = since.isoformat() if hasattr(since, "isoformat") else str(since)
    if before is None or after is None:
        sentence = (
            f"No comparable score on {since_text}: the score was unknown on one of the dates."
        )
        return Change(since, before, after, by_component, sentence)
    delta = after - before
    verb = "rose" if delta > 0.5 else "fell" if delta < -0.5 else "held steady"
    head = f"Score {verb}"
    if verb != "held steady":
        head += f" {abs(delta):.0f} points"
    head += f" since {since_text} ({before:.0f} → {after:.0f})"
    m_now_i = m_now.set_index("metric")
    m_then_i = m_then.set_index("metric")
    reasons = []
    for comp, d in sorted(by_component.items(), key=lambda kv: -abs(kv[1])):
        if abs(d) < 0.5 or len(reasons) >= 3:
            continue
        names = [
            n
            for n in m_now_i.index.union(m_then_i.index)
            if _component_of(n, m_now_i, m_then_i) == comp
        ]
        best = _driver(names, m_now_i, m_then_i, comp_now.get(comp), comp_then.get(comp))
        text = f"{comp_labels.get(comp, comp)} {_points(d)}"
        if best is not None:
            label, fmt = metric_labels.get(best, (best.replace("_", " "), "number"))
            old = format_value(_num(m_then_i["value"].get(best)), fmt)
            new = format_value(_num(m_now_i["value"].get(best)), fmt)
            text += f" ({label} {old} → {new})"
        reasons.append(text)
    renewal = (_num(now["renewal_adjustment"]) or 0.0) - (_num(then["renewal_adjustment"]) or 0.0)
    if abs(renewal) >= 0.5:
        days = now["days_to_renewal"]
        reasons.append(f"renewal proximity {_points(renewal)} (renewal in {days} days)")
    rolled = (after - (_num(now["own_score"]) or after)) - (
        before - (_num(then["own_score"]) or before)
    )
    if abs(rolled) >= 0.5:
        reasons.append(f"child accounts {_points(rolled)}")
    sentence = head + (": " + ", ".join(reasons) if reasons else "") + "."
    if now["model_version"] != then["model_version"]:
        sentence += (
            f" The health model changed between these dates ({then['model_version']} → "
            f"{now['model_version']}), so part of the change is the model's."
        )
    return Change(since, before, after, by_component, sentence)


def _driver(
    names: list[str],
    now: pd.DataFrame,
    then: pd.DataFrame,
    comp_now: float | None,
    comp_then: float | None,
) -> str | None:
    """The metric that moved its component most. A metric whose value did not change is never
    the driver; one that gained (or lost) data moves its component by the distance between its
    score and the component's score without it."""
    best, best_impact = None, 0.0
    for n in names:
        value_now, value_then = _num(now["value"].get(n)), _num(then["value"].get(n))
        if value_now == value_then:
            continue
        s_now, s_then = _num(now["score"].get(n)), _num(then["score"].get(n))
        if s_now is not None and s_then is not None:
            impact = (_num(now["share"].get(n)) or 0.0) * (s_now - s_then)
        elif s_now is not None:
            impact = (_num(now["share"].get(n)) or 0.0) * (s_now - (_num(comp_then) or s_now))
        elif s_then is not None:
            impact = (_num(then["share"].get(n)) or 0.0) * ((_num(comp_now) or s_then) - s_then)
        else:
            continue
        if best is None or abs(impact) > abs(best_impact):
            best, best_impact = n, impact
    return best


def _component_of(name: str, *frames: pd.DataFrame) -> str | None:
    for frame in frames:
        if name in frame.index:
            return frame.loc[name, "component"]
    return None


def freshness(engine: Engine, account_id: str, as_of: dt.date) -> dict[str, dt.date | None]:
    """The latest data date per source table for the account, up to the as-of date."""
    out: dict[str, dt.date | None] = {}
    for name, spec in TABLES.items():
        if name in ("accounts", "outcomes") or not engine.has_table(name):
            continue
        table = engine.table(name)
        day = table[spec.time].cast("date")
        expr = table.filter((table.account_id == account_id) & (day <= as_of)).aggregate(
            last=day.max()
        )
        value = engine.execute(expr)["last"].iloc[0]
        out[name] = None if pd.isna(value) else pd.Timestamp(value).date()
    return out


def explain(
    engine: Engine,
    compute: Engine,
    version: str,
    account_id: str,
    as_of: dt.date | None = None,
) -> Explanation:
    """Explain an account's score on ``as_of`` (default: its latest scored date).

    ``engine`` is the store with the history; ``compute`` holds the source data, read for
    the account's existence and the freshness of each source.
    """
    history = current(engine, version)
    rows = history.filter(history.account_id == account_id)
    if as_of is not None:
        rows = rows.filter(rows.as_of <= as_of)
    frame = engine.execute(rows.order_by(rows.as_of.desc()))
    if frame.empty:
        accounts = compute.table("accounts") if compute.has_table("accounts") else None
        known = (
            accounts is not None
            and not compute.execute(
                accounts.filter(accounts.account_id == account_id).limit(1)
            ).empty
        )
        fix = (
            "score it first with 'accounthealth score'" + (f" --as-of {as_of}" if as_of else "")
            if known
            else "check the id; 'accounthealth accounts' lists scored accounts"
        )
        what = (
            "has no score" + (f" on or before {as_of}" if as_of else "")
            if known
            else "is not a known account"
        )
        raise NotFoundError(f"account '{account_id}' {what}", where="explain", fix=fix)
    frame["as_of"] = pd.to_datetime(frame["as_of"]).dt.date
    now = frame.iloc[0]
    labels = _labels(engine, now["model_version"])
    c_now, m_now = _parts(engine, account_id, now["as_of"], now["model_version"])
    comp_labels, metric_labels = labels
    # In the model's order: the detail views give their rows in no order of their own.
    c_now = _in_order(c_now, "component", comp_labels)
    m_now = _in_order(m_now, "metric", metric_labels)
    components = []
    for _, c in c_now.iterrows():
        metrics = tuple(
            MetricPart(
                name=r["metric"],
                label=metric_labels.get(r["metric"], (r["metric"], "number"))[0],
                format=metric_labels.get(r["metric"], (r["metric"], "number"))[1],
                value=_num(r["value"]),
                score=_num(r["score"]),
                present=bool(r["present"]),
                share=float(r["share"]),
                contribution=float(r["contribution"]),
            )
            for _, r in m_now[m_now["component"] == c["component"]].iterrows()
        )
        components.append(
            ComponentPart(
                c["component"],
                comp_labels.get(c["component"], c["component"]),
                _num(c["score"]),
                float(c["share"]),
                float(c["contribution"]),
                metrics,
            )
        )
    changes = []
    earlier = frame.iloc[1:]
    if not earlier.empty:
        changes.append(_change(engine, now, (c_now, m_now), earlier.iloc[0], labels))
        month = earlier[earlier["as_of"] <= now["as_of"] - dt.timedelta(days=30)]
        if not month.empty:
            changes.append(_change(engine, now, (c_now, m_now), month.iloc[0], labels))
    return Explanation(
        account_id=account_id,
        name=None if pd.isna(now["name"]) else now["name"],
        as_of=now["as_of"],
        model_version=now["model_version"],
        score=_num(now["score"]),
        own_score=_num(now["own_score"]),
        base_score=_num(now["base_score"]),
        renewal_adjustment=_num(now["renewal_adjustment"]) or 0.0,
        tier=now["tier"],
        coverage=float(now["coverage"]),
        segment_model=now["segment_model"],
        arr=_num(now["arr"]),
        days_to_renewal=None if pd.isna(now["days_to_renewal"]) else int(now["days_to_renewal"]),
        rollup_children=int(now["rollup_children"]),
        components=tuple(components),
        changes=tuple(changes),
        freshness=freshness(compute, account_id, now["as_of"]),
        churn_probability=_num(now.get("churn_probability")),
        override=_override(engine, now),
    )


def _override(engine: Engine, now: pd.Series) -> dict[str, t.Any] | None:
    """The override that set this score, with the computed score it replaced."""
    override_id = now.get("override_id")
    if override_id is None or pd.isna(override_id):
        return None
    rows = engine.sql(
        "SELECT author, reason, starts_on, expires_on FROM overrides WHERE override_id = ?",
        [override_id],
    )
    author, reason, starts, expires = rows[0] if rows else (None, None, None, None)
    return {
        "override_id": override_id,
        "author": author,
        "reason": reason,
        "starts_on": starts,
        "expires_on": expires,
        "computed_score": _num(now.get("computed_score")),
        "computed_tier": now.get("computed_tier"),
    }
