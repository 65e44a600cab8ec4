"""Dequantize a GGUF checkpoint into a transformers safetensors folder (`harness export-hf`).

transformers reads a GGUF with `from_pretrained(dir, gguf_file=...)` and dequantizes every tensor to
float32. That model still carries `config.quantization_config` (which makes TRL refuse it and would be
written back into config.json), so the weights are moved into a clean model built `from_config` and saved
as safetensors.

The tokenizer is rebuilt from the GGUF's own vocabulary, merges, special tokens and chat template
(`tokenizer.chat_template`), so `hf:DIR` gets llama.cpp's token ids and prompts (tested on GSM8K text).
transformers' own GGUF tokenizer conversion is not used for byte-level vocabularies: in 5.5.x (the
newest release tinker-cookbook allows) it turns SmolLM2's spaces and newlines into <unk> and makes EOS
the BOS token; 5.23 gets it right. `harness_export.json` records where the weights came from.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from harness.errors import UsageError

EXPORT_RECORD = "harness_export.json"
DTYPE = "float32"
# Files a previous export (or a training run) may have left that would mix with the new weights.
_STALE_PATTERNS = ("*.safetensors", "*.bin", "*.index.json")


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    source: Path
    parameters: int
    seconds: float
    files: tuple[str, ...]


def prepare_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} exists and is not a folder.", "Choose a folder path for the export.")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not force:
            raise UsageError(
                f"The folder {out_dir} is not empty.",
                "Choose an empty or new folder, or pass --force to overwrite the export files in it.",
            )
        for pattern in _STALE_PATTERNS:
            for stale in out_dir.glob(pattern):
                stale.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


# llama.cpp's pre-tokenizer regexes (llama-vocab.cpp), as the same models' tokenizer.json write them.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = _LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")
# End-of-generation tokens llama.cpp stops on besides EOS (llama-vocab.cpp's EOG list, the common ones).
_EOG_TEXTS = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|end_of_text|>")
_CONTROL, _USER_DEFINED = 3, 4


class GgufMetadata:
    """The GGUF's key/value metadata, read with the gguf package without touching the tensors."""

    def __init__(self, gguf_path: Path) -> None:
        from gguf import GGUFReader

        self._fields = GGUFReader(str(gguf_path)).fields

    def _values(self, key: str) -> list[Any] | None:
        field = self._fields.get(key)
        if field is None or not field.data:
            return None
        values = [field.parts[i] for i in field.data]
        if field.types and field.types[-1].name == "STRING":
            return [bytes(v).decode("utf-8") for v in values]
        return [v.tolist()[0] if len(v) == 1 else v.tolist() for v in values]

    def get(self, key: str) -> Any:
        values = self._values(key)
        return None if values is None else values[0]

    def get_list(self, key: str) -> list[Any]:
        return self._values(key) or []


def gguf_chat_template(gguf_path: Path) -> str | None:
    """The GGUF's `tokenizer.chat_template` metadata."""
    template = GgufMetadata(gguf_path).get("tokenizer.chat_template")
    return str(template) if template else None


def _byte_level_tokenizer(meta: GgufMetadata, tokens: list[str]) -> Any:
    """A byte-level BPE (`tokenizer.ggml.model == "gpt2"`) built from the GGUF's vocabulary and merges.

    transformers 5.5's own GGUF conversion treats every llama-architecture GGUF as SentencePiece: for a
    byte-level vocabulary (SmolLM2) it maps spaces and newlines to <unk> and sets EOS to the BOS token.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    pre = str(meta.get("tokenizer.ggml.pre") or "default")
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    splits: dict[str, list[Any]] = {
        "smollm": [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(False, use_regex=True),
        ],
        "gpt-2": [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)],
        "default": [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)],
        "llama-bpe": [pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), "isolated"), byte_level],
        "qwen2": [pre_tokenizers.Split(Regex(_QWEN2_SPLIT), "isolated"), byte_level],
    }
    if pre not in splits:
        raise UsageError(
            f"The GGUF's pre-tokenizer '{pre}' is not one harness export-hf can rebuild "
            f"({', '.join(sorted(splits))}).",
            "Export the model's original Hugging Face folder instead, or convert it with its own tokenizer.json.",
        )
    merges = [tuple(m.split(" ", 1)) for m in meta.get_list("tokenizer.ggml.merges")]
    tokenizer = Tokenizer(
        models.BPE(
            vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False, byte_fallback=False
        )
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(splits[pre])
    tokenizer.decoder = decoders.ByteLevel()
    types = meta.get_list("tokenizer.ggml.token_type")
    tokenizer.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t, k in zip(tokens, types, strict=True)
            if k == _CONTROL
        ]
    )
    tokenizer.add_tokens(
        [
            AddedToken(t, special=False, normalized=False)
            for t, k in zip(tokens, types, strict=True)
            if k == _USER_DEFINED
        ]
    )
    return tokenizer


def build_tokenizer(gguf_path: Path) -> tuple[Any, list[int]]:
    """(tokenizer, end-of-generation ids): the GGUF's tokenizer, special tokens and chat template."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    meta = GgufMetadata(gguf_path)
    tokens = [str(t) for t in meta.get_list("tokenizer.ggml.tokens")]

    def token(key: str) -> str | None:
        index = meta.get(f"tokenizer.ggml.{key}")
        return tokens[int(index)] if index is not None and 0 <= int(index) < len(tokens) else None

    special = {
        "bos_token": token("bos_token_id"),
        "eos_token": token("eos_token_id"),
        "unk_token": token("unknown_token_id"),
        "pad_token": token("padding_token_id") or token("eos_token_id"),
    }
    special = {k: v for k, v in special.items() if v is not None}
    template = meta.get("tokenizer.chat_template")
    if meta.get("tokenizer.ggml.model") == "gpt2":
        tokenizer: Any = cast(Any, PreTrainedTokenizerFast)(
            tokenizer_object=_byte_level_tokenizer(meta, tokens),
            clean_up_tokenization_spaces=False,  # llama.cpp detokenizes byte for byte
            **special,
        )
        if meta.get("tokenizer.ggml.add_bos_token") and "bos_token" in special:
            from tokenizers.processors import TemplateProcessing

            bos = str(special["bos_token"])
            tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
                single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokens.index(bos))]
            )
    else:
        # SentencePiece-style vocabularies: transformers' converter, with the special tokens put right.
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        tokenizer.add_special_tokens(special)
    if template:
        tokenizer.chat_template = str(template)
    eog = {tokens.index(t) for t in _EOG_TEXTS if t in tokens}
    eos_id = meta.get("tokenizer.ggml.eos_token_id")
    eos_ids = ([int(eos_id)] if eos_id is not None else []) + sorted(eog - {eos_id})
    return tokenizer, eos_ids


def has_chat_template(model_dir: Path) -> bool:
    """Whether a saved tokenizer folder carries a chat template (own file or in tokenizer_config.json)."""
    if (model_dir / "chat_template.jinja").is_file() or (model_dir / "chat_template.json").is_file():
        return True
    config = model_dir / "tokenizer_config.json"
    if not config.is_file():
        return False
    return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))


def export_gguf(gguf_path: Path, out_dir: Path, force: bool = False) -> ExportResult:
    from adapters.options import require_extra

    for module in ("torch", "transformers", "gguf"):
        require_extra(module, "hf", "harness export-hf")
    prepare_out_dir(out_dir, force)
    start = time.perf_counter()

    import torch
    from transformers import AutoModelForCausalLM

    from adapters.common import file_fingerprint

    try:
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
    except (ValueError, KeyError, NotImplementedError) as error:
        # transformers' GGUF loader supports a fixed list of architectures and quantization types.
        raise UsageError(
            f"transformers cannot read {gguf_path}: {error}",
            "Only architectures and quantization types that transformers' GGUF loader knows can be exported.",
        ) from error

    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = DTYPE
    clean: Any = cast(Any, AutoModelForCausalLM).from_config(config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    tokenizer, eos_ids = build_tokenizer(gguf_path)
    if eos_ids:
        # Stop where llama.cpp stops: EOS and the other end-of-generation tokens in the vocabulary.
        clean.generation_config.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
    clean.eval()
    clean.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if tokenizer.chat_template and not has_chat_template(out_dir):
        raise RuntimeError(f"the tokenizer saved to {out_dir} lost its chat template")

    parameters = int(sum(p.numel() for p in clean.parameters()))
    record = {
        "source": str(gguf_path),
        "source_fingerprint": file_fingerprint(gguf_path),
        "transformers": importlib.metadata.version("transformers"),
        "torch": importlib.metadata.version("torch"),
        "dtype": DTYPE,
        "architectures": list(config.architectures or []),
        "parameters": parameters,
        "chat_template": bool(tokenizer.chat_template),
    }
    (out_dir / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return ExportResult(
        out_dir=out_dir,
        source=gguf_path,
        parameters=parameters,
        seconds=time.perf_counter() - start,
        files=tuple(sorted(p.name for p in out_dir.iterdir())),
    )
