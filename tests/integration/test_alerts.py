"""Alerts from real crashes: the outbox events a stored crash raises, and
their delivery to a real HTTP receiver and a real SMTP server."""

import dataclasses
import hashlib
import hmac
import json
import socket
import subprocess
import sys
import threading
import time

import pytest
from alertreceivers import Receiver, self_signed, smtp_server
from atonce import at_once
from servicekit import free_port

from coretriage.alerts import Channel, SpikePolicy
from coretriage.ingest import ingest, ingest_metadata
from coretriage import notify
from coretriage.notify import EVENT_HEADER, SIGNATURE_HEADER, DeliveryError, alert_loop, deliver_due, send_test


def kinds(store):
    return [e["kind"] for e in store.alert_events()]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def crash_of(config, store, n, at, executable="/usr/bin/burst"):
    """A crash whose core was not kept (ingest_metadata): a real stored crash, grouped by program and signal."""
    return ingest_metadata(config, store, f"c{n:012x}", executable=executable, signal=11, command_line=executable,
                           pid=100 + n, reason="test", meta={"host": "web1"}, crashed_at=at)


def test_group_crashing_three_times_raises_one_new(config, store, samples):
    for v in (0, 1, 2):
        ingest(config, store, samples("segv", v).core, samples("segv", v).exe)
    assert kinds(store) == ["new"]


def test_resolved_group_crashing_again_raises_one_regression(config, store, samples):
    gid = ingest(config, store, samples("segv", 0).core, samples("segv", 0).exe).crash.group_id
    store.set_state(gid, "resolved")
    ingest(config, store, samples("segv", 1).core, samples("segv", 1).exe)
    ingest(config, store, samples("segv", 2).core, samples("segv", 2).exe)  # regressed already: no second one
    assert kinds(store) == ["new", "regression"]
    assert store.alert_events("regression")[0]["group_id"] == gid


def test_ignored_group_alerts_nobody(config, store, receiver):
    store.spike = SpikePolicy(window=60, minimum=3)
    store.add_channel(Channel("hook", "webhook", receiver.url))
    store.add_channel(Channel("daily", "webhook", receiver.url + "/daily", digest=60))
    gid = crash_of(config, store, 1, 1000.0).crash.group_id
    store.set_state(gid, "ignored")  # before its `new` was sent: muted too
    for n in range(2, 12):
        crash_of(config, store, n, 5000.0 + n)
    store.set_state(gid, "resolved")
    store.set_state(gid, "ignored")
    crash_of(config, store, 50, 9000.0)
    assert kinds(store) == ["new"]
    now = time.time()
    deliver_due(config, store, now=now)
    deliver_due(config, store, now=now + 3600)  # past the digest's period
    assert receiver.posts == []
    (event,) = store.alert_events()
    assert event["done"] and event["error"] == "group ignored"

    # ignored after it went into a digest's collection: the digest leaves it out
    other = crash_of(config, store, 60, 9500.0, executable="/usr/bin/other").crash.group_id
    deliver_due(config, store, now=now + 3700)
    assert store.delivered_to(store.alert_events()[-1]["id"]) == {"hook", "daily"}
    store.set_state(other, "ignored")
    deliver_due(config, store, now=now + 7200)
    assert [json.loads(b)["event"] for _, b in receiver.posts] == ["new"]  # "hook", before the state changed
    assert receiver.paths == ["/hook"] and store.digests()[-1]["error"] == "nothing left to send"


def test_burst_raises_one_spike_per_spike(config, store):
    store.spike = SpikePolicy(window=60, baseline=3600, factor=10, minimum=5)
    t0 = 100_000.0
    for n in range(3):  # a trickle: one crash every twenty minutes
        crash_of(config, store, n, t0 + n * 1200)
    assert kinds(store) == ["new"]
    burst = t0 + 4000
    for n in range(30):  # thirty crashes in thirty seconds
        crash_of(config, store, 100 + n, burst + n)
    spikes = store.alert_events("spike")
    assert len(spikes) == 1
    assert spikes[0]["crash_id"] == f"c{104:012x}"  # the fifth crash of the burst
    for n in range(30):  # still bursting a minute later: the same spike goes on
        crash_of(config, store, 200 + n, burst + 45 + n)
    assert len(store.alert_events("spike")) == 1
    for n in range(400):  # hours later a far bigger burst: a new spike
        crash_of(config, store, 1000 + n, burst + 20000 + n / 10)
    assert len(store.alert_events("spike")) == 2


def test_webhook_gets_the_event_signed(config, store, samples, receiver):
    config = dataclasses.replace(config, public_url="https://crashes.example/")
    store.add_channel(Channel("hook", "webhook", receiver.url, secret="s3cret"))
    done = ingest(config, store, samples("segv", 0).core, samples("segv", 0).exe)
    assert deliver_due(config, store) == 1
    (headers, body), = receiver.posts
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    alert = json.loads(body)
    assert alert["event"] == "new" and headers[EVENT_HEADER] == str(alert["id"])
    g, c = alert["group"], alert["crash"]
    assert g["id"] == f"g{done.crash.group_id}" and g["signature"] == done.signature.text
    assert g["url"] == f"https://crashes.example/groups/{done.crash.group_id}"
    assert g["count"] == 1 and g["executable"] == done.analysis.executable
    assert g["first_seen"] and g["last_seen"]
    assert c["id"] == done.crash.id and c["signal"] == "SIGSEGV" and c["key_frame"]
    assert "New crash group" in alert["text"] and c["key_frame"] in alert["text"]
    assert deliver_due(config, store) == 0  # sent once
    assert len(receiver.posts) == 1


def test_channel_filters(config, store, receiver):
    store.add_channel(Channel("nginx", "webhook", receiver.url, executable="*/nginx"))
    store.add_channel(Channel("regressions", "webhook", receiver.url + "2", events=("regression",)))
    crash_of(config, store, 1, 1000.0, executable="/usr/sbin/nginx")
    crash_of(config, store, 2, 1000.0, executable="/usr/bin/other")
    deliver_due(config, store)
    assert [json.loads(b)["group"]["executable"] for _, b in receiver.posts] == ["/usr/sbin/nginx"]


def test_channel_filters_by_host_and_image(config, store, receiver):
    store.add_channel(Channel("web", "webhook", receiver.url + "/web", host="web*"))
    store.add_channel(Channel("pg", "webhook", receiver.url + "/pg", image="postgres:*"))
    for n, (exe, host, image) in enumerate((("/usr/bin/a", "web1", None), ("/usr/bin/b", "db1", "postgres:16"),
                                           ("/usr/bin/c", "db2", "redis:7"))):
        ingest_metadata(config, store, f"c{n:012x}", executable=exe, signal=11, command_line=exe, pid=100 + n,
                        reason="test", meta={"host": host, "container": image and f"ct{n}", "image": image},
                        crashed_at=1000.0 + n)
    assert [c.image for c in map(store.crash, sorted(cid for cid, _ in store.crash_ids()))] == \
        [None, "postgres:16", "redis:7"]
    deliver_due(config, store)
    got = sorted((path, json.loads(b)["group"]["executable"]) for path, (_, b) in zip(receiver.paths, receiver.posts))
    assert got == [("/hook/pg", "/usr/bin/b"), ("/hook/web", "/usr/bin/a")]
    assert all(e["done"] for e in store.alert_events())  # the one nobody wants is done, not pending


def test_email_reaches_a_real_smtp_server(config, store, samples, tmp_path):
    log = tmp_path / "smtp.log"
    with smtp_server(log) as url:
        config = dataclasses.replace(config, smtp_url=url, smtp_from="ct@example.org")
        store.add_channel(Channel("ops", "email", "ops@example.org"))
        done = ingest(config, store, samples("segv", 0).core, samples("segv", 0).exe)
        assert deliver_due(config, store) == 1
        deadline = time.monotonic() + 60  # the mail on its way through aiosmtpd; generous for a loaded machine
        while done.crash.id not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    text = log.read_text()
    assert "To: ops@example.org" in text and "From: ct@example.org" in text
    assert "Subject: [coretriage] New crash group" in text


def test_email_over_starttls_verifies_the_server(config, store, tmp_path):
    cert, key = self_signed(tmp_path)
    log = tmp_path / "smtp.log"
    channel = Channel("ops", "email", "ops@example.org")
    with smtp_server(log, tls=(cert, key)) as url:  # takes no mail before STARTTLS
        config = dataclasses.replace(config, smtp_url=url)
        with pytest.raises(DeliveryError, match="certificate verify failed"):  # a certificate nobody vouches for
            send_test(config, channel)
        send_test(dataclasses.replace(config, smtp_ca=str(cert)), channel)
        deadline = time.monotonic() + 60  # the mail on its way through aiosmtpd; generous for a loaded machine
        while "Test alert from coretriage" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    assert log.read_text().count("To: ops@example.org") == 1


def test_email_password_never_goes_to_a_server_without_starttls(config, tmp_path):
    log = tmp_path / "smtp.log"
    with smtp_server(log) as url:  # offers no STARTTLS, as when someone in the middle strikes it out
        config = dataclasses.replace(config, smtp_url=url.replace("smtp://", "smtp://ct:s3cret-pw@"))
        with pytest.raises(DeliveryError, match="offers no STARTTLS"):
            send_test(config, Channel("ops", "email", "ops@example.org"))
    assert "s3cret" not in log.read_text() and "AUTH" not in log.read_text() and "To:" not in log.read_text()


def test_dead_endpoint_delays_no_ingest(config, store):
    # a listener that never answers: the worst kind of dead endpoint
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(0)
    store.add_channel(Channel("dead", "webhook", f"http://127.0.0.1:{dead.getsockname()[1]}/"))
    stop = threading.Event()
    sender = threading.Thread(target=alert_loop, args=(config, lambda: store, stop, lambda line: None, 0.05))
    sender.start()
    try:
        slowest = 0.0
        for n in range(20):
            start = time.monotonic()
            crash_of(config, store, n, 1000.0 + n * 1000, executable=f"/usr/bin/p{n}")  # twenty new groups
            slowest = max(slowest, time.monotonic() - start)
        # an ingest that waited for the sender would wait out its request's timeout (10 s);
        # half of it leaves a loaded machine's slow commits their time
        assert slowest < notify.TIMEOUT / 2, slowest
        assert kinds(store) == ["new"] * 20
    finally:
        stop.set()
        sender.join(30)
        dead.close()


def test_sender_killed_mid_delivery_sends_again_with_the_same_id(config, store, receiver):
    store.add_channel(Channel("hook", "webhook", receiver.url))
    crash_of(config, store, 1, 1000.0)
    receiver.kill_sender_mid_request(config.data_dir)  # on the first request
    (event,) = store.alert_events()
    assert event["done"] is None and event["lease"] is not None  # held by the dead sender
    assert deliver_due(config, store) == 0  # its lease is not over: nobody else sends it yet
    assert deliver_due(config, store, now=time.time() + 3600) == 1
    ids = [h[EVENT_HEADER] for h, _ in receiver.posts]
    assert ids == [str(event["id"])] * 2  # at least once, with the idempotency key
    assert deliver_due(config, store, now=time.time() + 7200) == 0
    assert len(receiver.posts) == 2
    assert len(store.alert_events()) == 1


def test_quiet_period_per_channel_and_group(config, store, receiver):
    store.add_channel(Channel("calm", "webhook", receiver.url, quiet=3600))
    store.add_channel(Channel("all", "webhook", receiver.url + "/all"))
    gid = crash_of(config, store, 1, 1000.0).crash.group_id
    deliver_due(config, store)
    store.set_state(gid, "resolved")
    crash_of(config, store, 2, 2000.0)  # a regression minutes later: "all" hears it, "calm" does not
    deliver_due(config, store)
    got = sorted((path, json.loads(b)["event"]) for path, (_, b) in zip(receiver.paths, receiver.posts))
    assert got == [("/hook", "new"), ("/hook/all", "new"), ("/hook/all", "regression")]
    assert store.alert_events()[1]["done"] is not None  # skipped, not pending
    assert store.delivered_to(store.alert_events()[1]["id"]) == {"calm", "all"}


def test_failed_delivery_backs_off_and_retries(config, store, receiver):
    port = free_port()
    store.add_channel(Channel("later", "webhook", f"http://127.0.0.1:{port}/"))
    crash_of(config, store, 1, 1000.0)
    now = time.time()
    assert deliver_due(config, store, now=now) == 0
    (event,) = store.alert_events()
    assert event["attempts"] == 1 and event["next_try"] >= now + 2 and "refused" in event["error"]
    assert deliver_due(config, store, now=now + 1) == 0 and store.alert_events()[0]["attempts"] == 1
    store.add_channel(Channel("later", "webhook", receiver.url))  # the endpoint is back
    assert deliver_due(config, store, now=now + 3) == 1
    assert len(receiver.posts) == 1


def test_events_are_stored_with_the_crash_by_a_worker_that_then_dies(config, store, samples):
    # `coretriage ingest` stores the crash and exits: nobody sent anything, the event waits in the outbox
    s = samples("segv", 0)
    subprocess.run([sys.executable, "-m", "coretriage.cli", "--data-dir", str(config.data_dir), "ingest",
                    str(s.core), "--exe", str(s.exe)], check=True, capture_output=True)
    assert kinds(store) == ["new"] and store.alert_events()[0]["done"] is None


def _grouped_by_older_rules(store, into: int, crash_id: str) -> None:
    """What an older rule set did: two bugs in one group (the other group then empty and gone)."""
    import sqlalchemy as sa

    with store.engine.begin() as db:
        db.execute(sa.text("update crashes set group_id = :g where id = :c"), {"g": into, "c": crash_id})
    store.recount()


@pytest.mark.parametrize("before", ["alerted", "never alerted", "ignored"])
def test_reprocess_alerts_a_split_off_group_only_when_nobody_heard_of_its_crashes(config, store, samples, before):
    import sqlalchemy as sa

    from coretriage.ingest import reprocess

    seg = ingest(config, store, samples("segv", 0).core, samples("segv", 0).exe)
    dfree = ingest(config, store, samples("double_free").core, samples("double_free").exe)
    merged = seg.crash.group_id
    _grouped_by_older_rules(store, merged, dfree.crash.id)
    if before != "alerted":  # crashes stored before alerts existed: no event at all
        with store.engine.begin() as db:
            db.execute(sa.text("delete from alert_events"))
    if before == "ignored":
        store.set_state(merged, "ignored")
    result = reprocess(config, store)
    split = store.crash(dfree.crash.id).group_id
    assert split != merged and split != dfree.crash.group_id and result["moved"] == 1
    news = [e for e in store.alert_events("new") if e["group_id"] == split]
    if before == "never alerted":
        assert result["alerts"] == 1 and [e["crash_id"] for e in news] == [dfree.crash.id]
    else:
        assert result["alerts"] == 0 and news == []
    assert not [e for e in store.alert_events() if e["kind"] != "new"]  # no regression, no spike from a reprocess
    count = len(store.alert_events())
    assert reprocess(config, store)["alerts"] == 0 and len(store.alert_events()) == count  # once


def test_rule_upgrade_over_many_groups_alerts_nobody(config, store, samples):
    from coretriage.ingest import reprocess

    for name in ("segv", "double_free", "assert_balance", "assert_queue"):
        ingest(config, store, samples(name).core, samples(name).exe)
    ingest(config, store, samples("segv", 1).core, samples("segv", 1).exe)
    events = store.alert_events()
    config.rules_dir.mkdir(parents=True)
    (config.rules_dir / "skip.txt").write_text("header_length\n")  # every segv signature changes
    assert reprocess(config, store)["alerts"] == 0
    assert store.alert_events() == events


def test_two_processes_storing_in_a_resolved_group_at_once_on_sqlite_raise_one_regression(config, store):
    """Two stores (as two worker processes: each its own connection) file a
    crash of one resolved group at the same moment. Each waits up to two
    seconds, after reading the group's state, for the other to read it too:
    without the write lock taken before that read both saw it resolved and
    raised two regressions; with it, the second waits for the first's commit."""
    import sqlalchemy as sa

    from coretriage.store import Store

    gid = crash_of(config, store, 1, 1000.0).crash.group_id
    store.set_state(gid, "resolved")
    second = Store(config.database_url)
    read = []
    both = threading.Event()

    def hold(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("SELECT GROUPS.STATE"):
            read.append(statement)
            if len(read) == 2:
                both.set()
            both.wait(2)

    def worker(job):  # its failure is the one under test
        s, n = job
        crash_of(config, s, n, 2000.0 + n)

    try:
        for s in (store, second):
            sa.event.listen(s.engine, "before_cursor_execute", hold)
        at_once(worker, ((store, 2), (second, 3)), timeout=60)
        assert len(read) == 2
        assert kinds(store) == ["new", "regression"]
        assert store.group(gid).state == "regressed" and store.group(gid).count == 3
    finally:
        for s in (store, second):
            sa.event.remove(s.engine, "before_cursor_execute", hold)
        second.close()


def test_two_processes_storing_the_first_crashes_of_a_group_at_once_on_sqlite_raise_one_new(config, store):
    """Both stores look for the group, find none, and only then (each waits
    for the other there) take the write lock to make it: one group, one `new`."""
    import sqlalchemy as sa

    from coretriage.store import Store

    second = Store(config.database_url)
    arrived, results = [], {}
    both = threading.Event()

    def hold(conn, cursor, statement, params, context, executemany):
        if statement.startswith("UPDATE groups SET id = id WHERE 0") and len(arrived) < 2:
            arrived.append(statement)
            if len(arrived) == 2:
                both.set()
            both.wait(5)

    def worker(job):  # its failure is the one under test
        s, n = job
        results[n] = crash_of(config, s, n, 1000.0 + n, executable="/usr/bin/twin")

    try:
        for s in (store, second):
            sa.event.listen(s.engine, "before_cursor_execute", hold)
        at_once(worker, ((store, 1), (second, 2)), timeout=60)
        assert both.is_set()  # both had looked for the group and found none
        assert results[1].crash.group_id == results[2].crash.group_id
        assert kinds(store) == ["new"] and store.group(results[1].crash.group_id).count == 2
    finally:
        for s in (store, second):
            sa.event.remove(s.engine, "before_cursor_execute", hold)
        second.close()
