"""Sending alerts: the outbox (``alert_events``) drained to the channels.

Off the ingest path: storing a crash only writes its events (``Store.add_crash``);
``alert_loop`` runs in the collector, ``coretriage run``, ``coretriage
worker`` and a central web server that analyzes uploads itself, and sends
them. Delivery is at least once: an event is leased to one sender, each
channel it reached is recorded, and a sender killed in the middle leaves
the lease to expire and the next one to send what is left.
Receivers deduplicate by the event id (``X-Coretriage-Event`` header, ``id``
field), which never changes for an event.

A channel with a digest period takes no event on its own: each is collected
(``Store.queue_for_digest``, which also counts it as delivered to that
channel), and once the oldest has waited a period the sender cuts a digest
of all collected (``Store.cut_digest``: the database says which events each
digest carried, so an event is in exactly one) and sends it as one message:
a webhook gets ``{"id": "digest-N", "event": "digest", "events": [...],
"text": ...}`` with each event's body in ``events``, an email one mail.
Digests are leased, retried and given up like events, under their own id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage

from analyzer.errors import CoretriageError

LEASE = 120.0  # seconds a sender holds an event (longer than one pass's timeouts)
TIMEOUT = 10.0  # seconds per webhook request or SMTP conversation
SIGNATURE_HEADER = "X-Coretriage-Signature"  # "sha256=" + HMAC-SHA256(secret, body), hex
EVENT_HEADER = "X-Coretriage-Event"  # the event id: the idempotency key


class DeliveryError(CoretriageError):
    """A channel did not take an alert."""


def backoff(attempts: int) -> float:
    return min(2.0 ** attempts, 600.0)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _text(kind: str, group: dict, crash: dict) -> str:
    what = {"new": "New crash group", "regression": "Regression", "spike": "Crash spike",
            "test": "Test alert"}.get(kind, kind)
    where = " on ".join(x for x in (crash.get("host"), crash.get("container")) if x)
    line = (f"{what} g{group['id']}: {group.get('executable') or '?'} "
            f"{crash.get('signal') or ''} in {crash.get('key_frame') or '?'}"
            + (f" ({where})" if where else "") + f", {group['count']} crash(es)")
    return line + (f" {group['url']}" if group.get("url") else "")


def payload(event: dict, group, crash, public_url: str | None) -> dict:
    """The webhook's JSON (the email says the same ``text``)."""
    # webui/groups.py's route
    url = f"{public_url.rstrip('/')}/groups/{group.id}" if public_url else None
    g = {"id": f"g{group.id}", "signature": group.signature, "executable": group.executable,
         "count": group.count, "first_seen": group.first_seen, "last_seen": group.last_seen,
         "state": group.state, "url": url}
    c = {"id": crash.id, "host": crash.host, "container": crash.container, "image": crash.image,
         "signal": crash.signal, "key_frame": group.key_frame, "crashed_at": crash.crashed_at}
    return {"id": event["id"], "event": event["kind"], "group": g, "crash": c,
            "text": _text(event["kind"], {**g, "id": group.id}, c)}


def send_webhook(url: str, body: dict, secret: str | None, timeout: float = TIMEOUT) -> None:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "coretriage", EVENT_HEADER: str(body["id"])}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, data)
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(1 << 16)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"{url}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryError(f"{url}: {getattr(exc, 'reason', exc)}") from None


def send_email(smtp_url: str | None, sender: str, to: str, body: dict, timeout: float = TIMEOUT,
               ca: str | None = None) -> None:
    """One mail through ``smtp_url``. TLS (``smtps://``, or STARTTLS when the
    server offers it) verifies the server's certificate, against ``ca`` when
    set; a URL with a password is never sent to a server that offers no
    STARTTLS (someone in the middle may have struck it from the EHLO reply)."""
    if not smtp_url:
        raise DeliveryError("no smtp_url configured for email alerts")
    u = urllib.parse.urlsplit(smtp_url)
    if u.scheme not in ("smtp", "smtps") or not u.hostname:
        raise DeliveryError(f"smtp_url must be smtp://host[:port] or smtps://, not {smtp_url!r}")
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, to
    msg["Subject"] = f"[coretriage] {body['text'].splitlines()[0][:150]}"
    msg["X-Coretriage-Event"] = str(body["id"])
    msg.set_content(body["text"] + "\n\n" + json.dumps(body, indent=2) + "\n")
    try:
        context = ssl.create_default_context(cafile=ca or None)
        if u.scheme == "smtps":
            smtp = smtplib.SMTP_SSL(u.hostname, u.port or 465, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(u.hostname, u.port or 25, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if u.scheme == "smtp" and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
            elif u.scheme == "smtp" and u.username:
                raise DeliveryError(f"{u.hostname} offers no STARTTLS: its password is not sent in clear "
                                    "(smtps:// for TLS from the start)")
            if u.username:
                smtp.login(urllib.parse.unquote(u.username), urllib.parse.unquote(u.password or ""))
            smtp.send_message(msg)
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"{u.hostname}: {exc}") from None


def send(config, channel, body: dict) -> None:
    if channel.kind == "webhook":
        send_webhook(channel.target, body, channel.secret)
    else:
        send_email(config.smtp_url, config.smtp_from, channel.target, body, ca=config.smtp_ca)


def deliver_due(config, store, now: float | None = None, log=lambda line: None) -> int:
    """One pass over the due events; returns how many were finished."""
    from coretriage.store import NotFound

    now = time.time() if now is None else now
    finished = 0
    channels = store.channels()
    down: dict[str, str] = {}  # channels that failed in this pass: not tried again until the next one
    for event in store.claim_events(now, LEASE):
        try:
            group, crash = store.group(event["group_id"]), store.crash(event["crash_id"])
        except NotFound:
            store.finish_event(event["id"], done=True, error="its crash or group is gone")
            continue
        if group.state == "ignored":
            store.finish_event(event["id"], done=True, error="group ignored")
            continue
        body = payload(event, group, crash, config.public_url)
        sent = store.delivered_to(event["id"])
        errors = []
        for ch in channels:
            if ch.name in sent or not ch.wants(event["kind"], group.executable, crash.host, crash.image):
                continue
            if ch.quiet and (last := store.last_sent(ch.name, group.id)) is not None and last > now - ch.quiet:
                store.mark_delivered(event["id"], ch.name, skipped=True)  # within the channel's quiet period
                continue
            if ch.digest:
                store.queue_for_digest(event["id"], ch.name, now)  # sent with the channel's next digest
                continue
            if ch.name in down:
                errors.append(f"{ch.name}: {down[ch.name]}")
                continue
            try:
                send(config, ch, body)
            except DeliveryError as exc:
                down[ch.name] = str(exc)  # a dead endpoint costs one timeout per pass, not one per event
                errors.append(f"{ch.name}: {exc}")
                continue
            store.mark_delivered(event["id"], ch.name)
        if not errors:
            store.finish_event(event["id"], done=True)
            finished += 1
            continue
        attempts = event["attempts"] + 1
        give_up = attempts >= config.alert_retries
        store.finish_event(event["id"], done=give_up, next_try=now + backoff(attempts), error="; ".join(errors))
        log(f"alert {event['id']} ({event['kind']} g{event['group_id']}): " + "; ".join(errors)
            + (" — given up" if give_up else f"; tried again in {backoff(attempts):.0f}s"))
    return finished + deliver_digests(config, store, channels, now, down, log)


DIGEST_LINES = 50  # events listed in a digest's text; its ``events`` list has them all


def digest_body(digest_id: int, channel: str, bodies: list[dict]) -> dict:
    kinds: dict[str, int] = {}
    for b in bodies:
        kinds[b["event"]] = kinds.get(b["event"], 0) + 1
    head = (f"coretriage digest: {len(bodies)} alert(s) ("
            + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) + ")")
    lines = [head] + [f"• {b['text']}" for b in bodies[:DIGEST_LINES]]
    if len(bodies) > DIGEST_LINES:
        lines.append(f"… and {len(bodies) - DIGEST_LINES} more")
    return {"id": f"digest-{digest_id}", "event": "digest", "channel": channel, "count": len(bodies),
            "events": bodies, "text": "\n".join(lines)}


def deliver_digests(config, store, channels, now: float, down: dict[str, str], log=lambda line: None) -> int:
    """Cut the digests that are due and send every leased one; returns how many were sent."""
    from coretriage.store import NotFound

    by_name = {ch.name: ch for ch in channels}
    for ch in channels:  # also a channel whose digest was turned off: what it had collected goes now
        store.cut_digest(ch.name, ch.digest, now)
    sent = 0
    for digest in store.claim_digests(now, LEASE):
        ch = by_name.get(digest["channel"])
        if ch is None:
            store.finish_digest(digest["id"], done=True, error="its channel was removed")
            continue
        bodies = []
        for event in store.digest_events(digest["id"]):
            try:
                group, crash = store.group(event["group_id"]), store.crash(event["crash_id"])
            except NotFound:
                continue
            if group.state != "ignored":  # ignored since it was collected: muted
                bodies.append(payload(event, group, crash, config.public_url))
        if not bodies:
            store.finish_digest(digest["id"], done=True, error="nothing left to send")
            continue
        try:
            if ch.name in down:
                raise DeliveryError(down[ch.name])
            send(config, ch, digest_body(digest["id"], ch.name, bodies))
        except DeliveryError as exc:
            down[ch.name] = str(exc)
            attempts = digest["attempts"] + 1
            give_up = attempts >= config.alert_retries
            store.finish_digest(digest["id"], done=give_up, next_try=now + backoff(attempts), error=str(exc))
            log(f"digest {digest['id']} to {ch.name}: {exc}"
                + (" — given up" if give_up else f"; tried again in {backoff(attempts):.0f}s"))
            continue
        store.finish_digest(digest["id"], done=True)
        sent += 1
    return sent


def alert_loop(config, store_of, stop, log=print, interval: float = 1.0) -> None:
    """Send alerts until ``stop`` is set; a pass that fails is logged and tried again."""
    while not stop.is_set():
        try:
            deliver_due(config, store_of(), log=log)
        except Exception as exc:  # a store that cannot be read now: the next pass tries again
            log(f"alert delivery: {exc}")
        stop.wait(interval)


def send_test(config, channel) -> None:
    """A ``test`` alert to one channel now, for ``coretriage notify test``."""
    body = {"id": f"test-{int(time.time())}", "event": "test",
            "group": {"id": "g0", "signature": "test", "executable": None, "count": 0, "first_seen": None,
                      "last_seen": None, "state": "new", "url": config.public_url},
            "crash": {"id": None, "host": None, "container": None, "image": None, "signal": None,
                      "key_frame": None},
            "text": "Test alert from coretriage: this channel works"}
    send(config, channel, body)
