"""`harness suites [show NAME]`: the registered suites and their pinned settings."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    p = commands.add_parser("suites", help="list suites, or show one", description=__doc__)
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="suite to show")
    p.add_argument("--data-dir", metavar="DIR", help="also load the data and count its rows")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.errors import UsageError
    from harness.table import render
    from suites import get_suite, suite_names

    if args.action == "list":
        rows = []
        for name in suite_names():
            suite = get_suite(name)
            settings = suite.default_settings()
            rows.append(
                [
                    name,
                    suite.version,
                    suite.primary_metric,
                    str(settings.max_tokens),
                    "greedy" if settings.temperature == 0 else f"T={settings.temperature}",
                ]
            )
        print(render(["suite", "version", "primary metric", "max tokens", "decoding"], rows))
        return 0
    if not args.name:
        raise UsageError(
            "`harness suites show` needs a suite name.", f"Known suites: {', '.join(suite_names())}."
        )
    suite = get_suite(args.name)
    print(f"{suite.name}@{suite.version}   primary metric: {suite.primary_metric}")
    print(f"generation: {suite.default_settings().as_record()}")
    print(f"pinned: {dict(suite.pinned_settings())}")
    print(
        f"thinking budget: {suite.thinking_budget} tokens (with --reasoning think-tags|auto|field: added to "
        "max_tokens for the thinking; change it with --thinking-budget N)"
    )
    print()
    print(suite.description.strip())
    if args.data_dir is not None:
        from harness.data import resolve_data_source

        source = resolve_data_source(args.data_dir)
        loaded = suite.load(source, None)
        print(f"\ndata: {loaded.total} samples from {loaded.source} (sha256 {loaded.sha256[:16]})")
        table = suite.category_counts(source)
        if table is not None:
            print(f"categories over all {sum(table.values())} rows of the source file:")
            print(render(["category", "rows"], [[name, str(n)] for name, n in table.items()], right=(1,)))
    return 0
