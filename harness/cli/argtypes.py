"""argparse value types shared by the subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters import AdapterOptions
    from harness.reasoning import ReasoningSpec


def whole_number(minimum: int) -> Callable[[str], int]:
    """An int flag that must be >= minimum; argparse shows the message next to the flag."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def add_backend_flags(p: Any) -> None:
    """How to reach the model: the flags `harness eval` and `harness curate` share."""
    positive = whole_number(1)
    p.add_argument(
        "--concurrency", type=positive, help="requests in flight for endpoints (default 64 per replica)"
    )
    p.add_argument("--timeout", type=float, default=600.0, metavar="S", help="per-request timeout in seconds")
    p.add_argument(
        "--max-attempts", type=positive, default=8, help="tries per request before giving up (default 8)"
    )
    p.add_argument(
        "--batch-size", type=positive, help="prompts per generate call for hf: and vllm: checkpoints"
    )
    p.add_argument(
        "--device", metavar="DEV", help="hf: torch device (cpu, cuda, cuda:1; default: cuda if present)"
    )
    p.add_argument(
        "--tensor-parallel-size", type=positive, default=1, metavar="N", help="vllm: GPUs to shard over"
    )
    p.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the endpoint's API key")
    p.add_argument(
        "--max-reply-bytes",
        type=whole_number(1024),
        metavar="N",
        help="endpoints: most bytes read from one reply; a larger reply is retried, never stored "
        "(default: 64 per requested token x samples + 64 KiB, at least 1 MiB)",
    )
    p.add_argument(
        "--replica",
        action="append",
        default=[],
        metavar="URL",
        help="endpoints: another server with the same model (base URL, e.g. http://b:8000/v1); repeatable. "
        "Requests go to the least-loaded one; one that fails is drained until it answers again",
    )


def adapter_options(args: argparse.Namespace, price_table: str | None = None) -> AdapterOptions:
    from adapters import AdapterOptions

    return AdapterOptions(
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        api_key_env=args.api_key_env,
        max_attempts=args.max_attempts,
        batch_size=args.batch_size,
        device=args.device,
        tensor_parallel_size=args.tensor_parallel_size,
        price_table=price_table,
        max_reply_bytes=args.max_reply_bytes,
        replicas=tuple(getattr(args, "replica", None) or ()),
    )


class _DeprecatedRunsAlias(argparse.Action):
    """`--out DIR` where it used to name the runs folder: still works, with a one-line warning."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option: Any = None) -> None:
        import sys

        print(
            "harness: warning: --out is deprecated here; use --runs DIR (the runs folder).", file=sys.stderr
        )
        setattr(namespace, self.dest, values)


def add_runs_flag(
    p: Any, help_text: str = "runs folder", deprecated_out: bool = False, **kwargs: Any
) -> None:
    """`--runs DIR`, the runs folder, in every command (`--out` a hidden deprecated alias where it was)."""
    p.add_argument(
        "--runs", metavar="DIR", help=f"{help_text} (default: $HARNESS_RUNS_DIR or ./runs)", **kwargs
    )
    if deprecated_out:
        p.add_argument("--out", dest="runs", action=_DeprecatedRunsAlias, help=argparse.SUPPRESS, **kwargs)


def add_data_dir_flag(p: Any, help_text: str = "local upstream data files") -> None:
    p.add_argument(
        "--data-dir", metavar="DIR", help=f"{help_text} (default: $HARNESS_DATA_DIR, else the hub)"
    )


def add_json_flag(p: Any, help_text: str = "print the result as JSON on stdout", **kwargs: Any) -> None:
    p.add_argument("--json", action="store_true", help=help_text, **kwargs)


def add_quiet_flag(p: Any, help_text: str = "no progress bar or info lines (for CI)") -> None:
    p.add_argument("--quiet", action="store_true", help=help_text)


def add_reasoning_flags(p: Any) -> None:
    """--reasoning, --think-tags and --thinking-budget (docs: README 'Evaluating reasoning models')."""
    from harness.reasoning import MODES

    p.add_argument(
        "--reasoning",
        choices=MODES,
        help="split thinking from the answer and score the answer only: think-tags (<think>...</think> in "
        "the text), field (the server's reasoning_content), auto (field when sent, else tags); default none",
    )
    p.add_argument(
        "--think-tags",
        nargs=2,
        metavar=("OPEN", "CLOSE"),
        help="the thinking tags for --reasoning think-tags|auto (default: <think> </think>)",
    )
    p.add_argument(
        "--thinking-budget",
        type=whole_number(0),
        metavar="TOKENS",
        help="tokens of thinking on top of the answer's max tokens (default: per suite, `harness suites "
        "show`); 0 turns thinking off where the backend can (enable_thinking=False)",
    )


def reasoning_spec(args: argparse.Namespace) -> ReasoningSpec | None:
    """The --reasoning choice; None when the flag was not given (a class config may then pin one)."""
    from harness.errors import UsageError
    from harness.reasoning import ReasoningSpec

    if args.think_tags and args.reasoning not in ("think-tags", "auto"):
        raise UsageError(
            f"--think-tags applies to --reasoning think-tags or auto, not {args.reasoning or 'none'}.",
            "Add --reasoning think-tags, or drop --think-tags.",
        )
    if args.reasoning is None:
        return None
    open_tag, close_tag = args.think_tags or ("<think>", "</think>")
    return ReasoningSpec(args.reasoning, open_tag, close_tag)
