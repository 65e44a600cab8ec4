"""Work shared between the many paired comparisons of one figure (stage_deltas over a whole class).

A class of 1,000 checkpoints has ~1,000 lineage pairs x 5 suites. Done one by one, every run's
samples.jsonl is read once per pair it is in (twice for most), and each pair costs a 2,000-resample
bootstrap: most of a site build. Both are shared here, with results identical to doing each pair alone:

- `SharedSamples`: a run's per-sample records, read once for all the pairs that use it and dropped
  after its last use (pairs come team by team, so memory holds about one team's runs, never the class's).
- `BootstrapIntervals`: harness.gating.paired.paired_bootstrap draws each resample as binomial counts
  over a stratum's sorted distinct differences (strata in order of first appearance), so its interval
  is a function of those tables (with the seed, level and resample count). Pairs whose tables are
  equal (common with 0/1 scores on small runs: 20 samples give at most 231 tables) share one
  bootstrap; each pair's own means, delta and n still come from paired_bootstrap itself.
- `PairedStore` (optional, `with active_store(store):`): intervals and pair results kept between
  processes. The site build keeps one in its build folder, so a rebuild after one team's bundle reads only
  that team's samples and bootstraps only what it has not seen. Intervals are keyed by their table; a
  pair's result both by a digest of its scores, strata and resample count (the result paired_bootstrap
  gives those inputs) and by the two runs' samples-file stamps (path, size, mtime, inode, ctime) with their
  primary metrics (`run_pair_key`: what reports.compare.paired_scores reads), so an unchanged pair is
  answered without reading either run's samples. Records a build put in the store (the site's pages read
  every rendered run's samples anyway: `put_light`) serve that build only; they are not saved. The store
  is dropped whole when this module, reports.bootstrap_tables or harness.gating.paired changes (its
  `code` digest) and when its file does not match the checksum written with it, so a kept result is
  always the one paired_bootstrap would compute.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from harness.gating import paired as paired_module
from harness.gating.paired import PairedDelta, paired_bootstrap
from harness.runs.catalog import RunView
from harness.runs.scores import STRATIFIED
from harness.runs.store import SAMPLES, SampleRecord
from reports import bootstrap_tables

_STRATUM_FIELDS = frozenset(stratum for _, stratum in STRATIFIED.values())
_VIEW_FIELDS = tuple(f.name for f in fields(RunView))
_STORE_VERSION = 3


@dataclass(frozen=True)
class _LoadedRun(RunView):
    """A RunView whose samples were already read (reports.compare.paired_scores calls .samples())."""

    records: tuple[SampleRecord, ...] = ()

    def samples(self) -> tuple[SampleRecord, ...]:
        return self.records


class SharedSamples:
    """Each run's samples read on its first use and kept until its last (uses are known up front)."""

    def __init__(self, uses: Iterable[RunView]) -> None:
        self._left: Counter[Path] = Counter(run.run_dir for run in uses)
        self._held: dict[Path, tuple[SampleRecord, ...]] = {}

    def view(self, run: RunView) -> RunView:
        """`run` with its records in memory: the same records, errors and order as `run.samples()`."""
        records = self._held.get(run.run_dir)
        if records is None and _ACTIVE is not None:
            records = _ACTIVE.records(run)
        if records is None:
            records = run.samples()
            if _ACTIVE is not None:
                _ACTIVE.put(run, records)
        self._left[run.run_dir] -= 1
        if self._left[run.run_dir] > 0:
            self._held[run.run_dir] = records
        else:
            self._held.pop(run.run_dir, None)
        values = {name: getattr(run, name) for name in _VIEW_FIELDS}
        return _LoadedRun(**values, records=records)

    def release(self, run: RunView) -> None:
        """One use of `run` that did not need its records (its pair's result was kept)."""
        self._left[run.run_dir] -= 1
        if self._left[run.run_dir] <= 0:
            self._held.pop(run.run_dir, None)


Tables = tuple[tuple[tuple[tuple[float, int], ...], ...], int]


def _tables(a: Sequence[float], b: Sequence[float], strata: Sequence[str] | None, resamples: int) -> Tables:
    """What paired_bootstrap's interval depends on (see the module docstring): per stratum, in order of
    first appearance, the sorted (difference, count) table; with the resample count."""
    labels: Sequence[str] = strata if strata is not None else [""] * len(a)
    groups: dict[str, list[float]] = {}
    for label, x, y in zip(labels, a, b, strict=True):
        groups.setdefault(label, []).append(y - x)
    return tuple(tuple(sorted(Counter(d).items())) for d in groups.values()), resamples


class BootstrapIntervals:
    """paired_bootstrap (default seed and level) with its interval computed once per distinct table, and
    (with an active store) each pair's whole result kept by its inputs."""

    def __init__(self, resamples: int) -> None:
        self.resamples = resamples
        self._known: dict[Tables, tuple[float, float]] = {} if _ACTIVE is None else _ACTIVE.intervals

    def paired(self, a: Sequence[float], b: Sequence[float], strata: Sequence[str] | None) -> PairedDelta:
        if len(a) != len(b) or (strata is not None and len(strata) != len(a)):
            return paired_bootstrap(a, b, resamples=self.resamples, strata=strata)  # its own error
        pair = None if _ACTIVE is None else pair_key(a, b, strata, self.resamples)
        if pair is not None and _ACTIVE is not None:
            kept = _ACTIVE.delta(pair)
            if isinstance(kept, PairedDelta):
                return kept
        result = self._computed(a, b, strata)
        if pair is not None and _ACTIVE is not None:
            _ACTIVE.put_delta(pair, result)
        return result

    def _computed(self, a: Sequence[float], b: Sequence[float], strata: Sequence[str] | None) -> PairedDelta:
        # One resample: this pair's own means, delta, n and stderr (and input checks), cheaply.
        own = paired_bootstrap(a, b, resamples=1, strata=strata)
        key = _tables(a, b, strata, self.resamples)
        known = self._known.get(key)
        if known is None:  # paired_bootstrap's own interval, computed from the tables (bit for bit)
            known = self._known[key] = bootstrap_tables.table_interval(key[0], self.resamples)
        return replace(own, ci_low=known[0], ci_high=known[1], resamples=self.resamples)

    def kept(self, run_a: RunView, run_b: RunView) -> PairedDelta | str | None:
        """The active store's result for this pair of runs (`UNPAIRED` when paired_scores found no
        pairs), or None: not kept (or no store)."""
        key = None if _ACTIVE is None else run_pair_key(run_a, run_b, self.resamples)
        return None if key is None or _ACTIVE is None else _ACTIVE.delta(key)

    def keep(self, run_a: RunView, run_b: RunView, result: PairedDelta | str) -> None:
        """Keep this pair's result (a PairedDelta, or UNPAIRED) in the active store, by its runs."""
        key = None if _ACTIVE is None else run_pair_key(run_a, run_b, self.resamples)
        if key is not None and _ACTIVE is not None:
            _ACTIVE.put_delta(key, result)


def pair_key(a: Sequence[float], b: Sequence[float], strata: Sequence[str] | None, resamples: int) -> str:
    """A digest of everything a pair's paired_bootstrap result depends on (seed and level are the defaults)."""
    text = json.dumps([list(a), list(b), None if strata is None else list(strata), resamples])
    return hashlib.sha256(text.encode()).hexdigest()[:40]


UNPAIRED = ""  # a kept pair result: paired_scores found no pairs (the figure then uses the runs' CIs)


def run_pair_key(run_a: RunView, run_b: RunView, resamples: int) -> str | None:
    """A digest of what the paired comparison of two runs reads: both samples files (by stamp) and
    primary metrics, with the resample count; None when a samples file cannot be stat'ed."""
    stats = None if _ACTIVE is None else _ACTIVE.stats
    stamps = samples_stamp(run_a.run_dir, stats), samples_stamp(run_b.run_dir, stats)
    if stamps[0] is None or stamps[1] is None:
        return None
    text = json.dumps(["runs", *stamps, run_a.primary, run_b.primary, resamples])
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _code_digest() -> str:
    """What a kept interval or result depends on: this module, reports.bootstrap_tables and
    harness.gating.paired."""
    digest = hashlib.sha256()
    for module_file in (__file__, bootstrap_tables.__file__ or "", paired_module.__file__ or ""):
        with contextlib.suppress(OSError):
            digest.update(Path(module_file).read_bytes())
    return digest.hexdigest()


def samples_stamp(run_dir: Path, stats: dict[str, os.stat_result | None] | None = None) -> str | None:
    """A samples file's identity: path, size, mtime, inode and ctime (None when it cannot be read).
    With a stat memo (`PairedStore.stats`, the site build's), the file is stat'ed once per build."""
    path = os.path.join(run_dir, SAMPLES)
    try:
        if stats is None:
            info = os.stat(path)
        elif path in stats:
            known = stats[path]
            if known is None:
                return None
            info = known
        else:
            info = stats[path] = os.stat(path)
    except OSError:
        if stats is not None:
            stats[path] = None
        return None
    return f"{run_dir}|{info.st_size}|{info.st_mtime_ns}|{info.st_ino}|{info.st_ctime_ns}"


def light_record(record: SampleRecord) -> SampleRecord:
    """What reports.compare.paired_scores reads of a record: id, scores and the stratum field."""
    extracted = {k: v for k, v in record.extracted.items() if k in _STRATUM_FIELDS}
    return SampleRecord(record.id, "", "", (), (), dict(record.scores), extracted)


@dataclass
class PairedStore:
    """Intervals and pair results kept between builds, records put by this build only (module docstring)."""

    runs: dict[str, tuple[SampleRecord, ...]] = field(default_factory=dict)  # samples stamp -> records
    intervals: dict[Tables, tuple[float, float]] = field(default_factory=dict)
    # pair_key or run_pair_key -> result (UNPAIRED: paired_scores found no pairs)
    deltas: dict[str, PairedDelta | str] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)  # pair keys read or put in this build (kept)
    # path -> os.stat result (None: failed), shared with the caller's other stats of the same files in one
    # build (the site build's fingerprints); None: every stamp stats afresh
    stats: dict[str, os.stat_result | None] | None = None

    def records(self, run: RunView) -> tuple[SampleRecord, ...] | None:
        """The records this build put for `run` (never saved: see the module docstring)."""
        stamp = samples_stamp(run.run_dir, self.stats)
        return None if stamp is None else self.runs.get(stamp)

    def put(self, run: RunView, records: Iterable[SampleRecord]) -> None:
        self.put_light(run, tuple(light_record(r) for r in records))

    def put_light(self, run: RunView, records: tuple[SampleRecord, ...]) -> None:
        """Records already made light (light_record), as run.samples() would give them."""
        stamp = samples_stamp(run.run_dir, self.stats)
        if stamp is not None:
            self.runs[stamp] = records

    def delta(self, key: str) -> PairedDelta | str | None:
        found = self.deltas.get(key)
        if found is not None:
            self.used.add(key)
        return found

    def put_delta(self, key: str, result: PairedDelta | str) -> None:
        self.deltas[key] = result
        self.used.add(key)

    def to_record(self) -> dict[str, Any]:
        return {
            "version": _STORE_VERSION,
            "code": _code_digest(),
            "intervals": [
                [[_listed(table) for table in key[0]], key[1], list(bounds)]
                for key, bounds in self.intervals.items()
            ],
            "deltas": {
                key: result
                if isinstance(result, str)
                else [getattr(result, f.name) for f in fields(PairedDelta)]
                for key, result in self.deltas.items()
                if key in self.used
            },
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PairedStore:
        """The store as saved; an empty one when it was made by other code or is malformed."""
        if (
            not isinstance(record, Mapping)
            or record.get("version") != _STORE_VERSION
            or record.get("code") != _code_digest()
        ):
            return cls()
        try:
            intervals: dict[Tables, tuple[float, float]] = {}
            for tables, resamples, (low, high) in record["intervals"]:
                key = (tuple(tuple((float(v), int(c)) for v, c in t) for t in tables), int(resamples))
                intervals[key] = (float(low), float(high))
            deltas = {str(key): _delta(values) for key, values in record["deltas"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            return cls()
        return cls(intervals=intervals, deltas=deltas)

    def save(self, path: Path) -> None:
        """Written whole under a temporary name, then renamed: a killed build leaves the old file or this."""
        text = json.dumps(self.to_record(), separators=(",", ":"))
        temporary = path.with_name(f"{path.name}.tmp")
        temporary.write_text(f"{_checksum(text)}\n{text}", encoding="utf-8")
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> PairedStore:
        try:
            checksum, _, text = path.read_text(encoding="utf-8").partition("\n")
            if checksum != _checksum(text):
                return cls()
            return cls.from_record(json.loads(text))
        except (OSError, ValueError):
            return cls()


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _delta(values: Any) -> PairedDelta | str:
    if values == UNPAIRED:
        return UNPAIRED
    if not isinstance(values, list) or len(values) != len(fields(PairedDelta)):
        raise ValueError("a kept pair result has the wrong shape")
    mean_a, mean_b, delta, low, high, n, stderr, level, resamples, method = values
    return PairedDelta(
        float(mean_a), float(mean_b), float(delta), float(low), float(high), int(n), float(stderr),
        float(level), int(resamples), str(method),
    )  # fmt: skip


def _listed(table: tuple[tuple[float, int], ...]) -> list[list[float | int]]:
    return [[value, count] for value, count in table]


_ACTIVE: PairedStore | None = None


@contextlib.contextmanager
def active_store(store: PairedStore) -> Iterator[PairedStore]:
    """SharedSamples and BootstrapIntervals made inside the block read and fill `store`."""
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, store
    try:
        yield store
    finally:
        _ACTIVE = previous
