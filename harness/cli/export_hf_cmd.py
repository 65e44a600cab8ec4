"""`harness export-hf SOURCE DIR`: dequantize a GGUF (embedded or gguf:PATH) into a transformers folder.

The folder holds float32 safetensors, config.json, the tokenizer with the GGUF's chat template, and
harness_export.json (source path and fingerprint, transformers version, dtype). Evaluate it with
`--checkpoint hf:DIR`, or train a LoRA on it.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    p = commands.add_parser(
        "export-hf", help="dequantize a GGUF into a transformers safetensors folder", description=__doc__
    )
    p.add_argument("source", metavar="SOURCE", help="embedded or gguf:PATH")
    p.add_argument("out_dir", metavar="DIR", help="folder to write (must be empty or new)")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder, replacing weights")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.checkpoints import EmbeddedRef, GgufRef, parse_checkpoint
    from harness.errors import UsageError

    ref = parse_checkpoint(args.source)
    if not isinstance(ref, EmbeddedRef | GgufRef):
        raise UsageError(
            f"harness export-hf reads GGUF checkpoints only (embedded, gguf:PATH), not '{ref.raw}'.",
            "An hf: folder is already in the transformers format.",
        )
    from adapters import require_extra

    require_extra("transformers", "hf", "harness export-hf")
    from adapters.hf_export import export_gguf
    from adapters.llama_cpp import embedded_gguf_path, resolve_gguf

    gguf_path = embedded_gguf_path() if isinstance(ref, EmbeddedRef) else resolve_gguf(ref.path)
    result = export_gguf(gguf_path, Path(args.out_dir).expanduser().resolve(), force=args.force)
    print(
        f"exported {result.source.name} ({result.parameters / 1e6:.1f}M parameters, float32) "
        f"in {result.seconds:.1f} s -> {result.out_dir}"
    )
    print("files: " + ", ".join(result.files))
    print(f"evaluate it with: harness eval --checkpoint hf:{result.out_dir}")
    return 0
