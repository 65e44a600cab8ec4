"""Package a LoRA adapter for a submission target. One target so far: the Kaggle NVIDIA Nemotron Model
Reasoning Challenge (`--kaggle`).

The challenge's rules (competition overview, Evaluation and Submitting sections): submit "a LoRA adapter of
rank at most 32 for the NVIDIA Nemotron-3-Nano-30B model packaged into a submission.zip file"; the
evaluator loads `metric/nemotron-3-nano-30b-a3b-bf16` (NVIDIA-Nemotron-3-Nano-30B-A3B-BF16) with the adapter,
"which must include an adapter_config.json", in vLLM with max_lora_rank 32, max_tokens 7680, top_p 1.0,
temperature 0.0, max_model_len 8192. Public validation notebooks extract the zip into a folder and hand
that folder to vLLM's `LoRARequest`, so the files sit at the zip's root.

What `submission.zip` gets: exactly `adapter_config.json` (byte for byte) and the weights,
`adapter_model.safetensors` (or `adapter_model.bin` when the folder has only that), at the root, sorted,
stored uncompressed with fixed timestamps: the same adapter always gives the same bytes and sha256.

Refused before anything is written: ranks above the limit (`r`, and any `rank_pattern` entry); LoRA tensors
whose shapes disagree with the config's ranks; a missing, truncated or unreadable weights file; what vLLM
refuses to load (DoRA, `modules_to_save`, trained biases). A base model other than Nemotron-3-Nano-30B
only warns: the harness's own adapters (SmolLM2, OLMo) package fine but will not load on Kaggle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checkpoints import (
    CheckpointRef,
    EmbeddedRef,
    EndpointRef,
    GgufRef,
    HfRef,
    ReplayRef,
    TinkerBaseRef,
    TinkerRef,
    VllmRef,
)
from harness.errors import DataError, MissingExtraError, UsageError

KAGGLE_MAX_RANK = 32
KAGGLE_BASE_MODEL = "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"
CONFIG_FILE = "adapter_config.json"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
PACKAGEABLE = (
    "Packageable: hf:BASE+lora:DIR, vllm:BASE+lora:DIR, a registry tag naming one (sft:latest), or the "
    "LoRA folder itself (holding adapter_config.json and adapter_model.safetensors)."
)
_LORA_PART = re.compile(r"^lora_(?:embedding_)?([AB])$")
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip


@dataclass(frozen=True)
class AdapterInfo:
    folder: Path
    config: Path
    weights: Path
    rank: int  # the config's r
    max_rank: int  # the highest rank of any module (r or a rank_pattern entry)
    lora_modules: int  # modules with lora_A/lora_B tensors in the weights
    base_model: str | None


@dataclass(frozen=True)
class Package:
    path: Path
    size_bytes: int
    sha256: str
    files: tuple[tuple[str, int], ...]  # (name in the zip, size)
    adapter: AdapterInfo
    checkpoint: str
    warnings: tuple[str, ...]


def lora_folder(ref: CheckpointRef) -> Path:
    """The LoRA folder a reference names; any other form fails with what can be packaged."""
    if isinstance(ref, HfRef | VllmRef):
        if ref.lora is None:
            base = ref.path if isinstance(ref, HfRef) else ref.base
            raise UsageError(
                f"'{ref.raw}' is a whole model without a LoRA: Kaggle takes a LoRA adapter (rank <= 32) on "
                f"Nemotron-3-Nano-30B, not full weights.",
                f"Package the adapter trained on it, e.g. {ref.form}:{base}+lora:DIR. {PACKAGEABLE}",
            )
        return Path(ref.lora).expanduser()
    if isinstance(ref, TinkerRef):
        raise UsageError(
            f"'{ref.raw}' is a Tinker sampler checkpoint: its weights live on the Tinker service, and "
            "sampler checkpoints cannot be downloaded.",
            "Download the adapter of the same training run first, with the Tinker CLI: `tinker checkpoint "
            "download tinker://RUN/weights/NAME --output DIR` (a checkpoint saved by "
            "TrainingClient.save_state(), or one exported by TrainingClient.save_weights_external(), whose "
            "files RestClient.get_external_weights_urls() lists); then package that folder: `harness package "
            "DIR --kaggle`. Tinker's layout may need converting to the evaluator's module names first. "
            + PACKAGEABLE,
        )
    reasons = {
        TinkerBaseRef: "a Tinker base model, with no adapter",
        EndpointRef: "an endpoint: the weights are on the server, not here (package the LoRA folder the "
        "server loads)",
        GgufRef: "a GGUF file, a whole (merged, quantized) model rather than a peft LoRA",
        EmbeddedRef: "the embedded GGUF model, a whole model rather than a peft LoRA",
        ReplayRef: "stored responses, with no weights at all",
    }
    what = next((text for kind, text in reasons.items() if isinstance(ref, kind)), f"a {ref.form} reference")
    raise UsageError(f"'{ref.raw}' cannot be packaged: it is {what}.", PACKAGEABLE)


def resolve_folder(raw: str, runs_root: Path | None) -> tuple[str, Path]:
    """(concrete reference, LoRA folder) for a reference, a registry tag or a plain adapter folder."""
    from harness.lineage import resolve_checkpoint

    plain = Path(raw).expanduser()
    try:
        ref, _ = resolve_checkpoint(raw, runs_root)
    except UsageError:
        if plain.is_dir():
            return str(plain), plain
        raise
    return ref.raw, lora_folder(ref)


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise UsageError(f"The LoRA folder {folder} does not exist.", "Check the path after '+lora:'.")
    if not path.is_file():
        raise DataError(
            f"{folder} has no {CONFIG_FILE}, which the Kaggle evaluator requires.",
            "Point at the folder peft's save_pretrained() wrote (adapter_config.json + adapter_model.safetensors).",
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(
            f"{path} is not valid JSON ({error}).", "Restore the file save_pretrained() wrote."
        ) from None
    if not isinstance(config, dict):
        raise DataError(f"{path} is not a JSON object.", "Restore the file save_pretrained() wrote.")
    return config


def _rank(value: Any, where: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"{path}: {where} must be a positive whole number, not {value!r}.")
    return value


def check_config(config: Mapping[str, Any], path: Path, max_rank: int) -> tuple[int, dict[str, int]]:
    """(r, rank_pattern) after the limit and vLLM's own refusals."""
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise UsageError(f"{path} describes a {peft_type} adapter; the evaluator loads LoRA adapters only.")
    rank = _rank(config.get("r"), "r", path)
    raw_pattern = config.get("rank_pattern") or {}
    if not isinstance(raw_pattern, dict):
        raise DataError(f"{path}: rank_pattern must map module patterns to ranks, not {raw_pattern!r}.")
    pattern = {str(k): _rank(v, f"rank_pattern['{k}']", path) for k, v in raw_pattern.items()}
    fix = f"Retrain with a rank of at most {max_rank} (lora.rank in the stage config)."
    if rank > max_rank:
        raise UsageError(
            f"{path} says r={rank}, above the Kaggle limit of {max_rank} (the evaluator loads adapters with "
            f"vLLM's max_lora_rank={KAGGLE_MAX_RANK}).",
            fix,
        )
    if over := {k: v for k, v in pattern.items() if v > max_rank}:
        listed = ", ".join(f"'{k}': {v}" for k, v in sorted(over.items()))
        raise UsageError(
            f"{path} gives modules ranks above the Kaggle limit of {max_rank} in rank_pattern ({listed}).",
            fix,
        )
    refusals = []
    if config.get("use_dora"):
        refusals.append("use_dora is true (vLLM does not support DoRA)")
    if config.get("modules_to_save"):
        refusals.append(f"modules_to_save is {config['modules_to_save']!r} (vLLM loads none)")
    if str(config.get("bias", "none")) != "none":
        refusals.append(f"bias is '{config['bias']}' (the evaluator does not enable LoRA biases)")
    if refusals:
        raise UsageError(
            f"{path}: the evaluator's vLLM would refuse this adapter: {'; '.join(refusals)}.",
            "Retrain a plain LoRA (no DoRA, no modules_to_save, bias 'none').",
        )
    return rank, pattern


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header, checked against the file's size."""
    size = path.stat().st_size
    fix = "The file is truncated or not safetensors; save the adapter again (save_pretrained)."
    with path.open("rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length < 2 or length > size - 8:
            raise DataError(f"{path} has no readable safetensors header ({size} bytes).", fix)
        try:
            header = json.loads(handle.read(length))
        except (ValueError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: the safetensors header is not JSON ({error}).", fix) from None
    if not isinstance(header, dict):
        raise DataError(f"{path}: the safetensors header is not a JSON object.", fix)
    data_bytes, shapes = size - 8 - length, {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            shape = tuple(int(d) for d in entry["shape"])
            start, end = (int(o) for o in entry["data_offsets"])
            width = _DTYPE_BYTES[str(entry["dtype"])]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: the header entry of tensor '{name}' is malformed.", fix) from None
        count = 1
        for dim in shape:
            count *= dim
        if not 0 <= start <= end <= data_bytes or end - start != count * width or min(shape, default=1) < 0:
            raise DataError(
                f"{path}: tensor '{name}' ({entry['dtype']} {list(shape)}) does not fit the file's data "
                f"(offsets {start}-{end} of {data_bytes} bytes).",
                fix,
            )
        shapes[name] = shape
    return shapes


def bin_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a torch `adapter_model.bin` (loaded with weights_only, memory-mapped)."""
    try:
        import torch
    except ImportError:
        raise MissingExtraError(
            f"Checking {path} needs torch, which is not installed.",
            "Install the hf extra (pip install -e '.[hf]'), or save the adapter as safetensors "
            "(save_pretrained(..., safe_serialization=True)).",
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises many kinds for a corrupt file
        raise DataError(
            f"{path} is not a readable torch state dict ({type(error).__name__}: {error}).",
            "Save the adapter again (save_pretrained), preferably as safetensors.",
        ) from None
    if not isinstance(state, dict):
        raise DataError(f"{path} holds a {type(state).__name__}, not a state dict of tensors.")
    return {str(k): tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


def module_ranks(shapes: Mapping[str, Sequence[int]], path: Path) -> dict[str, int]:
    """LoRA module -> rank from tensor shapes: lora_A is [r, in, ...], lora_B is [out, r, ...]."""
    found: dict[str, dict[str, tuple[str, int]]] = {}
    for name, shape in shapes.items():
        parts = name.split(".")
        hits = [(i, m.group(1)) for i, part in enumerate(parts) if (m := _LORA_PART.match(part))]
        if not hits:
            continue
        index, side = hits[0]
        if len(shape) < 2:
            raise DataError(
                f"{path}: LoRA tensor '{name}' has shape {list(shape)}; a LoRA matrix has two dims."
            )
        found.setdefault(".".join(parts[:index]), {})[side] = (
            name,
            int(shape[0] if side == "A" else shape[1]),
        )
    ranks = {}
    for module, sides in sorted(found.items()):
        if set(sides) != {"A", "B"}:
            missing = "lora_B" if "A" in sides else "lora_A"
            raise DataError(f"{path}: module '{module}' has no {missing} tensor.", "Save the adapter again.")
        (a_name, a_rank), (b_name, b_rank) = sides["A"], sides["B"]
        if a_rank != b_rank:
            raise DataError(
                f"{path}: '{a_name}' has rank {a_rank} but '{b_name}' has rank {b_rank}.",
                "The weights are corrupt; save the adapter again.",
            )
        ranks[module] = a_rank
    if not ranks:
        raise DataError(
            f"{path} holds no LoRA tensors (no lora_A/lora_B weights).",
            "Point at a peft LoRA adapter folder.",
        )
    return ranks


def expected_rank(module: str, rank: int, pattern: Mapping[str, int]) -> int:
    """peft's rule: the first rank_pattern key matching the end of the module name, else r."""
    name = module.removeprefix("base_model.model.")
    for key, value in pattern.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return rank


def inspect_adapter(folder: Path, max_rank: int = KAGGLE_MAX_RANK) -> AdapterInfo:
    """Every check of the module docstring; raises UsageError/DataError naming the file and the fix."""
    config = _read_config(folder)
    config_path = folder / CONFIG_FILE
    rank, pattern = check_config(config, config_path, max_rank)
    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise DataError(
            f"{folder} has no adapter weights ({' or '.join(WEIGHT_FILES)}).",
            "Point at the folder peft's save_pretrained() wrote, after training finished.",
        )
    shapes = safetensors_shapes(weights) if weights.suffix == ".safetensors" else bin_shapes(weights)
    ranks = module_ranks(shapes, weights)
    for module, actual in ranks.items():
        wanted = expected_rank(module, rank, pattern)
        if actual != wanted:
            raise DataError(
                f"{weights.name} holds LoRA tensors of rank {actual} for '{module}', but {CONFIG_FILE} says "
                f"rank {wanted}: the config and the weights do not belong together.",
                "Package the folder exactly as save_pretrained() wrote it (config and weights of one adapter).",
            )
    base = config.get("base_model_name_or_path")
    return AdapterInfo(
        folder,
        config_path,
        weights,
        rank,
        max(ranks.values()),
        len(ranks),
        None if base is None else str(base),
    )


def write_zip(path: Path, members: Sequence[tuple[str, Path]]) -> tuple[int, str]:
    """A deterministic zip (sorted names, fixed timestamps and modes, stored); returns (size, sha256)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, source in sorted(members):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.create_system, info.external_attr = 3, 0o644 << 16
            with source.open("rb") as src, archive.open(info, "w", force_zip64=True) as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    dst.write(chunk)
    os.replace(tmp, path)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return path.stat().st_size, digest.hexdigest()


def kaggle_warnings(adapter: AdapterInfo) -> list[str]:
    base = adapter.base_model or ""
    if re.search(r"nemotron-3-nano-30b", base, re.IGNORECASE):
        return []
    named = f"'{base}'" if base else "an unnamed base model (base_model_name_or_path is empty)"
    return [
        f"the adapter was trained on {named}; the Kaggle evaluator loads it on {KAGGLE_BASE_MODEL}, "
        "so only an adapter trained on that model will load there."
    ]


def package_kaggle(
    raw: str, out: Path, max_rank: int = KAGGLE_MAX_RANK, runs_root: Path | None = None
) -> Package:
    if max_rank > KAGGLE_MAX_RANK:
        raise UsageError(
            f"--max-rank {max_rank} is above the Kaggle evaluator's max_lora_rank of {KAGGLE_MAX_RANK}.",
            f"Leave it at {KAGGLE_MAX_RANK} or lower it.",
        )
    checkpoint, folder = resolve_folder(raw, runs_root)
    adapter = inspect_adapter(folder, max_rank)
    members = [(CONFIG_FILE, adapter.config), (adapter.weights.name, adapter.weights)]
    size, sha = write_zip(out, members)
    files = tuple(sorted((name, source.stat().st_size) for name, source in members))
    return Package(out, size, sha, files, adapter, checkpoint, tuple(kaggle_warnings(adapter)))
