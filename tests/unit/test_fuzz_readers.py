"""Seeded fuzzing of every reader of a file the harness did not just write: the run files (through `harness
runs`, `show`, `rescore`, resume and the gate's run reader), the response cache, the registry, a gate
policy, a training config and a replay file. Each input either reads, or fails with a HarnessError whose
exit code is documented for bad input (2 or 4); any other exception fails the test with the input that
caused it. In process, a few hundred cases, seconds."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import random
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from adapters.replay import ReplayAdapter
from harness.checkpoints import RegistryRef, parse_checkpoint
from harness.data import DataSource
from harness.errors import HarnessError
from harness.runner import EvalSpec, evaluate
from harness.runs.store import MANIFEST, METRICS, SAMPLES, SamplesFile
from suites.gsm8k import GSM8K

SEED = 15
CASES = 24  # per target; each target also gets the fixed hostile inputs below
ALLOWED = (2, 4)

HOSTILE: list[bytes] = [
    b"",
    b"\n",
    b"\xff\xfe\x00\x00",
    b"caf\xe9\n",
    b"\xc3",  # a UTF-8 sequence cut short
    b"[" * 700,  # deeper than the JSON bound and than PyYAML can recurse
    b"{" * 700 + b"}" * 700,
    b'{"a": ' * 300 + b"1" + b"}" * 300,
    b"NaN",
    b"[Infinity, -Infinity, NaN]",
    b"1" * 4000,  # a long integer Python still converts (the limit is 4300 digits)
    b"1e400",
    b'"\\ud800"',  # a lone surrogate: valid JSON, not text
    b'{"id": "\\udfff", "name": "\\ud800", "sample_id": "\\ud800", "text": "\\ud800", "texts": ["\\udc00"]}',
    b"\x00" * 64,
    b"- a\n- : b\n\t- c",
    b"a: &x [*x]",
    b"!!python/object/apply:os.system ['true']",
]
SPECIAL: list[Any] = [None, True, False, 0, -1, 2**70, 10**400, -(10**400), 1.5, 1e308, float("nan"),
                      float("inf"), "", "x" * 300, "\u2028", "\ud800", [], {}, [[[]]], {"": {"": None}}]  # fmt: skip


def random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.45:
        return rng.choice(SPECIAL)
    if roll < 0.7:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["id", "name", "value", "x", ""]): random_json(rng, depth + 1) for _ in range(3)}


def mutate_value(rng: random.Random, value: Any) -> Any:
    """The same structure with one field (at any depth) replaced by a random value, or dropped."""
    if isinstance(value, dict) and value:
        out = dict(value)
        key = rng.choice(list(out))
        roll = rng.random()
        if roll < 0.25:
            del out[key]
        elif roll < 0.6:
            out[key] = random_json(rng)
        else:
            out[key] = mutate_value(rng, out[key])
        return out
    if isinstance(value, list) and value:
        out_list = list(value)
        index = rng.randrange(len(out_list))
        out_list[index] = mutate_value(rng, out_list[index]) if rng.random() < 0.6 else random_json(rng)
        return out_list
    return random_json(rng)


def dumps(value: Any, ascii: bool = False) -> bytes:
    """JSON with NaN/Infinity; a lone surrogate as raw bytes (invalid UTF-8) or, with `ascii`, as the
    valid JSON escape \\ud800 (valid UTF-8, but not text that can be written back)."""
    return json.dumps(value, ensure_ascii=ascii).encode("utf-8", "surrogatepass")


def byte_mutations(rng: random.Random, valid: bytes) -> bytes:
    roll = rng.random()
    if roll < 0.2:
        return valid[: rng.randrange(len(valid) + 1)]  # truncated
    if roll < 0.45:
        at = rng.randrange(len(valid) + 1)
        return valid[:at] + rng.choice([b"\xff", b"\xe9", b"\xc3", b"\xed\xa0\x80", b"\x80"]) + valid[at:]
    if roll < 0.6:
        data = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if roll < 0.7:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    if roll < 0.85:
        return dumps(random_json(rng))
    # a duplicate key in front: JSON keeps the last, YAML refuses or keeps one
    text = valid.lstrip()
    if text.startswith(b"{"):
        return b'{"name": ' + dumps(random_json(rng)) + b", " + text[1:]
    return valid + dumps(random_json(rng))


def object_mutations(rng: random.Random, record: Any) -> bytes:
    if rng.random() < 0.7:
        return dumps(mutate_value(rng, record), ascii=rng.random() < 0.5)
    return byte_mutations(rng, dumps(record))


def cases(rng: random.Random, valid: bytes, record: Any) -> Iterator[bytes]:
    yield from HOSTILE
    for _ in range(CASES):
        yield object_mutations(rng, record) if rng.random() < 0.6 else byte_mutations(rng, valid)


def expect_clean(what: str, data: bytes, call: Callable[[], object]) -> str:
    """Run `call`: success, or a HarnessError with a documented exit code; anything else fails the test."""
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # strict, like a terminal: no lone surrogates
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            call()
            out.flush()
    except HarnessError as error:
        assert error.exit_code in ALLOWED, (what, data[:300], error.exit_code, error.message)
        assert error.message.strip(), what
        return "error"
    except Exception as error:  # the point of the test: report the input, then fail
        pytest.fail(f"{what}: {type(error).__name__}: {error} for input {data[:300]!r}")
    return "ok"


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def template(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete 3-sample GSM8K run made by the runner, with its response cache."""
    root = tmp_path_factory.mktemp("fuzz-template")
    suite = GSM8K()
    samples = suite.load(DataSource(data_dir), 3).samples
    replay = root / "replay.jsonl"
    replay.write_text(
        "".join(json.dumps({"sample_id": s.id, "text": f"It is {s.target}."}) + "\n" for s in samples)
    )
    spec = EvalSpec(parse_checkpoint(f"replay:{replay}"), suite, suite.default_settings(), 3, DataSource(data_dir),
                    root / "runs")  # fmt: skip
    outcome = asyncio.run(evaluate(spec, ReplayAdapter(str(replay))))
    return outcome.run_dir


def cli(argv: list[str]) -> Callable[[], object]:
    from harness.cli import build_parser

    args: argparse.Namespace = build_parser().parse_args(argv)
    return lambda: args.func(args)


# --------------------------------------------------------------------------------------------- tests


def _gate_reader(run_dir: Path) -> object:
    from harness.runs.catalog import load_run

    return load_run(run_dir).samples()


@pytest.mark.parametrize("target", [SAMPLES, MANIFEST, METRICS])
def test_run_files(target: str, template: Path, data_dir: Path, tmp_path: Path) -> None:
    rng = random.Random(f"{SEED}-{target}")
    valid = (template / target).read_bytes()
    lines = valid.splitlines(keepends=True)
    record = json.loads(lines[1] if target == SAMPLES else valid)
    outcomes: dict[str, int] = {}
    for number, data in enumerate(cases(rng, lines[1] if target == SAMPLES else valid, record)):
        root = tmp_path / f"case{number}"
        run_dir = root / template.relative_to(template.parents[2])
        shutil.copytree(template, run_dir)
        if target == SAMPLES:  # one line of three replaced (or a torn last line, or a repeated one)
            where = rng.randrange(4)
            body = [*lines[:where], data if data.endswith(b"\n") else data + b"\n", *lines[where + 1 :]]
            if rng.random() < 0.2:
                body = [*lines, lines[0]]
            if rng.random() < 0.2:
                body[-1] = body[-1].rstrip(b"\n")
            data = b"".join(body)
        (run_dir / target).write_bytes(data)
        commands: dict[str, Callable[[], object]] = {
            "runs": cli(["runs", "--runs", str(root)]),
            "show": cli(["show", str(run_dir), "--samples", "3"]),
            "gate's reader": partial(_gate_reader, run_dir),
            "resume": partial(SamplesFile(run_dir / SAMPLES).load, repair=True),
            "rescore": cli(["rescore", str(run_dir), "--data-dir", str(data_dir), "--quiet"]),
        }
        for name, call in commands.items():
            result = expect_clean(f"{name} with a fuzzed {target}", data, call)
            outcomes[result] = outcomes.get(result, 0) + 1
        shutil.rmtree(root)
    assert outcomes.get("error", 0) > 0 and sum(outcomes.values()) >= 5 * (len(HOSTILE) + CASES)


def test_response_cache(template: Path, tmp_path: Path) -> None:
    from harness.runs.cache import ResponseCache

    rng = random.Random(f"{SEED}-cache")
    source = template.parents[2] / ".cache" / "responses.sqlite"
    with sqlite3.connect(source) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        keys = [(str(a), str(k)) for a, k in db.execute("SELECT adapter, request_key FROM responses")]
        stored = db.execute("SELECT completion FROM responses").fetchone()[0]
    valid, record = source.read_bytes(), json.loads(stored)
    assert keys
    for number in range(len(HOSTILE) + 2 * CASES):
        path = tmp_path / f"case{number}" / "responses.sqlite"
        path.parent.mkdir()
        if number < len(HOSTILE):  # the whole file replaced
            data = HOSTILE[number]
            path.write_bytes(data)
        elif number % 2:  # the file's bytes damaged
            data = byte_mutations(rng, valid)
            path.write_bytes(data)
        else:  # one stored response replaced, as text that may not be UTF-8
            data = object_mutations(rng, record)
            shutil.copyfile(source, path)
            with sqlite3.connect(path) as db:
                db.execute("UPDATE responses SET completion = CAST(? AS TEXT) WHERE rowid = 1", (data,))

        def read(path: Path = path) -> None:
            cache = ResponseCache(path)
            try:
                for adapter, key in keys:
                    cache.get(adapter, key)
            finally:
                cache.close()

        expect_clean("the response cache", data, read)


def test_registry(tmp_path: Path) -> None:
    from harness.lineage import CheckpointRegistry

    rng = random.Random(f"{SEED}-registry")
    valid_path = tmp_path / "valid.jsonl"
    registry = CheckpointRegistry(valid_path)
    registry.add("base", "hf:/models/base", "base")
    registry.add("sft-1", "hf:/models/base+lora:/ck/sft-1", "sft", parent="base", tags=["best"], seed=3)
    registry.tag("base", "best")
    lines = valid_path.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[1])
    for number, data in enumerate(cases(rng, lines[1], record)):
        path = tmp_path / f"case{number}.jsonl"
        where = rng.randrange(len(lines) + 1)
        path.write_bytes(b"".join([*lines[:where], data + b"\n", *lines[where + 1 :]]))

        def read(path: Path = path, number: int = number) -> None:
            loaded = CheckpointRegistry(path)
            loaded.known_text()
            for entry in loaded.entries:
                loaded.lineage(entry)
            for raw in ("sft:latest", "sft:v1", "base:best", "sft:sft-1"):
                ref = parse_checkpoint(raw)
                assert isinstance(ref, RegistryRef)
                with contextlib.suppress(HarnessError):
                    loaded.lookup(ref)
            loaded.add(f"new-{number}", "hf:/x", "dpo", parent="sft-1")

        expect_clean("the registry", data, read)


def test_gate_policy(tmp_path: Path) -> None:
    from harness.gating.policy import load_policy

    rng = random.Random(f"{SEED}-policy")
    record = {"alpha": 0.05, "min_samples": 20, "defaults": {"allowed_drop": 1.0, "gate": ["primary"]},
              "suites": {"gsm8k": {"gate": ["exact_match_flex"], "report": ["exact_match_strict"]}}}  # fmt: skip
    valid = dumps(record)
    for number, data in enumerate(cases(rng, valid, record)):
        path = tmp_path / f"policy{number}.yaml"
        path.write_bytes(data)
        expect_clean("a gate policy", data, partial(load_policy, str(path)))


def test_training_config(tmp_path: Path) -> None:
    from training.config import load_stage_config
    from training.stage import fit_name

    rng = random.Random(f"{SEED}-config")
    record = {"base": "embedded", "name": "sft-a", "tags": ["x"], "data": {"path": "d.jsonl", "limit": 4},
              "optim": {"learning_rate": 1e-4, "max_steps": 2}, "eval": {"suites": ["gsm8k"], "limit": 5}}  # fmt: skip
    valid = dumps(record)
    for number, data in enumerate(cases(rng, valid, record)):
        path = tmp_path / f"config{number}.yaml"
        path.write_bytes(data)

        def read(path: Path = path) -> None:
            from harness.lineage import check_registry_name, check_tags

            config = load_stage_config(path)
            check_tags(config.tags)
            if config.name:
                check_registry_name(config.name, "checkpoint name")
            fit_name(str(config.name))

        expect_clean("a training config", data, read)


def test_replay_file(tmp_path: Path) -> None:
    rng = random.Random(f"{SEED}-replay")
    record = {"sample_id": "gsm8k-test-0000", "text": "It is 18."}
    valid = dumps(record) + b"\n" + dumps({"sample_id": "b", "texts": ["x", "y"]}) + b"\n"
    for number, data in enumerate(cases(rng, valid, record)):
        path = tmp_path / f"replay{number}.jsonl"
        path.write_bytes(data)
        expect_clean("a replay file", data, partial(ReplayAdapter, str(path)))


# Python refuses int("1" * 5000) with a ValueError (sys.get_int_max_str_digits), which is not a
# JSONDecodeError or YAMLError: every reader must still turn it into a documented error.
_LONG_INT = b"1" * 5000


@pytest.mark.parametrize("reader", ["samples", "registry"])
def test_an_integer_too_long_to_convert_is_a_data_error(reader: str, template: Path, tmp_path: Path) -> None:
    from harness.lineage import CheckpointRegistry

    path = tmp_path / "file.jsonl"
    if reader == "samples":
        path.write_bytes(b'{"id": ' + _LONG_INT + b"}\n")
        call: Callable[[], object] = lambda: SamplesFile(path).load(repair=False)  # noqa: E731
    else:
        path.write_bytes(b'{"name": "a", "seed": ' + _LONG_INT + b"}\n")
        call = lambda: CheckpointRegistry(path)  # noqa: E731
    assert expect_clean(reader, _LONG_INT, call) == "error"


@pytest.mark.parametrize("reader", ["manifest", "replay", "gate policy", "training config"])
def test_an_integer_too_long_to_convert_in_the_shared_readers(
    reader: str, template: Path, tmp_path: Path
) -> None:
    from harness.gating.policy import load_policy
    from harness.runs.manifest import Manifest
    from harness.runs.store import read_json
    from training.config import load_stage_config

    path = tmp_path / "file"
    path.write_bytes((b'{"seed": ' if reader != "replay" else b'{"sample_id": ') + _LONG_INT + b"}\n")
    calls: dict[str, Callable[[], object]] = {
        "manifest": lambda: Manifest.from_record(read_json(path, "run manifest"), path),
        "replay": lambda: ReplayAdapter(str(path)),
        "gate policy": lambda: load_policy(str(path)),
        "training config": lambda: load_stage_config(path),
    }
    try:
        calls[reader]()
    except HarnessError:
        return
    pytest.fail(f"the {reader} reader accepted an integer of {len(_LONG_INT)} digits")
