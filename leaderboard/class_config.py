"""The class configuration (`leaderboard.yaml`): what the course staff pin, and which rows qualify.

The staff own one small YAML file:

    name: CSE 5525 Fall 2026          # shown on the site
    suites: [ifeval, gsm8k, mbpp, safety]
    limit: 200                        # first N samples of every suite (null: the whole suite)
    generation: {max_tokens: 512}     # overrides of the suites' pinned decoding (seed, samples,
                                      #   temperature, top_p, max_tokens); absent: the pinned values
    judge: refusal-heuristic          # the safety judge
    versions: {gsm8k: "1.0"}          # optional: suite versions this class pins (default: this harness's)
    tie_rule: competition             # competition (1, 1, 3), dense (1, 1, 2) or earliest (first run wins)
    reasoning: {mode: think-tags}     # optional: the reasoning mode every run is scored under (none,
                                      #   think-tags, auto, field), with open_tag/close_tag and a
                                      #   thinking_budget (tokens) if wanted; absent: none

A row qualifies when every pinned suite has a complete run under exactly these settings: the run's
settings hash equals the one `harness eval` computes for them (`expected_key`), so "qualifies" means
"would have been the same run folder". Only qualifying rows are ranked; every other row is listed with
each differing setting and its value (`differences`). `harness eval --class FILE`, `harness train` and
`harness pipeline` (`eval.class_config`) evaluate under the same settings, so their runs qualify.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.readers import read_yaml
from harness.reasoning import MODES, NO_REASONING, ReasoningSpec
from harness.runs.catalog import CheckpointView, RunView
from harness.suite import DEFAULT_REGIME
from harness.types import GenerationSettings

TIE_RULES = {
    "competition": "equal averages (to 0.1 points) share the better rank; the next rank skips (1, 1, 3)",
    "dense": "equal averages (to 0.1 points) share a rank; the next rank follows on (1, 1, 2)",
    "earliest": "equal averages (to 0.1 points) are ordered by when the row's runs finished, earliest first",
}
CLASS_CONFIG_FILE = "leaderboard.yaml"  # in a site-data folder, `leaderboard add` reads it by itself
GENERATION_KEYS = ("seed", "samples", "temperature", "top_p", "max_tokens")
_KEYS = ("name", "suites", "limit", "generation", "judge", "versions", "tie_rule", "reasoning")
REASONING_KEYS = ("mode", "open_tag", "close_tag", "thinking_budget")
_FIX = "See docs/leaderboard.md#class-configuration for every key."


@dataclass(frozen=True)
class ClassConfig:
    name: str
    suites: tuple[str, ...]
    limit: int | None = None
    generation: Mapping[str, Any] = field(default_factory=dict)  # GENERATION_KEYS that are set
    judge: str = "refusal-heuristic"
    versions: Mapping[str, str] = field(default_factory=dict)
    tie_rule: str = "competition"
    reasoning: ReasoningSpec = NO_REASONING  # every run scored under this reasoning mode
    thinking_budget: int | None = None  # reasoning runs: tokens of thinking (None: each suite's default)

    def describe(self) -> dict[str, Any]:
        """What the site prints about the class."""
        reasoning = None
        if self.reasoning.enabled:
            reasoning = {"mode": self.reasoning.describe(), "thinking_budget": self.thinking_budget}
        return {
            "name": self.name,
            "suites": list(self.suites),
            "limit": self.limit,
            "generation": dict(self.generation),
            "judge": self.judge,
            "versions": dict(self.versions),
            "tie_rule": self.tie_rule,
            "reasoning": reasoning,
        }


def load_class_config(path: Path) -> ClassConfig:
    """Read and validate `leaderboard.yaml`; every problem names the file and the key."""
    raw = read_yaml(path, "class config", fix=_FIX)

    def bad(key: str, problem: str) -> UsageError:
        return UsageError(f"The class config {path}: '{key}' {problem}.", _FIX)

    if not isinstance(raw, dict):
        raise UsageError(f"The class config {path} is not a mapping of keys to values.", _FIX)
    unknown = sorted(str(k) for k in raw if k not in _KEYS)
    if unknown:
        raise bad(unknown[0], f"is not a key (known: {', '.join(_KEYS)})")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise bad("name", "must be a non-empty string of at most 200 characters")
    suites = raw.get("suites")
    if not isinstance(suites, list) or not suites or not all(isinstance(s, str) for s in suites):
        raise bad("suites", "must be a non-empty list of suite names")
    if len(set(suites)) != len(suites):
        raise bad("suites", "names a suite twice")
    limit = raw.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise bad("limit", "must be a positive integer or null")
    generation = raw.get("generation") or {}
    if not isinstance(generation, dict):
        raise bad("generation", f"must be a mapping of {', '.join(GENERATION_KEYS)}")
    for key, value in generation.items():
        if key not in GENERATION_KEYS:
            raise bad(f"generation.{key}", f"is not a setting (known: {', '.join(GENERATION_KEYS)})")
        _check_generation_value(str(key), value, bad)
    judge = raw.get("judge", "refusal-heuristic")
    if not isinstance(judge, str) or not judge:
        raise bad("judge", "must be a judge name (refusal-heuristic or wildguard)")
    versions = raw.get("versions") or {}
    if not isinstance(versions, dict) or not all(isinstance(v, str | int | float) for v in versions.values()):
        raise bad("versions", 'must map suite names to version strings, e.g. {gsm8k: "1.0"}')
    tie_rule = raw.get("tie_rule", "competition")
    if tie_rule not in TIE_RULES:
        raise bad("tie_rule", f"must be one of {', '.join(TIE_RULES)}")
    reasoning, thinking_budget = _reasoning(raw.get("reasoning"), bad)
    config = ClassConfig(
        name=name.strip(),
        suites=tuple(suites),
        limit=limit,
        generation=dict(generation),
        judge=judge,
        versions={str(k): str(v) for k, v in versions.items()},
        tie_rule=tie_rule,
        reasoning=reasoning,
        thinking_budget=thinking_budget,
    )
    expected_columns(config, path)  # unknown suites and versions this harness lacks fail here, not later
    return config


def _reasoning(raw: Any, bad: Any) -> tuple[ReasoningSpec, int | None]:
    """The `reasoning:` key: {mode, open_tag?, close_tag?, thinking_budget?} (absent or null: none)."""
    if raw is None:
        return NO_REASONING, None
    if not isinstance(raw, dict):
        raise bad("reasoning", "must be a mapping, e.g. {mode: think-tags, thinking_budget: 2048}")
    unknown = sorted(str(k) for k in raw if k not in REASONING_KEYS)
    if unknown:
        raise bad(f"reasoning.{unknown[0]}", f"is not a key (known: {', '.join(REASONING_KEYS)})")
    mode = raw.get("mode")
    if mode not in MODES:
        raise bad("reasoning.mode", f"must be one of {', '.join(MODES)}")
    for key in ("open_tag", "close_tag"):
        if key in raw and (mode not in ("think-tags", "auto") or not isinstance(raw[key], str)):
            raise bad(f"reasoning.{key}", "is a string, and only for mode think-tags or auto")
    try:
        spec = ReasoningSpec(mode, raw.get("open_tag", "<think>"), raw.get("close_tag", "</think>"))
    except UsageError as error:
        raise bad("reasoning", f"is not usable: {error.problem.rstrip('.')}") from None
    budget = raw.get("thinking_budget")
    if budget is not None:
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
            raise bad("reasoning.thinking_budget", "must be a non-negative integer (tokens)")
        if not spec.enabled:
            raise bad("reasoning.thinking_budget", "needs a reasoning mode other than none")
    return spec, budget


def _check_generation_value(key: str, value: Any, bad: Any) -> None:
    if key in ("seed", "samples", "max_tokens"):
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "seed" else 1):
            raise bad(
                f"generation.{key}",
                "must be a " + ("non-negative" if key == "seed" else "positive") + " integer",
            )
    elif not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= float(value) <= 2:
        raise bad(f"generation.{key}", "must be a number in [0, 2]")


@dataclass(frozen=True)
class ColumnSettings:
    """What a qualifying run of one suite was run under (as its manifest records it)."""

    suite: str
    version: str
    generation: GenerationSettings
    limit: int | None
    suite_settings: Mapping[str, Any]  # JSON-normalised, as manifests hold them
    settings_hash: str

    @property
    def key(self) -> tuple[str, str, str]:
        """Equal to `RunView.comparability_key` of a run under exactly these settings."""
        return (self.suite, self.version, self.settings_hash)


def expected_columns(config: ClassConfig, source: Path | None = None) -> dict[str, ColumnSettings]:
    """Per pinned suite, the settings `harness eval` would run it under for this class."""
    from harness.api.evaluate import Generation
    from harness.runner import settings_hash_of
    from harness.suite import SuiteOptions
    from suites import build_suites

    where = f"The class config {source}" if source else "The class config"
    try:  # the default judge (its model is never needed here), the class's reasoning (it is in the hash)
        suites = build_suites(config.suites, SuiteOptions(reasoning=config.reasoning)).suites
    except UsageError as error:
        raise UsageError(f"{where}: {error.problem}", error.fix) from None
    overrides = class_generation(config)
    out: dict[str, ColumnSettings] = {}
    for suite in suites:
        pinned_version = config.versions.get(suite.name, suite.version)
        if pinned_version != suite.version:
            raise UsageError(
                f"{where} pins {suite.name}@{pinned_version}, but this harness has {suite.name}@{suite.version}.",
                "Install the harness version the class uses (harness --version), or update 'versions'.",
            )
        pinned = dict(suite.pinned_settings())
        if "judge" in pinned:
            pinned["judge"] = config.judge
        settings = Generation(**overrides).for_suite(suite)  # with reasoning: the thinking budget added
        pinned = as_stored(pinned)
        out[suite.name] = ColumnSettings(
            suite=suite.name,
            version=suite.version,
            generation=settings,
            limit=config.limit,
            suite_settings=pinned,
            settings_hash=settings_hash_of(suite.name, suite.version, pinned, settings, config.limit),
        )
    return out


def as_stored(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as a manifest holds them once written (JSON: tuples are lists), so they compare equal."""
    return dict(json.loads(json.dumps(dict(settings))))


def column_of(run: RunView) -> ColumnSettings:
    """A column whose settings are those of a reference run (a board without a class config)."""
    m = run.manifest
    return ColumnSettings(
        suite=m.suite,
        version=m.suite_version,
        generation=m.generation,
        limit=m.limit,
        suite_settings=as_stored(m.suite_settings),
        settings_hash=m.settings_hash,
    )


def class_generation(config: ClassConfig) -> dict[str, Any]:
    """The class's decoding overrides (and thinking budget) as `harness.api.Generation` keyword arguments."""
    out = {key: config.generation[key] for key in GENERATION_KEYS if key in config.generation}
    if config.thinking_budget is not None:
        out["thinking_budget"] = config.thinking_budget
    return out


def differences(run: RunView, column: ColumnSettings, whose: str = "class") -> list[str]:
    """Each setting in which a run differs from its column, with both values ("max_tokens 32 (class: 64)")."""
    m = run.manifest
    out: list[str] = []
    if m.suite_version != column.version:
        out.append(f"suite version {m.suite_version} ({whose}: {column.version})")
    if m.limit != column.limit:
        out.append(f"limit {_show(m.limit)} ({whose}: {_show(column.limit)})")
    mine, theirs = m.generation.as_record(), column.generation.as_record()
    for key in sorted(set(mine) | set(theirs)):
        if mine.get(key) != theirs.get(key):
            out.append(f"{key} {_show(mine.get(key))} ({whose}: {_show(theirs.get(key))})")
    settings = as_stored(m.suite_settings)
    for key in sorted(set(settings) | set(column.suite_settings)):
        if settings.get(key) != column.suite_settings.get(key):
            if key == "reasoning":
                mine_text, theirs_text = _reasoning_texts(settings.get(key), column.suite_settings.get(key))
                out.append(f"reasoning {mine_text} ({whose}: {theirs_text})")
                continue
            if key == "regime":  # absent means the default regime
                mine_regime = settings.get(key) or DEFAULT_REGIME
                out.append(
                    f"regime {mine_regime} ({whose}: {column.suite_settings.get(key) or DEFAULT_REGIME})"
                )
                continue
            what = "safety judge" if key == "judge" else f"suite setting {key}"
            out.append(
                f"{what} {_show(settings.get(key))} ({whose}: {_show(column.suite_settings.get(key))})"
            )
    if not out and run.comparability_key != column.key:
        out.append(f"settings hash {m.settings_hash} ({whose}: {column.settings_hash})")
    return out


def _reasoning_texts(mine: Any, theirs: Any) -> tuple[str, str]:
    """Two pinned reasoning settings as `think-tags` / `none` (tags when not the default ones; the parser
    version when that is all that differs)."""

    def text(value: Any, parser: bool) -> str:
        if not isinstance(value, Mapping):
            return _show(value)
        words = [str(value.get("mode"))]
        tags = (value.get("open_tag"), value.get("close_tag"))
        if tags != (None, None) and tags != ("<think>", "</think>"):
            words.append(_show(f"{tags[0]}...{tags[1]}"))
        if parser:
            words.append(f"parser {_show(value.get('parser'))}")
        return " ".join(words)

    if text(mine, False) != text(theirs, False):
        return text(mine, False), text(theirs, False)
    return text(mine, True), text(theirs, True)


def _show(value: Any) -> str:
    if value is None:
        return "none"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def row_reasons(checkpoint: CheckpointView, columns: Mapping[str, ColumnSettings]) -> list[str]:
    """Why a row does not qualify (empty: it does): per pinned suite, missing, unfinished or different."""
    reasons: list[str] = []
    for suite, column in columns.items():
        run = checkpoint.runs.get(suite)
        if run is None:
            reasons.append(f"{suite}: no run")
        elif run.comparability_key == column.key and run.complete:
            continue
        elif not run.complete:
            reasons.append(f"{suite}: run is {run.manifest.status}, not complete")
        else:
            reasons.append(f"{suite}: run under other settings: " + "; ".join(differences(run, column)))
    return reasons


def rank_rows(scores: Sequence[tuple[str, float, str]], tie_rule: str) -> dict[str, int]:
    """(row id, score, finished at) -> rank by score, highest first, ties per `tie_rule`. Scores are
    compared at the site's display precision (0.1 points), so rows that show the same number tie."""
    shown = sorted(
        ((round(score * 1000), finished, row) for row, score, finished in scores),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    ranks: dict[str, int] = {}
    previous: tuple[int, int] | None = None  # (shown score, its rank)
    dense = 0
    for position, (score, _finished, row) in enumerate(shown, start=1):
        tied = previous is not None and previous[0] == score and tie_rule != "earliest"
        if not tied:
            dense += 1
        rank = previous[1] if tied and previous is not None else (dense if tie_rule == "dense" else position)
        ranks[row] = rank
        previous = (score, rank)
    return ranks


@dataclass(frozen=True)
class ClassEval:
    """What `harness eval --class FILE` (and a training stage's evals) run: the class's settings."""

    suites: tuple[str, ...]
    limit: int | None
    generation: Mapping[str, Any]  # harness.api.Generation keyword arguments (thinking_budget included)
    judge: str
    reasoning: ReasoningSpec = NO_REASONING  # harness.suite.SuiteOptions(reasoning=...)


def class_eval(
    config: ClassConfig,
    suites: Sequence[str] | None,
    limit: int | None,
    generation: Mapping[str, Any],
    judge: str | None,
    source: str = "--class",
    reasoning: ReasoningSpec | None = None,
) -> ClassEval:
    """The class's settings, with the caller's explicit choices (None: not given) checked against them:
    a choice that differs would make the runs not qualify, so it is an error that names both values."""
    pinned = class_generation(config)

    def conflict(what: str, mine: Any, theirs: Any) -> UsageError:
        return UsageError(
            f"{what} {_show(mine)} differs from the class config ({source}: {config.name}), which pins "
            f"{_show(theirs)}; runs under it would not be ranked.",
            f"Drop {what}, or evaluate without the class config.",
        )

    if limit is not None and limit != config.limit:
        raise conflict("--limit", limit, config.limit)
    for key, value in generation.items():
        if value is not None and key in pinned and value != pinned[key]:
            raise conflict(f"--{key.replace('_', '-')}", value, pinned[key])
    if judge is not None and judge != config.judge:
        raise conflict("--judge", judge, config.judge)
    if reasoning is not None and reasoning != config.reasoning:
        raise conflict("--reasoning", reasoning.describe(), config.reasoning.describe())
    chosen = {k: v for k, v in generation.items() if v is not None} | pinned
    return ClassEval(tuple(suites or config.suites), config.limit, chosen, config.judge, config.reasoning)
