"""The reading part of a reproducibility package: MODEL_CARD.md, metrics.md and examples.md.

All three come from `harness report` (reports.report.build_report) over the packaged checkpoints, its
report.md cut at its `## ` sections: the checkpoints table and the model card go to MODEL_CARD.md, the
paired comparisons with their qualitative wins and losses to examples.md, every table of numbers to
metrics.md (the plots live in report.html, which the package leaves out). examples.md also shows the first
few samples of every packaged run (prompt, target, response, per-sample scores), so a package of one
checkpoint has qualitative examples too.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.runs.catalog import CheckpointView
from harness.runs.scores import per_sample_key
from reports.render import code, fence, md_line

CARD_SECTIONS = ("Checkpoints", "Model card")
EXAMPLE_SECTIONS = ("Comparison",)
DROPPED_SECTIONS = ("Plots",)  # they point at report.html
EXAMPLE_CHARS = 1500
_SECTION = re.compile(r"^## ", re.MULTILINE)


def split_report(text: str) -> dict[str, list[str]]:
    """report.md's `## ` sections sorted into "card", "examples" and "metrics" (the title line is dropped)."""
    parts = _SECTION.split(text)
    out: dict[str, list[str]] = {"card": [], "examples": [], "metrics": []}
    for part in parts[1:]:
        title = part.split("\n", 1)[0]
        if title.startswith(DROPPED_SECTIONS):
            continue
        kind = (
            "card"
            if title.startswith(CARD_SECTIONS)
            else "examples"
            if title.startswith(EXAMPLE_SECTIONS)
            else "metrics"
        )
        out[kind].append("## " + part.rstrip() + "\n")
    return out


def _clip(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + " ..."


def run_examples(order: Sequence[CheckpointView], per_run: int) -> str:
    """The first `per_run` samples of every run, in the order of its samples file."""
    lines = ["## First samples of each run", ""]
    lines.append(
        f"The first {per_run} samples of each packaged run, as stored in its samples.jsonl (texts longer "
        f"than {EXAMPLE_CHARS:,} characters are cut here, never in the run)."
    )
    for view in order:
        for suite in sorted(view.runs):
            run = view.runs[suite]
            lines += ["", f"### {md_line(view.label)}: {suite}", ""]
            for record in run.samples()[:per_run]:
                key = per_sample_key(run.primary, record.scores)
                score = record.scores.get(key)
                scores = json.dumps(dict(record.scores), sort_keys=True)
                lines += [f"**{md_line(record.id)}** ({code(key)} = {score}; all scores {code(scores)})", ""]
                lines += ["Prompt:", "", fence(_clip(record.prompt)), ""]
                if record.target:
                    lines += ["Target:", "", fence(_clip(record.target)), ""]
                texts = [t for c in record.completions for t in c.texts]
                lines += ["Response:", "", fence(_clip(texts[0] if texts else "")), ""]
    return "\n".join(lines).rstrip() + "\n"


def report_documents(
    arguments: Sequence[str],
    runs_root: Path,
    order: Sequence[CheckpointView],
    card_file: Path | None,
    examples: int,
) -> tuple[Mapping[str, bytes], tuple[str, ...]]:
    """{MODEL_CARD.md, metrics.md, examples.md: bytes}, and the model card fields nobody provided."""
    from reports.report import build_report

    with tempfile.TemporaryDirectory(prefix="harness-repro-report-") as folder:
        summary = build_report(arguments, Path(folder), runs_root, card_file, examples)
        text = (Path(folder) / "report.md").read_text(encoding="utf-8")
    parts = split_report(text)
    title = ", ".join(summary.checkpoints)
    card = f"# Model card: {title}\n\n" + "\n".join(parts["card"])
    metrics = f"# Metrics: {title}\n\n" + "\n".join(parts["metrics"])
    shown = "\n".join(parts["examples"])
    samples = (
        f"# Qualitative examples: {title}\n\n"
        + (shown + "\n" if shown else "")
        + run_examples(order, examples)
    )
    documents = {
        "MODEL_CARD.md": card.encode(),
        "metrics.md": metrics.encode(),
        "examples.md": samples.encode(),
    }
    return documents, summary.missing_card_fields
