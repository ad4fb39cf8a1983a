"""The collector of a data dir running in a thread of the test, as
``coretriage collector run`` would (the analysis in-process), while the test
crashes programs and watches the store."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from collector.watch import Collector
from coretriage.config import load_config
from coretriage.store import Store
from coretriage.wiring import Wiring


@contextlib.contextmanager
def collecting(data_dir: Path, join_timeout: float = 60):
    """Yields (config, store) of ``data_dir`` while its collector runs; the collector stopped after."""
    config = load_config(data_dir)
    store = Store(config.database_url)
    stop = threading.Event()
    thread = threading.Thread(target=Collector(config.spool_dir, Wiring(config).submit(), rescan=0.5).run,
                              args=(stop,), daemon=True)
    thread.start()
    try:
        yield config, store
    finally:
        stop.set()
        thread.join(timeout=join_timeout)
