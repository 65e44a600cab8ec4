"""IFEval: instruction-following with verifiable instructions (Zhou et al., 2023).

Pinned settings: the 541 prompts of the original release (`ifeval/input_data.jsonl`, or the hub's
`google/IFEval` train split at a pinned revision); 0-shot, the prompt as one user message (raw prompt text
for text-completion endpoints); greedy; at most 1,280 new tokens; no stop sequences. These are lm-eval's
`ifeval` task settings.

Scoring: the 25 reference instruction checkers of lm-eval (`lm_eval.tasks.ifeval`, a port of Google's
code), applied exactly as lm-eval's `utils.process_results` applies them. Strict: the response as is.
Loose: an instruction counts as followed if any of 8 variants passes (the response; without its first
line, its last line, or both; each of those four with every "*" removed). An empty response follows
nothing. Kwargs with empty values are dropped, as lm-eval does (the hub export carries None values).
NLTK's `punkt_tab` (sentence splitting) is read from `<data dir>/nltk_data` when present; nothing is
downloaded. langdetect is seeded (DetectorFactory.seed = 0) so the language checker is reproducible.
Prompts 1122 and 1129 ask for the frequency of "#" and "!", which the reference checker replaces by a
random letter. lm-eval builds each instruction's checker twice, once for strict and once for loose, so it
draws that letter twice (with its global random state at seed 0: "y" for strict, "w" for loose) and one
response can pass an instruction strictly yet fail it loosely. Here each instruction's checker is built
once per judged response and serves both checks, and whatever it draws comes from Python's `random`
seeded with the prompt key and the instruction's index (its state restored after): the same letter in
strict and loose, on every run and machine (since suite version 1.1; these two verdicts are the only ones
that can differ from lm-eval's, which depend on its global random state).

Regimes: harness (default: the settings above) and tulu (`--regime tulu`: OLMES's `ifeval::tulu`, the
setting of the Tülu 3 / OLMo 2 instruct rows: at most 2,048 new tokens instead of 1,280, all else the same;
source: the `ifeval::tulu` entry of allenai/olmes `oe_eval/configs/tasks.py` as quoted by third-party
reimplementations that claim parity (max_gen_toks 2048); OLMES's own source could not be read here).

Metrics:
- prompt_level_loose_acc (primary), prompt_level_strict_acc: the share of prompts whose instructions are
  all followed (Wilson 95% CI).
- inst_level_strict_acc, inst_level_loose_acc: the share of all 834 instructions followed, pooled over
  prompts (micro average, as lm-eval's agg_inst_level_acc); stderr and CI over the pooled 0/1 verdicts.
- inst_loose:<instruction id>: loose accuracy per instruction type (25 types).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.data import DATA_DIR_ENV, DataSource, HubDataset, jsonl_or_hub, rows_hash
from harness.errors import DataError, MissingExtraError
from harness.stats import summarize
from harness.suite import DEFAULT_REGIME, LoadedData, SuiteDefaults, regime_pinned
from harness.types import (
    ApiKind,
    Completion,
    GenerationSettings,
    Message,
    Metric,
    Request,
    Sample,
    Score,
)

HUB = HubDataset("google/IFEval", None, "train", "966cd89545d6b6acfd7638bc708b98261ca58e84")
DATA_FILE = "ifeval/input_data.jsonl"
NLTK_SUBDIR = "nltk_data"
PUNKT = "tokenizers/punkt_tab"
JUDGE_SEED = 0  # the global random seed agreement checks give lm-eval (its letter draws depend on it)
TULU_MAX_TOKENS = 2048  # OLMES ifeval::tulu max_gen_toks

PROMPT_STRICT, PROMPT_LOOSE = "prompt_level_strict_acc", "prompt_level_loose_acc"
INST_STRICT, INST_LOOSE = "inst_level_strict_acc", "inst_level_loose_acc"
TYPE_PREFIX = "inst_loose:"
# Score.extracted keys: comma-joined instruction ids and their 0/1 verdicts, so metrics() can pool them.
IDS, STRICT_LIST, LOOSE_LIST = "instructions", "strict", "loose"

_registry: ModuleType | None = None


def use_nltk_data(folder: Path) -> bool:
    """Point NLTK at `folder` (env and search path) if it holds punkt_tab; True if it does."""
    if not (folder / PUNKT).is_dir():
        return False
    import nltk

    os.environ["NLTK_DATA"] = str(folder)
    if str(folder) not in nltk.data.path:
        nltk.data.path.append(str(folder))
    return True


def _punkt_available() -> bool:
    import nltk

    try:
        nltk.data.find(PUNKT)
    except LookupError:
        return False
    return True


def checkers(data_dir: Path | None = None) -> ModuleType:
    """lm-eval's instructions_registry, imported only once NLTK can find punkt_tab (so it never downloads)."""
    global _registry
    if _registry is not None and data_dir is None:
        return _registry
    try:
        import langdetect
        import nltk  # noqa: F401
    except ImportError as error:
        raise MissingExtraError(
            f"The IFEval checkers need lm-eval's ifeval dependencies ({error.name} is missing).",
            "Install them: pip install 'lm-eval[ifeval]' (or reinstall the harness).",
        ) from None
    folders = [data_dir] if data_dir is not None else []
    if os.environ.get(DATA_DIR_ENV):
        folders.append(Path(os.environ[DATA_DIR_ENV]).expanduser())
    for folder in folders:
        use_nltk_data(folder.resolve() / NLTK_SUBDIR)
    if _registry is not None:
        return _registry
    if not _punkt_available():
        raise DataError(
            "IFEval's sentence splitter needs NLTK's 'punkt_tab' data, which was not found "
            f"(searched {', '.join(str(f / NLTK_SUBDIR) for f in folders) or 'no data dir'} and NLTK's paths); "
            "the harness does not download it.",
            f"Point --data-dir (or {DATA_DIR_ENV}) at a folder with nltk_data/{PUNKT}/english, set NLTK_DATA "
            "to a folder holding it, or run: python -m nltk.downloader punkt_tab",
        )
    try:
        from lm_eval.tasks.ifeval import instructions_registry
    except ImportError:
        raise MissingExtraError(
            "The IFEval checkers come from lm-eval, which is not installed.",
            "Install it: pip install 'lm-eval[ifeval]' (or reinstall the harness).",
        ) from None
    langdetect.DetectorFactory.seed = 0  # langdetect is random unless seeded
    # "Unable to detect language" is logged at ERROR for every such variant (and counts as followed).
    logging.getLogger(instructions_registry.instructions.__name__).setLevel(logging.CRITICAL)
    _registry = instructions_registry
    return _registry


def loose_variants(response: str) -> list[str]:
    """The 8 responses lm-eval's loose check tries, in its order."""
    lines = response.split("\n")
    remove_first = "\n".join(lines[1:]).strip()
    remove_last = "\n".join(lines[:-1]).strip()
    remove_both = "\n".join(lines[1:-1]).strip()
    return [
        response,
        response.replace("*", ""),
        remove_first,
        remove_last,
        remove_both,
        remove_first.replace("*", ""),
        remove_last.replace("*", ""),
        remove_both.replace("*", ""),
    ]


def _checker(
    registry: ModuleType, key: int, index: int, instruction_id: str, kwargs: Mapping[str, Any], prompt: str
) -> Any:
    """One instruction's checker, built as lm-eval builds it (kwargs with empty values dropped, the prompt
    passed to checkers that ask for it). A checker whose kwargs are missing or invalid draws the value from
    Python's `random`, seeded here with the prompt key and instruction index (state restored after), so the
    draw is the same on every run and machine and never depends on other instructions."""
    checker = registry.INSTRUCTION_DICT[instruction_id](instruction_id)
    saved = random.getstate()
    random.seed(f"ifeval:{key}:{index}")  # a str seed hashes with sha512: no PYTHONHASHSEED dependence
    try:
        checker.build_description(**{k: v for k, v in kwargs.items() if v})
        args = checker.get_instruction_args()
        if args and "prompt" in args:
            checker.build_description(prompt=prompt)
    finally:
        random.setstate(saved)
    return checker


def instruction_args(
    key: int, instruction_ids: Sequence[str], kwargs: Sequence[Mapping[str, Any]], prompt: str
) -> list[dict[str, Any]]:
    """The arguments each instruction is judged with (drawn values included), e.g. the letter of 1122."""
    registry = checkers()
    built = [_checker(registry, key, i, iid, kwargs[i], prompt) for i, iid in enumerate(instruction_ids)]
    return [dict(c.get_instruction_args() or {}) for c in built]


def judge(
    key: int, instruction_ids: Sequence[str], kwargs: Sequence[Mapping[str, Any]], prompt: str, response: str
) -> tuple[list[bool], list[bool]]:
    """(strict, loose) verdict per instruction, as lm-eval's process_results computes them, except that one
    checker per instruction serves both (lm-eval builds two, so a random draw can differ between them)."""
    registry = checkers()
    built = [_checker(registry, key, i, iid, kwargs[i], prompt) for i, iid in enumerate(instruction_ids)]
    variants = loose_variants(response)
    strict = [bool(response.strip()) and bool(c.check_following(response)) for c in built]
    loose = [any(r.strip() and c.check_following(r) for r in variants) for c in built]
    return strict, loose


def _bits(verdicts: Sequence[bool]) -> str:
    return ",".join("1" if v else "0" for v in verdicts)


def _unbits(text: str | None) -> list[float]:
    return [float(b) for b in text.split(",")] if text else []


def _clean_row(row: Mapping[str, Any], index: int, origin: str) -> dict[str, Any]:
    ids, kwargs = row.get("instruction_id_list"), row.get("kwargs")
    if (
        not isinstance(row.get("key"), int)
        or not isinstance(row.get("prompt"), str)
        or not isinstance(ids, list)
        or not isinstance(kwargs, list)
        or len(ids) != len(kwargs)
        or not all(isinstance(i, str) for i in ids)
        or not all(isinstance(k, dict) for k in kwargs)
    ):
        raise DataError(
            f"IFEval row {index + 1} of {origin} lacks 'key', 'prompt', or matching "
            "'instruction_id_list'/'kwargs' lists.",
            "Restore the upstream ifeval/input_data.jsonl.",
        )
    return {
        "key": row["key"],
        "prompt": row["prompt"],
        "instruction_id_list": list(ids),
        "kwargs": [{k: v for k, v in kw.items() if v is not None} for kw in kwargs],  # the hub's Nones
    }


class IFEval(SuiteDefaults):
    name = "ifeval"
    version = "1.1"  # 1.1: one random draw per instruction (prompts 1122 and 1129)
    primary_metric = PROMPT_LOOSE
    thinking_budget = 1024  # tokens of thinking when reasoning is on: formatting, not problem solving
    headline_metrics: tuple[str, ...] = (PROMPT_LOOSE, PROMPT_STRICT, INST_STRICT, INST_LOOSE)
    description = __doc__ or ""
    regimes: tuple[str, ...] = (DEFAULT_REGIME, "tulu")

    def default_settings(self) -> GenerationSettings:
        return GenerationSettings(
            max_tokens=TULU_MAX_TOKENS if self.regime == "tulu" else 1280, temperature=0.0
        )

    def pinned_settings(self) -> Mapping[str, Any]:
        try:
            library = f"lm-eval=={importlib.metadata.version('lm-eval')}"
        except importlib.metadata.PackageNotFoundError:
            library = "lm-eval (not installed)"
        return {
            "split": "train", "num_fewshot": 0, "format": "single-turn", "checkers": library,
            **self.reasoning.pinned(), **regime_pinned(self.regime),
        }  # fmt: skip

    def load(self, source: DataSource, limit: int | None) -> LoadedData:
        checkers(source.data_dir)  # fail before any generation if the checkers cannot run
        raw, origin = jsonl_or_hub(source, DATA_FILE, "IFEval prompts", HUB)
        rows = [_clean_row(row, index, origin) for index, row in enumerate(raw)]
        known = checkers().INSTRUCTION_DICT
        samples = []
        for row in rows:
            unknown = [i for i in row["instruction_id_list"] if i not in known]
            if unknown:
                raise DataError(
                    f"IFEval prompt {row['key']} of {origin} uses unknown instructions {unknown}."
                )
            samples.append(
                Sample(
                    id=f"ifeval-{row['key']}",
                    messages=(Message("user", row["prompt"]),),
                    target=", ".join(row["instruction_id_list"]),
                    metadata={
                        "key": row["key"],
                        "instruction_id_list": tuple(row["instruction_id_list"]),
                        "kwargs": tuple(row["kwargs"]),
                    },
                )
            )
        if len({s.id for s in samples}) != len(samples):
            raise DataError(f"IFEval keys in {origin} are not unique.", "Restore the upstream file.")
        chosen = samples if limit is None else samples[:limit]
        digest = rows_hash(rows, ("key", "prompt", "instruction_id_list", "kwargs"))
        return LoadedData(tuple(chosen), len(samples), origin, digest)

    def requests(self, sample: Sample, settings: GenerationSettings, api: ApiKind) -> list[Request]:
        if api == "chat":
            return [Request(sample.id, settings, messages=sample.messages)]
        return [Request(sample.id, settings, prompt=sample.prompt_text)]

    def verdicts(self, sample: Sample, response: str) -> tuple[list[bool], list[bool]]:
        meta = sample.metadata
        return judge(meta["key"], meta["instruction_id_list"], meta["kwargs"], sample.prompt_text, response)

    def score(self, sample: Sample, completions: Sequence[Completion]) -> Score:
        strict, loose = self.verdicts(sample, completions[0].text)
        return Score(
            values={
                PROMPT_STRICT: float(all(strict)),
                PROMPT_LOOSE: float(all(loose)),
                INST_STRICT: sum(strict) / len(strict),
                INST_LOOSE: sum(loose) / len(loose),
            },
            extracted={
                IDS: ",".join(sample.metadata["instruction_id_list"]),
                STRICT_LIST: _bits(strict),
                LOOSE_LIST: _bits(loose),
            },
        )

    def metrics(self, scores: Sequence[Score]) -> dict[str, Metric]:
        result = {
            name: summarize(name, [s.values[name] for s in scores]) for name in (PROMPT_LOOSE, PROMPT_STRICT)
        }
        pooled_strict = [v for s in scores for v in _unbits(s.extracted.get(STRICT_LIST))]
        pooled_loose = [v for s in scores for v in _unbits(s.extracted.get(LOOSE_LIST))]
        result[INST_STRICT] = summarize(INST_STRICT, pooled_strict)
        result[INST_LOOSE] = summarize(INST_LOOSE, pooled_loose)
        by_type: dict[str, list[float]] = {}
        for s in scores:
            ids = (s.extracted.get(IDS) or "").split(",")
            for instruction_id, verdict in zip(ids, _unbits(s.extracted.get(LOOSE_LIST)), strict=False):
                by_type.setdefault(instruction_id, []).append(verdict)
        for instruction_id in sorted(by_type):
            name = TYPE_PREFIX + instruction_id
            result[name] = summarize(name, by_type[instruction_id])
        return result

    def reward(self, sample: Sample, text: str) -> float:
        """Prompt-level loose, exactly as score() computes it."""
        return float(all(self.verdicts(sample, text)[1]))

    def gold_response(self, sample: Sample) -> str | None:
        return None  # IFEval has no reference responses
