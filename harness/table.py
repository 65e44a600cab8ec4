"""Plain-text tables for the terminal (no dependency, so the CLI starts fast)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.types import Metric


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def pct(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def metric_cells(metric: Metric) -> list[str]:
    """value, stderr and CI in percentage points."""
    return [
        pct(metric.value),
        pct(metric.stderr),
        f"[{pct(metric.ci_low)}, {pct(metric.ci_high)}]",
        str(metric.n),
    ]


METRIC_HEADERS = ["%", "stderr", "95% CI", "n"]
