"""The channel between the trusted test process and the untrusted solution process: plain data only.

This module is also source text for the sandbox's child processes (`suites.sandbox.child` executes it in
a fresh interpreter that imports nothing of the harness), so it uses the standard library only.

Frames: a 4-byte big-endian length, then that many bytes of UTF-8 JSON. A frame over `MAX_FRAME` bytes
is refused before it is read. Values are JSON trees in which every JSON object is a one-key tag, so
nothing is ambiguous:

    None, bool, int, float (NaN/Infinity as JSON's usual extension), str      as themselves
    list                                                                       JSON array
    tuple {"t": [...]}   set {"s": [...]}   frozenset {"f": [...]}   dict {"d": [[key, value], ...]}
    bytes {"b": "hex"}   complex {"c": [real, imag]}
    collections.Counter {"C": [[k, v], ...]}   OrderedDict {"O": ...}   defaultdict {"D": ...} (no
    factory)   deque {"Q": [...]}
    {"y": "int"}: one of the builtin types in `_TYPES` (a test may pass `int` as an argument, task 533)
    {"r": "key"}: an object that stays on the solution side: a name bound by the task's setup code (which
    runs there, after the program: task 367's builds trees of the program's own Node class), or an
    instance of one of the program's classes that a test constructs (task 601's `Pair(5, 24)`), under a
    key the solution side chose. The trusted side holds a `Ref`, which it can only send back: comparing
    it, testing its truth or hashing it fails the test, so no solution object can decide an assertion

The encoder accepts only values whose type is exactly one of these (a subclass of int or str, a
generator, a custom object: `Unencodable`). The decoder builds fresh objects of the trusted side's own
types, with bounded depth and element count, so nothing the solution makes can lie to the tests: the
worst it can send is data it could also have returned honestly.

Messages: calls {"id": n, "fn": name, "args": [...], "kwargs": {"d": [[name, value], ...]}}; replies
{"id": n, "ok": value} | {"id": n, "raised": "TypeName: message"} | {"id": n, "bad": "why"}; and, once, from
the solution side before any call, {"loaded": true} or {"loaded": false, "raised": "..."}.
"""

from __future__ import annotations

import collections
import json
import os
import struct
import sys

TYPE_CHECKING = False  # typing is not imported at run time: every sandboxed run pays for its imports
if TYPE_CHECKING:
    from typing import Any

MAX_FRAME = 8 << 20  # bytes of one message, either way
MAX_DEPTH = 100  # nesting of containers
MAX_NODES = 1_000_000  # values in one message
MAX_TEXT = 2000  # characters of an exception message carried back
MAX_SAME_HASH = 64  # distinct set members or dict keys with one hash value: more were chosen to collide

_HEADER = struct.Struct(">I")
_NONE, _BOOL, _INT, _FLOAT, _STR = type(None), bool, int, float, str
_COUNTER, _ODICT, _DDICT, _DEQUE = (
    collections.Counter, collections.OrderedDict, collections.defaultdict, collections.deque,
)  # fmt: skip
_TYPES = {t.__name__: t for t in (int, float, complex, str, bytes, bool, list, tuple, dict, set, frozenset)}
_TYPE_NAMES = {t: name for name, t in _TYPES.items()}
MAX_KEY = 200  # characters of a Ref's key
_PAIRED: dict[type, str] = {dict: "d", _COUNTER: "C", _ODICT: "O", _DDICT: "D"}
_SEQUENCES: dict[type, str] = {tuple: "t", set: "s", frozenset: "f", _DEQUE: "Q"}


class CodecError(Exception):
    """A message that is malformed, too large, too deep, or names a type this channel does not carry."""


class Unencodable(CodecError):
    """A value that is not plain data (its type is not exactly one of the listed ones)."""


class SolutionFailed(BaseException):
    """The solution raised, returned something that is not plain data, or went away (trusted side).

    A BaseException, so a test's own `except Exception` cannot swallow it."""


class Ref:
    """An object that stays on the solution side; only sent back there (see the module docstring)."""

    __slots__ = ("__key",)
    __hash__ = None  # type: ignore[assignment]  # unhashable: a set of them would compare them

    def __init__(self, key: str) -> None:
        self.__key = key

    def key(self) -> str:
        return self.__key

    def _refuse(self, *_: Any) -> Any:
        raise SolutionFailed(f"a test compared or tested {self.__key}, an object of the solution's own")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = __len__ = __iter__ = _refuse

    def __repr__(self) -> str:
        return f"<solution object {self.__key}>"


def to_tree(value: Any) -> Any:
    """`value` as a JSON tree (`Unencodable` if it is not plain data)."""
    budget, text_budget = [MAX_NODES], [MAX_FRAME]

    def walk(v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise Unencodable(f"nested deeper than {MAX_DEPTH} levels")
        budget[0] -= 1
        if budget[0] < 0:
            raise Unencodable(f"more than {MAX_NODES} values")
        kind = type(v)
        if kind is _STR or kind is bytes:
            text_budget[0] -= len(v)  # before any copy: a 1 GB string is refused at once
            if text_budget[0] < 0:
                raise Unencodable(f"text over the {MAX_FRAME}-byte limit")
        if kind is _NONE or kind is _BOOL or kind is _STR:
            return v
        if kind is _INT:
            if v.bit_length() > 12000:  # JSON text of it would pass Python's 4300-digit limit
                raise Unencodable("an int with more than 3600 digits")
            return v
        if kind is _FLOAT:
            return v
        if kind is list:
            return [walk(x, depth + 1) for x in v]
        tag = _SEQUENCES.get(kind)
        if tag is not None:
            return {tag: [walk(x, depth + 1) for x in v]}
        tag = _PAIRED.get(kind)
        if tag is not None:
            return {tag: [[walk(k, depth + 1), walk(x, depth + 1)] for k, x in v.items()]}
        if kind is bytes:
            return {"b": bytes.hex(v)}
        if kind is complex:
            return {"c": [v.real, v.imag]}
        if kind is Ref:
            return {"r": v.key()}
        if kind is type and v in _TYPE_NAMES:
            return {"y": _TYPE_NAMES[v]}
        raise Unencodable(f"a {_type_name(v)} is not plain data")

    return walk(value, 0)


def from_tree(tree: Any, resolve: Any = None) -> Any:
    """The value a JSON tree stands for, built from this process's own types. `resolve(key)` gives the
    object for a {"r": key} reference (the solution side); without it, a reference becomes a `Ref`."""
    budget = [MAX_NODES]

    def walk(t: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise CodecError(f"nested deeper than {MAX_DEPTH} levels")
        budget[0] -= 1
        if budget[0] < 0:
            raise CodecError(f"more than {MAX_NODES} values")
        kind = type(t)
        if kind is _NONE or kind is _BOOL or kind is _STR or kind is _INT or kind is _FLOAT:
            return t
        if kind is list:
            return [walk(x, depth + 1) for x in t]
        if kind is not dict or len(t) != 1:
            raise CodecError("a JSON object that is not a one-key tag")
        ((tag, body),) = t.items()
        try:
            if tag in ("t", "s", "f", "Q"):
                items = [walk(x, depth + 1) for x in _array(body)]
                if tag in ("s", "f"):
                    _refuse_collisions(items)
                return {"t": tuple, "s": set, "f": frozenset, "Q": _DEQUE}[tag](items)
            if tag in ("d", "C", "O", "D"):
                pairs = [_pair(p) for p in _array(body)]
                built = [(walk(k, depth + 1), walk(x, depth + 1)) for k, x in pairs]
                _refuse_collisions([k for k, _ in built])
                if tag == "D":
                    return _DDICT(None, built)
                return {"d": dict, "C": _COUNTER, "O": _ODICT}[tag](dict(built) if tag == "C" else built)
            if tag == "b" and type(body) is str:
                return bytes.fromhex(body)
            if tag == "c" and type(body) is list and len(body) == 2:
                real, imag = (walk(x, depth + 1) for x in body)
                if type(real) not in (int, float) or type(imag) not in (int, float):
                    raise CodecError("a complex number with non-numeric parts")
                return complex(real, imag)
            if tag == "y" and type(body) is str and body in _TYPES:
                return _TYPES[body]
            if tag == "r" and type(body) is str and 0 < len(body) <= MAX_KEY:
                return resolve(body) if resolve is not None else Ref(body)
        except TypeError as error:  # e.g. an unhashable set member or dict key
            raise CodecError(f"malformed {tag!r} value ({error})") from None
        except ValueError as error:
            raise CodecError(f"malformed {tag!r} value ({error})") from None
        raise CodecError(f"unknown tag {tag!r}")

    return walk(tree, 0)


def _refuse_collisions(keys: list[Any]) -> None:
    """Refuse keys crafted to share a hash (a set of them takes quadratic time to build): more than
    MAX_SAME_HASH distinct keys with one hash value. Linear; equal keys (plain data) are not counted."""
    groups: dict[int, list[Any]] = {}
    for key in keys:
        groups.setdefault(hash(key), []).append(key)  # TypeError (unhashable) becomes a CodecError
    for group in groups.values():
        if len(group) > MAX_SAME_HASH and sum(k != group[0] for k in group) >= MAX_SAME_HASH:
            raise CodecError(f"{len(group)} set members or keys with one hash value")


def _array(body: Any) -> list[Any]:
    if type(body) is not list:
        raise CodecError("a tag whose body is not an array")
    return body


def _pair(item: Any) -> tuple[Any, Any]:
    if type(item) is not list or len(item) != 2:
        raise CodecError("a mapping entry that is not a [key, value] pair")
    return item[0], item[1]


def _type_name(value: Any) -> str:
    kind = type.__getattribute__(type(value), "__name__")  # a metaclass cannot fake this one
    return kind if type(kind) is str else "?"


def pack(message: Any) -> bytes:
    """A message tree as one frame."""
    try:
        body = json.dumps(message, ensure_ascii=False, check_circular=False).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError) as error:
        raise Unencodable(f"cannot be written as JSON ({error})") from None
    if len(body) > MAX_FRAME:
        raise Unencodable(f"{len(body)} bytes, over the {MAX_FRAME}-byte limit")
    return _HEADER.pack(len(body)) + body


def unpack(body: bytes) -> Any:
    """The JSON tree of one frame's body (strict UTF-8; surrogate halves allowed, as Python str has)."""
    try:
        return json.loads(body.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError) as error:
        raise CodecError(f"not a JSON message ({type(error).__name__})") from None


def send(fd: int, message: Any) -> None:
    data = memoryview(pack(message))
    while data:
        data = data[os.write(fd, data) :]


def receive(fd: int) -> Any:
    """The next message on `fd`; EOFError when the other side is gone. No timeout of its own: the
    harness's wall-clock limit ends the whole run."""
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    if size > MAX_FRAME:
        raise CodecError(f"a message of {size} bytes, over the {MAX_FRAME}-byte limit")
    return unpack(_read_exact(fd, size))


def _read_exact(fd: int, size: int) -> bytes:
    chunks, missing = [], size
    while missing:
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def serve(namespace: dict[str, Any], call_fd: int, reply_fd: int) -> None:
    """The solution side: answer calls on functions of `namespace` until the trusted side hangs up.

    Runs after the untrusted program, in its process: nothing here is trusted, and nothing needs to be."""
    kept: dict[str, Any] = {}  # instances of the program's classes that the tests constructed

    def resolve(key: str) -> Any:
        return kept[key] if key in kept else namespace[key]

    while True:
        flush_output()  # the process is killed, not ended, when the tests are done
        try:
            call = receive(call_fd)
        except (EOFError, OSError):
            return
        ident = call.get("id") if type(call) is dict else None
        try:
            args = from_tree(call["args"], resolve)
            kwargs = from_tree(call["kwargs"], resolve)
            name = call["fn"]
        except Exception as error:
            send(reply_fd, {"id": ident, "bad": f"malformed call ({type(error).__name__})"})
            continue
        if name not in namespace:
            send(reply_fd, {"id": ident, "raised": f"NameError: the program defines no {str(name)[:100]!r}"})
            continue
        function = namespace[name]
        try:
            result = function(*args, **kwargs)
        except BaseException as error:
            send(reply_fd, {"id": ident, "raised": describe(error)})
            continue
        try:
            frame = pack({"id": ident, "ok": to_tree(result)})
        except CodecError as error:
            if type(function) is not type or type(result) is not function:
                send(reply_fd, {"id": ident, "bad": str(error)})
                continue
            key = f"{call['fn']}#{len(kept) + 1}"  # a test constructing one of the program's classes
            kept[key] = result
            frame = pack({"id": ident, "ok": {"r": key}})
        except BaseException as error:
            send(reply_fd, {"id": ident, "bad": f"encoding the result raised {describe(error)}"})
            continue
        view = memoryview(frame)
        while view:
            view = view[os.write(reply_fd, view) :]


def flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def describe(error: BaseException) -> str:
    try:
        text = str(error)
    except BaseException:
        text = "?"
    return f"{_type_name(error)}: {text[:MAX_TEXT] if type(text) is str else '?'}"
