"""`harness leaderboard build RUNS... --out SITE`: the static class leaderboard.

Static files only, usable from `file://` (no fetch/XHR: data lives in `.js` files that assign to
`window.LB_*` globals and are loaded with <script src>), every link relative, plotly.js shipped.

    SITE/index.html                 ranked table (+ reference rows, + safety-vs-helpfulness plot)
    SITE/compare.html               any two checkpoints: paired deltas per suite, flipped samples
    SITE/plots.html                 the tradeoff plots (reports.plots.site_figures)
    SITE/checkpoints/<id>.html      every metric with CI and n, manifests, lineage, run links
    SITE/runs/<id>/<suite>.html     sample browser shell; its records in runs/<id>/<suite>.js
    SITE/data/index.js              window.LB_INDEX
    SITE/data/plots.js              window.LB_PLOTS
    SITE/data/scores/<id>.js        per-sample primary scores of one checkpoint (compare page)
    SITE/assets/                    plotly.min.js, site.js, site.css

Model and dataset text reaches pages only through jinja2 autoescape or, in the browser, through
textContent; the data files escape `<`, `>` and `&` as \\u escapes as well.

The site is built in a hidden folder next to SITE and swapped in with one rename (leaderboard.atomic),
so a build killed at any moment leaves the previous complete site (or the new complete one), never a
half one. The previous site is deleted after the swap, and only because the harness made it (its
owner marker); files a user added to it (a CNAME, say) are carried over. A non-empty SITE that the
harness did not make is refused.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import stat
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import MissingExtraError, UsageError
from harness.names import OWNER_MARKER, remove_owned_folder
from harness.runs.catalog import Catalog, CheckpointView, RunView, catalog_from_folders
from leaderboard.atomic import (
    clean_stale,
    marked_by_harness,
    remove_replaced,
    storage,
    swap_in,
    work_folder,
)
from leaderboard.site_data import build_index, checkpoint_page, load_references, run_page
from leaderboard.site_samples import RunSamples, read_run_samples

HERE = Path(__file__).resolve().parent
PURPOSE = "leaderboard site"  # owner marker (harness.names) of a site and of its build folder
LEGACY_MARKER = ".leaderboard-site"  # what harness versions before the owner markers wrote into SITE
MANAGED = ("assets", "data", "checkpoints", "runs", "index.html", "compare.html", "plots.html")
_NOT_CARRIED = {*MANAGED, OWNER_MARKER, LEGACY_MARKER}


@dataclass(frozen=True)
class SiteSummary:
    out: Path
    checkpoints: int
    suites: int
    runs: int
    pages: int
    bytes: int
    seconds: float

    def describe(self) -> str:
        return (
            f"site: {self.checkpoints} checkpoints, {self.suites} suites, {self.runs} runs, "
            f"{self.pages} pages, {self.bytes / 1e6:.1f} MB in {self.seconds:.1f}s -> {self.out / 'index.html'}"
        )


def js_assign(target: str, payload: Any) -> str:
    """`target = <JSON>;` safe to load as a script (and to inline: no `</script>` can appear)."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f"{target}={text};\n"


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars inside plotly figures
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _check_out(out: Path) -> None:
    try:
        here: Path | None = Path(os.getcwd())
    except OSError:  # the current folder was deleted
        here = None
    if here is not None and (out == here or out in here.parents):  # the swap would strand this shell
        raise UsageError(
            f"--out {out} is the current folder or holds it.", "Pass a folder for the site, e.g. --out site."
        )
    if out.is_symlink():
        raise UsageError(f"--out {out} is a symbolic link.", "Pass the folder itself.")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file.", "Pass a folder for the site.")
    if out.is_dir() and any(out.iterdir()) and not marked_by_harness(out, PURPOSE, LEGACY_MARKER):
        raise UsageError(
            f"--out {out} is a non-empty folder that was not made by `harness leaderboard build`.",
            "Pass a new or empty folder (the build replaces what it made before, nothing else).",
        )


def _carry_over(old: Path, new: Path) -> None:
    """Copy what a user added to the previous site (anything the build does not write) into the new one."""
    if not old.is_dir():
        return
    for path in old.iterdir():
        if path.name in _NOT_CARRIED:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.copytree(path, new / path.name, symlinks=True)
        else:
            shutil.copy2(path, new / path.name, follow_symlinks=False)


def _dispose(replaced: Path | None) -> None:
    """The previous site, after the swap: deleted when the harness made it."""
    if replaced is None:
        return
    if marked_by_harness(replaced, PURPOSE, LEGACY_MARKER):
        remove_replaced(replaced, PURPOSE, LEGACY_MARKER)
    else:
        with contextlib.suppress(OSError):  # an empty folder the user made: only rmdir, never rmtree
            os.rmdir(replaced)


def _plotly_js() -> Path:
    """plotly.min.js as shipped inside the plotly package (found without importing plotly: faster)."""
    spec = importlib.util.find_spec("plotly")
    path = (
        None
        if spec is None or spec.origin is None
        else Path(spec.origin).parent / "package_data" / "plotly.min.js"
    )
    if path is None or not path.is_file():
        raise MissingExtraError(
            "The leaderboard site needs plotly.js from the plotly package, which is not installed.",
            "pip install 'post-train-harness[site]'",
        )
    return path


def _copy_assets(out: Path) -> None:
    assets = out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_plotly_js(), assets / "plotly.min.js")
    for name in ("site.js", "site.css"):
        shutil.copyfile(HERE / "static" / name, assets / name)


def site_figures(catalog: Catalog) -> dict[str, Any]:
    """reports.plots.site_figures when that module exists (another part of the project writes it)."""
    try:
        from reports import plots
    except ModuleNotFoundError as error:
        if error.name in ("reports.plots", "reports"):
            return {}
        raise
    figures: dict[str, Any] = plots.site_figures(catalog)
    return figures


def _environment() -> Any:
    try:
        import jinja2
    except ImportError:
        raise MissingExtraError(
            "The leaderboard site needs jinja2, which is not installed.",
            "pip install 'post-train-harness[site]'",
        ) from None
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,  # every {{ }} is HTML-escaped: model text can never become markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda v: "—" if v is None else f"{100 * v:.1f}"
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
    return env


def _metric_rows(run: RunView) -> list[dict[str, Any]]:
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


def _write(path: Path, text: str, made: set[Path] | None = None) -> None:
    """Write one file, making its folder first (`made`: folders this build already made, skipped)."""
    if made is None or path.parent not in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        if made is not None:
            made.add(path.parent)
    path.write_text(text, encoding="utf-8")


def _tree_bytes(root: Path) -> int:
    """Bytes in the files under root, as rglob + is_file + stat counts them (a link to a file counts its
    target; linked folders are not entered), with os.walk: a fraction of the time for 12,000 files."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                info = os.stat(os.path.join(folder, name))
            except OSError:  # a dangling link: not a file
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


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


def build_site(run_roots: Sequence[Path], out: Path, references: Path | None) -> SiteSummary:
    start = time.perf_counter()
    reference_rows = load_references(references)
    catalog = catalog_from_folders([Path(r) for r in run_roots])
    if not catalog.checkpoints:
        raise UsageError(
            f"No runs found under {', '.join(str(r) for r in run_roots)}.",
            "Pass runs folders made by `harness eval --out DIR` (or accepted submissions).",
        )
    index = build_index(catalog, reference_rows)
    shown, out = Path(out), Path(os.path.abspath(out))  # "." has no name to put a sibling next to
    _check_out(out)
    try:
        clean_stale(out, (PURPOSE,))  # build folders of killed builds
        work = work_folder(out, PURPOSE, "building")
    except OSError as error:
        raise storage(error, out.parent, "create the site next to") from None
    replaced: Path | None = None
    swapped = False
    try:
        try:
            _carry_over(out, work)
            pages, n_runs = _write_site(work, catalog, index.payload)
            size = _tree_bytes(work)
            replaced, swapped = swap_in(work, out), True
        except OSError as error:
            raise storage(error, out, "write the site") from None
    finally:
        if not swapped:  # the build failed: its half-written folder goes, the old site stays
            remove_owned_folder(work, PURPOSE)
    _dispose(replaced)
    return SiteSummary(shown, len(catalog.checkpoints), len(catalog.suites()), n_runs, pages, size,
                       time.perf_counter() - start)  # fmt: skip


def _write_site(out: Path, catalog: Catalog, payload: dict[str, Any]) -> tuple[int, int]:
    """Every page and data file into `out`; (pages, runs)."""
    rows_by_id = {row["id"]: row for row in payload["rows"]}
    _copy_assets(out)
    env = _environment()
    run_template = env.get_template("run.html")
    checkpoint_template = env.get_template("checkpoint.html")
    pages = 0
    n_runs = 0
    made: set[Path] = set()  # folders already made: 12,000 files need only ~1,000 mkdir calls
    order = catalog.suites()  # the index's column order
    for checkpoint in catalog.checkpoints:
        scores: dict[str, Any] = {}
        suites_view = []
        for suite, run in sorted(checkpoint.runs.items(), key=lambda kv: order.index(kv[0])):
            samples = read_run_samples(run)
            n_runs += 1
            page = run_page(checkpoint.id, suite)
            _write(
                out / page.replace(".html", ".js"),
                js_assign("window.LB_RUN", _run_payload(checkpoint, run, samples)),
                made,
            )
            _write(out / page, run_template.render(
                root="../../", page="run", checkpoint=checkpoint, suite=suite, run=run,
                data_src=f"{suite}.js", cell=rows_by_id[checkpoint.id]["cells"][suite],
            ), made)  # fmt: skip
            pages += 1
            cell = rows_by_id[checkpoint.id]["cells"][suite]
            scores[suite] = {
                "metric": run.primary, "key": samples.score_key, "ranked": cell["ranked"],
                "settings": "/".join(run.comparability_key), "ids": samples.ids, "s": samples.scores,
                "g": samples.strata,
            }  # fmt: skip
            suites_view.append({"suite": suite, "run": run, "cell": cell, "metrics": _metric_rows(run),
                                "page": page, "manifest": run.manifest.to_record()})  # fmt: skip
        target = f"(window.LB_SCORES=window.LB_SCORES||{{}})[{json.dumps(checkpoint.id)}]"
        _write(out / "data" / "scores" / f"{checkpoint.id}.js", js_assign(target, scores), made)
        _write(out / checkpoint_page(checkpoint.id), checkpoint_template.render(
            root="../", page="checkpoint", checkpoint=checkpoint, row=rows_by_id[checkpoint.id],
            suites=suites_view, lineage_entry=_lineage_entry(checkpoint),
        ), made)  # fmt: skip
        pages += 1
    figures = site_figures(catalog)
    _write(out / "data" / "index.js", js_assign("window.LB_INDEX", payload))
    _write(out / "data" / "plots.js", js_assign("window.LB_PLOTS", figures))
    for name in ("index", "compare", "plots"):
        _write(out / f"{name}.html", env.get_template(f"{name}.html").render(
            root="", page=name, figures=sorted(figures), n_checkpoints=len(catalog.checkpoints),
        ))  # fmt: skip
        pages += 1
    return pages, n_runs


def _lineage_entry(checkpoint: CheckpointView) -> Mapping[str, Any]:
    for run in checkpoint.runs.values():
        if run.manifest.lineage:
            return run.manifest.lineage
    return {}
