"""The tests and the solution never share a process again: each test here fails if they do.

A solution that can see the tests, their expected values, or the process that decides can fake a pass
(the old single-process runner was beaten 16 ways by a red-team corpus, tests/support/reward_hacks.py).
"""

from __future__ import annotations

import hashlib
import secrets

from suites.sandbox import Limits, check_program

FAST = Limits(wall_s=8.0, cpu_s=4)

# Scans every readable mapping of its own process for `needle-` followed by 16 hex digits whose sha256 is
# WANT: it never holds the needle itself, so it finds it only if the tests' text or code is in its memory.
MEMORY_SCAN = """
import ctypes, hashlib, re
WANT = {want!r}
def scan():
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: its own /proc/self/mem after setuid
    pattern = re.compile(rb"needle-[0-9a-f]{{16}}")
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if "r" not in perms or end - start > 1 << 30:
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            for hit in pattern.finditer(data):
                if hashlib.sha256(hit.group()).hexdigest() == WANT:
                    return "found"
    return "clean"
"""


def test_the_solution_process_never_holds_the_tests() -> None:
    needle = "needle-" + secrets.token_hex(8)
    program = MEMORY_SCAN.format(want=hashlib.sha256(needle.encode()).hexdigest())
    result = check_program(program, f"assert scan() == 'clean', {needle!r}\n", limits=FAST)
    assert result.passed, (result.reason, result.stderr_tail)


def test_the_scan_would_find_the_needle_in_its_own_process() -> None:
    """The control: the same scan finds a needle its process does hold (so the test above can fail)."""
    needle = "needle-" + secrets.token_hex(8)
    program = MEMORY_SCAN.format(want=hashlib.sha256(needle.encode()).hexdigest()) + f"HELD = {needle!r}\n"
    result = check_program(program, "assert scan() == 'found'\n", limits=FAST)
    assert result.passed, (result.reason, result.stderr_tail)


def test_the_tests_run_in_another_process_than_the_solution() -> None:
    program = "import os\ndef where():\n    return os.getpid()\n"
    tests = "import os\nassert where() != os.getpid()\n"
    result = check_program(program, tests, prelude="import os\n", limits=FAST)
    assert result.passed, (result.reason, result.stderr_tail)


def test_a_frame_walk_from_the_solution_finds_no_test_code() -> None:
    program = """
import gc, sys
def probe():
    seen = []
    frame = sys._getframe()
    while frame is not None:
        seen.append(frame.f_code.co_filename)
        frame = frame.f_back
    for thing in gc.get_objects():
        code = getattr(thing, "__code__", None)
        if code is not None and code.co_filename == "<tests>":
            seen.append("gc:<tests>")
    return seen
"""
    result = check_program(
        program, "assert '<tests>' not in probe() and 'gc:<tests>' not in probe()\n", limits=FAST
    )
    assert result.passed, (result.reason, result.stderr_tail)
