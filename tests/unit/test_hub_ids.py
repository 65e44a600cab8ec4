"""Hub ids in `hf:ORG/NAME[@REV]` and `vllm:ORG/NAME[@REV]` (adapters/hub.py), with no network: a tiny
model written into a Hugging Face cache in tmp (the `models--org--name/snapshots/<sha>/` layout with
`refs/main`) is resolved by huggingface_hub's own snapshot_download under HF_HUB_OFFLINE=1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.hub import MODEL_FILES, HubId, hub_id_for, parse_hub_id
from harness.checkpoints import HfRef, VllmRef, parse_checkpoint
from harness.errors import DataError, UsageError
from tests.conftest import cli_env, harness

SHA = "0123456789abcdef0123456789abcdef01234567"
SECRET = "hf_NeverWriteThisTokenAnywhere0123456789"


# --- parsing and validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("meta-llama/Llama-3.2-1B", HubId("meta-llama/Llama-3.2-1B")),
        ("allenai/OLMo-2-0425-1B@main", HubId("allenai/OLMo-2-0425-1B", "main")),
        (f"org/name@{SHA}", HubId("org/name", SHA)),
        ("Org_1/model.v2", HubId("Org_1/model.v2")),
    ],
)
def test_hub_ids_that_parse(text: str, expected: HubId) -> None:
    assert parse_hub_id(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "../secret/model",  # path tricks are never hub ids
        "org/../../etc",
        "org/..",
        "/abs/model",
        "~/models/x",
        "./org/name",
        "org/name/extra",  # one slash only
        "lonename",  # the hub's legacy ids without an org are not accepted
        "org//name",
        "-org/name",
        "org/name-",
        "org/na--me",
        "org/name.git",
        "org/name@",
        "org/name@../main",
        "org/name@a/b",
        "org/na me",
        "org/name\n",
        "o/" + "n" * 95,  # 97 characters: over the hub's 96
        "C:/models/x",
    ],
)
def test_texts_that_are_not_hub_ids(text: str) -> None:
    assert parse_hub_id(text) is None


def test_an_existing_local_path_wins_over_a_hub_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert hub_id_for("org/name") == HubId("org/name")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert hub_id_for("org/name") is None  # ./org/name exists: it is the folder meant


def test_the_parser_keeps_the_hub_id_and_revision_in_the_reference() -> None:
    ref = parse_checkpoint("hf:meta-llama/Llama-3.2-1B@main+lora:ckpt/sft-1/adapter")
    assert isinstance(ref, HfRef)
    assert (ref.path, ref.lora) == ("meta-llama/Llama-3.2-1B@main", "ckpt/sft-1/adapter")
    vref = parse_checkpoint("vllm:meta-llama/Llama-3.2-1B")
    assert isinstance(vref, VllmRef) and vref.base == "meta-llama/Llama-3.2-1B"


def test_only_top_level_config_tokenizer_and_safetensors_are_downloaded() -> None:
    from huggingface_hub.utils import filter_repo_objects

    repo = [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json", "special_tokens_map.json", "pytorch_model.bin", "model.onnx",
        "original/consolidated.00.pth", "original/params.json", "original/tokenizer.model",
        "onnx/model.safetensors", "README.md", "LICENSE.txt",
    ]  # fmt: skip
    kept = list(filter_repo_objects(repo, allow_patterns=list(MODEL_FILES), ignore_patterns=["*/*"]))
    assert kept == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json", "special_tokens_map.json",
    ]  # fmt: skip


# --- a tiny model in a hub cache -----------------------------------------------------------------------


def tiny_model(folder: Path) -> Path:
    """A 2-layer random Llama with a word-level tokenizer and a chat template (loads in a second)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = [
        "<unk>",
        "<s>",
        "</s>",
        *sorted(set("the answer is a of to and what how many 1 2 3 4 5".split())),
    ]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()  # type: ignore[assignment]
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<unk>"
    )
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    config = transformers.LlamaConfig(
        vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
        bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def hub_cache(hf_home: Path, repo: str, sha: str = SHA) -> Path:
    """huggingface_hub's cache layout: hub/models--ORG--NAME/{refs/main, snapshots/<sha>/}."""
    storage = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    tiny_model(storage / "snapshots" / sha)
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(sha)
    return storage / "snapshots" / sha


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HOME in tmp holding tiny-org/tiny-llama; huggingface_hub pointed at it and kept offline."""
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    hub_cache(home, "tiny-org/tiny-llama")
    monkeypatch.setenv("HF_HOME", str(home))
    # huggingface_hub reads these once at import; snapshot_download reads the module attributes per call.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # no ./tiny-org/tiny-llama folder here
    return home


def test_a_cached_hub_model_loads_through_the_hf_adapter_with_its_sha_in_the_identity(
    offline_cache: Path,
) -> None:
    import asyncio

    from adapters import AdapterOptions, create_adapter
    from harness.types import GenerationSettings, Message, Request

    adapter = create_adapter(parse_checkpoint("hf:tiny-org/tiny-llama"), AdapterOptions(device="cpu"))
    identity = adapter.identity()
    assert f":hf:hub:tiny-org/tiny-llama@{SHA}:" in identity
    assert identity.endswith(":float32")

    asyncio.run(adapter.preflight())
    request = Request("q", GenerationSettings(max_tokens=3), messages=(Message("user", "what is 2"),))
    [completion] = asyncio.run(adapter.generate([request]))
    assert completion.completion_tokens <= 3 and completion.prompt_tokens > 0
    asyncio.run(adapter.aclose())

    # An explicit revision that names the same commit resolves to the same identity; another commit
    # (what `main` points at after an upstream push) gives another identity, so the cache keeps them apart.
    same = create_adapter(parse_checkpoint(f"hf:tiny-org/tiny-llama@{SHA}"), AdapterOptions(device="cpu"))
    assert same.identity() == identity
    other_sha = "f" * 40
    hub_cache(offline_cache, "tiny-org/tiny-llama", other_sha)
    moved = create_adapter(parse_checkpoint("hf:tiny-org/tiny-llama"), AdapterOptions(device="cpu"))
    assert f"@{other_sha}:" in moved.identity() and moved.identity() != identity


def test_a_local_folder_of_the_same_name_wins(offline_cache: Path, tmp_path: Path) -> None:
    from adapters.hf import resolve_model

    local = tiny_model(tmp_path / "tiny-org" / "tiny-llama")
    path, snapshot = resolve_model("tiny-org/tiny-llama")
    assert snapshot is None and path == local.resolve()


def test_offline_and_not_cached_is_one_paragraph_naming_the_fixes(offline_cache: Path) -> None:
    from adapters.hf import resolve_model

    with pytest.raises(DataError) as info:
        resolve_model("meta-llama/Llama-3.2-1B")
    message = info.value.message
    assert "\n" not in message
    assert "meta-llama/Llama-3.2-1B is not in the Hugging Face cache" in message
    assert "HF_HUB_OFFLINE" in message and "hf:/path/to/folder" in message
    assert "There is no local folder 'meta-llama/Llama-3.2-1B'" in message


def test_vllm_resolves_a_hub_id_to_the_snapshot_folder_before_vllm_sees_it(
    offline_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import adapters.vllm as vllm_adapter
    from adapters import AdapterOptions

    monkeypatch.setattr(vllm_adapter, "vllm_version", lambda: "0.0-test")
    ref = parse_checkpoint("vllm:tiny-org/tiny-llama")
    assert isinstance(ref, VllmRef)
    adapter = vllm_adapter.create_vllm_adapter(ref, AdapterOptions())
    assert adapter.identity() == f"vllm-0.0-test:hub:tiny-org/tiny-llama@{SHA}:tp1"
    assert isinstance(adapter, vllm_adapter.VllmAdapter)
    assert Path(adapter.model).parent.name == "snapshots" and Path(adapter.model).name == SHA
    with pytest.raises(DataError, match=r"vllm:/path/to/folder"):
        vllm_adapter.create_vllm_adapter(parse_checkpoint("vllm:org/not-cached"), AdapterOptions())  # type: ignore[arg-type]


def test_a_missing_relative_path_that_is_no_hub_id_stays_a_usage_error(offline_cache: Path) -> None:
    from adapters.hf import resolve_model

    with pytest.raises(UsageError, match="does not exist"):
        resolve_model("../no/such/model")


def test_cli_eval_of_a_cached_hub_model_records_the_sha_and_never_the_token(
    tmp_path: Path, data_dir: Path
) -> None:
    pytest.importorskip("transformers")
    home = tmp_path / "hf-home"
    hub_cache(home, "tiny-org/tiny-llama")
    runs = tmp_path / "runs"
    env = cli_env(HF_HOME=str(home), HF_HUB_OFFLINE="1", HF_TOKEN=SECRET)
    env.pop("HF_HUB_CACHE", None)
    args = ("eval", "--checkpoint", "hf:tiny-org/tiny-llama", "--suite", "gsm8k", "--limit", "1",
            "--max-tokens", "2", "--runs", str(runs), "--json", "--device", "cpu")  # fmt: skip
    proc = harness(*args, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert SECRET not in proc.stdout + proc.stderr
    run_dir = Path(json.loads(proc.stdout)[0]["run_dir"])
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert f"hub:tiny-org/tiny-llama@{SHA}" in manifest["adapter"]
    for path in runs.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    missing = harness("eval", "--checkpoint", "hf:meta-llama/Llama-3.2-1B", "--suite", "gsm8k", "--limit", "1",
                      "--runs", str(runs), env=env)  # fmt: skip
    assert missing.returncode == 4, missing.stderr
    errors = [line for line in missing.stderr.splitlines() if line.startswith("harness: error:")]
    assert len(errors) == 1 and "HF_HUB_OFFLINE" in errors[0] and "hf:/path/to/folder" in errors[0]
    assert "Traceback" not in missing.stderr and SECRET not in missing.stderr
