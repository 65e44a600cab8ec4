"""Hostile zip files for the bundle tests, built in well under a second each.

`zipfile` would take seconds to deflate a gigabyte of zeros or to write 100,000 entries, so this module
writes the zip records itself: a deflate stream of N MiB of zeros is one compressed MiB repeated (after a
full flush every block compresses to the same bytes), and an entry may declare any size it likes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20


@dataclass(frozen=True)
class RawEntry:
    name: str
    data: bytes  # as stored in the zip (deflated when method is 8)
    crc: int
    size: int  # the uncompressed size the zip declares (may lie)
    method: int = 8  # 8 deflate, 0 stored


def deflated(payload: bytes, name: str, level: int = 6) -> RawEntry:
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return RawEntry(name, c.compress(payload) + c.flush(), zlib.crc32(payload), len(payload))


def zeros(name: str, mib: int, declared: int | None = None) -> RawEntry:
    """`mib` MiB of zero bytes deflated to about mib KiB; `declared` overrides the declared size."""
    block = bytes(MiB)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    repeat = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    stream = first + repeat * (mib - 1) + c.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    return RawEntry(name, stream, crc, mib * MiB if declared is None else declared)


def write_zip(path: Path, entries: Sequence[RawEntry], zip64_end: bool = False) -> Path:
    """Local headers, data, central directory and end record; ZIP64 end records when asked (needed
    for more than 65,535 entries). Sizes over 4 GiB are not supported (no ZIP64 extra fields)."""
    local: list[bytes] = []
    central: list[bytes] = []
    offset = 0
    for e in entries:
        name = e.name.encode()
        header = struct.pack(
            "<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0x800, e.method, 0, 0x21, e.crc, len(e.data), e.size,
            len(name), 0,
        )  # fmt: skip
        entry = struct.pack(
            "<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 3, 20, 0, 0x800, e.method, 0, 0x21, e.crc, len(e.data),
            e.size, len(name), 0, 0, 0, 0, 0o644 << 16, offset,
        )  # fmt: skip
        central.append(entry + name)
        local.append(header + name + e.data)
        offset += len(header) + len(name) + len(e.data)
    directory = b"".join(central)
    end = b""
    count = len(entries)
    if zip64_end:
        end += struct.pack(
            "<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(directory), offset
        )
        end += struct.pack("<4sLQL", b"PK\x06\x07", 0, offset + len(directory), 1)
        count = 0xFFFF
    end += struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF), len(directory), offset, 0
    )
    with path.open("wb") as handle:
        for chunk in local:
            handle.write(chunk)
        handle.write(directory)
        handle.write(end)
    return path


def many_entries(path: Path, n: int) -> Path:
    """A zip of `n` empty stored entries (ZIP64 end records)."""
    empty = [RawEntry(f"runs/x/{i}", b"", 0, 0, method=0) for i in range(n)]
    return write_zip(path, empty, zip64_end=True)


def nested_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth
