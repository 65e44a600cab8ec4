"""One strict, bounded way to read every file the harness did not just write itself in this process.

- Sizes are checked before reading (`max_bytes`), so a hostile or runaway file cannot take the memory.
- Text is UTF-8, strictly: an invalid byte is a DataError naming the file and the byte offset (and the
  line), never silently replaced with U+FFFD (which `rescore` would then write back).
- JSON nested deeper than `MAX_JSON_DEPTH` is a DataError, not a RecursionError traceback.
- Every error is one paragraph with the file, where in it, and what to do (exit 4).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import DataError

MiB = 1 << 20
DEFAULT_MAX_BYTES = 256 * MiB
MAX_JSON_DEPTH = 200
DEFAULT_FIX = "Restore the file from a backup, or delete it and run the command that writes it again."


def _where(path: Path | str, line: int | None) -> str:
    return f"{path}" + (f" line {line}" if line is not None else "")


def read_bytes(path: Path, what: str, max_bytes: int = DEFAULT_MAX_BYTES, fix: str = DEFAULT_FIX) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise DataError(f"The {what} {path} does not exist.", fix) from None
    except IsADirectoryError:
        raise DataError(f"The {what} {path} is a folder, not a file.", fix) from None
    except OSError as error:
        raise DataError(f"Cannot read the {what} {path}: {error.strerror or error}.", fix) from None
    if len(data) > max_bytes:
        raise DataError(f"The {what} {path} is larger than {max_bytes:,} bytes; refusing to read it.", fix)
    return data


def decode_utf8(
    data: bytes, path: Path | str, what: str, line: int | None = None, fix: str = DEFAULT_FIX
) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"The {what} {_where(path, line)} is not valid UTF-8 (byte {error.start} of "
            f"{'the line' if line is not None else 'the file'}: {data[error.start : error.start + 4]!r}).",
            fix,
        ) from None


def read_text(path: Path, what: str, max_bytes: int = DEFAULT_MAX_BYTES, fix: str = DEFAULT_FIX) -> str:
    return decode_utf8(read_bytes(path, what, max_bytes, fix), path, what, None, fix)


def json_depth_exceeds(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if brackets outside strings nest deeper than `limit` (a linear scan, no recursion)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def parse_json(
    text: str | bytes, path: Path | str, what: str, line: int | None = None, fix: str = DEFAULT_FIX
) -> Any:
    """json.loads with every failure as a DataError naming the file (and line)."""
    if isinstance(text, bytes):
        text = decode_utf8(text, path, what, line, fix)
    if json_depth_exceeds(text):
        raise DataError(f"The {what} {_where(path, line)} nests deeper than {MAX_JSON_DEPTH} levels.", fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        at = f"line {error.lineno} column {error.colno}" if line is None else f"column {error.colno}"
        raise DataError(
            f"The {what} {_where(path, line)} is not valid JSON ({at}: {error.msg}).", fix
        ) from None
    except RecursionError:  # belt and braces: json_depth_exceeds should have caught it
        raise DataError(f"The {what} {_where(path, line)} nests too deeply to parse.", fix) from None
    except ValueError as error:  # e.g. an integer longer than Python converts (4,300 digits)
        raise DataError(f"The {what} {_where(path, line)} cannot be read ({error}).", fix) from None


def read_json(path: Path, what: str, max_bytes: int = DEFAULT_MAX_BYTES, fix: str = DEFAULT_FIX) -> Any:
    return parse_json(read_bytes(path, what, max_bytes, fix), path, what, None, fix)


def read_json_object(
    path: Path, what: str, max_bytes: int = DEFAULT_MAX_BYTES, fix: str = DEFAULT_FIX
) -> dict[str, Any]:
    payload = read_json(path, what, max_bytes, fix)
    if not isinstance(payload, dict):
        raise DataError(f"The {what} {path} is not a JSON object.", fix)
    return payload


def iter_jsonl(
    path: Path, what: str, max_bytes: int = DEFAULT_MAX_BYTES, fix: str = DEFAULT_FIX
) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for every non-blank line; any bad line is a DataError naming it."""
    data = read_bytes(path, what, max_bytes, fix)
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            yield number, parse_json(raw, path, what, number, fix)


def read_yaml(path: Path, what: str, max_bytes: int = 16 * MiB, fix: str = "Fix the file.") -> Any:
    """A YAML file the user wrote (a gate policy, a training config): strict UTF-8 and bounded like every
    file (DataError); a YAML syntax error is the user's to fix (UsageError, exit 2)."""
    import yaml  # type: ignore[import-untyped]

    from harness.errors import UsageError

    if not path.is_file():
        raise UsageError(f"The {what} {path} does not exist.", fix)
    text = read_text(path, what, max_bytes, fix)
    if json_depth_exceeds(text):  # PyYAML recurses and slows sharply long before it fails
        raise UsageError(f"The {what} {path} nests deeper than {MAX_JSON_DEPTH} levels.", fix)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        one_paragraph = " ".join(str(error).split())
        raise UsageError(f"The {what} {path} is not valid YAML ({one_paragraph}).", fix) from None
    except RecursionError:
        raise UsageError(f"The {what} {path} nests too deeply.", fix) from None
    except ValueError as error:  # e.g. an integer longer than Python converts
        raise UsageError(f"The {what} {path} cannot be read ({error}).", fix) from None
