"""The bridges into inspect-ai and lm-eval: the mappings without a model, whole runs through a `replay:`
checkpoint in process, and both peers' command lines on the embedded model (marked `model`)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.batching import RequestBatcher
from harness.bridges import cut_at_stop, split_options
from harness.errors import UsageError
from harness.types import Completion, GenerationSettings, Message, Request
from tests.conftest import ROOT, cli_env

FIXTURES = ROOT / "tests" / "fixtures" / "bridges"
INSPECT_TASK = FIXTURES / "inspect_arithmetic.py"  # inspect 0.3.285 rejects an absolute task path (glob)
LM_EVAL_TASK = "harness_bridge_gsm8k_mini"

needs_inspect = pytest.mark.skipif(
    importlib.util.find_spec("inspect_ai") is None, reason="inspect-ai is not installed (the 'inspect' extra)"
)


def write_replay(path: Path, rows: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"sample_id": k, "text": v}) + "\n" for k, v in rows.items()))
    return path


# --- inspect: mappings ----------------------------------------------------------------------------


@needs_inspect
def test_inspect_messages_map_to_harness_messages() -> None:
    from inspect_ai.model import (
        ChatMessageAssistant,
        ChatMessageSystem,
        ChatMessageUser,
        ContentReasoning,
        ContentText,
    )

    from harness.bridges.inspect_provider import to_messages

    messages = to_messages(
        [
            ChatMessageSystem(content="Be brief."),
            ChatMessageUser(content=[ContentText(text="first part"), ContentText(text="second part")]),
            ChatMessageAssistant(content=[ContentReasoning(reasoning="hidden"), ContentText(text="4")]),
            ChatMessageUser(content="And 3 + 3?"),
        ]
    )
    assert messages == (
        Message("system", "Be brief."),
        Message("user", "first part\nsecond part"),
        Message("assistant", "4"),
        Message("user", "And 3 + 3?"),
    )


@needs_inspect
def test_inspect_tool_turns_and_images_fail_with_a_clear_error() -> None:
    from inspect_ai.model import ChatMessageAssistant, ChatMessageTool, ChatMessageUser, ContentImage
    from inspect_ai.tool import ToolCall

    from harness.bridges.inspect_provider import to_messages

    with pytest.raises(UsageError, match="tool call or tool result"):
        to_messages([ChatMessageUser(content="hi"), ChatMessageTool(content="42", tool_call_id="c1")])
    call = ToolCall(id="c1", function="add", arguments={"a": 1})
    with pytest.raises(UsageError, match="tool call or tool result"):
        to_messages([ChatMessageAssistant(content="", tool_calls=[call])])
    with pytest.raises(UsageError, match="image content"):
        to_messages([ChatMessageUser(content=[ContentImage(image="data:image/png;base64,AAAA")])])


@needs_inspect
def test_inspect_generate_config_maps_to_generation_settings() -> None:
    from inspect_ai.model import GenerateConfig

    from harness.bridges.inspect_provider import DEFAULT_MAX_TOKENS, to_settings

    assert to_settings(GenerateConfig()) == GenerationSettings(
        max_tokens=DEFAULT_MAX_TOKENS, temperature=0.0, top_p=1.0, stop=(), n=1, seed=0
    )
    config = GenerateConfig(
        max_tokens=64, temperature=0.7, top_p=0.9, stop_seqs=["\n\n", "END"], seed=11, num_choices=3
    )
    assert to_settings(config) == GenerationSettings(
        max_tokens=64, temperature=0.7, top_p=0.9, stop=("\n\n", "END"), n=3, seed=11
    )
    with pytest.raises(UsageError, match="logprobs"):
        to_settings(GenerateConfig(logprobs=True))


@needs_inspect
def test_inspect_output_has_choices_stop_reasons_and_usage() -> None:
    from harness.bridges.inspect_provider import stop_reason, to_output

    completion = Completion(
        texts=("5 apples\nQuestion: next", "five"),
        finish_reasons=("stop", "length"),
        prompt_tokens=40,
        completion_tokens=12,
        latency_s=0.5,
    )
    output = to_output("embedded", "llama_cpp:x", completion, ("Question:",))
    assert [c.message.text for c in output.choices] == ["5 apples\n", "five"]
    assert [c.stop_reason for c in output.choices] == ["stop", "max_tokens"]
    assert output.completion == "5 apples\n"
    assert output.usage is not None
    assert (output.usage.input_tokens, output.usage.output_tokens, output.usage.total_tokens) == (40, 12, 52)
    assert output.metadata == {"harness_adapter": "llama_cpp:x"}
    assert stop_reason("content_filter") == "content_filter" and stop_reason("weird") == "unknown"


@needs_inspect
def test_inspect_model_names_with_slashes_colons_and_fragments_survive(tmp_path: Path) -> None:
    from inspect_ai.model import get_model

    # Building the model creates the adapter (no request: preflight waits for the first generate).
    ref = "http://127.0.0.1:9/v1#org/model-1?api=text"
    model = get_model(f"harness/{ref}", memoize=False)
    assert model.name == ref and str(model) == f"harness/{ref}"
    assert model.api.max_connections() == 64  # the endpoint adapter's default concurrency
    gguf = tmp_path / "not-there.gguf"
    with pytest.raises(UsageError, match=r"GGUF file .*not-there\.gguf does not exist"):
        get_model(f"harness/gguf:{gguf}", memoize=False)
    with pytest.raises(UsageError, match=r"Unknown -M option.*bogus"):
        get_model("harness/replay:x.jsonl", memoize=False, bogus=1)
    with pytest.raises(UsageError, match="Invalid --checkpoint"):
        get_model("harness/nonsense form", memoize=False)


@needs_inspect
def test_inspect_eval_in_process_through_a_replay_checkpoint(tmp_path: Path) -> None:
    from inspect_ai import eval as inspect_eval
    from inspect_ai.log import read_eval_log

    from harness.bridges import inspect_provider

    sys.path.insert(0, str(FIXTURES))
    try:
        from inspect_arithmetic import bridge_arithmetic  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(FIXTURES))
    replay = write_replay(
        tmp_path / "replay.jsonl", {"add-1": "5", "add-2": "The answer is 17.", "add-3": "9"}
    )
    root_handlers = list(logging.getLogger().handlers)
    try:
        logs = inspect_eval(
            bridge_arithmetic(),
            model=f"harness/replay:{replay}",
            log_dir=str(tmp_path / "logs"),
            display="none",
        )
    finally:  # inspect installs a root log handler; keep it out of the other tests
        logging.getLogger().handlers[:] = root_handlers
    assert len(logs) == 1 and logs[0].status == "success"
    log = read_eval_log(logs[0].location)
    assert log.samples is not None
    outputs = {str(s.id): s.output.completion for s in log.samples}
    assert outputs == {"add-1": "5", "add-2": "The answer is 17.", "add-3": "9"}
    assert log.results is not None
    assert log.results.scores[0].metrics["accuracy"].value == pytest.approx(2 / 3)
    # The run-end hook closed the adapter; a later run would reopen it.
    assert all(m._opened is None for m in inspect_provider._OPEN_MODELS)


@needs_inspect
def test_inspect_eval_scores_the_answer_not_the_thinking(tmp_path: Path) -> None:
    """The same R1-style replay run twice through the `match(numeric=True)` task: raw (reasoning=none),
    then split (-M reasoning=think-tags). Two verdicts flip, each checked by hand below."""
    from inspect_ai import eval as inspect_eval
    from inspect_ai.log import read_eval_log
    from inspect_ai.model import ContentReasoning

    sys.path.insert(0, str(FIXTURES))
    try:
        from inspect_arithmetic import bridge_arithmetic  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(FIXTURES))
    replay = write_replay(
        tmp_path / "replay.jsonl",
        {
            # Control: raw and answer both end with 5.
            "add-1": "<think>Is it 6? No: 2 + 3 is 5.</think>\n\n5",
            # Unclosed (hit the limit): raw ends with the target 17 (C); the answer is "" (I).
            "add-2": "<think>10 + 7 = 17; check again: 10 + 7 = 17",
            # The close tag glued to the answer: raw's last word is "8</think>8", no number, so match takes
            # the "4" before it (I); the answer is "8" (C).
            "add-3": "<think>4 + 4 = 8</think>8",
        },
    )
    root_handlers = list(logging.getLogger().handlers)
    verdicts, samples = {}, {}
    try:
        for mode in ("none", "think-tags"):
            (log,) = inspect_eval(
                bridge_arithmetic(),
                model=f"harness/replay:{replay}",
                model_args={"reasoning": mode},
                log_dir=str(tmp_path / mode),
                display="none",
            )
            assert log.status == "success"
            read = read_eval_log(log.location)
            assert read.samples is not None
            verdicts[mode] = {str(s.id): s.scores["match"].value for s in read.samples if s.scores}
            samples[mode] = {str(s.id): s for s in read.samples}
    finally:  # inspect installs a root log handler; keep it out of the other tests
        logging.getLogger().handlers[:] = root_handlers
    assert verdicts["none"] == {"add-1": "C", "add-2": "C", "add-3": "I"}
    assert verdicts["think-tags"] == {"add-1": "C", "add-2": "I", "add-3": "C"}
    split = samples["think-tags"]
    assert {k: s.output.completion for k, s in split.items()} == {"add-1": "5", "add-2": "", "add-3": "8"}
    thinking = split["add-2"].output.message.content[0]  # kept in the log, never scored
    assert isinstance(thinking, ContentReasoning) and thinking.reasoning.endswith("10 + 7 = 17")
    details = split["add-2"].output.choices[0].stop_details
    assert details is not None and details.type == "ended_inside_reasoning"


# --- lm-eval: mappings and the LM through a replay checkpoint --------------------------------------


def test_lm_eval_generation_kwargs_map_to_requests() -> None:
    from harness.bridges.lm_eval_model import chat_context, request_for

    text = request_for("Q: 2+2?\nA:", {"until": "\n", "max_gen_toks": 16}, 256, 0, "t/0")
    assert text.prompt == "Q: 2+2?\nA:" and text.messages is None
    assert text.settings == GenerationSettings(
        max_tokens=16, temperature=0.0, top_p=1.0, stop=("\n",), seed=0
    )
    greedy = request_for("x", {"do_sample": False, "temperature": 0.8, "until": ["a", "b"]}, 99, 3, "t/1")
    assert greedy.settings.temperature == 0.0 and greedy.settings.max_tokens == 99
    assert greedy.settings.stop == ("a", "b") and greedy.settings.seed == 3
    sampled = request_for("x", {"do_sample": True, "temperature": 0.6, "max_new_tokens": 8}, 99, 0, "t/2")
    assert sampled.settings.temperature == 0.6 and sampled.settings.max_tokens == 8
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    as_chat = request_for(chat_context(chat), {"until": []}, 32, 0, "t/3")
    assert as_chat.prompt is None
    assert as_chat.messages == (Message("system", "Be brief."), Message("user", "2+2?"))


def test_lm_eval_model_generates_through_a_replay_checkpoint(tmp_path: Path) -> None:
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model, model_registry

    from harness.bridges.lm_eval_model import HarnessLM

    assert get_model("harness") is HarnessLM
    assert {"hf", "vllm", "local-chat-completions"} <= set(model_registry.keys())  # built-ins still there

    replay = write_replay(tmp_path / "r.jsonl", {"mini/0": "5 apples\n\nQuestion: more", "mini/1": "12"})
    lm = get_model("harness").create_from_arg_string(
        f"checkpoint=replay:{replay},max_gen_toks=16",
        {"batch_size": 1, "max_batch_size": None, "device": None},
    )
    try:
        gen = {"until": ["\n\n"], "do_sample": False}
        chat = lm.apply_chat_template([{"role": "user", "content": "Q1"}])
        instances = [
            Instance("generate_until", {}, ("Q0", gen), 0, ("mini", 0, 1)),
            Instance("generate_until", {}, (chat, gen), 0, ("mini", 1, 1)),
        ]
        assert lm.generate_until(instances) == ["5 apples", "12"]
        assert lm.get_model_info()["harness_checkpoint"] == f"replay:{replay}"
        with pytest.raises(NotImplementedError, match="generates text only"):
            lm.loglikelihood(instances)
        with pytest.raises(NotImplementedError, match="generates text only"):
            lm.loglikelihood_rolling(instances)
        # `repeats: N` sends the same instance N times: each copy gets its own seed.
        sampled = {"until": [], "do_sample": True, "temperature": 0.7}
        repeated = [Instance("generate_until", {}, ("Q0", sampled), 0, ("mini", 0, 3))] * 3
        assert [r.settings.seed for r in lm._requests(repeated)] == [0, 1, 2]
    finally:
        lm.close()
    with pytest.raises(UsageError, match=r"Unknown --model_args option.*nope"):
        HarnessLM(checkpoint=f"replay:{replay}", nope=1)


# --- the shared pieces ------------------------------------------------------------------------------


class RecordingStandIn:
    """Stand-in adapter: records the batch sizes it is called with; no model behind it."""

    api = "chat"
    concurrency = 1
    batch_size = 4

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[int] = []
        self.fail_on = fail_on

    def identity(self) -> str:
        return "stand-in"

    async def preflight(self) -> None:
        return None

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        self.batches.append(len(requests))
        await asyncio.sleep(0.01)
        if any(r.sample_id == self.fail_on for r in requests):
            raise RuntimeError(f"backend failed on {self.fail_on}")
        return [Completion(texts=(f"out-{r.sample_id}",), finish_reasons=("stop",)) for r in requests]

    async def aclose(self) -> None:
        return None


def test_batcher_fills_the_adapter_batches_and_propagates_errors() -> None:
    settings = GenerationSettings(max_tokens=8)
    requests = [Request(sample_id=str(i), settings=settings, prompt=f"p{i}") for i in range(10)]

    async def run(adapter: RecordingStandIn) -> list[Completion]:
        return await RequestBatcher(adapter).generate(requests)

    adapter = RecordingStandIn()
    completions = asyncio.run(run(adapter))
    assert [c.text for c in completions] == [f"out-{i}" for i in range(10)]
    assert adapter.batches == [4, 4, 2]
    with pytest.raises(RuntimeError, match="backend failed on 5"):
        asyncio.run(run(RecordingStandIn(fail_on="5")))


def test_bridge_options_are_validated() -> None:
    options, runs_dir = split_options({"n_ctx": "2048", "timeout_s": 30, "runs_dir": "/tmp/r"}, "-M")
    assert options == {"n_ctx": 2048, "timeout_s": 30.0} and runs_dir == Path("/tmp/r")
    with pytest.raises(UsageError, match="n_ctx='big' is not a valid int"):
        split_options({"n_ctx": "big"}, "-M")
    assert cut_at_stop("a\n\nb", ["\n\n", "b"]) == "a" and cut_at_stop("abc", []) == "abc"


# --- the peers' command lines on the embedded model --------------------------------------------------


@needs_inspect
@pytest.mark.model
def test_inspect_cli_runs_a_task_on_the_embedded_model(tmp_path: Path) -> None:
    from inspect_ai.log import list_eval_logs, read_eval_log

    inspect_bin = Path(sys.executable).parent / "inspect"
    env = cli_env(INSPECT_LOG_DIR=str(tmp_path / "logs"))
    start = time.perf_counter()
    proc = subprocess.run(
        [
            str(inspect_bin), "eval", str(INSPECT_TASK.relative_to(ROOT)),
            "--model", "harness/embedded", "--limit", "2",
        ],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = list_eval_logs(str(tmp_path / "logs"))
    assert len(logs) == 1
    log = read_eval_log(logs[0])
    assert log.status == "success" and log.eval.model == "harness/embedded"
    assert log.samples is not None and [s.id for s in log.samples] == ["add-1", "add-2"]
    for sample in log.samples:
        assert sample.output.completion.strip(), sample.id
        assert sample.output.metadata is not None
        assert sample.output.metadata["harness_adapter"].startswith("llama_cpp-")
        assert sample.output.usage is not None and 0 < sample.output.usage.output_tokens <= 32
    print(f"inspect eval, 2 samples on the embedded model: {seconds:.1f}s")


@pytest.mark.model
def test_lm_eval_cli_runs_a_local_task_on_the_embedded_model(tmp_path: Path) -> None:
    env = cli_env(HF_DATASETS_CACHE=str(tmp_path / "hf-datasets"))
    out = tmp_path / "lm-eval-out"
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable, "-m", "harness.bridges.lm_eval_model",
            "--model", "harness", "--model_args", "checkpoint=embedded",
            "--tasks", LM_EVAL_TASK, "--include_path", str(FIXTURES),
            "--limit", "2", "--output_path", str(out), "--log_samples",
        ],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results_files = list(out.glob("**/results_*.json"))
    assert len(results_files) == 1
    results = json.loads(results_files[0].read_text())
    assert results["config"]["model"] == "harness"
    assert results["config"]["harness_checkpoint"] == "embedded"
    metric = results["results"][LM_EVAL_TASK]["exact_match,flexible-extract"]
    assert 0.0 <= metric <= 1.0
    samples = [
        json.loads(line) for f in out.glob("**/samples_*.jsonl") for line in f.read_text().splitlines()
    ]
    assert [s["doc_id"] for s in samples] == [0, 1]
    assert all(s["resps"][0][0].strip() for s in samples)
    print(f"lm-eval, 2 samples on the embedded model: {seconds:.1f}s")
