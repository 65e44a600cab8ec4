"""Leaderboard build over 1,000 synthetic checkpoints: seconds and site size.

What is measured: (1) writing the synthetic runs folders (tests/support/synthetic_runs.py: the same
manifest.json / samples.jsonl / metrics.json files `harness eval` writes, 5 suites x 20 samples per
checkpoint, 50 teams); (2) `leaderboard.site.build_site` over them, with the shipped reference rows:
wall seconds, peak RSS of this process, site size in bytes, number of files and HTML pages, and the size of
index.html and data/index.js (what a browser loads first). Each full build goes to a fresh folder; with
`--repeat N` the full build is timed N times over the same runs. Then (3) the incremental rebuilds of the
last site (leaderboard.site_state): once with nothing changed, and once after one team's bundle was
replaced (its runs folder swapped for one generated with another seed: other scores, new files), as
`leaderboard add` does; with the number of checkpoints each rebuild rendered. The load average is
recorded before and after (the numbers mean little on a busy machine).

Reproduce (from the repository root):

    .venv/bin/python bench/leaderboard_scale.py --checkpoints 1000 --repeat 2 --json bench/out/leaderboard_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leaderboard.site import build_site  # noqa: E402
from tests.support.synthetic_runs import SUITES, write_runs  # noqa: E402


def folder_stats(folder: Path) -> dict[str, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {
        "bytes": sum(p.stat().st_size for p in files),
        "files": len(files),
        "html_pages": sum(1 for p in files if p.suffix == ".html"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoints", type=int, default=1000)
    parser.add_argument("--samples-per-run", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1, help="time the build this many times")
    parser.add_argument(
        "--workdir", type=Path, help="keep runs and sites here (default: a temp dir, removed)"
    )
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="lb-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = list(os.getloadavg())
    try:
        start = time.perf_counter()
        runs = write_runs(work / "runs", args.checkpoints, samples_per_run=args.samples_per_run)
        write_s = time.perf_counter() - start
        runs_stats = folder_stats(work / "runs")
        builds: list[float] = []
        summary: Any = None
        for i in range(args.repeat):
            out = work / f"site-{i}"
            start = time.perf_counter()
            summary = build_site(list(runs.roots), out, None)
            assert summary.full, "a build into a fresh folder is a full build"
            builds.append(time.perf_counter() - start)
        site = work / f"site-{args.repeat - 1}"
        rebuilds = {}
        start = time.perf_counter()
        unchanged = build_site(list(runs.roots), site, None)
        rebuilds["nothing_changed"] = {
            "s": round(time.perf_counter() - start, 2),
            "rendered": unchanged.rendered,
        }
        team = runs.roots[len(runs.roots) // 2]
        other = write_runs(
            work / "resubmitted", args.checkpoints, samples_per_run=args.samples_per_run, seed=1
        )
        replacement = next(root for root in other.roots if root.name == team.name)
        shutil.rmtree(team)
        replacement.rename(team)
        start = time.perf_counter()
        after = build_site(list(runs.roots), site, None, changed_teams=[team.name])
        rebuilds["one_team_changed"] = {
            "s": round(time.perf_counter() - start, 2), "team": team.name, "rendered": after.rendered,
            "reused": after.reused,
        }  # fmt: skip
        result = {
            "checkpoints": args.checkpoints,
            "suites": len(SUITES),
            "runs": summary.runs,
            "samples_per_run": args.samples_per_run,
            "write_runs_s": round(write_s, 2),
            "runs_folder": runs_stats,
            "build_s": [round(b, 2) for b in builds],
            "rebuild": rebuilds,
            "load_before": load_before,
            "load_after": list(os.getloadavg()),
            "site": folder_stats(site),
            "index_html_bytes": (site / "index.html").stat().st_size,
            "index_js_bytes": (site / "data" / "index.js").stat().st_size,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "summary": summary.describe(),
        }
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
