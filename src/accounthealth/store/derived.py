"""The detail columns a DuckDB store's archive leaves out of its files (store/archive.py), and
the SQL with which the score_details view works them out as it reads.

They follow from the rest of a row and its model, as ``scoring/combine.py`` computes them:
a metric had data (``present``) where its value is not NULL; a component's share of the score
is its weight over the weights of the row's components with a score, and a metric's is its
component's share times its weight over the weights of its component's metrics with a score
(0 where it has no score); NULL where the row's segment model has no such metric or
component. The weights and which component holds each metric are the row's version's and
segment model's ``model_parts`` (store/model_parts.py). Weights are above 0, so a score's own
weight is in the sum it is divided by. The two formulas are kept equal by
tests/store/test_lean_detail.py.

The view's sums take the weights in position order, scoring in each segment model's order:
shares are the scoring's to the last bit where the two orders are the same (a model whose
segments keep the default's order of its components and metrics) or the weights' sums do not
depend on it (whole and half weights); otherwise they may differ in the last bit. On the demo
model all 44,135 of a day's derived values were the scoring's own.

The view's SQL is kept in the store's catalog: a change here reaches an existing store only
through a migration that defines its views again (``schema.define_archive_views``).
"""

from __future__ import annotations

import re

import pyarrow as pa

# The suffix of a detail folder whose files leave the derived columns out.
LEAN = "-lean"
# The detail columns a lean file leaves to its view.
DERIVED = re.compile(r"m\d+_(present|share)|c\d+_share")


def lean(schema: pa.Schema) -> pa.Schema:
    """The detail columns ``schema`` but those a lean file leaves to its view."""
    return pa.schema([field for field in schema if not DERIVED.fullmatch(field.name)])


def derived_select(listed: str, metrics: int, components: int) -> str:
    """The SELECT of a lean folder's ``listed`` rows (``metrics`` and ``components``
    positions) with the derived columns, from the inside out: each row's weights joined, the
    sums of the weights of its scores, its components' shares, its metrics' presence and
    shares; the helper columns left out."""
    ms, cs = range(metrics), range(components)
    helpers = ", ".join(
        ["_total", *(f"_md{j}" for j in cs), *(f"_cw{j}" for j in cs)]
        + [f"_mw{i}" for i in ms]
        + [f"_mc{i}" for i in ms]
    )
    return (
        f"SELECT * EXCLUDE ({helpers}), {_metric_columns(ms, cs)} FROM ("
        f"SELECT *, {_component_shares(cs)} FROM ("
        f"SELECT *, {_sums(ms, cs)} FROM ({listed}) AS d "
        f"LEFT JOIN ({_weights(ms, cs)}) AS w USING (model_version, segment_model)))"
    )


def _weights(ms: range, cs: range) -> str:
    """One row per model version and segment model: each component position's weight
    (``_cw``), each metric position's (``_mw``) and its component's position (``_mc``)."""
    pivot = ", ".join(
        [_part("p.weight", "component", j, f"_cw{j}") for j in cs]
        + [_part("p.weight", "metric", i, f"_mw{i}") for i in ms]
        + [_part("o.position", "metric", i, f"_mc{i}") for i in ms]
    )
    return (
        f"SELECT p.model_version, p.segment_model, {pivot} FROM model_parts AS p "
        "LEFT JOIN model_parts AS o ON o.model_version = p.model_version "
        "AND o.segment_model = p.segment_model AND o.kind = 'component' "
        "AND o.component = p.component GROUP BY p.model_version, p.segment_model"
    )


def _part(value: str, kind: str, position: int, name: str) -> str:
    return f"max({value}) FILTER (WHERE p.kind = '{kind}' AND p.position = {position}) AS {name}"


def _sums(ms: range, cs: range) -> str:
    """The weights of the row's components with a score (``_total``), and per component
    those of its metrics with a score (``_md``)."""
    total = " + ".join(
        ["0.0", *(f"CASE WHEN c{j}_score IS NULL THEN 0.0 ELSE _cw{j} END" for j in cs)]
    )
    sums = [f"{total} AS _total"]
    for j in cs:
        terms = (
            f"CASE WHEN _mc{i} = {j} AND m{i}_score IS NOT NULL THEN _mw{i} ELSE 0.0 END"
            for i in ms
        )
        sums.append(f"{' + '.join(['0.0', *terms])} AS _md{j}")
    return ", ".join(sums)


def _component_shares(cs: range) -> str:
    return ", ".join(
        f"CASE WHEN _cw{j} IS NULL THEN NULL WHEN c{j}_score IS NULL THEN 0.0 "
        f"ELSE _cw{j} / _total END AS c{j}_share"
        for j in cs
    )


def _metric_columns(ms: range, cs: range) -> str:
    present = [f"_mc{i} IS NOT NULL AND m{i}_value IS NOT NULL AS m{i}_present" for i in ms]
    shares = []
    for i in ms:
        of_component = " ".join(f"WHEN {j} THEN c{j}_share * _mw{i} / _md{j}" for j in cs)
        shares.append(
            f"CASE WHEN _mw{i} IS NULL THEN NULL WHEN m{i}_score IS NULL THEN 0.0 "
            f"ELSE CASE _mc{i} {of_component} END END AS m{i}_share"
        )
    return ", ".join(present + shares)
