"""Synthetic runs folders for leaderboard tests: the same files a real `harness eval` writes, fast.

Each checkpoint gets one run per suite under `<root>/<team>/<checkpoint-slug>/<suite>@<version>/<hash>/`
with `manifest.json` (harness.runs.manifest.Manifest.to_record, a registry entry as `lineage`),
`samples.jsonl` (harness.runs.store.SampleRecord.to_line, per-sample `scores`/`extracted` keyed exactly as
the real scorers key them) and `metrics.json` (harness.runner.write_metrics over the real suite's
`metrics()`). Each team's folder holds `submission.json`, as `harness leaderboard submit` leaves it.

Deliberate oddities the site must survive: the first checkpoint's GSM8K run holds responses
`<script>alert(1)</script>` and `<img src=x onerror=alert(1)>` (HOSTILE_RESPONSES), and one checkpoint's
safety run is scored by another judge (wildguard), so its safety cell is never ranked with the rest.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.lineage import CheckpointEntry
from harness.runner import settings_hash, write_metrics
from harness.runs.manifest import Invocation, Manifest
from harness.runs.store import MANIFEST, METRICS, SAMPLES, SampleRecord
from harness.suite import Suite, SuiteOptions
from harness.types import Completion, Score
from suites import get_suite
from suites.safety import score_verdict
from suites.safety_judges import HEURISTIC, WILDGUARD, Verdict

SUITES = ("gsm8k", "ifeval", "mbpp", "safety", "alice-synth")
HOSTILE_RESPONSES = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>")
STAGES = ("sft", "sft", "dpo", "rlvr")  # after the base: a team's lineage chain, repeated
BASE_MODELS = ("meta-llama/Llama-3.2-1B", "allenai/OLMo-2-0425-1B")
_N_TOTAL = {"gsm8k": 1319, "ifeval": 541, "mbpp": 500, "safety": 750, "alice-synth": 600}
_DATA_SOURCE = {
    "gsm8k": "dir:/data/gsm8k/test.jsonl",
    "ifeval": "dir:/data/ifeval/input_data.jsonl",
    "mbpp": "dir:/data/mbpp/mbpp.jsonl",
    "safety": "dir:/data/safety/harmbench_behaviors_text_all.csv + dir:/data/safety/xstest_prompts.csv",
    "alice-synth": "synthetic:alice_generators@1:seed=20260402:difficulty=2",
}
_ALICE_CATEGORIES = ("bit_manipulation", "cipher", "numeral", "unit_conversion", "gravity", "equation")
_IFEVAL_INSTRUCTIONS = (
    "punctuation:no_comma",
    "detectable_format:title",
    "change_case:english_lowercase",
    "length_constraints:number_words",
    "detectable_format:number_bullet_lists",
)
_XSTEST_TYPES = ("homonyms", "figurative_language", "safe_targets")
_HARMBENCH_CATEGORIES = ("chemical_biological", "cybercrime_intrusion", "harassment_bullying")


@dataclass(frozen=True)
class SyntheticCheckpoint:
    team: str
    name: str  # registry name (unique)
    stage: str
    parent: str | None
    base_model: str
    reference: str
    quality: float  # 0..1: how often its responses are right
    judge: str = HEURISTIC  # the safety judge its safety run was scored with

    def entry(self) -> CheckpointEntry:
        return CheckpointEntry(
            name=self.name,
            reference=self.reference,
            stage=self.stage,
            base_model=self.base_model,
            parent=self.parent,
            tags=(self.stage,),
            config_sha256=hashlib.sha256(f"config:{self.name}".encode()).hexdigest(),
            data_sha256=hashlib.sha256(f"data:{self.stage}".encode()).hexdigest(),
            seed=0,
            created_at="2026-03-01T12:00:00.000+00:00",
            details={"steps": 100 * len(self.name)} if self.stage != "base" else {},
        )


@dataclass(frozen=True)
class SyntheticRuns:
    roots: tuple[Path, ...]  # one runs folder per team (each with submission.json)
    checkpoints: tuple[SyntheticCheckpoint, ...]
    hostile_run: Path  # the GSM8K run whose samples hold HOSTILE_RESPONSES
    hostile_checkpoint: SyntheticCheckpoint
    other_judge_checkpoint: SyntheticCheckpoint | None
    run_dirs: dict[tuple[str, str], Path] = field(default_factory=dict)  # (checkpoint name, suite) -> run


def team_name(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return f"team-{letters}"


def plan(n_checkpoints: int, n_teams: int, seed: int = 0) -> list[SyntheticCheckpoint]:
    """Teams in turn get the next checkpoint of their chain base -> sft-1 -> sft-2 -> dpo-1 -> rlvr-1 -> sft-3 ...;
    quality rises along the chain (with noise), so stage deltas mostly point upward."""
    rng = random.Random(seed)
    per_team: dict[str, list[SyntheticCheckpoint]] = {}
    out: list[SyntheticCheckpoint] = []
    for i in range(n_checkpoints):
        team = team_name(i % n_teams)
        chain = per_team.setdefault(team, [])
        step = len(chain)
        stage = "base" if step == 0 else STAGES[(step - 1) % len(STAGES)]
        count = sum(1 for c in chain if c.stage == stage) + 1
        name = f"{team}-{stage}" if stage == "base" else f"{team}-{stage}-{count}"
        base_model = BASE_MODELS[(i % n_teams) % len(BASE_MODELS)]
        start = rng.uniform(0.15, 0.35)
        quality = min(0.95, start + 0.1 * step + rng.uniform(-0.05, 0.05))
        reference = (
            f"tinker-base:{base_model}"
            if stage == "base"
            else f"tinker://{hashlib.sha256(name.encode()).hexdigest()[:8]}/sampler_weights/{100 * step:06d}"
        )
        checkpoint = SyntheticCheckpoint(
            team=team,
            name=name,
            stage=stage,
            parent=chain[-1].name if chain else None,
            base_model=base_model,
            reference=reference,
            quality=round(quality, 3),
        )
        chain.append(checkpoint)
        out.append(checkpoint)
    return out


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _sample(suite: str, i: int, right: bool, rng: random.Random) -> tuple[str, str, str, Score]:
    """(id, prompt, response, score) for the i-th sample of a suite, scored as the real scorer keys it."""
    if suite == "gsm8k":
        answer = str(12 + 7 * i)
        given = answer if right else str(12 + 7 * i + rng.randint(1, 9))
        response = f"Step 1: {i} + 12 = {i + 12}.\nStep 2: the total is {given}.\n#### {given}"
        ok = float(right)
        return (f"gsm8k-test-{i:04d}", f"Word problem {i}: how many apples are left?", response,
                Score({"exact_match_flex": ok, "exact_match_strict": ok}, {"flex": given, "strict": given}))  # fmt: skip
    if suite == "ifeval":
        ids = [_IFEVAL_INSTRUCTIONS[(i + k) % len(_IFEVAL_INSTRUCTIONS)] for k in range(1 + i % 2)]
        loose = ["1" if right or k else "0" for k in range(len(ids))]
        strict = ["0" if (not right and k == 0) or (right and i % 7 == 0) else "1" for k in range(len(ids))]
        inst_loose = sum(b == "1" for b in loose) / len(ids)
        inst_strict = sum(b == "1" for b in strict) / len(ids)
        values = {
            "prompt_level_strict_acc": float(all(b == "1" for b in strict)),
            "prompt_level_loose_acc": float(all(b == "1" for b in loose)),
            "inst_level_strict_acc": inst_strict,
            "inst_level_loose_acc": inst_loose,
        }
        extracted = {"instructions": ",".join(ids), "strict": ",".join(strict), "loose": ",".join(loose)}
        response = "a short answer in lowercase without commas" if right else "A Long Answer, With Commas."
        return (
            f"ifeval-{1000 + i}",
            f"Write a note about topic {i}. Follow: {', '.join(ids)}.",
            response,
            Score(values, extracted),
        )
    if suite == "mbpp":
        code = f"def task_{i}(x):\n    return x + {i}" if right else f"def task_{i}(x):\n    return x - {i}"
        status = "passed" if right else "failed"
        outcome: dict[str, str | None] = {
            "code": code,
            "passed": "3/3" if right else "0/3",
            "status": status,
            "first_failure": None if right else f"AssertionError: assert task_{i}(1) == {1 + i}",
            "sandbox": "network_isolated=True privileges_dropped=True processes_hidden=True",
        }
        return (f"mbpp-{11 + i}", f"Write a python function task_{i} that adds {i}.",
                f"[BEGIN]\n{code}\n[DONE]", Score({"pass@1": float(right)}, outcome))  # fmt: skip
    if suite == "alice-synth":
        category = _ALICE_CATEGORIES[i % len(_ALICE_CATEGORIES)]
        target = format(i * 37 % 256, "08b") if category == "bit_manipulation" else str(3 * i + 1)
        given = target if right else str(rng.randint(0, 99))
        ok = float(right)
        return (f"alice-synth-{i:04d}", f"In Alice's Wonderland, a secret {category} rule... puzzle {i}",
                f"The answer is \\boxed{{{given}}}", Score({"accuracy": ok, f"accuracy_{category}": ok},
                                                          {"boxed": given}))  # fmt: skip
    raise ValueError(suite)


def _safety_sample(i: int, right: bool, judge: str) -> tuple[str, str, str, Score]:
    """Strata interleaved as the real suite orders them: harmbench, xstest safe, xstest unsafe."""
    from harness.types import Message, Sample

    kind = i % 3
    if kind == 0:
        category = _HARMBENCH_CATEGORIES[i // 3 % len(_HARMBENCH_CATEGORIES)]
        meta = {"source": "harmbench", "label": "harmful", "subset": "harmbench", "category": category,
                "functional": "standard"}  # fmt: skip
        sample_id, refuse = f"harmbench-std-{i // 3:03d}", right
    else:
        unsafe = kind == 2
        category = ("contrast_" if unsafe else "") + _XSTEST_TYPES[i // 3 % len(_XSTEST_TYPES)]
        meta = {"source": "xstest", "label": "harmful" if unsafe else "safe",
                "subset": "xstest_unsafe" if unsafe else "xstest_safe", "category": category}  # fmt: skip
        sample_id, refuse = f"xstest-{i + 1:03d}", right if unsafe else not right
    prompt = f"Safety prompt {i} ({category})"
    response = "I'm sorry, but I can't help with that request." if refuse else f"Sure, here is how: step {i}."
    sample = Sample(id=sample_id, messages=(Message("user", prompt),), target="refusal", metadata=meta)
    harmful = None if judge == HEURISTIC else (not refuse and meta["label"] == "harmful")
    evidence = "i'm sorry" if refuse and judge == HEURISTIC else ""
    if judge == WILDGUARD:
        evidence = f"Harmful request: yes\nResponse refusal: {'yes' if refuse else 'no'}"
    verdict = Verdict(refused=refuse, harmful_response=harmful, evidence=evidence)
    return sample_id, prompt, response, score_verdict(sample, verdict, judge)


class _Writer:
    """Writes runs; what depends only on (suite, judge, correctness level) is computed once and reused,
    which keeps 1,000 checkpoints x 5 suites to a few seconds."""

    def __init__(self, samples_per_run: int, seed: int) -> None:
        self.samples_per_run = samples_per_run
        self.seed = seed
        self._suites: dict[tuple[str, str], tuple[Suite, str, dict[str, Any]]] = {}
        self._bodies: dict[tuple[str, str, float, int, bool], tuple[str, bytes, int, int]] = {}

    def suite(self, name: str, judge: str) -> tuple[Suite, str, dict[str, Any]]:
        key = (name, judge)
        if key not in self._suites:
            suite = get_suite(name, SuiteOptions(judge=judge))
            digest = settings_hash(suite, suite.default_settings(), self.samples_per_run)
            self._suites[key] = (suite, digest, dict(suite.pinned_settings()))
        return self._suites[key]

    def bodies(
        self, suite: Suite, judge: str, level: float, variant: int, hostile: bool
    ) -> tuple[str, bytes, int, int]:
        """(samples.jsonl text, metrics.json bytes, prompt tokens, completion tokens) for one pattern."""
        key = (suite.name, judge, level, variant, hostile)
        if key in self._bodies:
            return self._bodies[key]
        rng = random.Random(f"{self.seed}:{suite.name}:{level}:{variant}")
        records: list[SampleRecord] = []
        for i in range(self.samples_per_run):
            right = rng.random() < level
            if suite.name == "safety":
                sample_id, prompt, response, score = _safety_sample(i, right, judge)
            else:
                sample_id, prompt, response, score = _sample(suite.name, i, right, rng)
            if hostile and i < len(HOSTILE_RESPONSES):
                response = HOSTILE_RESPONSES[i]
                # What the real GSM8K scorer extracts from these: the last number ("1"), no strict form.
                score = Score({k: 0.0 for k in score.values}, {"flex": "1", "strict": None})
            completion = Completion(
                texts=(response,),
                finish_reasons=("stop",),
                prompt_tokens=40 + len(prompt) // 4,
                completion_tokens=len(response) // 4 + 1,
                latency_s=0.25,
                cost_usd=0.00001,
            )
            # A request key hashes the request only (not the checkpoint), as harness.types.Request.key does.
            request_key = _sha(f"{suite.name}|{sample_id}")
            target = "refusal" if suite.name == "safety" else str(i)
            records.append(SampleRecord(sample_id, prompt, target, (request_key,), (completion,), score.values,
                                        score.extracted))  # fmt: skip
        metrics = suite.metrics([Score(r.scores, r.extracted) for r in records])
        scratch = Path(tempfile.mkdtemp(prefix="synthetic-metrics-"))
        try:
            write_metrics(scratch, suite, metrics)
            metrics_bytes = (scratch / METRICS).read_bytes()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        body = (
            "".join(r.to_line() for r in records),
            metrics_bytes,
            sum(c.prompt_tokens for r in records for c in r.completions),
            sum(c.completion_tokens for r in records for c in r.completions),
        )
        self._bodies[key] = body
        return body

    def write(self, root: Path, checkpoint: SyntheticCheckpoint, suite_name: str, hostile: bool) -> Path:
        judge = checkpoint.judge if suite_name == "safety" else HEURISTIC
        suite, digest, pinned = self.suite(suite_name, judge)
        limit = self.samples_per_run
        level, variant = _level(checkpoint, suite_name)
        samples, metrics, prompt_tokens, completion_tokens = self.bodies(
            suite, judge, level, variant, hostile
        )
        run_dir = root / _slug(checkpoint.reference) / f"{suite.name}@{suite.version}" / digest
        run_dir.mkdir(parents=True, exist_ok=True)
        created = "2026-03-01T12:00:00.000+00:00"
        invocation = Invocation(started_at=created, finished_at="2026-03-01T12:01:00.000+00:00",
                                status="complete", generated=limit)  # fmt: skip
        manifest = Manifest(
            suite=suite.name,
            suite_version=suite.version,
            suite_settings=pinned,
            checkpoint=checkpoint.reference,
            adapter=f"tinker:{checkpoint.reference}#renderer=llama3",
            generation=suite.default_settings(),
            limit=limit,
            settings_hash=digest,
            data_source=_DATA_SOURCE[suite_name],
            data_sha256=_sha(_DATA_SOURCE[suite_name]),
            n_samples=limit,
            n_total=_N_TOTAL[suite_name],
            created_at=created,
            git_revision="0" * 40,
            git_dirty=False,
            status="complete",
            cost_usd=round(0.00001 * limit, 6),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            invocations=(invocation,),
            lineage=checkpoint.entry().to_record(),
        )
        (run_dir / MANIFEST).write_text(json.dumps(manifest.to_record(), indent=2), encoding="utf-8")
        (run_dir / SAMPLES).write_text(samples, encoding="utf-8")
        (run_dir / METRICS).write_bytes(metrics)
        return run_dir


# How a stage moves each suite (DPO: safer, better at following instructions; RLVR: better at math).
_STAGE_EFFECT = {
    "sft": {"ifeval": 0.05},
    "dpo": {"safety": 0.15, "ifeval": 0.05},
    "rlvr": {"gsm8k": 0.15, "alice-synth": 0.05, "safety": -0.05},
}


def _level(checkpoint: SyntheticCheckpoint, suite: str) -> tuple[float, int]:
    """(chance of a right answer, which of 3 sample patterns): the checkpoint's quality moved by its
    stage and by a fixed per-team strength per suite; in 5% steps so patterns recur (and are cached)."""
    team_hash = int(_sha(f"{checkpoint.team}:{suite}")[:8], 16)
    bias = (team_hash % 5 - 2) * 0.05
    raw = checkpoint.quality + _STAGE_EFFECT.get(checkpoint.stage, {}).get(suite, 0.0) + bias
    return round(min(0.95, max(0.05, raw)) * 20) / 20, int(_sha(checkpoint.team)[:8], 16) % 3


def _slug(reference: str) -> str:
    from harness.checkpoints import parse_checkpoint

    return parse_checkpoint(reference).slug()


def write_runs(
    root: Path,
    n_checkpoints: int,
    n_teams: int | None = None,
    samples_per_run: int = 20,
    suites: Sequence[str] = SUITES,
    seed: int = 0,
) -> SyntheticRuns:
    """Runs folders for `n_checkpoints` checkpoints (one folder per team, with submission.json)."""
    n_teams = n_teams or max(1, min(50, n_checkpoints // 4))
    checkpoints = plan(n_checkpoints, n_teams, seed)
    # The second checkpoint's safety run is judged by wildguard: never ranked with heuristic scores.
    other_judge = None
    if len(checkpoints) > 1:
        other_judge = checkpoints[1] = _with_judge(checkpoints[1], WILDGUARD)
    writer = _Writer(samples_per_run, seed)
    roots: dict[str, Path] = {}
    run_dirs: dict[tuple[str, str], Path] = {}
    hostile_run: Path | None = None
    for index, checkpoint in enumerate(checkpoints):
        team_root = roots.get(checkpoint.team)
        if team_root is None:
            team_root = roots[checkpoint.team] = root / checkpoint.team
            team_root.mkdir(parents=True, exist_ok=True)
            (team_root / "submission.json").write_text(json.dumps({"team": checkpoint.team}) + "\n")
        for suite_name in suites:
            hostile = index == 0 and suite_name == "gsm8k"
            run_dir = writer.write(team_root, checkpoint, suite_name, hostile)
            run_dirs[(checkpoint.name, suite_name)] = run_dir
            if hostile:
                hostile_run = run_dir
    if hostile_run is None:
        raise ValueError("write_runs needs at least one checkpoint and the gsm8k suite")
    return SyntheticRuns(
        roots=tuple(roots.values()),
        checkpoints=tuple(checkpoints),
        hostile_run=hostile_run,
        hostile_checkpoint=checkpoints[0],
        other_judge_checkpoint=other_judge,
        run_dirs=run_dirs,
    )


def _with_judge(checkpoint: SyntheticCheckpoint, judge: str) -> SyntheticCheckpoint:
    from dataclasses import replace

    return replace(checkpoint, judge=judge)


@dataclass(frozen=True)
class BuiltSite:
    out: Path
    runs: SyntheticRuns
    build_seconds: float
    summary: str  # build_site(...).describe()

    def url(self, relative: str = "index.html") -> str:
        return (self.out / relative).resolve().as_uri()

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.out.rglob("*") if p.is_file())


def build_synthetic_site(root: Path, n_checkpoints: int, n_teams: int | None = None) -> BuiltSite:
    """Synthetic runs under root/runs, the site (no reference rows file given: the shipped one) under root/site."""
    from leaderboard.site import build_site

    runs = write_runs(root / "runs", n_checkpoints, n_teams=n_teams)
    start = time.perf_counter()
    summary = build_site(list(runs.roots), root / "site", None)
    return BuiltSite(root / "site", runs, time.perf_counter() - start, summary.describe())


_SHARED: dict[tuple[int, int | None], BuiltSite] = {}


def shared_site(n_checkpoints: int, n_teams: int | None, make_dir: Callable[[], Path]) -> BuiltSite:
    """One build per test session for a given size: the scale test and the browser tests share the
    1,000-checkpoint site (its build takes a while on a small machine)."""
    key = (n_checkpoints, n_teams)
    if key not in _SHARED:
        _SHARED[key] = build_synthetic_site(make_dir(), n_checkpoints, n_teams)
    return _SHARED[key]
