"""Post-training evaluation harness: score any checkpoint on a fixed registry of suites.

    import harness
    results = harness.evaluate("embedded", suites=["gsm8k"], limit=20)
    results.metrics_df()
    every = harness.evaluate_many(["sft:latest", "dpo:latest"], suites=["gsm8k"])  # all at once
    harness.gate(baseline="sft:latest", candidate="dpo:latest")
    runs = harness.load_runs("runs/")

Importing this package is cheap on purpose: the API (harness/api/) loads on first use of a name below,
and backends (llama.cpp, torch, vLLM, Tinker) and `datasets` only inside the adapter or loader that
needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from harness.version import __version__

_API = {
    "evaluate": "harness.api.evaluate",
    "evaluate_async": "harness.api.evaluate",
    "evaluate_many": "harness.api.evaluate_many",
    "evaluate_many_async": "harness.api.evaluate_many",
    "CheckpointJob": "harness.api.evaluate_many",
    "EvalResults": "harness.api.evaluate",
    "SuiteRun": "harness.api.evaluate",
    "Generation": "harness.api.evaluate",
    "gate": "harness.api.gate",
    "GateResult": "harness.gating.collect",
    "load_runs": "harness.api.runs",
    "Runs": "harness.api.runs",
    "list_runs": "harness.api.runs",
    "RunListing": "harness.runs.listing",
    "rescore": "harness.api.rescore",
    "validate": "harness.api.validate",
    "ValidationResult": "harness.api.validate",
    "RescoreResult": "harness.api.rescore",
    "SuiteOptions": "harness.suite",
    "AdapterOptions": "adapters.options",
    "HarnessError": "harness.errors",
}

__all__ = [
    "AdapterOptions",
    "CheckpointJob",
    "EvalResults",
    "GateResult",
    "Generation",
    "HarnessError",
    "RescoreResult",
    "RunListing",
    "Runs",
    "SuiteOptions",
    "SuiteRun",
    "ValidationResult",
    "__version__",
    "evaluate",
    "evaluate_async",
    "evaluate_many",
    "evaluate_many_async",
    "gate",
    "list_runs",
    "load_runs",
    "rescore",
    "validate",
]

if TYPE_CHECKING:
    from adapters.options import AdapterOptions
    from harness.api.evaluate import EvalResults, Generation, SuiteRun, evaluate, evaluate_async
    from harness.api.evaluate_many import CheckpointJob, evaluate_many, evaluate_many_async
    from harness.api.gate import gate
    from harness.api.rescore import RescoreResult, rescore
    from harness.api.runs import Runs, list_runs, load_runs
    from harness.api.validate import ValidationResult, validate
    from harness.errors import HarnessError
    from harness.gating.collect import GateResult
    from harness.runs.listing import RunListing
    from harness.suite import SuiteOptions


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
