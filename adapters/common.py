"""Helpers shared by the adapters: fingerprints that key identities (and so the response cache) to the
exact weights, and OpenAI-style stop-string truncation for backends that stop on tokens."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path


def file_fingerprint(path: Path) -> str:
    """sha256 of size + first and last 8 MiB: cheap for multi-GB files, changes with any re-quantization."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    chunk = 8 << 20
    with path.open("rb") as handle:
        digest.update(handle.read(chunk))
        if size > chunk:
            handle.seek(max(chunk, size - chunk))
            digest.update(handle.read(chunk))
    return digest.hexdigest()[:16]


# Files whose content decides what the model answers; logs and training state are left out.
_MODEL_FILES = ("*.json", "*.safetensors", "*.bin", "*.jinja", "*.model", "merges.txt", "vocab.txt")
_NOT_MODEL = {"harness_export.json", "trainer_state.json", "training_args.bin", "README.md"}


def folder_fingerprint(folder: Path) -> str:
    """sha256 over (name, file fingerprint) of the config, tokenizer and weight files at the top level."""
    files = sorted(
        {
            p
            for pattern in _MODEL_FILES
            for p in folder.glob(pattern)
            if p.is_file() and p.name not in _NOT_MODEL
        }
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{file_fingerprint(path)}\0".encode())
    return digest.hexdigest()[:16]


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the earliest occurrence of any stop string (which is dropped), as OpenAI servers do."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
