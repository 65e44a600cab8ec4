"""llama-cpp-python's OpenAI-compatible server, with OpenAI's sampling defaults.

Run as `python -m adapters.llama_server --extra-buffers on|off ARGS` (ARGS: those of
`python -m llama_cpp.server`). `--extra-buffers` is the llama.cpp path `harness serve` chose with the guard
(adapters/llama_guard.py); it is taken out of argv before llama.cpp's server parses it.
The stock server applies `repeat_penalty=1.1` to every request that does not name one, which the
OpenAI API has no notion of: "temperature 0" would then not be greedy decoding, and the same GGUF
would answer differently in-process and over HTTP. Here a request without `repeat_penalty` gets 1.0
(no penalty); a client may still send its own.
"""

from __future__ import annotations


def patch_defaults() -> None:
    from llama_cpp.server import types

    for model in (types.CreateCompletionRequest, types.CreateChatCompletionRequest):
        model.model_fields["repeat_penalty"].default = 1.0
        model.model_rebuild(force=True)


def main() -> None:
    import sys

    from adapters.llama_probe import set_extra_buffers_for_process

    if sys.argv[1:2] != ["--extra-buffers"] or sys.argv[2:3] not in (["on"], ["off"]):
        sys.exit("usage: python -m adapters.llama_server --extra-buffers on|off [llama_cpp.server args]")
    set_extra_buffers_for_process(sys.argv[2] == "on")
    from adapters.llama_replay import install

    install()  # a retried request gets the answer it got the first time
    del sys.argv[1:3]
    patch_defaults()  # before the app module builds its routes from these models
    from llama_cpp.server.__main__ import main as serve

    serve()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
