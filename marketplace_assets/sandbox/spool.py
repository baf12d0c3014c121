"""A response body held for a second look, and the record boundaries of the files the sandbox serves.

`Spool` keeps a body either as the bytes it already is or, for a streamed body, in an anonymous
temporary file mapped into memory: a 150 MB file is never held on the heap, yet it can be scanned
with regular expressions and re-sent in slices (`Spool.pieces`). Optionally it hashes what it spools.

`csv_lines` and `json_objects` find records without decoding the file: CSV lines end at a newline
outside double quotes (a quoted cell may hold newlines and `""`); JSON records are the objects
directly inside a top-level array (strings, with their escapes, are skipped whole).
"""

from __future__ import annotations

import mmap
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any

CHUNK = 64 * 1024
# A segment of a body to send: a (start, end) slice of the spool, or literal bytes.
Segment = tuple[int, int] | bytes
# A finder of records: (start, end) spans in a body.
Scanner = Callable[[bytes | mmap.mmap], Iterator[tuple[int, int]]]

_CSV_TOKEN = re.compile(rb'"[^"]*"|\n')
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]]', re.DOTALL)
_QUOTE, _NEWLINE = ord('"'), ord("\n")
_OPENERS, _OBJECT_OPEN, _OBJECT_CLOSE = frozenset(b"{["), ord("{"), ord("}")


class Spool:
    """A complete body: `data` is bytes or an mmap of a temporary file (read with slices and `re`)."""

    def __init__(self, data: bytes | mmap.mmap, file: IO[bytes] | None = None) -> None:
        self.data = data
        self.size = len(data)
        self._file = file

    @classmethod
    def of(cls, body: bytes, stream: Iterable[bytes] | None, digest: Any = None) -> Spool:
        """Hold `body`, or everything `stream` produces (spooled to disk); `digest` (a hashlib object)
        is updated with every byte on the way."""
        if stream is None:
            if digest is not None:
                digest.update(body)
            return cls(body)
        spooled: list[Spool] = []
        for chunk in cls.tee(stream, spooled.append):
            if digest is not None:
                digest.update(chunk)
        return spooled[0]

    @classmethod
    def tee(cls, stream: Iterable[bytes], done: Callable[[Spool], None]) -> Iterator[bytes]:
        """`stream`'s chunks, passed on as they come while written to disk; once the stream is
        exhausted, `done` gets the Spool of all of it. Abandoned part-way, nothing is kept."""
        file = tempfile.TemporaryFile()  # noqa: SIM115 - the spool owns it until `close`
        try:
            for chunk in stream:
                file.write(chunk)
                yield chunk
            file.flush()
        except BaseException:
            file.close()
            raise
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if file.tell() == 0:
            file.close()
            done(cls(b""))
        else:
            done(cls(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ), file))

    def close(self) -> None:
        if isinstance(self.data, mmap.mmap):
            self.data.close()
        if self._file is not None:
            self._file.close()
            self._file = None

    def head(self) -> bytes:
        """The first non-blank byte (b"" for a blank body): tells CSV from a JSON array or object."""
        found = re.search(rb"\S", self.data[:4096])
        return found.group() if found else b""

    def pieces(self, segments: Sequence[Segment]) -> Iterator[bytes]:
        """The bytes of `segments`, in chunks of at most CHUNK bytes."""
        for segment in segments:
            if isinstance(segment, bytes):
                yield segment
                continue
            for offset in range(segment[0], segment[1], CHUNK):
                yield self.data[offset : min(offset + CHUNK, segment[1])]

    def stream(self, segments: Sequence[Segment]) -> Iterator[bytes]:
        """`pieces(segments)`, closing the spool when done (or abandoned)."""
        try:
            yield from self.pieces(segments)
        finally:
            self.close()


def length(segments: Sequence[Segment]) -> int:
    return sum(len(s) if isinstance(s, bytes) else s[1] - s[0] for s in segments)


def csv_lines(data: bytes | mmap.mmap) -> Iterator[tuple[int, int]]:
    """(start, end) of every CSV line, its newline included (a last line may lack one); header first."""
    start = 0
    for token in _CSV_TOKEN.finditer(data):
        if token.end() - token.start() == 1 and data[token.start()] == _NEWLINE:
            yield start, token.end()
            start = token.end()
    if start < len(data):
        yield start, len(data)


def json_objects(data: bytes | mmap.mmap) -> Iterator[tuple[int, int]]:
    """(start, end) of every object directly inside the top-level JSON array, in order."""
    depth, start = 0, 0
    for token in _JSON_TOKEN.finditer(data):
        byte = data[token.start()]
        if byte == _QUOTE:
            continue
        if byte in _OPENERS:
            if depth == 1 and byte == _OBJECT_OPEN:
                start = token.start()
            depth += 1
        else:
            depth -= 1
            if depth == 1 and byte == _OBJECT_CLOSE:
                yield start, token.end()


def nth(spans: Iterable[tuple[int, int]], index: int) -> tuple[int, int] | None:
    """The span at `index` (from 0), or None when there are fewer."""
    for position, span in enumerate(spans):
        if position == index:
            return span
    return None


def count(spans: Iterable[tuple[int, int]]) -> int:
    return sum(1 for _ in spans)
