"""The adapter registry: one factory per checkpoint form. Each imports its backend only when called.

A form whose backend is not installed fails with the extra to install; nothing here imports torch,
llama_cpp, vllm or tinker at module import time.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.options import AdapterOptions, require_extra
from harness.checkpoints import (
    CheckpointRef,
    EmbeddedRef,
    EndpointRef,
    GgufRef,
    HfRef,
    RegistryRef,
    ReplayRef,
    TinkerBaseRef,
    TinkerRef,
    VllmRef,
)
from harness.registry import Registry
from harness.types import Adapter

__all__ = ["ADAPTERS", "AdapterOptions", "create_adapter", "require_extra"]


AdapterFactory = Callable[[CheckpointRef, AdapterOptions], Adapter]
ADAPTERS: Registry[AdapterFactory] = Registry("checkpoint form")


def create_adapter(ref: CheckpointRef, options: AdapterOptions | None = None) -> Adapter:
    options = options or AdapterOptions()
    if options.replicas and ref.form not in ("endpoint", "registry"):  # a registry entry resolves to its form
        from harness.errors import UsageError

        raise UsageError(
            f"--replica applies to endpoint checkpoints (http://HOST/v1#MODEL), not '{ref.raw}'.",
            "Drop --replica, or evaluate the model through a server: harness serve, vllm serve.",
        )
    return ADAPTERS.get(ref.form)(ref, options)


def _llama_cpp(ref: CheckpointRef, options: AdapterOptions) -> Adapter:
    require_extra("llama_cpp", "local", "This checkpoint")
    from adapters.llama_cpp import DEFAULT_N_CTX, LlamaCppAdapter, embedded_gguf_path, resolve_gguf

    if isinstance(ref, EmbeddedRef):
        path, label = embedded_gguf_path(), "embedded"
    else:
        assert isinstance(ref, GgufRef)
        path = resolve_gguf(ref.path)
        label = f"gguf:{path.name}"
    return LlamaCppAdapter(
        path, label, n_ctx=options.n_ctx or DEFAULT_N_CTX, think_open_tag=options.think_open_tag
    )


def _endpoint(ref: CheckpointRef, options: AdapterOptions) -> Adapter:
    assert isinstance(ref, EndpointRef)
    from adapters.http_retry import RetryPolicy
    from adapters.openai_compat import OpenAICompatAdapter

    return OpenAICompatAdapter(
        ref,
        concurrency=options.concurrency,  # None: 64 per replica
        timeout_s=options.timeout_s,
        api_key_env=options.api_key_env,
        retry=RetryPolicy(max_attempts=options.max_attempts),
        max_reply_bytes=options.max_reply_bytes,
        replicas=options.replicas,
    )


def _replay(ref: CheckpointRef, options: AdapterOptions) -> Adapter:
    assert isinstance(ref, ReplayRef)
    from adapters.replay import ReplayAdapter

    return ReplayAdapter(ref.path)


def _hf(ref: CheckpointRef, options: AdapterOptions) -> Adapter:
    assert isinstance(ref, HfRef)
    require_extra("transformers", "hf", "An hf: checkpoint")
    require_extra("torch", "hf", "An hf: checkpoint")
    if ref.lora:
        require_extra("peft", "hf", "A LoRA on an hf: checkpoint")
    from adapters.hf import create_hf_adapter

    return create_hf_adapter(ref, options)


def _vllm(ref: CheckpointRef, options: AdapterOptions) -> Adapter:
    assert isinstance(ref, VllmRef)
    require_extra("vllm", "vllm", "A vllm: checkpoint")
    from adapters.vllm import create_vllm_adapter

    return create_vllm_adapter(ref, options)


def _tinker(ref: CheckpointRef, options: AdapterOptions) -> Adapter:
    assert isinstance(ref, TinkerRef | TinkerBaseRef)
    require_extra("tinker", "tinker", "A Tinker checkpoint")
    from adapters.tinker import create_tinker_adapter

    return create_tinker_adapter(ref, options)


def _registry(ref: CheckpointRef, options: AdapterOptions) -> Adapter:
    assert isinstance(ref, RegistryRef)
    from harness.lineage import resolve_registry_ref

    entry = resolve_registry_ref(ref)
    return create_adapter(entry.checkpoint_ref(), options)


ADAPTERS.register("embedded", _llama_cpp)
ADAPTERS.register("gguf", _llama_cpp)
ADAPTERS.register("endpoint", _endpoint)
ADAPTERS.register("replay", _replay)
ADAPTERS.register("hf", _hf)
ADAPTERS.register("vllm", _vllm)
ADAPTERS.register("tinker", _tinker)
ADAPTERS.register("tinker-base", _tinker)
ADAPTERS.register("registry", _registry)
