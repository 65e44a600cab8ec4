"""An untrusted zip read with bounded memory: sizes and counts are checked before anything is read.

- `central_directory` reads the end-of-central-directory record (and its ZIP64 form) exactly the way
  `zipfile` finds it, so the entry count and the size of the central directory are known, and bounded,
  before `zipfile.ZipFile` parses (and holds in memory) a directory of 100,000 entries.
- `read_entry` streams one entry in chunks through a byte limit, whatever size the zip declares for it:
  a "1 KB" entry that inflates to 1 GB stops at the limit.

Every problem is a `ZipProblem` with a one-line reason; the caller turns it into its own error.
"""

from __future__ import annotations

import hashlib
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

_EOCD = b"PK\x05\x06"
_EOCD_FORMAT = "<4s4H2LH"
_EOCD_SIZE = struct.calcsize(_EOCD_FORMAT)  # 22
_LOCATOR = b"PK\x06\x07"
_LOCATOR_FORMAT = "<4sLQL"
_LOCATOR_SIZE = struct.calcsize(_LOCATOR_FORMAT)  # 20
_EOCD64 = b"PK\x06\x06"
_EOCD64_FORMAT = "<4sQ2H2L4Q"
_EOCD64_SIZE = struct.calcsize(_EOCD64_FORMAT)  # 56
_MAX_COMMENT = 1 << 16
CHUNK = 1 << 20

# What the zipfile module raises on a damaged or unusual archive (CRC mismatch, truncated data, bad
# headers, unsupported features, undecodable names): all mean "not a zip we can read".
ZIP_ERRORS: tuple[type[Exception], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,  # includes UnicodeDecodeError
    zlib.error,  # a damaged deflate stream
    NotImplementedError,
    struct.error,
    OverflowError,
    IndexError,
    KeyError,
    RuntimeError,  # an encrypted entry without a password
)


class ZipProblem(Exception):
    """Why the zip cannot be read within its limits (one line)."""


@dataclass(frozen=True)
class Directory:
    entries: int  # total number of entries the archive declares
    size: int  # bytes of the central directory
    zip64: bool


def central_directory(handle: BinaryIO) -> Directory:
    """The declared entry count and central-directory size, found as `zipfile._EndRecData` finds them:
    the record in the last 22 bytes, else the last one in the final 64 KiB (behind a comment), and its
    ZIP64 form when a locator sits right before it."""
    handle.seek(0, 2)
    file_size = handle.tell()
    if file_size < _EOCD_SIZE:
        raise ZipProblem("it is too short to be a zip file")
    handle.seek(file_size - _EOCD_SIZE)
    record = handle.read(_EOCD_SIZE)
    at = file_size - _EOCD_SIZE
    if not (record[:4] == _EOCD and record[-2:] == b"\x00\x00"):
        start = max(file_size - _MAX_COMMENT - _EOCD_SIZE, 0)
        handle.seek(start)
        tail = handle.read()
        found = tail.rfind(_EOCD)
        if found < 0 or len(tail) - found < _EOCD_SIZE:
            raise ZipProblem("it has no end-of-central-directory record (not a zip file)")
        at = start + found
        record = tail[found : found + _EOCD_SIZE]
    fields = struct.unpack(_EOCD_FORMAT, record)
    entries, size = int(fields[4]), int(fields[5])
    if at >= _LOCATOR_SIZE + _EOCD64_SIZE:
        handle.seek(at - _LOCATOR_SIZE)
        locator = struct.unpack(_LOCATOR_FORMAT, handle.read(_LOCATOR_SIZE))
        if locator[0] == _LOCATOR:
            if locator[1] != 0 or locator[3] > 1:
                raise ZipProblem("it spans several disks")
            handle.seek(at - _LOCATOR_SIZE - _EOCD64_SIZE)
            wide = struct.unpack(_EOCD64_FORMAT, handle.read(_EOCD64_SIZE))
            if wide[0] == _EOCD64:
                return Directory(entries=int(wide[7]), size=int(wide[8]), zip64=True)
    return Directory(entries=entries, size=size, zip64=False)


def read_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, sink: Callable[[bytes], object]
) -> tuple[str, int]:
    """Stream one entry to `sink` in chunks; (sha256 hex, bytes). More than `limit` bytes, or more than
    the entry declares, is a ZipProblem (the declared size is not trusted to stop the inflater)."""
    digest = hashlib.sha256()
    total = 0
    bound = min(limit, info.file_size)
    with archive.open(info) as stream:
        while chunk := stream.read(CHUNK):
            total += len(chunk)
            if total > bound:
                raise ZipProblem(
                    f"{info.filename} unpacks to more than {bound:,} bytes"
                    + (
                        f" (the limit for this file is {limit:,})"
                        if bound == limit
                        else " (its declared size)"
                    )
                )
            digest.update(chunk)
            sink(chunk)
    return digest.hexdigest(), total
