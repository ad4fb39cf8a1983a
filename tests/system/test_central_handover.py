"""The central server's hand-over of received bundles to the Celery queue
(``coretriage.handover``) through a broker outage: the whole queue backs
off once, not one failed attempt per bundle, and every bundle is queued once
the broker is back. Real Redis, stopped and started; the real hand-off."""

from __future__ import annotations

import dataclasses
import logging
import math

import redis

from coretriage.config import load_config
from coretriage.handover import Handover
from coretriage.tasks import hand_off
from redisserver import start_redis
from servicekit import free_port, stop
from waiting import wait_for

QUEUE = "coretriage.handover-test"


def test_a_broker_outage_costs_the_hand_over_one_back_off_and_queues_every_bundle(tmp_path, caplog):
    import time

    port = free_port()  # nothing listens there yet: the broker is down
    config = dataclasses.replace(load_config(tmp_path / "central"), broker_url=f"redis://127.0.0.1:{port}/0",
                                 queue_name=QUEUE)
    bundles = []
    for n in range(20):
        bundle = config.spool_dir / f"1795619000-{n}-00c0ffee"
        bundle.mkdir(parents=True)
        bundles.append(bundle)
    sent: list[str] = []
    tried: list[str] = []

    def submit_of():
        send = hand_off(config)

        def submit(bundle):
            tried.append(bundle.name)
            send(bundle.name)
            sent.append(bundle.name)
        return submit

    caplog.set_level(logging.INFO, logger="coretriage.ingest")
    handover = Handover(config.spool_dir, submit_of)
    start = time.monotonic()
    for bundle in bundles:
        handover.offer(bundle)
    wait_for(lambda: len(tried) >= 3, "three hand-off attempts (at 0, 1 and 3 s)", 60)
    took = time.monotonic() - start
    # one queue waiting (1, 2, 4 ... s between tries, each try the same first bundle), not 20 bundles each failing
    assert len(set(tried)) == 1 and sent == [], tried
    assert len(tried) <= 2 + math.log2(1 + took), (tried, took)
    assert caplog.text.count("hand-over failed") == 1
    server = start_redis(port)
    try:
        wait_for(lambda: len(sent) == 20, "every bundle queued once the broker is back", 30)
        assert sorted(sent) == sorted(b.name for b in bundles)
        assert redis.Redis(port=port).llen(QUEUE) == 20
    finally:
        stop(server)
    assert caplog.text.count("hand-over works again") == 1
    assert "not handed over" not in caplog.text  # the broker's outage is no bundle's failure
