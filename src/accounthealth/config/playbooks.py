"""Playbooks as a CS ops person writes them in the health model's YAML: rules that turn health
changes into tasks, notifications and escalations, and the stability settings that keep them
from flapping. Shapes only; `actions.rules` evaluates them."""

from __future__ import annotations

import typing as t

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from accounthealth.config.durations import parse_days

Days = t.Annotated[int, BeforeValidator(parse_days)]
PRIORITIES = ("low", "normal", "high", "urgent")
# Who a task or message is for: the account's CSM, its manager, or a role named in
# accounthealth.yaml's notifications.directory (vp, executive, ...).
ACCOUNT_PEOPLE = ("csm", "manager")


def _days_or_zero(value: t.Any) -> int:
    """'0d' or 0 means at once; anything else is a window like '3d'."""
    if value in (0, "0", "0d"):
        return 0
    return parse_days(value)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stability(Strict):
    """What keeps alerts from flapping. Rules see a *stable* tier: it changes only when the score
    passes a tier bound by ``hysteresis`` points and stays in the new tier ``min_days`` days
    in a row; a rule does not fire again for the same account within its cool-down."""

    hysteresis: float = Field(3, ge=0, le=20)
    min_days: int = Field(2, ge=1, le=30)
    cooldown: Days = 7


class Movement(Strict):
    """A score move of at least ``points`` compared with the highest (for a drop) or lowest (for
    a rise) score of the ``within`` days before."""

    points: float = Field(gt=0, le=100)
    within: Days = 1


class InTier(Strict):
    """The stable tier has been ``tier`` for ``days`` days or more; with
    ``without_resolved_task``, only while no task of the account was resolved in that time."""

    tier: str
    days: Days
    without_resolved_task: bool = True


class Trigger(Strict):
    """Exactly one of: entered a tier (optionally only from some tiers), left a tier (optionally
    only to some tiers), dropped or rose by points, stayed in a tier, or a condition on the
    day's score, tier, renewal, metrics and components."""

    entered: str | None = None
    left: str | None = None
    from_: tuple[str, ...] | None = Field(None, alias="from")
    to: tuple[str, ...] | None = None
    dropped: Movement | None = None
    rose: Movement | None = None
    in_tier: InTier | None = None
    condition: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: t.Any) -> t.Any:
        # `from: Green` reads as well as `from: [Green, Yellow]`.
        if isinstance(data, dict):
            return {
                k: [v] if k in ("from", "to") and isinstance(v, str) else v for k, v in data.items()
            }
        return data

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        kinds = [k for k in TRIGGERS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"a trigger needs exactly one of {', '.join(TRIGGERS)}, "
                f"got {', '.join(kinds) or 'none'}"
            )
        if self.from_ is not None and self.entered is None:
            raise ValueError("'from' goes with 'entered' (e.g. entered: Yellow, from: Green)")
        if self.to is not None and self.left is None:
            raise ValueError("'to' goes with 'left' (e.g. left: Red, to: Yellow)")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in TRIGGERS if getattr(self, k) is not None)

    def tiers(self) -> set[str]:
        """Every tier name the trigger mentions (checked against the model's tiers)."""
        named = {self.entered, self.left, self.in_tier.tier if self.in_tier else None}
        return {n for n in named if n} | set(self.from_ or ()) | set(self.to or ())


TRIGGERS = ("entered", "left", "dropped", "rose", "in_tier", "condition")


class TaskAction(Strict):
    """Create a task. ``title`` is a template: {name}, {account_id}, {score}, {tier},
    {previous_tier}, {days_to_renewal}, {arr}, {owner}, {manager}, {rule}."""

    title: str
    owner: str = "csm"
    due: Days = 7
    priority: t.Literal["low", "normal", "high", "urgent"] = "normal"
    kind: str | None = Field(None, description="task type for reports (default: the rule name)")


class Notify(Strict):
    """Send a message through a channel of accounthealth.yaml to the CSM, the manager or a
    role; ``message`` is a template like a task title (default: the rule's description)."""

    via: str
    to: str = "csm"
    message: str | None = None


class Escalation(Strict):
    """Notify ``to`` (manager or a role) once the rule's task has been unresolved ``after``
    days (0: when the rule fires)."""

    to: str
    after: t.Annotated[int, BeforeValidator(_days_or_zero)] = 0
    via: str


class Rule(Strict):
    """A trigger, an optional extra condition (``if``), and what to do when it fires."""

    description: str | None = None
    when: Trigger
    if_: str | None = Field(None, alias="if")
    task: TaskAction | None = None
    notify: tuple[Notify, ...] = ()
    escalate: tuple[Escalation, ...] = ()
    cooldown: Days | None = None
    key: str | None = Field(
        None,
        description="de-duplication key template; one firing per key ever "
        "(default: one per account and episode of the condition)",
    )
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _one_notify(cls, data: t.Any) -> t.Any:
        if isinstance(data, dict) and isinstance(data.get("notify"), dict):
            return {**data, "notify": [data["notify"]]}
        if isinstance(data, dict) and isinstance(data.get("escalate"), dict):
            return {**data, "escalate": [data["escalate"]]}
        return data

    @model_validator(mode="after")
    def _acts(self) -> Rule:
        if self.task is None and not self.notify and not self.escalate:
            raise ValueError("a rule needs at least one action: task, notify or escalate")
        if any(step.after > 0 for step in self.escalate) and self.task is None:
            raise ValueError(
                "an escalation 'after' some days needs a task to wait on: add 'task:' to the rule"
            )
        return self


class OverridePolicy(Strict):
    """How CSMs may override scores: default expiry, and whether an override may only make
    health worse."""

    expiry: Days = 30
    worsen_only: bool = False


class Playbooks(Strict):
    """The rules and their stability settings."""

    stability: Stability = Stability()
    rules: dict[str, Rule] = Field(default_factory=dict)


DEFAULT_PLAYBOOKS: dict[str, t.Any] = {
    "rules": {
        "check_in_on_yellow": {
            "description": "Health fell to Yellow: check in within a week",
            "when": {"entered": "Yellow", "from": "Green"},
            "task": {
                "title": "Check in with {name}: health fell to Yellow ({score})",
                "due": "7d",
                "kind": "check-in",
            },
        },
        "urgent_on_red": {
            "description": "Health fell to Red: urgent task, manager told (the VP after a week "
            "unresolved)",
            "when": {"entered": "Red"},
            "task": {
                "title": "Urgent: {name} is Red ({score}, was {previous_tier})",
                "due": "2d",
                "priority": "urgent",
                "kind": "save",
            },
            "notify": [{"via": "email", "to": "manager"}],
            "escalate": [{"to": "vp", "after": "7d", "via": "email"}],
        },
        "red_before_renewal": {
            "description": "Red with renewal within 90 days: the VP is told",
            "when": {"entered": "Red"},
            "if": "days_to_renewal <= 90",
            "escalate": [{"to": "vp", "via": "email"}],
        },
        "red_without_action": {
            "description": "Red for 14+ days with no resolved task: executive escalation",
            "when": {"in_tier": {"tier": "Red", "days": "14d"}},
            "escalate": [{"to": "executive", "via": "email"}],
        },
        "recovered_to_yellow": {
            "description": "Back from Red to Yellow: good news for the CSM",
            "when": {"left": "Red", "to": "Yellow"},
            "notify": [
                {"via": "email", "to": "csm", "message": "{name} is back to Yellow ({score})"}
            ],
        },
        "expansion_before_renewal": {
            "description": "Green with renewal within 60 days: talk expansion",
            "when": {"condition": "tier = 'Green' and days_to_renewal <= 60"},
            "task": {
                "title": "Expansion conversation with {name}: renews in {days_to_renewal} days",
                "due": "14d",
                "kind": "expansion",
            },
            "key": "{rule}:{account_id}:{renewal_date}",
        },
        "sharp_drop": {
            "description": "Score fell 15+ points in a day",
            "when": {"dropped": {"points": 15, "within": "1d"}},
            "notify": [
                {
                    "via": "slack",
                    "to": "csm",
                    "message": "{name} dropped {drop} points to {score} today",
                }
            ],
        },
    }
}
