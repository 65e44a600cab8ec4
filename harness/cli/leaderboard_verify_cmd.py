"""`harness leaderboard verify BUNDLE --checkpoint REF --sample K`: the staff's reproduction check.

It checks the bundle as `add` does, regenerates K random (seeded) samples of the claimed checkpoint's
runs greedily with REF, and reports agreement with the submitted responses (leaderboard.spot_check).
Exit 0 when agreement reaches --min-agreement (or nothing was checkable: runs sampled at temperature > 0),
13 when it does not.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.argtypes import adapter_options, add_backend_flags, add_runs_flag, whole_number


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got '{text}'") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {value}")
    return value


def register_verify(actions: Any) -> None:
    verify = actions.add_parser(
        "verify",
        help="spot-check a bundle: regenerate K samples with the claimed checkpoint and compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("bundle", type=Path, metavar="BUNDLE")
    verify.add_argument(
        "--checkpoint",
        required=True,
        metavar="REF",
        help="the checkpoint to regenerate with (STAGE:TAG resolved in --runs); it must be a checkpoint of "
        "the bundle unless --claimed names which one it stands for",
    )
    verify.add_argument(
        "--claimed",
        metavar="REF",
        help="the bundle's checkpoint reference that REF reproduces (when your copy has another reference)",
    )
    verify.add_argument(
        "--sample", required=True, type=whole_number(1), metavar="K", help="samples to regenerate"
    )
    verify.add_argument(
        "--seed", type=int, default=0, help="seed of the random choice of samples (default 0)"
    )
    verify.add_argument(
        "--min-agreement",
        type=_fraction,
        metavar="F",
        help="fraction of samples that must agree (default 0.9: with K < 10 every sample)",
    )
    verify.add_argument(
        "--site-data", type=Path, metavar="DIR", help="write the result to DIR/<team>/spot_check.json"
    )
    add_runs_flag(verify, "runs folder whose registry resolves STAGE:TAG")
    add_backend_flags(verify)
    verify.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    from harness.runs.store import runs_root
    from leaderboard.spot_check import DEFAULT_MIN_AGREEMENT, DISAGREES_EXIT, spot_check

    result = spot_check(
        args.bundle,
        args.checkpoint,
        args.sample,
        seed=args.seed,
        claimed=args.claimed,
        runs_root=runs_root(args.runs),
        site_data=args.site_data,
        min_agreement=DEFAULT_MIN_AGREEMENT if args.min_agreement is None else args.min_agreement,
        options=adapter_options(args),
    )
    print(result.describe())
    return 0 if result.passed or result.agreement is None else DISAGREES_EXIT
