"""A seeded generator of a B2B SaaS book of business, driven by a hidden health process.

Each account has a latent health that drifts daily (mean-reverting, with shocks). Renewals
churn with a probability that rises as latent health falls; the observable signals (usage,
tickets, NPS, invoices, CSM activities, champions) reflect latent health with noise and
delay, and some signals are pure noise. See docs/demo-data.md.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SEGMENTS = ("smb", "mid_market", "enterprise")
EVENTS = (
    "login",
    "report_viewed",
    "dashboard_created",
    "export",
    "integration_sync",
    "invite_sent",
    "api_call",
    "comment_added",
)
CSMS = (
    "Ana Ruiz",
    "Ben Okafor",
    "Chloe Martin",
    "Dev Patel",
    "Elena Rossi",
    "Farah Haddad",
    "Gus Lindqvist",
    "Hana Sato",
    "Ivan Petrov",
    "Jade Wilson",
    "Kofi Mensah",
    "Lena Vogel",
)
MANAGERS = ("Maria Lopez", "Noah Brooks", "Olivia Chen")
SYLLABLES = (
    "ac",
    "ver",
    "lum",
    "tri",
    "nex",
    "ora",
    "zen",
    "pol",
    "kin",
    "sol",
    "tek",
    "vio",
    "mar",
    "dyn",
    "qua",
    "rix",
    "bel",
    "cor",
)
SUFFIXES = ("Labs", "Systems", "Health", "Logistics", "Retail", "Analytics", "Group", "Cloud")
INDUSTRIES = ("software", "retail", "healthcare", "finance", "manufacturing", "education")


@dataclass(frozen=True)
class DemoSummary:
    """What ``generate`` wrote."""

    counts: dict[str, int]
    churned_accounts: int
    start: dt.date
    end: dt.date
    files: dict[str, Path] = field(default_factory=dict)


def _logistic(x: np.ndarray | float) -> np.ndarray | float:
    return 1 / (1 + np.exp(-x))


def generate(
    folder: Path,
    *,
    accounts: int = 3000,
    years: float = 2.0,
    end: dt.date | None = None,
    seed: int = 7,
) -> DemoSummary:
    """Write the demo data files into ``folder / 'data'``; same arguments, same bytes."""
    end = end or dt.date.today()
    days = round(years * 365)
    start = end - dt.timedelta(days=days - 1)
    rng = np.random.default_rng(seed)
    out = Path(folder) / "data"
    out.mkdir(parents=True, exist_ok=True)

    n = accounts
    seg = rng.choice(len(SEGMENTS), n, p=[0.6, 0.28, 0.12])
    # A third exist at the start; the rest sign up over the span (none in the last 30 days).
    born = rng.integers(0, max(days - 30, 1), n)
    term = np.where((seg == 2) & (rng.random(n) < 0.4), 730, 365)
    # Accounts that existed before the span are mid-contract on its first day.
    existing = rng.random(n) < 0.35
    born = np.where(existing, -rng.integers(1, term), born)
    seats = np.choose(
        seg, [rng.integers(3, 15, n), rng.integers(15, 60, n), rng.integers(60, 400, n)]
    )
    arr0 = seats * np.choose(seg, [480, 600, 720]) * rng.uniform(0.8, 1.2, n)
    ids = np.array([f"A{i + 1:05d}" for i in range(n)])

    # Latent health per account and day: mean-reverting walk with shocks and recoveries.
    base = rng.normal(0.6, 0.7, n) + np.choose(seg, [-0.3, 0.0, 0.3])
    health = np.empty((n, days), dtype=np.float32)
    h = base.copy()
    for d in range(days):
        shock = (rng.random(n) < 0.004) * rng.normal(-1.6, 0.5, n)
        h = h + 0.03 * (base - h) + rng.normal(0, 0.06, n) + shock
        health[:, d] = h

    # Contracts: 12-month terms (24 for some enterprise); churn at renewal from latent health.
    contract_rows, alive_until = [], np.full(n, days, dtype=int)
    churned = np.zeros(n, dtype=bool)
    cid = 0
    for i in range(n):
        s, arr, seat = born[i], arr0[i], seats[i]
        while True:
            e = s + term[i]
            cid += 1
            contract = {
                "contract_id": f"C{cid:06d}",
                "account_id": ids[i],
                "start_date": start + dt.timedelta(days=int(s)),
                "end_date": start + dt.timedelta(days=int(e)),
                "arr": round(float(arr), 2),
                "seats": int(seat),
                "status": "active",
            }
            contract_rows.append(contract)
            if e >= days:
                break
            hv = float(health[i, max(e - 30, 0)])
            p_churn = float(_logistic(-2.0 - 2.0 * hv + (0.4 if seg[i] == 0 else 0)))
            if rng.random() < p_churn:
                contract["status"] = "churned"
                churned[i], alive_until[i] = True, e
                # A handful come back after a gap.
                if rng.random() < 0.05 and e + 120 < days:
                    s = e + 120
                    continue
                break
            contract["status"] = "renewed"
            change = 1 + np.clip(0.15 * hv + rng.normal(0, 0.08), -0.3, 0.4)
            arr, seat = arr * change, max(1, round(seat * change))
            s = e
    contracts = pd.DataFrame(contract_rows)
    active_days = np.zeros((n, days), dtype=bool)
    for r in contracts.itertuples():
        i = int(r.account_id[1:]) - 1
        a = max((r.start_date - start).days, 0)
        b = min((r.end_date - start).days, days)
        active_days[i, a:b] = True

    # Usage: users active per day ~ seats x utilisation(latent health, lagged ~2 weeks).
    lagged = np.concatenate([np.repeat(health[:, :1], 14, axis=1), health[:, :-14]], axis=1)
    util = _logistic(1.2 * lagged - 0.3) * 0.5
    users_per_acct = np.minimum(seats, 40)
    ev_rows = []
    day_index = np.arange(days)
    weekday = ((start.toordinal() + day_index) % 7) < 5
    for i in range(n):
        active = np.flatnonzero(active_days[i])
        if active.size == 0:
            continue
        expected = users_per_acct[i] * util[i, active] * np.where(weekday[active], 0.55, 0.1)
        k = rng.poisson(expected)
        total = int(k.sum())
        if total == 0:
            continue
        d = np.repeat(active, k)
        # Only an adopted share of seats is used; adoption follows lagged health, so active
        # users per seat over a month is a real (if delayed) signal.
        adopted = np.maximum(1, users_per_acct[i] * (0.15 + 0.85 * _logistic(1.5 * lagged[i, d])))
        user = (rng.random(total) * adopted).astype(int)
        breadth = np.clip(2 + 3 * _logistic(lagged[i, d]), 1, 7)
        ev = np.minimum((rng.random(total) * breadth).astype(int), 6)
        ev = np.where(rng.random(total) < 0.1, 7, ev)  # comment_added: noise
        ev_rows.append((np.full(total, i), d, user, ev, rng.integers(1, 6, total)))
    acc_i, d, user, ev, qty = (np.concatenate(parts) for parts in zip(*ev_rows, strict=True))
    seconds = rng.integers(8 * 3600, 19 * 3600, len(d))
    ts = np.datetime64(start) + d.astype("timedelta64[D]") + seconds.astype("timedelta64[s]")
    order = np.lexsort((ts, acc_i))
    pq.write_table(
        pa.table(
            {
                "event_id": pa.array([f"E{j:08d}" for j in range(len(d))]),
                "company_id": pa.array(ids[acc_i[order]]),
                "user_id": pa.array(
                    [f"{ids[a]}-u{u}" for a, u in zip(acc_i[order], user[order], strict=True)]
                ),
                "ts": pa.array(ts[order].astype("datetime64[us]")),
                "event": pa.array(np.array(EVENTS)[ev[order]]),
                "quantity": pa.array(qty[order].astype(np.int64)),
            }
        ),
        out / "product_events.parquet",
    )

    def sample_days(rate: np.ndarray, i: int) -> np.ndarray:
        active = np.flatnonzero(active_days[i])
        return active[rng.random(active.size) < rate[active]] if active.size else active

    def stamp(day: int, hour_lo: int = 8, hour_hi: int = 18) -> str:
        moment = dt.datetime.combine(start + dt.timedelta(days=int(day)), dt.time()) + dt.timedelta(
            seconds=int(rng.integers(hour_lo * 3600, hour_hi * 3600))
        )
        return moment.isoformat(sep=" ")

    tickets, surveys, invoices, activities, contacts, metrics = [], [], [], [], [], []
    for i in range(n):
        hi = health[i]
        # Tickets: more and more severe when health is low.
        for day in sample_days(0.01 + 0.03 * _logistic(-1.5 * hi) * (1 + seg[i]), i):
            p1 = rng.random() < 0.05 + 0.25 * float(_logistic(-2 * hi[day]))
            pr = "P1" if p1 else rng.choice(["P2", "P3", "P4"], p=[0.25, 0.45, 0.30])
            dur = rng.exponential(2 if pr == "P1" else 5)
            closed_day = day + dur
            closed = None if closed_day >= days else stamp(int(closed_day))
            csat = (
                int(np.clip(round(3.6 + 0.8 * hi[day] + rng.normal(0, 0.8)), 1, 5))
                if closed and rng.random() < 0.4
                else None
            )
            tickets.append(
                {
                    "ticket_id": f"T{len(tickets) + 1:07d}",
                    "account_id": ids[i],
                    "opened_at": stamp(day),
                    "closed_at": closed,
                    "priority": pr,
                    "status": "solved" if closed else "open",
                    "csat": csat,
                    "sentiment": round(
                        float(np.clip(0.3 * hi[day] + rng.normal(0, 0.4), -1, 1)), 2
                    ),
                }
            )
        # Contacts: a champion and (often) an executive sponsor; champions leave when unhappy.
        c0 = max(int(born[i]), 0)
        for role, is_ch, is_ex in (
            ("admin", True, False),
            ("vp", False, True),
            ("user", False, False),
        ):
            if is_ex and rng.random() < 0.4:
                continue
            left = None
            risk = _logistic(-2.5 * hi) * 0.004 if is_ch else np.full(days, 0.0008)
            leave = np.flatnonzero(rng.random(days - c0) < risk[c0:])
            if leave.size:
                left = start + dt.timedelta(days=int(c0 + leave[0]))
            contacts.append(
                {
                    "contact_id": f"P{len(contacts) + 1:07d}",
                    "account_id": ids[i],
                    "role": role,
                    "is_champion": is_ch,
                    "is_executive_sponsor": is_ex,
                    "started_at": start + dt.timedelta(days=c0),
                    "left_at": left,
                }
            )
        # NPS and CSAT surveys: sparse, score follows health.
        for day in sample_days(np.full(days, 0.006), i):
            surveys.append(
                {
                    "response_id": f"R{len(surveys) + 1:07d}",
                    "account_id": ids[i],
                    "contact_id": None,
                    "responded_at": stamp(day),
                    "kind": "nps",
                    "score": int(np.clip(round(7 + 2.2 * hi[day] + rng.normal(0, 1.8)), 0, 10)),
                }
            )
        # CSM activities: fewer and colder when health is low.
        for day in sample_days(0.03 + 0.05 * _logistic(hi), i):
            activities.append(
                {
                    "activity_id": f"V{len(activities) + 1:07d}",
                    "account_id": ids[i],
                    "occurred_at": stamp(day),
                    "kind": rng.choice(
                        ["call", "meeting", "email", "qbr"], p=[0.3, 0.2, 0.45, 0.05]
                    ),
                    "direction": rng.choice(["inbound", "outbound"]),
                    "sentiment": round(
                        float(np.clip(0.35 * hi[day] + rng.normal(0, 0.35), -1, 1)), 2
                    ),
                }
            )
        # Monthly invoices, paid late or not at all when health is low.
        for day in np.flatnonzero(active_days[i])[::30]:
            due = day + 30
            late = rng.exponential(3 + 25 * float(_logistic(-2 * hi[day])))
            paid = due - 5 + late
            invoices.append(
                {
                    "invoice_id": f"I{len(invoices) + 1:07d}",
                    "account_id": ids[i],
                    "issued_at": start + dt.timedelta(days=int(day)),
                    "due_at": start + dt.timedelta(days=int(due)),
                    "paid_at": None if paid >= days else start + dt.timedelta(days=int(paid)),
                    "amount": round(float(arr0[i]) / 12, 2),
                    "status": "paid" if paid < days else ("overdue" if due < days else "open"),
                }
            )
        # Warehouse metrics, weekly: integrations (follows health), marketing opens (noise).
        for day in np.flatnonzero(active_days[i])[::7]:
            metrics.append(
                {
                    "account_id": ids[i],
                    "metric": "integrations_enabled",
                    "date": start + dt.timedelta(days=int(day)),
                    "value": float(max(0, round(1.5 + hi[day] + rng.normal(0, 0.7)))),
                }
            )
            metrics.append(
                {
                    "account_id": ids[i],
                    "metric": "marketing_emails_opened",
                    "date": start + dt.timedelta(days=int(day)),
                    "value": float(rng.poisson(3)),
                }
            )

    # Deliberately bad rows, to show ingest's quarantine (documented in docs/demo-data.md).
    bad = {"ticket_id": "", "account_id": ids[0], "opened_at": stamp(days - 2), "priority": "P3"}
    tickets += [
        {"ticket_id": "T-BAD-1", "account_id": ids[0], "opened_at": "31/02/2025", "priority": "P2"},
        {
            "ticket_id": "T-BAD-2",
            "account_id": ids[1],
            "opened_at": stamp(days - 3),
            "priority": "P3",
            "csat": "five",
        },
        {
            "ticket_id": "T-BAD-3",
            "account_id": "A99999",
            "opened_at": stamp(days - 4),
            "priority": "P2",
        },
        bad,
    ]

    tenure = days - born - 365 * existing  # pre-existing accounts are a year older
    parents = np.full(n, None, dtype=object)
    enterprise = np.flatnonzero(seg == 2)
    for i in np.flatnonzero(rng.random(n) < 0.03):
        if enterprise.size and seg[i] != 2:
            parents[i] = ids[rng.choice(enterprise)]
    owner = np.where(
        seg == 2,
        np.array(CSMS[:4])[rng.integers(0, 4, n)],
        np.array(CSMS[4:])[rng.integers(0, 8, n)],
    )
    accounts_df = pd.DataFrame(
        {
            "account_id": ids,
            "name": [
                f"{rng.choice(SYLLABLES).capitalize()}{rng.choice(SYLLABLES)} "
                f"{rng.choice(SUFFIXES)}"
                for _ in range(n)
            ],
            "segment": np.array(SEGMENTS)[seg],
            "plan": np.choose(
                seg,
                [
                    np.where(rng.random(n) < 0.5, "starter", "growth"),
                    np.full(n, "scale"),
                    np.full(n, "enterprise"),
                ],
            ),
            "owner": owner,
            "manager": [MANAGERS[CSMS.index(o) % 3] for o in owner],
            "parent_account_id": parents,
            "industry": np.array(INDUSTRIES)[rng.integers(0, len(INDUSTRIES), n)],
            "employees": (seats * rng.uniform(3, 12, n)).astype(int),
            "lifecycle_stage": np.where(
                tenure < 90, "onboarding", np.where(tenure < 365, "adopting", "mature")
            ),
            "licensed_seats": seats,
            "created_at": [
                start + dt.timedelta(days=int(b) - 365 * int(x))
                for b, x in zip(born, existing, strict=True)
            ],
        }
    )
    files = {
        "accounts": out / "accounts.csv",
        "contracts": out / "contracts.csv",
        "events": out / "product_events.parquet",
        "tickets": out / "tickets.csv",
        "surveys": out / "surveys.jsonl",
        "invoices": out / "invoices.csv",
        "activities": out / "activities.csv",
        "contacts": out / "contacts.csv",
        "metrics": out / "metrics.csv",
    }
    accounts_df.to_csv(files["accounts"], index=False)
    contracts.to_csv(files["contracts"], index=False)
    pd.DataFrame(tickets).to_csv(files["tickets"], index=False)
    with files["surveys"].open("w") as handle:
        for row in surveys:
            handle.write(json.dumps(row) + "\n")
    pd.DataFrame(invoices).to_csv(files["invoices"], index=False)
    pd.DataFrame(activities).to_csv(files["activities"], index=False)
    pd.DataFrame(contacts).to_csv(files["contacts"], index=False)
    pd.DataFrame(metrics).to_csv(files["metrics"], index=False)
    counts = {
        "accounts": n,
        "contracts": len(contracts),
        "events": len(d),
        "tickets": len(tickets),
        "surveys": len(surveys),
        "invoices": len(invoices),
        "activities": len(activities),
        "contacts": len(contacts),
        "metrics": len(metrics),
    }
    return DemoSummary(counts, int(churned.sum()), start, end, files)
