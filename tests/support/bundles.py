"""An honest submission bundle made the way students make one: `harness eval` of replayed responses
(GSM8K, a third of them wrong), then `leaderboard.bundle.write_bundle` (what `leaderboard submit` runs)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from harness.data import DataSource
from leaderboard.bundle import write_bundle
from suites import get_suite
from tests.conftest import eval_json

LIMIT = 10


@dataclass(frozen=True)
class Honest:
    root: Path  # the runs folder
    run_dir: Path  # its one GSM8K run
    bundle: Path  # team "owls"


def make_honest(tmp: Path, data_dir: Path, suite_name: str = "gsm8k", limit: int = LIMIT) -> Honest:
    suite = get_suite(suite_name)
    samples = suite.load(DataSource(data_dir), limit).samples
    replay = tmp / f"{suite_name}.jsonl"
    replay.write_text(
        "".join(
            json.dumps(
                {"sample_id": s.id, "text": "I do not know." if i % 3 == 0 else suite.gold_response(s)}
            )
            + "\n"
            for i, s in enumerate(samples)
        )
    )
    root = tmp / "runs"
    result = eval_json(
        "--checkpoint", f"replay:{replay}", "--suite", suite_name, "--limit", str(limit), "--runs", str(root)
    )  # fmt: skip
    bundle = write_bundle([root], "owls", tmp / "owls.zip", allow_replay=True)  # replayed on purpose
    return Honest(root, result.run_dir, bundle)


def entries(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def restamp(items: dict[str, bytes]) -> dict[str, bytes]:
    """bundle.json's sha256s made to match the (edited) files, as a careful cheater would."""
    meta = json.loads(items["bundle.json"])
    for entry in meta["files"]:
        if entry["path"] in items:
            entry["sha256"] = hashlib.sha256(items[entry["path"]]).hexdigest()
            entry["size"] = len(items[entry["path"]])
    return {**items, "bundle.json": json.dumps(meta).encode()}


def write_entries(path: Path, items: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in items.items():
            archive.writestr(name, data)
    return path


def run_file(items: dict[str, bytes], name: str) -> str:
    (path,) = [p for p in items if p.startswith("runs/") and p.endswith("/" + name)]
    return path
