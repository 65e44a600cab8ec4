"""Issue 18's smaller points about reports: the model card reads what training recorded (no raw dicts, no
"NOT PROVIDED" for what it printed), the qualitative section shows every sample behind a metric that
moved, and the stage-deltas figure says which lineage pairs it found and why none qualified.

Three registered checkpoints (base -> sft-1 -> dpo-1, sft-1 with a registry entry as `harness train`
writes it) answer two IFEval prompts through replay files. Prompt 1001 forbids commas:
- base puts its only comma on the first line: strict fails, loose passes (loose drops the first line);
- sft-1 writes no comma: both pass. Strict goes 0/2 -> 1/2, loose (the primary metric) stays 1/2;
- dpo-1 writes a one-line answer with a comma: both fail. Loose goes 1/2 -> 0/2.
Prompt 1000 (a 300-word summary with highlights) fails on every side.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from harness.runs.catalog import Catalog, catalog_from_folders
from tests.conftest import cli_env, eval_json, harness

pytest.importorskip("jinja2", reason="the site extra is not installed")

COMMA_FIRST_LINE = "Sure, here it is\nA trip to Japan in the style of the bard\nFare thee well"
NO_COMMA = "A trip to Japan in the style of the bard"
ONE_LINE_COMMA = "Well, Japan is nice"
SHA = "b" * 64
TRAINING_DETAILS = {  # as training/stage.py registers a trained checkpoint
    "backend": "local",
    "steps": 12,
    "examples": 96,
    "cost_usd": None,
    "config_file": "sft.yaml",
    "data": {
        "origin": "file:/data/tulu-3-sft.jsonl",
        "rows": 96,
        "sha256": SHA,
        "contamination": {"status": "clean", "scanned": "/x/sft-1/used.jsonl"},
    },
    "lora": {"rank": 16, "alpha": 32, "target_modules": ["q_proj", "v_proj"]},
    "final_loss": 1.25,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    from harness.lineage import CheckpointRegistry, registry_path

    tmp = tmp_path_factory.mktemp("report-points")
    runs = tmp / "runs"
    registry = CheckpointRegistry(registry_path(runs))
    replies = {"base": COMMA_FIRST_LINE, "sft-1": NO_COMMA, "dpo-1": ONE_LINE_COMMA}
    for name, text in replies.items():
        replay = tmp / f"{name}.jsonl"
        rows = [{"sample_id": "ifeval-1000", "text": "hi"}, {"sample_id": "ifeval-1001", "text": text}]
        replay.write_text("".join(json.dumps(row) + "\n" for row in rows))
        stage = {"base": "base", "sft-1": "sft", "dpo-1": "dpo"}[name]
        extra = {}
        if name == "sft-1":
            extra = {"config_sha256": "a" * 64, "data_sha256": SHA, "seed": 7, "details": TRAINING_DETAILS}
        parent = {"sft-1": "base", "dpo-1": "sft-1"}.get(name)
        registry.add(name, f"replay:{replay}", stage, parent=parent, **extra)  # type: ignore[arg-type]
    env = cli_env(HARNESS_RUNS_DIR=str(runs))
    for ref in ("base:latest", "sft:latest", "dpo:latest"):
        eval_json("--checkpoint", ref, "--suite", "ifeval", "--limit", "2", env=env)
    return runs


def _report(runs: Path, out: Path, *args: str) -> tuple[str, str]:
    proc = harness("report", *args, "--out", str(out), env=cli_env(HARNESS_RUNS_DIR=str(runs)))
    assert proc.returncode == 0, proc.stderr
    return (out / "report.md").read_text(), (out / "report.html").read_text()


def _between(text: str, start: str, end: str) -> str:
    begin = text.index(start)
    return text[begin : text.index(end, begin + len(start))]


def test_the_runs_are_what_the_docstring_says(runs: Path) -> None:
    catalog = catalog_from_folders([runs])
    values = {}
    for label in ("base", "sft-1", "dpo-1"):
        checkpoint = catalog.by_label(label)
        assert checkpoint is not None
        metrics = checkpoint.runs["ifeval"].metrics
        values[label] = (metrics["prompt_level_strict_acc"].value, metrics["prompt_level_loose_acc"].value)
    assert values == {"base": (0.0, 0.5), "sft-1": (0.5, 0.5), "dpo-1": (0.0, 0.0)}


def test_model_card_renders_the_training_record_as_text(runs: Path, tmp_path: Path) -> None:
    md, page = _report(runs, tmp_path, "sft:latest")
    card = re.sub(r"\\(.)", r"\1", md[md.index("## Model card: sft-1") :])  # Markdown escapes undone
    card_html = _between(page, 'id="model-card"', "<script>")
    for text in (card, card_html):
        assert "{" not in text and "None" not in text, text  # no dict or repr of a recorded value
        # (the registry stores keys sorted)
        assert "Training LoRA: alpha: 32; rank: 16; target modules: q_proj, v_proj" in text
        assert "Training final loss: 1.25" in text and "Training steps: 12" in text
        assert "Training cost" not in text  # not recorded (None): not printed
        assert f"Training config sha256: {'a' * 64}" in text
    # The recorded data fills the Training data field, once, instead of a placeholder.
    assert (
        "### Training data (from the training record)\n\n- contamination (scanned: /x/sft-1/used.jsonl; "
        f"status: clean)\n- origin: file:/data/tulu-3-sft.jsonl\n- rows: 96\n- sha256: {SHA}\n"
    ) in card
    assert "Training data: origin" not in card and card.count("tulu-3-sft.jsonl") == 1
    # Only what nothing recorded is "not provided".
    assert re.findall(r"### (.+)\n\n\*\*NOT PROVIDED", card) == ["Intended use", "Limitations"]
    assert card_html.count('class="placeholder"') == 2


def test_a_card_file_keeps_the_recorded_data_as_text(runs: Path, tmp_path: Path) -> None:
    from reports.model_card import build_card, readable

    catalog = catalog_from_folders([runs])
    subject = catalog.by_label("sft-1")
    assert subject is not None
    entries = {"sft-1": {"name": "sft-1", "details": TRAINING_DETAILS}}
    card = build_card(subject, [subject], {"training_data": "Tulu 3 SFT mix"}, None, entries, [])
    fields = {f.key: f for f in card.fields}
    assert fields["training_data"].lines == ("Tulu 3 SFT mix",)
    assert fields["training_data"].source == "card file"
    assert ("data", readable(TRAINING_DETAILS["data"])) in card.training
    assert readable(TRAINING_DETAILS["data"]).startswith("origin: file:/data/tulu-3-sft.jsonl; rows: 96;")
    assert readable([{"a": 1}, {"b": [1.0, 0.1 + 0.2]}]) == "(a: 1); (b: 1, 0.3)"
    assert readable(list(range(12))) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, and 2 more"


def test_a_sample_whose_strict_verdict_changed_is_shown(runs: Path, tmp_path: Path) -> None:
    md, page = _report(runs, tmp_path, "base", "sft-1")
    section = _between(md, "### Qualitative examples: base -> sft-1", "## Response lengths")
    assert "0 win(s), 0 loss(es) of 2 paired samples (per-sample `prompt_level_loose_acc`)" in section
    assert "No sample changed its per-sample `prompt_level_loose_acc`" in section
    assert (
        "- `prompt_level_strict_acc`: 1 of 2 samples (1 up, 0 down; 1 with `prompt_level_loose_acc` "
        "unchanged)"
    ) in section
    assert "Samples that kept their `prompt_level_loose_acc` (1 of 1 shown):" in section
    assert (
        "**Changed: ifeval-1001** (base: prompt_level_strict_acc 0, inst_level_strict_acc 0; "
        "sft-1: prompt_level_strict_acc 1, inst_level_strict_acc 1; target: punctuation:no_comma)"
    ) in section, section
    assert NO_COMMA in section and "Sure, here it is" in section and "ifeval-1000" not in section
    html_section = _between(page, "<h4>Qualitative examples</h4>", '<h2 id="lengths">')
    assert 'data-kind="changed" data-sample="ifeval-1001"' in html_section
    assert '<li data-key="prompt_level_strict_acc">' in html_section


def test_a_moved_primary_never_reads_as_no_change(runs: Path, tmp_path: Path) -> None:
    md, _ = _report(runs, tmp_path / "all", "base", "sft-1", "dpo-1")
    section = _between(md, "### Qualitative examples: sft-1 -> dpo-1", "## Response lengths")
    assert "0 win(s), 1 loss(es) of 2 paired samples" in section
    assert "**Loss: ifeval-1001** (sft-1: correct, dpo-1: incorrect" in section
    assert "No sample changed" not in section
    # The strict verdict of that sample changed too: it is the loss shown, not a second example.
    assert "Other per-sample values" not in section and "**Changed:" not in section
    # With no examples asked for, the counts still say that samples changed.
    md, page = _report(runs, tmp_path / "none", "base", "sft-1", "dpo-1", "--examples", "0")
    assert "1 sample(s) changed their per-sample `prompt_level_loose_acc`; none shown (--examples 0)." in md
    assert "1 of those samples kept their `prompt_level_loose_acc`; none shown (--examples 0)." in md
    assert md.count("none shown (--examples 0)") == 2  # base -> sft-1's strict change, sft-1 -> dpo-1's loss
    assert "No sample changed its per-sample" in md  # base -> sft-1: true of the primary
    assert "**Changed:" not in md and 'data-kind="changed"' not in page


def _without_reference_settings(catalog: Catalog) -> Catalog:
    return Catalog(catalog.checkpoints, {})


def test_stage_deltas_note_names_the_pairs_and_why_none_qualified(runs: Path) -> None:
    from reports.figure_parts import no_stage_deltas_note
    from reports.plots import stage_deltas

    catalog = catalog_from_folders([runs])
    assert stage_deltas(catalog)["data"]  # comparable: two bars
    # No column reference settings: every run is off its column's settings.
    unmatched = _without_reference_settings(catalog)
    figure = stage_deltas(unmatched)
    assert figure["data"] == []
    (note,) = figure["layout"]["annotations"]
    lines = note["text"].split("<br>")
    assert lines[0] == (
        "no data: 2 lineage pair(s), none with comparable runs of a common suite (complete, under the "
        "column's reference settings):"
    )
    assert lines[1].startswith("base → sft-1: ifeval: different settings: both ran settings ")
    assert lines[2].startswith("sft-1 → dpo-1: ifeval: different settings:")
    assert "needs registered lineage" not in note["text"]
    # Only sft-1 has runs: neither pair has a suite in common.
    only_first = Catalog(
        tuple(replace(c, runs={}) if c.label != "sft-1" else c for c in catalog.checkpoints),
        catalog.reference_settings,
    )
    text = no_stage_deltas_note(only_first)
    assert "base → sft-1: no suite run by both (base: none; sft-1: ifeval)" in text
    assert "sft-1 → dpo-1: no suite run by both (sft-1: ifeval; dpo-1: none)" in text
    assert no_stage_deltas_note(only_first, shown=1).endswith("<br>and 1 more pair(s)")
