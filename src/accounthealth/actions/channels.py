"""Deliver one notification through one channel: email over SMTP, a Slack incoming webhook, or
a generic webhook signed with HMAC-SHA256. Each send either succeeds or raises; the outbox
decides about retries.

Every message carries the notification's id (the idempotency key): the Message-ID of an email,
the Idempotency-Key header of an HTTP post, so a receiver can drop a repeat after a crash
between sending and recording the delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import time
import typing as t
import urllib.error
import urllib.request
from email.message import EmailMessage

from accounthealth.config.project import Channel, Person
from accounthealth.engine import expand_env

SIGNATURE_HEADER = "X-AccountHealth-Signature"
TIMESTAMP_HEADER = "X-AccountHealth-Timestamp"
ID_HEADER = "Idempotency-Key"


class Undeliverable(Exception):
    """The notification cannot be sent as configured (no address, no channel): held, not
    retried, until the configuration changes."""


def address(channel: Channel, recipient: str, directory: t.Mapping[str, Person]) -> str:
    """Where the message goes: an email address for SMTP, the person's Slack mention for
    Slack, the recipient's name for a webhook."""
    person = _lookup(directory, recipient)
    if channel.smtp is not None:
        if person and person.email:
            return person.email
        if "@" in recipient:
            return recipient
        raise Undeliverable(
            f"no email address for '{recipient}': add it to notifications.directory in "
            "accounthealth.yaml"
        )
    if channel.slack is not None:
        return (person.slack if person and person.slack else None) or recipient
    return recipient


def _lookup(directory: t.Mapping[str, Person], name: str) -> Person | None:
    lowered = {k.lower(): v for k, v in directory.items()}
    return lowered.get(name.lower())


def send(channel: Channel, message: t.Mapping[str, t.Any], timeout: float) -> None:
    """Send ``message`` (notification_id, address, subject, body and the rest of the row)."""
    if channel.smtp is not None:
        _email(channel, message, timeout)
    elif channel.slack is not None:
        text = f"{message['address']}: *{message['subject']}*\n{message['body']}"
        _post(expand_env(channel.slack, "slack"), {"text": text}, message, timeout, None)
    else:
        assert channel.webhook is not None
        payload = {k: _plain(v) for k, v in message.items() if k not in _INTERNAL}
        secret = expand_env(channel.webhook.secret, "webhook") if channel.webhook.secret else None
        _post(expand_env(channel.webhook.url, "webhook"), payload, message, timeout, secret)


_INTERNAL = {"status", "attempts", "next_attempt_at", "last_error", "delivered_at"}


def _plain(value: t.Any) -> t.Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        if value != value:  # NaN / NaT
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _email(channel: Channel, message: t.Mapping[str, t.Any], timeout: float) -> None:
    smtp = channel.smtp
    assert smtp is not None
    mail = EmailMessage()
    mail["From"] = smtp.sender
    mail["To"] = message["address"]
    mail["Subject"] = message["subject"]
    mail["Message-ID"] = f"<{message['notification_id']}@accounthealth>"
    mail[ID_HEADER] = message["notification_id"]
    mail.set_content(message["body"])
    with smtplib.SMTP(smtp.host, smtp.port, timeout=timeout) as server:
        if smtp.starttls:
            server.starttls()
        if smtp.username:
            server.login(smtp.username, expand_env(smtp.password or "", "smtp.password"))
        server.send_message(mail)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 of '<timestamp>.<body>' with the channel's secret, as the receiver checks
    it (the timestamp lets a receiver refuse old replays)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def _post(
    url: str,
    payload: t.Mapping[str, t.Any],
    message: t.Mapping[str, t.Any],
    timeout: float,
    secret: str | None,
) -> None:
    body = json.dumps(payload, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", ID_HEADER: str(message["notification_id"])}
    if secret:
        stamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = stamp
        headers[SIGNATURE_HEADER] = signature(secret, stamp, body)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"HTTP {exc.code} from {_host(url)}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"cannot reach {_host(url)}: {reason}") from None


def _host(url: str) -> str:
    # Webhook URLs carry secrets in their path (Slack's do): name only the host.
    return urllib.request.urlparse(url).netloc or "the receiver"
