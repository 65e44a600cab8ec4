"""A stage's data: loaded for its kind (sft / dpo / rlvr), hashed, and checked for contamination.

Decontamination scans exactly the rows the stage trains on: the file itself when every row of it is
used, otherwise (a `limit`, a shuffle, hub data, RL prompts drawn from a suite's training split) a copy of
the rows used, written to `<checkpoint>/data_used.jsonl`, so a contaminated row outside `limit` does not
block a clean run and a hub dataset is checked too. Contaminated data stops the stage before training
unless `--allow-contamination` is given; the waiver, with every overlap found, goes into the registry
entry (`details.data.contamination`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data import DataSource
from training.config import TrainRequest
from training.data import ChatExample, PreferencePair, Rows, chat_examples, load_rows, preference_pairs
from training.prompts import RlPrompt, file_prompts, suite_prompts

USED_ROWS = "data_used.jsonl"


@dataclass(frozen=True)
class StageData:
    examples: tuple[ChatExample, ...] = ()
    pairs: tuple[PreferencePair, ...] = ()
    prompts: tuple[RlPrompt, ...] = ()
    record: dict[str, Any] | None = None  # origin, rows, sha256, contamination: for the registry entry

    @property
    def details(self) -> dict[str, Any]:
        assert self.record is not None
        return self.record


def _rl_prompts(request: TrainRequest, data: DataSource, base_dir: Path | None) -> tuple[list[RlPrompt], str]:
    cfg = request.config.data
    if cfg.prompts is not None:
        return suite_prompts(cfg.prompts, data, cfg.limit), f"prompts:{cfg.prompts}"
    if cfg.path is None:
        from harness.errors import UsageError

        raise UsageError(
            "An rlvr stage needs prompts with ground truth.",
            "Set data.prompts (gsm8k:train, alice-synth:SEED, alice:train, mbpp:train) or data.path "
            "(open-instruct RLVR rows or a `harness curate` pool).",
        )
    path = Path(cfg.path).expanduser()
    if not path.is_absolute() and base_dir is not None and not path.exists():
        path = base_dir / path
    prompts = file_prompts(path, cfg.datasets)
    if cfg.shuffle_seed is not None:
        import random

        random.Random(cfg.shuffle_seed).shuffle(prompts)
    return (prompts if cfg.limit is None else prompts[: cfg.limit]), f"file:{path}"


def _prompts_sha(prompts: list[RlPrompt]) -> str:
    digest = hashlib.sha256()
    for prompt in prompts:
        digest.update(json.dumps(prompt.to_record(), sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def _write_used(out_dir: Path, rows: list[dict[str, Any]]) -> Path:
    path = out_dir / USED_ROWS
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    return path


def _scan_target(rows: Rows, out_dir: Path) -> Path:
    if len(rows.files) == 1:
        from training.data import read_rows

        if list(rows.rows) == read_rows(rows.files[0]):  # every row, in file order
            return rows.files[0]
    return _write_used(out_dir, [dict(r) for r in rows.rows])


def check_contamination(request: TrainRequest, data: DataSource, target: Path) -> dict[str, Any]:
    from training.decontam import require_clean

    waiver = require_clean([target], data, request.allow_contamination)
    return {"status": "clean", "scanned": str(target)} if waiver is None else {"status": "waived", **waiver}


def load_stage_data(
    request: TrainRequest, data: DataSource, out_dir: Path, base_dir: Path | None
) -> StageData:
    if request.stage == "rlvr":
        prompts, origin = _rl_prompts(request, data, base_dir)
        target = _write_used(out_dir, [{"id": p.sample.id, "messages": [[m.role, m.content] for m in p.messages],
                                        "ground_truth": p.sample.target} for p in prompts])  # fmt: skip
        record = {"origin": origin, "rows": len(prompts), "sha256": _prompts_sha(prompts),
                  "suites": sorted({p.suite for p in prompts})}  # fmt: skip
        record["contamination"] = check_contamination(request, data, target)
        return StageData(prompts=tuple(prompts), record=record)
    rows = load_rows(request.config.data, base_dir)
    record = {"origin": rows.origin, "rows": len(rows.rows), "sha256": rows.sha256()}
    if request.stage == "sft":
        examples = tuple(chat_examples(rows))
        record["contamination"] = check_contamination(request, data, _scan_target(rows, out_dir))
        return StageData(examples=examples, record=record)
    pairs = tuple(preference_pairs(rows))
    record["contamination"] = check_contamination(request, data, _scan_target(rows, out_dir))
    return StageData(pairs=pairs, record=record)
