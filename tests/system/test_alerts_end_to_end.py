"""A crash through the real kernel handler and the real collector daemon
(`coretriage collector run`, whose sender thread sends the alerts) reaches a
real webhook receiver and a real SMTP server within seconds; so does a
host's crash uploaded to a central server. A real `coretriage worker` sends
what waits in the outbox, and one killed between storing a crash and
sending its alert neither loses nor repeats it."""

import hashlib
import hmac
import json
import shutil
import signal
import subprocess
import sys
import time

import crashkit
from alertreceivers import Receiver, smtp_server
from coretriage.config import load_config
from coretriage.notify import EVENT_HEADER
from coretriage.store import Store
from hostfixtures import cli


def test_crash_reaches_webhook_and_email(collector_installed, samples, tmp_path):
    data = collector_installed
    receiver = Receiver()
    log = tmp_path / "smtp.log"
    try:
        with smtp_server(log) as smtp_url:
            (data / "coretriage.toml").write_text(f'smtp_url = "{smtp_url}"\npublic_url = "https://ct.example"\n')
            cli(data, "notify", "add", "hook", "--webhook", receiver.url, "--secret", "k3y")
            cli(data, "notify", "add", "ops", "--email", "ops@example.org", "--events", "new")
            daemon = subprocess.Popen([sys.executable, "-m", "coretriage.cli", "--data-dir", str(data), "collector",
                                       "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                exe = tmp_path / "segv"
                shutil.copy(samples("segv").exe, exe)
                crashed = time.monotonic()
                for n in range(3):  # one group, three crashes: one `new`
                    proc = subprocess.run([str(exe), "x" * n], preexec_fn=crashkit.allow_cores, capture_output=True)
                    assert proc.returncode == -11
                # generous: three crashes through the handler and gdb, on a loaded machine
                deadline = time.monotonic() + 300
                while not (receiver.posts and "ops@example.org" in log.read_text()):
                    assert time.monotonic() < deadline, "no alert within five minutes"
                    time.sleep(0.1)
                took = time.monotonic() - crashed
                # let the other two crashes be stored and any (wrong) further alert go out
                listed = []
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    listed = json.loads(cli(data, "list", "--json").stdout)
                    if listed and listed[0]["count"] == 3:
                        break
                    time.sleep(0.5)
                time.sleep(3)
            finally:
                daemon.send_signal(signal.SIGTERM)
                out, _ = daemon.communicate(timeout=30)
        assert listed and listed[0]["count"] == 3, out
        assert len(receiver.posts) == 1, [json.loads(b)["event"] for _, b in receiver.posts]
        headers, body = receiver.posts[0]
        assert headers["X-Coretriage-Signature"] == "sha256=" + hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
        alert = json.loads(body)
        assert alert["event"] == "new" and alert["group"]["id"] == listed[0]["group_id"]
        assert alert["group"]["url"] == f"https://ct.example/groups/{listed[0]['group_id'][1:]}"
        assert alert["crash"]["host"] and alert["crash"]["signal"] == "SIGSEGV"
        assert log.read_text().count("To: ops@example.org") == 1
        # sent within seconds of the crash being stored (the sender looks every second),
        # timed by the daemon itself: the crashes and their analysis before it take what
        # a loaded machine gives them
        store = Store(load_config(data).database_url)
        try:
            (event,) = store.alert_events("new")
        finally:
            store.close()
        assert event["done"] - event["created"] < 30, event
        print(f"first crash to webhook and email: {took:.1f} s (stored to sent: "
              f"{event['done'] - event['created']:.1f} s)")
    finally:
        receiver.close()


def test_the_worker_sends_what_is_waiting_and_its_sender_ends_with_it(samples, tmp_path):
    """`coretriage worker` sends alerts from a process it forks before Celery
    starts its pool; the sender ends when the worker does."""
    import os

    from redisserver import start_redis, start_worker
    from servicekit import free_port, stop

    data = tmp_path / "data"
    s = samples("segv")
    receiver = Receiver()
    port = free_port()
    redis = start_redis(port)
    worker = None
    try:
        cli(data, "ingest", str(s.core), "--exe", str(s.exe))  # its `new` event waits in the outbox
        cli(data, "notify", "add", "hook", "--webhook", receiver.url)
        worker = start_worker(data, broker_url=f"redis://127.0.0.1:{port}/0")
        deadline = time.monotonic() + 60
        while not receiver.posts:
            assert time.monotonic() < deadline, "the worker sent nothing within a minute"
            assert worker.poll() is None, "the worker died"
            time.sleep(0.1)
        children = [int(p) for p in open(f"/proc/{worker.pid}/task/{worker.pid}/children").read().split()]
        assert children  # the sender (and Celery's pool)
        assert json.loads(receiver.posts[0][1])["event"] == "new"
    finally:
        if worker is not None:
            worker.kill()  # not a clean stop: the sender must still go
            worker.wait()
        stop(redis)
        receiver.close()
    deadline = time.monotonic() + 20
    while any(os.path.exists(f"/proc/{pid}") and "zombie" not in open(f"/proc/{pid}/status").read().lower()
              for pid in children):
        assert time.monotonic() < deadline, "the alert sender outlived the worker"
        time.sleep(0.1)


def test_a_crash_uploaded_to_the_central_server_is_alerted_from_there(collector_installed, samples, tmp_path):
    """A host that uploads holds no store: the central web server, analyzing
    what hosts send (no broker), stores the crash and sends its alert."""
    from uploadkit import add_host, collector, host_settings, wait_crashes
    from webserver import web_server

    host, central = collector_installed, tmp_path / "central"
    token = add_host(central, "web-7")
    receiver = Receiver()
    try:
        cli(central, "notify", "add", "hook", "--webhook", receiver.url)
        exe = tmp_path / "segv"
        shutil.copy(samples("segv").exe, exe)
        with web_server(central, tmp_path / "web.log") as url:
            host_settings(host, url, token)
            with collector(host, tmp_path / "collector.log") as proc:
                crashed = time.monotonic()
                for n in range(2):
                    assert subprocess.run([str(exe), "x" * n], preexec_fn=crashkit.allow_cores,
                                          capture_output=True).returncode == -11
                deadline = time.monotonic() + 300  # generous: uploads and analyses on a loaded machine
                while not receiver.posts:
                    assert time.monotonic() < deadline, (tmp_path / "web.log").read_text()[-3000:]
                    assert proc.poll() is None
                    time.sleep(0.1)
                took = time.monotonic() - crashed
                crashes = wait_crashes(central, 2, alive=[proc])
                time.sleep(3)  # any (wrong) second alert goes out
        assert len(receiver.posts) == 1, [json.loads(b)["event"] for _, b in receiver.posts]
        alert = json.loads(receiver.posts[0][1])
        assert alert["event"] == "new" and alert["crash"]["host"] == "web-7"
        assert alert["crash"]["id"] in {c.id for c in crashes} and alert["group"]["count"] >= 1
        print(f"host crash to the central server's webhook: {took:.1f} s")
    finally:
        receiver.close()


def test_a_worker_killed_between_storing_and_sending_neither_loses_nor_repeats_the_alert(samples, tmp_path):
    """A real `coretriage worker` stores a crash (its `new` event with it)
    while its alert sender is stopped, and is then killed whole (kill -9 on
    its process group): the alert waits in the outbox; the next worker sends
    it once, and the task, should Redis give it again, stores and raises nothing."""
    import dataclasses
    import os
    from pathlib import Path

    import redis

    from collector.watch import import_dump
    from coretriage.tasks import hand_off
    from redisserver import start_redis, start_worker
    from servicekit import free_port, stop
    from waiting import wait_for

    def started(pid):  # clock ticks after boot (/proc/PID/stat's 22nd field)
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]), pid

    data = tmp_path / "data"
    receiver = Receiver()
    port = free_port()
    redis_server = start_redis(port)
    settings = dict(broker_url=f"redis://127.0.0.1:{port}/0", queue_name="coretriage.killed-test")
    workers, store = [], None
    try:
        cli(data, "notify", "add", "hook", "--webhook", receiver.url)
        config = dataclasses.replace(load_config(data), **settings)
        store = Store(config.database_url)

        def worker(name):
            log = tmp_path / f"worker-{name}.log"
            proc = start_worker(data, log=log, session=True, **settings)
            workers.append(proc)
            wait_for(lambda: b"ready." in log.read_bytes() or proc.poll() is not None, f"worker {name}", 60)
            assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
            return proc

        first = worker("a")
        children = [int(p) for p in Path(f"/proc/{first.pid}/task/{first.pid}/children").read_text().split()]
        sender = min(children, key=started)  # forked before Celery's pool
        os.kill(sender, signal.SIGSTOP)  # idle (no event yet): it holds no lease and writes nothing
        core = tmp_path / "core-segv"
        core.write_bytes(samples("segv").core.read_bytes())
        bundle = import_dump(core, config.spool_dir)
        hand_off(config)(bundle.name)
        wait_for(lambda: store.crash_ids(), "the crash stored by worker a", 120)
        os.killpg(first.pid, signal.SIGKILL)  # the worker, its pool and its sender, at once
        first.wait()
        (event,) = store.alert_events()
        assert receiver.posts == [] and event["done"] is None and event["lease"] is None  # stored, not sent

        worker("b")
        wait_for(lambda: receiver.posts, "the alert, sent by worker b", 60)
        wait_for(lambda: store.alert_events()[0]["done"], "the event marked sent", 30)
        queue = redis.Redis.from_url(config.broker_url)
        wait_for(lambda: not queue.llen(config.queue_name) and not queue.hlen("unacked"),
                 "the task of the killed worker done again", 120)
        time.sleep(3)  # any (wrong) second alert goes out
        assert [h[EVENT_HEADER] for h, _ in receiver.posts] == [str(event["id"])]
        assert json.loads(receiver.posts[0][1])["event"] == "new"
        assert len(store.crash_ids()) == 1 and len(store.alert_events()) == 1
    finally:
        for proc in workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if store is not None:
            store.close()
        stop(redis_server)
        receiver.close()
