"""Alice's Wonderland reasoning puzzles (Kaggle NVIDIA Nemotron Model Reasoning Challenge, train.csv).

Six puzzle categories, told apart by the opening sentence of the prompt: bit_manipulation (8-bit
input -> output pairs under a hidden rule), cipher (a letter-substitution cipher over a small vocabulary),
numeral (Roman numerals), unit_conversion (a hidden factor, answers with 2 decimals), gravity (a hidden
g in d = 0.5*g*t^2, answers rounded to 2 decimals) and equation (operator puzzles over 2-digit numbers,
written with digits or with a hidden digit -> symbol code).

Data: there is no hub copy. The Kaggle `train.csv` (id,prompt,answer; 9,500 rows) must be in the data dir
as `nemotron_kaggle/train.csv` (--data-dir / HARNESS_DATA_DIR); without it use the `alice-synth` suite.

Pinned settings:
- Split "validation-1200": a deterministic stratified sample of the Kaggle train file, 200 rows per
  category (random.Random(20260401).sample over each category's rows in file order), interleaved
  round-robin in the order bit_manipulation, cipher, numeral, unit_conversion, gravity, equation (then by
  sample order), so `--limit N` takes the first N and any N >= 6 covers all six categories.
- 0-shot, one user turn: the puzzle prompt followed by the instruction
  "\\n\\nPlease reason step by step, and put your final answer within \\boxed{}." (INSTRUCTION below).
  Text-completion form: "Question: {puzzle}{instruction}\\nAnswer:", stopping at "\\nQuestion:".
- Greedy, at most 1,024 new tokens.

Extraction: the content of the last *complete* `\\boxed{...}` in the response, found by a balanced-brace
scan (nested braces allowed; whitespace between `\\boxed` and `{` allowed; a backslash escapes the next
character, so `\\{` and `\\}` do not count as braces). A box left open (truncated output) is skipped and the
previous complete box is used. No box: wrong.

Match (1/0): the extracted text, or the same with LaTeX escapes undone (`\\{` -> `{`, `\\%` -> `%` ...), or
with one outer `\\text{}`/`\\mathrm{}`/`\\textbf{}`/`\\texttt{}`/`\\boxed{}` wrapper removed, equals the
answer after whitespace/case normalization (strip, collapse runs of whitespace, casefold). So Roman
numerals match case-insensitively, bit strings must be the same 8 characters and equation answers (which
contain backslashes, quotes, backticks and braces) must be the same symbols. For unit_conversion and gravity
only, a number (optionally followed by "m"/"meters") also matches when |x - answer| <= max(1e-2 * |answer|,
0.01): a solver who infers the constant from the rounded examples is off by well under 0.5%, a wrong
constant by more than 1%.

Metrics: accuracy (primary, all samples) and accuracy_<category> over that category's samples only, each
the mean of 0/1 values with stderr and a Wilson 95% interval.
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.data import DATA_DIR_ENV, DataSource, rows_hash
from harness.errors import DataError
from harness.stats import summarize
from harness.suite import LoadedData, SuiteDefaults
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

CATEGORIES: tuple[str, ...] = (
    "bit_manipulation",
    "cipher",
    "numeral",
    "unit_conversion",
    "gravity",
    "equation",
)
NUMERIC_CATEGORIES = frozenset({"unit_conversion", "gravity"})
TRAIN_FILE = "nemotron_kaggle/train.csv"
SPLIT_NAME, SPLIT_SEED, PER_CATEGORY = "validation-1200", 20260401, 200
INSTRUCTION = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
MAX_TOKENS = 1024
REL_TOL, ABS_TOL = 1e-2, 0.01
ACCURACY = "accuracy"

# The opening sentence of each category, as the Kaggle file (and the generators) write it.
_DETECTORS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("bit_manipulation", re.compile(r"bit manipulation rule|8-bit binary numbers", re.I)),
    ("cipher", re.compile(r"secret encryption rules|decrypt the following text", re.I)),
    ("numeral", re.compile(r"different numeral system|Wonderland numeral system", re.I)),
    ("unit_conversion", re.compile(r"secret unit conversion|convert the following measurement", re.I)),
    ("gravity", re.compile(r"gravitational constant|falling distance", re.I)),
    ("equation", re.compile(r"transformation rules is applied to equations|determine the result for", re.I)),
)


def detect_category(prompt: str) -> str | None:
    """The puzzle category named by the prompt's wording; None when no category (or several) match."""
    found = [name for name, pattern in _DETECTORS if pattern.search(prompt)]
    return found[0] if len(found) == 1 else None


# ----------------------------------------------------------------------------------------- extraction


def boxed_contents(text: str) -> list[str]:
    """Contents of every complete `\\boxed{...}` in order (balanced-brace scan, backslash escapes)."""
    found: list[str] = []
    start = 0
    while (at := text.find("\\boxed", start)) >= 0:
        brace = at + len("\\boxed")
        while brace < len(text) and text[brace] in " \t":
            brace += 1
        if brace >= len(text) or text[brace] != "{":
            start = at + len("\\boxed")
            continue
        depth, pos, end = 0, brace, -1
        while pos < len(text):
            char = text[pos]
            if char == "\\":
                pos += 2
                continue
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    end = pos
                    break
            pos += 1
        if end < 0:  # never closed (truncated output): skip it, keep looking for later complete boxes
            start = brace + 1
            continue
        found.append(text[brace + 1 : end])
        start = end + 1
    return found


def extract_boxed(text: str) -> str | None:
    """The last complete `\\boxed{}` content, or None."""
    boxes = boxed_contents(text)
    return boxes[-1] if boxes else None


_MINIMAL_ESCAPES = "\\{}"
_LATEX_ESCAPES = "\\{}%$&#_^~ "
_WRAPPER = re.compile(r"\s*\\(?:text|mathrm|textbf|texttt|mathbf|boxed)\s*\{(.*)\}\s*", re.S)
_NUMBER_WITH_UNIT = re.compile(
    r"\s*\$?\s*(-?\d+(?:\.\d*)?|-?\.\d+)\s*(?:\\[,; ]|~)?\s*"
    r"(?:\\(?:text|mathrm)\s*\{\s*(?:m|meters?)\s*\}|m|meters?)?\s*\$?\s*"
)


def unescape(text: str, escapable: str = _LATEX_ESCAPES) -> str:
    """Undo backslash escapes of the given characters (`\\{` -> `{`, `\\\\` -> `\\`), left to right."""
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos] == "\\" and pos + 1 < len(text) and text[pos + 1] in escapable:
            out.append(text[pos + 1])
            pos += 2
        else:
            out.append(text[pos])
            pos += 1
    return "".join(out)


def escape_answer(answer: str) -> str:
    """How a gold answer is written inside `\\boxed{}`: as is when it survives extraction, else with
    `\\`, `{` and `}` backslash-escaped."""
    if boxed_contents(f"\\boxed{{{answer}}}") == [answer]:
        return answer
    return "".join("\\" + c if c in _MINIMAL_ESCAPES else c for c in answer)


def normalize(text: str) -> str:
    return " ".join(text.split()).casefold()


def candidates(extracted: str) -> list[str]:
    """Readings of one extracted box: raw, escapes undone, one outer wrapper removed."""
    readings = [extracted, unescape(extracted, _MINIMAL_ESCAPES), unescape(extracted)]
    wrapped = _WRAPPER.fullmatch(extracted)
    if wrapped:
        inner = wrapped.group(1)
        readings += [inner, unescape(inner, _MINIMAL_ESCAPES), unescape(inner)]
    return list(dict.fromkeys(readings))


def _as_number(text: str) -> float | None:
    match = _NUMBER_WITH_UNIT.fullmatch(text)
    return float(match.group(1)) if match else None


def answers_match(extracted: str | None, answer: str, category: str) -> bool:
    """Whether the extracted box content is the answer (see the module docstring for the rules)."""
    if extracted is None:
        return False
    gold = normalize(answer)
    readings = candidates(extracted)
    if any(normalize(r) == gold for r in readings):
        return True
    if category in NUMERIC_CATEGORIES:
        target = _as_number(answer)
        if target is None:
            return False
        for reading in readings:
            value = _as_number(reading)
            if value is not None and abs(value - target) <= max(REL_TOL * abs(target), ABS_TOL):
                return True
    return False


# ---------------------------------------------------------------------------------------- data loading


def read_train_csv(path: Path) -> list[dict[str, str]]:
    """Rows of the Kaggle train.csv (id,prompt,answer; multi-line quoted prompts)."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"id", "prompt", "answer"} <= set(reader.fieldnames):
            raise DataError(f"{path} has no id,prompt,answer header.", "Restore the Kaggle train.csv.")
        rows = [{"id": r["id"], "prompt": r["prompt"], "answer": r["answer"]} for r in reader]
    for number, row in enumerate(rows, start=2):
        if not all(isinstance(row[k], str) and row[k] for k in ("id", "prompt", "answer")):
            raise DataError(f"{path}: row {number} has an empty id, prompt or answer.")
    return rows


def train_csv_path(source: DataSource) -> Path:
    fix = (
        f"The Kaggle NVIDIA Nemotron reasoning challenge train.csv must be supplied: put it at "
        f"{TRAIN_FILE} inside a folder given by --data-dir (or {DATA_DIR_ENV}), or use the synthetic "
        "`alice-synth` suite, which needs no data."
    )
    if source.data_dir is None:
        raise DataError("The Alice puzzles have no Hugging Face hub copy and no data dir was given.", fix)
    path = source.data_dir / TRAIN_FILE
    if not path.is_file():
        raise DataError(f"The Alice puzzles file {path} does not exist.", fix)
    return path


def categorize(rows: Iterable[Mapping[str, str]], origin: str) -> list[str]:
    categories = []
    for row in rows:
        category = detect_category(row["prompt"])
        if category is None:
            raise DataError(f"Row {row['id']} of {origin} matches no Alice puzzle category.")
        categories.append(category)
    return categories


def category_counts(source: DataSource) -> dict[str, int]:
    """Rows per category in the whole Kaggle train.csv, in CATEGORIES order (for `harness suites show`)."""
    path = train_csv_path(source)
    found = categorize(read_train_csv(path), str(path))
    return {c: found.count(c) for c in CATEGORIES}


def interleave(groups: Mapping[str, Sequence[Any]]) -> list[Any]:
    """Round-robin over the categories in CATEGORIES order: c1[0], c2[0], ..., c1[1], ..."""
    out: list[Any] = []
    longest = max((len(g) for g in groups.values()), default=0)
    for index in range(longest):
        out += [groups[c][index] for c in CATEGORIES if c in groups and index < len(groups[c])]
    return out


def validation_rows(
    rows: Sequence[Mapping[str, str]], categories: Sequence[str], per_category: int
) -> list[int]:
    """Indices of the pinned stratified split: per category a seeded sample, then interleaved."""
    rng = random.Random(SPLIT_SEED)
    groups: dict[str, list[int]] = {}
    for category in CATEGORIES:
        members = [i for i, c in enumerate(categories) if c == category]
        groups[category] = rng.sample(members, min(per_category, len(members)))
    return interleave(groups)


# ---------------------------------------------------------------------------------------------- suites


class AliceBase(SuiteDefaults):
    """Requests, scoring, metrics and reward shared by `alice` and `alice-synth`."""

    version = "1.0"
    primary_metric = ACCURACY
    thinking_budget = 4096  # tokens of thinking when reasoning is on: puzzles reward long deliberation
    headline_metrics: tuple[str, ...] = (ACCURACY,)

    def default_settings(self) -> GenerationSettings:
        return GenerationSettings(max_tokens=MAX_TOKENS, temperature=0.0)

    def requests(self, sample: Sample, settings: GenerationSettings, api: ApiKind) -> list[Request]:
        content = sample.prompt_text + INSTRUCTION
        if api == "chat":
            return [Request(sample.id, settings, messages=(Message("user", content),))]
        text_settings = settings if settings.stop else replace(settings, stop=("\nQuestion:",))
        return [Request(sample.id, text_settings, prompt=f"Question: {content}\nAnswer:")]

    def score(self, sample: Sample, completions: Sequence[Completion]) -> Score:
        category = str(sample.metadata["category"])
        extracted = extract_boxed(completions[0].text)
        value = float(answers_match(extracted, sample.target, category))
        return Score(
            values={ACCURACY: value, f"{ACCURACY}_{category}": value}, extracted={"boxed": extracted}
        )

    def metrics(self, scores: Sequence[Score]) -> dict[str, Metric]:
        result = {ACCURACY: summarize(ACCURACY, [s.values[ACCURACY] for s in scores])}
        for category in CATEGORIES:
            name = f"{ACCURACY}_{category}"
            values = [s.values[name] for s in scores if name in s.values]
            if values:
                result[name] = summarize(name, values)
        return result

    def reward(self, sample: Sample, text: str) -> float:
        return float(answers_match(extract_boxed(text), sample.target, str(sample.metadata["category"])))

    def gold_response(self, sample: Sample) -> str | None:
        return f"The answer is \\boxed{{{escape_answer(sample.target)}}}"


class Alice(AliceBase):
    name = "alice"
    description = __doc__ or ""

    def __init__(self, per_category: int = PER_CATEGORY) -> None:
        self.per_category = per_category

    def pinned_settings(self) -> Mapping[str, Any]:
        return {
            "split": SPLIT_NAME if self.per_category == PER_CATEGORY else f"stratified-{self.per_category}",
            "per_category": self.per_category,
            "split_seed": SPLIT_SEED,
            "num_fewshot": 0,
            "instruction": INSTRUCTION,
            "extraction": "last-complete-boxed",
            "numeric_tolerance": {"rel": REL_TOL, "abs": ABS_TOL, "categories": sorted(NUMERIC_CATEGORIES)},
            **self.reasoning.pinned(),
        }

    def load(self, source: DataSource, limit: int | None) -> LoadedData:
        path = train_csv_path(source)
        rows = read_train_csv(path)
        categories = categorize(rows, str(path))
        chosen = validation_rows(rows, categories, self.per_category)
        samples = [
            Sample(
                id=f"alice-{rows[i]['id']}",
                messages=(Message("user", rows[i]["prompt"]),),
                target=rows[i]["answer"],
                metadata={"category": categories[i], "kaggle_id": rows[i]["id"], "split": SPLIT_NAME},
            )
            for i in chosen
        ]
        digest = rows_hash([rows[i] for i in chosen], ("id", "prompt", "answer"))
        picked = samples if limit is None else samples[:limit]
        return LoadedData(tuple(picked), len(samples), f"dir:{path}", digest)

    def category_counts(self, source: DataSource) -> dict[str, int]:
        """Rows per detected category over the whole train.csv (for `harness suites show alice`)."""
        return category_counts(source)
