"""Framing: LSP Content-Length and JSON-lines readers cut bodies out of byte streams, survive
malformed input, resynchronise, and never hold an oversized body in memory."""
import io

from completer.server.framing import (FrameError, JsonLinesReader, JsonLinesWriter, LspReader, LspWriter)


class Spy(io.BytesIO):
    """A stream that remembers the largest chunk any single read returned."""

    largest = 0

    def read(self, n=-1):
        data = super().read(n)
        self.largest = max(self.largest, len(data))
        return data

    def readline(self, n=-1):
        data = super().readline(n)
        self.largest = max(self.largest, len(data))
        return data


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def read_all(reader):
    out = []
    while (item := reader.read()) is not None:
        out.append(item if isinstance(item, bytes) else ("error", item.reason, item.too_big))
    return out


def test_lsp_reader_counts_bytes_not_characters():
    body = '{"text":"é𝄞"}'.encode()
    stream = io.BytesIO(frame(body) + b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
                        + b"content-length: 2\r\n\r\n{}")
    assert read_all(LspReader(stream)) == [body, b"{}"]


def test_lsp_reader_reports_malformed_headers_and_resyncs():
    stream = io.BytesIO(b"Content-Length: abc\r\n\r\n" + b"Bogus header\r\n\r\n" + b"\r\n\r\n"
                        + b"X-Other: 1\r\n\r\n" + frame(b'{"a":1}'))
    out = read_all(LspReader(stream))
    assert [o[0] for o in out[:3]] == ["error"] * 3
    assert "Content-Length" in out[0][1] and "malformed" in out[1][1] and "missing" in out[2][1]
    assert out[3:] == [b'{"a":1}']


def test_lsp_reader_resyncs_after_a_short_content_length():
    # the first header claims 3 bytes of a 7-byte body: the rest runs into the next header
    stream = io.BytesIO(b"Content-Length: 3\r\n\r\n" + b'{"a":1}' + frame(b"[2]"))
    out = read_all(LspReader(stream))
    assert out[0] == b'{"a' and out[-1] == b"[2]"
    assert all(o[0] == "error" for o in out[1:-1]) and len(out) == 3


def test_oversized_body_is_skipped_without_being_read_into_memory():
    big = b"x" * 1_000_000
    stream = Spy(frame(big) + frame(b"{}"))
    out = read_all(LspReader(stream, max_bytes=1000))
    assert out[0][0] == "error" and out[0][2] is True and "1000000 bytes" in out[0][1]
    assert out[1:] == [b"{}"]
    assert stream.largest <= 64 * 1024


def test_huge_header_line_and_eof_inside_a_body():
    stream = Spy(b"X" * 500_000 + b"\r\n\r\n" + frame(b"{}") + b"Content-Length: 10\r\n\r\nabc")
    out = read_all(LspReader(stream))
    assert out[0][0] == "error" and "too long" in out[0][1] and out[1] == b"{}" and len(out) == 2
    assert stream.largest <= 64 * 1024


def test_json_lines_reader_skips_blank_lines_and_caps_lines():
    stream = Spy(b'{"a":1}\n\n  \r\n' + b"y" * 100_000 + b'\n[1]\n{"last":true}')
    out = read_all(JsonLinesReader(stream, max_bytes=1000))
    assert out[0] == b'{"a":1}' and out[1][0] == "error" and out[1][2] is True
    assert out[2:] == [b"[1]", b'{"last":true}']
    assert stream.largest <= 64 * 1024


def test_writers_frame_whole_messages():
    out = io.BytesIO()
    LspWriter(out).send(b'{"x":"\\u00e9"}')
    JsonLinesWriter(out).send(b"{}")
    assert out.getvalue() == b'Content-Length: 14\r\n\r\n{"x":"\\u00e9"}{}\n'
    assert repr(FrameError("r")) == "FrameError('r')"
