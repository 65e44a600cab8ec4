"""Agreement with lm-eval: GSM8K and IFEval scored by this harness and by lm-eval on identical responses.

Same model (the embedded SmolLM2-135M-Instruct Q4_1), same responses, two scorers, compared per sample.

IFEval: the embedded model's 541 responses (tests/fixtures/ifeval_embedded_responses.jsonl) scored by
`suites.ifeval.IFEval.score` and by lm-eval's own `lm_eval.tasks.ifeval.utils.process_results` (Python's
random seeded with `JUDGE_SEED` before each): prompt-level strict/loose (541) and instruction-level
strict/loose (834 instructions). Expected difference: the two instructions that draw a random letter
(prompts 1122 and 1129): lm-eval draws it twice (strict and loose apart), the suite (ifeval@1.1) once per
instruction from a seed of its own, so on the embedded responses 1129's loose verdict differs.

GSM8K: the responses of `harness eval --checkpoint embedded --suite gsm8k --limit N` (8-shot chat, greedy,
512 new tokens; run by this script into `--runs` unless it is already there: resumable and cached, so a
re-run is free), i.e. the run's stored texts and stored scores. lm-eval scores the SAME texts through its
real task objects: lm_eval/tasks/gsm8k/gsm8k-cot.yaml and gsm8k.yaml loaded with lm-eval's YAML loader
into `ConfigurableTask` (dataset pointed at the same local test.jsonl; nothing else changed), the
response put on an `Instance`, every filter ensemble of the task applied (`task._filters`, built by
`build_filter_ensemble`: "strict-match" and "flexible-extract"), then `task.process_results` (exact_match
with the task's ignore_case / regexes_to_ignore) against `task.doc_to_target`. Pairs compared:
our exact_match_flex vs flexible-extract; our exact_match_strict vs gsm8k_cot's strict-match
("The answer is N.", the form our 8-shot exemplars teach) and vs gsm8k's strict-match ("#### N").
Every disagreement is classified by rule (see `explain_*`), and listed. The 1,319 gold solutions go through
both scorers too (flex vs flexible-extract, strict vs gsm8k's "#### N"): they should agree 100%.

Optional (`--lm-eval-generate K`): lm-eval itself generates the first K problems through `harness serve`
(`local-chat-completions`, chat template, 8-shot as multi-turn, greedy, 512 tokens) with a task that asks
exactly what our suite asks (user turn = the bare question, assistant turns = our 8 exemplars; gsm8k_cot's
filters and metric), and its texts are compared with ours.

Reproduce (from the repository root; about 10-15 minutes for the 100 GSM8K responses on 2 idle cores):

    HARNESS_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \\
      .venv/bin/python bench/agreement.py --limit 100 --out bench/out/agreement
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.data import DataSource, resolve_data_source
from harness.types import Completion
from suites import ifeval as ifeval_module
from suites.gsm8k import _STRICT, GSM8K, normalize_number
from suites.ifeval import INST_LOOSE, INST_STRICT, PROMPT_LOOSE, PROMPT_STRICT, IFEval

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "ifeval_embedded_responses.jsonl"


# --- tables ---------------------------------------------------------------------------------------


def agreement_row(name: str, ours: Sequence[bool], theirs: Sequence[bool]) -> dict[str, Any]:
    pairs = Counter(zip(ours, theirs, strict=True))
    n = len(ours)
    return {
        "comparison": name,
        "n": n,
        "both_1": pairs[(True, True)],
        "both_0": pairs[(False, False)],
        "ours_only": pairs[(True, False)],
        "lm_eval_only": pairs[(False, True)],
        "agreement_pct": round(100 * (pairs[(True, True)] + pairs[(False, False)]) / n, 2),
        "ours_pct": round(100 * sum(ours) / n, 2),
        "lm_eval_pct": round(100 * sum(theirs) / n, 2),
    }


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


# --- IFEval -----------------------------------------------------------------------------------------


def ifeval_agreement(data_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ifeval_module.checkers(data_dir)
    from lm_eval.tasks.ifeval import utils

    suite = IFEval()
    samples = {s.id: s for s in suite.load(DataSource(data_dir), None).samples}
    docs = {
        f"ifeval-{row['key']}": row
        for row in map(json.loads, (data_dir / "ifeval" / "input_data.jsonl").open())
    }
    pairs: dict[str, tuple[list[bool], list[bool]]] = {
        k: ([], []) for k in (PROMPT_STRICT, PROMPT_LOOSE, INST_STRICT, INST_LOOSE)
    }
    disagreements = []
    for line in map(json.loads, FIXTURE.open()):
        sid, text = line["sample_id"], line["text"]
        score = suite.score(samples[sid], [Completion((text,), ("stop",))])
        random.seed(ifeval_module.JUDGE_SEED)
        ref = utils.process_results(dict(docs[sid]), [text])
        for name in (PROMPT_STRICT, PROMPT_LOOSE):
            pairs[name][0].append(score.values[name] == 1.0)
            pairs[name][1].append(bool(ref[name]))
        for name, bits in ((INST_STRICT, "strict"), (INST_LOOSE, "loose")):
            ours = [b == "1" for b in (score.extracted[bits] or "").split(",")]
            pairs[name][0].extend(ours)
            pairs[name][1].extend(bool(v) for v in ref[name])
            if ours != [bool(v) for v in ref[name]]:
                disagreements.append({"sample_id": sid, "metric": name, "ours": ours, "lm_eval": ref[name]})
        for name in (PROMPT_STRICT, PROMPT_LOOSE):
            if (score.values[name] == 1.0) != bool(ref[name]):
                disagreements.append(
                    {"sample_id": sid, "metric": name, "ours": score.values[name], "lm_eval": ref[name]}
                )
    return [agreement_row(name, *pairs[name]) for name in pairs], disagreements


# --- GSM8K: lm-eval's own task objects --------------------------------------------------------------


def lm_eval_task(yaml_name: str, data_dir: Path, overrides: dict[str, Any] | None = None) -> Any:
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(Path(lm_eval.__file__).parent / "tasks" / "gsm8k" / yaml_name)
    config.pop("tag", None)
    files = {"test": str((data_dir / "gsm8k" / "test.jsonl").resolve()),
             "train": str((data_dir / "gsm8k" / "train.jsonl").resolve())}  # fmt: skip
    config.update(dataset_path="json", dataset_name=None, dataset_kwargs={"data_files": files})
    config.update(overrides or {})
    return ConfigurableTask(config=config)


def lm_eval_scores(task: Any, doc: dict[str, Any], text: str) -> dict[str, tuple[str, bool]]:
    """{filter name: (filtered response, exact_match)} through the task's filters and process_results."""
    from lm_eval.api.instance import Instance

    instance = Instance(request_type="generate_until", doc=doc, arguments=("", {}), idx=0)
    instance.resps = [text]
    for ensemble in task._filters:
        ensemble.apply([instance])
    return {
        name: (str(value), bool(task.process_results(doc, [value])["exact_match"]))
        for name, value in instance.filtered_resps.items()
    }


def lm_eval_processed(value: str) -> str:
    """What lm-eval's exact_match compares: gsm8k's regexes_to_ignore removed in order, lower-cased."""
    for pattern in (",", r"\$", "(?s).*#### ", r"\.$"):
        value = re.sub(pattern, "", value)
    return value.lower()


# --- explaining disagreements -----------------------------------------------------------------------

_OUR_STRICT = re.compile(_STRICT.pattern, re.IGNORECASE)


def lm_value(filtered: str) -> str | None:
    """lm-eval's filtered answer as a number in our normal form (None: lm-eval's "[invalid]")."""
    return None if filtered == "[invalid]" else normalize_number(lm_eval_processed(filtered))


def explain_flex(text: str, ours: str | None, theirs: str, target: str) -> str:
    processed = lm_eval_processed(theirs)
    if theirs == "[invalid]":
        return "lm-eval found no number at all"
    if not re.search(r"\d", theirs):
        return f"lm-eval's flexible pattern (-?[$0-9.,]{{2,}}) took a digit-less run as the last number: {theirs!r}"
    if lm_value(theirs) == ours:
        return (f"same number, different normalization: lm-eval compares {processed!r} literally with "
                f"{target!r}, ours normalizes it to {ours!r}")  # fmt: skip
    return f"UNEXPLAINED: different last number: lm-eval's token {theirs!r}, ours {ours!r}"


def explain_strict(text: str, ours: str | None, theirs: str, target: str, lm_form: str) -> str:
    """lm_form: the answer form lm-eval's strict regex wants ("The answer is N." or "#### N")."""
    lm = lm_value(theirs)
    ours_forms = [m.group(0) for m in _OUR_STRICT.finditer(text)]
    if lm is None and ours is not None:
        form = ours_forms[-1]
        if lm_form == "#### N" and "####" not in form:
            return f"ours accepts 'The answer is N' (the form the 8-shot exemplars teach); gsm8k's strict needs '#### N': {form!r}"
        if lm_form != "#### N" and "####" in form:
            return f"ours also accepts '#### N' (GSM8K's own form), lm-eval's cot regex only 'The answer is N.': {form!r}"
        if not form.startswith("The answer is"):
            return (f"ours is case-insensitive and allows 'final', ':', '**', '$'; lm-eval's regex is case-sensitive "
                    f"'The answer is N.': {form!r}")  # fmt: skip
        return (
            f"'The answer is N' at the very end: lm-eval's regex needs one more character after N: {form!r}"
        )
    if ours is None:
        return f"UNEXPLAINED: lm-eval matched {theirs!r} where ours found no answer form"
    if lm == ours:
        return (f"same number, different normalization: lm-eval compares {lm_eval_processed(theirs)!r} literally "
                f"with {target!r}, ours normalizes it to {ours!r}")  # fmt: skip
    if len(ours_forms) > 1:
        return f"several answer phrases: lm-eval takes the first ({theirs!r}), ours the last ({ours!r})"
    if ours.startswith(lm or "") and len(lm or "") < len(ours):
        return f"lm-eval's unescaped trailing '.' (any character) ate the number's last digit: {theirs!r} vs {ours!r}"
    return f"UNEXPLAINED: lm-eval {theirs!r}, ours {ours!r}"


def gsm8k_run(limit: int, runs: Path) -> Path:
    """The run folder of `harness eval --checkpoint embedded --suite gsm8k --limit N --out runs`."""
    command = [sys.executable, "-m", "harness", "eval", "--checkpoint", "embedded", "--suite", "gsm8k",
               "--limit", str(limit), "--runs", str(runs), "--json", "--quiet"]  # fmt: skip
    print("running (resumes, cached):", " ".join(command[2:]), file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return Path(json.loads(done.stdout)[0]["run_dir"])


def compare(name: str, records: list[dict[str, Any]], ours_key: str, ours_extracted: str, task_key: str,
            filter_name: str, explain: Callable[[str, str | None, str, str], str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
    """Per sample: the verdicts (correct or not) and the extracted answers (ours vs lm-eval's, both in our
    normal form; "no answer" = None / lm-eval's "[invalid]"). Every sample where either differs is listed."""
    ours = [r["ours"][ours_key] == 1.0 for r in records]
    theirs = [r[task_key][filter_name][1] for r in records]
    row = agreement_row(name, ours, theirs)
    same_answer = 0
    listed = []
    for r, a, b in zip(records, ours, theirs, strict=True):
        filtered, extracted = r[task_key][filter_name][0], r["ours_extracted"][ours_extracted]
        same = lm_value(filtered) == extracted
        same_answer += same
        if a != b or not same:
            listed.append({
                "comparison": name, "sample_id": r["id"], "target": r["target"], "ours": extracted,
                "ours_correct": a, "lm_eval_filtered": filtered, "lm_eval_correct": b,
                "verdicts_differ": a != b, "why": explain(r["text"], extracted, filtered, r["target"]),
                "tail": r["text"][-160:],
            })  # fmt: skip
    row["same_extracted_answer"] = same_answer
    return row, listed


def gsm8k_agreement(run_dir: Path, data_dir: Path) -> dict[str, Any]:
    suite = GSM8K()
    samples = {s.id: s for s in suite.load(DataSource(data_dir), None).samples}
    cot, plain = lm_eval_task("gsm8k-cot.yaml", data_dir), lm_eval_task("gsm8k.yaml", data_dir)
    docs = list(cot.test_docs())
    records = []
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        stored = json.loads(line)
        index = int(stored["id"].rsplit("-", 1)[1])
        text = stored["completions"][0]["texts"][0]
        fresh = suite.score(samples[stored["id"]], [Completion((text,), ("stop",))])
        assert fresh.values == stored["scores"], stored["id"]  # the stored scores are today's scorer's
        records.append({
            "id": stored["id"], "target": stored["target"], "text": text,
            "finish_reason": stored["completions"][0]["finish_reasons"][0],
            "ours": stored["scores"], "ours_extracted": stored["extracted"],
            "cot": lm_eval_scores(cot, docs[index], text), "plain": lm_eval_scores(plain, docs[index], text),
        })  # fmt: skip
    records.sort(key=lambda r: r["id"])
    table, disagreements = [], []
    for comparison in (
        ("flex vs gsm8k_cot flexible-extract", "exact_match_flex", "flex", "cot", "flexible-extract", explain_flex),
        ("strict vs gsm8k_cot strict-match", "exact_match_strict", "strict", "cot", "strict-match",
         lambda t, o, th, tg: explain_strict(t, o, th, tg, "The answer is N.")),
        ("strict vs gsm8k strict-match (#### N)", "exact_match_strict", "strict", "plain", "strict-match",
         lambda t, o, th, tg: explain_strict(t, o, th, tg, "#### N")),
    ):  # fmt: skip
        row, listed = compare(comparison[0], records, *comparison[1:])
        table.append(row)
        disagreements += listed
    return {"records": records, "table": table, "disagreements": disagreements}


def gsm8k_gold(data_dir: Path) -> list[dict[str, Any]]:
    """The 1,319 gold solutions as responses ("... #### N"), and the same rewritten into the exemplars'
    form (the "#### N" line replaced by "The answer is N."), through both scorers."""
    suite = GSM8K()
    samples = suite.load(DataSource(data_dir), None).samples
    cot, plain = lm_eval_task("gsm8k-cot.yaml", data_dir), lm_eval_task("gsm8k.yaml", data_dir)
    docs = list(plain.test_docs())
    got: dict[str, list[bool]] = {k: [] for k in ("flex", "strict", "lm_flex", "lm_strict", "lm_cot_flex",
                                                  "cot_flex", "cot_strict", "lm_cot_form_flex", "lm_cot_form_strict")}  # fmt: skip
    for sample, doc in zip(samples, docs, strict=True):
        gold = str(sample.metadata["solution"])
        assert gold == doc["answer"]
        rewritten = gold.split("####")[0].rstrip() + f" The answer is {gold.split('####')[-1].strip()}."
        for text, ours_keys, lm in (
            (gold, ("flex", "strict"), plain),
            (rewritten, ("cot_flex", "cot_strict"), cot),
        ):
            score = suite.score(sample, [Completion((text,), ("stop",))])
            got[ours_keys[0]].append(score.values["exact_match_flex"] == 1.0)
            got[ours_keys[1]].append(score.values["exact_match_strict"] == 1.0)
            lm_scores = lm_eval_scores(lm, doc, text)
            prefix = "lm" if lm is plain else "lm_cot_form"
            got[f"{prefix}_flex"].append(lm_scores["flexible-extract"][1])
            got[f"{prefix}_strict"].append(lm_scores["strict-match"][1])
        got["lm_cot_flex"].append(lm_eval_scores(cot, doc, gold)["flexible-extract"][1])
    return [
        agreement_row("gold: flex vs gsm8k flexible-extract", got["flex"], got["lm_flex"]),
        agreement_row("gold: flex vs gsm8k_cot flexible-extract", got["flex"], got["lm_cot_flex"]),
        agreement_row("gold: strict vs gsm8k strict-match (#### N)", got["strict"], got["lm_strict"]),
        agreement_row(
            "gold as 'The answer is N.': flex vs gsm8k_cot flexible-extract",
            got["cot_flex"],
            got["lm_cot_form_flex"],
        ),
        agreement_row(
            "gold as 'The answer is N.': strict vs gsm8k_cot strict-match",
            got["cot_strict"],
            got["lm_cot_form_strict"],
        ),
    ]


# --- optional: lm-eval generating through harness serve ------------------------------------------------


def lm_eval_generate(k: int, data_dir: Path, out: Path, ours: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """lm-eval's CLI (local-chat-completions) against `harness serve`, with a task asking what our suite asks."""
    import socket
    import time

    from suites.gsm8k import EXEMPLARS

    task_dir = out / "lm_eval_task"
    task_dir.mkdir(parents=True, exist_ok=True)
    import yaml  # type: ignore[import-untyped]

    config = {
        "task": "gsm8k_harness_chat",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str((data_dir / "gsm8k" / "test.jsonl").resolve())}},
        "output_type": "generate_until",
        "test_split": "test",
        "doc_to_text": "{{question}}",
        "doc_to_target": "{{answer.split('####')[-1].strip() if answer is defined else target}}",
        "target_delimiter": "",
        "fewshot_delimiter": "",
        "fewshot_config": {"sampler": "first_n", "samples": [{"question": q, "target": a} for q, a in EXEMPLARS],
                           "doc_to_text": "{{question}}", "doc_to_target": "{{target}}"},
        "num_fewshot": len(EXEMPLARS),
        "generation_kwargs": {"until": [], "do_sample": False, "temperature": 0.0, "max_gen_toks": 512},
        "filter_list": lm_eval_task("gsm8k-cot.yaml", data_dir).config.filter_list,
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "ignore_case": True, "ignore_punctuation": False,
                         "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}],
        "metadata": {"version": 1.0},
    }  # fmt: skip
    (task_dir / "gsm8k_harness_chat.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (out / "serve.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "harness", "serve", "--checkpoint", "embedded", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, cwd=ROOT)  # fmt: skip
    assert server.stdout is not None
    while not server.stdout.readline().decode().startswith("ready"):
        if server.poll() is not None:
            raise RuntimeError("harness serve failed; see serve.log")
    try:
        command = [
            sys.executable, "-m", "lm_eval", "run", "--model", "local-chat-completions",
            "--model_args", f"model=embedded,base_url=http://127.0.0.1:{port}/v1/chat/completions,num_concurrent=1,max_retries=3,tokenized_requests=False",
            "--tasks", "gsm8k_harness_chat", "--include_path", str(task_dir), "--limit", str(k),
            "--apply_chat_template", "--fewshot_as_multiturn", "--log_samples", "--output_path", str(out / "lm_eval_out"),
        ]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OPENAI_API_KEY": "unused"}
        )
        seconds = time.perf_counter() - start
        (out / "lm_eval.log").write_text(done.stdout + "\n" + done.stderr)
        if done.returncode != 0:
            return {"error": f"lm_eval exited {done.returncode}; see {out / 'lm_eval.log'}"}
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    sample_files = sorted((out / "lm_eval_out").rglob("samples_gsm8k_harness_chat_*.jsonl"))
    by_doc: dict[int, dict[str, Any]] = {}  # lm-eval logs one row per (doc, filter)
    for row in map(json.loads, sample_files[-1].read_text().splitlines()):
        entry = by_doc.setdefault(row["doc_id"], {"text": row["resps"][0][0]})
        entry[row["filter"]] = bool(row["exact_match"])
    same_text = same_flex = same_strict = 0
    differ = []
    for doc_id, entry in sorted(by_doc.items()):
        record = ours[f"gsm8k-test-{doc_id:04d}"]
        same_text += entry["text"] == record["text"]
        same_flex += entry["flexible-extract"] == (record["ours"]["exact_match_flex"] == 1.0)
        same_strict += entry["strict-match"] == (record["ours"]["exact_match_strict"] == 1.0)
        if entry["text"] != record["text"]:
            differ.append({"doc_id": doc_id, "lm_eval": entry["text"][:300], "ours": record["text"][:300]})
    return {"k": len(by_doc), "identical_texts": same_text, "flex_verdict_agrees_with_lm_eval_run": same_flex,
            "strict_verdict_agrees_with_lm_eval_run": same_strict, "lm_eval_wall_s": round(seconds, 1),
            "differences": differ}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=100, help="GSM8K test problems")
    parser.add_argument("--gsm8k-run", type=Path, help="an existing run folder instead of running the eval")
    parser.add_argument("--data-dir", help="default: $HARNESS_DATA_DIR")
    parser.add_argument("--runs", type=Path, default=ROOT / "bench" / "out" / "runs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "agreement")
    parser.add_argument("--lm-eval-generate", type=int, default=0, metavar="K", help="see the docstring")
    args = parser.parse_args()

    source = resolve_data_source(args.data_dir)
    if source.data_dir is None:
        parser.error(
            "set HARNESS_DATA_DIR (or --data-dir): lm-eval's tasks are pointed at the same local files"
        )
    data_dir = source.data_dir
    args.out.mkdir(parents=True, exist_ok=True)

    ifeval_table, ifeval_diffs = ifeval_agreement(data_dir)
    print("## IFEval (541 responses of the embedded model)\n" + markdown(ifeval_table))
    print(f"disagreements: {len(ifeval_diffs)}\n")

    run_dir = args.gsm8k_run or gsm8k_run(args.limit, args.runs)
    gsm8k = gsm8k_agreement(run_dir, data_dir)
    print(
        f"## GSM8K ({len(gsm8k['records'])} responses of the embedded model, {run_dir})\n"
        + markdown(gsm8k["table"])
    )
    for d in gsm8k["disagreements"]:
        print(f"- {d['comparison']} | {d['sample_id']} target {d['target']} | ours {d['ours']!r} ({int(d['ours_correct'])}) "
              f"lm-eval {d['lm_eval_filtered']!r} ({int(d['lm_eval_correct'])}) | {d['why']}")  # fmt: skip
    why = Counter(
        (d["comparison"], d["verdicts_differ"], d["why"].split(": ")[0]) for d in gsm8k["disagreements"]
    )
    print("classes (comparison | verdicts differ? | reason):")
    for (comparison, differ, reason), count in sorted(why.items()):
        print(f"  {count:3d} x {comparison} | {'verdict' if differ else 'answer only'} | {reason}")
    gold = gsm8k_gold(data_dir)
    print("\n## GSM8K gold solutions (1,319)\n" + markdown(gold))

    result: dict[str, Any] = {"ifeval": {"table": ifeval_table, "disagreements": ifeval_diffs},
                              "gsm8k": {"run_dir": str(run_dir), **gsm8k}, "gsm8k_gold": gold}  # fmt: skip
    if args.lm_eval_generate:
        ours = {r["id"]: r for r in gsm8k["records"]}
        result["lm_eval_generate"] = lm_eval_generate(args.lm_eval_generate, data_dir, args.out, ours)
        gen = result["lm_eval_generate"]
        print(
            f"\n## lm-eval generating through harness serve\n{json.dumps({k: v for k, v in gen.items() if k != 'differences'})}"
        )
    (args.out / "agreement.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    with (args.out / "gsm8k_per_sample.tsv").open("w") as handle:
        handle.write("sample_id\ttarget\tfinish\tours_flex\tours_flex_ok\tlm_flex\tlm_flex_ok\tours_strict\tours_strict_ok"
                     "\tlm_cot_strict\tlm_cot_strict_ok\tlm_plain_strict\tlm_plain_strict_ok\n")  # fmt: skip
        for r in gsm8k["records"]:
            e, s, c, p = r["ours_extracted"], r["ours"], r["cot"], r["plain"]
            handle.write("\t".join(map(str, [
                r["id"], r["target"], r["finish_reason"], e["flex"], int(s["exact_match_flex"]),
                c["flexible-extract"][0], int(c["flexible-extract"][1]), e["strict"], int(s["exact_match_strict"]),
                c["strict-match"][0], int(c["strict-match"][1]), p["strict-match"][0], int(p["strict-match"][1]),
            ])) + "\n")  # fmt: skip
    print(f"\nwrote {args.out / 'agreement.json'} and {args.out / 'gsm8k_per_sample.tsv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
