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

A full build (no previous site, or one made by another harness version or templates: see
leaderboard.site_state) is made in a hidden folder next to SITE and swapped in with one rename
(leaderboard.atomic), so a build killed at any moment leaves the previous complete site (or the new
complete one), never a half one. The previous site is deleted after the swap, and only because the
harness made it (its owner marker); files a user added to it (a CNAME, say) are carried over. A rebuild
rewrites in place only the pages whose inputs changed, each file under a temporary name renamed over the
old one, the index data after the pages and the build state last (leaderboard.site_state): a rebuild
killed at any moment leaves every page either old or new, and the next build repairs the rest. A
non-empty SITE that the harness did not make is refused.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import stat
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import MissingExtraError, UsageError
from harness.names import OWNER_MARKER, remove_owned_folder
from harness.runs.catalog import Catalog, CheckpointView, build_catalog
from leaderboard.atomic import (
    clean_stale,
    folder_lock,
    marked_by_harness,
    remove_replaced,
    storage,
    swap_in,
    work_folder,
)
from leaderboard.class_config import ClassConfig, expected_columns
from leaderboard.site_data import build_index, load_references
from leaderboard.site_inputs import RunInputs
from leaderboard.site_pages import (
    checkpoint_files,
    js_assign,
    lineage_entry,
    pretty_json,
    write_checkpoint,
)
from leaderboard.site_state import (
    BUILD_FOLDER,
    PAIRED_FILE,
    RANK_FIELDS,
    BuildState,
    Stats,
    build_key,
    fingerprint,
    load_state,
    page_row,
    remove_files,
    remove_temporaries,
)
from leaderboard.site_writer import Writer

HERE = Path(__file__).resolve().parent
PURPOSE = "leaderboard site"  # owner marker (harness.names) of a site and of its build folder
LEGACY_MARKER = ".leaderboard-site"  # what harness versions before the owner markers wrote into SITE
MANAGED = ("assets", "data", "checkpoints", "runs", "index.html", "compare.html", "plots.html", BUILD_FOLDER)
_NOT_CARRIED = {*MANAGED, OWNER_MARKER, LEGACY_MARKER}
# Written by every build (after the checkpoints' pages), each file renamed into place.
TOP_PAGES = ("index", "compare", "plots")
GLOBAL_FILES = ("data/index.js", "data/ranks.js", "data/plots.js", *(f"{name}.html" for name in TOP_PAGES))
ASSETS = ("plotly.min.js", "site.js", "site.css")
Rows = Mapping[str, Mapping[str, Any]]  # checkpoint id -> its index row


@dataclass(frozen=True)
class SiteSummary:
    out: Path
    checkpoints: int
    suites: int
    runs: int
    pages: int
    bytes: int
    seconds: float
    rendered: int = 0  # checkpoints whose pages this build rendered
    reused: int = 0  # checkpoints whose pages it took unchanged from the previous site
    full: bool = True  # no usable previous build state: every page was rendered

    def describe(self) -> str:
        how = "" if self.full else f" (rendered {self.rendered} checkpoints, {self.reused} unchanged)"
        return (
            f"site: {self.checkpoints} checkpoints, {self.suites} suites, {self.runs} runs, "
            f"{self.pages} pages, {self.bytes / 1e6:.1f} MB in {self.seconds:.1f}s{how} -> "
            f"{self.out / 'index.html'}"
        )


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


def _copy_assets(writer: Writer) -> None:
    writer.copy(_plotly_js(), "assets/plotly.min.js")
    for name in ASSETS[1:]:
        writer.copy(HERE / "static" / name, f"assets/{name}")


def site_figures(catalog: Catalog, store: Any = None) -> dict[str, Any]:
    """reports.plots.site_figures when that module exists (another part of the project writes it),
    with `store` (a reports.paired_cache.PairedStore) shared by its paired comparisons."""
    try:
        from reports import plots
        from reports.paired_cache import active_store
    except ModuleNotFoundError as error:
        if error.name in ("reports.plots", "reports", "reports.paired_cache"):
            return {}
        raise
    with contextlib.nullcontext() if store is None else active_store(store):
        figures: dict[str, Any] = plots.site_figures(catalog)
    return figures


def _paired_store(site: Path | None, stats: Stats) -> Any:
    """The previous build's paired-comparison store (reports.paired_cache; an empty one without a previous
    site), or None without reports."""
    try:
        from reports.paired_cache import PairedStore
    except ModuleNotFoundError as error:
        if error.name in ("reports", "reports.paired_cache"):
            return None
        raise
    store = PairedStore() if site is None else PairedStore.load(site / BUILD_FOLDER / PAIRED_FILE)
    store.stats = stats
    return store


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
        # No mtime check of every template on every get_template (8,000 stats a build, each waiting for
        # the GIL while the writer's threads run); one build never sees its templates change.
        auto_reload=False,
    )
    env.filters["pct"] = lambda v: "—" if v is None else f"{100 * v:.1f}"
    env.filters["tojson_pretty"] = pretty_json
    return env


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


def build_site(
    run_roots: Sequence[Path],
    out: Path,
    references: Path | None,
    changed_teams: Collection[str] | None = None,
    class_config: ClassConfig | None = None,
) -> SiteSummary:
    """Build (or rebuild) the site. A rebuild renders only the checkpoints whose inputs changed since the
    previous build (leaderboard.site_state), in place, and leaves the others' pages as they are;
    `changed_teams` (e.g. the team whose bundle `add` just accepted) are rendered whatever their
    fingerprints say. The index data, figures and top-level pages are always written. A class config
    (leaderboard.class_config) pins the columns and which rows are ranked."""
    start = time.perf_counter()
    shown, out = Path(out), Path(os.path.abspath(out))  # "." has no name to put a sibling next to
    reference_rows = load_references(references)
    ours = marked_by_harness(out, PURPOSE, LEGACY_MARKER) and not out.is_symlink()
    stats: Stats = {}  # one stat per run file, shared by the inputs, fingerprints and the figure's pair keys
    inputs = RunInputs.load(out / BUILD_FOLDER if ours else None, stats)
    pinned = None if class_config is None else {s: c.key for s, c in expected_columns(class_config).items()}
    catalog = build_catalog(inputs.load_runs([Path(r) for r in run_roots]), pinned)
    if not catalog.checkpoints:
        raise UsageError(
            f"No runs found under {', '.join(str(r) for r in run_roots)}.",
            "Pass runs folders made by `harness eval --out DIR` (or accepted submissions).",
        )
    index = build_index(catalog, reference_rows, class_config)
    rows = {row["id"]: row for row in index.payload["rows"]}
    _check_out(out)
    key = build_key()
    previous = load_state(out, key) if ours else None
    changed = frozenset(changed_teams or ())
    if previous is None:
        plan = _Plan(previous, changed, BuildState(key), _paired_store(out if ours else None, stats), stats)
        pages, n_runs, size = _full_build(out, catalog, index.payload, rows, plan, inputs)
    else:
        plan = _Plan(previous, changed, BuildState(key), _paired_store(out, stats), stats)
        try:
            with folder_lock(out / BUILD_FOLDER):
                pages, n_runs, size = _rebuild_in_place(out, catalog, index.payload, rows, plan, inputs)
        except OSError as error:
            raise storage(error, out, "write the site") from None
    return SiteSummary(shown, len(catalog.checkpoints), len(catalog.suites()), n_runs, pages, size,
                       time.perf_counter() - start, plan.rendered, plan.reused,
                       previous is None)  # fmt: skip


@dataclass
class _Plan:
    """Which checkpoints a build renders and which pages it keeps from the previous build (site_state)."""

    previous: BuildState | None
    changed_teams: frozenset[str]
    state: BuildState
    store: Any  # reports.paired_cache.PairedStore, or None without the reports package
    stats: Stats  # the build's stat memo (site_state.stat_once)
    rendered: int = 0  # checkpoints rendered
    reused: int = 0  # checkpoints whose pages the previous build made

    def reusable(self, checkpoint: CheckpointView, print_: str, site: Path) -> list[str] | None:
        if self.previous is None or (checkpoint.team or "") in self.changed_teams:
            return None
        return self.previous.reusable(checkpoint.id, print_, site)


def _full_build(
    out: Path, catalog: Catalog, payload: dict[str, Any], rows: Rows, plan: _Plan, inputs: RunInputs
) -> tuple[int, int, int]:
    """Every page into a new hidden folder, swapped in whole; (pages, runs, bytes)."""
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
            writer = Writer(work, in_place=False)
            todo = [(c, _fingerprint(c, rows, plan.stats)) for c in catalog.checkpoints]
            pages, n_runs = _write_site(writer, catalog, payload, rows, plan, todo)
            _save_caches(work, plan, inputs)
            size = _tree_bytes(work)
            replaced, swapped = swap_in(work, out), True
        except OSError as error:
            raise storage(error, out, "write the site") from None
    finally:
        if not swapped:  # the build failed: its half-written folder goes, the old site stays
            remove_owned_folder(work, PURPOSE)
    _dispose(replaced)
    return pages, n_runs, size


def _rebuild_in_place(
    out: Path, catalog: Catalog, payload: dict[str, Any], rows: Rows, plan: _Plan, inputs: RunInputs
) -> tuple[int, int, int]:
    """The changed checkpoints' pages, then the index data, rewritten in place; (pages, runs, bytes)."""
    assert plan.previous is not None
    clean_stale(out, (PURPOSE,))
    todo = []
    pending = BuildState(plan.previous.key, dict(plan.previous.pages))
    for checkpoint in catalog.checkpoints:
        print_ = _fingerprint(checkpoint, rows, plan.stats)
        files = plan.reusable(checkpoint, print_, out)
        if files is not None:
            plan.state.pages[checkpoint.id] = {"fingerprint": print_, "files": files}
            plan.reused += 1
            continue
        todo.append((checkpoint, print_))
        was = pending.pages.get(checkpoint.id, {}).get("files") or []
        pending.pages[checkpoint.id] = {
            "fingerprint": "",
            "files": sorted({*was, *checkpoint_files(checkpoint)}),
        }
    shown = {c.id for c in catalog.checkpoints}
    gone = [i for i in pending.pages if i not in shown]
    for checkpoint_id in gone:
        pending.pages[checkpoint_id] = {**pending.pages[checkpoint_id], "fingerprint": ""}
    # What a killed build may have left: the temporary files of what it was writing.
    unfinished = plan.previous.files(pending_only=True)
    remove_temporaries(out, [*unfinished, *GLOBAL_FILES, *(f"assets/{a}" for a in ASSETS)])
    if todo or gone:
        pending.save(out)  # before the first page: a kill from here on leaves those pages pending
    pages, n_runs = _write_site(Writer(out, in_place=True), catalog, payload, rows, plan, todo)
    remove_files(out, pending.files() - plan.state.files())  # pages of checkpoints no longer shown
    _save_caches(out, plan, inputs)
    return pages, n_runs, _tree_bytes(out)


def _fingerprint(checkpoint: CheckpointView, rows: Rows, stats: Stats) -> str:
    return fingerprint(checkpoint, rows[checkpoint.id], lineage_entry(checkpoint), stats)


def _save_caches(site: Path, plan: _Plan, inputs: RunInputs) -> None:
    """The paired store and the run inputs, then the build state: last, so it never names a page this
    build did not finish."""
    folder = site / BUILD_FOLDER
    folder.mkdir(exist_ok=True)
    if plan.store is not None:
        plan.store.save(folder / PAIRED_FILE)
    inputs.save(folder)
    plan.state.save(site)


def _write_site(
    writer: Writer,
    catalog: Catalog,
    payload: dict[str, Any],
    rows: Rows,
    plan: _Plan,
    todo: list[tuple[CheckpointView, str]],
) -> tuple[int, int]:
    """The checkpoints in `todo` (with their fingerprints), then the assets, index data, figures and
    top-level pages; (pages, runs) of the whole site. Every file is written when it returns."""
    with writer:
        env = _environment()
        order = catalog.suites()  # the index's column order
        for checkpoint, print_ in todo:
            row = page_row(rows[checkpoint.id])
            lineage = lineage_entry(checkpoint)
            files = write_checkpoint(writer, env, checkpoint, row, lineage, order, plan.store)
            plan.state.pages[checkpoint.id] = {"fingerprint": print_, "files": files}
            plan.rendered += 1
        _copy_assets(writer)
        figures = site_figures(catalog, plan.store)
        ranks = {row["id"]: {k: row.get(k) for k in RANK_FIELDS} for row in payload["rows"]}
        writer.flush()  # the index data only after every page it links to
        writer.write("data/index.js", js_assign("window.LB_INDEX", payload))
        writer.write("data/ranks.js", js_assign("window.LB_RANKS", ranks))
        writer.write("data/plots.js", js_assign("window.LB_PLOTS", figures))
        for name in TOP_PAGES:
            writer.write(f"{name}.html", env.get_template(f"{name}.html").render(
                root="", page=name, figures=list(figures), n_checkpoints=len(catalog.checkpoints),
            ))  # fmt: skip

    n_runs = sum(len(c.runs) for c in catalog.checkpoints)
    return n_runs + len(catalog.checkpoints) + len(TOP_PAGES), n_runs
