"""A small book whose scores are written by hand, with playbooks and channels that deliver to
real receivers on loopback."""

from __future__ import annotations

import datetime as dt
import typing as t
from pathlib import Path

import pytest
import yaml

from receivers import HttpReceiver, SmtpReceiver

from builders import TRAJECTORY_MODEL, TRAJECTORY_START, trajectory_project

PLAYBOOKS = """
playbooks:
  stability: {hysteresis: 0, min_days: 1, cooldown: 7d}
  rules:
    red:
      description: Fell to Red
      when: {entered: Red}
      task: {title: "{name} is Red ({score})", due: 2d, priority: urgent}
      notify: {via: mail, to: manager}
      escalate: [{to: vp, after: 3d, via: hook}]
    stuck:
      when: {in_tier: {tier: Red, days: 6d}}
      escalate: {to: executive, via: mail}
    drop:
      when: {dropped: {points: 30, within: 1d}}
      notify: {via: chat, message: "{name} dropped {drop} points"}
"""
# A: Green 5 days, then Red; B: Green throughout; C: Yellow, one sharp drop to Red and back.
SCORES = {
    "A": [80] * 5 + [20] * 10,
    "B": [85] * 15,
    "C": [60] * 6 + [25] + [60] * 8,
}
LAST = TRAJECTORY_START + dt.timedelta(days=14)
SECRET = "s3cret"


def day(i: int) -> dt.date:
    return TRAJECTORY_START + dt.timedelta(days=i)


def set_notifications(folder: Path, settings: dict[str, t.Any]) -> None:
    """Write the notifications section of accounthealth.yaml."""
    file = folder / "accounthealth.yaml"
    config = yaml.safe_load(file.read_text())
    config["notifications"] = settings
    file.write_text(yaml.safe_dump(config, sort_keys=False))


def channels(smtp_port: int, hook_url: str, chat_url: str, **delivery: t.Any) -> dict:
    return {
        "channels": {
            "mail": {"smtp": {"host": "127.0.0.1", "port": smtp_port, "sender": "ah@example.com"}},
            "hook": {"webhook": {"url": hook_url, "secret": "${HOOK_SECRET}"}},
            "chat": {"slack": chat_url},
        },
        "directory": {
            "Max": {"email": "max@example.com", "slack": "@max"},
            "vp": {"email": "vp@example.com"},
            "executive": {"email": "exec@example.com"},
        },
        "timeout": 30,  # generous: a loaded CI machine must not turn a slow send into a retry
        "backoff": 0,
        "attempts": 3,
        **delivery,
    }


@pytest.fixture
def book(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The book, with no receivers configured yet."""
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    return trajectory_project(tmp_path / "book", SCORES, TRAJECTORY_MODEL + PLAYBOOKS)


@pytest.fixture
def receivers() -> t.Iterator[tuple[SmtpReceiver, HttpReceiver, HttpReceiver]]:
    with SmtpReceiver() as smtp, HttpReceiver(SECRET) as hook, HttpReceiver() as chat:
        yield smtp, hook, chat
