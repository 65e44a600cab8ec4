"""`harness export wandb|inspect|table RUN_OR_CHECKPOINT...`: a run's results where people already look:
Weights & Biases (metrics, samples, lineage), inspect-ai's log viewer, and CSV/Parquet/JSONL tables."""

from __future__ import annotations

import importlib
from typing import Any

# Each target is its own module (one CLI subcommand per file), registered under `harness export`.
TARGETS = ("wandb", "inspect", "table")


def register(commands: Any) -> None:
    p = commands.add_parser(
        "export", help="export runs to W&B, inspect-ai logs or tables", description=__doc__
    )
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True)
    for name in TARGETS:
        importlib.import_module(f"harness.cli.export_{name}_cmd").register(targets)
