"""analyzer/enrichers/postgres.py: literals masked out of SQL (the enricher
runs on a real PostgreSQL backend's core in tests/system/test_enrichers.py)."""

from analyzer.enrichers.postgres import mask_literals


def test_mask_sql_literals():
    q = "SELECT * FROM users WHERE password = 'hunter2' AND id = 42 AND n = 'it''s'"
    assert mask_literals(q) == "SELECT * FROM users WHERE password = ? AND id = ? AND n = ?"
    assert mask_literals("SELECT $x$secret$x$, col2 FROM t2") == "SELECT ?, col2 FROM t2"
