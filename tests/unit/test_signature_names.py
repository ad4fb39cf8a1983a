import pytest

from analyzer.signature.names import normalize_function


@pytest.mark.parametrize("raw, expected", [
    ("walk_tree", "walk_tree"),
    ("billing::Ledger<long>::total(int) const", "billing::Ledger<T>::total"),
    ("std::vector<std::pair<int, std::string>, std::allocator<int> >::_M_realloc_insert(int&&)",
     "std::vector<T>::_M_realloc_insert"),
    ("foo::operator()(int)", "foo::operator()"),
    ("Bar::operator<(Bar const&) const", "Bar::operator<"),
    ("std::ostream::operator<<(int)", "std::ostream::operator<<"),
    ("parse_header.cold", "parse_header"),
    ("parse_header.isra.0", "parse_header"),
    ("parse_header.constprop.0.isra.0", "parse_header"),
    ("parse_header(char*) [clone .cold]", "parse_header"),
    ("__GI_raise", "raise"),
    ("__GI___libc_free", "free"),
    ("__strlen_evex", "strlen"),
    ("__memmove_avx_unaligned_erms", "memmove"),
    ("__strncmp_sse42", "strncmp"),
    ("<signal handler called>", "<signal handler called>"),
    ("(anonymous namespace)::worker(void*)", "(anonymous namespace)::worker"),
])
def test_normalize(raw, expected):
    assert normalize_function(raw) == expected


def test_program_function_named_like_libc_is_kept():
    assert normalize_function("__string_table_lookup") == "__string_table_lookup"
