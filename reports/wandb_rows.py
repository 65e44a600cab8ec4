"""What `harness export wandb` logs, as plain data (no wandb import): a run's config (manifest and settings,
references redacted), its metrics as summary values, its per-sample table rows, and a checkpoint's
model-artifact metadata."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.checkpoints import redact_reference
from harness.runs.catalog import RunView
from harness.runs.store import SampleRecord
from harness.wandb_refs import ENTRY_KEY, REFERENCE_KEY

# Written by training stages next to the checkpoint (training.stage.STAGE_FILE): the stage's gate verdict.
STAGE_FILE = "stage.json"
RESPONSE_SEPARATOR = "\n\n----- next response -----\n\n"


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters (0: whole), saying how much was cut."""
    if limit <= 0 or len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


def redacted_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(record)
    for key in ("reference", "base_model"):
        if isinstance(out.get(key), str):
            out[key] = redact_reference(out[key])
    return out


def run_config(run: RunView) -> dict[str, Any]:
    """The manifest (its settings included) as W&B config; references shown as `harness runs` shows them."""
    manifest = run.manifest.to_record()
    manifest["checkpoint"] = redact_reference(str(manifest["checkpoint"]))
    manifest["adapter"] = redact_reference(str(manifest["adapter"]))
    if run.lineage is not None:
        manifest["lineage"] = redacted_entry(run.lineage)
    return {"manifest": manifest, "suite": run.suite, "run_folder": str(run.run_dir), "primary": run.primary}


def metric_summary(run: RunView) -> dict[str, Any]:
    """Every metric with its interval: {NAME: {value, stderr, ci_low, ci_high, n, ci_method}}."""
    summary: dict[str, Any] = {"primary_metric": run.primary, "n_samples": run.manifest.n_samples}
    for name, metric in run.metrics.items():
        summary[name] = {
            "value": metric.value, "stderr": metric.stderr, "ci_low": metric.ci_low,
            "ci_high": metric.ci_high, "n": metric.n, "ci_method": metric.ci_method,
        }  # fmt: skip
    if run.reasoning is not None:
        summary["reasoning"] = run.reasoning.to_record()
    return summary


def table_columns(samples: Sequence[SampleRecord]) -> list[str]:
    extracted = sorted({key for s in samples for key in s.extracted})
    scores = sorted({key for s in samples for key in s.scores})
    reasoning = ["thinking", "answer"] if any(s.reasoning for s in samples) else []
    return [
        "sample_id", "prompt", "target", "response", *reasoning,
        *(f"extracted/{k}" for k in extracted), *(f"score/{k}" for k in scores),
    ]  # fmt: skip


def table_rows(samples: Sequence[SampleRecord], columns: Sequence[str], limit: int) -> list[list[Any]]:
    """One row per sample; several responses (n > 1) are joined in one cell, in order."""
    rows = []
    for sample in samples:
        texts = [text for completion in sample.completions for text in completion.texts]
        cells: dict[str, Any] = {
            "sample_id": sample.id,
            "prompt": clip(sample.prompt, limit),
            "target": clip(sample.target, limit),
            "response": clip(RESPONSE_SEPARATOR.join(texts), limit),
        }
        if sample.reasoning:
            cells["thinking"] = clip(RESPONSE_SEPARATOR.join(p.reasoning for p in sample.reasoning), limit)
            answers = [p.answer for p in sample.reasoning]
            cells["answer"] = (
                None
                if all(a is None for a in answers)
                else clip(RESPONSE_SEPARATOR.join(a or "" for a in answers), limit)
            )
        for key, value in sample.extracted.items():
            cells[f"extracted/{key}"] = None if value is None else clip(value, limit)
        for key, score in sample.scores.items():
            cells[f"score/{key}"] = score
        rows.append([cells.get(column) for column in columns])
    return rows


def artifact_metadata(entry: Mapping[str, Any], gate: Mapping[str, Any] | None) -> dict[str, Any]:
    """A model artifact's metadata: the concrete reference `wandb:` resolves to, the registry entry, and
    the hashes and seed at the top level (the W&B UI shows those)."""
    record = redacted_entry(entry)
    metadata: dict[str, Any] = {
        REFERENCE_KEY: record["reference"],
        ENTRY_KEY: record,
        "stage": record.get("stage"),
        "parent": record.get("parent"),
        "base_model": record.get("base_model"),
        "config_sha256": record.get("config_sha256"),
        "data_sha256": record.get("data_sha256"),
        "seed": record.get("seed"),
    }
    if gate is not None:
        metadata["gate"] = dict(gate)
    return metadata


def stored_gate(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The gate verdict a training stage wrote next to its checkpoint (None: not gated, or no file)."""
    out_dir = (entry.get("details") or {}).get("out_dir")
    if not isinstance(out_dir, str):
        return None
    try:
        record = json.loads((Path(out_dir) / STAGE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    gate = record.get("gate") if isinstance(record, dict) else None
    if not isinstance(gate, dict) or gate.get("verdict") is None:
        return None
    return {**gate, "against": entry.get("parent")}
