"""LSP positions <-> str offsets in the three position encodings."""
from hypothesis import given, settings, strategies as st
import pytest

from completer.server.positions import LineIndex, PositionError, units

TEXT = "ab\r\ncé𝄞d\rx\n\nlast"  # CRLF, a lone CR, a 2-byte and a 4-byte (surrogate pair) character


def test_lines_end_at_lf_crlf_and_lone_cr():
    index = LineIndex(TEXT)
    assert index.lines == 5
    assert [index.line_text(i)[1] for i in range(5)] == ["ab", "cé𝄞d", "x", "", "last"]


@pytest.mark.parametrize("encoding, units_before_d", [("utf-16", 4), ("utf-8", 7), ("utf-32", 3)])
def test_character_units_per_encoding(encoding, units_before_d):
    index = LineIndex(TEXT)
    d = TEXT.index("d")
    assert index.offset(1, units_before_d, encoding) == d
    assert index.position(d, encoding) == {"line": 1, "character": units_before_d}


def test_clamping_and_rounding_down_inside_a_character():
    index = LineIndex(TEXT)
    clef = TEXT.index("𝄞")
    assert index.offset(1, 3, "utf-16") == clef     # between the two UTF-16 halves of U+1D11E
    assert index.offset(1, 5, "utf-8") == clef      # inside its 4 UTF-8 bytes
    assert index.offset(0, 99) == 2                 # past the line's end: before its CRLF
    assert index.offset(99, 0) == len(TEXT)         # past the last line: end of document
    with pytest.raises(PositionError):
        index.offset(-1, 0)
    with pytest.raises(PositionError):
        index.offset(0, True)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("a\n\r\t é𝄞中")), max_size=40), st.data())
def test_round_trip(text, data):
    index = LineIndex(text)
    for encoding in ("utf-16", "utf-8", "utf-32"):
        offset = data.draw(st.integers(0, len(text)))
        pos = index.position(offset, encoding)
        if not (0 < offset < len(text) and text[offset - 1] == "\r" and text[offset] == "\n"):
            assert index.offset(pos["line"], pos["character"], encoding) == offset
        start, line = index.line_text(pos["line"])
        assert pos["character"] <= units(line, encoding) or text[offset - 1] == "\r"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab\n\r𝄞")), max_size=30), st.data())
def test_edited_index_equals_a_rescan(text, data):
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    new_text = data.draw(st.text(alphabet=st.sampled_from(list("xy\n\r")), max_size=6))
    after = text[:start] + new_text + text[end:]
    assert LineIndex(text).edited(start, end, new_text, after).starts.tolist() == LineIndex(after).starts.tolist()
