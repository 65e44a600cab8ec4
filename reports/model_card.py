"""The model card of a report, as a course reproducibility package asks for it.

Descriptive fields (training data, intended use, limitations, ...) come, field by field, from the
registry entry's `details`, else from the `--card` file (YAML or JSON with the same keys); training data
falls back to what `harness train` recorded of its data (`details.data`: origin, rows, sha256,
contamination check). A field none of these fill is a visible "not provided" placeholder the student
must fill in. Nothing recorded is printed twice or as a raw dict: nested values read as `key: value; ...`.
Evaluation settings come from the run manifests: suite versions, pinned settings, generation settings,
seed, harness version and git revision, data sha256 and cost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError
from harness.reasoning import ReasoningSpec
from harness.runs.catalog import CheckpointView, RunView

PLACEHOLDER = "NOT PROVIDED: fill this in (registry entry details or --card FILE)"
REQUIRED = (
    ("training_data", "Training data"),
    ("intended_use", "Intended use"),
    ("limitations", "Limitations"),
)
OPTIONAL = (
    ("training_procedure", "Training procedure"),
    ("out_of_scope_use", "Out-of-scope use"),
    ("ethical_considerations", "Ethical considerations"),
    ("authors", "Authors"),
    ("license", "License"),
    ("contact", "Contact"),
)


@dataclass(frozen=True)
class CardField:
    key: str
    title: str
    lines: tuple[str, ...]
    source: str  # "registry entry", "card file", TRAINING_RECORD or "not provided"

    @property
    def provided(self) -> bool:
        return self.source != "not provided"


@dataclass(frozen=True)
class RunSettings:
    checkpoint: str
    suite: str
    version: str
    settings_hash: str
    pinned: str
    generation: str
    seed: int | None
    limit: int | None
    samples: str
    data_source: str
    data_sha256: str
    harness: str
    git: str
    adapter: str
    cost_usd: float
    tokens: str
    created_at: str
    platform: str
    primary: str = ""
    # USD per percentage point of the primary metric: completion tokens (so thinking, for a reasoning run)
    # priced by the adapter; None when the run cost nothing or scored 0.
    cost_per_point: float | None = None


@dataclass(frozen=True)
class ModelCard:
    subject: str  # the checkpoint the descriptive fields describe
    reference: str
    stage: str | None
    base_model: str | None
    lineage: tuple[str, ...]  # names, oldest first (registry), else just the subject
    training: tuple[tuple[str, str], ...]  # hashes, seed and other recorded training details
    fields: tuple[CardField, ...]
    runs: tuple[RunSettings, ...]
    total_cost_usd: float
    card_file: str | None
    reasoning: tuple[str, ...] = ("none",)  # the subject's reasoning modes (with thinking budgets)

    @property
    def missing(self) -> list[str]:
        return [f.title for f in self.fields if not f.provided]


def read_card(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise DataError(
            f"Cannot read the card file {path} ({error.strerror}).", "Check the --card path."
        ) from None
    if path.suffix.lower() == ".json":
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"The card file {path} is not valid JSON ({error}).", _CARD_HINT) from None
    else:
        import yaml  # type: ignore[import-untyped]  # pyyaml comes with datasets; it ships no stubs

        try:
            payload = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise DataError(f"The card file {path} is not valid YAML ({error}).", _CARD_HINT) from None
    if not isinstance(payload, dict):
        raise DataError(f"The card file {path} is not a mapping of fields.", _CARD_HINT)
    return {str(k): v for k, v in payload.items()}


_CARD_HINT = "Write a YAML or JSON mapping with keys training_data, intended_use, limitations, ..."


LABELS = {"cost_usd": "cost (USD)", "out_dir": "output folder", "train_log": "log", "lora": "LoRA"}
MAX_ITEMS = 10  # of a recorded list (a contamination waiver lists every overlap): the rest is counted
TRAINING_RECORD = "training record"  # the source of a field filled from what `harness train` recorded


def label(key: str) -> str:
    return LABELS.get(key, key.replace("_", " "))


def readable(value: Any) -> str:
    """A recorded value as text a reader can take in: mappings as `key: value; ...` (nested ones in
    parentheses), lists comma-separated, numbers without float noise; never a Python or JSON repr."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return "; ".join(_item(k, v) for k, v in value.items() if not _empty(v)) or "none"
    if isinstance(value, list | tuple):
        items = [_wrap(v) for v in value if not _empty(v)]
        more = [f"and {len(items) - MAX_ITEMS} more"] if len(items) > MAX_ITEMS else []
        nested = any(isinstance(v, Mapping | list | tuple) for v in value)
        return ("; " if nested else ", ").join(items[:MAX_ITEMS] + more) or "none"
    return " ".join(str(value).split())


def _wrap(value: Any) -> str:
    return f"({readable(value)})" if isinstance(value, Mapping) else readable(value)


def _item(key: Any, value: Any) -> str:
    if isinstance(value, Mapping):
        return f"{label(str(key))} ({readable(value)})"
    return f"{label(str(key))}: {readable(value)}"


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | tuple | dict) and not value)


def _lines(value: Any) -> tuple[str, ...]:
    if isinstance(value, Mapping):
        return tuple(_item(k, v) for k, v in value.items() if not _empty(v)) or ("",)
    if isinstance(value, list | tuple):
        return tuple(_wrap(v) for v in value if not _empty(v)) or ("",)
    return tuple(line for line in str(value).strip().splitlines() if line.strip()) or ("",)


def _flat(value: Any) -> str:
    return readable(value) if isinstance(value, Mapping | list | tuple) else str(value)


def _field(key: str, title: str, details: Mapping[str, Any], card: Mapping[str, Any]) -> CardField:
    for source, values in (("registry entry", details), ("card file", card)):
        value = values.get(key)
        if value not in (None, "", [], {}):
            return CardField(key, title, _lines(value), source)
    recorded = details.get("data") if key == "training_data" else None
    if isinstance(recorded, Mapping) and recorded:  # what `harness train` recorded of its data
        return CardField(key, title, _lines(recorded), TRAINING_RECORD)
    return CardField(key, title, (PLACEHOLDER,), "not provided")


def _entry_record(
    checkpoint: CheckpointView, registry_entries: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The registry entry as the runs recorded it, updated by the registry file when it is at hand."""
    record: dict[str, Any] = {}
    for run in checkpoint.runs.values():
        if run.lineage:
            record.update(run.lineage)
    record.update(registry_entries.get(checkpoint.label, {}))
    return record


def _run_settings(label: str, run: RunView) -> RunSettings:
    m = run.manifest
    g = m.generation
    stop = f", stop={len(g.stop)} strings" if g.stop else ""
    budget = "" if g.thinking_budget is None else f" (thinking_budget={g.thinking_budget} of them)"
    metric = run.primary_metric()
    points = None if metric is None or metric.value is None else 100 * metric.value
    return RunSettings(
        checkpoint=label,
        suite=m.suite,
        version=m.suite_version,
        settings_hash=m.settings_hash,
        pinned="; ".join(f"{k}={_flat(v)}" for k, v in sorted(m.suite_settings.items())),
        generation=f"max_tokens={g.max_tokens}{budget}, temperature={g.temperature}, top_p={g.top_p}, n={g.n}{stop}",
        seed=g.seed,
        limit=m.limit,
        samples=f"{m.n_samples}/{m.n_total}",
        data_source=m.data_source,
        data_sha256=m.data_sha256,
        harness=m.harness_version,
        git=(m.git_revision or "unknown") + (" (dirty)" if m.git_dirty else ""),
        adapter=m.adapter,
        cost_usd=m.cost_usd,
        tokens=f"{m.prompt_tokens} prompt / {m.completion_tokens} completion",
        created_at=m.created_at,
        platform=f"Python {m.python}, {m.platform}",
        primary=run.primary,
        cost_per_point=m.cost_usd / points if points and m.cost_usd > 0 else None,
    )


def reasoning_modes(checkpoint: CheckpointView) -> tuple[str, ...]:
    """How the checkpoint's runs split thinking from answers: 'none', or each mode with its budget."""
    modes: list[str] = []
    for run in checkpoint.runs.values():
        budget = run.manifest.generation.thinking_budget
        try:
            mode = ReasoningSpec.from_pinned(run.manifest.suite_settings).describe()
        except DataError:  # a parser this harness does not have: its recorded name
            mode = str(dict(run.manifest.suite_settings.get("reasoning") or {}).get("mode"))
        text = mode if budget is None else f"{mode} (thinking budget {budget} tokens)"
        if text not in modes:
            modes.append(text)
    return tuple(modes) or ("none",)


def build_card(
    subject: CheckpointView,
    covered: Sequence[CheckpointView],
    card: Mapping[str, Any],
    card_file: Path | None,
    registry_entries: Mapping[str, Mapping[str, Any]],
    lineage: Sequence[str],
) -> ModelCard:
    entry = _entry_record(subject, registry_entries)
    details = entry.get("details") or {}
    fields = [_field(key, title, details, card) for key, title in REQUIRED]
    fields += [
        _field(key, title, details, card) for key, title in OPTIONAL if details.get(key) or card.get(key)
    ]
    known = {key for key, _ in (*REQUIRED, *OPTIONAL)}
    fields += [
        CardField(key, key.replace("_", " ").capitalize(), _lines(value), "card file")
        for key, value in card.items()
        if key not in known and value not in (None, "", [], {})
    ]
    training = [
        (name, _flat(entry[key]))
        for key, name in (
            ("config_sha256", "config sha256"),
            ("data_sha256", "data sha256"),
            ("seed", "seed"),
        )
        if entry.get(key) is not None
    ]
    # The recorded data is printed once: as the Training data field when nothing else filled it.
    shown = {"data"} if any(f.source == TRAINING_RECORD for f in fields) else set()
    training += [
        (label(str(k)), readable(v))
        for k, v in details.items()
        if k not in known and k not in shown and not _empty(v)
    ]
    runs = tuple(_run_settings(c.label, r) for c in covered for r in c.runs.values())
    return ModelCard(
        subject=subject.label,
        reference=subject.reference,
        stage=subject.stage,
        base_model=subject.base_model,
        lineage=tuple(lineage) or (subject.label,),
        training=tuple(training),
        fields=tuple(fields),
        runs=runs,
        total_cost_usd=sum(r.cost_usd for r in runs),
        card_file=None if card_file is None else str(card_file),
        reasoning=reasoning_modes(subject),
    )
