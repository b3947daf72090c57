"""Delivery to real receivers on loopback: SMTP, a Slack-style webhook and a signed webhook;
retries with backoff; a failing or hanging receiver does not hold the others; and a process
killed between scoring and delivery loses and duplicates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import accounthealth as ah
from conftest import LAST, SECRET, channels, day, set_notifications
from receivers import HttpReceiver, SmtpReceiver


def test_every_channel_delivers_with_its_idempotency_key(book: Path, receivers: tuple) -> None:
    smtp, hook, chat = receivers
    set_notifications(book, channels(smtp.port, hook.url, chat.url))
    with ah.open(book) as p:
        report = p.run(LAST, start=day(0))
        assert (report.delivery.delivered, report.delivery.held) == (7, 0)
        notes = p.notifications()
        assert set(notes["status"]) == {"delivered"}
        ids = dict(zip(notes["notification_id"], notes["channel"], strict=True))
    assert sorted(smtp.ids()) == sorted(i for i, c in ids.items() if c == "mail")
    assert {m["To"] for m in smtp.messages} == {"max@example.com", "exec@example.com"}
    # Sends run in parallel: pick A's message by its subject, not by arrival order.
    to_max = {m["Subject"]: m for m in smtp.messages if m["To"] == "max@example.com"}
    assert set(to_max) == {"Fell to Red: Company A", "Fell to Red: Company C"}
    first = to_max["Fell to Red: Company A"]
    assert "Health: 20, Red (was Green)" in first.get_payload()
    assert sorted(hook.keys()) == sorted(i for i, c in ids.items() if c == "hook")
    assert all(post["signed"] for post in hook.posts)  # HMAC checked by the receiver
    assert {post["payload"]["recipient"] for post in hook.posts} == {"vp"}
    assert sorted(chat.keys()) == sorted(i for i, c in ids.items() if c == "chat")
    assert any("Company C dropped 35 points" in post["payload"]["text"] for post in chat.posts)
    # A second delivery sends nothing again.
    with ah.open(book) as p:
        assert p.deliver().delivered == 0
    assert len(smtp.messages) + len(hook.posts) + len(chat.posts) == 7


def test_a_forged_signature_is_what_the_receiver_refuses(book: Path) -> None:
    with HttpReceiver("another secret") as hook, SmtpReceiver() as smtp, HttpReceiver() as chat:
        set_notifications(book, channels(smtp.port, hook.url, chat.url))
        with ah.open(book) as p:
            p.run(LAST, start=day(0))
    assert hook.posts and not any(post["signed"] for post in hook.posts)


def test_failures_retry_with_backoff_then_fail(book: Path) -> None:
    with SmtpReceiver() as smtp, HttpReceiver(SECRET, mode="fail") as hook, HttpReceiver() as chat:
        set_notifications(book, channels(smtp.port, hook.url, chat.url, backoff=3600))
        with ah.open(book) as p:
            first = p.run(LAST, start=day(0)).delivery
            assert (first.delivered, first.retrying) == (5, 2)
            assert first.errors == {"HTTP 500 from " + hook.url.split("/")[2]: 2}
            # The next try waits for the backoff: nothing is due yet.
            assert p.deliver().retrying == 0 and len(hook.posts) == 2
            p.store.sql("UPDATE notifications SET next_attempt_at = now() WHERE status = 'pending'")
            assert p.deliver().retrying == 2
            p.store.sql("UPDATE notifications SET next_attempt_at = now() WHERE status = 'pending'")
            assert p.deliver().failed == 2  # three attempts in all
            failed = p.notifications(status="failed")
            assert list(failed["attempts"]) == [3, 3]
            assert len(p.audit(action="notification.failed")) == 2
            hook.mode = "ok"
            assert p.retry_notifications() == 2
            assert p.deliver().delivered == 2
    assert len(hook.posts) == 8  # 3 failed tries each, then one success each


def test_a_hanging_receiver_does_not_hold_the_others(book: Path) -> None:
    with SmtpReceiver() as smtp, HttpReceiver(SECRET, mode="hang") as hook, HttpReceiver() as chat:
        set_notifications(book, channels(smtp.port, hook.url, chat.url, timeout=5))
        with ah.open(book) as p:
            delivery = p.run(LAST, start=day(0)).delivery
            assert (delivery.delivered, delivery.retrying) == (5, 2)
            assert all("timed out" in e for e in delivery.errors)
    assert len(smtp.messages) == 3 and len(chat.posts) == 2


def test_killed_between_scoring_and_delivery_loses_and_duplicates_nothing(book: Path) -> None:
    with SmtpReceiver() as smtp:
        with HttpReceiver(SECRET, mode="hang") as hook, HttpReceiver(mode="hang") as chat:
            # Every channel hangs (mail goes to the hanging webhook too): the run scores,
            # writes its outbox, then blocks in delivery, where it is killed.
            slow = channels(smtp.port, hook.url, chat.url, timeout=120)
            slow["channels"]["mail"] = {"webhook": {"url": hook.url, "secret": "${HOOK_SECRET}"}}
            set_notifications(book, slow)
            cli = str(Path(sys.executable).parent / "accounthealth")
            run = subprocess.Popen(
                [cli, "run", "--date", str(LAST), "--from", str(day(0)), "-p", str(book)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            deadline = time.monotonic() + 120
            while len(hook.posts) + len(chat.posts) < 7 and time.monotonic() < deadline:
                time.sleep(0.1)
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
            in_flight = set(hook.keys()) | set(chat.keys())
        assert len(in_flight) == 7  # all were being sent when the process died
        with HttpReceiver(SECRET) as hook, HttpReceiver() as chat:
            set_notifications(book, channels(smtp.port, hook.url, chat.url))
            with ah.open(book) as p:
                queued = p.notifications()
                assert len(queued) == 7 and set(queued["status"]) == {"pending"}
                again = p.run(LAST)
                assert again.rules.already == [LAST]  # the day's rules had committed
                assert again.delivery.delivered == 7
                assert len(p.notifications()) == 7
            received = smtp.ids() + hook.keys() + chat.keys()
    # Each notification arrives once after the restart, with the same key as the attempt that
    # was cut off, so a receiver that keeps keys drops the repeat.
    assert sorted(received) == sorted(queued["notification_id"])
    assert set(received) == in_flight
