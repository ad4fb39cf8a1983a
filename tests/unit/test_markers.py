"""A test's kind comes from its folder (tests/conftest.py marks every test
under tests/unit ``unit``, tests/integration ``integration``, tests/system
``system``, tests/adversarial ``adversarial``): no test file sets one of those markers itself."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
KINDS = ("unit", "integration", "system", "adversarial")


def kind_marks(source: str, filename: str = "<test>") -> list[str]:
    """``mark.unit``, ``mark.integration`` or ``mark.system`` anywhere in the
    source (``pytest.mark.system``, ``pytestmark = [mark.system, ...]``,
    ``@pytest.mark.integration``), as "line: name"."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and node.attr in KINDS and (
                (isinstance(node.value, ast.Attribute) and node.value.attr == "mark")
                or (isinstance(node.value, ast.Name) and node.value.id == "mark")):
            found.append(f"{node.lineno}: mark.{node.attr}")
    return found


def test_the_check_finds_a_marker_set_by_hand():
    assert kind_marks("import pytest\npytestmark = pytest.mark.system\n") == ["2: mark.system"]
    assert kind_marks("import pytest\n@pytest.mark.integration\ndef test_x(): pass\n") == ["2: mark.integration"]
    assert kind_marks("from pytest import mark\npytestmark = [mark.unit, mark.timeout(5)]\n") == ["2: mark.unit"]
    assert kind_marks("import pytest\npytestmark = pytest.mark.timeout(1200)\n") == []


def test_no_test_file_sets_its_own_kind():
    files = sorted(TESTS.rglob("*.py"))
    assert any(p.parent.name == "system" for p in files)  # the whole tree is read, not only this folder
    bad = {str(p.relative_to(TESTS)): marks for p in files if (marks := kind_marks(p.read_text(), str(p)))}
    assert not bad, f"the folder gives a test its kind; remove these markers: {bad}"


def test_every_collected_test_carries_its_folders_marker_and_no_other(request):
    wrong = {}
    for item in request.session.items:
        try:
            folder = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:
            continue
        marks = {m.name for m in item.iter_markers() if m.name in KINDS}
        if folder in KINDS and marks != {folder}:
            wrong[item.nodeid] = sorted(marks)
    assert not wrong, wrong
