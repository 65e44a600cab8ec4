"""The channel between the trusted test process and the solution: plain data in, plain data out, or a
clear failure; never an object with behaviour of the sender's choosing, never a crash of the reader."""

from __future__ import annotations

import collections
import json
import math
import os
import random
import struct
import threading
import unittest.mock
from collections.abc import Iterator
from typing import Any

import pytest

from suites.sandbox.plan import bound_names, module_names, plan_tests, solution_names
from suites.sandbox.trusted import Channel, run_tests
from suites.sandbox.wire import (
    MAX_DEPTH,
    MAX_FRAME,
    CodecError,
    Ref,
    SolutionFailed,
    Unencodable,
    from_tree,
    pack,
    receive,
    send,
    serve,
    to_tree,
    unpack,
)

PLAIN: list[Any] = [
    None, True, False, 0, -7, 10**3000, 2.5, -0.0, math.inf, "", "héllo\udc80", b"\x00\xff", 3 + 4j,
    [1, [2, [3]]], (1, "a", (2.0,)), {1, 2}, frozenset({"x"}), {1: "a", (2, 3): [4], "k": {5: None}},
    collections.Counter("abca"), collections.OrderedDict([(2, "b"), (1, "a")]), collections.deque([1, 2]),
    collections.defaultdict(None, {"a": 1}), (), [], {},
]  # fmt: skip


def roundtrip(value: Any) -> Any:
    frame = pack(to_tree(value))
    return from_tree(unpack(frame[4:]))


@pytest.mark.parametrize("value", PLAIN, ids=[type(v).__name__ + str(i) for i, v in enumerate(PLAIN)])
def test_plain_data_comes_back_equal_and_of_the_same_exact_type(value: Any) -> None:
    back = roundtrip(value)
    assert type(back) is type(value)
    assert back == value or (isinstance(value, float) and math.isnan(value))
    if isinstance(value, float):
        assert math.copysign(1, back) == math.copysign(1, value)


def test_nan_survives() -> None:
    assert math.isnan(roundtrip(float("nan")))


class AlwaysEqual:
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


class LyingInt(int):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


class LyingStr(str):
    pass


def _generator() -> Iterator[int]:
    yield 1


def _self_referential() -> list[Any]:
    items: list[Any] = []
    items.append(items)
    return items


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        AlwaysEqual(), LyingInt(9), LyingStr("x"), [1, LyingInt(2)], {"k": AlwaysEqual()}, unittest.mock.ANY,
        _generator(), len, lambda: 1, range(3), map(str, [1]), _self_referential(), _deep(MAX_DEPTH + 5),
        [0] * 1_000_001, bytearray(b"x"), 10**4000, Exception("x"),
    ],
    ids=lambda v: type(v).__name__,
)  # fmt: skip
def test_anything_else_is_refused_by_the_encoder(value: Any) -> None:
    with pytest.raises(Unencodable):
        pack(to_tree(value))


@pytest.mark.parametrize(
    "body",
    [
        b"", b"{", b"\xff\xfe", b'{"x": 1}', b'{"t": 1}', b'{"d": [[1]]}', b'{"s": [[1]]}', b'{"d": [[[1], 2]]}',
        b'{"c": ["a", 1]}', b'{"b": "zz"}', b'{"r": ""}', b'{"y": "object"}', b'{"t": [1], "s": [2]}',
        b"[" * 200_000, b'{"s": [{"r": "x"}]}',
        b'{"Q": {"t": []}}', json.dumps(_deep(MAX_DEPTH + 5)).encode(), b'"\\ud800"x',
        b"1" + b"0" * 5000,
    ],
    ids=lambda b: repr(b[:16]),
)  # fmt: skip
def test_malformed_messages_are_codec_errors_never_crashes(body: bytes) -> None:
    with pytest.raises(CodecError):
        from_tree(unpack(body))


def test_random_bytes_and_mutated_messages_only_ever_give_codec_errors_or_plain_data() -> None:
    rng = random.Random(16)
    seed = json.dumps(to_tree([{1: (2, "x")}, {3.5, "y"}, b"z", collections.Counter("ab")])).encode()
    plain_types = {type(v) for v in PLAIN}
    for _ in range(3000):
        body = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        try:
            value = from_tree(unpack(bytes(body)))
        except CodecError:
            continue
        stack = [value]
        while stack:
            item = stack.pop()
            assert type(item) in plain_types, type(item)
            if isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, list | tuple | set | frozenset | collections.deque):
                stack.extend(item)


def test_a_frame_over_the_limit_is_refused_before_it_is_read() -> None:
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, struct.pack(">I", MAX_FRAME + 1))
        with pytest.raises(CodecError, match="over the"):
            receive(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
    with pytest.raises(Unencodable):
        pack(to_tree("x" * (MAX_FRAME + 1)))


def test_references_resolve_on_the_solution_side_and_are_inert_on_the_trusted_side() -> None:
    tree = to_tree([Ref("root"), 1, int])
    assert from_tree(tree, {"root": "the tree"}.__getitem__) == ["the tree", 1, int]
    ref = from_tree(tree)[0]
    assert type(ref) is Ref and ref.key() == "root"
    for use in (lambda: ref == 9, lambda: ref != 9, lambda: bool(ref), lambda: ref < 1, lambda: len(ref)):
        with pytest.raises(SolutionFailed, match="an object of the solution's own"):
            use()
    with pytest.raises(TypeError):
        hash(ref)


def test_names_the_tests_call_in_the_solution() -> None:
    tests = "import math\nx = [1]\nassert f(x) == g(lambda y: y)\nassert math.isclose(h(2), 2.0)\n"
    assert solution_names(tests, {"math"}, ()) == {"f", "g", "h"}
    assert solution_names("assert sum(2, 3) == 6\nassert len([1]) == 1\n", set(), ["sum"]) == {"sum"}
    assert module_names(
        "assert size(x) == sys.getsizeof(x)\nassert math.pi > 3\nassert copy(1)\n", {"sys", "copy", "size"}
    ) == {"sys"}
    assert bound_names("root = Node(1)\nroot.left = Node(2)\nimport os.path as p\ndef k(): pass\n") == {
        "root", "p", "k",
    }  # fmt: skip


def _job(tests: str, prelude: str = "", setup: str = "") -> dict[str, Any]:
    """The trusted side's payload, as `suites.sandbox` builds it."""
    plan = plan_tests(tests, prelude, setup, ())
    return {"prelude": prelude, "tests": tests, "solution": plan.solution, "modules": plan.modules,
            "refs": plan.refs, "plan_error": plan.error}  # fmt: skip


class FakeSolution:
    """The solution side of a real pipe pair, answering from a thread with whatever a test wants."""

    def __init__(self) -> None:
        self.call_r, self.call_w = os.pipe()
        self.reply_r, self.reply_w = os.pipe()
        self.threads: list[threading.Thread] = []

    def channel(self) -> Channel:
        return Channel(self.call_w, self.reply_r)

    def close(self) -> None:
        # EOF first, so a serving thread ends before its fd numbers can be reused by the next test.
        for fd in (self.call_w, self.reply_r):
            _close_quietly(fd)
        for thread in self.threads:
            thread.join(timeout=10)
            assert not thread.is_alive()
        for fd in (self.call_r, self.reply_w):
            _close_quietly(fd)


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


@pytest.fixture
def fake() -> Iterator[FakeSolution]:
    pipes = FakeSolution()
    yield pipes
    pipes.close()


def _serve(fake: FakeSolution, namespace: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        send(fake.reply_w, {"loaded": True})
        try:
            serve(namespace, fake.call_r, fake.reply_w)
        except OSError:  # the test is over and closed the reply pipe
            pass

    thread = threading.Thread(target=run, daemon=True)
    fake.threads.append(thread)
    thread.start()
    return thread


def test_run_tests_through_a_real_channel(fake: FakeSolution) -> None:
    namespace = {"solve": lambda x: x * x, "root": "setup-made", "size": lambda node: len(node)}
    _serve(fake, namespace)
    tests = "assert solve(3) == 9\nassert math.isclose(solve(0.5), 0.25)\nassert size(root) == 10\n"
    verdict = run_tests(_job(tests, "import math\n", "root = object()\n"), fake.call_w, fake.reply_r)
    assert verdict == {"passed": True, "reason": "", "calls": 3, "gone": False}


@pytest.mark.parametrize(
    ("returned", "reason"),
    [
        (AlwaysEqual(), "solve() returned a AlwaysEqual is not plain data"),
        (LyingInt(9), "solve() returned a LyingInt is not plain data"),
        (unittest.mock.ANY, "solve() returned a _ANY is not plain data"),
        (10, "assertion failed: assert solve(3) == 9"),
    ],
)
def test_lying_results_fail_with_a_reason(fake: FakeSolution, returned: Any, reason: str) -> None:
    _serve(fake, {"solve": lambda x: returned})
    verdict = run_tests(_job("assert solve(3) == 9\n"), fake.call_w, fake.reply_r)
    assert verdict["passed"] is False and verdict["reason"] == reason


def test_out_of_turn_and_vanishing_replies_fail(fake: FakeSolution) -> None:
    send(fake.reply_w, {"loaded": True})
    send(fake.reply_w, {"id": 7, "ok": 9})  # written before any call: a forged answer
    channel = fake.channel()
    channel.loaded()
    with pytest.raises(SolutionFailed, match="out of turn"):
        channel.call("solve", (3,), {})
    os.close(fake.reply_w)
    fake.reply_w = os.open(os.devnull, os.O_WRONLY)  # keeps the fixture's close from hitting a reused fd
    with pytest.raises(SolutionFailed, match="process ended"):
        channel.call("solve", (3,), {})
    assert channel.gone


def test_a_solution_failure_is_not_swallowed_by_a_tests_except_exception(fake: FakeSolution) -> None:
    _serve(fake, {"solve": lambda x: AlwaysEqual()})
    tests = "try:\n    assert solve(3) == 9\nexcept Exception:\n    pass\n"
    verdict = run_tests(_job(tests), fake.call_w, fake.reply_r)
    assert (
        verdict["passed"] is False and verdict["reason"] == "solve() returned a AlwaysEqual is not plain data"
    )


def test_keys_crafted_to_collide_are_refused_in_linear_time() -> None:
    modulus = (1 << 61) - 1  # hash(n) == n % modulus for ints: these all hash to 5
    colliding = {"s": [5 + i * modulus for i in range(100_000)]}
    with pytest.raises(CodecError, match="one hash value"):
        from_tree(colliding)
    assert from_tree({"s": [7] * 100_000}) == {7}  # repeats of one value are not an attack
    assert from_tree({"s": [5 + i * modulus for i in range(3)]}) == {5, 5 + modulus, 5 + 2 * modulus}


def test_huge_text_is_refused_before_it_is_copied() -> None:
    with pytest.raises(Unencodable, match="text over"):
        to_tree(["x" * (MAX_FRAME // 2), b"y" * (MAX_FRAME // 2 + 1)])


def test_tests_may_construct_the_programs_classes_but_not_compare_them() -> None:
    class Pair:
        def __init__(self, a: int, b: int) -> None:
            self.a, self.b = a, b

    def longest(pairs: list[Pair]) -> int:
        return sum(p.b - p.a for p in pairs)

    def solve(x: int) -> Pair:  # a function (not a class) returning an object: not plain data
        return Pair(x, x)

    namespace = {"Pair": Pair, "longest": longest, "solve": solve, "is_prime": Pair}
    for tests, reason in [
        ("assert longest([Pair(1, 3), Pair(2, 7)]) == 7\n", ""),
        ("assert solve(3) == 9\n", "solve() returned a Pair is not plain data"),
        ("assert Pair(1, 2) == Pair(1, 2)\n", "a test compared or tested Pair#"),
        ("assert is_prime(7, 7)\n", "a test compared or tested is_prime#"),
        ("assert is_prime(4, 4) != True\n", "a test compared or tested is_prime#"),
    ]:
        fake = FakeSolution()
        try:
            _serve(fake, namespace)
            verdict = run_tests(_job(tests), fake.call_w, fake.reply_r)
        finally:
            fake.close()
        assert verdict["passed"] is (not reason) and verdict["reason"].startswith(reason), verdict
