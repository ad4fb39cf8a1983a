"""/metrics' coretriage_analysis_failures_total: analyses that gave no
backtrace, by the problem that says why, counted from the store (so crashes
analyzed by any worker count), next to the ones that did."""

import shutil

from prometheus_client.parser import text_string_to_metric_families

from coretriage.ingest import analysis_failure, ingest
from webui import create_app


def failures(config) -> dict[str, float]:
    client = create_app({"CORETRIAGE": config, "TESTING": True}).test_client()
    page = client.get("/metrics")
    assert page.status_code == 200
    found = {f.name: f for f in text_string_to_metric_families(page.get_data(as_text=True))}
    return {s.labels["reason"]: s.value for s in found["coretriage_analysis_failures"].samples
            if s.name.endswith("_total")}


def test_failed_analyses_are_counted_by_reason(config, store, samples, tmp_path):
    good = samples("segv")
    assert analysis_failure(ingest(config, store, good.core, good.exe).analysis) is None

    cut = tmp_path / "cut.core"  # the ELF header and notes, none of the memory: no backtrace
    with open(good.core, "rb") as src, open(cut, "wb") as out:
        out.write(src.read(4096))
    assert ingest(config, store, cut, good.exe).crash.id

    junk = tmp_path / "junk.core"
    shutil.copy(good.exe, junk)  # an ELF file, but not a core
    ingest(config, store, junk)

    counted = failures(config)
    assert sum(counted.values()) == 2, counted
    assert counted.get("not_a_core") == 1 and set(counted) <= {"not_a_core", "truncated_core", "gdb_failed"}
