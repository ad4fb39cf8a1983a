"""analyzer/corenotes.py: what is not a core is refused with the reason."""

import io

import pytest

from analyzer.corenotes import NotACore, read_core


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"hello world, not a core", "not an ELF file"),
    (b"\x7fELF\x02\x01\x01" + b"\0" * 5, "unreadable ELF header"),
])
def test_not_a_core(data, reason):
    with pytest.raises(NotACore, match=reason):
        read_core(io.BytesIO(data))


def test_elf_program_is_not_a_core():
    with open("/bin/true", "rb") as f, pytest.raises(NotACore, match="not a core dump"):
        read_core(f)
