"""`harness checkpoints`: the checkpoint registry as a lineage tree; `add` registers one; `show` resolves one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.cli.argtypes import add_json_flag, add_runs_flag


def register(commands: Any) -> None:
    p = commands.add_parser(
        "checkpoints", help="list, add and resolve registered checkpoints", description=__doc__
    )
    add_runs_flag(p, "runs folder holding registry.jsonl", deprecated_out=True)
    add_json_flag(p, "print the entries as JSON")
    p.set_defaults(func=list_entries)
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    add = actions.add_parser(
        "add", help="register a checkpoint", description="Register a checkpoint and its lineage."
    )
    add.add_argument("name", help="unique name, e.g. sft-lr2e-5")
    add.add_argument(
        "reference", metavar="REF", help="its concrete reference (hf:PATH, tinker://..., http://...#M)"
    )
    add.add_argument("--stage", required=True, help="base, sft, dpo, rlvr, ... (the STAGE of STAGE:TAG)")
    add.add_argument("--parent", metavar="NAME|STAGE:TAG", help="the checkpoint this one was trained from")
    add.add_argument("--base-model", metavar="MODEL", help="default: the parent's base model, else REF")
    add.add_argument("--tag", action="append", default=[], help="extra tag for STAGE:TAG (repeatable)")
    add.add_argument("--config", metavar="FILE", type=Path, help="training config; its sha256 is recorded")
    add.add_argument(
        "--data", metavar="FILE", type=Path, action="append", default=[], help="training data (repeatable)"
    )
    add.add_argument("--seed", type=int)
    add.add_argument(
        "--detail",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a detail to record (repeatable), e.g. beta=0.1: numbers stay numbers; `harness report "
        "--sweep-key beta` draws a family of checkpoints as a tradeoff curve",
    )
    add.set_defaults(func=add_entry)
    _shared_flags(add)

    show = actions.add_parser("show", help="resolve a reference and show its lineage")
    show.add_argument("reference", metavar="NAME|STAGE:TAG")
    show.set_defaults(func=show_entry)
    _shared_flags(show)


def _shared_flags(parser: argparse.ArgumentParser) -> None:
    """--runs/--json after the action too; SUPPRESS keeps a value given before the action."""
    add_runs_flag(
        parser, "runs folder holding registry.jsonl", deprecated_out=True, default=argparse.SUPPRESS
    )
    add_json_flag(parser, "print JSON", default=argparse.SUPPRESS)


def _registry(args: argparse.Namespace) -> Any:
    from harness.lineage import CheckpointRegistry, registry_path
    from harness.runs.store import runs_root

    return CheckpointRegistry(registry_path(runs_root(args.runs)))


def list_entries(args: argparse.Namespace) -> int:
    registry = _registry(args)
    if args.json:
        print(json.dumps([e.to_record() for e in registry.entries], indent=2))
        return 0
    if not registry.entries:
        print(f"No checkpoints registered in {registry.path}.")
        print(
            "Training stages register theirs; or: harness checkpoints add NAME REF --stage sft --parent NAME"
        )
        return 0
    print(f"checkpoints in {registry.path}  (NAME [STAGE:TAGS] REF)")
    latest = {
        stage: entries[-1].name
        for stage in {e.stage for e in registry.entries}
        if (entries := registry.of_stage(stage))
    }
    known = {e.name for e in registry.entries}
    roots = [e for e in registry.entries if e.parent is None or e.parent not in known]

    def line(entry: Any) -> str:
        index = registry.of_stage(entry.stage).index(entry) + 1
        tags = [f"v{index}", *entry.tags] + (["latest"] if latest[entry.stage] == entry.name else [])
        dangling = (
            f"  (parent '{entry.parent}' is not registered)"
            if entry.parent and entry.parent not in known
            else ""
        )
        return f"{entry.name} [{entry.stage}:{','.join(tags)}] {entry.reference}{dangling}"

    def walk(entry: Any, prefix: str, last: bool, top: bool) -> None:
        print(line(entry) if top else f"{prefix}{'└── ' if last else '├── '}{line(entry)}")
        children = registry.children(entry.name)
        inner = "" if top else prefix + ("    " if last else "│   ")
        for i, child in enumerate(children):
            walk(child, inner, i == len(children) - 1, False)

    for root in roots:
        walk(root, "", True, True)
    return 0


def add_entry(args: argparse.Namespace) -> int:
    from harness.errors import UsageError
    from harness.lineage import sha256_of_files

    for path in [args.config, *args.data]:
        if path is not None and not path.is_file():
            raise UsageError(
                f"The file {path} does not exist.", "--config and --data take files whose sha256 is recorded."
            )
    registry = _registry(args)
    entry = registry.add(
        name=args.name,
        reference=args.reference,
        stage=args.stage,
        parent=args.parent,
        base_model=args.base_model,
        tags=args.tag,
        config_sha256=sha256_of_files([args.config]) if args.config else None,
        data_sha256=sha256_of_files(args.data) if args.data else None,
        seed=args.seed,
        details=_details(args.detail),
    )
    print(
        f"registered {entry.name} as {entry.stage}:v{len(registry.of_stage(entry.stage))} ({entry.stage}:latest) in {registry.path}"
    )
    return 0


def show_entry(args: argparse.Namespace) -> int:
    from harness.checkpoints import RegistryRef, parse_checkpoint

    registry = _registry(args)
    entry = registry.by_name(args.reference)
    if entry is None:
        ref = parse_checkpoint(args.reference)
        if not isinstance(ref, RegistryRef):
            from harness.errors import UsageError

            raise UsageError(
                f"'{args.reference}' is neither a registered name nor STAGE:TAG.", registry.known_text()
            )
        entry = registry.lookup(ref)
    if args.json:
        print(
            json.dumps(
                {"entry": entry.to_record(), "lineage": [e.name for e in registry.lineage(entry)]}, indent=2
            )
        )
        return 0
    for key, value in entry.to_record().items():
        print(f"{key:<14} {value}")
    print(f"{'lineage':<14} {' -> '.join(f'{e.name} [{e.stage}]' for e in registry.lineage(entry))}")
    return 0


def _details(pairs: list[str]) -> dict[str, str | int | float]:
    """KEY=VALUE flags as a mapping; a value that reads as a finite number is stored as one."""
    import math

    from harness.errors import UsageError

    details: dict[str, str | int | float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--detail {pair!r} is not KEY=VALUE.", "e.g. --detail beta=0.1")
        number: str | int | float = value
        for convert in (int, float):
            try:
                number = convert(value)
                break
            except ValueError:
                continue
        details[key.strip()] = value if isinstance(number, float) and not math.isfinite(number) else number
    return details
