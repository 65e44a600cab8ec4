"""The file writer of a site build (leaderboard.site): every page and data file goes through it.

Creating a file costs far more than its bytes on the file systems a class runs on (a fresh site is
12,000 files at 1,000 checkpoints: 9-10 s of a full build written one by one on a 2-core VM, 3-5 s from
four threads), so the writes are handed to a small thread pool while the build renders the next page
(file system calls release the GIL). `flush()` waits for every write handed over so far and raises the
first error; the build flushes before the index data (written after every page) and closes the writer
before it saves its state, so the order a killed rebuild relies on holds (leaderboard.site_state).

A build into a new folder writes files directly; a rebuild in place (`in_place`) writes each file under a
temporary name (`<file>.tmp`) and renames it over the old one, so a page is always either the previous
one or the new one, never half written.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

TEMPORARY = ".tmp"  # suffix of a file being written in place (a killed build's are cleared by the next)
THREADS = 4
MAX_PENDING = 256  # writes handed over and not done: bounds the memory the queued texts hold


def _put(path: str, data: bytes, in_place: bool) -> None:
    target = path + TEMPORARY if in_place else path
    with open(target, "wb") as handle:
        handle.write(data)
    if in_place:
        os.replace(target, path)


class Writer:
    """Writes site files under `root`, making folders once; `in_place`: tmp file + rename. Use it as a
    context manager (or call close()): leaving waits for every write, also when the build fails."""

    def __init__(self, root: Path, in_place: bool) -> None:
        self.root = root
        self.in_place = in_place
        self._made: set[str] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []
        self._slots = threading.BoundedSemaphore(MAX_PENDING)

    def write(self, relative: str, text: str) -> None:
        self.write_bytes(relative, text.encode("utf-8"))

    def copy(self, source: Path, relative: str) -> None:
        self.write_bytes(relative, source.read_bytes())

    def write_bytes(self, relative: str, data: bytes) -> None:
        path = os.path.join(self.root, relative)
        folder = os.path.dirname(path)
        if folder not in self._made:
            os.makedirs(folder, exist_ok=True)
            self._made.add(folder)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="site-writer")
        self._slots.acquire()
        try:
            future = self._pool.submit(_put, path, data, self.in_place)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        self._pending.append(future)
        if len(self._pending) > 4 * MAX_PENDING:  # forget the writes that are done (their errors first)
            self._pending = [f for f in self._pending if not f.done() or f.exception() is not None]

    def flush(self) -> None:
        """Wait for every write handed over so far; raise the first one's error."""
        pending, self._pending = self._pending, []
        error: BaseException | None = None
        for future in pending:
            failure = future.exception()
            if failure is not None and error is None:
                error = failure
        if error is not None:
            raise error

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is None:
            self.close()
            return
        try:  # the build failed: let the writes handed over finish (no temporary file left), keep its error
            self.close()
        except Exception:
            pass
