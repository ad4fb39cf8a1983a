"""What every entry point needs, built in one place.

The CLI, ``collector run``, ``worker``, ``web`` and ``run`` all start from
``Wiring.load(data_dir)``: the configuration, the store, the signature
rules, the container enrichment and the submit function that hands a spool
bundle to the analysis (here, or a Celery task). Before this module each
entry point wired itself, and the Celery path lost the Docker enrichment.

Nothing is built before it is used. ``open_store_in_background`` has a cold
``coretriage ingest`` import SQLAlchemy and open the store while gdb is
already running.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from coretriage.config import Config, load_config

if TYPE_CHECKING:
    from coretriage.ingest import Ingested
    from coretriage.store import Store


class Wiring:
    def __init__(self, config: Config):
        self.config = config
        self._store: Store | None = None
        self._store_error: BaseException | None = None
        self._opening: threading.Thread | None = None
        self._lock = threading.Lock()
        self._uploader = None
        self.lock = threading.Lock()  # for what entry points add (alert_sender)
        self.alert_sender: threading.Thread | None = None  # coretriage.services.start_alerts

    @classmethod
    def load(cls, data_dir: Path | str | None = None) -> "Wiring":
        return cls(load_config(data_dir))

    # -- the store -----------------------------------------------------------
    def _open(self) -> None:
        try:
            from coretriage.datadir import open_data_dir
            from coretriage.store import Store

            open_data_dir(self.config)
            store = Store(self.config.database_url)
            store.spike = self.config.spike_policy()
            self._store = store
        except BaseException as exc:  # raised again where the store is used
            self._store_error = exc

    def open_store_in_background(self) -> None:
        """Open the store in a thread (``store`` waits for it)."""
        with self._lock:
            if self._store is None and self._opening is None:
                self._opening = threading.Thread(target=self._open, name="open-store", daemon=True)
                self._opening.start()

    @property
    def store_ready(self) -> bool:
        return self._store is not None

    @property
    def store(self) -> "Store":
        with self._lock:
            if self._opening is not None:
                self._opening.join()
                self._opening = None
            elif self._store is None:
                self._open()
            if self._store_error is not None:
                error, self._store_error = self._store_error, None
                raise error
            return self._store

    def close(self) -> None:
        if self._opening is not None:
            self._opening.join()
        if self._store is not None:
            self._store.close()
            self._store = None

    # -- analysis --------------------------------------------------------------
    @staticmethod
    def enrich(container_id: str) -> dict:
        """Container name, image and Compose labels from the Docker API."""
        from collector.docker_info import container_info

        return container_info(container_id)

    def process_bundle(self, bundle_dir: Path) -> "Ingested | None":
        """One finished spool bundle analyzed and filed: the same code for the
        collector's in-process path and the Celery worker. None for a bundle
        done before; ``BundleBusy`` while another process analyzes it."""
        from coretriage.pipeline import process_bundle

        return process_bundle(self.config, self.store, Path(bundle_dir), enrich=self.enrich)

    def submit(self, log: Callable[[str], None] = lambda line: print(line, flush=True)
               ) -> Callable[[Path], None]:
        """How the collector hands a bundle over: an upload to the central
        server when ``server_url`` is set (``collector.upload``), a Celery task
        on the ``queue_name`` queue when a broker is configured (a broker that
        cannot be reached raises ``collector.watch.HandoffError``), else the
        analysis right here."""
        if self.config.server_url:
            return self.uploader().submit
        if self.config.broker_url:
            from coretriage.tasks import hand_off

            send = hand_off(self.config)

            def queue(bundle: Path) -> None:
                send(Path(bundle).name)
                log(f"queued {Path(bundle).name}")
            return queue

        def analyze_here(bundle: Path) -> None:
            done = self.process_bundle(bundle)
            if done is None:
                log(f"{Path(bundle).name}: already done")
            else:
                log(f"{Path(bundle).name} -> {done.crash.id} in {done.crash.group_ref}: {done.signature.text}")
        return analyze_here

    def uploader(self):
        """This host's uploader (one per process: one queue, one back-off)."""
        with self._lock:
            if self._uploader is None:
                from collector.upload import Uploader, UploadSettings

                c = self.config
                self._uploader = Uploader(UploadSettings(
                    url=c.server_url, token=c.server_token or "", data_dir=c.data_dir, ca=c.server_ca,
                    bandwidth=c.upload_bandwidth, concurrency=c.upload_concurrency, max_core=c.upload_max_core,
                    heartbeat_interval=c.heartbeat_interval))
            return self._uploader

    def celery(self):
        from coretriage.tasks import make_celery

        return make_celery(self.config)
