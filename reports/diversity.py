"""The report's diversity and verbosity section: how varied the responses are, and how long they are
when right and when wrong (issue 21, item 4).

Every number is read from the runs' per-sample records. A response is a completion text, or, in a
reasoning run, its answer part (`SampleRecord.reasoning`; a response that ended inside its thinking has
no answer and counts as the empty text). Tokens are the lower-cased, whitespace-split words.

- Diversity: distinct-n (unique n-grams / all n-grams, pooled over the texts; n = 1, 2) and self-BLEU
  (the mean, over the texts, of the BLEU-4 of each text against all the others as references; higher is
  less diverse). (a) Within a prompt: over the `--samples N` responses of each prompt with N > 1, then
  averaged over those prompts. (b) Across prompts: over the first response of each prompt, on at most
  ACROSS_PROMPTS prompts (those whose id has the lowest sha256, so checkpoints scored on the same ids
  get the same subset; self-BLEU is quadratic in the number of texts).
- Verbosity: the first response's length (characters, words; for MBPP also the extracted code's
  characters and lines) of the samples whose primary per-sample score is 1 against those whose score is
  0 (graded scores in between are left out), with the difference's Welch t interval. Safety runs also
  compare refusals with compliances (the judge's `verdict`) and show the share of refusals that
  apologize or offer an alternative.
- Paired: between consecutive checkpoints of the report, per suite, the per-sample difference (later
  minus earlier) of the first response's length in characters, and of the within-prompt self-BLEU where
  both have N > 1, with harness.gating.paired.paired_delta's interval.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.gating.paired import paired_delta
from harness.gating.paired_intervals import t_quantile
from harness.runs.catalog import SUITE_ORDER, CheckpointView, RunView
from harness.runs.scores import score_key
from harness.runs.store import SampleRecord
from harness.stats import wilson_interval
from suites.mbpp import extract_code

ACROSS_PROMPTS = 200  # self-BLEU across prompts is quadratic: at most this many prompts
BLEU_ORDER = 4
PAIRED_RESAMPLES = 2000  # lengths take many distinct values: the bootstrap's cost grows with them
APOLOGY = re.compile(r"sorry|apolog", re.IGNORECASE)
ALTERNATIVE = re.compile(r"instead|however, i can", re.IGNORECASE)

Grams = Counter[tuple[str, ...]]


def tokens(text: str) -> list[str]:
    return text.lower().split()


def ngrams(words: Sequence[str], n: int) -> Grams:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def distinct_n(texts: Sequence[str], n: int) -> float | None:
    """Unique n-grams over all n-grams of the texts (each text's n-grams, pooled); None: no n-gram."""
    pooled: Grams = Counter()
    for text in texts:
        pooled.update(ngrams(tokens(text), n))
    total = sum(pooled.values())
    return len(pooled) / total if total else None


def _bleu_from_counts(matches: Sequence[int], totals: Sequence[int], length: int, ref_length: int) -> float:
    """BLEU-4 from clipped matches and hypothesis n-gram counts per order (1..4)."""
    if length == 0 or matches[0] == 0:
        return 0.0
    log_precision = math.log(matches[0] / totals[0])
    log_precision += sum(math.log((m + 1) / (t + 1)) for m, t in zip(matches[1:], totals[1:], strict=True))
    brevity = 1.0 if length > ref_length else math.exp(1 - ref_length / length)
    return brevity * math.exp(log_precision / BLEU_ORDER)


def _closest_length(length: int, lengths: Sequence[int]) -> int:
    return min(lengths, key=lambda r: (abs(r - length), r))  # ties: the shorter reference (as sacrebleu)


def bleu(hypothesis: str, references: Sequence[str]) -> float:
    """Sentence BLEU-4 of `hypothesis` against `references`: uniform weights over n = 1..4, n-gram
    counts clipped by their largest count in any reference, and the brevity penalty exp(1 - r/c) when
    the hypothesis length c is not above r, the reference length closest to c (ties: the shorter).
    Smoothing: +1 to the matches and to the total of the orders 2..4 (p_n = (m_n + 1) / (t_n + 1), Lin and
    Och's BLEU+1), none on unigrams: a text sharing no word with the references scores exactly 0, and
    identical texts exactly 1."""
    words = tokens(hypothesis)
    refs = [tokens(r) for r in references]
    matches, totals = [], []
    for n in range(1, BLEU_ORDER + 1):
        grams = ngrams(words, n)
        most: Grams = Counter()
        for ref in refs:
            most |= ngrams(ref, n)  # | keeps the larger count of each n-gram
        matches.append(sum(min(c, most[g]) for g, c in grams.items()))
        totals.append(sum(grams.values()))
    return _bleu_from_counts(matches, totals, len(words), _closest_length(len(words), [len(r) for r in refs]))


def self_bleu(texts: Sequence[str]) -> float | None:
    """The mean over the texts of bleu(text, all the other texts); None for fewer than two texts.
    Linear in the total length: per n-gram the two largest counts over the texts give the largest count
    among "all but one" (the largest, unless that text holds it, then the second)."""
    if len(texts) < 2:
        return None
    words = [tokens(t) for t in texts]
    lengths = [len(w) for w in words]
    per_order = [[ngrams(w, n) for w in words] for n in range(1, BLEU_ORDER + 1)]
    tops: list[dict[tuple[str, ...], tuple[int, int, int]]] = []  # gram -> (best, its text, second)
    for counters in per_order:
        top: dict[tuple[str, ...], tuple[int, int, int]] = {}
        for index, counter in enumerate(counters):
            for gram, count in counter.items():
                best, owner, second = top.get(gram, (0, -1, 0))
                if count > best:
                    top[gram] = (count, index, best)
                elif count > second:
                    top[gram] = (best, owner, count)
        tops.append(top)
    scores = []
    for i in range(len(texts)):
        matches = [
            sum(min(c, top[g][2] if top[g][1] == i else top[g][0]) for g, c in counters[i].items())
            for counters, top in zip(per_order, tops, strict=True)
        ]
        totals = [sum(counters[i].values()) for counters in per_order]
        others = lengths[:i] + lengths[i + 1 :]
        scores.append(_bleu_from_counts(matches, totals, lengths[i], _closest_length(lengths[i], others)))
    return statistics.fmean(scores)


def responses(record: SampleRecord) -> list[str]:
    """The record's responses in order: answer parts in a reasoning run (empty when there is none)."""
    texts = [text for c in record.completions for text in c.texts]
    if record.reasoning and len(record.reasoning) == len(texts):
        return [part.answer or "" for part in record.reasoning]
    return texts


def first_response(record: SampleRecord) -> str:
    found = responses(record)
    return found[0] if found else ""


def across_sample(records: Sequence[SampleRecord], limit: int = ACROSS_PROMPTS) -> list[SampleRecord]:
    """At most `limit` records: those whose id has the lowest sha256 (the same ids on every checkpoint)."""
    return sorted(records, key=lambda r: hashlib.sha256(r.id.encode()).hexdigest())[:limit]


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


@dataclass(frozen=True)
class DiversityRow:
    checkpoint: str
    suite: str
    prompts: int
    samples_per_prompt: int  # the most responses any prompt has
    within_prompts: int  # prompts with more than one response
    within_distinct1: float | None
    within_distinct2: float | None
    within_self_bleu: float | None
    across_prompts: int  # prompts in the across-prompts sample
    across_distinct1: float | None
    across_distinct2: float | None
    across_self_bleu: float | None


def diversity_row(label: str, run: RunView, records: Sequence[SampleRecord]) -> DiversityRow:
    groups = [texts for texts in (responses(r) for r in records) if len(texts) > 1]
    firsts = [first_response(r) for r in across_sample(records)]
    return DiversityRow(
        checkpoint=label,
        suite=run.suite,
        prompts=len(records),
        samples_per_prompt=max((len(responses(r)) for r in records), default=0),
        within_prompts=len(groups),
        within_distinct1=_mean([distinct_n(g, 1) for g in groups]),
        within_distinct2=_mean([distinct_n(g, 2) for g in groups]),
        within_self_bleu=_mean([self_bleu(g) for g in groups]),
        across_prompts=len(firsts),
        across_distinct1=distinct_n(firsts, 1),
        across_distinct2=distinct_n(firsts, 2),
        across_self_bleu=self_bleu(firsts),
    )


@dataclass(frozen=True)
class LengthContrast:
    """Mean length of two groups of responses and the difference (a - b) with its Welch 95% interval."""

    checkpoint: str
    suite: str
    measure: str  # response chars | response words | code chars | code lines
    group_a: str  # correct | refusal
    group_b: str  # incorrect | compliance
    n_a: int
    mean_a: float | None
    n_b: int
    mean_b: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None


def welch_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    """(mean(a) - mean(b), 95% low, high): Welch's t interval, the Welch-Satterthwaite degrees of freedom
    rounded down (wider, never narrower). The interval is None below two values a side or without spread."""
    if not a or not b:
        return None, None, None
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return diff, None, None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb <= 0:
        return diff, None, None
    df = (va + vb) ** 2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    half = t_quantile(max(1, math.floor(df)), 0.95) * math.sqrt(va + vb)
    return diff, diff - half, diff + half


def contrast(
    label: str, suite: str, measure: str, groups: tuple[str, str], a: Sequence[float], b: Sequence[float]
) -> LengthContrast:
    diff, low, high = welch_interval(a, b)
    return LengthContrast(
        label, suite, measure, groups[0], groups[1], len(a), _mean(a), len(b), _mean(b), diff, low, high
    )


def is_mbpp(suite: str) -> bool:
    return suite.startswith("mbpp")


def is_safety(suite: str) -> bool:
    return suite.startswith("safety")


def _measures(suite: str) -> dict[str, Callable[[str], float]]:
    found: dict[str, Callable[[str], float]] = {
        "response chars": lambda t: float(len(t)),
        "response words": lambda t: float(len(t.split())),
    }
    if is_mbpp(suite):
        found["code chars"] = lambda t: float(len(extract_code(t)))
        found["code lines"] = lambda t: float(sum(1 for line in extract_code(t).splitlines() if line.strip()))
    return found


def verbosity_rows(label: str, run: RunView, records: Sequence[SampleRecord]) -> list[LengthContrast]:
    """Length of correct (primary per-sample score 1) vs incorrect (0) first responses, per measure;
    safety runs add refusals vs compliances."""
    rows: list[LengthContrast] = []
    found = score_key(run.primary, records)
    splits: list[tuple[tuple[str, str], list[str], list[str]]] = []
    if found is not None:
        key = found[0]
        right = [first_response(r) for r in records if r.scores[key] == 1.0]
        wrong = [first_response(r) for r in records if r.scores[key] == 0.0]
        splits.append((("correct", "incorrect"), right, wrong))
    if is_safety(run.suite):
        refusals, compliances = refusal_split(records)
        splits.append((("refusal", "compliance"), refusals, compliances))
    for groups, a, b in splits:
        for measure, length in _measures(run.suite).items():
            rows.append(
                contrast(label, run.suite, measure, groups, [length(t) for t in a], [length(t) for t in b])
            )
    return rows


def refusal_split(records: Sequence[SampleRecord]) -> tuple[list[str], list[str]]:
    """First responses the judge called refusals, and those it called compliances (judge errors: neither)."""
    verdicts = [(str(r.extracted.get("verdict") or ""), first_response(r)) for r in records]
    return [t for v, t in verdicts if v == "refusal"], [t for v, t in verdicts if v == "compliance"]


@dataclass(frozen=True)
class Share:
    count: int
    n: int
    ci_low: float | None
    ci_high: float | None

    @property
    def value(self) -> float | None:
        return self.count / self.n if self.n else None


def share(count: int, n: int) -> Share:
    low, high = wilson_interval(count, n)
    return Share(count, n, None if math.isnan(low) else low, None if math.isnan(high) else high)


@dataclass(frozen=True)
class RefusalStyle:
    checkpoint: str
    suite: str
    refusals: int
    apologize: Share  # refusals saying "sorry" or "apolog..."
    alternative: Share  # refusals saying "instead" or "however, i can"


def refusal_style(label: str, run: RunView, records: Sequence[SampleRecord]) -> RefusalStyle:
    refusals, _ = refusal_split(records)
    n = len(refusals)
    return RefusalStyle(
        checkpoint=label,
        suite=run.suite,
        refusals=n,
        apologize=share(sum(bool(APOLOGY.search(t)) for t in refusals), n),
        alternative=share(sum(bool(ALTERNATIVE.search(t)) for t in refusals), n),
    )


@dataclass(frozen=True)
class PairedRow:
    suite: str
    a: str  # the earlier checkpoint
    b: str  # the later one
    measure: str
    n: int  # samples in both
    mean_a: float
    mean_b: float
    delta: float  # mean_b - mean_a
    ci_low: float | None  # None: the method gives no interval (a single pair, or no spread)
    ci_high: float | None
    method: str


def paired_rows(
    suite: str, a: CheckpointView, b: CheckpointView, records_a: Sequence[SampleRecord],
    records_b: Sequence[SampleRecord],
) -> list[PairedRow]:  # fmt: skip
    """Per-sample differences b - a on the samples both scored: first-response characters, and the
    within-prompt self-BLEU where both have several responses for the sample."""
    by_id = {r.id: r for r in records_b}
    common = [(r, by_id[r.id]) for r in records_a if r.id in by_id]
    measures: list[tuple[str, list[float], list[float]]] = [
        (
            "response chars",
            [float(len(first_response(x))) for x, _ in common],
            [float(len(first_response(y))) for _, y in common],
        )
    ]
    bleus = [(self_bleu(responses(x)), self_bleu(responses(y))) for x, y in common]
    both = [(x, y) for x, y in bleus if x is not None and y is not None]
    measures.append(("self-BLEU within prompt", [x for x, _ in both], [y for _, y in both]))
    rows = []
    for measure, va, vb in measures:
        if not va:
            continue
        d = paired_delta(va, vb, resamples=PAIRED_RESAMPLES)
        rows.append(
            PairedRow(suite, a.label, b.label, measure, d.n, d.mean_a, d.mean_b, d.delta, _finite(d.ci_low),
                      _finite(d.ci_high), d.method)
        )  # fmt: skip
    return rows


@dataclass(frozen=True)
class DiversitySection:
    diversity: tuple[DiversityRow, ...]
    verbosity: tuple[LengthContrast, ...]
    refusal_styles: tuple[RefusalStyle, ...]
    paired: tuple[PairedRow, ...]
    across_limit: int = ACROSS_PROMPTS


def _suites(order: Sequence[CheckpointView]) -> list[str]:
    present = {s for c in order for s in c.runs}
    return [s for s in SUITE_ORDER if s in present] + sorted(present - set(SUITE_ORDER))


def diversity_section(
    order: Sequence[CheckpointView], samples: Callable[[RunView], Sequence[SampleRecord]]
) -> DiversitySection:
    """The section for the report's checkpoints in order (paired: order[i] -> order[i + 1])."""
    suites = _suites(order)
    cells = [(s, c, c.runs[s]) for s in suites for c in order if s in c.runs]
    paired: list[PairedRow] = []
    for a, b in itertools.pairwise(order):
        for s in suites:
            if s in a.runs and s in b.runs:
                paired += paired_rows(s, a, b, samples(a.runs[s]), samples(b.runs[s]))
    return DiversitySection(
        diversity=tuple(diversity_row(c.label, run, samples(run)) for _, c, run in cells),
        verbosity=tuple(row for _, c, run in cells for row in verbosity_rows(c.label, run, samples(run))),
        refusal_styles=tuple(
            refusal_style(c.label, run, samples(run)) for s, c, run in cells if is_safety(s)
        ),
        paired=tuple(paired),
    )
