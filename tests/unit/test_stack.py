from analyzer.stack import collapse_repeats, find_cycle


def test_find_single_frame_cycle():
    names = ["walk"] * 100 + ["main"]
    cycle, reps, start = find_cycle(names)
    assert cycle == ("walk",) and reps == 100 and start == 0


def test_find_two_frame_cycle_after_prefix():
    names = ["memcpy", "leaf"] + ["a", "b"] * 20 + ["main"]
    cycle, reps, start = find_cycle(names)
    assert set(cycle) == {"a", "b"} and reps >= 19 and start in (2, 3)


def test_no_cycle_in_ordinary_stack():
    assert find_cycle(["f", "g", "h", "main"]) is None


def test_collapse_independent_of_depth():
    short, _ = collapse_repeats(["leaf"] + ["a", "b"] * 10 + ["main"])
    deep, removed = collapse_repeats(["leaf"] + ["a", "b"] * 5000 + ["main"])
    assert short == deep == ["leaf", "a", "b", "main"]
    assert removed == 9998
