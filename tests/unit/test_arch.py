"""analyzer/arch.py: the architecture from an ELF header, and the names
and key frames of the other machines' C libraries."""

import struct

import pytest

from analyzer.arch import NotELF, architecture, host_arch
from analyzer.corenotes import _auxv, _prstatus, _siginfo
from analyzer.model import Analysis, Frame, SignalInfo, Thread
from analyzer.signature import generate
from analyzer.signature.names import normalize_function


def header(ei_class, machine, data=1):
    return b"\x7fELF" + bytes([ei_class, data, 1]) + b"\0" * 9 + struct.pack("<HH" if data == 1 else ">HH", 4, machine)


@pytest.mark.parametrize("ei_class, machine, name, bits, first, last", [
    (2, 62, "x86-64", 64, "rax", "gs"),
    (2, 183, "aarch64", 64, "x0", "cpsr"),
    (1, 40, "arm", 32, "r0", "cpsr"),
    (1, 3, "i386", 32, "eax", "gs"),
])
def test_architecture_from_the_header(ei_class, machine, name, bits, first, last):
    arch = architecture(header(ei_class, machine))
    assert (arch.name, arch.bits, arch.registers[0], arch.registers[-1]) == (name, bits, first, last)
    assert arch.native == (name == host_arch())


def test_aarch64_and_arm_registers():
    assert architecture(header(2, 183)).registers == tuple(f"x{i}" for i in range(31)) + ("sp", "pc", "cpsr")
    assert architecture(header(1, 40)).registers == tuple(f"r{i}" for i in range(13)) + ("sp", "lr", "pc", "cpsr")


def test_unknown_machine_and_non_elf():
    assert architecture(header(2, 9999)).name == "machine-9999"
    assert not architecture(header(2, 62, data=2)).little_endian
    with pytest.raises(NotELF):
        architecture(b"MZ" + b"\0" * 30)


def test_32_bit_notes():
    # arm's siginfo: si_addr right after the three ints; auxv of 4-byte words
    assert _siginfo(struct.pack("<iiiI", 11, 0, 1, 0xDEAD) + b"\0" * 112, bits=32) == (11, 1, 0xDEAD, None, None)
    assert _auxv(struct.pack("<IIIII", 9, 0x10400, 31, 0x7E00, 0), bits=32) == {9: 0x10400, 31: 0x7E00}
    prstatus = struct.pack("<iiih", 0, 0, 0, 11) + b"\0" * 10 + struct.pack("<i", 4242) + b"\0" * 100
    assert _prstatus(prstatus, 32) == (11, 4242)


@pytest.mark.parametrize("raw, expected", [
    ("__strlen_mte", "strlen"), ("__strlen_asimd", "strlen"), ("__memcpy_generic", "memcpy"),
    ("__memcpy_simd", "memcpy"), ("__memcpy_thunderx2", "memcpy"), ("__memset_zva64", "memset"),
    ("__memchr_nosimd", "memchr"), ("__memcpy_neon", "memcpy"), ("__memmove_from_thumb", "memmove"),
    ("__strtol_internal", "__strtol_internal"), ("__strcasecmp_l", "__strcasecmp_l"),
])
def test_arm_libc_variants_normalize_like_x86_ones(raw, expected):
    assert normalize_function(raw) == expected


def test_one_bug_one_signature_and_key_frame_on_both_machines():
    """x86-64 dynamic (strlen in libc.so.6) and aarch64 static (strlen in the program)."""
    def crash(arch, first, module):
        fs = (Frame(0, 0x10, first, module, None, 0x10),
              Frame(1, 0x20, "header_length", "/app", None, 0x20, "segv.c", 11),
              Frame(2, 0x30, "parse_request", "/app", None, 0x30, "segv.c", 19),
              Frame(3, 0x40, "main", "/app", None, 0x40, "segv.c", 27))
        return Analysis(core="c", executable="/app", threads=(Thread(1, 1, True, fs),),
                        signal=SignalInfo(11, "SIGSEGV"), architecture=arch)

    x86 = generate(crash("x86-64", "__strlen_avx2", "/lib/x86_64-linux-gnu/libc.so.6"))
    arm = generate(crash("aarch64", "__strlen_mte", "/app"))
    assert x86.text == arm.text == "strlen | header_length | parse_request | main"
    assert x86.key_frames == arm.key_frames == (1, 2, 3)


def _elf32_with_build_id(bid: bytes) -> bytes:
    """The smallest 32-bit little-endian ELF with a PT_NOTE holding a GNU build-id."""
    note = struct.pack("<III", 4, len(bid), 3) + b"GNU\0" + bid
    phoff, note_at = 52, 52 + 32
    ehdr = header(1, 40)[:16] + struct.pack("<HHIIIIIHHHHHH", 2, 40, 1, 0x10000, phoff, 0, 0, 52, 32, 1, 0, 0, 0)
    phdr = struct.pack("<IIIIIIII", 4, note_at, 0x10000 + note_at, 0, len(note), len(note), 4, 4)
    return ehdr + phdr + note


def test_build_id_of_a_32_bit_image():
    from analyzer.elfid import build_id

    image = _elf32_with_build_id(bytes(range(20)))
    assert build_id(lambda pos, size: image[pos:pos + size]) == bytes(range(20)).hex()
    # in memory, an ET_EXEC image's notes are at their virtual address
    memory = {0x10000 + i: b for i, b in enumerate(image)}
    read = lambda pos, size: bytes(memory.get(a, 0) for a in range(pos, pos + size))
    assert build_id(read, 0x10000, in_file=False) == bytes(range(20)).hex()
