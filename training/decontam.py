"""Decontamination: which training rows overlap the prompts (or reference answers) of the registered suites.

What is indexed: for every sample of every registered suite (or of `suites`), its prompt (all message
contents of `sample.messages`: the test item only, never the few-shot exemplars a suite adds later) and
its reference answer (`metadata["solution"]` when the suite keeps a worked solution there, as GSM8K does,
else `sample.target`). A sample whose prompt and reference equal an earlier one (safety-harmbench and
safety-xstest are subsets of safety) is indexed once, under the first suite in name order. A suite whose
data cannot be loaded is reported as not checked, never skipped silently.

Text is normalized as in GPT-3 / OLMES / Tulu 3 decontamination: lowercase, every non-alphanumeric
character to a space, whitespace tokens. Every string leaf of a training row (chat `messages`,
`chosen`/`rejected`, `prompt`, `ground_truth`, anything) is checked, and a row is contaminated by a sample
when either holds:

- exact: the whole normalized prompt appears inside one field (prompts of at least 8 tokens), or is the
  whole field (prompts of 4-7 tokens; shorter ones, such as XSTest's "What is LSD?", are never flagged);
- ngram: the row shares 13-grams with the sample, and in the sample's prompt or in its reference those
  shared 13-grams cover at least 13 content tokens and at least 40% of its content tokens (or at least
  50 content tokens, for long samples such as HarmBench contexts and MBPP code).

Boilerplate: a token is boilerplate, not content, when a 5-gram containing it occurs in more than 5
distinct samples of the same suite (document frequency, per suite). 13-grams made only of boilerplate are
not indexed, and boilerplate tokens count neither for nor against coverage. This removes the Alice opening
sentences (in 200 samples per category), MBPP's "You are an expert Python programmer, and here is your
task:" frame (499 of 500), IFEval's recurring instruction sentences, and the short fixed phrases between
Alice data ("Now, determine the falling distance for t = ... given d = 0.5*g*t^2.") that 13-gram
document frequency alone misses. HarmBench contexts shared by 3 behaviors stay content (df 3 <= 5).

Symbol-only prompts (116 of Alice's 200 equation puzzles normalize to their template alone) are matched
on raw text instead: case-folded, whitespace collapsed, contained in a field.

Measurements behind the defaults (shared data; all 9 suites: 5,917 samples, 5,067 distinct):
- Any shared 13-gram with a content token flags (no coverage rule): 7 of the 100 open-instruct
  preference rows (IFEval instruction sentences such as "Your entire response should be in English, and
  in all lowercase letters. No capital letters are allowed.", which Tulu's IF data shares with IFEval),
  10 of 7,473 GSM8K train rows (6 only share formulaic solution steps: "2 weeks * 7 days/week = 14"),
  5,099 of the 8,300 Kaggle rows outside the Alice split (legitimate training data), 1,813 of 3,000
  puzzles generated with another seed. Plain 13-gram df (no token boilerplate): 5,203 Kaggle rows.
- This rule: 0 of the preference, SFT and RLVR rows (the RLVR GSM8K rows are train-split questions), 0
  of those 8,300 Kaggle rows and 3,000 generated puzzles, all 1,200 split rows of Kaggle's train.csv
  (exact), and 3 GSM8K train rows, all near-duplicates of test problems: lines 1315 and 5163 ("A train
  travels 270 miles in 3 hours. At the same rate, how many additional hours would it take to travel an
  additional 180 miles?") of gsm8k-test-0602 (a plane, 76%), line 21 (Bella's stamps) of
  gsm8k-test-0632 (Max's stamps, 45%).
- Light paraphrases (300 GSM8K test questions, k random words replaced): caught 91% at k=2, 79% at k=3,
  67% at k=4, 39% at k=6. At k=3, 14% keep no 13-gram at all (nothing n-gram based can see them).
- Alternatives: coverage 0.3 catches 86% at k=3 but also flags GSM8K train line 407, which shares one
  sentence with test 581; 0.5 (Tulu 3's threshold, with 8-grams) catches 69%. max_df 10 flags 2
  preference rows (IFEval sentences); 3 gives the same counts as 5. min_tokens 1 flags a Kaggle numeral
  puzzle that asks for the same number as a test one with two equal examples (9 content tokens, 60%).

Not caught: paraphrases that leave no 13 consecutive tokens unchanged, translations, reformatted numbers
(a question with its numbers changed is caught only through its unchanged wording), answers without their
questions when the answer is shorter than 13 tokens, prompts of 1-3 tokens, and anything in training data
read from a file type other than JSONL, JSON arrays, CSV or plain text.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.data import DataSource
from harness.errors import ContaminationError, DataError, HarnessError, UsageError
from training.ngrams import Match, Rule, SampleIndex, SampleText, collapse, index_suite, match_row

EXAMPLE_CHARS = 100
MAX_RECORDED = 1000  # overlaps kept in a manifest record; the counts cover all of them


@dataclass(frozen=True)
class Overlap:
    file: str  # training file path as given
    line: int  # 1-based row/line in that file
    field: str  # where in the row, e.g. "messages[1].content", "chosen[0].content", "prompt"
    suite: str  # registered suite name
    sample_id: str  # the suite sample id (e.g. gsm8k-test-0042)
    kind: Literal["exact", "ngram"]
    shared_ngrams: int  # how many of the sample's distinct n-grams the row contains
    sample_ngrams: int  # how many distinct n-grams the sample has
    example: str  # one shared n-gram (normalized text), or the exact text, shortened, for the report
    coverage: float = 0.0  # share of the sample part's content tokens covered by the shared n-grams
    part: str = "prompt"  # the sample part that coverage is about: "prompt" or "reference"


@dataclass(frozen=True)
class SuiteStats:
    name: str
    samples: int  # loaded from the suite
    indexed: int  # indexed under this name; the rest equal a sample of an earlier suite (or of this one)


@dataclass(frozen=True)
class ContaminationReport:
    files: tuple[str, ...]
    suites: tuple[str, ...]  # the suites checked
    n: int
    rows_scanned: int
    overlaps: tuple[Overlap, ...]
    unchecked: tuple[tuple[str, str], ...] = ()  # (suite, why its data could not be loaded)
    stats: tuple[SuiteStats, ...] = ()
    rule: Rule = field(default_factory=Rule)
    index_seconds: float = 0.0
    scan_seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.overlaps

    def contaminated_rows(self, suite: str | None = None) -> int:
        return len({(o.file, o.line) for o in self.overlaps if suite is None or o.suite == suite})

    def first_hits(self, limit: int) -> list[str]:
        return [
            f"{o.file}:{o.line} {o.field} ~ {o.suite} {o.sample_id} ({o.kind}, {o.coverage:.0%} of its "
            f"{o.part}, {o.shared_ngrams}/{o.sample_ngrams} {self.n}-grams)"
            for o in self.overlaps[:limit]
        ]

    def summary(self, max_lines: int = 10) -> str:
        from harness.table import render

        hits = Counter(o.suite for o in self.overlaps)
        rows = [
            [s.name, str(s.samples), str(s.indexed), str(self.contaminated_rows(s.name)), str(hits[s.name])]
            for s in self.stats
        ]
        lines = [
            f"decontam: {self.rows_scanned} rows in {len(self.files)} file(s) against {len(self.suites)} "
            f"suite(s), {self.n}-grams (index {self.index_seconds:.1f} s, scan {self.scan_seconds:.1f} s)",
            render(["suite", "samples", "indexed", "rows", "hits"], rows, right=(1, 2, 3, 4)),
        ]
        lines += [f"not checked: {name}: {why}" for name, why in self.unchecked]
        if self.overlaps:
            lines.append("first hits:")
            lines += [f"  {hit}" for hit in self.first_hits(max_lines)]
            lines += [f"  e.g. {o.example!r}" for o in self.overlaps[:1]]
            more = len(self.overlaps) - max_lines
            lines += [f"  ... and {more} more"] if more > 0 else []
        verdict = (
            "clean"
            if self.clean
            else f"CONTAMINATED: {self.contaminated_rows()} row(s), {len(self.overlaps)} hit(s)"
        )
        lines.append(f"result: {verdict}")
        return "\n".join(lines)

    def to_record(self) -> dict[str, Any]:
        hits = Counter(o.suite for o in self.overlaps)
        return {
            "clean": self.clean,
            "files": list(self.files),
            "suites": list(self.suites),
            "unchecked": {name: why for name, why in self.unchecked},
            "n": self.n,
            "rule": asdict(self.rule),
            "rows_scanned": self.rows_scanned,
            "rows_contaminated": self.contaminated_rows(),
            "hits": len(self.overlaps),
            "per_suite": {
                s.name: {
                    "samples": s.samples,
                    "indexed": s.indexed,
                    "rows": self.contaminated_rows(s.name),
                    "hits": hits[s.name],
                }
                for s in self.stats
            },
            "overlaps": [asdict(o) for o in self.overlaps[:MAX_RECORDED]],
            "overlaps_truncated": max(0, len(self.overlaps) - MAX_RECORDED),
            "seconds": {"index": round(self.index_seconds, 3), "scan": round(self.scan_seconds, 3)},
        }


@dataclass(frozen=True)
class DecontamIndex:
    """Every checked suite's samples, indexed once; scan any number of files against it."""

    index: SampleIndex
    suites: tuple[str, ...]
    stats: tuple[SuiteStats, ...]
    unchecked: tuple[tuple[str, str], ...]
    seconds: float


def _reference(sample: Any) -> str:
    solution = sample.metadata.get("solution")
    return solution if isinstance(solution, str) else str(sample.target)


def _suite_texts(name: str, data: DataSource) -> list[SampleText]:
    import suites

    loaded = suites.get_suite(name).load(data, None)
    return [SampleText(s.id, "\n".join(m.content for m in s.messages), _reference(s)) for s in loaded.samples]


def build_index(
    data: DataSource, suites: Sequence[str] | None = None, n: int = 13, *, rule: Rule | None = None
) -> DecontamIndex:
    """Load and index the suites (all registered ones by default). A suite named in `suites` that cannot
    load is an error; with the default, it is listed as not checked. `rule` overrides every threshold."""
    import suites as registry

    started = time.perf_counter()
    names = list(suites) if suites else registry.suite_names()
    for name in names:
        registry.SUITES.get(name)  # unknown names fail before any data is loaded
    rule = rule or Rule(n=n)
    samples, stats, unchecked, seen = [], [], [], set()
    for name in names:
        try:
            texts = _suite_texts(name, data)
        except HarnessError as error:
            if suites:
                raise
            unchecked.append((name, error.message))
            continue
        indexed = 0
        for text, sample in zip(texts, index_suite(name, texts, rule), strict=True):
            key = (collapse(text.prompt), collapse(text.reference))
            if key not in seen:
                seen.add(key)
                samples.append(sample)
                indexed += 1
        stats.append(SuiteStats(name, len(texts), indexed))
    if not stats:
        raise DataError(
            "No suite's data could be loaded, so nothing was checked: "
            + "; ".join(f"{name}: {why}" for name, why in unchecked),
            "Point --data-dir (or HARNESS_DATA_DIR) at the benchmark files, e.g. ../shared/data.",
        )
    checked = tuple(s.name for s in stats)
    seconds = time.perf_counter() - started
    return DecontamIndex(SampleIndex.build(samples, rule), checked, tuple(stats), tuple(unchecked), seconds)


def string_leaves(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a JSON value, with its path (messages[1].content)."""
    if isinstance(value, str):
        yield path or "text", value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from string_leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from string_leaves(item, f"{path}[{i}]")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{path}:{number} is not valid JSON ({error.msg}).",
                    "Fix or remove that line: a JSONL training file holds one JSON object per line.",
                ) from None


def _json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{error.lineno} is not valid JSON ({error.msg}).", "Fix the file.") from None
    if not isinstance(rows, list):
        raise DataError(f"{path} is not a JSON array of rows.", "Use a JSON array, or JSONL (one per line).")
    yield from enumerate(rows, start=1)  # the row's position in the array


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        start = 2  # the physical line a record starts on (quoted fields may span lines)
        for row in reader:
            yield start, {k: v for k, v in row.items() if isinstance(k, str)}
            start = reader.line_num + 1


def _text_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


READERS = {".jsonl": _jsonl_rows, ".json": _json_rows, ".csv": _csv_rows, ".txt": _text_rows}


def read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, row) for every row of a training file, by its suffix."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataError(
            f"The training file {path} {what}.", "Pass the path of a .jsonl, .json, .csv or .txt file."
        )
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise UsageError(
            f"Cannot read training file {path}: unknown file type '{path.suffix}'.",
            f"Decontamination reads {', '.join(READERS)} files.",
        )
    try:
        yield from reader(path)
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text ({error.reason}).", "Convert it to UTF-8.") from None


def _overlap(file: str, line: int, match: Match) -> Overlap:
    example = (
        match.example if len(match.example) <= EXAMPLE_CHARS else match.example[: EXAMPLE_CHARS - 3] + "..."
    )
    s = match.sample
    return Overlap(
        file, line, match.field, s.suite, s.sample_id, match.kind, match.shared_ngrams, s.ngrams, example,
        match.coverage, match.part or "prompt",
    )  # fmt: skip


def scan_index(paths: Sequence[Path], index: DecontamIndex) -> ContaminationReport:
    started = time.perf_counter()
    overlaps: list[Overlap] = []
    rows = 0
    for path in paths:
        for line, row in read_rows(Path(path)):
            rows += 1
            for match in match_row(string_leaves(row), index.index):
                overlaps.append(_overlap(str(path), line, match))
    return ContaminationReport(
        files=tuple(str(p) for p in paths),
        suites=index.suites,
        n=index.index.rule.n,
        rows_scanned=rows,
        overlaps=tuple(overlaps),
        unchecked=index.unchecked,
        stats=index.stats,
        rule=index.index.rule,
        index_seconds=index.seconds,
        scan_seconds=time.perf_counter() - started,
    )


def scan(
    paths: Sequence[Path],
    data: DataSource,
    suites: Sequence[str] | None = None,
    n: int = 13,
    *,
    rule: Rule | None = None,
) -> ContaminationReport:
    return scan_index(paths, build_index(data, suites, n, rule=rule))


def contamination_error(report: ContaminationReport, max_hits: int = 5) -> ContaminationError:
    per_suite = Counter(o.suite for o in report.overlaps)
    counts = ", ".join(f"{suite}: {count}" for suite, count in sorted(per_suite.items()))
    return ContaminationError(
        f"Training data overlaps evaluation suites: {report.contaminated_rows()} row(s) of "
        f"{', '.join(report.files)} ({counts} hit(s)). First hits: "
        + "; ".join(report.first_hits(max_hits))
        + ".",
        "Remove those rows (list them all with `harness decontam FILE`), or pass --allow-contamination to "
        "train anyway: the waiver, with every overlap, is recorded in the checkpoint's manifest.",
    )


def require_clean(
    paths: Sequence[Path],
    data: DataSource,
    allow_contamination: bool,
    suites: Sequence[str] | None = None,
    n: int = 13,
) -> dict[str, Any] | None:
    """Clean -> None. Contaminated and not allowed -> raise ContaminationError whose message names the
    files, lines, suites and sample ids of the first hits and says `--allow-contamination` waives it.
    Contaminated and allowed -> return {"waived": True, **report.to_record()} for the manifest."""
    report = scan(paths, data, suites, n)
    if report.clean:
        return None
    if not allow_contamination:
        raise contamination_error(report)
    return {"waived": True, **report.to_record()}
