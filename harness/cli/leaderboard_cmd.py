"""`harness leaderboard build|submit|add|verify`: the static class leaderboard and its verified submissions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.argtypes import add_runs_flag


def register(commands: Any) -> None:
    p = commands.add_parser(
        "leaderboard", help="build the static leaderboard; submit and add bundles", description=__doc__
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    build = actions.add_parser("build", help="build the static site from runs folders")
    build.add_argument("runs", nargs="+", type=Path, metavar="RUNS", help="runs folders (harness eval --out)")
    build.add_argument("--out", required=True, type=Path, metavar="SITE", help="folder for the static site")
    build.add_argument(
        "--references",
        type=Path,
        metavar="FILE",
        help="published reference scores (default: the file shipped with the harness; 'none' for no rows)",
    )
    _add_config_flag(build)
    build.set_defaults(func=run_build)

    submit = actions.add_parser("submit", help="bundle runs for a class leaderboard")
    submit.add_argument(
        "sources",
        nargs="+",
        metavar="CHECKPOINT",
        help="checkpoint references (sft:latest, hf:DIR, ...: their complete runs in --runs), runs folders "
        "or run folders",
    )
    submit.add_argument("--team", required=True, help="team name shown on the leaderboard")
    submit.add_argument("--out", type=Path, metavar="FILE", help="bundle file (default: ./<team>-bundle.zip)")
    add_runs_flag(submit, "runs folder (and registry) where checkpoint references are looked up")
    submit.add_argument(
        "--allow-replay", action="store_true", help="bundle replay: runs too (hand-written responses)"
    )
    submit.set_defaults(func=run_submit)

    add = actions.add_parser(
        "add", help="validate a bundle, recompute its metrics, accept it, rebuild the site"
    )
    add.add_argument("bundle", type=Path, metavar="BUNDLE")
    add.add_argument("--site-data", required=True, type=Path, metavar="DIR", help="accepted submissions")
    add.add_argument("--site", type=Path, metavar="SITE", help="rebuild this site from DIR afterwards")
    add.add_argument(
        "--merge",
        action="store_true",
        help="keep the team's earlier rows that this bundle does not hold (default: replace them all)",
    )
    add.add_argument("--allow-replay", action="store_true", help="accept replay: runs (marked on the site)")
    _add_config_flag(add, " (default: DIR/leaderboard.yaml when there is one)")
    add.set_defaults(func=run_add)

    from harness.cli.leaderboard_verify_cmd import register_verify

    register_verify(actions)


def _add_config_flag(p: Any, default: str = "") -> None:
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="the class config (leaderboard.yaml): pinned suites and settings; only qualifying rows are ranked"
        + default,
    )


def class_config(path: Path | None) -> Any:
    """The class config named by --config (None without one)."""
    if path is None:
        return None
    from leaderboard.class_config import load_class_config

    return load_class_config(path)


def run_build(args: argparse.Namespace) -> int:
    from leaderboard.site import build_site

    summary = build_site(args.runs, args.out, args.references, class_config=class_config(args.config))
    print(summary.describe())
    return 0


def run_submit(args: argparse.Namespace) -> int:
    from leaderboard.submissions import write_bundle

    path = write_bundle(
        args.sources, args.team, args.out, runs_root=args.runs, allow_replay=args.allow_replay
    )
    print(f"wrote {path}")
    return 0


def run_add(args: argparse.Namespace) -> int:
    from leaderboard.submissions import add_bundle

    # Acceptance is printed as soon as the team's folder is in place; the site rebuild follows (both
    # under the site-data lock, so concurrent adds take turns).
    result = add_bundle(
        args.bundle,
        args.site_data,
        args.site,
        on_accepted=lambda r: print(r.describe(), flush=True),
        allow_replay=args.allow_replay,
        merge=args.merge,
        class_config=class_config(args.config),
    )
    if result.site is not None:
        print(result.site.describe())
    return 0
