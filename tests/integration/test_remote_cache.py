"""A remote worker's cache of fetched files (``coretriage.remote.trim_cache``):
the least recently used go first once it passes ``worker_cache_size``, and a
file a fetched bundle still links to stays. Real files, real hard links."""

import dataclasses
import os

from coretriage.remote import trim_cache


def test_the_least_recently_used_files_go_first_and_linked_ones_stay(config, tmp_path):
    cache = config.files_dir / "sha256"
    cache.mkdir(parents=True)
    files = {}
    for n, name in enumerate(("old", "linked", "middle", "new")):
        path = cache / (name * 64)[:64]
        path.write_bytes(os.urandom(64 << 10))
        os.utime(path, (1_000_000 + n, 1_000_000 + n))
        files[name] = path
    os.link(files["linked"], tmp_path / "in-a-fetched-bundle")
    (cache / ".fetch-partial").write_bytes(b"x" * (64 << 10))  # a download under way is not the cache's
    size = files["new"].stat().st_blocks * 512

    freed = trim_cache(dataclasses.replace(config, worker_cache_size=size + 1))
    assert freed == 2 * size
    assert sorted(p.name[:6] for p in cache.iterdir()) == sorted([".fetch", "linked", "newnew"])
    assert trim_cache(dataclasses.replace(config, worker_cache_size=size + 1)) == 0
