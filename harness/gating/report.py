"""The gate's outputs: a JSON-ready payload, a terminal table and a Markdown summary (CI job summaries).

Scores, deltas and intervals are fractions in JSON (as in metrics.json) and percentage points in the table
and the Markdown; allowed drops and minimum detectable effects are points everywhere. Generation settings
that differ between the two runs of a suite are listed prominently in all three. Where the sample is too
small for any drop within the score's scale to be detected, the MDE is null in JSON with `mde_note` saying
why, and "too few samples" in the table and the Markdown (harness.gating.verdicts). `ci_method` in JSON
names how each delta's interval was made (harness.gating.paired.paired_delta); the table and the Markdown
name the ones not made by the paired bootstrap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from harness.gating.verdicts import TOO_FEW_SAMPLES, MetricGate, SuiteResult, Verdict
from harness.stats import json_number

if TYPE_CHECKING:
    from harness.gating.policy import GatePolicy

EXIT_CODES = {"PASS": 0, "FAIL": 10, "INCONCLUSIVE": 11, "refused": 2, "missing run": 4}


def _metric_record(m: MetricGate) -> dict[str, Any]:
    d = m.delta
    return {
        "metric": m.metric,
        "role": m.role,
        "n": m.n,
        "baseline": json_number(d.mean_a),
        "candidate": json_number(d.mean_b),
        "delta": json_number(d.delta),
        "ci": [json_number(d.ci_low), json_number(d.ci_high)],
        "ci_level": d.level,
        "ci_method": d.method,
        "pass_bound": m.pass_bound,
        "test": m.test,
        "p_value": m.p_value,
        "p_holm": m.p_holm if m.role == "gate" else None,
        "alpha": m.alpha,
        "allowed_drop_points": m.allowed_drop,
        "mde_points": json_number(m.mde),
        "mde_note": m.mde_note,
        "regressions": m.regressions,
        "improvements": m.improvements,
        "verdict": m.verdict,
    }


def to_json(
    baseline: str,
    candidate: str,
    policy: GatePolicy,
    results: Sequence[SuiteResult],
    verdicts: Mapping[str, Verdict],
    overall: Verdict,
    code: int,
) -> dict[str, Any]:
    return {
        "overall": overall,
        "exit_code": code,
        "baseline": baseline,
        "candidate": candidate,
        "suites": [
            {
                "suite": r.suite,
                "verdict": verdicts.get(r.suite, "INCONCLUSIVE"),
                "baseline_run": str(r.baseline_run),
                "candidate_run": str(r.candidate_run),
                "n_paired": r.n_paired,
                "only_baseline": r.only_baseline,
                "only_candidate": r.only_candidate,
                "settings_differences": {k: list(v) for k, v in r.settings_differences.items()},
                "metrics": [_metric_record(m) for m in r.metrics],
                "notes": list(r.notes),
            }
            for r in results
        ],
        "policy": policy.to_record(),
        "exit_codes": EXIT_CODES,
    }


def _pts(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def _p(x: float | None) -> str:
    return "-" if x is None else ("<0.0001" if x < 1e-4 else f"{x:.4f}")


def _mde(m: Mapping[str, Any]) -> str:
    return TOO_FEW_SAMPLES if m["mde_points"] is None else f"{m['mde_points']:.1f}"


def _rows(payload: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for s in payload["suites"]:
        for m in s["metrics"]:
            verdict = m["verdict"] or "(report)"
            low, high = m["ci"]
            rows.append(
                [
                    s["suite"],
                    m["metric"],
                    str(m["n"]),
                    _pts(m["baseline"]),
                    _pts(m["candidate"]),
                    f"{_pts(m['delta'], True)} [{_pts(low, True)}, {_pts(high, True)}]",
                    _p(m["p_value"]),
                    _p(m["p_holm"]),
                    f"{m['allowed_drop_points']:.1f}",
                    verdict,
                    _mde(m) if m["verdict"] == "INCONCLUSIVE" else "",
                ]
            )
    return rows


HEADERS = [
    "suite",
    "metric",
    "n",
    "baseline",
    "candidate",
    "delta [CI]",
    "p",
    "p_holm",
    "allowed",
    "verdict",
    "MDE",
]


def _differences(payload: Mapping[str, Any]) -> list[str]:
    lines = []
    for s in payload["suites"]:
        if s["settings_differences"]:
            parts = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in s["settings_differences"].items())
            lines.append(f"{s['suite']}: generation settings differ (baseline -> candidate): {parts}")
    return lines


def _small_n_methods(payload: Mapping[str, Any]) -> str:
    """'suite/metric method, ...' for the intervals not made by the bootstrap (harness.gating.paired)."""
    return ", ".join(
        f"{s['suite']}/{m['metric']} {m['ci_method']}"
        for s in payload["suites"]
        for m in s["metrics"]
        if m.get("ci_method", "bootstrap") != "bootstrap"
    )


def render_table(payload: Mapping[str, Any]) -> str:
    from harness.table import render

    level = next((m["ci_level"] for s in payload["suites"] for m in s["metrics"]), 0.95)
    out = [
        f"gate: baseline {payload['baseline']} -> candidate {payload['candidate']}  "
        f"(values in %, delta = candidate - baseline with {level:.0%} paired CI; "
        "p one-sided for a drop beyond the allowed one)",
        render(HEADERS, _rows(payload), right=(2, 3, 4, 6, 7, 8, 10)),
    ]
    small = _small_n_methods(payload)
    if small:
        out.append(f"CI by paired bootstrap except (too few pairs or changes for it): {small}")
    out += [f"WARNING {line}" for line in _differences(payload)]
    for s in payload["suites"]:
        out += [f"{s['suite']}: {note}" for note in s["notes"]]
        out.append(
            f"{s['suite']}: {s['verdict']}  ({s['n_paired']} paired; baseline only {s['only_baseline']}, "
            f"candidate only {s['only_candidate']}; runs {s['baseline_run']} vs {s['candidate_run']})"
        )
    out.append(f"overall: {payload['overall']} (exit {payload['exit_code']})")
    return "\n".join(out)


def markdown(payload: Mapping[str, Any]) -> str:
    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [
        f"## Regression gate: {payload['overall']}",
        "",
        f"Baseline `{payload['baseline']}` -> candidate `{payload['candidate']}` "
        f"(exit code {payload['exit_code']}).",
        "",
    ]
    warnings = _differences(payload)
    if warnings:
        lines += [f"> **Warning:** {w}" for w in warnings] + [""]
    lines += [row(HEADERS), row(["---"] * len(HEADERS)), *(row(r) for r in _rows(payload)), ""]
    lines += [
        f"- **{s['suite']}**: {s['verdict']} ({s['n_paired']} paired samples)" for s in payload["suites"]
    ]
    small = _small_n_methods(payload)
    lines += [
        "",
        "Values in %; delta = candidate - baseline with a paired bootstrap interval"
        + (f" (too few pairs or changes for it, so a small-n interval instead: {small})" if small else "")
        + "; p: one-sided test of a drop larger than the allowed one (exact McNemar for 0/1 scores, sign-flip "
        "otherwise), Holm-adjusted across the gating metrics. FAIL: p_holm < alpha. PASS: the bootstrap "
        "interval's lower bound (for 0/1 scores also an exact bound; pass_bound in JSON) is within the "
        "allowed drop. INCONCLUSIVE: neither; MDE is the drop this sample size detects with 80% power "
        '("too few samples": no drop within the 100-point scale is detectable at this n).',
    ]
    return "\n".join(lines)
