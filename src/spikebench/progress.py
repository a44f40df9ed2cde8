"""Progress on long loops: a tqdm bar on a terminal; on anything else (a log file, CI) no
carriage-return bars, only plain lines on the ``spikebench.progress`` logger (one per
finished loop, and one per epoch from the training loop), which the command line prints.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("spikebench.progress")


def on_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(items: Iterable[T], desc: str, enabled: bool = True,
                 total: int | None = None, summary: bool = True) -> Iterable[T]:
    """``items`` with progress: a bar on a terminal, else one line when the loop ends
    (none with ``summary=False``, where the caller writes its own line)."""
    if not enabled:
        return items
    if on_terminal():
        from tqdm import tqdm

        return tqdm(items, desc=desc, total=total, leave=False)
    return _plain(items, desc) if summary else items


def _plain(items: Iterable[T], desc: str) -> Iterator[T]:
    t0, n = time.perf_counter(), 0
    for item in items:
        yield item
        n += 1
    log.info("%s: %d done in %.1f s", desc, n, time.perf_counter() - t0)


def progress_line(message: str, enabled: bool = True) -> None:
    """A plain progress line where no bar shows it (not on a terminal)."""
    if enabled and not on_terminal():
        log.info("%s", message)


def setup_logging(verbose: bool, progress: bool) -> None:
    """Warnings (every epoch with -v) on stderr; where stderr is no terminal, plain progress
    lines instead of bars (spikebench.progress)."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    plain = logging.getLogger("spikebench.progress")
    plain.propagate = verbose
    for old in [h for h in plain.handlers if isinstance(h, _StderrLines)]:
        plain.removeHandler(old)
    if progress and not on_terminal():
        handler = _StderrLines()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        plain.addHandler(handler)
        plain.setLevel(logging.INFO)


class _StderrLines(logging.Handler):
    """Plain lines on whatever ``sys.stderr`` is when a record comes."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never break a run
            self.handleError(record)
