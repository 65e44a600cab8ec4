"""The n-gram side of decontamination: normalization, boilerplate, the index of suite samples, and the
per-row matching rule. The rule in words, with the measurements behind its defaults, is in
training/decontam.py; this module only implements it.

Hashes are Python's own `hash()` of token tuples: the index is built and queried in one process, so the
per-process hash seed does not matter, and 64-bit collisions are negligible at this size (~0.3M n-grams).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import accumulate
from typing import Literal

_NON_ALNUM = re.compile(r"[\W_]+")

PartName = Literal["prompt", "reference"]


def normalize(text: str) -> list[str]:
    """Lowercase, every run of non-alphanumerics to one space, split on whitespace (GPT-3 / OLMES style)."""
    return _NON_ALNUM.sub(" ", text.lower()).split()


def grams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(tokens[i:] for i in range(n)), strict=False))


@dataclass(frozen=True)
class Rule:
    """Every threshold of the matching rule (recorded in the report, so a waiver says what was checked)."""

    n: int = 13  # n-gram length, in normalized tokens
    max_df: int = 5  # a 5-gram in more distinct samples of one suite than this is boilerplate
    boilerplate_gram: int = 5  # the length of those boilerplate-detecting grams (at most n)
    min_coverage: float = 0.4  # share of a sample part's content tokens the row's shared n-grams cover
    min_tokens: int = 0  # ... and at least this many content tokens covered (0: n, one n-gram's worth)
    long_run: int = 50  # this many covered content tokens flag a row whatever the coverage (long samples)
    min_contained: int = 8  # prompts this long are flagged when contained anywhere in a field
    min_whole: int = 4  # shorter prompts (down to this) only when they are a whole field

    def __post_init__(self) -> None:
        if self.n < 3:
            raise ValueError(f"the n-gram length must be at least 3, not {self.n}")

    @property
    def min_covered(self) -> int:
        return self.min_tokens or self.n

    @property
    def gram_for_boilerplate(self) -> int:
        return min(self.boilerplate_gram, self.n)


@dataclass(frozen=True)
class Part:
    """One text of a sample (its prompt, or its reference answer), ready for coverage counting."""

    name: PartName
    starts: Mapping[int, tuple[int, ...]]  # n-gram hash -> start positions (n-grams with a content token)
    content: frozenset[int]  # positions of the tokens that are not boilerplate

    def covered(self, shared: Iterable[int], n: int) -> int:
        """Content tokens inside the n-grams of `shared` that occur in this part."""
        hit: set[int] = set()
        for h in shared:
            for start in self.starts.get(h, ()):
                hit.update(range(start, start + n))
        return len(hit & self.content)


@dataclass(frozen=True)
class IndexedSample:
    suite: str
    sample_id: str
    prompt: tuple[str, ...]  # normalized prompt tokens, for the exact match
    parts: tuple[Part, ...]
    ngrams: int  # distinct indexed n-grams over all parts
    raw: str | None = None  # collapse(prompt) when normalization leaves too little content to match on
    raw_keys: tuple[str, ...] = ()  # its collapsed lines that are rare in the suite: candidate lookup
    anchor: int = 0  # where the exact-match lookup window starts: at the first content token


def collapse(text: str) -> str:
    """Raw text for symbol-heavy prompts: case-folded, whitespace runs to one space."""
    return " ".join(text.split()).casefold()


def _boilerplate(tokens: Sequence[str], df: Mapping[int, int], rule: Rule) -> bytearray:
    """1 at each token inside a boilerplate gram (one that occurs in more than max_df samples)."""
    m = rule.gram_for_boilerplate
    boiler = bytearray(len(tokens))
    for k, gram in enumerate(grams(tokens, m)):
        if df[hash(gram)] > rule.max_df:
            boiler[k : k + m] = b"\x01" * m
    return boiler


def _part(name: PartName, tokens: Sequence[str], boiler: bytearray, rule: Rule) -> Part | None:
    content_before = [0, *accumulate(1 - b for b in boiler)]  # prefix sums: content tokens before i
    starts: dict[int, list[int]] = defaultdict(list)
    for j, gram in enumerate(grams(tokens, rule.n)):
        if content_before[j + rule.n] > content_before[j]:  # all-boilerplate n-grams are not indexed
            starts[hash(gram)].append(j)
    if not starts:
        return None
    content = frozenset(i for i, b in enumerate(boiler) if not b)
    return Part(name, {h: tuple(v) for h, v in starts.items()}, content)


@dataclass(frozen=True)
class SampleText:
    """What gets indexed of one suite sample: the prompt the model sees and the reference answer."""

    sample_id: str
    prompt: str
    reference: str


def index_suite(suite: str, texts: Sequence[SampleText], rule: Rule) -> list[IndexedSample]:
    """The suite's samples, with boilerplate marked by document frequency over this suite only."""
    tokenized = [(t, normalize(t.prompt), normalize(t.reference)) for t in texts]
    m = rule.gram_for_boilerplate
    df: Counter[int] = Counter()
    line_df: Counter[str] = Counter()
    for text, prompt, reference in tokenized:
        df.update({hash(g) for g in grams(prompt, m)} | {hash(g) for g in grams(reference, m)})
        line_df.update({collapse(line) for line in text.prompt.splitlines()})
    indexed = []
    for text, prompt, reference in tokenized:
        boiler = _boilerplate(prompt, df, rule)
        parts = [
            p
            for p in (
                _part("prompt", prompt, boiler, rule) if len(prompt) >= rule.n else None,
                _part("reference", reference, _boilerplate(reference, df, rule), rule)
                if len(reference) >= rule.n
                else None,
            )
            if p
        ]
        count = len({h for p in parts for h in p.starts})
        content = len(boiler) - sum(boiler)
        # the lookup window starts at content, so a shared template opening does not match every sample
        anchor = max(0, min(boiler.find(0), len(prompt) - rule.min_contained))
        sample = IndexedSample(suite, text.sample_id, tuple(prompt), tuple(parts), count, anchor=anchor)
        if len(prompt) >= rule.min_whole and content < rule.min_whole:  # e.g. symbol-only Alice puzzles
            lines = {collapse(line) for line in text.prompt.splitlines()}
            keys = tuple(sorted(k for k in lines if k and line_df[k] <= rule.max_df))
            sample = replace(sample, prompt=(), raw=collapse(text.prompt), raw_keys=keys)
        indexed.append(sample)
    return indexed


@dataclass(frozen=True)
class SampleIndex:
    rule: Rule
    samples: tuple[IndexedSample, ...]
    by_ngram: Mapping[int, tuple[int, ...]]  # n-gram hash -> sample positions in `samples`
    by_head: Mapping[tuple[str, ...], tuple[int, ...]]  # min_contained prompt tokens at anchor -> samples
    by_whole: Mapping[tuple[str, ...], tuple[int, ...]]  # a whole short prompt -> samples
    by_line: Mapping[str, tuple[int, ...]]  # a rare collapsed line of a raw-matched prompt -> samples

    @classmethod
    def build(cls, samples: Sequence[IndexedSample], rule: Rule) -> SampleIndex:
        by_ngram: dict[int, list[int]] = defaultdict(list)
        by_head: dict[tuple[str, ...], list[int]] = defaultdict(list)
        by_whole: dict[tuple[str, ...], list[int]] = defaultdict(list)
        by_line: dict[str, list[int]] = defaultdict(list)
        for i, sample in enumerate(samples):
            for key in sample.raw_keys:
                by_line[key].append(i)
            for h in {h for part in sample.parts for h in part.starts}:
                by_ngram[h].append(i)
            if len(sample.prompt) >= rule.min_contained:
                by_head[sample.prompt[sample.anchor : sample.anchor + rule.min_contained]].append(i)
            elif len(sample.prompt) >= rule.min_whole:
                by_whole[sample.prompt].append(i)
        return cls(
            rule,
            tuple(samples),
            {h: tuple(v) for h, v in by_ngram.items()},
            {k: tuple(v) for k, v in by_head.items()},
            {k: tuple(v) for k, v in by_whole.items()},
            {k: tuple(v) for k, v in by_line.items()},
        )


@dataclass
class _Hits:
    """What one row shares with one sample (mutable while the row is scanned)."""

    shared: set[int] = field(default_factory=set)
    per_field: Counter[str] = field(default_factory=Counter)
    example: str = ""
    exact_field: str | None = None


@dataclass(frozen=True)
class Match:
    sample: IndexedSample
    field: str
    kind: Literal["exact", "ngram"]
    shared_ngrams: int
    coverage: float  # best over the sample's parts: covered content tokens / content tokens
    covered_tokens: int
    part: PartName | None
    example: str


def _exact(text: str, tokens: list[str], index: SampleIndex) -> set[int]:
    found = set(index.by_whole.get(tuple(tokens), ()))
    if index.by_line:
        raw = None
        for line in text.splitlines():
            for s in index.by_line.get(collapse(line), ()):
                raw = raw or collapse(text)
                raw_prompt = index.samples[s].raw
                if raw_prompt is not None and raw_prompt in raw:
                    found.add(s)
    k = index.rule.min_contained
    for i, window in enumerate(grams(tokens, k)):
        for s in index.by_head.get(window, ()):
            sample = index.samples[s]
            start = i - sample.anchor
            if start >= 0 and tuple(tokens[start : start + len(sample.prompt)]) == sample.prompt:
                found.add(s)
    return found


def _decide(s: IndexedSample, hits: _Hits, rule: Rule) -> Match | None:
    best: tuple[float, int, PartName | None] = (0.0, 0, None)
    for part in s.parts:
        covered = part.covered(hits.shared, rule.n)
        coverage = covered / len(part.content) if part.content else 0.0
        if (coverage, covered) > best[:2]:
            best = (coverage, covered, part.name)
    coverage, covered, part_name = best
    flagged = covered >= rule.min_covered and (coverage >= rule.min_coverage or covered >= rule.long_run)
    if hits.exact_field is None and not flagged:
        return None
    if hits.exact_field is not None:  # the whole prompt is there
        example = s.raw or " ".join(s.prompt)
        return Match(s, hits.exact_field, "exact", len(hits.shared), 1.0, covered, "prompt", example)
    where = hits.per_field.most_common(1)[0][0]
    return Match(s, where, "ngram", len(hits.shared), round(coverage, 4), covered, part_name, hits.example)


def match_row(fields: Iterable[tuple[str, str]], index: SampleIndex) -> list[Match]:
    """Every sample one row (its string fields, with their paths) is contaminated by, by the rule."""
    n = index.rule.n
    acc: dict[int, _Hits] = {}
    for path, text in fields:
        tokens = normalize(text)
        if len(tokens) >= index.rule.min_whole:
            for s in _exact(text, tokens, index):
                hits = acc.setdefault(s, _Hits())
                hits.exact_field = hits.exact_field or path
        for j, gram in enumerate(grams(tokens, n)):
            h = hash(gram)
            for s in index.by_ngram.get(h, ()):
                hits = acc.setdefault(s, _Hits())
                hits.shared.add(h)
                hits.per_field[path] += 1
                hits.example = hits.example or " ".join(tokens[j : j + n])
    decided = (_decide(index.samples[s], hits, index.rule) for s, hits in sorted(acc.items()))
    return [m for m in decided if m is not None]
