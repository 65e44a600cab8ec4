"""A run's samples as inspect-ai `EvalSample`s: the exact input the model saw, the response (thinking and
answer apart for reasoning runs), one inspect `Score` per harness score, and the sample's metadata.

The input is rebuilt from the suite and its data (`suite.requests(sample, settings, api)`), and used only
when the request it renders hashes to the request key the run stored: then it is exactly what was sent,
chat messages (few-shot turns included) or a rendered text prompt. Where the data cannot be loaded, or
differs from the run's, the stored prompt stands in, and the export says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspect_ai.log import EvalSample
from inspect_ai.model import (
    ChatMessage,
    ChatMessageAssistant,
    ChatMessageSystem,
    ChatMessageUser,
    ModelOutput,
    ModelUsage,
)
from inspect_ai.scorer import Score

from harness.bridges.inspect_provider import to_output
from harness.errors import HarnessError
from harness.reasoning import ReasoningSpec
from harness.runs.catalog import RunView
from harness.runs.store import SampleRecord
from harness.suite import Suite, SuiteOptions
from harness.types import ApiKind, Message, Sample

Input = str | list[ChatMessage]


@dataclass(frozen=True)
class SampleInputs:
    inputs: Mapping[str, Input]  # sample id -> what the model was sent (ids absent: the stored prompt)
    metadata: Mapping[str, Mapping[str, Any]]  # sample id -> the data row's metadata
    note: str | None = None  # why some or all stored prompts stand in for the rebuilt inputs


def chat_messages(messages: Sequence[Message]) -> list[ChatMessage]:
    """Our chat messages -> inspect's."""
    kinds = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant}
    return [kinds[m.role](content=m.content) for m in messages]


def _json_safe(value: Mapping[str, Any]) -> dict[str, Any]:
    """Data-row metadata as plain JSON (a value JSON cannot hold becomes its str)."""
    loaded: dict[str, Any] = json.loads(json.dumps(dict(value), default=str))
    return loaded


def _sent(sample: Sample, run: RunView, suite: Suite, key: str) -> Input | None:
    """The input whose rendered request hashes to `key`, trying chat then text; None when neither does."""
    apis: tuple[ApiKind, ...] = ("chat", "text")
    for api in apis:
        requests = suite.requests(sample, run.manifest.generation, api)
        if requests and requests[0].key() == key:
            first = requests[0]
            return chat_messages(first.messages) if first.messages is not None else str(first.prompt)
    return None


def sample_inputs(run: RunView, records: Sequence[SampleRecord], data_dir: Path | None) -> SampleInputs:
    """The exact inputs of `records`, rebuilt from the suite's data (see the module docstring)."""
    from harness.data import resolve_data_source
    from suites import get_suite

    manifest = run.manifest
    source = resolve_data_source(None if data_dir is None else str(data_dir))  # a bad --data-dir is an error
    try:
        suite = get_suite(manifest.suite, SuiteOptions.of_run(manifest.suite_settings))
        loaded = suite.load(source, manifest.limit)
    except HarnessError as error:
        return SampleInputs({}, {}, f"its data could not be loaded ({error.problem}): stored prompts shown")
    if loaded.sha256 != manifest.data_sha256:
        return SampleInputs(
            {}, {}, f"the data now loaded ({loaded.source}) differs from the run's: stored prompts shown"
        )
    samples = {s.id: s for s in loaded.samples}
    inputs: dict[str, Input] = {}
    for record in records:
        sample = samples.get(record.id)
        sent = (
            None
            if sample is None or not record.request_keys
            else _sent(sample, run, suite, record.request_keys[0])
        )
        if sent is not None:
            inputs[record.id] = sent
    missing = len(records) - len(inputs)
    note = (
        None
        if not missing
        else f"{missing} sample(s) did not re-render to their stored request: stored prompts shown"
    )
    return SampleInputs(inputs, {i: _json_safe(s.metadata) for i, s in samples.items()}, note)


def _answer(score_name: str, extracted: Mapping[str, str | None]) -> str | None:
    """The extracted value a score graded: `exact_match_flex` -> extracted["flex"]; the only one if single."""
    matching = [v for k, v in extracted.items() if score_name == k or score_name.endswith(f"_{k}")]
    if len(matching) == 1:
        return matching[0]
    return next(iter(extracted.values())) if len(extracted) == 1 else None


def inspect_scores(record: SampleRecord) -> dict[str, Score]:
    """One inspect Score per harness score, with the value it graded as its answer."""
    extracted = dict(record.extracted)
    return {
        name: Score(value=value, answer=_answer(name, extracted), metadata={"extracted": extracted})
        for name, value in record.scores.items()
    }


def model_output(model: str, identity: str, record: SampleRecord, reasoning: ReasoningSpec) -> ModelOutput:
    """The first response as inspect's provider builds it (thinking as ContentReasoning, then the answer);
    the text is kept as stored (no stop cut: the harness scored it as it is)."""
    if not record.completions:
        return ModelOutput(model=model)
    return to_output(model, identity, record.completions[0], (), reasoning)


def eval_sample(
    run: RunView, record: SampleRecord, model: str, inputs: SampleInputs, reasoning: ReasoningSpec
) -> EvalSample:
    sent: Input = inputs.inputs.get(record.id, record.prompt)
    output = model_output(model, run.manifest.adapter, record, reasoning)
    turns: list[ChatMessage] = [ChatMessageUser(content=sent)] if isinstance(sent, str) else list(sent)
    metadata: dict[str, Any] = {**inputs.metadata.get(record.id, {}), "extracted": dict(record.extracted)}
    if len(record.completions) > 1:
        metadata["responses"] = len(record.completions)  # the output shows the first
    if record.reasoning:
        metadata["ended_inside_reasoning"] = record.reasoning[0].ended_inside_reasoning
    usage = output.usage or ModelUsage()
    return EvalSample(
        id=record.id,
        epoch=1,
        input=sent,
        target=record.target,
        messages=[*turns, output.message] if output.choices else turns,
        output=output,
        scores=inspect_scores(record),
        metadata=metadata,
        model_usage={model: usage},
        total_time=sum(c.latency_s for c in record.completions),
    )
