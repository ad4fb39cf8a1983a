"""Digest channels: events collected and sent as one message per period, to
a real HTTP receiver and a real SMTP server; the database says which events
each digest carried, so no event is in two."""

import json
import threading
import time

import pytest
from alertreceivers import Receiver, smtp_server
from atonce import at_once

from coretriage.alerts import Channel, parse_duration
from coretriage.ingest import ingest_metadata
from coretriage.notify import EVENT_HEADER, deliver_due


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def crash_of(config, store, n, at, executable):
    return ingest_metadata(config, store, f"c{n:012x}", executable=executable, signal=11, command_line=executable,
                           pid=100 + n, reason="test", meta={"host": "web1"}, crashed_at=at)


def test_parse_duration():
    assert [parse_duration(t) for t in ("90", "90s", "15m", "1h", "2d", "0")] == [90, 90, 900, 3600, 172800, 0]
    for bad in ("", "h", "1w", "-1h", "nan", "40d"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_webhook_digest_one_message_per_period(config, store, receiver):
    store.add_channel(Channel("daily", "webhook", receiver.url, digest=3600))
    store.add_channel(Channel("live", "webhook", receiver.url + "/live"))
    for n in range(3):
        crash_of(config, store, n, 1000.0 + n, f"/usr/bin/p{n}")  # three new groups
    t = time.time()
    deliver_due(config, store, now=t)
    assert receiver.paths == ["/hook/live"] * 3  # the stream channel at once; the digest waits
    assert all(e["done"] for e in store.alert_events())  # collected counts as delivered: no retries
    deliver_due(config, store, now=t + 1800)
    assert len(receiver.posts) == 3 and store.digests() == []  # the oldest has not waited an hour yet

    deliver_due(config, store, now=t + 3601)
    digest = [(h, json.loads(b)) for p, (h, b) in zip(receiver.paths, receiver.posts) if p == "/hook"]
    assert len(digest) == 1
    headers, body = digest[0]
    assert body["event"] == "digest" and headers[EVENT_HEADER] == body["id"]
    events = store.alert_events()
    assert [e["id"] for e in body["events"]] == [e["id"] for e in events]
    assert [e["event"] for e in body["events"]] == ["new"] * 3
    assert body["text"].startswith("coretriage digest: 3 alert(s) (3 new)")
    assert body["text"].count("\n• New crash group") == 3 and "/usr/bin/p2" in body["text"]
    (d,) = store.digests("daily")
    assert d["done"] and d["error"] is None
    assert [e["id"] for e in store.digest_events(d["id"])] == [e["id"] for e in events]

    deliver_due(config, store, now=t + 7300)
    assert receiver.paths.count("/hook") == 1  # nothing new: no empty digest
    crash_of(config, store, 10, 9000.0, "/usr/bin/late")
    deliver_due(config, store, now=t + 7400)
    deliver_due(config, store, now=t + 7400 + 1800)
    assert receiver.paths.count("/hook") == 1  # collected at +7400: due an hour later
    deliver_due(config, store, now=t + 7400 + 3600)
    second = [json.loads(b) for p, (_, b) in zip(receiver.paths, receiver.posts) if p == "/hook"][1]
    assert [e["group"]["executable"] for e in second["events"]] == ["/usr/bin/late"]
    assert second["id"] != body["id"]


def test_digest_channel_down_retries_the_same_digest(config, store, receiver):
    dead = Channel("later", "webhook", "http://127.0.0.1:9/", digest=60)
    store.add_channel(dead)
    crash_of(config, store, 1, 1000.0, "/usr/bin/a")
    t = time.time() + 1
    deliver_due(config, store, now=t)
    deliver_due(config, store, now=t + 61)
    (d,) = store.digests()
    assert d["done"] is None and d["attempts"] == 1 and "127.0.0.1" in d["error"]
    store.add_channel(Channel("later", "webhook", receiver.url, digest=60))  # the endpoint is back
    crash_of(config, store, 2, 2000.0, "/usr/bin/b")
    deliver_due(config, store, now=t + 200)
    (headers, body), = receiver.posts
    assert body and json.loads(body)["id"] == f"digest-{d['id']}"  # the same digest, its events as cut
    assert [e["group"]["executable"] for e in json.loads(body)["events"]] == ["/usr/bin/a"]


def test_email_digest_is_one_mail(config, store, tmp_path):
    import dataclasses

    log = tmp_path / "smtp.log"
    with smtp_server(log) as url:
        config = dataclasses.replace(config, smtp_url=url, smtp_from="ct@example.org")
        store.add_channel(Channel("ops", "email", "ops@example.org", digest=600))
        ids = [crash_of(config, store, n, 1000.0 + n, f"/usr/bin/m{n}").crash.id for n in range(4)]
        t = time.time()
        deliver_due(config, store, now=t)
        deliver_due(config, store, now=t + 601)
        deadline = time.monotonic() + 60  # the mail on its way through aiosmtpd; generous for a loaded machine
        while "X-Peer" not in log.read_text() or not all(i in log.read_text() for i in ids):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(0.5)  # nothing else arrives
    text = log.read_text()
    assert text.count("Subject: ") == 1
    assert "Subject: [coretriage] coretriage digest: 4 alert(s) (4 new)" in text
    assert "To: ops@example.org" in text


def test_several_senders_put_each_event_in_one_digest(config, store, receiver):
    """Four senders at once, over the same outbox: every event reaches the
    digest channel once, in one digest, however the senders interleave."""
    store.add_channel(Channel("batch", "webhook", receiver.url, digest=1))
    for n in range(60):
        crash_of(config, store, n, 1000.0 + n, f"/usr/bin/s{n}")
    later = time.time() + 10
    start = threading.Barrier(4)

    def sender(_):
        start.wait(10)
        for k in range(4):
            deliver_due(config, store, now=later + k * 2)

    at_once(sender, range(4))
    deliver_due(config, store, now=later + 100)
    carried = [e["id"] for _, b in receiver.posts for e in json.loads(b)["events"]]
    assert sorted(carried) == sorted(e["id"] for e in store.alert_events())  # each once
    assert len({json.loads(b)["id"] for _, b in receiver.posts}) == len(receiver.posts)



def test_a_row_finished_between_select_and_claim_is_not_claimed_again(config, store):
    """The race behind a digest sent twice: sender A reads a due digest;
    before A claims it, sender B claims, sends and finishes it (its lease
    back to NULL). A's claim must see that it is done."""
    import sqlalchemy as sa

    from coretriage.store import Store

    store.add_channel(Channel("batch", "webhook", "http://127.0.0.1:9/", digest=1))
    crash_of(config, store, 1, 1000.0, "/usr/bin/r1")
    now = time.time() + 10
    deliver_due(config, store, now=now - 5)  # collected, not yet due
    assert store.cut_digest("batch", 1, now) is not None
    other = Store(config.database_url)
    raced = []

    @sa.event.listens_for(store.engine, "after_cursor_execute")
    def b_runs_in_between(conn, cursor, statement, *args):
        if not raced and statement.lstrip().upper().startswith("SELECT") and "alert_digests" in statement:
            raced.extend(other.claim_digests(now, 60))
            for d in raced:
                other.finish_digest(d["id"], done=True)

    try:
        taken = store.claim_digests(now, 60)
    finally:
        sa.event.remove(store.engine, "after_cursor_execute", b_runs_in_between)
        other.close()
    assert len(raced) == 1 and taken == []


def test_sender_killed_mid_digest_sends_the_same_digest_again(config, store, receiver):
    store.add_channel(Channel("hourly", "webhook", receiver.url, digest=3600))
    for n in range(5):
        crash_of(config, store, n, 1000.0 + n, f"/usr/bin/k{n}")
    t = time.time() + 1
    deliver_due(config, store, now=t)  # collected
    receiver.kill_sender_mid_request(config.data_dir, now=t + 3601)  # on the digest's request
    (d,) = store.digests()
    assert d["done"] is None and d["lease"] is not None
    crash_of(config, store, 50, 5000.0, "/usr/bin/after")  # collected later: not in that digest
    deliver_due(config, store, now=t + 3602)
    assert len(receiver.posts) == 1  # still leased by the dead sender
    deliver_due(config, store, now=t + 3601 + 600)  # the lease is over
    bodies = [json.loads(b) for _, b in receiver.posts]
    assert [b["id"] for b in bodies] == [f"digest-{d['id']}"] * 2  # at least once, with its idempotency key
    assert bodies[0]["events"] == bodies[1]["events"] and len(bodies[0]["events"]) == 5
    assert store.digests()[0]["done"] and len(store.digests()) == 1


def test_digest_turned_off_sends_what_was_collected(config, store, receiver):
    store.add_channel(Channel("team", "webhook", receiver.url, digest=86400))
    crash_of(config, store, 1, 1000.0, "/usr/bin/x")
    t = time.time() + 1
    deliver_due(config, store, now=t)
    assert receiver.posts == []
    store.add_channel(Channel("team", "webhook", receiver.url))  # edited: each alert at once from now on
    crash_of(config, store, 2, 2000.0, "/usr/bin/y")
    deliver_due(config, store, now=t + 1)
    got = sorted((json.loads(b)["event"], json.loads(b)["id"]) for _, b in receiver.posts)
    assert [kind for kind, _ in got] == ["digest", "new"]  # the collected one as a digest, the new one alone
