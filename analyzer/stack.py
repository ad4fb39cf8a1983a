"""Pure helpers over lists of frame names: recursion detection."""

from __future__ import annotations

MAX_CYCLE = 8


def find_cycle(names: list[str], min_repeats: int = 8) -> tuple[tuple[str, ...], int, int] | None:
    """The shortest cycle of frames repeated at least ``min_repeats`` times
    in a row: (cycle, repeats, index of its first frame), or None.

    A stack overflow by recursion shows as the same one to a few frames
    repeated thousands of times; its signature must not depend on how many.
    """
    best = None
    for length in range(1, MAX_CYCLE + 1):
        start = 0
        while start + length * min_repeats <= len(names):
            cycle = names[start:start + length]
            reps = 1
            pos = start + length
            while names[pos:pos + length] == cycle:
                reps += 1
                pos += length
            if reps >= min_repeats:
                if best is None or reps * length > best[1] * len(best[0]):
                    best = (tuple(cycle), reps, start)
                break
            start += 1
        if best is not None:
            return best
    return best


def collapse_repeats(names: list[str], max_cycle: int = MAX_CYCLE) -> tuple[list[str], int]:
    """Collapse every directly repeated run of a cycle (a, b, a, b -> a, b).

    Returns the collapsed list and how many frames were removed.
    """
    out = list(names)
    removed = 0
    changed = True
    while changed:
        changed = False
        for length in range(1, max_cycle + 1):
            i = 0
            while i + 2 * length <= len(out):
                if out[i:i + length] == out[i + length:i + 2 * length]:
                    del out[i + length:i + 2 * length]
                    removed += length
                    changed = True
                else:
                    i += 1
    return out, removed
