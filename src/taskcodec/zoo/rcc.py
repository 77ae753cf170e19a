"""A reader for Qt binary resource files (``.rcc``), for the photos packed inside them.

The format (Qt's ``rcc`` tool, versions 1–3)::

    header   "qres" | version u32 | tree offset u32 | data offset u32 | names offset u32
             | flags u32 (version 3 only)                       all integers big-endian
    tree     fixed-size entries (14 bytes; 22 from version 2, which adds a u64 mtime):
             name offset u32 | flags u16 | directory: child count u32, first child u32
                                         | file:      country u16, language u16, data offset u32
             entry 0 is the root directory; a child index counts entries from the tree start
    names    u16 length | u32 hash | length UTF-16BE code units
    data     u32 size | size bytes; flag 1: zlib with a u32 big-endian length first
             (``qCompress``), flag 4: a zstd frame

The file is treated as untrusted: every offset and length is checked against the buffer, the
tree walk is bounded (no entry visited twice, depth at most 64) and a decompressed payload may
not exceed ``max_size``; anything out of bounds raises :class:`~taskcodec.CorruptStreamError`
naming the entry.
"""

from __future__ import annotations

import struct
import zlib
from typing import AbstractSet, Dict, Iterator, Optional, Tuple

from taskcodec.errors import CorruptStreamError, MissingDependencyError

__all__ = ["RCC_MAGIC", "rcc_entries", "read_rcc", "MAX_ENTRY_SIZE"]

RCC_MAGIC = b"qres"
MAX_ENTRY_SIZE = 256 << 20
"""Largest payload (compressed or not) :func:`read_rcc` accepts for one entry."""

_COMPRESSED, _DIRECTORY, _ZSTD = 0x01, 0x02, 0x04
_MAX_DEPTH = 64


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data = memoryview(data)
        self.what = what

    def fail(self, msg: str) -> CorruptStreamError:
        return CorruptStreamError(f"{self.what}: {msg}")

    def take(self, offset: int, size: int, field: str) -> memoryview:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise self.fail(f"{field} at byte {offset} (+{size}) lies outside the file "
                            f"({len(self.data)} bytes)")
        return self.data[offset : offset + size]

    def u16(self, offset: int, field: str) -> int:
        return struct.unpack(">H", self.take(offset, 2, field))[0]

    def u32(self, offset: int, field: str) -> int:
        return struct.unpack(">I", self.take(offset, 4, field))[0]


def _header(r: _Reader) -> Tuple[int, int, int, int]:
    if bytes(r.take(0, 4, "magic")) != RCC_MAGIC:
        raise r.fail("not a Qt resource file (no 'qres' magic)")
    version = r.u32(4, "version")
    if version not in (1, 2, 3):
        raise r.fail(f"unsupported rcc format version {version}")
    tree, data, names = r.u32(8, "tree offset"), r.u32(12, "data offset"), r.u32(16, "names offset")
    return version, tree, data, names


def _name(r: _Reader, names: int, offset: int) -> str:
    at = names + offset
    length = r.u16(at, "name length")
    raw = r.take(at + 6, 2 * length, "name")
    try:
        return bytes(raw).decode("utf-16-be")
    except UnicodeDecodeError:
        raise r.fail(f"name at byte {at} is not UTF-16") from None


def _payload(r: _Reader, path: str, data: int, offset: int, flags: int, max_size: int) -> bytes:
    at = data + offset
    size = r.u32(at, f"size of {path!r}")
    if size > max_size:
        raise r.fail(f"entry {path!r} is {size} bytes, over the {max_size}-byte limit")
    raw = bytes(r.take(at + 4, size, f"data of {path!r}"))
    if flags & _ZSTD:
        try:
            import zstandard
        except ImportError:
            raise MissingDependencyError(f"{r.what}: entry {path!r} is zstd-compressed; "
                                         "pip install zstandard") from None
        try:
            return zstandard.ZstdDecompressor().decompress(raw, max_output_size=max_size)
        except zstandard.ZstdError as exc:
            raise r.fail(f"entry {path!r}: damaged zstd data ({exc})") from None
    if flags & _COMPRESSED:
        if size < 4:
            raise r.fail(f"entry {path!r}: compressed data shorter than its length prefix")
        expect = struct.unpack(">I", raw[:4])[0]
        if expect > max_size:
            raise r.fail(f"entry {path!r} inflates to {expect} bytes, over the limit")
        d = zlib.decompressobj()
        try:
            out = d.decompress(raw[4:], expect + 1)
        except zlib.error as exc:
            raise r.fail(f"entry {path!r}: damaged zlib data ({exc})") from None
        if len(out) != expect or not d.eof:
            raise r.fail(f"entry {path!r}: zlib data inflate to {len(out)} bytes, "
                         f"header says {expect}")
        return out
    return raw


def rcc_entries(data: bytes, what: str = "rcc file", max_size: int = MAX_ENTRY_SIZE,
                only: Optional[AbstractSet[str]] = None) -> Iterator[Tuple[str, bytes]]:
    """Yield ``(path, payload)`` for every file in the rcc ``data`` (only those whose path is
    in ``only``, when given: the others are not decompressed), payloads decompressed; ``path``
    is ``/``-separated without the leading ``/`` (``"gcompris/x/photo.webp"``). ``what`` names
    the file in error messages."""
    r = _Reader(data, what)
    version, tree, data_at, names = _header(r)
    entry = 14 if version == 1 else 22
    count = (len(r.data) - tree) // entry if tree <= len(r.data) else 0
    seen = set()
    stack = [(0, "", 0)]  # (entry index, parent path, depth)
    while stack:
        index, parent, depth = stack.pop()
        if index in seen or index >= count:
            raise r.fail(f"tree entry {index} is out of range or visited twice")
        if depth > _MAX_DEPTH:
            raise r.fail(f"directory tree deeper than {_MAX_DEPTH}")
        seen.add(index)
        at = tree + index * entry
        flags = r.u16(at + 4, "entry flags")
        name = "" if index == 0 else _name(r, names, r.u32(at, "name offset"))
        if index and (not name or "/" in name or name in (".", "..")):
            raise r.fail(f"tree entry {index} has an invalid name {name!r}")
        path = f"{parent}/{name}" if parent else name
        if flags & _DIRECTORY:
            n, first = r.u32(at + 6, "child count"), r.u32(at + 10, "first child")
            if first + n > count:
                raise r.fail(f"directory {path or '/'!r} lists children past the tree's end")
            stack.extend((first + i, path, depth + 1) for i in reversed(range(n)))
        elif index == 0:
            raise r.fail("the root entry is not a directory")
        elif only is None or path in only:
            yield path, _payload(r, path, data_at, r.u32(at + 10, "data offset"), flags,
                                 max_size)


def read_rcc(data: bytes, what: str = "rcc file", max_size: int = MAX_ENTRY_SIZE,
             only: Optional[AbstractSet[str]] = None) -> Dict[str, bytes]:
    """The files in the rcc ``data`` as ``{path: payload}`` (see :func:`rcc_entries`)."""
    return dict(rcc_entries(data, what, max_size, only))
