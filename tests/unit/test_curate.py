"""`harness curate` and PromptSuite: exact pass rates from replayed completions whose rewards are known,
inclusive band edges, resume and free re-runs, the pool round trip, errors; one run of the embedded model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.data import DataSource
from harness.errors import UsageError
from harness.types import Completion
from tests.conftest import cli_env, harness
from tests.unit.test_cli import assert_clean_error
from training.curate import Band
from training.prompt_suite import PromptSuite, prompts_sha256
from training.prompts import RlPrompt, file_prompts, suite_prompts

K, N = 5, 12  # k = 5 puts the default band's edges on whole counts: 1/5 = 0.2 and 4/5 = 0.8


def right_count(index: int) -> int:
    return index % (K + 1)  # 0..5 correct completions, each count twice


@pytest.fixture(scope="module")
def gsm8k_prompts(data_dir: Path) -> list[RlPrompt]:
    return suite_prompts("gsm8k:train", DataSource(data_dir), N)


def answers(prompt: RlPrompt, right: int, k: int = K) -> list[str]:
    """`right` completions ending with the gold number, the others with a wrong one (flex match: last number)."""
    wrong = str(int(float(prompt.sample.target)) + 1)
    return [f"So it is {prompt.sample.target}."] * right + [f"I think {wrong}."] * (k - right)


@pytest.fixture(scope="module")
def replay(gsm8k_prompts: list[RlPrompt], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("curate-replay") / "k5.jsonl"
    rows = [
        {"sample_id": p.sample.id, "texts": answers(p, right_count(i))} for i, p in enumerate(gsm8k_prompts)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def curate(replay: Path, runs: Path, out: Path, *extra: str) -> dict[str, Any]:
    proc = harness(
        "curate", "--checkpoint", f"replay:{replay}", "--prompts", "gsm8k:train", "--limit", str(N),
        "-k", str(K), "--out", str(out), "--runs", str(runs), "--json", "--quiet", *extra,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary: dict[str, Any] = json.loads(proc.stdout)
    return summary


def pool_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_pass_rates_are_exact_and_band_edges_are_kept(
    replay: Path, gsm8k_prompts: list[RlPrompt], tmp_path: Path
) -> None:
    out = tmp_path / "pool.jsonl"
    summary = curate(replay, tmp_path / "runs", out)
    assert summary["prompts"] == N and summary["k"] == K and summary["band"] == [0.2, 0.8]
    assert (summary["kept"], summary["too_easy"], summary["too_hard"]) == (8, 2, 2)  # 1..4 of 5 kept
    assert [(row["label"], row["count"]) for row in summary["histogram"]] == [(f"{c}/5", 2) for c in range(6)]
    assert [row["verdict"] for row in summary["histogram"]] == ["too_hard", *["kept"] * 4, "too_easy"]
    assert summary["invocation"] == {"generated": N, "cache_hits": 0, "resumed": 0}
    assert summary["mean_pass_rate"] == pytest.approx(sum(right_count(i) for i in range(N)) / (K * N))

    expected = [p.sample.id for i, p in enumerate(gsm8k_prompts) if 1 <= right_count(i) <= 4]
    assert pool_ids(out) == expected  # the source's order
    records = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    for i, prompt in enumerate(gsm8k_prompts):
        if prompt.sample.id in records:
            record = records[prompt.sample.id]
            assert record["pass_rate"] == right_count(i) / K
            assert record["k"] == K and record["checkpoint"] == f"replay:{replay}"

    samples = (Path(summary["run_dir"]) / "samples.jsonl").read_text().splitlines()
    first = next(r for r in map(json.loads, samples) if r["id"] == gsm8k_prompts[1].sample.id)  # 1 of 5
    assert first["scores"]["pass_rate"] == 0.2 and first["scores"]["pass@1"] == pytest.approx(0.2)
    assert first["scores"]["pass@5"] == 1.0 and first["extracted"]["passed"] == "1/5"


def test_another_band_reuses_the_run_and_an_interrupted_run_resumes(replay: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = curate(replay, runs, tmp_path / "a.jsonl")
    samples = Path(first["run_dir"]) / "samples.jsonl"
    before = samples.read_text()

    narrow = curate(replay, runs, tmp_path / "b.jsonl", "--band", "0.4", "0.6")
    assert narrow["run_dir"] == first["run_dir"]
    assert narrow["invocation"] == {"generated": 0, "cache_hits": 0, "resumed": N}
    assert (narrow["kept"], narrow["too_easy"], narrow["too_hard"]) == (4, 4, 4)  # 2/5 and 3/5 only
    assert samples.read_text() == before

    lines = before.splitlines(keepends=True)  # a crash after 5 samples, halfway through the sixth line
    samples.write_text("".join(lines[:5]) + lines[5][:40])
    resumed = curate(replay, runs, tmp_path / "c.jsonl")
    assert resumed["invocation"] == {"generated": 0, "cache_hits": N - 5, "resumed": 5}
    assert (tmp_path / "c.jsonl").read_text() == (tmp_path / "a.jsonl").read_text()

    uncached = curate(replay, tmp_path / "runs-2", tmp_path / "d.jsonl", "--no-cache")
    assert uncached["invocation"]["generated"] == N


def test_pool_loads_back_with_file_prompts_and_curates_again(
    replay: Path, gsm8k_prompts: list[RlPrompt], tmp_path: Path
) -> None:
    out = tmp_path / "pool.jsonl"
    curate(replay, tmp_path / "runs", out)
    kept = [p for i, p in enumerate(gsm8k_prompts) if 1 <= right_count(i) <= 4]
    assert file_prompts(out) == kept  # the same samples and the exact same prompt messages

    again = tmp_path / "again.jsonl"
    proc = harness(
        "curate", "--checkpoint", f"replay:{replay}", "--data", str(out), "-k", str(K), "--band", "0", "1",
        "--out", str(again), "--runs", str(tmp_path / "runs"), "--json", "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["kept"] == len(kept) and summary["invocation"]["cache_hits"] == len(kept)
    assert summary["invocation"]["generated"] == 0  # same prompts, same settings: the cache answers
    assert file_prompts(again) == kept


def test_open_instruct_rows_filtered_by_dataset(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [{"role": "user", "content": "What is 2 + 3?"}],
            "ground_truth": "5",
            "dataset": "gsm8k",
        },
        {
            "messages": [{"role": "user", "content": "Write a haiku."}],
            "ground_truth": "x",
            "dataset": "ifeval",
        },
        {
            "messages": [{"role": "user", "content": "What is 4 * 4?"}],
            "ground_truth": "16",
            "dataset": "gsm8k",
        },
    ]
    data = tmp_path / "rlvr.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    replay = tmp_path / "replay.jsonl"  # ids are DATASET-LINE: 3/4 right on line 1, 4/4 on line 3
    replay.write_text(
        json.dumps({"sample_id": "gsm8k-000001", "texts": ["5", "5", "5", "7"]}) + "\n"
        + json.dumps({"sample_id": "gsm8k-000003", "texts": ["16"] * 4}) + "\n"
    )  # fmt: skip
    out = tmp_path / "pool.jsonl"
    args = ("curate", "--checkpoint", f"replay:{replay}", "--data", str(data), "-k", "4", "--out", str(out),
            "--runs", str(tmp_path / "runs"), "--quiet")  # fmt: skip
    assert_clean_error(harness(*args), 4, "no suite verifies", "ifeval: 1", "data.datasets: [gsm8k]")
    proc = harness(*args, "--datasets", "gsm8k")
    assert proc.returncode == 0, proc.stderr
    assert "kept 1 (pass rate 0.2-0.8, edges included), too easy 1 (above 0.8), too hard 0" in proc.stdout
    assert "3/4" in proc.stdout and "pass rate   prompts" in proc.stdout
    (prompt,) = file_prompts(out)
    assert prompt.sample.id == "gsm8k-000001" and prompt.messages[-1].content == "What is 2 + 3?"
    assert json.loads(out.read_text())["pass_rate"] == 0.75


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (("--band", "0.9", "0.1"), ("low edge above its high edge", "--band 0.1 0.9")),
        (("--band", "-0.1", "0.5"), ("outside [0, 1]",)),
        (("--band", "0.2", "1.5"), ("outside [0, 1]",)),
        (("--band", "nan", "0.5"), ("outside [0, 1]",)),
        (("--datasets", "gsm8k"), ("--datasets filters the rows of a --data file",)),
        (("--temperature", "0"), ("temperature 0", "above 0")),
    ],
)
def test_usage_errors_exit_2(
    replay: Path, tmp_path: Path, extra: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    proc = harness(
        "curate", "--checkpoint", f"replay:{replay}", "--prompts", "gsm8k:train", "--limit", "2",
        "--out", str(tmp_path / "p.jsonl"), "--runs", str(tmp_path / "runs"), *extra,
    )  # fmt: skip
    assert_clean_error(proc, 2, *needles)
    assert not (tmp_path / "p.jsonl").exists()


def test_other_errors(replay: Path, tmp_path: Path) -> None:
    base = (
        "curate",
        "--checkpoint",
        f"replay:{replay}",
        "--out",
        str(tmp_path / "p.jsonl"),
        "--runs",
        str(tmp_path),
    )
    neither = harness(*base)
    assert neither.returncode == 2 and "--prompts" in neither.stderr  # argparse's own usage error
    both = harness(*base, "--prompts", "gsm8k:train", "--data", str(replay))
    assert both.returncode == 2
    unknown = harness(*base, "--prompts", "gsm8k:test")
    assert_clean_error(unknown, 2, "Unknown RL prompt source 'gsm8k:test'", "gsm8k:train")
    missing = harness(*base, "--prompts", "gsm8k:train", "--limit", str(N + 3))
    assert_clean_error(missing, 4, "has no response for sample gsm8k-train-0012")
    contaminated = harness(*base, "--prompts", "alice-synth:20260402", "--limit", "2")
    assert_clean_error(contaminated, 2, "evaluation set", "contamination")


def test_prompt_suite_scores_every_completion_and_has_a_text_form(
    gsm8k_prompts: list[RlPrompt], data_dir: Path
) -> None:
    suite = PromptSuite("prompts-test", gsm8k_prompts[:2], "gsm8k:train", prompts_sha256(gsm8k_prompts[:2]))
    sample = gsm8k_prompts[0].sample
    assert suite.load(DataSource(data_dir), None).samples == (sample, gsm8k_prompts[1].sample)
    texts = answers(gsm8k_prompts[0], 2, k=3)
    score = suite.score(
        sample, [Completion(tuple(texts[:2]), ("stop",) * 2), Completion((texts[2],), ("stop",))]
    )
    assert score.values["pass_rate"] == pytest.approx(2 / 3)
    assert score.values["pass@2"] == pytest.approx(1 - 0 / 3)  # 1 - C(1,2)/C(3,2) = 1
    assert score.extracted["passed"] == "2/3"
    greedy = suite.score(sample, [Completion((texts[2],), ("stop",))])
    assert greedy.values == {"pass_rate": 0.0, "pass@1": 0.0}
    metrics = suite.metrics([score, greedy])
    assert set(metrics) == {"pass_rate", "pass@1"} and metrics["pass_rate"].n == 2

    settings = suite.default_settings()
    assert settings.max_tokens == 512 and settings.temperature == 0.0
    (chat,) = suite.requests(sample, settings, "chat")
    assert chat.messages == gsm8k_prompts[0].messages and len(chat.messages) == 17  # 8 shots + the problem
    (text,) = suite.requests(sample, settings, "text")
    assert text.prompt is not None and text.prompt.endswith(f"Q: {sample.prompt_text}\nA:")
    assert text.settings.stop == ("Q:",)

    own = RlPrompt("gsm8k", sample, (chat.messages[-1],))  # a row's own messages: no text form
    bare = PromptSuite("prompts-own", [own], "file:rows.jsonl", prompts_sha256([own]))
    with pytest.raises(UsageError, match="no text-completion form"):
        bare.requests(sample, settings, "text")


def test_prompt_suite_runs_mbpp_completions_in_one_sandbox_batch(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = suite_prompts("mbpp:train", DataSource(data_dir), 1)
    suite = PromptSuite("prompts-mbpp", prompts, "mbpp:train", prompts_sha256(prompts))
    sample = prompts[0].sample
    calls: list[int] = []
    mbpp = suite.suites["mbpp"]
    original = getattr(mbpp, "execute")  # noqa: B009

    def counting(s: Any, responses: list[str]) -> Any:
        calls.append(len(responses))
        return original(s, responses)

    monkeypatch.setattr(mbpp, "execute", counting)
    gold = f"[BEGIN]\n{sample.target}\n[DONE]"
    broken = "[BEGIN]\ndef nothing():\n    return None\n[DONE]"
    score = suite.score(sample, [Completion((gold, broken, gold), ("stop",) * 3)])
    assert calls == [3]
    assert score.values["pass_rate"] == pytest.approx(2 / 3) and score.extracted["passed"] == "2/3"


def test_band_edges_are_inclusive() -> None:
    band = Band(0.2, 0.8)
    assert [band.verdict(x) for x in (0.0, 0.2, 1 / 5, 0.5, 4 / 5, 0.8, 0.81, 1.0)] == [
        "too_hard", "kept", "kept", "kept", "kept", "kept", "too_easy", "too_easy",
    ]  # fmt: skip
    assert Band(0.5, 0.5).verdict(0.5) == "kept"


@pytest.mark.model
def test_embedded_model_curates_alice_synth_prompts(tmp_path: Path) -> None:
    out = tmp_path / "pool.jsonl"
    args = (
        "curate", "--checkpoint", "embedded", "--prompts", "alice-synth:7", "--limit", "3", "-k", "2",
        "--max-tokens", "32", "--band", "0", "1", "--out", str(out), "--runs", str(tmp_path / "runs"),
        "--json", "--quiet",
    )  # fmt: skip
    proc = harness(*args, env=cli_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["prompts"] == 3 and summary["kept"] == 3 and summary["invocation"]["generated"] == 3
    assert [row["label"] for row in summary["histogram"]] == ["0/2", "1/2", "2/2"]
    assert [p.sample.id for p in file_prompts(out)] == [f"alice-synth-s7-{i:05d}" for i in range(3)]
    again = harness(*args, timeout=300)
    assert again.returncode == 0 and json.loads(again.stdout)["invocation"]["resumed"] == 3
