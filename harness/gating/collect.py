"""Which runs the gate compares, and the per-metric statistics of each suite.

A side is a run folder (or a unique part of its path), a checkpoint reference, or STAGE:TAG (its runs
are looked up in the runs folder). Per suite, the complete runs with equal pinned settings that share
the most samples are paired (same decoding preferred); generation settings that differ are listed, not
refused, unless strict. A side with no complete run is evaluated through a callback (the API's
`harness.gate(..., eval_missing=True)` passes one), else the error lists the `harness eval` commands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

from harness.errors import DataError, UsageError
from harness.gating.policy import PRIMARY, GatePolicy, load_policy
from harness.gating.report import markdown, render_table, to_json
from harness.gating.verdicts import (
    MarginTest,
    SuiteResult,
    Verdict,
    apply_holm,
    combine,
    exit_code,
    gate_metric,
    suite_verdicts,
)
from harness.reasoning import ReasoningSpec
from harness.runs.catalog import RunView
from harness.runs.scores import score_key


@dataclass(frozen=True)
class Side:
    text: str  # as given, less any credentials in a URL (it is printed and written to reports)
    reference: str | None  # concrete checkpoint reference, as stored (what --eval-missing evaluates)
    runs: dict[str, list[RunView]] = field(default_factory=dict)  # suite -> runs, best first
    # The reference --eval-missing hands to eval: the given text when credentials were taken out of it.
    eval_reference: str | None = field(default=None, repr=False)


def _rank(run: RunView) -> tuple[bool, int, str]:
    return (run.complete, run.manifest.n_samples, run.manifest.created_at)


def resolve_side(text: str, root: Path) -> Side:
    from harness.checkpoints import parse_checkpoint, redact_reference
    from harness.lineage import resolve_checkpoint
    from harness.runs.catalog import load_run, load_runs
    from harness.runs.store import MANIFEST, resolve_run

    direct = Path(text).expanduser()
    if not (direct / MANIFEST).is_file():
        try:
            parse_checkpoint(text)
        except UsageError:
            direct = resolve_run(text, root)  # a fragment of a run's path (or a UsageError listing runs)
    if (direct / MANIFEST).is_file():
        run = load_run(direct.resolve())
        return Side(redact_reference(text), run.manifest.checkpoint, {run.suite: [run]})
    ref, _entry = resolve_checkpoint(text, root)
    runs: dict[str, list[RunView]] = {}
    for run in load_runs([root]) if root.is_dir() else []:
        if run.manifest.checkpoint == ref.raw:
            runs.setdefault(run.suite, []).append(run)
    best_first = {s: sorted(r, key=_rank, reverse=True) for s, r in runs.items()}
    given = text if parse_checkpoint(text).raw == ref.raw else ref.raw  # STAGE:TAG evaluates its entry
    return Side(redact_reference(text), ref.raw, best_first, eval_reference=given)


def _pinned(run: RunView) -> dict[str, Any]:
    m = run.manifest
    return {
        "suite version": m.suite_version,
        "suite settings": dict(m.suite_settings),
        "data sha256": m.data_sha256,
    }


def generation_differences(base: RunView, cand: RunView) -> dict[str, tuple[Any, Any]]:
    a, b = base.manifest.generation.as_record(), cand.manifest.generation.as_record()
    diffs = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
    if base.manifest.limit != cand.manifest.limit:
        diffs["limit"] = (base.manifest.limit, cand.manifest.limit)
    return diffs


def choose_pair(suite: str, base: Side, cand: Side) -> tuple[RunView, RunView]:
    """The complete runs with equal pinned settings that share the most samples (same decoding preferred)."""
    complete_b = [r for r in base.runs.get(suite, []) if r.complete]
    complete_c = [r for r in cand.runs.get(suite, []) if r.complete]
    pairs = [(x, y) for x in complete_b for y in complete_c if _pinned(x) == _pinned(y)]
    if not pairs:
        x, y = complete_b[0], complete_c[0]
        differ = {k: (v, _pinned(y)[k]) for k, v in _pinned(x).items() if v != _pinned(y)[k]}
        raise UsageError(
            f"Refusing to gate {suite}: the runs were not made under the same pinned settings: "
            + "; ".join(f"{k}: baseline {v[0]!r} vs candidate {v[1]!r}" for k, v in differ.items())
            + f" (baseline {x.run_dir}, candidate {y.run_dir}).",
            "Re-run one side with the other's suite version, settings (e.g. --judge) and data (--data-dir).",
        )

    def score(pair: tuple[RunView, RunView]) -> tuple[int, bool, str, str]:
        x, y = pair
        same = not generation_differences(x, y)
        return (
            min(x.manifest.n_samples, y.manifest.n_samples),
            same,
            x.manifest.created_at,
            y.manifest.created_at,
        )

    return max(pairs, key=score)


def eval_command(reference: str, suite: str, like: RunView | None, root: Path) -> list[str]:
    """The `harness eval` command line (shown to the user) that reproduces `like`'s generation settings
    and limit for another checkpoint."""
    argv = ["eval", "--checkpoint", reference, "--suite", suite]
    if like is not None:
        gen, m = like.manifest.generation, like.manifest
        if m.limit is not None:
            argv += ["--limit", str(m.limit)]
        answer_tokens = gen.max_tokens - (gen.thinking_budget or 0)
        argv += ["--max-tokens", str(answer_tokens), "--temperature", repr(gen.temperature)]
        argv += ["--top-p", repr(gen.top_p), "--samples", str(gen.n), "--seed", str(gen.seed or 0)]
        judge = m.suite_settings.get("judge")
        if judge is not None:
            argv += ["--judge", str(judge)]
        argv += _reasoning_flags(ReasoningSpec.from_pinned(m.suite_settings), gen.thinking_budget)
        regime = m.suite_settings.get("regime")
        if regime is not None:
            argv += ["--regime", str(regime)]
        if m.suite_settings.get("confidence") == "verbalized":
            argv.append("--ask-confidence")
        if gen.logprobs:
            argv.append("--logprobs")
    return [*argv, "--runs", str(root)]


def _reasoning_flags(spec: ReasoningSpec, budget: int | None) -> list[str]:
    if not spec.enabled:
        return []
    flags = ["--reasoning", spec.mode]
    if spec.mode != "field" and (spec.open_tag, spec.close_tag) != ("<think>", "</think>"):
        flags += ["--think-tags", spec.open_tag, spec.close_tag]
    return flags + ([] if budget is None else ["--thinking-budget", str(budget)])


def gate_suite(suite: str, base_run: RunView, cand_run: RunView, policy: GatePolicy) -> SuiteResult:
    """Per-metric statistics of one suite (Holm and verdicts come later), or why it cannot be gated."""

    sp = policy.for_suite(suite)
    recs_a, recs_b = base_run.samples(), cand_run.samples()
    by_b = {r.id: r for r in recs_b}
    common = [r for r in recs_a if r.id in by_b]
    if len(common) < sp.min_samples:
        raise UsageError(
            f"Refusing to gate {suite}: only {len(common)} samples are in both runs (policy minimum "
            f"{sp.min_samples}; baseline {len(recs_a)}, candidate {len(recs_b)}).",
            "Evaluate both on the same samples (same --limit), or lower min_samples in the policy.",
        )
    results, notes = [], []
    differences = generation_differences(base_run, cand_run)
    same_model = base_run.manifest.adapter == cand_run.manifest.adapter and not differences
    if same_model:
        notes.append("same model and decoding on both sides (adapter identity and generation settings)")
    roles: tuple[tuple[Literal["gate", "report"], tuple[str, ...]], ...] = (
        ("gate", sp.gate),
        ("report", sp.report),
    )
    for role, names in roles:
        for name in names:
            metric = base_run.primary if name == PRIMARY else name
            keys = score_key(metric, common), score_key(metric, [by_b[r.id] for r in common])
            if keys[0] is None or keys[0] != keys[1]:
                if role == "gate":
                    raise UsageError(
                        f"Refusing to gate {suite}: the policy gates on '{metric}', which the runs do not "
                        "store per sample.",
                        f"Gate on a per-sample metric (e.g. {base_run.primary}).",
                    )
                notes.append(f"{metric}: no per-sample values; not compared")
                continue
            key, stratum = keys[0]
            a = [r.scores[key] for r in common]
            b = [by_b[r.id].scores[key] for r in common]
            strata = None if stratum is None else [str(r.extracted.get(stratum)) for r in common]
            results.append(
                gate_metric(
                    suite,
                    metric,
                    a,
                    b,
                    allowed_drop=sp.allowed_drop,
                    alpha=sp.alpha,
                    role=role,
                    strata=strata,
                    ci_level=policy.ci_level,
                    resamples=policy.resamples,
                    seed=policy.seed,
                    margin_test=cast(MarginTest, policy.margin_test),
                    same_model=same_model,
                )
            )
    return SuiteResult(
        suite=suite,
        baseline_run=base_run.run_dir,
        candidate_run=cand_run.run_dir,
        n_paired=len(common),
        only_baseline=len(recs_a) - len(common),
        only_candidate=len(recs_b) - len(common),
        settings_differences=differences,
        metrics=results,
        notes=notes,
    )


def _missing_error(
    missing: list[tuple[str, str, Side, RunView | None]], base: Side, cand: Side, root: Path
) -> DataError:
    import shlex

    lines = []
    for suite, who, side, like in missing:
        have = ", ".join(sorted(side.runs)) or "none"
        lines.append(f"  {suite}: no complete run for the {who} {side.text} (its runs: {have})")
        if side.reference is not None:
            lines.append("    harness " + shlex.join(eval_command(side.reference, suite, like, root)))
    return DataError(
        "The gate needs a run of each suite for both checkpoints:\n" + "\n".join(lines),
        "Run the commands above, or pass --eval-missing to let the gate run them.",
    )


@dataclass(frozen=True)
class MissingRun:
    """A suite with no complete run for one side; `like` is the other side's run to reproduce."""

    suite: str
    reference: str  # what to evaluate (the given text where credentials were taken out of the shown one)
    like: RunView | None


EvaluateMissing = Callable[[MissingRun], None]


def collect(
    baseline: str, candidate: str, policy: GatePolicy, root: Path, suites: Sequence[str] | None = None,
    evaluate_missing: EvaluateMissing | None = None, strict_settings: bool = False,
) -> tuple[Side, Side, list[SuiteResult]]:  # fmt: skip
    """Both sides' runs paired per suite and gated metric by metric (before Holm). A missing run is
    evaluated through `evaluate_missing` when given, else a DataError lists the commands to run."""
    base, cand = resolve_side(baseline, root), resolve_side(candidate, root)
    suites = list(suites or []) or [s for s in policy.suites if s in base.runs] or sorted(base.runs)
    if not suites:
        raise DataError(f"No runs found for the baseline {base.text} under {root}.", "Evaluate it first.")
    for attempt in (1, 2):
        missing = []
        for suite in suites:
            for who, side, other in (("baseline", base, cand), ("candidate", cand, base)):
                if not any(r.complete for r in side.runs.get(suite, [])):
                    like = next((r for r in other.runs.get(suite, []) if r.complete), None)
                    missing.append((suite, who, side, like))
        if not missing:
            break
        if evaluate_missing is None or attempt == 2 or any(s.reference is None for _, _, s, _ in missing):
            raise _missing_error(missing, base, cand, root)
        for suite, _who, side, like in missing:
            assert side.reference is not None
            evaluate_missing(MissingRun(suite, side.eval_reference or side.reference, like))
        base, cand = resolve_side(baseline, root), resolve_side(candidate, root)
    results = []
    for suite in suites:
        base_run, cand_run = choose_pair(suite, base, cand)
        result = gate_suite(suite, base_run, cand_run, policy)
        if strict_settings and result.settings_differences:
            raise UsageError(
                f"Refusing to gate {suite} (--strict-settings): generation settings differ: "
                + "; ".join(
                    f"{k} baseline {v[0]!r} vs candidate {v[1]!r}"
                    for k, v in result.settings_differences.items()
                )
                + ".",
                "Drop --strict-settings to gate the candidate's decoding as part of the candidate.",
            )
        results.append(result)
    return base, cand, results


@dataclass(frozen=True)
class GateResult:
    """The gate's answer: PASS, FAIL or INCONCLUSIVE overall and per suite, and its exit code."""

    verdict: Verdict
    exit_code: int
    suites: dict[str, Verdict]
    results: tuple[SuiteResult, ...]
    payload: dict[str, Any]  # the JSON `harness gate --json` prints

    @property
    def passed(self) -> bool:
        return self.verdict == "PASS"

    def table(self) -> str:
        return render_table(self.payload)

    def markdown(self) -> str:
        return markdown(self.payload)


def run_gate(
    baseline: str, candidate: str, root: Path, policy: str | GatePolicy | None = None,
    suites: Sequence[str] | None = None, evaluate_missing: EvaluateMissing | None = None,
    strict_settings: bool = False,
) -> GateResult:  # fmt: skip
    """Collect, gate every metric, correct the suite's gated metrics with Holm, combine the verdicts."""
    chosen = (
        policy if isinstance(policy, GatePolicy) else load_policy(None if policy is None else str(policy))
    )
    base, cand, results = collect(
        baseline, candidate, chosen, root, suites, evaluate_missing, strict_settings
    )
    final = apply_holm([m for r in results for m in r.metrics])
    by_key = {(m.suite, m.metric, m.role): m for m in final}
    results = [replace(r, metrics=[by_key[(m.suite, m.metric, m.role)] for m in r.metrics]) for r in results]
    verdicts: dict[str, Verdict] = suite_verdicts(final)
    overall = combine(list(verdicts.values()))
    code = exit_code(overall)
    payload = to_json(base.text, cand.text, chosen, results, verdicts, overall, code)
    return GateResult(overall, code, verdicts, tuple(results), payload)
