"""One checkpoint's pages and data files (leaderboard.site): its page, its runs' sample browsers and the
per-sample scores the compare page reads, written through leaderboard.site_writer.Writer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring as _encode_string
from typing import Any

from harness.runs.catalog import CheckpointView, RunView
from leaderboard.site_data import checkpoint_page, run_page
from leaderboard.site_samples import RunSamples, read_run_samples
from leaderboard.site_writer import Writer


def js_assign(target: str, payload: Any) -> str:
    """`target = <JSON>;` safe to load as a script (and to inline: no `</script>` can appear)."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f"{target}={text};\n"


def pretty_json(value: Any) -> str:
    """json.dumps(value, indent=2, ensure_ascii=False, default=str), the same text: json's indented
    encoder is pure Python, and the checkpoint pages print every run's manifest this way."""
    parts: list[str] = []
    try:
        _pretty(value, "\n", parts)
    except _Unusual:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return "".join(parts)


class _Unusual(Exception):
    """A value _pretty leaves to json.dumps (a non-string key, a nesting too deep)."""


def _pretty(value: Any, newline: str, parts: list[str]) -> None:
    """Appends value's text (in the order of json.encoder._make_iterencode's checks) to parts."""
    if isinstance(value, str):
        parts.append(_encode_string(value))
    elif value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, int):
        parts.append(int.__repr__(value))
    elif isinstance(value, float):
        parts.append(_float_text(value))
    elif isinstance(value, list | tuple | dict):
        if len(newline) > 200:  # deep nesting (or a cycle): json's own checks and errors
            raise _Unusual
        if not value:
            parts.append("{}" if isinstance(value, dict) else "[]")
            return
        inner = newline + "  "
        if isinstance(value, dict):
            parts.append("{")
            for i, (key, item) in enumerate(value.items()):
                if not isinstance(key, str):
                    raise _Unusual
                parts.append(f"{',' if i else ''}{inner}{_encode_string(key)}: ")
                _pretty(item, inner, parts)
            parts.append(newline + "}")
        else:
            parts.append("[")
            for i, item in enumerate(value):
                parts.append(f",{inner}" if i else inner)
                _pretty(item, inner, parts)
            parts.append(newline + "]")
    else:
        _pretty(str(value), newline, parts)


def _float_text(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars inside plotly figures
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def checkpoint_files(checkpoint: CheckpointView) -> list[str]:
    """The site-relative files write_checkpoint writes for a checkpoint (known before it writes them)."""
    files = []
    for suite in checkpoint.runs:
        page = run_page(checkpoint.id, suite)
        files += [page.replace(".html", ".js"), page]
    return [*files, f"data/scores/{checkpoint.id}.js", checkpoint_page(checkpoint.id)]


def metric_rows(run: RunView) -> list[dict[str, Any]]:
    rows = []
    names = [run.primary, *sorted(k for k in run.metrics if k != run.primary)]
    for name in names:
        metric = run.metrics.get(name)
        if metric is None:
            continue
        rows.append(
            {"name": name, "primary": name == run.primary, "value": metric.value, "stderr": metric.stderr,
             "lo": metric.ci_low, "hi": metric.ci_high, "n": metric.n}
        )  # fmt: skip
    return rows


def _run_payload(checkpoint: CheckpointView, run: RunView, samples: RunSamples) -> dict[str, Any]:
    return {
        "checkpoint": {
            "id": checkpoint.id,
            "label": checkpoint.label,
            "href": f"../../{checkpoint_page(checkpoint.id)}",
        },
        "suite": run.suite,
        "primary": run.primary,
        "score_key": samples.score_key,
        "categories": samples.categories,
        "samples": samples.records,
    }


def write_checkpoint(
    writer: Writer,
    env: Any,
    checkpoint: CheckpointView,
    row: Mapping[str, Any],
    lineage: Mapping[str, Any],
    order: Sequence[str],
    store: Any,
) -> list[str]:
    """One checkpoint's pages and data files; their site-relative paths (as checkpoint_files lists them)."""
    run_template = env.get_template("run.html")
    files: list[str] = []
    scores: dict[str, Any] = {}
    suites_view = []
    for suite, run in sorted(checkpoint.runs.items(), key=lambda kv: order.index(kv[0])):
        samples = read_run_samples(run, light=store is not None, stats=getattr(store, "stats", None))
        if store is not None and samples.light is not None:
            store.put_light(run, samples.light)  # the stage-deltas figure then need not read it again
        page = run_page(checkpoint.id, suite)
        cell = row["cells"][suite]
        data_file = page.replace(".html", ".js")
        writer.write(data_file, js_assign("window.LB_RUN", _run_payload(checkpoint, run, samples)))
        writer.write(page, run_template.render(
            root="../../", page="run", checkpoint=checkpoint, suite=suite, run=run,
            data_src=f"{suite}.js", cell=cell,
        ))  # fmt: skip
        files += [data_file, page]
        scores[suite] = {
            "metric": run.primary, "key": samples.score_key, "ranked": cell["ranked"],
            "settings": "/".join(run.comparability_key), "ids": samples.ids, "s": samples.scores,
            "g": samples.strata,
        }  # fmt: skip
        suites_view.append({"suite": suite, "run": run, "cell": cell, "metrics": metric_rows(run),
                            "page": page, "manifest": run.manifest.to_record()})  # fmt: skip
    target = f"(window.LB_SCORES=window.LB_SCORES||{{}})[{json.dumps(checkpoint.id)}]"
    scores_file = f"data/scores/{checkpoint.id}.js"
    writer.write(scores_file, js_assign(target, scores))
    writer.write(checkpoint_page(checkpoint.id), env.get_template("checkpoint.html").render(
        root="../", page="checkpoint", checkpoint=checkpoint, row=row, suites=suites_view,
        lineage_entry=lineage,
    ))  # fmt: skip
    return [*files, scores_file, checkpoint_page(checkpoint.id)]


def lineage_entry(checkpoint: CheckpointView) -> Mapping[str, Any]:
    for run in checkpoint.runs.values():
        if run.lineage:
            return run.lineage
    return {}
