"""MBPP: Mostly Basic Python Problems (Austin et al., 2021), full and sanitized ("mbpp-sanitized").

Pinned settings: the test tasks 11-510 (500 in `mbpp`; the 257 of them in the hand-verified sanitized
file for `mbpp-sanitized`). 3-shot with tasks 2, 3 and 4 as exemplars (the paper's choice; the same three
from the full file for both suites), in the paper's prompt format given as a multi-turn chat:
user "You are an expert Python programmer, and here is your task: {text} Your code should pass these
tests:\\n\\n{tests}", assistant "[BEGIN]\\n{code}\\n[DONE]" (tests = the asserts, one per line; the
sanitized suite uses its `prompt` field as the task text). For text-completion endpoints the same blocks
are concatenated in the paper's one-string form, the last one ending "[BEGIN]\\n", stopping at "[DONE]".
Greedy; at most 512 new tokens (the longest exemplar-style gold solution is far below that, and a
solution that needs more is not a "basic" one).

Code extraction (applied to every response): start after the first "[BEGIN]" if there is one, and stop at
the next "[DONE]"; inside that, take the first ```python (or ```py) fenced block, else the first ``` fenced
block of any language, else the text itself; an unclosed fence runs to the end.

Execution: only in the sandbox (`suites.sandbox`): the extracted program runs in the solution's process
with the task's `test_imports` before it and `test_setup_code` after it; the `test_list` asserts
(`challenge_test_list` is not used, as in the paper) run in a separate trusted process that calls the
program's functions over a plain-data channel; a program passes only if every assert held there.
Limits: 10 s wall, 5 s CPU, 1 GiB address space, 16 MiB per file, 16 processes, on the reference machine;
scaled to this machine's measured speed and load (`suites.sandbox.timing`, recorded in the manifest).

Metrics: pass@1 (primary). With n > 1 samples per task (temperature > 0), pass@k for k in
1, 2, 5, 10, 20, 50, 100 up to n, each per task by the unbiased estimator of Chen et al. (2021),
1 - C(n-c, k) / C(n, k), then averaged over tasks (stderr and bootstrap CI; Wilson when all 0/1, and the
Wilson interval of the sum below 30 tasks, harness.stats).
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from math import comb
from typing import Any

from harness.data import DataSource, load_hub_rows, read_jsonl, rows_hash
from harness.errors import DataError
from harness.suite import LoadedData, SuiteDefaults, mean_metrics
from harness.types import (
    ApiKind,
    Completion,
    GenerationSettings,
    Message,
    Metric,
    Request,
    Sample,
    Score,
)
from suites.sandbox import Job, Limits, ProgramResult
from suites.sandbox import timing as sandbox_timing
from suites.sandbox.timing import run_calibrated

HUB_REPO = "google-research-datasets/mbpp"
HUB_REVISION = "4bb6404fdc6cacfda99d4ac4205087b89d32030c"
TEST_IDS = range(11, 511)
KS = (1, 2, 5, 10, 20, 50, 100)
LIMITS = Limits(wall_s=10.0, cpu_s=5, memory_bytes=1 << 30, file_bytes=16 << 20, processes=16)
PREAMBLE = "You are an expert Python programmer, and here is your task: "

# Tasks 2, 3, 4 of mbpp.jsonl: (text, tests, code); code with "\r\n" turned into "\n".
EXEMPLARS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "Write a function to find the similar elements from the given two tuple lists.",
        (
            "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
            "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
            "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
        ),
        "def similar_elements(test_tup1, test_tup2):\n  res = tuple(set(test_tup1) & set(test_tup2))\n"
        "  return (res) ",
    ),
    (
        "Write a python function to identify non-prime numbers.",
        (
            "assert is_not_prime(2) == False",
            "assert is_not_prime(10) == True",
            "assert is_not_prime(35) == True",
        ),
        "import math\ndef is_not_prime(n):\n    result = False\n    for i in range(2,int(math.sqrt(n)) + 1):\n"
        "        if n % i == 0:\n            result = True\n    return result",
    ),
    (
        "Write a function to find the largest integers from a given list of numbers using heap queue algorithm.",
        (
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]",
        ),
        "import heapq as hq\ndef heap_queue_largest(nums,n):\n  largest_nums = hq.nlargest(n, nums)\n"
        "  return largest_nums",
    ),
)

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(response: str) -> str:
    """The program in a response: [BEGIN]..[DONE] window, then first python fence, any fence, or raw."""
    text = response
    begin = text.find("[BEGIN]")
    if begin >= 0:
        text = text[begin + len("[BEGIN]") :]
    done = text.find("[DONE]")
    if done >= 0:
        text = text[:done]
    fences = _FENCE.findall(text)
    python = [body for lang, body in fences if lang.lower() in ("python", "py", "python3")]
    if python:
        return str(python[0]).strip("\n")
    if fences:
        return str(fences[0][1]).strip("\n")
    return text.strip("\n")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def user_turn(text: str, tests: Sequence[str]) -> str:
    return f"{PREAMBLE}{text} Your code should pass these tests:\n\n" + "\n".join(tests)


def assistant_turn(code: str) -> str:
    return f"[BEGIN]\n{code}\n[DONE]"


def entry_points(code: str, tests: Sequence[str]) -> tuple[str, ...]:
    """Builtin names that the reference code defines and the tests call (task 126 defines `sum`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes in some gold code
            tree = ast.parse(code)
            used = {n.id for t in tests for n in ast.walk(ast.parse(t)) if isinstance(n, ast.Name)}
    except SyntaxError:
        return ()
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    return tuple(sorted(defined & used & set(dir(builtins))))


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


class MBPP(SuiteDefaults):
    name = "mbpp"
    version = "1.0"
    primary_metric = "pass@1"
    thinking_budget = 2048  # tokens of thinking when reasoning is on: short functions
    headline_metrics: tuple[str, ...] = tuple(f"pass@{k}" for k in KS)
    description = __doc__ or ""
    data_file = "mbpp/mbpp.jsonl"
    hub_config = "full"
    text_field = "text"
    task_ids: range = TEST_IDS  # training code reads the train tasks (601-974) through a subclass

    def default_settings(self) -> GenerationSettings:
        return GenerationSettings(max_tokens=512, temperature=0.0)

    def pinned_settings(self) -> Mapping[str, Any]:
        return {
            "split": "test (task_id 11-510)",
            "num_fewshot": len(EXEMPLARS),
            "fewshot_task_ids": [2, 3, 4],
            "format": "multiturn [BEGIN]/[DONE]",
            "extraction": "begin-done window, first python fence, any fence, raw",
            "ks": list(KS),
            "sandbox": {"wall_s": LIMITS.wall_s, "cpu_s": LIMITS.cpu_s, "memory_bytes": LIMITS.memory_bytes},
            **self.reasoning.pinned(),
        }

    def _rows(self, source: DataSource) -> tuple[list[dict[str, Any]], str]:
        if source.data_dir is not None:
            path = source.file(self.data_file, f"{self.name} data")
            if path.suffix == ".jsonl":
                return read_jsonl(path), f"dir:{path}"
            try:
                rows = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as error:
                raise DataError(
                    f"{path} is not valid JSON ({error}).", "Restore the upstream file."
                ) from None
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise DataError(f"{path} is not a JSON array of objects.", "Restore the upstream file.")
            return rows, f"dir:{path}"
        rows = load_hub_rows(HUB_REPO, self.hub_config, "test", HUB_REVISION)
        return rows, f"hub:{HUB_REPO}/{self.hub_config}@{HUB_REVISION}"

    def load(self, source: DataSource, limit: int | None) -> LoadedData:
        rows, origin = self._rows(source)
        test_rows = [r for r in rows if isinstance(r.get("task_id"), int) and r["task_id"] in self.task_ids]
        samples = []
        for row in test_rows:
            text, code, tests = row.get(self.text_field), row.get("code"), row.get("test_list")
            if not isinstance(text, str) or not isinstance(code, str) or not isinstance(tests, list):
                raise DataError(
                    f"{self.name} task {row['task_id']} of {origin} lacks {self.text_field}/code/test_list."
                )
            gold = _lines(code)
            samples.append(
                Sample(
                    id=f"{self.name}-{row['task_id']}",
                    messages=(Message("user", user_turn(text, tests)),),
                    target=gold,
                    metadata={
                        "task_id": row["task_id"],
                        "tests": [_lines(t) for t in tests],
                        "setup": _lines(row.get("test_setup_code") or ""),
                        "imports": [_lines(i) for i in row.get("test_imports") or []],
                        "entry_points": list(entry_points(gold, tests)),
                    },
                )
            )
        chosen = samples if limit is None else samples[:limit]
        fields = (self.text_field, "code", "task_id", "test_list", "test_setup_code", "test_imports")
        return LoadedData(tuple(chosen), len(samples), origin, rows_hash(test_rows, fields))

    def requests(self, sample: Sample, settings: GenerationSettings, api: ApiKind) -> list[Request]:
        if api == "chat":
            turns: list[Message] = []
            for text, tests, code in EXEMPLARS:
                turns += [Message("user", user_turn(text, tests)), Message("assistant", assistant_turn(code))]
            return [Request(sample.id, settings, messages=(*turns, Message("user", sample.prompt_text)))]
        shots = "".join(f"{user_turn(t, ts)}\n{assistant_turn(c)}\n" for t, ts, c in EXEMPLARS)
        text_settings = settings if settings.stop else replace(settings, stop=("[DONE]",))
        return [Request(sample.id, text_settings, prompt=f"{shots}{sample.prompt_text}\n[BEGIN]\n")]

    def job(self, sample: Sample, response: str) -> Job:
        meta = sample.metadata
        return Job(
            program=extract_code(response),
            tests="\n".join(meta["tests"]) + "\n",
            prelude="\n".join(meta["imports"]) + "\n",
            setup=meta["setup"] + "\n",
            entry_points=tuple(meta["entry_points"]),
        )

    def execute(self, sample: Sample, responses: Sequence[str]) -> list[ProgramResult]:
        return run_calibrated([self.job(sample, r) for r in responses], LIMITS)

    def rewards(self, sample: Sample, texts: Sequence[str]) -> list[float]:
        """All of a prompt's responses in one sandbox batch."""
        return [float(result.passed) for result in self.execute(sample, texts)]

    def scoring_slots(self) -> int:
        """score() waits on sandbox processes, so one sample per core."""
        return max(1, os.cpu_count() or 1)

    def measurement_mark(self) -> int:
        return sandbox_timing.runs_so_far()

    def measurement_since(self, mark: int) -> dict[str, Any] | None:
        return sandbox_timing.record_since(mark)

    def score(self, sample: Sample, completions: Sequence[Completion]) -> Score:
        texts = [t for c in completions for t in c.texts]
        if not texts:
            raise ValueError(f"no responses to score for {sample.id}")
        results = self.execute(sample, texts)
        n, c = len(results), sum(r.passed for r in results)
        values = {f"pass@{k}": pass_at_k(n, c, k) for k in KS if k <= n}
        first = results[0]
        reason = next(([r.reason or r.status] for r in results if not r.passed), [])
        return Score(
            values=values,
            extracted={
                "code": extract_code(texts[0]),
                "passed": f"{c}/{n}",
                "status": ",".join(r.status for r in results),
                "first_failure": reason[0][:300] if reason else None,
                "sandbox": (
                    f"network_isolated={first.network_isolated} privileges_dropped={first.privileges_dropped} "
                    f"processes_hidden={first.processes_hidden} cpu_s={first.limits.cpu_s} "
                    f"wall_s={first.limits.wall_s:g}"
                ),
            },
        )

    def metrics(self, scores: Sequence[Score]) -> dict[str, Metric]:
        if not scores:
            return {}
        common = set.intersection(*(set(s.values) for s in scores))
        names = [f"pass@{k}" for k in KS if f"pass@{k}" in common]
        return mean_metrics(scores, names)

    def reward(self, sample: Sample, text: str) -> float:
        return float(self.execute(sample, [text])[0].passed)

    def gold_response(self, sample: Sample) -> str | None:
        return assistant_turn(sample.target)


class MBPPSanitized(MBPP):
    """The hand-verified subset: field `prompt` instead of `text`, plus `test_imports` (run before tests)."""

    name = "mbpp-sanitized"
    data_file = "mbpp/sanitized-mbpp.json"
    hub_config = "sanitized"
    text_field = "prompt"
