"""Curate an RL prompt pool: sample k completions of every prompt with a checkpoint, keep the prompts whose
pass rate lies in a band.

A prompt every completion solves (or none does) gives GRPO groups with equal rewards, hence no gradient;
the band (default 0.2-0.8, both edges included) keeps the prompts the policy solves sometimes. Sampling
goes through the evaluation runner (`training.prompt_suite.PromptSuite`), so an interrupted curation
resumes where it stopped and a re-run with another band reads the finished run and sends no request. The
band is not part of the run's settings; k, temperature, top_p, max_tokens, seed and the prompts are.

The pool is written in the format `training.prompts.file_prompts` reads back (`POOL_FORMAT`), one prompt
per line in the source's order, with `pass_rate`, `k` and `checkpoint` added to each record; the RLVR
trainer takes it as `data.path: pool.jsonl`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.data import DataSource
from harness.errors import DataError, UsageError
from harness.types import GenerationSettings
from training.prompt_suite import PASS_RATE, PromptSuite, prompts_sha256
from training.prompts import RlPrompt, file_prompts, rollout_settings, suite_prompts, write_pool

Verdict = Literal["kept", "too_easy", "too_hard"]
_EPS = 1e-9  # pass rates are ratios of small integers; the band's edges are decimals


@dataclass(frozen=True)
class Band:
    """Pass rates kept: low <= rate <= high (both edges included)."""

    low: float = 0.2
    high: float = 0.8

    def __post_init__(self) -> None:
        if not (0.0 <= self.low <= 1.0 and 0.0 <= self.high <= 1.0):  # also refuses nan
            raise UsageError(
                f"--band {self.low:g} {self.high:g} lies outside [0, 1].",
                "Give two pass rates between 0 and 1, e.g. --band 0.2 0.8.",
            )
        if self.low > self.high:
            raise UsageError(
                f"--band {self.low:g} {self.high:g} has its low edge above its high edge.",
                f"Give the lower pass rate first: --band {self.high:g} {self.low:g}.",
            )

    def verdict(self, rate: float) -> Verdict:
        if rate < self.low - _EPS:
            return "too_hard"
        if rate > self.high + _EPS:
            return "too_easy"
        return "kept"

    def describe(self) -> str:
        return f"{self.low:g}-{self.high:g}, edges included"


@dataclass(frozen=True)
class PromptSet:
    prompts: tuple[RlPrompt, ...]
    source: str  # "gsm8k:train", or "file:PATH" (with the datasets kept)
    name: str  # the run folder's suite name

    def suite(self) -> PromptSuite:
        return PromptSuite(self.name, self.prompts, self.source, prompts_sha256(self.prompts))


def _folder_name(text: str) -> str:
    return "prompts-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "file")


def load_prompt_set(
    prompts: str | None,
    data_file: str | None,
    datasets: Sequence[str] | None,
    data: DataSource,
    limit: int | None,
) -> PromptSet:
    """`--prompts SOURCE` (a suite's training split) or `--data FILE` (RLVR rows or a curated pool)."""
    if (prompts is None) == (data_file is None):
        raise UsageError("Give the prompts to curate with exactly one of --prompts SOURCE or --data FILE.")
    if prompts is not None:
        if datasets:
            raise UsageError("--datasets filters the rows of a --data file; it does not apply to --prompts.")
        chosen = suite_prompts(prompts, data, limit)
        return PromptSet(tuple(chosen), prompts, _folder_name(prompts))
    assert data_file is not None
    path = Path(data_file).expanduser().resolve()
    if not path.is_file():
        raise UsageError(f"The prompt file {path} does not exist.", "Check the path after --data.")
    rows = file_prompts(path, list(datasets) if datasets else None)
    if limit is not None:
        rows = rows[:limit]
    source = f"file:{path}" + (f" (datasets: {', '.join(datasets)})" if datasets else "")
    return PromptSet(tuple(rows), source, _folder_name(path.stem))


def curate_settings(
    suite: PromptSuite, k: int, temperature: float, top_p: float, max_tokens: int | None, seed: int
) -> GenerationSettings:
    """k completions per prompt at `temperature`; the prompts' suites' pinned max_tokens unless given."""
    if k > 1 and temperature <= 0:
        raise UsageError(
            f"-k {k} at temperature {temperature:g} samples the same greedy completion {k} times, so every "
            "pass rate would be 0 or 1.",
            "Sample with a temperature above 0 (default 1.0), or use -k 1.",
        )
    return rollout_settings(suite, max_tokens, temperature, top_p, k, seed)


@dataclass(frozen=True)
class Rated:
    prompt: RlPrompt
    pass_rate: float  # mean reward of the k completions
    passed: int  # completions with full reward
    verdict: Verdict


@dataclass(frozen=True)
class Curation:
    rated: tuple[Rated, ...]
    k: int
    band: Band

    def kept(self) -> list[Rated]:
        return [r for r in self.rated if r.verdict == "kept"]

    def counts(self) -> dict[Verdict, int]:
        counts: dict[Verdict, int] = {"kept": 0, "too_easy": 0, "too_hard": 0}
        for rated in self.rated:
            counts[rated.verdict] += 1
        return counts

    def mean_pass_rate(self) -> float:
        return sum(r.pass_rate for r in self.rated) / len(self.rated) if self.rated else float("nan")


def rate_run(suite: PromptSuite, run_dir: Path, k: int, band: Band) -> Curation:
    """Each prompt's pass rate, from the finished run's samples.jsonl, in the prompts' order."""
    from harness.runs.store import SAMPLES, SamplesFile

    records = {r.id: r for r in SamplesFile(run_dir / SAMPLES).load(repair=False).records}
    rated = []
    for prompt in suite.prompts:
        record = records.get(prompt.sample.id)
        if record is None or PASS_RATE not in record.scores:
            raise DataError(
                f"{run_dir / SAMPLES} has no pass rate for prompt {prompt.sample.id}.",
                "Re-run the same command to complete the run (or pass --fresh to redo it).",
            )
        rate = float(record.scores[PASS_RATE])
        passed_text = str(record.extracted.get("passed") or "")
        passed = int(passed_text.split("/")[0]) if re.fullmatch(r"\d+/\d+", passed_text) else round(rate * k)
        rated.append(Rated(prompt, rate, passed, band.verdict(rate)))
    return Curation(tuple(rated), k, band)


@dataclass(frozen=True)
class HistogramRow:
    label: str  # "3/8" (k <= 16) or "0.3-0.4"
    count: int
    verdict: str  # a Verdict, or "mixed" when a bin straddles a band edge


def histogram(curation: Curation) -> list[HistogramRow]:
    """One row per possible number of passes when k <= 16, else ten bins of width 0.1."""
    k, band = curation.k, curation.band
    if k <= 16:
        counts = [0] * (k + 1)
        for rated in curation.rated:
            counts[min(k, max(0, round(rated.pass_rate * k)))] += 1
        return [HistogramRow(f"{c}/{k}", counts[c], band.verdict(c / k)) for c in range(k + 1)]
    bins: list[list[Rated]] = [[] for _ in range(10)]
    for rated in curation.rated:
        bins[min(9, int(rated.pass_rate * 10 + _EPS))].append(rated)
    rows = []
    for index, members in enumerate(bins):
        verdicts = {r.verdict for r in members} or {band.verdict((index + 0.5) / 10)}
        label = f"{index / 10:.1f}-{(index + 1) / 10:.1f}"
        rows.append(HistogramRow(label, len(members), verdicts.pop() if len(verdicts) == 1 else "mixed"))
    return rows


def render_histogram(curation: Curation, width: int = 30) -> str:
    rows = histogram(curation)
    top = max((r.count for r in rows), default=0) or 1
    names = {"kept": "kept", "too_easy": "too easy", "too_hard": "too hard", "mixed": "partly kept"}
    lines = ["pass rate   prompts"]
    for row in rows:
        bar = "#" * (0 if row.count == 0 else max(1, round(width * row.count / top)))
        lines.append(f"{row.label:>9} {row.count:>9}  {bar:<{width}}  {names[row.verdict]}")
    return "\n".join(lines)


def write_curated_pool(path: Path, curation: Curation, checkpoint: str) -> int:
    """The kept prompts, atomically (a crash never leaves half a pool); returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    extra: dict[str, Any]
    rows = []
    for rated in curation.kept():
        extra = {"pass_rate": round(rated.pass_rate, 6), "k": curation.k, "checkpoint": checkpoint}
        rows.append((rated.prompt, extra))
    count = write_pool(tmp, rows)
    os.replace(tmp, path)
    return count
