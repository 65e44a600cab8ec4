"""The table `harness validate` prints: ours vs published per suite, the delta, our 95% CI, a verdict."""

from __future__ import annotations

import textwrap

from harness.api.validate import REGIME_DIFFERS, ValidationResult
from harness.table import pct, render

HEADERS = ["suite", "metric", "ours (%)", "published (%)", "delta (points)", "our 95% CI", "verdict"]


def _delta(delta: float | None) -> str:
    return "n/a" if delta is None else f"{delta:+.1f}"


def render_validation(result: ValidationResult) -> str:
    """The table, then what each flag means and where the published numbers come from."""
    ref = result.reference
    rows = [
        [
            row.suite + ("" if row.regime == "harness" else f" ({row.regime})"),
            row.metric,
            pct(row.ours.value),
            f"{row.published:.1f}",
            _delta(row.delta),
            f"[{pct(row.ours.ci_low)}, {pct(row.ours.ci_high)}]",
            row.verdict,
        ]
        for row in result.rows
    ]
    limit = "all samples" if result.limit is None else f"first {result.limit} samples per suite"
    lines = [
        f"{result.checkpoint} vs {ref.model} (reference {ref.name}; {limit}; tolerance {result.tolerance:g} points)",
        "",
        render(HEADERS, rows, right=(2, 3, 4)),
    ]
    flagged = [row for row in result.rows if row.verdict == REGIME_DIFFERS]
    if flagged:
        lines.append("")
        lines += [f"{row.suite}: regime differs: {row.flag}." for row in flagged]
    reused = [row.suite for row in result.rows if row.generated == 0]
    if reused:
        lines.append(f"Reused without generating: {', '.join(reused)}.")
    lines += ["", f"Published: {ref.source}"]
    if ref.note:
        lines += textwrap.wrap(ref.note, width=110)
    if result.differs:
        verdict = "DIFFERS: a suite is further than the tolerance (its 95% CI lies wholly outside it)"
    elif result.inconclusive:
        verdict = (
            "INCONCLUSIVE: too few samples to tell whether a suite is within the tolerance (its 95% CI "
            "reaches both sides); run more samples (a larger --limit builds on this run)"
        )
    else:
        verdict = "OK: every compared suite is within the tolerance (its 95% CI inside it)"
    lines += ["", verdict + (" (regime-flagged suites are not counted)." if flagged else ".")]
    return "\n".join(lines)
