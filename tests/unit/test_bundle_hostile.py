"""Hostile bundles: each is rejected (exit 4, one paragraph "Bundle rejected: ...", no traceback) by a
real `harness leaderboard add` process whose peak RSS, measured by the kernel (wait4's ru_maxrss), stays
under 300 MB. Then a seeded fuzz run: random bytes, damaged zips and random JSON in every file of a
bundle reach `read_bundle`/`add_bundle` and only ever raise a HarnessError with exit 2 or 4.

The children run under a 1.5 GB address-space limit, so a regression fails here (MemoryError, exit 1)
instead of taking the machine's memory.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ExitCode, HarnessError
from leaderboard.bundle import read_bundle
from leaderboard.submissions import add_bundle
from tests.conftest import ROOT, cli_env
from tests.support import hostile_zips as hz
from tests.support.bundles import Honest, entries, make_honest, restamp, run_file, write_entries

MAX_RSS_MB = 300
ADDRESS_SPACE = 1536 * 1024 * 1024


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Honest:
    return make_honest(tmp_path_factory.mktemp("honest-bundle"), data_dir)


# A child's ru_maxrss counts what it inherited at fork (all of pytest's pages), so the harness runs as
# the child of this small, freshly started interpreter, which limits its address space and reports its
# peak RSS (wait4: the kernel's high-water mark of that process alone).
_MEASURE = """
import json, os, resource, subprocess, sys
limit = int(sys.argv[1])
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
with open(sys.argv[2], "w") as err, open(os.devnull, "w") as out:
    child = subprocess.Popen(sys.argv[3:], stdout=out, stderr=err, preexec_fn=cap)
    _, status, usage = os.wait4(child.pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss}))
"""


def add_measured(bundle: Path, site_data: Path, tmp: Path) -> tuple[int, str, float]:
    """(exit code, stderr, peak RSS in MB) of `harness leaderboard add` in a process of its own."""
    err_path = tmp / "stderr.txt"
    command = [
        sys.executable,
        "-m",
        "harness",
        "leaderboard",
        "add",
        str(bundle),
        "--site-data",
        str(site_data),
        "--allow-replay",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(ADDRESS_SPACE), str(err_path), *command],
        capture_output=True, text=True, env=cli_env(), cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    return int(result["code"]), err_path.read_text(), result["maxrss_kib"] / 1024


def _with_samples(honest: Honest, entry: Callable[[str], hz.RawEntry]) -> Callable[[Path], Path]:
    """The honest bundle with its samples.jsonl replaced by `entry(name)` (bundle.json untouched)."""

    def build(path: Path) -> Path:
        items = entries(honest.bundle)
        name = run_file(items, "samples.jsonl")
        raw = [hz.deflated(data, n) for n, data in items.items() if n != name]
        return hz.write_zip(path, [*raw, entry(name)])

    return build


def _million_lines(honest: Honest) -> Callable[[Path], Path]:
    """10^6 well-formed sample records (63 MB, 2 MB deflated), bundle.json restamped to match."""

    def build(path: Path) -> Path:
        items = entries(honest.bundle)
        name = run_file(items, "samples.jsonl")
        line = '{"id":"s%06d","scores":{},"request_keys":[],"completions":[]}\n'
        items = restamp({**items, name: "".join(line % i for i in range(10**6)).encode()})
        return hz.write_zip(path, [hz.deflated(data, n, level=1) for n, data in items.items()])

    return build


def _nested_bundle_json(honest: Honest) -> Callable[[Path], Path]:
    def build(path: Path) -> Path:
        items = {**entries(honest.bundle), "bundle.json": hz.nested_json(200_000)}
        return hz.write_zip(path, [hz.deflated(data, n) for n, data in items.items()])

    return build


HOSTILE = {
    # name: (builder, text the rejection must contain)
    "1 GB of zeros as samples.jsonl (1 MB zip)": (
        lambda h: _with_samples(h, lambda n: hz.zeros(n, 1024)),
        "unpacks to 1,073,741,824 bytes",
    ),
    "1.9 GB of zeros declaring 64 MB (1.9 MB zip)": (
        lambda h: _with_samples(h, lambda n: hz.zeros(n, 1900, declared=64 * hz.MiB)),
        "Bad CRC-32",
    ),
    "samples.jsonl of 10^6 records": (_million_lines, "has more records than the 10 samples"),
    "bundle.json nested 200,000 levels": (_nested_bundle_json, "nests deeper than 200 levels"),
    "100,000 tiny entries": (
        lambda h: lambda path: hz.many_entries(path, 100_000),
        "holds 100,000 entries; a bundle holds at most 2,000",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bundle_is_rejected_in_bounded_memory(
    case: str, honest: Honest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    builder, expected = HOSTILE[case]
    bundle = builder(honest)(tmp_path / "hostile.zip")
    site = tmp_path / "site-data"
    code, err, rss_mb = add_measured(bundle, site, tmp_path)
    with capsys.disabled():
        print(f"\n{case}: {bundle.stat().st_size / 1e6:.2f} MB zip, peak RSS {rss_mb:.0f} MB, exit {code}")
    assert code == ExitCode.DATA, err[-3000:]
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: Bundle rejected: "), err[-3000:]
    assert expected in err
    assert rss_mb < MAX_RSS_MB
    assert not site.exists() or not list(site.iterdir())  # no work folder left behind


def test_compression_methods_other_than_deflate_are_refused(honest: Honest, tmp_path: Path) -> None:
    items = entries(honest.bundle)
    bundle = tmp_path / "lzma.zip"
    with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_LZMA) as archive:
        for name, data in items.items():
            archive.writestr(name, data)
    with pytest.raises(HarnessError, match="use a compression method other than deflate") as caught:
        read_bundle(bundle, tmp_path / "into")
    assert caught.value.exit_code == ExitCode.DATA


def _edit_line(number: int, change: Callable[[dict[str, Any]], None]) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        row = json.loads(lines[number - 1])
        change(row)
        return [*lines[: number - 1], json.dumps(row), *lines[number:]]

    return edit


SAMPLE_EDITS = {
    "a 2 MB line": (
        _edit_line(2, lambda r: r.update(prompt="x" * (2 << 20))),
        "line 2 is longer than 1,048,576 bytes",
    ),
    "an object among the extracted values": (
        _edit_line(1, lambda r: r.update(extracted={"flex": {"nested": [1, 2]}})),
        "line 1 is not a sample record ('extracted' values must be strings or null)",
    ),
    "300 score keys": (
        _edit_line(3, lambda r: r.update(scores={f"k{i}": 0 for i in range(300)})),
        "line 3 is not a sample record ('scores' must be an object of at most 256 numbers)",
    ),
    "1,001 blank lines": (lambda lines: [*lines, *[""] * 1001], "holds more than 1000 blank lines"),
    "a line nested 1,000 deep": (
        lambda lines: [lines[0], "[" * 1000 + "]" * 1000, *lines[1:]],
        "line 2 nests deeper than 200 levels",
    ),
}


@pytest.mark.parametrize("case", list(SAMPLE_EDITS))
def test_sample_lines_are_bounded_and_shaped(
    case: str, honest: Honest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    monkeypatch.setenv("HARNESS_DATA_DIR", str(data_dir))
    edit, expected = SAMPLE_EDITS[case]
    items = entries(honest.bundle)
    name = run_file(items, "samples.jsonl")
    lines = edit(items[name].decode().splitlines())
    bundle = write_entries(tmp_path / "b.zip", restamp({**items, name: ("\n".join(lines) + "\n").encode()}))
    with pytest.raises(HarnessError) as caught:
        add_bundle(bundle, tmp_path / "site-data", allow_replay=True)
    assert caught.value.exit_code == ExitCode.DATA
    assert caught.value.message.startswith("Bundle rejected: ") and expected in caught.value.message
    assert list((tmp_path / "site-data").iterdir()) == []


# ------------------------------------------------------------------------------------------------ fuzz


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**70, 10, 1e308, -0.0, 0.5])
    if kind == 3:
        return rng.choice(["", "runs", "owls", "../x", "\u2028", "gsm8k", "complete", "a" * 300, "<img>"])
    if kind == 4:
        return float(rng.random())
    if kind == 5:
        return rng.choice(["1.0", "gsm8k@1.0", "x/y", "\x00", "runs/a/b/c"])
    if kind == 6:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["schema", "team", "files", "runs", "path", "sha256", "metrics", "value", "id", "scores", "x"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def _mutate_json(rng: random.Random, value: Any) -> Any:
    """`value` with one field (at any depth) replaced by random JSON, or removed."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        copy = dict(value)
        if rng.random() < 0.2:
            del copy[key]
        else:
            copy[key] = _mutate_json(rng, value[key]) if rng.random() < 0.6 else _random_json(rng)
        return copy
    if isinstance(value, list) and value and rng.random() < 0.7:
        index = rng.randrange(len(value))
        copy = list(value)
        copy[index] = _mutate_json(rng, value[index]) if rng.random() < 0.6 else _random_json(rng)
        return copy
    return _random_json(rng)


def _expect_documented(bundle: Path, into: Path, what: str) -> None:
    try:
        read_bundle(bundle, into)
    except HarnessError as error:
        assert error.exit_code in (ExitCode.USAGE, ExitCode.DATA), (what, error.exit_code, error.message)
        assert "\n\n" not in error.message and "Traceback" not in error.message, what


def test_fuzzed_zips_only_ever_raise_documented_errors(honest: Honest, tmp_path: Path) -> None:
    rng = random.Random(20260415)
    raw = honest.bundle.read_bytes()
    for case in range(300):
        path = tmp_path / f"f{case}.zip"
        choice = case % 3
        if choice == 0:  # random bytes, sometimes with zip signatures in them
            data = bytearray(rng.randbytes(rng.randrange(0, 3000)))
            for signature in (b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"):
                if data and rng.random() < 0.4:
                    at = rng.randrange(len(data))
                    data[at : at + 4] = signature
            path.write_bytes(bytes(data))
        elif choice == 1:  # the honest zip with bytes flipped, cut short or spliced
            data = bytearray(raw)
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[: rng.randrange(len(data))]
            path.write_bytes(bytes(data))
        else:  # bundle.json replaced by random or mutated JSON (valid zip)
            items = entries(honest.bundle)
            meta = json.loads(items["bundle.json"])
            payload = _random_json(rng) if rng.random() < 0.3 else _mutate_json(rng, meta)
            write_entries(path, {**items, "bundle.json": json.dumps(payload).encode()})
        into = tmp_path / f"into{case}"
        into.mkdir()
        _expect_documented(path, into, f"case {case}")


def test_fuzzed_run_files_only_ever_raise_documented_errors(
    honest: Honest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_dir: Path
) -> None:
    """Random JSON in the manifest, the metrics and sample lines of a bundle whose sha256s match."""
    monkeypatch.setenv("HARNESS_DATA_DIR", str(data_dir))
    rng = random.Random(7)
    items = entries(honest.bundle)
    names = {n: run_file(items, n) for n in ("manifest.json", "metrics.json", "samples.jsonl")}
    accepted = 0
    for case in range(120):
        target = rng.choice(list(names))
        edited = dict(items)
        if target == "samples.jsonl":
            lines = items[names[target]].decode().splitlines()
            at = rng.randrange(len(lines))
            lines[at] = json.dumps(_mutate_json(rng, json.loads(lines[at])))
            edited[names[target]] = ("\n".join(lines) + "\n").encode()
        else:
            edited[names[target]] = json.dumps(_mutate_json(rng, json.loads(items[names[target]]))).encode()
        bundle = write_entries(tmp_path / f"r{case}.zip", restamp(edited))
        site = tmp_path / f"site{case}"
        try:
            add_bundle(bundle, site, allow_replay=True)
            accepted += 1  # a change the checks do not care about (a timestamp, say)
        except HarnessError as error:
            assert error.exit_code in (ExitCode.USAGE, ExitCode.DATA), (case, target, error.message)
            assert error.message.startswith(("Bundle rejected: ", "Cannot verify")), error.message
    assert accepted < 60  # most edits are caught
