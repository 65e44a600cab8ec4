"""Spot-check verification: does the claimed checkpoint produce the submitted responses?

`add` proves that a bundle's scores follow from its responses; it cannot prove that a model produced them.
`spot_check` regenerates K samples, picked at random (seeded) among a checkpoint's submitted runs, with the
checkpoint the staff hold, greedily (the run's own prompts, max_tokens, stop and seed: the stored request
keys must match the regenerated requests), and compares texts. The response cache is never read: every
compared text is generated now.

A sample agrees when every response text matches the submitted one after whitespace normalisation (runs of
whitespace as one space, ends stripped); byte-identical matches are counted too. Greedy decoding on GPUs is
not bitwise reproducible across batch sizes, kernels and cards: a near-tied logit flips one token late in a
response and the texts part from there. So a sample whose texts share their first PREFIX_CHARS characters
and whose regenerated responses get the same per-sample scores from the suite's scorer also agrees (a
divergence that changes no number on the site). An edit that changes a score, such as a corrected final
answer, never agrees. Model-judged suites are not re-scored here, so they need a normalised match.

Runs sampled at temperature > 0 cannot be reproduced by regeneration: they are reported as not checkable,
never as disagreement.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from harness.checkpoints import redact_reference
from harness.errors import ExitCode, UsageError
from harness.runs.manifest import Manifest, now_iso
from harness.runs.provenance import SpotCheck
from harness.runs.store import MANIFEST, SAMPLES, SampleRecord
from harness.suite import Suite
from harness.types import Completion, Request, Sample
from harness.version import __version__
from leaderboard.bundle import read_bundle
from leaderboard.spot_check_file import record_spot_check, samples_sha256
from leaderboard.verify import iter_records, same_number, verify_run
from leaderboard.verify_checks import load_manifest, load_suite_data, registered_suite

if TYPE_CHECKING:
    from adapters import AdapterOptions
    from harness.types import Adapter

DEFAULT_MIN_AGREEMENT = 0.9  # K <= 9: every sample must agree; from K = 10 one in ten may differ
PREFIX_CHARS = 100  # a late divergence keeps at least this much (normalised) text in common
SHOWN_CHARS = 200  # of each disagreeing text
DISAGREES_EXIT = int(ExitCode.SPOT_CHECK_DISAGREES)  # `verify` when agreement is below the minimum


def normalise(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class SampleCheck:
    run: str  # bundle path: runs/<checkpoint>/<suite>@<version>/<hash>
    sample_id: str
    submitted: tuple[str, ...]  # every response text, in request order
    regenerated: tuple[str, ...]
    exact: bool
    normalised: bool
    agreed: bool
    how: str  # why it agrees or not, in words

    def describe(self) -> str:
        def cut(texts: Sequence[str]) -> str:
            joined = " | ".join(texts)
            return repr(joined[:SHOWN_CHARS]) + (" ..." if len(joined) > SHOWN_CHARS else "")

        head = f"  {'AGREES ' if self.agreed else 'DIFFERS'}  {self.run}  sample {self.sample_id}: {self.how}"
        if self.agreed:
            return head
        return f"{head}\n      submitted:   {cut(self.submitted)}\n      regenerated: {cut(self.regenerated)}"


@dataclass(frozen=True)
class SpotCheckResult:
    team: str
    checkpoint: str  # the bundle's checkpoint reference that was checked
    regenerated_with: str
    seed: int
    min_agreement: float
    samples: tuple[SampleCheck, ...]
    not_checkable: tuple[str, ...]  # "run: reason", for runs or samples regeneration cannot reproduce
    runs: Mapping[str, str] = field(default_factory=dict)  # the checkpoint's runs -> samples sha256
    written: Path | None = None  # spot_check.json, when --site-data was given

    @property
    def checked(self) -> int:
        return len(self.samples)

    @property
    def agreed(self) -> int:
        return sum(s.agreed for s in self.samples)

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.checked if self.checked else None

    @property
    def passed(self) -> bool:
        return self.agreement is not None and self.agreement >= self.min_agreement

    def as_spot_check(self) -> SpotCheck:
        return SpotCheck(
            checkpoint=self.checkpoint, regenerated_with=self.regenerated_with, checked=self.checked,
            agreed=self.agreed, exact=sum(s.exact for s in self.samples),
            not_checkable=len(self.not_checkable), seed=self.seed, min_agreement=self.min_agreement,
            passed=self.passed, date=now_iso(), harness_version=__version__, runs=dict(self.runs),
        )  # fmt: skip

    def describe(self) -> str:
        same = self.regenerated_with == self.checkpoint
        lines = [
            f"spot check of team {self.team}'s '{redact_reference(self.checkpoint)}'"
            + ("" if same else f", regenerated with '{redact_reference(self.regenerated_with)}'")
            + f" (seed {self.seed}):"
        ]
        lines.extend(s.describe() for s in self.samples)
        lines.extend(f"  NOT CHECKABLE  {reason}" for reason in self.not_checkable)
        if self.agreement is None:
            lines.append("nothing checkable by regeneration: no verdict (not a failure)")
        else:
            exact = sum(s.exact for s in self.samples)
            normalised = sum(s.normalised for s in self.samples)
            verdict = "PASS" if self.passed else "FAIL"
            lines.append(
                f"{verdict}: {self.agreed}/{self.checked} samples agree ({self.agreement:.0%}; minimum "
                f"{self.min_agreement:.0%}); {exact} byte-identical, {normalised} equal after whitespace "
                "normalisation"
            )
        if self.written is not None:
            lines.append(f"wrote {self.written}")
        return "\n".join(lines)


def spot_check(
    bundle: Path,
    checkpoint: str,
    sample: int,
    *,
    seed: int = 0,
    claimed: str | None = None,
    runs_root: Path | None = None,
    site_data: Path | None = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    options: AdapterOptions | None = None,
) -> SpotCheckResult:
    """Check `bundle` as `add` does, then regenerate `sample` of its samples of the claimed checkpoint
    (`claimed`, else `checkpoint`) with `checkpoint` (STAGE:TAG resolved in `runs_root`'s registry)."""
    from harness.lineage import resolve_checkpoint

    if sample < 1:
        raise UsageError(
            f"--sample must be at least 1, got {sample}.", "Pass how many samples to regenerate."
        )
    ref, _ = resolve_checkpoint(checkpoint, runs_root)
    with tempfile.TemporaryDirectory(prefix=".harness-spot-check-") as tmp:
        contents = read_bundle(bundle, Path(tmp))
        accepted = [verify_run(run, contents.files) for run in contents.meta["runs"]]
        held = sorted({run.checkpoint for run in accepted})
        target = _claimed(claimed, (checkpoint.strip(), ref.raw), held)
        manifests = {
            run.path: load_manifest(f"{run.path}/{MANIFEST}", contents.files[f"{run.path}/{MANIFEST}"])
            for run in accepted
            if run.checkpoint == target
        }
        samples_files = {path: contents.files[f"{path}/{SAMPLES}"] for path in manifests}
        not_checkable = [
            f"{path}: sampled at temperature {m.generation.temperature:g}, which regeneration cannot reproduce"
            for path, m in manifests.items()
            if m.generation.temperature > 0
        ]
        greedy = {path: m for path, m in manifests.items() if m.generation.temperature <= 0}
        pool = [
            (path, r.id) for path in sorted(greedy) for _, r, _ in iter_records(samples_files[path], path)
        ]
        chosen = set(random.Random(seed).sample(pool, min(sample, len(pool))))
        records = {
            (path, r.id): r
            for path in sorted(greedy)
            for _, r, _ in iter_records(samples_files[path], path)
            if (path, r.id) in chosen
        }
        from adapters import create_adapter

        adapter = create_adapter(ref, options)
        checks, skipped = asyncio.run(_regenerate(adapter, greedy, records))
        not_checkable.extend(skipped)
        run_hashes = {
            path.removeprefix("runs/"): samples_sha256(samples_files[path].parent) or "" for path in manifests
        }
    result = SpotCheckResult(
        team=str(contents.meta["team"]), checkpoint=target, regenerated_with=ref.raw, seed=seed,
        min_agreement=min_agreement, samples=tuple(checks), not_checkable=tuple(not_checkable),
        runs=run_hashes,
    )  # fmt: skip
    if site_data is not None:
        written = record_spot_check(site_data, result.team, result.as_spot_check())
        result = replace(result, written=written)
    return result


def _claimed(claimed: str | None, given: tuple[str, ...], held: Sequence[str]) -> str:
    """The bundle checkpoint being checked: --claimed, else the one --checkpoint names."""
    listing = "\n".join(f"  {redact_reference(c)}" for c in held)
    if claimed is not None:
        if claimed.strip() in held:
            return claimed.strip()
        raise UsageError(
            f"The bundle holds no runs of '{redact_reference(claimed)}' (--claimed).",
            f"Its checkpoints are:\n{listing}",
        )
    for text in given:
        if text in held:
            return text
    raise UsageError(
        f"The bundle holds no runs of '{redact_reference(given[0])}'.",
        "To check one of its checkpoints by regenerating with your copy of it, name the bundle's "
        f"checkpoint with --claimed REF. Its checkpoints are:\n{listing}",
    )


async def _regenerate(
    adapter: Adapter, manifests: Mapping[str, Manifest], records: Mapping[tuple[str, str], SampleRecord]
) -> tuple[list[SampleCheck], list[str]]:
    """Regenerate the chosen samples, a run at a time (each its suite's requests), and compare."""
    from harness.generate_loop import generate_in_batches

    checks: list[SampleCheck] = []
    skipped: list[str] = []
    answers: dict[str, Completion] = {}  # request key -> regenerated response

    async def keep(batch: list[Request], completions: list[Completion]) -> None:
        answers.update((r.key(), c) for r, c in zip(batch, completions, strict=True))

    try:
        for path, manifest in sorted(manifests.items()):
            mine = {sample_id: r for (p, sample_id), r in records.items() if p == path}
            if not mine:
                continue
            suite, judge = registered_suite(manifest, f"{path}/{MANIFEST}")
            loaded = load_suite_data(suite, manifest.limit, f"run {path}")
            samples = {s.id: s for s in loaded.samples}
            requests: dict[str, list[Request]] = {}
            for sample_id, record in sorted(mine.items()):
                asked = suite.requests(samples[sample_id], manifest.generation, adapter.api)
                if tuple(r.key() for r in asked) != record.request_keys:
                    skipped.append(
                        f"{path} sample {sample_id}: this checkpoint sends {adapter.api} requests, the run "
                        "sent the other form, so its prompts cannot be repeated"
                    )
                    continue
                requests[sample_id] = list(asked)
            flat = [r for sample_id in sorted(requests) for r in requests[sample_id]]
            await generate_in_batches(adapter, flat, keep)
            rescore = suite.judge is None or judge == _default_judge()
            for sample_id, asked in sorted(requests.items()):
                regenerated = tuple(answers[r.key()] for r in asked)
                checks.append(
                    await _compare(path, suite, samples[sample_id], mine[sample_id], regenerated, rescore)
                )
    finally:
        await adapter.aclose()
    return checks, skipped


def _default_judge() -> str:
    from harness.suite import SuiteOptions

    return SuiteOptions().judge


async def _compare(
    path: str,
    suite: Suite,
    sample: Sample,
    record: SampleRecord,
    regenerated: tuple[Completion, ...],
    rescore: bool,
) -> SampleCheck:
    submitted = tuple(t for c in record.completions for t in c.texts)
    produced = tuple(t for c in regenerated for t in c.texts)
    exact = submitted == produced
    normalised = len(submitted) == len(produced) and all(
        normalise(a) == normalise(b) for a, b in zip(submitted, produced, strict=True)
    )
    if exact or normalised:
        how = "byte-identical" if exact else "equal after whitespace normalisation"
        return SampleCheck(path, sample.id, submitted, produced, exact, normalised, True, how)
    late = len(submitted) == len(produced) and all(
        len(normalise(a)) >= PREFIX_CHARS and normalise(a)[:PREFIX_CHARS] == normalise(b)[:PREFIX_CHARS]
        for a, b in zip(submitted, produced, strict=True)
    )
    if late and rescore:
        from harness.suite import score_many

        (score,) = await score_many(suite, [(sample, regenerated)])
        keys = set(score.values) | set(record.scores)
        if all(same_number(score.values.get(k), record.scores.get(k)) for k in keys):
            how = f"the first {PREFIX_CHARS} characters agree, the texts part later, the scores are the same"
            return SampleCheck(path, sample.id, submitted, produced, False, False, True, how)
        how = f"the first {PREFIX_CHARS} characters agree, but the regenerated response scores {dict(score.values)}"
    elif late:
        how = f"only the first {PREFIX_CHARS} characters agree (a model-judged suite is not re-scored here)"
    else:
        how = "the texts differ"
    return SampleCheck(path, sample.id, submitted, produced, False, False, False, how)
