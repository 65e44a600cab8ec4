"""Training stages end to end on CPU: local SFT and DPO (TRL + peft LoRA on the exported embedded weights,
the open-instruct sample files), registered with lineage, evaluated, gated and published; a tiny local
RLVR run whose rewards are the suite's scorer; a pipeline that keeps the best checkpoint.

Everything here is real: the embedded SmolLM2-135M exported to safetensors, TRL's trainers, the harness's
own eval/gate/leaderboard code paths, subprocess CLIs. Sizes are tiny (2 optimizer steps, 4 samples, 16
new tokens) so the module runs in a few minutes on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.checkpoints import HfRef, parse_checkpoint
from tests.conftest import cli_env, harness

pytestmark = [
    pytest.mark.model,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


def _index_rows(site: Path) -> dict[str, dict[str, object]]:
    text = (site / "data" / "index.js").read_text()
    payload = json.loads(text[text.index("=") + 1 :].rstrip().removesuffix(";"))
    return {str(row["label"]): row for row in payload["rows"]}


def _registry(runs: Path) -> dict[str, dict[str, object]]:
    entries: dict[str, dict[str, object]] = {}
    for line in (runs / "registry.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") != "tag":
            entries[record["name"]] = record
    return entries


def _write(path: Path, config: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


EVAL = {"suites": ["gsm8k"], "limit": 4, "max_tokens": 16, "gate": True}


@pytest.fixture(scope="module")
def sft_and_dpo(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    """`harness train sft` then `harness train dpo --base sft:latest`, both through the real CLI."""
    root = tmp_path_factory.mktemp("training")
    runs, site, ckpts = root / "runs", root / "site", root / "checkpoints"
    policy = _write(
        root / "gate.yaml", {"min_samples": 4, "resamples": 2000}
    )  # 4 samples: a smoke-sized gate
    common = {"output_dir": str(ckpts), "seed": 0, "lora": {"rank": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
              "optim": {"batch_size": 2, "max_steps": 2, "max_length": 256, "learning_rate": 1e-4},
              "eval": {**EVAL, "leaderboard": str(site), "policy": str(policy)}}  # fmt: skip
    sft = _write(root / "sft.yaml", {**common, "base": "embedded", "data": {
        "path": str(data_dir / "olmo_samples" / "open-instruct_sft_sample.jsonl"), "limit": 8}})  # fmt: skip
    dpo = _write(root / "dpo.yaml", {**common, "base": "sft:latest", "dpo": {"beta": 0.1}, "data": {
        "path": str(data_dir / "olmo_samples" / "open-instruct_preference_sample.jsonl"), "limit": 4}})  # fmt: skip
    for stage, config in (("sft", sft), ("dpo", dpo)):
        proc = harness("train", stage, "--backend", "local", "--config", str(config), "--runs", str(runs), "--json",
                       timeout=1500)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-4000:]
        (root / f"{stage}.out.json").write_text(proc.stdout)
    return {"root": root, "runs": runs, "site": site, "ckpts": ckpts}


def test_sft_then_dpo_are_registered_with_lineage_and_hashes(sft_and_dpo: dict[str, Path]) -> None:
    runs = sft_and_dpo["runs"]
    entries = _registry(runs)
    assert list(entries) == ["embedded", "embedded-hf", "sft-1", "dpo-1"]
    assert entries["embedded-hf"]["parent"] == "embedded" and entries["embedded-hf"]["stage"] == "base"
    sft, dpo = entries["sft-1"], entries["dpo-1"]
    assert sft["parent"] == "embedded-hf" and dpo["parent"] == "sft-1" and dpo["base_model"] == "embedded"
    for entry in (sft, dpo):
        details = entry["details"]
        assert isinstance(details, dict) and details["steps"] == 2 and details["backend"] == "local"
        assert details["data"]["contamination"]["status"] == "clean"
        assert len(str(entry["config_sha256"])) == 64 and len(str(entry["data_sha256"])) == 64
        log = Path(details["train_log"]).read_text().splitlines()
        assert [json.loads(line)["step"] for line in log] == [1, 2]
        assert all(json.loads(line)["loss"] is not None for line in log)
    sft_ref, dpo_ref = parse_checkpoint(str(sft["reference"])), parse_checkpoint(str(dpo["reference"]))
    assert isinstance(sft_ref, HfRef) and isinstance(dpo_ref, HfRef) and sft_ref.path == dpo_ref.path
    assert sft_ref.lora != dpo_ref.lora  # one adapter per stage, over the same exported base
    sft_cfg = json.loads(Path(str(sft_ref.lora), "adapter_config.json").read_text())
    dpo_cfg = json.loads(Path(str(dpo_ref.lora), "adapter_config.json").read_text())
    assert sft_cfg["r"] == dpo_cfg["r"] == 8  # DPO continued the SFT adapter
    assert sft["data_sha256"] != dpo["data_sha256"]

    proc = harness("checkpoints", "show", "sft:latest", "--json", env=cli_env(HARNESS_RUNS_DIR=str(runs)))
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert "sft-1" in json.dumps(shown) and "embedded-hf" in json.dumps(shown)


def test_each_stage_was_evaluated_gated_and_published(sft_and_dpo: dict[str, Path]) -> None:
    root, runs, site = sft_and_dpo["root"], sft_and_dpo["runs"], sft_and_dpo["site"]
    entries = _registry(runs)
    for stage, name, parent in (("sft", "sft-1", "embedded-hf"), ("dpo", "dpo-1", "sft-1")):
        out = json.loads((root / f"{stage}.out.json").read_text())
        assert out["trained"] is True and out["checkpoint"]["name"] == name
        (evaluation,) = out["evals"]
        manifest = json.loads(Path(evaluation["run_dir"], "manifest.json").read_text())
        assert manifest["checkpoint"] == entries[name]["reference"] and manifest["limit"] == 4
        assert manifest["lineage"]["name"] == name and manifest["status"] == "complete"
        assert out["gate"]["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE"), out["gate"]
        assert out["gate"]["exit_code"] == {"PASS": 0, "FAIL": 10, "INCONCLUSIVE": 11}[out["gate"]["verdict"]]
        # the gate evaluated the parent with the same settings (same backend: the exported weights)
        parent_runs = [p for p in runs.rglob("manifest.json")
                       if json.loads(p.read_text())["checkpoint"] == entries[parent]["reference"]]  # fmt: skip
        assert parent_runs and all(json.loads(p.read_text())["limit"] == 4 for p in parent_runs)
        stage_file = json.loads(Path(out["out_dir"], "stage.json").read_text())
        assert stage_file["gate"] == out["gate"]

    # `harness eval --checkpoint sft:latest` resolves to the registered checkpoint and reuses its run
    proc = harness("eval", "--checkpoint", "sft:latest", "--suite", "gsm8k", "--limit", "4", "--max-tokens", "16",
                   "--runs", str(runs), "--json", "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (again,) = json.loads(proc.stdout)
    assert again["invocation"]["generated"] == 0 and again["invocation"]["resumed"] == 4

    rows = _index_rows(site)
    assert {"sft-1", "dpo-1", "embedded-hf"} <= set(rows)
    chain = [step["label"] for step in rows["dpo-1"]["lineage"]]  # type: ignore[union-attr]
    assert chain == ["embedded", "embedded-hf", "sft-1", "dpo-1"]
    assert rows["dpo-1"]["stage"] == "dpo" and rows["dpo-1"]["parent"] == "sft-1"


def test_a_registered_stage_is_not_trained_again(sft_and_dpo: dict[str, Path]) -> None:
    root, runs = sft_and_dpo["root"], sft_and_dpo["runs"]
    proc = harness("train", "sft", "--config", str(root / "sft.yaml"), "--name", "sft-1", "--runs", str(runs),
                   "--json", "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["trained"] is False and len(_registry(runs)) == 4


def test_contaminated_training_data_is_refused_then_waived(
    tmp_path: Path, data_dir: Path, exported_hf_dir: Path
) -> None:
    question = json.loads((data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()[7])["question"]
    rows = [
        json.loads(line)
        for line in (data_dir / "olmo_samples" / "open-instruct_sft_sample.jsonl")
        .read_text()
        .splitlines()[:3]
    ]
    rows.append(
        {
            "id": "planted",
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "42"}],
        }
    )
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = _write(tmp_path / "sft.yaml", {
        "base": f"hf:{exported_hf_dir}", "output_dir": str(tmp_path / "ckpts"), "data": {"path": str(data)},
        "lora": {"rank": 4, "target_modules": ["q_proj"]},
        "optim": {"batch_size": 2, "max_steps": 1, "max_length": 128}, "eval": {"suites": []},
    })  # fmt: skip
    runs = tmp_path / "runs"
    proc = harness("train", "sft", "--config", str(config), "--runs", str(runs), "--quiet")
    assert proc.returncode == 12, proc.stderr
    assert (
        "sft.jsonl:4" in proc.stderr
        and "gsm8k-test-0007" in proc.stderr
        and "--allow-contamination" in proc.stderr
    )
    assert not (runs / "registry.jsonl").exists() or "sft-1" not in _registry(runs)

    proc = harness(
        "train",
        "sft",
        "--config",
        str(config),
        "--runs",
        str(runs),
        "--quiet",
        "--allow-contamination",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    waiver = _registry(runs)["sft-1"]["details"]["data"]["contamination"]  # type: ignore[index]
    assert waiver["status"] == "waived" and waiver["waived"] is True
    assert any(o["sample_id"] == "gsm8k-test-0007" and o["line"] == 4 for o in waiver["overlaps"])


EASY = [("What is 2 + 3?", "5"), ("What is 4 + 4?", "8"), ("What is 10 - 3?", "7"), ("What is 3 + 3?", "6")]


def _easy_pool(path: Path) -> Path:
    """RL prompts in the `harness curate` pool format, scored by the gsm8k suite's reward (last number)."""
    lines = []
    for index, (question, answer) in enumerate(EASY):
        lines.append(json.dumps({
            "format": "harness-rl-prompts/1", "suite": "gsm8k", "id": f"easy-{index}",
            "messages": [["user", question]], "target": answer, "metadata": {},
            "prompt": [["user", f"{question} Reply with just the number."]],
        }))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def test_tiny_local_rlvr_rewards_are_the_suite_scorer(tmp_path: Path, exported_hf_dir: Path) -> None:
    from suites import get_suite
    from training.prompts import file_prompts

    pool = _easy_pool(tmp_path / "pool.jsonl")
    config = _write(tmp_path / "rl.yaml", {
        "base": f"hf:{exported_hf_dir}", "output_dir": str(tmp_path / "ckpts"), "seed": 1,
        "data": {"path": str(pool)}, "lora": {"rank": 4, "target_modules": ["q_proj", "v_proj"]},
        "optim": {"learning_rate": 5e-4, "lr_schedule": "constant"},
        "rl": {"steps": 2, "groups_per_step": 2, "group_size": 4, "max_new_tokens": 12, "max_sampling_rounds": 2},
        "eval": {"suites": []},
    })  # fmt: skip
    runs = tmp_path / "runs"
    proc = harness("train", "rlvr", "--config", str(config), "--runs", str(runs), "--json", timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    entry = _registry(runs)["rlvr-1"]
    out_dir = Path(entry["details"]["out_dir"])  # type: ignore[index]
    rollouts = [json.loads(line) for line in (out_dir / "rollouts.jsonl").read_text().splitlines()]
    assert rollouts and {r["suite"] for r in rollouts} == {"gsm8k"}
    prompts = {p.sample.id: p for p in file_prompts(pool)}
    suite = get_suite("gsm8k")
    for rollout in rollouts:  # every logged reward is the suite's own verdict on the logged text
        assert rollout["reward"] == suite.reward(prompts[rollout["prompt_id"]].sample, rollout["text"])
    steps = [json.loads(line) for line in (out_dir / "train_log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2]
    for step in steps:
        mine = [r["reward"] for r in rollouts if r["step"] == step["step"]]
        assert step["reward_mean"] == pytest.approx(sum(mine) / len(mine))
        kept = {r["prompt_id"] for r in rollouts if r["step"] == step["step"] and r["kept"]}
        assert step.get("groups_kept", 0) == len(kept) or step.get("skipped")
    assert any(0 < r["reward"] for r in rollouts), "the model never solved an easy sum: no signal to check"
    assert isinstance(parse_checkpoint(str(entry["reference"])), HfRef)


def test_pipeline_keeps_the_best_checkpoint_and_resumes(tmp_path: Path, exported_hf_dir: Path) -> None:
    _easy_pool(tmp_path / "pool.jsonl")  # named relative to the pipeline file below
    pipeline = _write(tmp_path / "recipe.yaml", {
        "name": "recipe", "base": f"hf:{exported_hf_dir}", "backend": "local",
        "defaults": {"output_dir": str(tmp_path / "ckpts"), "seed": 3, "eval": {"suites": []},
                     "lora": {"rank": 4, "target_modules": ["q_proj", "v_proj"]},
                     "optim": {"learning_rate": 1e-3, "lr_schedule": "constant"}},
        "stages": [{"stage": "rlvr", "repeat": 2, "data": {"path": "pool.jsonl"},
                    "rl": {"steps": 1, "groups_per_step": 2, "group_size": 4, "max_new_tokens": 8}}],
        "select": {"prompts": "pool.jsonl", "limit": 4, "max_tokens": 8, "tag": "best"},
    })  # fmt: skip
    runs = tmp_path / "runs"
    proc = harness("pipeline", str(pipeline), "--runs", str(runs), "--json", timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout)
    names = [s["checkpoint"]["name"] for s in summary["stages"]]
    assert names == ["recipe-1-rlvr-r1", "recipe-1-rlvr-r2"]
    entries = _registry(runs)
    assert entries["recipe-1-rlvr-r2"]["parent"] == "recipe-1-rlvr-r1"  # rounds chain (continue_from: last)
    values = [(v["name"], v["value"]) for v in summary["validation"]]
    assert [n for n, _ in values][1:] == names and all(v is not None for _, v in values)
    best_value = max(v for _, v in values)
    first_best = next(n for n, v in values if v == best_value)  # ties keep the earlier, less trained one
    assert summary["best"]["name"] == first_best and summary["best"]["value"] == best_value
    proc = harness(
        "checkpoints", "show", summary["best"]["tag"], "--json", env=cli_env(HARNESS_RUNS_DIR=str(runs))
    )
    assert proc.returncode == 0 and first_best in proc.stdout, proc.stderr
    assert json.loads(Path(summary["summary_file"]).read_text())["best"] == summary["best"]

    again = harness("pipeline", str(pipeline), "--runs", str(runs), "--json", timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads(again.stdout)
    assert [s["trained"] for s in resumed["stages"]] == [False, False]
    assert resumed["validation"] == summary["validation"] and resumed["best"] == summary["best"]
