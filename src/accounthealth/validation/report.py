"""The validation report: one self-contained HTML file (inline SVG charts, no scripts, nothing
fetched) that a CS leader can open offline, and the same figures as JSON."""

from __future__ import annotations

import html
import typing as t
from pathlib import Path

from accounthealth.validation.backtest import Backtest

PALETTE = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#57606a")
W, H, PAD = 420, 260, 44


def _scale(value: float, top: float, length: float) -> float:
    return length * (value / top if top else 0)


def _frame(title: str, xlabel: str, ylabel: str, body: str, legend: str = "") -> str:
    return (
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img">'
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" class="axis"/>'
        f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" class="axis"/>'
        f'<text x="{(W + PAD) / 2}" y="{H - 8}" class="label">{html.escape(xlabel)}</text>'
        f'<text x="12" y="{H / 2}" class="label" transform="rotate(-90 12 {H / 2})">'
        f"{html.escape(ylabel)}</text>{body}</svg>{legend}</figure>"
    )


def _legend(names: t.Sequence[str]) -> str:
    items = "".join(
        f'<span><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{html.escape(n)}</span>'
        for i, n in enumerate(names)
    )
    return f'<div class="legend">{items}</div>'


def line_chart(
    title: str,
    series: dict[str, list[tuple[float, float]]],
    xlabel: str,
    ylabel: str,
    xmax: float,
    ymax: float,
    diagonal: bool = False,
    xticks: t.Sequence[tuple[float, str]] | None = None,
) -> str:
    """Lines through (x, y) points, one per series, on axes from 0 to xmax and ymax."""
    width, height = W - PAD - 10, H - PAD - 10

    def point(x: float, y: float) -> str:
        return f"{PAD + _scale(x, xmax, width):.1f},{H - PAD - _scale(y, ymax, height):.1f}"

    body = ""
    if diagonal:
        body += f'<polyline points="{point(0, 0)} {point(xmax, ymax)}" class="guide"/>'
    for i, (name, points) in enumerate(series.items()):
        if points:
            colour = PALETTE[i % len(PALETTE)]
            path = " ".join(point(x, y) for x, y in points)
            body += (
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2">'
                f"<title>{html.escape(name)}</title></polyline>"
            )
    for tick in (0, 0.5, 1):
        body += (
            f'<text x="{PAD - 4}" y="{H - PAD - tick * height + 4:.0f}" class="tick" '
            f'text-anchor="end">{ymax * tick:g}</text>'
        )
    for x, text in xticks or [(xmax * tick, f"{xmax * tick:g}") for tick in (0, 0.5, 1)]:
        body += (
            f'<text x="{PAD + _scale(x, xmax, width):.0f}" y="{H - PAD + 14}" class="tick" '
            f'text-anchor="middle">{html.escape(text)}</text>'
        )
    return _frame(title, xlabel, ylabel, body, _legend(list(series)))


def bar_chart(
    title: str,
    bars: list[tuple[str, float | None, float | None, float | None]],
    ylabel: str,
    percent: bool = True,
) -> str:
    """Bars (label, value, low, high) with interval whiskers where low and high are known."""
    values = [v for _, v, _, hi in bars for v in (v, hi) if v is not None]
    top = max(values, default=1) * 1.1 or 1
    width, height = W - PAD - 10, H - PAD - 10
    slot = width / max(len(bars), 1)
    body = ""
    for i, (name, value, low, high) in enumerate(bars):
        x = PAD + i * slot
        if value is not None:
            h = _scale(value, top, height)
            text = f"{value:.1%}" if percent else f"{value:.1f}"
            body += (
                f'<rect x="{x + slot * 0.15:.1f}" y="{H - PAD - h:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[0]}"><title>{html.escape(name)}: {text}'
                f"</title></rect>"
            )
        if low is not None and high is not None:
            mid = x + slot / 2
            y1, y2 = H - PAD - _scale(low, top, height), H - PAD - _scale(high, top, height)
            body += f'<line x1="{mid:.1f}" x2="{mid:.1f}" y1="{y1:.1f}" y2="{y2:.1f}" class="ci"/>'
        body += (
            f'<text x="{x + slot / 2:.1f}" y="{H - PAD + 14}" class="tick" '
            f'text-anchor="middle">{html.escape(name)}</text>'
        )
    return _frame(title, "", ylabel, body)


def format_estimate(
    estimate: dict | None, percent: bool = False, digits: int = 2
) -> tuple[str, str | None]:
    """A figure ('0.80', or '30.1%' for a share) and its interval ('0.78 to 0.82'), or '-'."""
    if not estimate or estimate.get("value") is None:
        return "-", None
    fmt = (lambda v: f"{v:.1%}") if percent else (lambda v: f"{v:.{digits}f}")
    if estimate.get("low") is None:
        return fmt(estimate["value"]), None
    return fmt(estimate["value"]), f"{fmt(estimate['low'])} to {fmt(estimate['high'])}"


def _fmt(estimate: dict | None, percent: bool = False) -> str:
    value, interval = format_estimate(estimate, percent, digits=3)
    return f"{value} <small>({interval})</small>" if interval else value


def _table(header: t.Sequence[str], rows: t.Iterable[t.Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(figures: dict) -> str:
    """The report as one HTML document."""
    segs = figures["segments"]
    everyone = segs["all"]
    tiers = everyone["tiers"]
    leads = list(everyone["before_outcome"]["churned_in_top_tier"])
    summary = _table(
        ["Segment", "Accounts", "Churned", "AUC", "Top-decile lift", "C-index", "Warnings"],
        (
            [
                html.escape(name),
                f"{g['counts']['accounts']:,}",
                f"{g['counts']['churned_accounts']:,}",
                _fmt(g["ranking"]["auc"]),
                _fmt(g["ranking"]["top_decile_lift"]),
                _fmt(g["ranking"]["concordance"]),
                html.escape("; ".join(g["warnings"])),
            ]
            for name, g in segs.items()
        ),
    )
    tier_rows = _table(
        ["Segment", *tiers],
        (
            [html.escape(name)]
            + [
                next((_fmt(r["churn_rate"], True) for r in g["by_tier"] if r["tier"] == tier), "-")
                for tier in tiers
            ]
            for name, g in segs.items()
        ),
    )
    before_rows = _table(
        ["Segment"]
        + [f"In {tiers[0]} {k} days before churn" for k in leads]
        + [f"{tiers[-1]} at churn", "Median lead (days)"],
        (
            [html.escape(name)]
            + [_fmt(g["before_outcome"]["churned_in_top_tier"][k], True) for k in leads]
            + [
                "-"
                if g["lead_time"]["share_warned"] is None
                else f"{g['lead_time']['share_warned']:.1%}",
                "-"
                if g["lead_time"]["median_days"] is None
                else f"{g['lead_time']['median_days']:g}",
            ]
            for name, g in segs.items()
        ),
    )
    roc = line_chart(
        "ROC: churn within the horizon",
        {name: [tuple(p) for p in g["ranking"]["roc"]] for name, g in segs.items()},
        "false positive rate",
        "true positive rate",
        1,
        1,
        diagonal=True,
    )
    lift = bar_chart(
        "Churn rate by score decile (1 = lowest scores)",
        [(str(i + 1), v, None, None) for i, v in enumerate(everyone["ranking"]["churn_by_decile"])],
        "churn rate",
    )
    by_tier = bar_chart(
        "Churn rate by tier",
        [
            (r["tier"], r["churn_rate"]["value"], r["churn_rate"]["low"], r["churn_rate"]["high"])
            for r in everyone["by_tier"]
        ],
        "churn rate",
    )
    means = everyone["before_outcome"]["mean_score"]
    furthest = max(int(k) for k in leads)
    trajectory = line_chart(
        "Average score before the outcome",
        {
            kind: [
                (furthest - int(k), means[kind][k]["value"])
                for k in sorted(leads, key=int, reverse=True)
                if means[kind][k]["value"] is not None
            ]
            for kind in ("churned", "retained")
        },
        "days before the outcome",
        "score",
        furthest,
        100,
        xticks=[(furthest - int(k), k) for k in leads] + [(furthest, "0")],
    )
    calibration = bar_chart(
        "Observed churn per score band",
        [(r["band"], r["churn_rate"], None, None) for r in everyone["calibration"]],
        "churn rate",
    )
    found = figures["signals"]
    signal_rows = _table(
        ["Metric or component", "Coverage", "Distinct values", "Same value", "AUC alone", "Flags"],
        (
            [
                html.escape(r["label"]),
                f"{r['coverage']:.0%}",
                f"{r['distinct_values']:,}",
                "-" if r["same_value_share"] is None else f"{r['same_value_share']:.0%}",
                "-" if r["auc"] is None else f"{r['auc']:.3f}",
                html.escape("; ".join(r["flags"])),
            ]
            for r in found["metrics"] + found["components"]
        ),
    )
    correlated = "".join(
        f"<li>{html.escape(p['a'])} and {html.escape(p['b'])}: Spearman {p['spearman']:.2f}</li>"
        for p in found["correlated"]
    )
    signal_notes = (
        f"<p>Metrics that measure the same thing:</p><ul>{correlated}</ul>" if correlated else ""
    ) + "".join(f"<p>{html.escape(w)}</p>" for w in found["scores"]["warnings"])
    source = figures["outcomes_source"]
    intro = (
        f"Model {html.escape(str(figures['model_version']))}, scored point-in-time on "
        f"{figures['dates']['count']} dates from {figures['dates']['first']} to "
        f"{figures['dates']['last']} (every {figures['every_days']} days). Churn within "
        f"{figures['horizon_days']} days of each date; outcomes from {source}, known until "
        f"{figures['outcomes_known_until']}. Intervals: 95% bootstrap over accounts "
        f"({figures['bootstrap_replicates']} replicates)."
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>accounthealth backtest</title>
<style>
body{{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1f2328}}
table{{border-collapse:collapse;margin:8px 0 20px}}
td,th{{padding:4px 10px;border-bottom:1px solid #d0d7de;text-align:right}}
td:first-child,th:first-child{{text-align:left}}small{{color:#57606a}}
figure{{display:inline-block;margin:8px 16px 16px 0;vertical-align:top}}
figcaption{{font-weight:600}}
.axis{{stroke:#57606a}}.guide{{stroke:#d0d7de;stroke-dasharray:4;fill:none}}
.ci{{stroke:#1f2328;stroke-width:1.5}}
.label,.tick{{font-size:11px;fill:#57606a}}.label{{text-anchor:middle}}
.legend span{{margin-right:12px;font-size:12px}}
.legend i{{display:inline-block;width:10px;height:10px;margin-right:4px}}
</style></head><body>
<h1>Does the health score predict churn?</h1>
<p>{intro}</p>
<h2>Ranking</h2>{summary}
<h2>Churn by tier</h2>{tier_rows}
<h2>Before the outcome</h2>{before_rows}
<div>{roc}{lift}{by_tier}{trajectory}{calibration}</div>
<h2>Signals</h2>{signal_rows}{signal_notes}
</body></html>
"""


def write_report(result: Backtest, folder: Path) -> tuple[Path, Path]:
    """Write backtest-<model version>.html and .json into ``folder``; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"backtest-{result.figures['model_version']}"
    page, data = folder / f"{stem}.html", folder / f"{stem}.json"
    page.write_text(render_html(result.figures))
    data.write_text(result.to_json())
    return page, data
