"""`harness export table`: runs as two tables a notebook or a spreadsheet reads directly.

- samples.FORMAT: one row per sample (checkpoint, suite, sample id, prompt, target, first response, every
  per-sample score as `score.NAME`, every extracted value as `extracted.NAME`, `reasoning`/`answer` for
  reasoning runs, the run folder);
- metrics.FORMAT: one row per run and metric (value, stderr, ci_low, ci_high, n, ci_method, primary).

Both are exactly the frames `harness.load_runs(...).samples_df()` / `.metrics_df()` return
(harness.api.frames), written as CSV, Parquet (pyarrow) or JSON Lines. Values stay fractions (0.5 = 50%).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.api.frames import metrics_frame, samples_frame
from harness.errors import MissingExtraError, StorageError
from harness.runs.catalog import RunView
from reports.select import select

if TYPE_CHECKING:
    import pandas

FORMATS = ("csv", "parquet", "jsonl")


@dataclass(frozen=True)
class TableExport:
    samples_path: Path
    metrics_path: Path
    runs: int
    samples: int
    metrics: int

    def describe(self) -> str:
        return (
            f"Wrote {self.samples} sample rows to {self.samples_path} and {self.metrics} metric rows to "
            f"{self.metrics_path} ({self.runs} run{'s' if self.runs != 1 else ''})."
        )


def selected_runs(arguments: Sequence[str], runs_root: Path) -> list[RunView]:
    """The runs `harness report` would cover, checkpoint by checkpoint in argument order."""
    selection = select(arguments, runs_root)
    return [run for checkpoint in selection.order for run in checkpoint.runs.values()]


def _json_value(value: Any) -> Any:
    """A cell as JSON: NaN (pandas' missing number) is null; numpy scalars become Python numbers."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        return _json_value(value.item())
    return value


def _parquet_ready(frame: pandas.DataFrame) -> pandas.DataFrame:
    """Parquet needs one type per column: an object column mixing types (a number and a string among the
    extracted values) is written as text, None kept."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype != object:
            continue
        kinds = {
            type(v) for v in out[column] if v is not None and not (isinstance(v, float) and math.isnan(v))
        }
        if len(kinds) > 1 or (kinds and not kinds <= {str, bool, int, float}):
            out[column] = [
                None if v is None else v if isinstance(v, str) else json.dumps(v) for v in out[column]
            ]
    return out


def write_frame(frame: pandas.DataFrame, path: Path, fmt: str) -> None:
    """Write `frame` as `fmt` beside `path` first, then move it into place (no half-written table)."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        if fmt == "csv":
            frame.to_csv(partial, index=False)
        elif fmt == "parquet":
            try:
                _parquet_ready(frame).to_parquet(partial, index=False)
            except ImportError:
                raise MissingExtraError(
                    "Parquet tables need pyarrow, which is not installed.",
                    "Install it (pip install pyarrow), or pass --format csv or jsonl.",
                ) from None
        else:
            with partial.open("w", encoding="utf-8") as out:
                for row in frame.to_dict(orient="records"):
                    clean = {str(k): _json_value(v) for k, v in row.items()}
                    out.write(json.dumps(clean, ensure_ascii=False, default=str) + "\n")
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise StorageError(
            f"Could not write {path}: {error.strerror or error}.", "Check the --out folder."
        ) from None


def export_tables(arguments: Sequence[str], out: Path, fmt: str, runs_root: Path) -> TableExport:
    """Write samples.FORMAT and metrics.FORMAT for the runs the arguments name into `out`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}")
    runs = selected_runs(arguments, runs_root)
    samples, metrics = samples_frame(runs), metrics_frame(runs)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError(
            f"Could not create {out}: {error.strerror or error}.", "Pass a writable --out."
        ) from None
    samples_path, metrics_path = out / f"samples.{fmt}", out / f"metrics.{fmt}"
    write_frame(samples, samples_path, fmt)
    write_frame(metrics, metrics_path, fmt)
    return TableExport(samples_path, metrics_path, len(runs), len(samples), len(metrics))
