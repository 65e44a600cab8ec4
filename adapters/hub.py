"""Hugging Face hub ids in `hf:ORG/NAME[@REVISION]`, `vllm:ORG/NAME[@REVISION]` and `+lora:ORG/NAME`.

The rule, in order:
1. An existing local path always wins (a folder named `org/name` under the working directory is used
   as it is, never looked up on the hub).
2. Otherwise the text must be a hub id: exactly `ORG/NAME`, each part letters, digits, `-`, `_`, `.`,
   starting with a letter or digit, no `..` or `--`, at most 96 characters in all (the hub's own rules),
   optionally `@REVISION` (a branch, tag or commit sha). Anything else (`../x`, `/abs/path`, `~/x`,
   `a/b/c`, a lone `name`) is a local path that does not exist, and the caller says so.
3. A hub id is fetched with `huggingface_hub.snapshot_download` into the usual cache (`HF_HOME`,
   `HF_HUB_CACHE`), with the usual token (`HF_TOKEN` or the one `hf auth login` stored), and only the
   files the adapter loads: config, tokenizer and `*.safetensors` at the top level of the repository
   (not `original/`, `.bin`, `.pth` or ONNX duplicates). `HF_HUB_OFFLINE=1` uses the cache alone.

The snapshot folder is named by the resolved commit sha, which the adapters put into their identity, so
the response cache and the run manifest tell two revisions apart. The token is never passed, stored or
shown by the harness: huggingface_hub reads it itself, and error texts are scrubbed of it anyway.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DataError, EndpointError, UsageError

_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_HUB_ID = re.compile(rf"^({_PART})/({_PART})(?:@([A-Za-z0-9][A-Za-z0-9._-]{{0,127}}))?$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
MAX_REPO_ID = 96  # the hub's limit on ORG/NAME

# Top-level files an hf:/vllm: model needs; `ignore_patterns` drops every subfolder (fnmatch's `*` also
# matches '/', so `*.safetensors` alone would pull `original/` or `onnx/` copies).
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)
LORA_FILES = ("adapter_config.json", "adapter_model.safetensors")
_SUBFOLDERS = ("*/*",)


@dataclass(frozen=True)
class HubId:
    repo: str  # ORG/NAME
    revision: str | None = None  # as written after '@'; None: the default branch

    def __str__(self) -> str:
        return self.repo if self.revision is None else f"{self.repo}@{self.revision}"


@dataclass(frozen=True)
class HubSnapshot:
    """A downloaded (or cached) hub snapshot: its folder and the commit it holds."""

    hub: HubId
    path: Path
    commit: str

    def label(self) -> str:
        """How identities name it: the repository and the exact commit (never the branch name)."""
        return f"hub:{self.hub.repo}@{self.commit}"


def parse_hub_id(text: str) -> HubId | None:
    """The hub id `text` spells, or None when it cannot be one (see the module docstring, rule 2)."""
    match = _HUB_ID.fullmatch(text)  # not match(): `$` also matches before a trailing newline
    if match is None:
        return None
    repo = f"{match.group(1)}/{match.group(2)}"
    revision = match.group(3)
    if len(repo) > MAX_REPO_ID or ".." in text or "--" in repo or repo.endswith(".git"):
        return None
    return HubId(repo, revision)


def hub_id_for(text: str) -> HubId | None:
    """The hub id to fetch for a reference's path part: None when a local path of that name exists."""
    if Path(text).expanduser().exists():
        return None
    return parse_hub_id(text)


def _redact(text: str) -> str:
    """The message without the hub token, should a library ever echo it."""
    try:
        from huggingface_hub import get_token

        token = get_token()
    except Exception:
        token = None
    return text.replace(token, "***") if token else text


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return _redact(f"{type(error).__name__}: {lines[0][:240] if lines else ''}")


def fetch_snapshot(hub: HubId, *, form: str, what: str = "model") -> HubSnapshot:
    """Download (or find in the cache) the files a `form:` reference needs; map every failure to one
    paragraph that says what to do. `what` is "model" or "lora" (which file set)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns: Sequence[str] = LORA_FILES if what == "lora" else MODEL_FILES
    local_form = f"{form}:/path/to/folder" if what == "model" else f"{form}:BASE+lora:/path/to/adapter"
    try:
        folder = snapshot_download(
            hub.repo,
            revision=hub.revision,
            allow_patterns=list(patterns),
            ignore_patterns=list(_SUBFOLDERS),
        )
    except LocalEntryNotFoundError as error:  # offline (or unreachable) and not in the cache
        offline = bool(constants.HF_HUB_OFFLINE)
        why = (
            "HF_HUB_OFFLINE=1 is set"
            if offline
            else f"the hub could not be reached ({_first_line(error.__cause__ or error)})"
        )
        raise DataError(
            f"There is no local folder '{hub}', and the {what} {hub} is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}), and {why}.",
            "Fetch it once with network access (unset HF_HUB_OFFLINE and run the same command: it downloads "
            "into the cache, and later offline runs find it there), or point at a local folder instead: "
            f"{local_form} (config.json, tokenizer files and *.safetensors).",
        ) from None
    except GatedRepoError:
        raise UsageError(
            f"The hub model {hub.repo} is gated, and this machine's token has no access to it.",
            f"Accept its license at https://huggingface.co/{hub.repo} with your account, then log in "
            "(`hf auth login`, or set HF_TOKEN); or use a local folder: " + local_form + ".",
        ) from None
    except RevisionNotFoundError:
        raise UsageError(
            f"The hub model {hub.repo} has no revision '{hub.revision}'.",
            "Use a branch, tag or full commit sha that exists (or drop '@REVISION' for the default branch).",
        ) from None
    except RepositoryNotFoundError:
        raise UsageError(
            f"There is no local folder '{hub}', and the Hugging Face hub has no {what} {hub.repo} that this "
            "machine can see.",
            "Check the spelling (ORG/NAME); for a private model log in (`hf auth login`, or set HF_TOKEN); "
            f"for a local folder give its path, e.g. {local_form}.",
        ) from None
    except HFValidationError as error:
        raise UsageError(f"'{hub}' is not a valid hub id: {_first_line(error)}.", None) from None
    except Exception as error:
        raise EndpointError(
            f"Downloading {hub} from the Hugging Face hub failed: {_first_line(error)}.",
            f"Re-run the command (finished files stay in the cache), or use a local folder: {local_form}.",
        ) from None
    path = Path(folder)
    if not _COMMIT.fullmatch(path.name):  # snapshot folders are named by the commit they hold
        raise EndpointError(f"huggingface_hub returned {path}, which is not a snapshot folder.", None)
    return HubSnapshot(hub=hub, path=path, commit=path.name)
