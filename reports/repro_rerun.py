"""`harness reproduce`: verify a package (reports.repro_check), re-run its declared subset, compare.

Each packaged (checkpoint, suite) is evaluated again on its first LIMIT samples with the packaged settings
(`harness.evaluate`, generation rebuilt from the manifest, the response cache off, a fresh runs folder),
and compared with the packaged run on the same sample ids:
- greedy decoding (temperature 0, one response) on a deterministic backend: in-process llama.cpp
  (`embedded`, `gguf:`), transformers in float32 (`hf:` on CPU: its adapter identity ends in `:float32`),
  and `replay:`, with the same adapter identity: every response text must be identical;
- otherwise (sampling, GPUs, vLLM, Tinker, endpoints): the primary metric's paired difference (re-run
  minus packaged, harness.gating.paired.paired_delta) must have a 95% CI that contains 0.
A checkpoint that cannot be evaluated here (no weights, an endpoint that does not answer, a backend not
installed) is "not reproducible here: <why>", never a crash.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.errors import ExitCode, HarnessError, UsageError
from harness.runs.manifest import Manifest
from harness.runs.store import MANIFEST, SAMPLES, SampleRecord, SamplesFile, read_json
from reports.repro_check import open_package, verify_runs
from reports.repro_package import DEFAULT_SUBSET_LIMIT

DETERMINISTIC_FORMS = ("embedded", "gguf", "replay")
REPRODUCED, DIFFERS, NOT_HERE = "REPRODUCED", "DIFFERS", "NOT REPRODUCIBLE HERE"
DIFFERS_EXIT = int(ExitCode.SPOT_CHECK_DISAGREES)  # regenerated samples disagree with the packaged ones


@dataclass(frozen=True)
class SuiteCheck:
    checkpoint: str
    suite: str
    limit: int
    verdict: str  # REPRODUCED | DIFFERS | NOT REPRODUCIBLE HERE
    detail: str
    n: int = 0  # paired samples
    identical: int = 0  # of them, with identical response texts
    packaged: float | None = None  # the primary metric over the paired samples
    rerun: float | None = None
    ci: tuple[float, float] | None = None  # of re-run minus packaged
    compared_by: str = ""  # "identical responses" | "paired 95% CI"
    exit_code: int = 0  # of the error that kept it from running here


@dataclass(frozen=True)
class ReproduceResult:
    checks: tuple[SuiteCheck, ...]
    files_verified: int
    notes: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        if any(c.verdict == DIFFERS for c in self.checks):
            return DIFFERS_EXIT
        return next((c.exit_code for c in self.checks if c.verdict == NOT_HERE), 0)

    def table(self) -> str:
        head = ("checkpoint", "suite", "n", "packaged", "re-run", "identical", "compared by", "verdict")
        rows = [head] + [
            (c.checkpoint[:40], c.suite, str(c.n), _num(c.packaged), _num(c.rerun), f"{c.identical}/{c.n}",
             c.compared_by or "-", c.verdict)
            for c in self.checks
        ]  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines += [f"  {c.checkpoint} / {c.suite}: {c.detail}" for c in self.checks]
        differ = sorted({c.suite for c in self.checks if c.verdict == DIFFERS})
        missing = sorted({c.suite for c in self.checks if c.verdict == NOT_HERE})
        if differ:
            lines.append(f"differs: {', '.join(differ)}")
        if missing:
            lines.append(f"not reproducible here: {', '.join(missing)}")
        if not differ and not missing:
            lines.append(f"reproduced: all {len(self.checks)} suite run(s)")
        return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def parse_subset(items: Sequence[str], declared: Sequence[str], packaged: Sequence[str]) -> dict[str, int]:
    """SUITE[:LIMIT] items (default: the package's declared subset) -> suite -> limit."""
    default = {}
    for item in declared:
        suite, _, limit = str(item).partition(":")
        default[suite] = int(limit) if limit.isdigit() and int(limit) > 0 else DEFAULT_SUBSET_LIMIT
    chosen: dict[str, int] = {}
    for item in items or list(declared):
        suite, sep, limit = item.partition(":")
        if suite not in packaged:
            raise UsageError(
                f"--subset {item}: the package holds no run of suite '{suite}'.",
                f"Packaged suites: {', '.join(sorted(set(packaged)))}.",
            )
        if sep and not (limit.isdigit() and int(limit) > 0):
            raise UsageError(f"--subset {item}: LIMIT must be a positive whole number.")
        chosen[suite] = int(limit) if sep else default.get(suite, DEFAULT_SUBSET_LIMIT)
    return chosen


def _deterministic(packaged: Manifest, rerun: Manifest) -> tuple[bool, str]:
    from harness.checkpoints import parse_checkpoint

    gen = packaged.generation
    if gen.temperature != 0 or gen.n != 1:
        return False, f"sampled decoding (temperature {gen.temperature}, {gen.n} response(s) per prompt)"
    form = parse_checkpoint(packaged.checkpoint).form
    float32 = form == "hf" and packaged.adapter.endswith(":float32") and rerun.adapter.endswith(":float32")
    if form not in DETERMINISTIC_FORMS and not float32:
        return False, f"greedy on a backend ({form}) that is not bitwise deterministic"
    if packaged.adapter != rerun.adapter:
        return (
            False,
            "greedy, but the adapter identity differs from the packaged one (other weights or dtype)",
        )
    return True, f"greedy on a deterministic backend ({form})"


def _texts(record: SampleRecord) -> tuple[str, ...]:
    return tuple(t for c in record.completions for t in c.texts)


def compare_runs(checkpoint: str, suite: str, limit: int, packaged_dir: Path, rerun_dir: Path) -> SuiteCheck:
    """The packaged run against its re-run, on the sample ids both hold."""
    from harness.gating.paired import paired_delta
    from harness.runs.scores import score_key

    old_m = Manifest.from_record(read_json(packaged_dir / MANIFEST, "run manifest"), packaged_dir / MANIFEST)
    new_m = Manifest.from_record(read_json(rerun_dir / MANIFEST, "run manifest"), rerun_dir / MANIFEST)
    old = {r.id: r for r in SamplesFile(packaged_dir / SAMPLES).load(repair=False).records}
    new = [r for r in SamplesFile(rerun_dir / SAMPLES).load(repair=False).records if r.id in old]
    base = SuiteCheck(checkpoint, suite, limit, DIFFERS, "")
    if not new:
        return _with(base, detail="the re-run shares no sample ids with the packaged run (other data?)")
    prompts = [r.id for r in new if (r.prompt, r.target) != (old[r.id].prompt, old[r.id].target)]
    if prompts:
        return _with(
            base, n=len(new), detail=f"the data differs: samples {prompts[:5]} have other prompts or targets"
        )
    identical = sum(_texts(r) == _texts(old[r.id]) for r in new)
    olds = [old[r.id] for r in new]
    deterministic, why = _deterministic(old_m, new_m)
    primary = _primary(packaged_dir)
    keys = score_key(primary, olds)
    stats = None
    if keys is not None and score_key(primary, new) == keys:
        key, stratum = keys
        strata = None if stratum is None else [str(r.extracted.get(stratum)) for r in olds]
        stats = paired_delta([r.scores[key] for r in olds], [r.scores[key] for r in new], strata=strata)
    common: dict[str, Any] = {"n": len(new), "identical": identical}
    if stats is not None:
        common.update(packaged=stats.mean_a, rerun=stats.mean_b)
    if deterministic:
        ok = identical == len(new)
        return _with(base, verdict=REPRODUCED if ok else DIFFERS, compared_by="identical responses",
                     detail=f"{why}: {identical} of {len(new)} responses identical", **common)  # fmt: skip
    if stats is None:
        return _with(
            base, compared_by="paired 95% CI", detail=f"{why}; no per-sample {primary} to compare", **common
        )
    ci = (stats.ci_low, stats.ci_high)
    ok = stats.ci_low <= 0 <= stats.ci_high
    detail = (f"{why}: {primary} re-run minus packaged {stats.delta:+.4f}, 95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}] "
              f"({stats.method}), which {'contains' if ok else 'excludes'} 0")  # fmt: skip
    return _with(base, verdict=REPRODUCED if ok else DIFFERS, compared_by="paired 95% CI", ci=ci, detail=detail,
                 **common)  # fmt: skip


def _primary(run_dir: Path) -> str:
    metrics = read_json(run_dir / "metrics.json", "metrics file")
    return str(metrics.get("primary") or "")


def _with(check: SuiteCheck, **changes: Any) -> SuiteCheck:
    return replace(check, **changes)


def rerun(
    root: Path, run: Mapping[str, Any], limit: int, runs: Path, data_dir: str | None, progress: bool
) -> SuiteCheck:
    """Evaluate one packaged run's checkpoint and suite again on its first `limit` samples, and compare."""
    from harness.api.evaluate import Generation, evaluate
    from harness.suite import SuiteOptions

    packaged_dir = root.joinpath(*str(run["path"]).split("/"))
    manifest = Manifest.from_record(
        read_json(packaged_dir / MANIFEST, "run manifest"), packaged_dir / MANIFEST
    )
    label, suite = str(run.get("checkpoint") or manifest.checkpoint), manifest.suite
    limit = min(limit, manifest.n_samples)
    try:
        options = SuiteOptions.of_run(manifest.suite_settings, None, str(packaged_dir / MANIFEST))
        results = evaluate(
            manifest.checkpoint, [suite], limit=limit, runs=runs, data_dir=data_dir,
            generation=Generation.like(manifest.generation), scoring=options, cache=False, fresh=True,
            progress=progress,
        )  # fmt: skip
    except HarnessError as error:
        return SuiteCheck(label, suite, limit, NOT_HERE, f"not reproducible here: {error.problem}",
                          exit_code=int(error.exit_code))  # fmt: skip
    return compare_runs(label, suite, limit, packaged_dir, results[suite].run_dir)


def reproduce(
    source: Path,
    subset: Sequence[str] = (),
    *,
    runs: Path | None = None,
    data_dir: str | None = None,
    progress: bool = False,
) -> ReproduceResult:
    """Verify `source` (a package zip or its extracted folder), then re-run and compare its subset."""
    work = Path(tempfile.mkdtemp(prefix="harness-reproduce-"))
    try:
        package = open_package(source, work / "package")
        notes = verify_runs(package)
        packaged = [str(r["suite"]) for r in package.runs()]
        chosen = parse_subset(subset, [str(s) for s in package.manifest["subset"]], packaged)
        out = runs if runs is not None else work / "runs"
        checks = [
            rerun(package.root, run, chosen[str(run["suite"])], out, data_dir, progress)
            for run in package.runs()
            if str(run["suite"]) in chosen
        ]
        return ReproduceResult(tuple(checks), package.files, tuple(notes))
    finally:
        shutil.rmtree(work, ignore_errors=True)
