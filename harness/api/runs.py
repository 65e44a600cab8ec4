"""`harness.load_runs`: every run under one or more runs folders, as typed views and DataFrames;
`harness.list_runs`: the rows `harness runs` lists (settings, status, samples done), filtered."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.api.frames import metrics_frame, samples_frame
from harness.runs.catalog import RunView
from harness.runs.catalog import load_runs as _read_runs
from harness.runs.listing import RunListing
from harness.runs.listing import list_runs as _list_runs
from harness.runs.store import runs_root

if TYPE_CHECKING:
    import pandas


@dataclass(frozen=True)
class Runs:
    """Runs read from disk (manifests and metrics; per-sample records only when asked for)."""

    runs: tuple[RunView, ...]

    def __iter__(self) -> Iterator[RunView]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    def of(self, checkpoint: str | None = None, suite: str | None = None) -> Runs:
        """The runs of one checkpoint reference (as stored) and/or one suite."""
        return Runs(tuple(
            r for r in self.runs
            if (checkpoint is None or r.manifest.checkpoint == checkpoint) and (suite is None or r.suite == suite)
        ))  # fmt: skip

    def metrics_df(self) -> pandas.DataFrame:
        return metrics_frame(self.runs)

    def samples_df(self) -> pandas.DataFrame:
        return samples_frame(self.runs)


def load_runs(*folders: str | Path) -> Runs:
    """Every run under the given runs folders (default: $HARNESS_RUNS_DIR or ./runs). A missing folder,
    or a manifest or metrics file that is not the harness's, is a DataError naming the file."""
    roots: Sequence[Path] = [runs_root(str(f)) for f in folders] or [runs_root(None)]
    return Runs(tuple(_read_runs(roots)))


def list_runs(
    folder: str | Path | None = None,
    *,
    checkpoint: str | None = None,
    suite: str | None = None,
    status: str | None = None,
) -> tuple[RunListing, ...]:
    """The runs under one runs folder (default: $HARNESS_RUNS_DIR or ./runs) as `harness runs` lists
    them: those whose checkpoint reference contains `checkpoint`, of `suite`, with `status`."""
    root = runs_root(None if folder is None else str(folder))
    return tuple(_list_runs(root, checkpoint=checkpoint, suite=suite, status=status))
